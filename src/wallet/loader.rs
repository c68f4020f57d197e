//! Dataloader for the wallet's nested fields.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use futures_util::FutureExt;
use uuid::Uuid;

use super::model::{self, BalanceEntryRow};
use crate::db::{self, DbPool, DbUuid};
use crate::error::AppError;
use crate::graphql::context::group_by;

/// Every balance entry of a user, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntriesOfUser(pub Uuid);

pub struct WalletLoader {
    pool: DbPool,
}

impl WalletLoader {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
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
        let users: Vec<DbUuid> = keys.iter().map(|key| DbUuid(key.0)).collect();
        let rows = db::run(&self.pool, move |conn| {
            async move { Ok(model::entries_of_users(conn, &users).await?) }.boxed()
        })
        .await?;
        Ok(group_by(rows, |row| EntriesOfUser(row.user_id.0)))
    }
}
