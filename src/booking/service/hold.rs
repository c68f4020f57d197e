//! `holdSeat`: checked alone, then taken together with every hold that
//! arrived meanwhile, one transaction per batch (`hold_batch`).

use std::sync::Arc;

use chrono::NaiveDateTime;
use futures_util::FutureExt;
use uuid::Uuid;

use super::hold_batch::{self, HoldRequest};
use super::{BookingSettings, MAX_SEAT, MIN_SEAT};
use crate::batch::Batcher;
use crate::booking::model::{ReservationRow, ReservationStatus};
use crate::catalogue::directory::{SeatDirectory, SeatFacts};
use crate::clock;
use crate::db::{self, DbPool, DbUuid};
use crate::error::{AppError, AppResult, SharedFailure};
use crate::queue::token::TokenClaims;

/// Holds gathered into one transaction at most. A batch of 64 distinct
/// seats locks 64 seat rows for one commit, about a millisecond here.
///
/// One batch runs at a time per process (as `issueToken`'s do): the holds
/// that arrive meanwhile make the next batch, so batches grow with the
/// load and the statements per hold fall. Two or four batches at once were
/// tried: no faster at 64 clients, and more instructions per hold at low
/// concurrency, where the batches stay small (BENCHMARKS.md).
const MAX_HOLD_BATCH: usize = 64;

/// The process's batcher of holds.
pub struct Holds {
    batcher: Batcher<HoldRequest, AppResult<ReservationRow>>,
}

impl Holds {
    pub fn start(pool: DbPool, settings: BookingSettings) -> Self {
        let batcher = Batcher::spawn(MAX_HOLD_BATCH, move |requests| {
            hold_together(pool.clone(), settings, requests)
        });
        Self { batcher }
    }

    /// Holds the seat for the bearer's user until now + hold time, or
    /// answers the user's own live hold on it again.
    pub async fn hold_seat(
        &self,
        pool: &DbPool,
        directory: &SeatDirectory,
        token: &TokenClaims,
        concert_date_id: u64,
        number: i32,
    ) -> AppResult<ReservationRow> {
        if !(MIN_SEAT..=MAX_SEAT).contains(&number) {
            return Err(AppError::invalid(format!(
                "seatNumber is {MIN_SEAT} to {MAX_SEAT}; got {number}"
            )));
        }
        let seat = directory.seat(pool, concert_date_id, number).await?;
        let now = clock::now();
        if seat.starts_at <= now {
            return Err(AppError::SeatUnavailable("this date has already begun"));
        }
        if seat.sales_open_at > now {
            return Err(AppError::SeatUnavailable(
                "sales for this date have not opened yet",
            ));
        }
        let request = HoldRequest {
            token: *token,
            seat,
        };
        self.batcher.call(request).await?
    }
}

/// One batch: its transaction, retried whole when the database rolled it
/// back (inside `transaction_with_retry`) or its connection died. One
/// answer per request, in order. (Public so that tests can make a batch.)
pub async fn hold_together(
    pool: DbPool,
    settings: BookingSettings,
    requests: Vec<HoldRequest>,
) -> Vec<AppResult<ReservationRow>> {
    let asked = requests.len();
    let requests = Arc::new(requests);
    let mut held = in_transaction(&pool, settings, Arc::clone(&requests)).await;
    if held
        .as_ref()
        .is_err_and(|error| error.code() == "UNAVAILABLE")
    {
        // Safe to send again whether or not the first one committed: a seat
        // the first attempt took is now the same user's live hold, which is
        // answered again rather than taken twice.
        held = in_transaction(&pool, settings, requests).await;
    }
    held.unwrap_or_else(|error| {
        tracing::error!(error = %error.detail(), "hold batch failed");
        let failure = SharedFailure::of(&error);
        (0..asked)
            .map(|_| Err(AppError::from(failure.clone())))
            .collect()
    })
}

async fn in_transaction(
    pool: &DbPool,
    settings: BookingSettings,
    requests: Arc<Vec<HoldRequest>>,
) -> AppResult<Vec<AppResult<ReservationRow>>> {
    db::run(pool, move |conn| {
        async move {
            crate::transaction_with_retry!(conn, |conn| {
                hold_batch::hold_all(conn, settings, &requests).await
            })
        }
        .boxed()
    })
    .await
}

/// A new HELD reservation of the seat for the token's user.
pub(super) fn new_hold(
    token: &TokenClaims,
    seat: &SeatFacts,
    settings: BookingSettings,
    now: NaiveDateTime,
) -> ReservationRow {
    ReservationRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(token.user_id),
        seat_id: seat.seat_id,
        token_seq: token.seq,
        status: ReservationStatus::Held,
        price: seat.price.clone(),
        created_at: now,
        held_until: now + settings.hold,
        payment_id: None,
    }
}
