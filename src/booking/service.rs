//! The booking rules: who may hold which seat, and how holds become a sale.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;
use uuid::Uuid;

use super::model::{self, PaymentRow, ReservationRow, ReservationStatus};
use crate::catalogue::directory::SeatDirectory;
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
///
/// The transaction is two conditional writes and an insert: take one of the
/// token's hold slots (the token row's lock makes one user's holds take
/// turns), take the seat (the row lock every caller for that seat queues on;
/// the affected-row count picks the one winner), record the reservation.
/// Anything refused rolls back and is then explained by reading the rows.
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
    let reservation = ReservationRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(token.user_id),
        seat_id: seat.seat_id,
        token_seq: token.seq,
        status: ReservationStatus::Held,
        price: seat.price,
        created_at: now,
        held_until: now + settings.hold,
        payment_id: None,
    };
    let mut conn = db::connect(pool).await?;
    let held = crate::transaction_with_retry!(conn, |conn| {
        let limit = settings.max_holds_per_user;
        if !queue::model::take_hold_slot(conn, token, now, reservation.held_until, limit).await? {
            return Err(AppError::HoldLimit { limit });
        }
        if !model::take_seat(
            conn,
            reservation.seat_id,
            reservation.id,
            reservation.held_until,
            now,
        )
        .await?
        {
            return Err(AppError::SeatUnavailable(
                "someone else took this seat first",
            ));
        }
        model::insert_reservation(conn, &reservation).await?;
        Ok(())
    });
    match held {
        Ok(()) => Ok(reservation),
        Err(refused @ (AppError::HoldLimit { .. } | AppError::SeatUnavailable(_))) => {
            explain_refused_hold(&mut conn, token, reservation.seat_id, now, refused).await
        }
        Err(other) => Err(other),
    }
}

/// Why a hold was refused, read after the rollback. The holder's own live
/// hold on the seat is answered again whatever else is true; then the seat,
/// then the token, say what stopped it.
async fn explain_refused_hold(
    conn: &mut AsyncMysqlConnection,
    token: &TokenClaims,
    seat_id: u64,
    now: NaiveDateTime,
    refused: AppError,
) -> AppResult<ReservationRow> {
    if let Some(hold) = model::live_hold_on(conn, seat_id, now).await? {
        return if hold.user_id.0 == token.user_id {
            Ok(hold)
        } else {
            Err(AppError::SeatUnavailable("someone else holds this seat"))
        };
    }
    if let AppError::SeatUnavailable(_) = refused {
        return Err(AppError::SeatUnavailable("this seat is sold"));
    }
    match queue::model::find_token(conn, token.seq).await? {
        Some(row) if !row.matches(token) => Err(AppError::Unauthenticated(
            "the token is not one this server issued",
        )),
        None => Err(AppError::Unauthenticated(
            "the token is not one this server issued",
        )),
        Some(row) if !row.is_active_at(now) => Err(AppError::TokenExpired),
        Some(_) => Err(refused),
    }
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
    let now = clock::now();
    // Ending the token first takes its row lock. If it was still ACTIVE at
    // `now`, no hold of this user had lapsed by then (the token ends at the
    // first lapse), so judging the holds at `now` agrees with the rows.
    if !queue::model::end_active_token(conn, token, now).await? {
        return Err(explain_refused_payment(conn, token, ids).await);
    }
    let holds = model::lock_reservations(conn, ids).await?;
    check_payable(&holds, ids, payer, now)?;
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

/// Why the token could not pay. The holds answer first (a double click
/// hears ALREADY_PAID, a payment that lost the race with its hold's lapse
/// hears HOLD_EXPIRED), judged by a clock read now, after whatever ended the
/// token; then the token itself.
async fn explain_refused_payment(
    conn: &mut AsyncMysqlConnection,
    token: &TokenClaims,
    ids: &[DbUuid],
) -> AppError {
    let explained = async {
        let now = clock::now();
        let holds = model::lock_reservations(conn, ids).await?;
        check_payable(&holds, ids, DbUuid(token.user_id), now)?;
        Ok::<_, AppError>(match queue::model::find_token(conn, token.seq).await? {
            Some(row) if row.matches(token) => AppError::TokenExpired,
            _ => AppError::Unauthenticated("the token is not one this server issued"),
        })
    }
    .await;
    match explained {
        Ok(error) | Err(error) => error,
    }
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
