//! The booking rules: who may hold which seat, and how holds become a sale.

mod hold;
mod pay;

use chrono::NaiveDateTime;
use futures_util::FutureExt;

pub use hold::hold_seat;
pub use pay::{is_retry, parse_reservation_ids, pay};

use super::model;
use crate::db::{self, DbPool};
use crate::error::AppResult;

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
