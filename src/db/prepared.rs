//! Keeps hot statements prepared on their connection.
//!
//! Diesel marks every UPDATE (and any INSERT with an optional column, and
//! any `IN` list) as unsafe to cache, because such statements can change
//! their SQL text from call to call. diesel-async then prepares, executes
//! and closes them each time: three round trips' worth of work for one. The
//! statement cache can key a statement by its SQL text instead, which is
//! safe whatever the statement renders to; `Prepared` asks for that. Wrap
//! only statements with few shapes, as each shape stays prepared for the
//! connection's life (and MySQL bounds them server-wide by
//! `max_prepared_stmt_count`): give an `IN` list through `padded`.

use diesel::mysql::Mysql;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(pub Q);

impl<Q: QueryFragment<Mysql>> QueryFragment<Mysql> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    /// Cached under its SQL text (see `QueryId` below), so any text is safe.
    fn is_safe_to_cache_prepared(&self, _backend: &Mysql) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the statement cache keys these by their SQL text.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

/// `ids` padded with copies of its last id to the next of 1, 2, 4, ... 64
/// items, so that a prepared statement taking an `IN` list has at most seven
/// shapes rather than one per length. A repeated id changes nothing an `IN`
/// matches.
pub fn padded<T: Clone>(ids: &[T]) -> Vec<T> {
    let mut padded = ids.to_vec();
    if let Some(last) = ids.last() {
        padded.resize(ids.len().next_power_of_two(), last.clone());
    }
    padded
}

/// `rows` cut into pieces whose lengths are powers of two, largest first
/// (20 rows: 16, then 4), for multi-row INSERTs: each piece is a prepared
/// statement of one of seven shapes for up to 127 rows. (An INSERT cannot
/// be padded as an `IN` list can.)
pub fn power_of_two_pieces<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = 1usize << rest.len().checked_ilog2()?;
        let (piece, after) = rest.split_at(size);
        rest = after;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn lists_of_1_to_50_ids_take_seven_shapes_and_keep_their_ids() {
        let shapes: BTreeSet<usize> = (1..=50u64)
            .map(|n| {
                let ids: Vec<u64> = (1..=n).collect();
                let list = padded(&ids);
                let distinct: BTreeSet<u64> = list.iter().copied().collect();
                assert_eq!(distinct, ids.iter().copied().collect(), "{n} ids");
                list.len()
            })
            .collect();
        assert_eq!(shapes, BTreeSet::from([1, 2, 4, 8, 16, 32, 64]));
        assert!(padded::<u64>(&[]).is_empty());
    }

    #[test]
    fn pieces_are_powers_of_two_and_keep_every_row_in_order() {
        for n in 0..=130u32 {
            let rows: Vec<u32> = (0..n).collect();
            let pieces: Vec<&[u32]> = power_of_two_pieces(&rows).collect();
            assert!(pieces.iter().all(|piece| piece.len().is_power_of_two()));
            assert!(pieces.windows(2).all(|pair| pair[0].len() > pair[1].len()));
            assert_eq!(pieces.concat(), rows);
        }
    }
}
