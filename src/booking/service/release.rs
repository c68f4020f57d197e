//! `releaseHold` and `cancelConcertDate`: holds and sales that end before
//! their time.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;
use futures_util::FutureExt;

use crate::booking::model::{self, ReservationRow, ReservationStatus};
use crate::catalogue::model::{self as catalogue, ConcertDateRow};
use crate::clock;
use crate::db::{self, DbPool, DbUuid};
use crate::error::{AppError, AppResult};
use crate::queue;
use crate::queue::token::TokenClaims;
use crate::wallet;

/// Ends the bearer's own live hold now: the reservation is RELEASED, its
/// seat AVAILABLE in the same commit, and the token counts one live hold
/// fewer. Locks go token, reservation, seat, as a hold's do.
pub async fn release_hold(
    pool: &DbPool,
    token: &TokenClaims,
    reservation_id: DbUuid,
    active_ttl: chrono::Duration,
) -> AppResult<ReservationRow> {
    let token = *token;
    db::run(pool, move |conn| {
        async move {
            crate::transaction_with_retry!(conn, |conn| {
                release_on(conn, &token, reservation_id, active_ttl).await
            })
        }
        .boxed()
    })
    .await
}

async fn release_on(
    conn: &mut AsyncMysqlConnection,
    token: &TokenClaims,
    reservation_id: DbUuid,
    active_ttl: chrono::Duration,
) -> AppResult<ReservationRow> {
    let now = clock::now();
    if !queue::model::lock_active_token(conn, token, now).await? {
        return Err(AppError::TokenExpired);
    }
    let Some(mut reservation) = model::lock_reservation(conn, reservation_id).await? else {
        return Err(no_such_reservation(reservation_id));
    };
    if reservation.user_id.0 != token.user_id {
        // Another user's reservation is no business of this one.
        return Err(no_such_reservation(reservation_id));
    }
    let status = reservation.status_at(now);
    if status != ReservationStatus::Held {
        return Err(AppError::invalid(format!(
            "only a HELD reservation can be released; this one is {}",
            status.as_str()
        )));
    }
    model::set_status(conn, &[reservation_id], ReservationStatus::Released).await?;
    model::free_seats_held_by(conn, &[reservation_id]).await?;
    queue::model::recount_live_holds(conn, reservation.user_id, now, active_ttl).await?;
    reservation.status = ReservationStatus::Released;
    Ok(reservation)
}

fn no_such_reservation(id: DbUuid) -> AppError {
    AppError::not_found(format!("you have no reservation {}", id.0))
}

/// Cancels a date in one transaction: no hold on it succeeds after this
/// commits, its live holds are RELEASED (lapsed ones EXPIRED, as the sweep
/// would), its sales REFUNDED to their users' balances with a REFUND entry
/// each. Cancelling again changes nothing and answers the date.
///
/// Locks go date, seats, reservations, tokens, users. A hold or a payment
/// racing this one takes some of them in another order; InnoDB then picks
/// one side of the deadlock to roll back and the retry runs it again.
pub async fn cancel_date(
    pool: &DbPool,
    date_id: u64,
    active_ttl: chrono::Duration,
) -> AppResult<ConcertDateRow> {
    db::run(pool, move |conn| {
        async move {
            crate::transaction_with_retry!(conn, |conn| {
                cancel_on(conn, date_id, active_ttl).await
            })
        }
        .boxed()
    })
    .await
}

async fn cancel_on(
    conn: &mut AsyncMysqlConnection,
    date_id: u64,
    active_ttl: chrono::Duration,
) -> AppResult<ConcertDateRow> {
    let Some(mut date) = catalogue::lock_date(conn, date_id).await? else {
        return Err(AppError::not_found(format!(
            "no concert date with id {date_id}"
        )));
    };
    if date.cancelled_at.is_some() {
        return Ok(date);
    }
    let now = clock::now();
    catalogue::mark_cancelled(conn, date_id, now).await?;
    catalogue::cancel_seats(conn, date_id).await?;
    let open = model::lock_open_reservations_of_date(conn, date_id).await?;
    end_holds(conn, &open, now, active_ttl).await?;
    refund_sales(conn, &open, now).await?;
    date.cancelled_at = Some(now);
    Ok(date)
}

/// Live holds become RELEASED and their users' tokens count them no more;
/// lapsed ones become EXPIRED.
async fn end_holds(
    conn: &mut AsyncMysqlConnection,
    open: &[ReservationRow],
    now: NaiveDateTime,
    active_ttl: chrono::Duration,
) -> AppResult<()> {
    let held = open
        .iter()
        .filter(|reservation| reservation.status == ReservationStatus::Held);
    let (live, lapsed): (Vec<&ReservationRow>, Vec<&ReservationRow>) =
        held.partition(|reservation| reservation.held_until > now);
    let ids = |rows: &[&ReservationRow]| rows.iter().map(|r| r.id).collect::<Vec<DbUuid>>();
    model::set_status(conn, &ids(&live), ReservationStatus::Released).await?;
    model::set_status(conn, &ids(&lapsed), ReservationStatus::Expired).await?;
    let holders: BTreeSet<DbUuid> = live.iter().map(|reservation| reservation.user_id).collect();
    for holder in holders {
        queue::model::recount_live_holds(conn, holder, now, active_ttl).await?;
    }
    Ok(())
}

/// Each sale becomes REFUNDED and its price goes back to its user.
async fn refund_sales(
    conn: &mut AsyncMysqlConnection,
    open: &[ReservationRow],
    now: NaiveDateTime,
) -> AppResult<()> {
    for sale in open
        .iter()
        .filter(|reservation| reservation.status == ReservationStatus::Paid)
    {
        let Some(payment) = sale.payment_id else {
            return Err(AppError::internal(format!(
                "PAID reservation {} has no payment",
                sale.id.0
            )));
        };
        model::set_status(conn, &[sale.id], ReservationStatus::Refunded).await?;
        wallet::model::refund(conn, sale.user_id, &sale.price, payment, sale.id, now).await?;
    }
    Ok(())
}
