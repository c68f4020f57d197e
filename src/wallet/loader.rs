//! Dataloader for the wallet's nested fields.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use futures_util::FutureExt;
use uuid::Uuid;

use super::model::{self, BalanceEntryRow, UserRow};
use crate::db::{self, DbPool, DbUuid};
use crate::error::AppError;
use crate::graphql::paging::{Page, load_pages};

/// A user by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserKey(pub Uuid);

/// A page of a user's balance entries, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntriesOfUser {
    pub user: Uuid,
    pub page: Page<u64>,
}

pub struct WalletLoader {
    pool: DbPool,
}

impl WalletLoader {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

impl Loader<UserKey> for WalletLoader {
    type Value = UserRow;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_users", skip_all, fields(keys = keys.len()))]
    async fn load(&self, keys: &[UserKey]) -> Result<HashMap<UserKey, UserRow>, Self::Error> {
        let wanted: Vec<DbUuid> = keys.iter().map(|key| DbUuid(key.0)).collect();
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::users_by_ids(conn, &wanted).await?) }.boxed()
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (UserKey(row.id.0), row))
            .collect())
    }
}

impl Loader<EntriesOfUser> for WalletLoader {
    type Value = Vec<BalanceEntryRow>;
    type Error = Arc<AppError>;

    #[tracing::instrument(name = "load_balance_entries", skip_all, fields(keys = keys.len()))]
    async fn load(
        &self,
        keys: &[EntriesOfUser],
    ) -> Result<HashMap<EntriesOfUser, Vec<BalanceEntryRow>>, Self::Error> {
        load_pages(&self.pool, keys, |conn, key| {
            model::entries_page(conn, DbUuid(key.user), key.page).boxed()
        })
        .await
    }
}
