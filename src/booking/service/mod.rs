//! The booking rules: who may hold which seat, and how holds become a sale.

mod hold;
mod hold_batch;
mod pay;
mod release;

use chrono::NaiveDateTime;
use futures_util::FutureExt;

pub use hold::{Holds, hold_together};
pub use hold_batch::HoldRequest;
pub use pay::{is_retry, parse_reservation_ids, pay};
pub use release::{cancel_date, release_hold};

use super::model;
use crate::catalogue::model::{self as catalogue, ConcertDateRow};
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult};
use crate::money::Money;

pub const MIN_SEAT: i32 = 1;
pub const MAX_SEAT: i32 = 50;
/// More ids than any user can hold at once is a malformed request.
pub const MAX_RESERVATIONS_PER_PAYMENT: usize = 50;

#[derive(Debug, Clone, Copy)]
pub struct BookingSettings {
    pub hold: chrono::Duration,
    pub max_holds_per_user: u32,
    /// Seats of one date one user may hold and own together.
    pub max_tickets_per_user: u32,
}

/// The background sweep: lapsed holds become EXPIRED and their seats go back
/// on sale. Both writes are idempotent, so any number of processes may run
/// it at once. (The holders' tokens ended at the lapse already; the
/// admission loop rewrites them.)
pub async fn sweep_lapsed_holds(pool: &DbPool, now: NaiveDateTime) -> AppResult<(usize, usize)> {
    db::run(pool, move |conn| {
        async move {
            let expired = model::expire_lapsed_reservations(conn, now).await?;
            let released = model::release_lapsed_seats(conn, now).await?;
            Ok((expired, released))
        }
        .boxed()
    })
    .await
}

/// One date's sales as the rows say now.
#[derive(Debug, Clone)]
pub struct SalesFigures {
    pub date: ConcertDateRow,
    pub seats_sold: i64,
    pub seats_held: i64,
    pub seats_available: i64,
    pub revenue: Money,
}

/// Counted from the rows, not from counters that could drift: the date's
/// reservations (through the seats' index, 50 rows) and its seats.
pub async fn sales_report(
    pool: &DbPool,
    date_id: u64,
    now: NaiveDateTime,
) -> AppResult<SalesFigures> {
    db::run(pool, move |conn| {
        async move {
            let date = catalogue::find_date(conn, date_id)
                .await?
                .ok_or_else(|| AppError::not_found(format!("no concert date with id {date_id}")))?;
            let (seats_sold, seats_held, revenue) =
                model::sales_of_date(conn, date_id, now).await?;
            let counts = catalogue::seat_counts_of_dates(conn, &[date_id], now).await?;
            let seats_available = counts.first().map_or(0, |(_, _, holdable)| *holdable);
            Ok(SalesFigures {
                date,
                seats_sold,
                seats_held,
                seats_available,
                revenue: revenue.map_or_else(Money::zero, Money::from_stored),
            })
        }
        .boxed()
    })
    .await
}
