//! The demo catalogue (`catalogue/demo.toml`): loaded into an empty
//! catalogue at start unless SEED_DEMO=false, so a newcomer can hold and
//! pay for a seat at once; and the seats of test fixtures.

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use futures_util::FutureExt;

use super::{import, model};
use crate::db::schema::concerts;
use crate::db::{self, DbPool};
use crate::error::AppResult;
use crate::money::Money;

pub const SEATS_PER_DATE: i32 = 50;

/// Seat prices by row band: the front ten seats cost the most.
fn price_of(number: i32) -> BigDecimal {
    let won = match number {
        1..=10 => 165_000,
        11..=30 => 132_000,
        _ => 99_000,
    };
    Money::from_cents(won * 100).into_decimal()
}

/// Loads the demo catalogue when there is no concert yet. Returns whether it
/// did. Processes starting together load it once between them, whichever
/// database node each talks to: the load writes the `demo` row of
/// `catalogue_seeds` first, and a second loader's row conflicts with it
/// (it waits on the row lock on one server, or fails certification on a
/// cluster and runs again) and then finds it there.
pub async fn seed_if_empty(pool: &DbPool, now: NaiveDateTime) -> AppResult<bool> {
    let demo = import::demo(now)?;
    db::run(pool, move |conn| {
        async move {
            crate::transaction_with_retry!(conn, |conn| {
                let concerts_so_far: i64 = concerts::table.count().get_result(conn).await?;
                if concerts_so_far > 0 || !model::claim_seed(conn, DEMO_SEED, now).await? {
                    return Ok(false);
                }
                import::import_on(conn, &demo).await?;
                Ok(true)
            })
        }
        .boxed()
    })
    .await
}

/// The `catalogue_seeds` row of the demo catalogue.
const DEMO_SEED: &str = "demo";

/// Adds a date with seats 1 to 50 to a concert, on sale at once.
pub async fn insert_date(
    conn: &mut AsyncMysqlConnection,
    concert_id: u64,
    starts_at: NaiveDateTime,
) -> AppResult<u64> {
    let prices: Vec<BigDecimal> = (1..=SEATS_PER_DATE).map(price_of).collect();
    let on_sale_since_always = NaiveDateTime::default();
    Ok(model::insert_date(conn, concert_id, starts_at, on_sale_since_always, &prices).await?)
}

pub async fn last_insert_id(conn: &mut AsyncMysqlConnection) -> AppResult<u64> {
    Ok(model::last_insert_id(conn).await?)
}
