//! Pages of a user's lists (`balanceHistory`, `reservations`, `payments`):
//! newest first, at most `first` items, those older than the item whose id
//! is `after`. A user's history grows without bound; an answer does not.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use diesel::result::QueryResult;
use diesel_async::AsyncMysqlConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult};

/// Items in a page when `first` is omitted.
pub const DEFAULT_PAGE: u32 = 50;
/// The most items one page holds.
pub const MAX_PAGE: u32 = 100;

/// `first` items older than the item `after` (from the newest without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Page<C> {
    pub first: u32,
    pub after: Option<C>,
}

impl<C> Page<C> {
    /// A page as the client asked for it: `first` 1 to 100 (50 when
    /// omitted), and `after` an id that `cursor` reads.
    pub fn new(
        first: Option<i32>,
        after: Option<&str>,
        cursor: impl Fn(&str) -> Option<C>,
    ) -> AppResult<Self> {
        let first = match first {
            None => DEFAULT_PAGE,
            Some(first) => u32::try_from(first)
                .ok()
                .filter(|first| (1..=MAX_PAGE).contains(first))
                .ok_or_else(|| {
                    AppError::invalid(format!("first is 1 to {MAX_PAGE}; got {first}"))
                })?,
        };
        let after = after
            .map(|id| {
                cursor(id.trim()).ok_or_else(|| {
                    AppError::invalid(format!("after {id:?} is not an id of this list"))
                })
            })
            .transpose()?;
        Ok(Self { first, after })
    }

    /// How many rows to read: the page's, as SQL's LIMIT takes it.
    pub fn limit(&self) -> i64 {
        i64::from(self.first)
    }
}

/// The cost of a page of `first` items (50 when omitted), each costing `each`:
/// what the client asks for, not what the list might hold.
pub fn cost(first: Option<i32>, each: usize) -> usize {
    let items = first
        .and_then(|first| u32::try_from(first).ok())
        .map_or(DEFAULT_PAGE, |first| first.clamp(1, MAX_PAGE));
    super::list_cost(items as usize, each)
}

/// The answer to an `after` that names no item of the user's list.
pub fn unknown_after() -> AppError {
    AppError::invalid("after names no item of this list; pass the id of the last item you got")
}

/// How a loader reads one key's page: `None` when its `after` is unknown.
pub type PageRead<K, R> =
    for<'c> fn(&'c mut AsyncMysqlConnection, K) -> BoxFuture<'c, QueryResult<Option<Vec<R>>>>;

/// One page per key, read on one pooled connection for the whole batch. A
/// page's LIMIT is its own user's, so each key is a statement of its own;
/// a request names few users (each `user(id)` costs 400 of the budget).
pub async fn load_pages<K, R>(
    pool: &DbPool,
    keys: &[K],
    read: PageRead<K, R>,
) -> Result<HashMap<K, Vec<R>>, Arc<AppError>>
where
    K: Copy + Eq + Hash + Send + Sync + 'static,
    R: Send + 'static,
{
    let keys = keys.to_vec();
    db::run(pool, move |conn| {
        async move {
            let mut pages = HashMap::with_capacity(keys.len());
            for key in keys {
                let rows = read(conn, key).await?.ok_or_else(unknown_after)?;
                pages.insert(key, rows);
            }
            Ok(pages)
        }
        .boxed()
    })
    .await
    .map_err(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(id: &str) -> Option<u64> {
        id.parse().ok()
    }

    #[test]
    fn first_is_1_to_100_and_after_must_read_as_an_id() {
        assert_eq!(
            Page::new(None, None, number).ok(),
            Some(Page {
                first: 50,
                after: None
            })
        );
        assert_eq!(
            Page::new(Some(100), Some("7"), number).ok(),
            Some(Page {
                first: 100,
                after: Some(7)
            })
        );
        for first in [0, -1, 101, i32::MAX] {
            assert!(Page::new(Some(first), None, number).is_err(), "{first}");
        }
        assert!(Page::new(None, Some("seven"), number).is_err());
    }

    #[test]
    fn a_page_costs_its_first() {
        assert_eq!(cost(None, 2), 100);
        assert_eq!(cost(Some(3), 2), 6);
        assert_eq!(cost(Some(10_000), 1), 100);
    }
}
