//! The demo catalogue (`catalogue/demo.toml`): loaded into an empty
//! catalogue at start unless SEED_DEMO=false, so a newcomer can hold and
//! pay for a seat at once; and the seats of test fixtures.

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
use futures_util::FutureExt;

use super::{import, model};
use crate::db::schema::concerts;
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult};
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
/// did. Several processes starting at once take turns through a named lock.
pub async fn seed_if_empty(pool: &DbPool, now: NaiveDateTime) -> AppResult<bool> {
    db::run(pool, move |conn| seed_on(conn, now).boxed()).await
}

async fn seed_on(conn: &mut AsyncMysqlConnection, now: NaiveDateTime) -> AppResult<bool> {
    let got = diesel::select(diesel::dsl::sql::<
        diesel::sql_types::Nullable<diesel::sql_types::Integer>,
    >("GET_LOCK('ticket_reservation.seed', 30)"))
    .get_result(conn)
    .await?;
    db::named_lock_taken("ticket_reservation.seed", got)?;
    let seeded = async {
        let concerts_so_far: i64 = concerts::table.count().get_result(conn).await?;
        if concerts_so_far > 0 {
            return Ok(false);
        }
        let demo = import::demo(now)?;
        conn.transaction::<_, AppError, _>(async |conn| import::import_on(conn, &demo).await)
            .await?;
        Ok::<_, AppError>(true)
    }
    .await;
    diesel::sql_query("SELECT RELEASE_LOCK('ticket_reservation.seed')")
        .execute(conn)
        .await?;
    seeded
}

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
