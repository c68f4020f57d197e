//! The demo catalogue: loaded into an empty catalogue at start unless
//! SEED_DEMO=false, so a newcomer can hold and pay for a seat at once.

use bigdecimal::BigDecimal;
use chrono::{Days, NaiveDateTime, NaiveTime};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
use futures_util::FutureExt;

use super::model;
use crate::db::schema::concerts;
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult};
use crate::money::Money;

struct DemoConcert {
    name: &'static str,
    venue: &'static str,
    /// Days from today of each date; every date starts at 19:00 UTC.
    days_ahead: &'static [u64],
}

const DEMO: &[DemoConcert] = &[
    DemoConcert {
        name: "IU 2027 World Tour: The Winning",
        venue: "Olympic Gymnastics Arena, Seoul",
        days_ahead: &[30, 31, 37],
    },
    DemoConcert {
        name: "Seoul Philharmonic: Mahler 2",
        venue: "Lotte Concert Hall, Seoul",
        days_ahead: &[45, 52],
    },
    DemoConcert {
        name: "Jazz at Blue Square",
        venue: "Blue Square Mastercard Hall, Seoul",
        days_ahead: &[14, 15],
    },
];

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
        conn.transaction::<_, AppError, _>(async |conn| {
            for concert in DEMO {
                insert_concert(conn, concert, now).await?;
            }
            Ok(())
        })
        .await?;
        Ok::<_, AppError>(true)
    }
    .await;
    diesel::sql_query("SELECT RELEASE_LOCK('ticket_reservation.seed')")
        .execute(conn)
        .await?;
    seeded
}

async fn insert_concert(
    conn: &mut AsyncMysqlConnection,
    concert: &DemoConcert,
    now: NaiveDateTime,
) -> AppResult<()> {
    diesel::insert_into(concerts::table)
        .values((
            concerts::name.eq(concert.name),
            concerts::venue.eq(concert.venue),
            concerts::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    let concert_id = last_insert_id(conn).await?;
    for days in concert.days_ahead {
        let starts_at = now
            .date()
            .checked_add_days(Days::new(*days))
            .map(|day| day.and_time(NaiveTime::from_hms_opt(19, 0, 0).unwrap_or_default()))
            .ok_or_else(|| AppError::internal("demo date out of range"))?;
        insert_date(conn, concert_id, starts_at).await?;
    }
    Ok(())
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
