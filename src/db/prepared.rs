//! Keeps hot statements prepared on their connection.
//!
//! Diesel marks every UPDATE (and any INSERT with an optional column, and
//! any `IN` list) as unsafe to cache, because such statements can change
//! their SQL text from call to call. diesel-async then prepares, executes
//! and closes them each time: three round trips' worth of work for one. The
//! statement cache can key a statement by its SQL text instead, which is
//! safe whatever the statement renders to; `Prepared` asks for that. Wrap
//! only statements with few shapes (an `IN` list of 1 to 50 ids is 50), as
//! each shape stays prepared for the connection's life.

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
