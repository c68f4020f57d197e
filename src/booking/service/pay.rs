//! `pay`.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;
use futures_util::FutureExt;
use uuid::Uuid;

use super::MAX_RESERVATIONS_PER_PAYMENT;
use crate::booking::model::{self, PaymentRow, ReservationRow, ReservationStatus};
use crate::clock;
use crate::db::{self, DbPool, DbUuid};
use crate::error::{AppError, AppResult};
use crate::money::Money;
use crate::queue::token::TokenClaims;
use crate::wallet::model::KeyScope;
use crate::{queue, wallet};

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

/// Settles the bearer's holds in one transaction and ends the token. A call
/// with an idempotency key the user already used answers the first payment,
/// whatever else has changed since (an expired token included).
pub async fn pay(
    pool: &DbPool,
    token: &TokenClaims,
    ids: Vec<DbUuid>,
    key: Option<String>,
) -> AppResult<PaymentRow> {
    let token = *token;
    db::run(pool, move |conn| {
        async move { pay_once(conn, &token, &ids, key.as_deref()).await }.boxed()
    })
    .await
}

async fn pay_once(
    conn: &mut AsyncMysqlConnection,
    token: &TokenClaims,
    ids: &[DbUuid],
    key: Option<&str>,
) -> AppResult<PaymentRow> {
    let payer = DbUuid(token.user_id);
    if let Some(key) = key
        && let Some(payment) = replayed_payment(conn, payer, key).await?
    {
        return Ok(payment);
    }
    let paid = crate::transaction_with_retry!(conn, |conn| {
        let payment = settle(conn, token, ids).await?;
        if let Some(key) = key
            && !wallet::model::claim_key(
                conn,
                payer,
                KeyScope::Pay,
                key,
                Some(payment.id),
                payment.paid_at,
            )
            .await?
        {
            return Err(AppError::KeyTaken);
        }
        Ok(payment)
    });
    match (paid, key) {
        // A refusal may be the trace of a concurrent call with this key
        // (it paid these holds, ended this token): answer its payment.
        (Err(refused), Some(key)) => match replayed_payment(conn, payer, key).await? {
            Some(payment) => Ok(payment),
            None => Err(refused),
        },
        (paid, _) => paid,
    }
}

/// Whether `key` is one the user already paid with: its retry is answered
/// whatever the bearer's token is now, a new one still in line included.
pub async fn is_retry(pool: &DbPool, user_id: Uuid, key: &str) -> AppResult<bool> {
    let key = key.to_owned();
    db::run(pool, move |conn| {
        async move {
            let paid = wallet::model::payment_of_key(conn, DbUuid(user_id), &key).await?;
            Ok(matches!(paid, Some(Some(_))))
        }
        .boxed()
    })
    .await
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
/// error leaves the caller to roll everything back. Locks go token, holds,
/// seats, user: the user's row is locked for writing before anything takes
/// a shared (foreign-key) lock on it.
async fn settle(
    conn: &mut AsyncMysqlConnection,
    token: &TokenClaims,
    ids: &[DbUuid],
) -> AppResult<PaymentRow> {
    let payer = DbUuid(token.user_id);
    if !queue::model::end_active_token(conn, token, clock::now()).await? {
        return Err(explain_refused_payment(conn, token, ids).await?);
    }
    // Holds are judged by a clock read once the token's lock is ours.
    let now = clock::now();
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
    wallet::service::take_from_balance(conn, payer, &total).await?;
    let payment = PaymentRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: payer,
        amount: total.as_decimal().clone(),
        paid_at: now,
    };
    model::insert_payment(conn, &payment).await?;
    wallet::service::record_payment(conn, payer, &total, payment.id).await?;
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

/// Why the token could not pay. A token that is not this one is refused
/// first; then the holds answer (a double click hears ALREADY_PAID, a
/// payment that lost the race with its hold's lapse hears HOLD_EXPIRED),
/// judged by a clock read now, after whatever ended the token; then the
/// token itself is the reason.
async fn explain_refused_payment(
    conn: &mut AsyncMysqlConnection,
    token: &TokenClaims,
    ids: &[DbUuid],
) -> AppResult<AppError> {
    match queue::model::find_token(conn, token.seq).await? {
        Some(row) if row.matches(token) => {}
        _ => {
            return Ok(AppError::Unauthenticated(
                "the token is not one this server issued",
            ));
        }
    }
    let holds = model::lock_reservations(conn, ids).await?;
    Ok(
        match check_payable(&holds, ids, DbUuid(token.user_id), clock::now()) {
            Err(refusal) => refusal,
            Ok(()) => AppError::TokenExpired,
        },
    )
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
