//! The booking rules: who may hold which seat, and how holds become a sale.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;
use uuid::Uuid;

use super::model::{self, PaymentRow, ReservationRow, ReservationStatus};
use crate::catalogue::model::SeatStatus;
use crate::clock;
use crate::db::{self, DbPool, DbUuid};
use crate::error::{AppError, AppResult};
use crate::money::Money;
use crate::queue::token::TokenClaims;
use crate::{queue, wallet};

pub const MIN_SEAT: i32 = 1;
pub const MAX_SEAT: i32 = 50;
/// More ids than any user can hold at once is a malformed request.
pub const MAX_RESERVATIONS_PER_PAYMENT: usize = 50;

#[derive(Debug, Clone, Copy)]
pub struct BookingSettings {
    pub hold: chrono::Duration,
    pub max_holds_per_user: u32,
}

/// `holdSeat`: holds the seat for the bearer's user until now + hold time,
/// or answers the user's own live hold on it again.
pub async fn hold_seat(
    pool: &DbPool,
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
    let mut conn = db::connect(pool).await?;
    crate::transaction_with_retry!(conn, |conn| {
        hold_in_transaction(conn, settings, token, concert_date_id, number, clock::now()).await
    })
}

async fn hold_in_transaction(
    conn: &mut AsyncMysqlConnection,
    settings: BookingSettings,
    token: &TokenClaims,
    concert_date_id: u64,
    number: i32,
    now: NaiveDateTime,
) -> AppResult<ReservationRow> {
    let holder = DbUuid(token.user_id);
    let held_until = now + settings.hold;
    // Locks the token row first: one user's holds take turns, so the hold
    // limit below is counted under the lock. A repeat of a live hold leaves
    // the lapse unchanged, since that hold already capped it.
    if !queue::model::cap_active_token(conn, token.seq, now, held_until).await? {
        return Err(AppError::TokenExpired);
    }
    let Some(found) = model::seat_for_hold(conn, concert_date_id, number, holder, now).await?
    else {
        return Err(AppError::not_found(format!(
            "no seat {number} on concert date {concert_date_id}"
        )));
    };
    if found.starts_at <= now {
        return Err(AppError::SeatUnavailable("this date has already begun"));
    }
    if let Some(hold) = found.seat.live_hold(now) {
        return match model::find_reservation(conn, hold).await? {
            Some(mine) if mine.user_id == holder => Ok(mine),
            _ => Err(AppError::SeatUnavailable("someone else holds this seat")),
        };
    }
    if found.seat.status_at(now) == SeatStatus::Sold {
        return Err(AppError::SeatUnavailable("this seat is sold"));
    }
    if found.holder_live_holds >= i64::from(settings.max_holds_per_user) {
        return Err(AppError::HoldLimit {
            limit: settings.max_holds_per_user,
        });
    }
    let reservation = ReservationRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: holder,
        seat_id: found.seat.id,
        token_seq: token.seq,
        status: ReservationStatus::Held,
        price: found.seat.price.clone(),
        created_at: now,
        held_until,
        payment_id: None,
    };
    // The seat's row lock first: concurrent callers queue on it behind the
    // winner, then match nothing and fail without a deadlock.
    if !model::take_seat(conn, found.seat.id, reservation.id, held_until, now).await? {
        return Err(AppError::SeatUnavailable(
            "someone else took this seat first",
        ));
    }
    model::insert_reservation(conn, &reservation).await?;
    Ok(reservation)
}

/// Reservation ids as the client sent them: 1 to 50 distinct UUIDs.
pub fn parse_reservation_ids(ids: &[String]) -> AppResult<Vec<DbUuid>> {
    if ids.is_empty() || ids.len() > MAX_RESERVATIONS_PER_PAYMENT {
        return Err(AppError::invalid(format!(
            "reservationIds takes 1 to {MAX_RESERVATIONS_PER_PAYMENT} ids"
        )));
    }
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter()
        .map(|id| {
            let parsed = Uuid::parse_str(id.trim())
                .map_err(|_| AppError::invalid(format!("{id:?} is not a reservation id")))?;
            if !seen.insert(parsed) {
                return Err(AppError::invalid(format!(
                    "reservation {id} is listed twice"
                )));
            }
            Ok(DbUuid(parsed))
        })
        .collect()
}

/// `pay`: settles the bearer's holds in one transaction and ends the token.
/// A retry with a used idempotency key answers the first payment.
pub async fn pay(
    pool: &DbPool,
    token: &TokenClaims,
    ids: &[DbUuid],
    key: Option<&str>,
) -> AppResult<PaymentRow> {
    let payer = DbUuid(token.user_id);
    let mut conn = db::connect(pool).await?;
    if let Some(key) = key
        && let Some(payment) = replayed_payment(&mut conn, payer, key).await?
    {
        return Ok(payment);
    }
    crate::transaction_with_retry!(conn, |conn| {
        if let Some(key) = key
            && !wallet::model::claim_key(
                conn,
                payer,
                wallet::model::KeyScope::Pay,
                key,
                clock::now(),
            )
            .await?
        {
            // A concurrent call with this key committed while we waited.
            return replayed_payment(conn, payer, key)
                .await?
                .ok_or_else(|| AppError::internal("a used pay key has no payment"));
        }
        let payment = settle(conn, token, ids).await?;
        if let Some(key) = key {
            wallet::model::record_key_payment(conn, payer, key, payment.id).await?;
        }
        Ok(payment)
    })
}

async fn replayed_payment(
    conn: &mut AsyncMysqlConnection,
    payer: DbUuid,
    key: &str,
) -> AppResult<Option<PaymentRow>> {
    match wallet::model::payment_of_key(conn, payer, key).await? {
        Some(Some(payment)) => Ok(model::find_payment(conn, payment).await?),
        _ => Ok(None),
    }
}

/// Checks and sells the holds, takes the money and ends the token. Any
/// error leaves the caller to roll everything back.
async fn settle(
    conn: &mut AsyncMysqlConnection,
    token: &TokenClaims,
    ids: &[DbUuid],
) -> AppResult<PaymentRow> {
    let payer = DbUuid(token.user_id);
    // The token row lock orders this payment after any lapse the background
    // jobs already wrote, and the clock is read only once it is held: a hold
    // whose lapse ended the token reads as lapsed here too (HOLD_EXPIRED,
    // not TOKEN_EXPIRED), and a hold judged live stays live until commit.
    let token_row = queue::model::lock_token(conn, token.seq).await?;
    let now = clock::now();
    let holds = model::lock_reservations(conn, ids).await?;
    check_payable(&holds, ids, payer, now)?;
    if !token_row.is_some_and(|row| row.is_active_at(now)) {
        return Err(AppError::TokenExpired);
    }
    queue::model::end_token(conn, token.seq, now).await?;
    let seat_ids: Vec<u64> = holds.iter().map(|hold| hold.seat_id).collect();
    if model::sell_seats(conn, &seat_ids, ids, now).await? != holds.len() {
        return Err(AppError::HoldExpired);
    }
    let prices: Vec<Money> = holds
        .iter()
        .map(|hold| Money::from_stored(hold.price.clone()))
        .collect();
    let total = Money::sum(&prices);
    let payment = PaymentRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: payer,
        amount: total.as_decimal().clone(),
        paid_at: now,
    };
    model::insert_payment(conn, &payment).await?;
    wallet::service::pay_from_balance(conn, payer, &total, payment.id).await?;
    model::mark_paid(conn, ids, payment.id).await?;
    Ok(payment)
}

/// Every id must be the payer's own live hold. The first failing rule
/// answers: unknown or foreign ids, then paid ones, then lapsed ones.
fn check_payable(
    holds: &[ReservationRow],
    ids: &[DbUuid],
    payer: DbUuid,
    now: NaiveDateTime,
) -> AppResult<()> {
    for id in ids {
        if !holds
            .iter()
            .any(|hold| hold.id == *id && hold.user_id == payer)
        {
            return Err(AppError::not_found(format!(
                "you have no reservation {}",
                id.0
            )));
        }
    }
    if holds
        .iter()
        .any(|hold| hold.status == ReservationStatus::Paid)
    {
        return Err(AppError::AlreadyPaid);
    }
    if holds
        .iter()
        .any(|hold| hold.status_at(now) == ReservationStatus::Expired)
    {
        return Err(AppError::HoldExpired);
    }
    Ok(())
}

/// The background sweep: lapsed holds become EXPIRED and their seats go back
/// on sale. Both writes are idempotent, so any number of processes may run
/// it at once; lapsed tokens are rewritten by the admission loop.
pub async fn sweep_lapsed_holds(pool: &DbPool, now: NaiveDateTime) -> AppResult<(usize, usize)> {
    let mut conn = db::connect(pool).await?;
    let expired = model::expire_lapsed_reservations(&mut conn, now).await?;
    let released = model::release_lapsed_seats(&mut conn, now).await?;
    Ok((expired, released))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_ids_must_be_distinct_uuids() {
        let id = Uuid::new_v4().to_string();
        assert!(parse_reservation_ids(&[]).is_err());
        assert!(parse_reservation_ids(&["x".into()]).is_err());
        assert!(parse_reservation_ids(&[id.clone(), id.clone()]).is_err());
        assert_eq!(
            parse_reservation_ids(&[id]).map(|ids| ids.len()).ok(),
            Some(1)
        );
    }
}
