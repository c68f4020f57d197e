//! The queue token signing key: the operator's TOKEN_SECRET, or one
//! generated on first start and kept in the database so that every server
//! on that database signs and checks tokens alike.

use diesel::prelude::*;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use futures_util::FutureExt;

use crate::config::TokenSecret;
use crate::db::schema::server_secrets;
use crate::db::{self, DbPool};
use crate::error::AppResult;

const TOKEN_KEY: &str = "queue_token";

pub async fn token_secret(pool: &DbPool, configured: Option<&TokenSecret>) -> AppResult<Vec<u8>> {
    if let Some(secret) = configured {
        return Ok(secret.0.clone());
    }
    let stored = stored_secret(pool).await?;
    tracing::warn!(
        "TOKEN_SECRET is not set: signing queue tokens with a key kept in the database; \
         set TOKEN_SECRET so a copy of the database cannot be used to forge tokens"
    );
    Ok(stored)
}

/// The stored key, made by whichever process comes first. Two processes
/// starting together on different nodes of a cluster both insert one; the
/// later commit fails certification (a deadlock error) and runs again,
/// finding the earlier key.
async fn stored_secret(pool: &DbPool) -> AppResult<Vec<u8>> {
    let mut attempt = 0;
    loop {
        match db::run(pool, |conn| shared_secret(conn).boxed()).await {
            Err(error) if error.is_retryable() && attempt < db::DEADLOCK_RETRIES => {
                attempt += 1;
                tokio::time::sleep(db::retry_pause(attempt)).await;
            }
            outcome => return outcome,
        }
    }
}

async fn shared_secret(conn: &mut AsyncMysqlConnection) -> AppResult<Vec<u8>> {
    let generated: [u8; 32] = rand::random();
    // INSERT IGNORE: the first process to start wins; the rest read its key.
    diesel::insert_or_ignore_into(server_secrets::table)
        .values((
            server_secrets::name.eq(TOKEN_KEY),
            server_secrets::secret.eq(generated.as_slice()),
            server_secrets::created_at.eq(crate::clock::now()),
        ))
        .execute(conn)
        .await?;
    Ok(server_secrets::table
        .find(TOKEN_KEY)
        .select(server_secrets::secret)
        .first(conn)
        .await?)
}
