//! What a hold needs to know about a seat and never changes once its date is
//! on sale: which row is seat N of a date, its price, and when the date
//! starts and opens. Every hold needs them; keeping them in memory saves a
//! round trip per hold. They are true for good by rule: a date's seats,
//! prices and times are written with it and the API offers no way to change
//! them (cancelling a date changes its seats' rows, which holds check).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::OnceCell;

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;
use futures_util::FutureExt;

use super::model;
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult};

/// Dates remembered before the directory starts over.
const MAX_DATES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct SeatFacts {
    pub seat_id: u64,
    pub concert_date_id: u64,
    pub price: BigDecimal,
    pub starts_at: NaiveDateTime,
    pub sales_open_at: NaiveDateTime,
}

struct DateFacts {
    starts_at: NaiveDateTime,
    sales_open_at: NaiveDateTime,
    /// seat number -> (seat id, price)
    seats: HashMap<i32, (u64, BigDecimal)>,
}

/// One cell per date: the first hold of a date loads it, and every hold
/// that arrives meanwhile waits for that load instead of running its own.
type DateCell = Arc<OnceCell<Arc<DateFacts>>>;

#[derive(Default)]
pub struct SeatDirectory {
    dates: RwLock<HashMap<u64, DateCell>>,
}

impl SeatDirectory {
    /// Seat `number` of a date; NOT_FOUND when the date or the seat is not
    /// in the catalogue.
    pub async fn seat(&self, pool: &DbPool, date_id: u64, number: i32) -> AppResult<SeatFacts> {
        let cell = self.cell(date_id);
        let date = match cell.get_or_try_init(|| load(pool, date_id)).await {
            Ok(date) => date,
            Err(error) => {
                // Do not keep cells for dates that are not there.
                self.forget(date_id);
                return Err(error);
            }
        };
        let (seat_id, price) = date.seats.get(&number).cloned().ok_or_else(|| {
            AppError::not_found(format!("no seat {number} on concert date {date_id}"))
        })?;
        Ok(SeatFacts {
            seat_id,
            concert_date_id: date_id,
            price,
            starts_at: date.starts_at,
            sales_open_at: date.sales_open_at,
        })
    }

    fn forget(&self, date_id: u64) {
        if let Ok(mut dates) = self.dates.write() {
            dates.remove(&date_id);
        }
    }

    fn cell(&self, date_id: u64) -> DateCell {
        if let Some(cell) = self
            .dates
            .read()
            .ok()
            .and_then(|dates| dates.get(&date_id).cloned())
        {
            return cell;
        }
        let Ok(mut dates) = self.dates.write() else {
            return DateCell::default();
        };
        if dates.len() >= MAX_DATES {
            dates.clear();
        }
        Arc::clone(dates.entry(date_id).or_default())
    }
}

async fn load(pool: &DbPool, date_id: u64) -> AppResult<Arc<DateFacts>> {
    db::run(pool, move |conn| read_facts(conn, date_id).boxed()).await
}

async fn read_facts(conn: &mut AsyncMysqlConnection, date_id: u64) -> AppResult<Arc<DateFacts>> {
    let date = model::find_date(conn, date_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no concert date with id {date_id}")))?;
    let seats = model::seats_of_dates(conn, &[date_id]).await?;
    Ok(Arc::new(DateFacts {
        starts_at: date.starts_at,
        sales_open_at: date.sales_open_at,
        seats: seats
            .into_iter()
            .map(|seat| (seat.number, (seat.id, seat.price)))
            .collect(),
    }))
}
