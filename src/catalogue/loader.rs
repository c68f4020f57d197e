//! Dataloaders for the catalogue's nested fields: one query per key type
//! per request, however many parents ask.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use chrono::NaiveDateTime;
use futures_util::FutureExt;

use super::model::{self, ConcertDateRow, ConcertRow, SeatRow};
use crate::db::{self, DbPool};
use crate::error::AppError;
use crate::graphql::context::group_by;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcertKey(pub u64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcertDateKey(pub u64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeatKey(pub u64);
/// Every date of a concert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatesOfConcert(pub u64);
/// Every seat of a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeatsOfDate(pub u64);
/// How many seats a date has, and how many can be held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeatCountsOfDate(pub u64);

#[derive(Debug, Clone, Copy, Default)]
pub struct SeatCounts {
    pub total: i64,
    pub holdable: i64,
}

pub struct CatalogueLoader {
    pool: DbPool,
    now: NaiveDateTime,
}

impl CatalogueLoader {
    pub fn new(pool: DbPool, now: NaiveDateTime) -> Self {
        Self { pool, now }
    }
}

type LoadResult<K, V> = Result<HashMap<K, V>, Arc<AppError>>;

fn ids<K: Copy>(keys: &[K], id: impl Fn(K) -> u64) -> Vec<u64> {
    keys.iter().copied().map(id).collect()
}

impl Loader<ConcertKey> for CatalogueLoader {
    type Value = ConcertRow;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_concerts", skip_all, fields(keys = keys.len()))]
    async fn load(&self, keys: &[ConcertKey]) -> LoadResult<ConcertKey, ConcertRow> {
        let wanted = ids(keys, |k| k.0);
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::concerts_by_ids(conn, &wanted).await?) }.boxed()
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (ConcertKey(row.id), row))
            .collect())
    }
}

impl Loader<ConcertDateKey> for CatalogueLoader {
    type Value = ConcertDateRow;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_concert_dates", skip_all, fields(keys = keys.len()))]
    async fn load(&self, keys: &[ConcertDateKey]) -> LoadResult<ConcertDateKey, ConcertDateRow> {
        let wanted = ids(keys, |k| k.0);
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::dates_by_ids(conn, &wanted).await?) }.boxed()
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (ConcertDateKey(row.id), row))
            .collect())
    }
}

impl Loader<SeatKey> for CatalogueLoader {
    type Value = SeatRow;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_seats", skip_all, fields(keys = keys.len()))]
    async fn load(&self, keys: &[SeatKey]) -> LoadResult<SeatKey, SeatRow> {
        let wanted = ids(keys, |k| k.0);
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::seats_by_ids(conn, &wanted).await?) }.boxed()
        })
        .await?;
        Ok(rows.into_iter().map(|row| (SeatKey(row.id), row)).collect())
    }
}

impl Loader<DatesOfConcert> for CatalogueLoader {
    type Value = Vec<ConcertDateRow>;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_dates_of_concerts", skip_all, fields(keys = keys.len()))]
    async fn load(
        &self,
        keys: &[DatesOfConcert],
    ) -> LoadResult<DatesOfConcert, Vec<ConcertDateRow>> {
        let wanted = ids(keys, |k| k.0);
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::dates_of_concerts(conn, &wanted).await?) }.boxed()
        })
        .await?;
        Ok(group_by(rows, |row| DatesOfConcert(row.concert_id)))
    }
}

impl Loader<SeatsOfDate> for CatalogueLoader {
    type Value = Vec<SeatRow>;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_seats_of_dates", skip_all, fields(keys = keys.len()))]
    async fn load(&self, keys: &[SeatsOfDate]) -> LoadResult<SeatsOfDate, Vec<SeatRow>> {
        let wanted = ids(keys, |k| k.0);
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::seats_of_dates(conn, &wanted).await?) }.boxed()
        })
        .await?;
        Ok(group_by(rows, |row| SeatsOfDate(row.concert_date_id)))
    }
}

impl Loader<SeatCountsOfDate> for CatalogueLoader {
    type Value = SeatCounts;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_seat_counts", skip_all, fields(keys = keys.len()))]
    async fn load(&self, keys: &[SeatCountsOfDate]) -> LoadResult<SeatCountsOfDate, SeatCounts> {
        let wanted = ids(keys, |k| k.0);
        let now = self.now;
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::seat_counts_of_dates(conn, &wanted, now).await?) }.boxed()
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|(date, total, holdable)| (SeatCountsOfDate(date), SeatCounts { total, holdable }))
            .collect())
    }
}
