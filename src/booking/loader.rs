//! Dataloader for reservations and payments under users and each other.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use futures_util::FutureExt;
use uuid::Uuid;

use super::model::{self, PaymentRow, ReservationRow};
use crate::db::{self, DbPool, DbUuid};
use crate::error::AppError;
use crate::graphql::context::group_by;
use crate::graphql::paging::{Page, load_pages};

/// A page of a user's reservations, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationsOfUser {
    pub user: Uuid,
    pub page: Page<Uuid>,
}
/// A page of a user's payments, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaymentsOfUser {
    pub user: Uuid,
    pub page: Page<Uuid>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaymentKey(pub Uuid);
/// The reservations a payment settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationsOfPayment(pub Uuid);

pub struct BookingLoader {
    pool: DbPool,
}

impl BookingLoader {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

type LoadResult<K, V> = Result<HashMap<K, V>, Arc<AppError>>;

fn uuids<K: Copy>(keys: &[K], id: impl Fn(K) -> Uuid) -> Vec<DbUuid> {
    keys.iter().copied().map(|key| DbUuid(id(key))).collect()
}

impl Loader<ReservationsOfUser> for BookingLoader {
    type Value = Vec<ReservationRow>;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_reservations_of_users", skip_all, fields(keys = keys.len()))]
    async fn load(
        &self,
        keys: &[ReservationsOfUser],
    ) -> LoadResult<ReservationsOfUser, Vec<ReservationRow>> {
        load_pages(&self.pool, keys, |conn, key| {
            model::reservations_page(conn, DbUuid(key.user), key.page).boxed()
        })
        .await
    }
}

impl Loader<PaymentsOfUser> for BookingLoader {
    type Value = Vec<PaymentRow>;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_payments_of_users", skip_all, fields(keys = keys.len()))]
    async fn load(&self, keys: &[PaymentsOfUser]) -> LoadResult<PaymentsOfUser, Vec<PaymentRow>> {
        load_pages(&self.pool, keys, |conn, key| {
            model::payments_page(conn, DbUuid(key.user), key.page).boxed()
        })
        .await
    }
}

impl Loader<PaymentKey> for BookingLoader {
    type Value = PaymentRow;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_payments", skip_all, fields(keys = keys.len()))]
    async fn load(&self, keys: &[PaymentKey]) -> LoadResult<PaymentKey, PaymentRow> {
        let wanted = uuids(keys, |k| k.0);
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::payments_by_ids(conn, &wanted).await?) }.boxed()
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (PaymentKey(row.id.0), row))
            .collect())
    }
}

impl Loader<ReservationsOfPayment> for BookingLoader {
    type Value = Vec<ReservationRow>;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_reservations_of_payments", skip_all, fields(keys = keys.len()))]
    async fn load(
        &self,
        keys: &[ReservationsOfPayment],
    ) -> LoadResult<ReservationsOfPayment, Vec<ReservationRow>> {
        let wanted = uuids(keys, |k| k.0);
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::reservations_of_payments(conn, &wanted).await?) }.boxed()
        })
        .await?;
        Ok(group_by(
            rows.into_iter()
                .filter(|row| row.payment_id.is_some())
                .collect(),
            |row| ReservationsOfPayment(row.payment_id.map(|id| id.0).unwrap_or_default()),
        ))
    }
}
