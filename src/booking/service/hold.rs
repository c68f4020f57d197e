//! `holdSeat`.

use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;
use futures_util::FutureExt;
use uuid::Uuid;

use super::{BookingSettings, MAX_SEAT, MIN_SEAT};
use crate::booking::model::{self, ReservationRow, ReservationStatus};
use crate::catalogue::directory::{SeatDirectory, SeatFacts};
use crate::catalogue::model::SeatStatus;
use crate::clock;
use crate::db::{self, DbPool, DbUuid};
use crate::error::{AppError, AppResult};
use crate::queue;
use crate::queue::token::TokenClaims;

/// Holds the seat for the bearer's user until now + hold time, or answers
/// the user's own live hold on it again.
///
/// The transaction is two conditional writes, a count and an insert: take
/// one of the token's hold slots (the token row's lock makes one user's
/// holds take turns), take the seat (the row lock every caller for that seat
/// queues on; the affected-row count picks the one winner), count the seats
/// of the date the user already holds or owns, record the reservation.
/// Anything refused rolls back and is then explained by reading the rows.
///
/// Why the count is exact under concurrency: a user has at most one live
/// token (a unique key), every live hold of the user is on it (a token ends
/// at its first hold's lapse, and a new one is issued only after the old is
/// rewritten EXPIRED, which takes its row lock), and each hold first locks
/// that row. So a user's holds run one at a time on any number of servers,
/// and each count, a statement of its own after the lock, sees every seat
/// the user's earlier holds committed.
pub async fn hold_seat(
    pool: &DbPool,
    directory: &SeatDirectory,
    settings: BookingSettings,
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
    let token = *token;
    db::run(pool, move |conn| {
        hold_on(conn, token, seat, settings).boxed()
    })
    .await
}

/// Takes the token's hold slot, then the seat, then records the hold; a
/// refusal is explained once the transaction has rolled back.
async fn hold_on(
    conn: &mut AsyncMysqlConnection,
    token: TokenClaims,
    seat: SeatFacts,
    settings: BookingSettings,
) -> AppResult<ReservationRow> {
    let token = &token;
    let held = crate::transaction_with_retry!(conn, |conn| {
        // The clock is read in each attempt, after the connection is ours.
        let reservation = new_hold(token, &seat, settings, clock::now());
        let limit = settings.max_holds_per_user;
        let (now, lapse) = (reservation.created_at, reservation.held_until);
        if !queue::model::take_hold_slot(conn, token, now, lapse, limit).await? {
            return Err(AppError::HoldLimit { limit });
        }
        if !model::take_seat(conn, reservation.seat_id, reservation.id, lapse, now).await? {
            return Err(AppError::SeatUnavailable(
                "someone else took this seat first",
            ));
        }
        let limit = settings.max_tickets_per_user;
        let owned = model::tickets_of_date(conn, token.user_id, seat.concert_date_id, now).await?;
        if owned >= i64::from(limit) {
            return Err(AppError::TicketLimit { limit });
        }
        model::insert_reservation(conn, &reservation).await?;
        Ok(reservation)
    });
    match held {
        Err(refused @ (AppError::HoldLimit { .. } | AppError::SeatUnavailable(_))) => {
            explain_refused_hold(conn, token, seat.seat_id, refused).await
        }
        other => other,
    }
}

fn new_hold(
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

/// Why a hold was refused, read after the rollback: the token first (an
/// EXPIRED token is never valid again), then the holder's own live hold on
/// the seat, answered again as the contract asks, then the seat or the limit.
async fn explain_refused_hold(
    conn: &mut AsyncMysqlConnection,
    token: &TokenClaims,
    seat_id: u64,
    refused: AppError,
) -> AppResult<ReservationRow> {
    let now = clock::now();
    match queue::model::find_token(conn, token.seq).await? {
        Some(row) if row.matches(token) && row.is_active_at(now) => {}
        Some(row) if row.matches(token) => return Err(AppError::TokenExpired),
        _ => {
            return Err(AppError::Unauthenticated(
                "the token is not one this server issued",
            ));
        }
    }
    if let Some(hold) = model::live_hold_on(conn, seat_id, now).await? {
        return if hold.user_id.0 == token.user_id {
            Ok(hold)
        } else {
            Err(AppError::SeatUnavailable("someone else holds this seat"))
        };
    }
    match refused {
        AppError::SeatUnavailable(_) => Err(match model::seat_status(conn, seat_id).await? {
            SeatStatus::Sold => AppError::SeatUnavailable("this seat is sold"),
            SeatStatus::Cancelled => AppError::SeatUnavailable("this date was cancelled"),
            _ => AppError::SeatUnavailable("someone else took this seat first"),
        }),
        limit => Err(limit),
    }
}
