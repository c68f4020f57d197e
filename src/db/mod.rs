//! The connection pool, the embedded migrations and the Diesel schema.

mod monitor;
mod prepared;
pub mod schema;
mod types;

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, Object, Pool, QueueMode, RecycleError, RecycleResult};
use diesel::{Connection, ConnectionError, RunQueryDsl as _};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

pub use monitor::DbMonitor;
pub use prepared::Prepared;
pub use types::DbUuid;

use crate::error::{AppError, AppResult};

pub type DbPool = Pool<CheckedManager>;
pub type DbConn = Object<CheckedManager>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Session settings every pooled connection starts with. READ COMMITTED
/// because every rule here is enforced by conditional writes and row locks,
/// not by snapshots, and it keeps InnoDB from taking gap locks on hot paths.
/// A short lock wait turns an unexpected lock convoy into an error, not a hang.
const SESSION_SETUP: [&str; 2] = [
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION innodb_lock_wait_timeout = 10",
];

/// How long a request waits for a free connection before failing.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// A pooled connection last handed out this long ago is pinged before
/// reuse: the server or a proxy on the way may have closed it meanwhile
/// (MySQL's `wait_timeout`, a restart, a failover), and that should cost a
/// round trip, not a client's request. Connections in steady use are
/// handed out far more often, so hot paths never pay the ping.
pub const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

pub fn build_pool(database_url: &str, size: u32, monitor: Arc<DbMonitor>) -> AppResult<DbPool> {
    build_pool_pinging_after(database_url, size, monitor, IDLE_BEFORE_PING)
}

/// `build_pool`, pinging connections idle longer than `idle_before_ping`.
pub fn build_pool_pinging_after(
    database_url: &str,
    size: u32,
    monitor: Arc<DbMonitor>,
    idle_before_ping: Duration,
) -> AppResult<DbPool> {
    let mut config = ManagerConfig::<AsyncMysqlConnection>::default();
    // Only a broken transaction state is checked here; `CheckedManager`
    // decides when a round trip is worth it.
    config.recycling_method = RecyclingMethod::Fast;
    let setup_monitor = Arc::clone(&monitor);
    config.custom_setup = Box::new(move |url| {
        let monitor = Arc::clone(&setup_monitor);
        async move {
            let mut conn = <AsyncMysqlConnection as AsyncConnection>::establish(url).await?;
            for statement in SESSION_SETUP {
                conn.batch_execute(statement)
                    .await
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
            }
            conn.set_instrumentation(monitor.instrumentation());
            Ok(conn)
        }
        .boxed()
    });
    let manager = CheckedManager {
        inner: AsyncDieselConnectionManager::new_with_config(database_url, config),
        monitor,
        idle_before_ping,
    };
    Pool::builder(manager)
        // The most recently returned connection goes out first, so light
        // traffic keeps reusing a few fresh ones (no ping) and only the
        // rarely needed rest ages past `idle_before_ping`.
        .queue_mode(QueueMode::Lifo)
        .max_size(size as usize)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(AppError::internal)
}

/// diesel-async's connection manager, with a `SELECT 1` before reuse of a
/// connection that sat idle (`idle_before_ping`), or of any connection
/// while the monitor has seen links die recently. `Verified` would ping on
/// every checkout; never pinging hands dead connections to requests.
pub struct CheckedManager {
    inner: AsyncDieselConnectionManager<AsyncMysqlConnection>,
    monitor: Arc<DbMonitor>,
    idle_before_ping: Duration,
}

impl Manager for CheckedManager {
    type Type = AsyncMysqlConnection;
    type Error = PoolError;

    async fn create(&self) -> Result<AsyncMysqlConnection, PoolError> {
        self.inner.create().await
    }

    async fn recycle(
        &self,
        conn: &mut AsyncMysqlConnection,
        metrics: &Metrics,
    ) -> RecycleResult<PoolError> {
        self.inner.recycle(conn, metrics).await?;
        if metrics.last_used() > self.idle_before_ping || self.monitor.links_suspect() {
            conn.batch_execute("SELECT 1")
                .await
                .map_err(|error| RecycleError::Backend(PoolError::QueryError(error)))?;
        }
        Ok(())
    }
}

pub async fn connect(pool: &DbPool) -> AppResult<DbConn> {
    pool.get()
        .await
        .map_err(|e| AppError::internal(format!("no database connection: {e}")))
}

/// Answers whether the database takes a query now (for `/readyz`).
pub async fn ping(pool: &DbPool) -> AppResult<()> {
    let mut conn = connect(pool).await?;
    diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), &mut conn).await?;
    Ok(())
}

/// The database name of a `mysql://` URL, checked to be a plain identifier
/// so it can be quoted into `CREATE DATABASE`.
pub fn database_name(url: &url::Url) -> Result<String, String> {
    let name = url.path().trim_start_matches('/');
    if name.is_empty() {
        return Err(
            "the URL must name a database, e.g. mysql://root@127.0.0.1:3306/tickets".into(),
        );
    }
    if name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "the database name {name:?} must be 1 to 64 letters, digits or underscores"
        ));
    }
    Ok(name.to_owned())
}

/// Creates the database named by `database_url` when it does not exist yet.
pub async fn create_database_if_missing(database_url: &str) -> AppResult<()> {
    let mut url = url::Url::parse(database_url).map_err(AppError::internal)?;
    let name = database_name(&url).map_err(AppError::internal)?;
    url.set_path("");
    let mut conn = <AsyncMysqlConnection as AsyncConnection>::establish(url.as_str())
        .await
        .map_err(|e| AppError::internal(format!("cannot connect to the database server: {e}")))?;
    conn.batch_execute(&format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    ))
    .await?;
    Ok(())
}

/// Applies pending migrations and returns how many ran. Several processes
/// starting at once on one database take turns through a named lock.
pub async fn run_migrations(database_url: &str) -> AppResult<usize> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || -> AppResult<usize> {
        let mut conn =
            <AsyncConnectionWrapper<AsyncMysqlConnection> as Connection>::establish(&url)
                .map_err(|e| AppError::internal(format!("cannot connect to the database: {e}")))?;
        let got = diesel::select(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Integer>,
        >("GET_LOCK('ticket_reservation.migrations', 60)"))
        .get_result(&mut conn)?;
        named_lock_taken("ticket_reservation.migrations", got)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.len())
            .map_err(|e| AppError::internal(format!("migration failed: {e}")));
        diesel::sql_query("SELECT RELEASE_LOCK('ticket_reservation.migrations')")
            .execute(&mut conn)?;
        applied
    })
    .await
    .map_err(AppError::internal)?
}

/// What `GET_LOCK` answered: 1 when the lock is ours; 0 when another
/// session held it for the whole timeout; NULL on an error. Going on
/// without it would let two processes do the locked work at once.
pub fn named_lock_taken(name: &str, got: Option<i32>) -> AppResult<()> {
    match got {
        Some(1) => Ok(()),
        _ => Err(AppError::internal(format!(
            "another process held the lock {name} too long; start again"
        ))),
    }
}

/// Creates the database if needed and brings its schema up to date.
pub async fn prepare(database_url: &str) -> AppResult<usize> {
    create_database_if_missing(database_url).await?;
    run_migrations(database_url).await
}

/// How many times a transaction that lost a deadlock or a lock wait is run
/// again before the error reaches the caller.
pub const DEADLOCK_RETRIES: usize = 3;

/// Runs `async |conn| body` as a transaction on `$conn`, and runs it again
/// when the database rolled it back for a deadlock or a lock wait timeout:
/// those leave nothing behind, so a rerun is safe. (A macro rather than a
/// function taking a closure: rustc cannot yet prove such futures `Send`.)
#[macro_export]
macro_rules! transaction_with_retry {
    ($conn:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0usize;
        loop {
            let outcome =
                diesel_async::AsyncConnection::transaction::<_, $crate::error::AppError, _>(
                    &mut *$conn,
                    async |$c| $body,
                )
                .await;
            match outcome {
                Err(error) if error.is_retryable() && attempt < $crate::db::DEADLOCK_RETRIES => {
                    attempt += 1;
                    tracing::warn!(
                        ?error,
                        attempt,
                        "transaction rolled back by the database; running it again"
                    );
                }
                outcome => break outcome,
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_granted_named_lock_lets_the_work_go_on() {
        assert!(named_lock_taken("l", Some(1)).is_ok());
        assert!(named_lock_taken("l", Some(0)).is_err(), "timed out");
        assert!(named_lock_taken("l", None).is_err(), "an error in GET_LOCK");
    }
}
