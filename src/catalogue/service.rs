//! The catalogue's rules: what is on sale and what can be held now.

use chrono::NaiveDateTime;
use futures_util::FutureExt;

use super::model::{self, ConcertDateRow, ConcertRow, SeatRow};
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult};

/// Catalogue ids are unsigned integers written as strings.
pub fn parse_id(id: &str, argument: &str) -> AppResult<u64> {
    id.trim()
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            AppError::invalid(format!("{argument} {id:?} is not an id from this server"))
        })
}

pub async fn concerts_on_sale(pool: &DbPool, now: NaiveDateTime) -> AppResult<Vec<ConcertRow>> {
    db::run(pool, move |conn| {
        async move { Ok(model::concerts_on_sale(conn, now).await?) }.boxed()
    })
    .await
}

pub async fn available_dates(
    pool: &DbPool,
    concert_id: u64,
    now: NaiveDateTime,
) -> AppResult<Vec<ConcertDateRow>> {
    db::run(pool, move |conn| {
        async move {
            if !model::concert_exists(conn, concert_id).await? {
                return Err(AppError::not_found(format!(
                    "no concert with id {concert_id}"
                )));
            }
            Ok(model::available_dates(conn, concert_id, now).await?)
        }
        .boxed()
    })
    .await
}

/// Seats that can be held now; none once the date has begun.
pub async fn available_seats(
    pool: &DbPool,
    date_id: u64,
    now: NaiveDateTime,
) -> AppResult<Vec<SeatRow>> {
    db::run(pool, move |conn| {
        async move {
            let date = model::find_date(conn, date_id)
                .await?
                .ok_or_else(|| AppError::not_found(format!("no concert date with id {date_id}")))?;
            if date.starts_at <= now {
                return Ok(Vec::new());
            }
            Ok(model::available_seats(conn, date_id, now).await?)
        }
        .boxed()
    })
    .await
}
