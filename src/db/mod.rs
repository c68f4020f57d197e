//! The connection pool, the embedded migrations and the Diesel schema.

mod monitor;
mod prepared;
pub mod schema;
mod types;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, Object, Pool, QueueMode, RecycleError, RecycleResult};
use diesel::result::QueryResult;
use diesel::sql_types::Text;
use diesel::{Connection, ConnectionError, RunQueryDsl as _};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

pub use monitor::DbMonitor;
pub use prepared::{Prepared, padded};
pub use types::DbUuid;

use crate::error::{AppError, AppResult};

pub type DbPool = Pool<CheckedManager>;
pub type DbConn = Object<CheckedManager>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long a pooled session may sit idle inside an open transaction before
/// the database ends the session and rolls the transaction back. Every
/// transaction here sends its statements back to back; one idle for
/// seconds belongs to a process that froze or lost its network, and its
/// locks (the line's counters above all) must not stop everyone else.
pub const IDLE_TRANSACTION_SECONDS: u32 = 5;

/// How long a request waits for a free connection before failing.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// A pooled connection last handed out this long ago is pinged before
/// reuse: the server or a proxy on the way may have closed it meanwhile
/// (MySQL's `wait_timeout`, a restart, a failover), and that should cost a
/// round trip, not a client's request. Connections in steady use are
/// handed out far more often, so hot paths never pay the ping.
pub const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// The shape of a pool and of its sessions.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub size: u32,
    /// How long a statement waits for a row lock before it fails.
    pub lock_wait_seconds: u32,
    /// Connections idle longer than this are pinged before reuse.
    pub idle_before_ping: Duration,
}

impl PoolOptions {
    /// Requests: a hold or a payment queues behind a winner's commit for
    /// milliseconds; the lock wait only turns an unexpected convoy into an
    /// error rather than a hang.
    pub fn requests(size: u32) -> Self {
        Self {
            size,
            lock_wait_seconds: 10,
            idle_before_ping: IDLE_BEFORE_PING,
        }
    }

    /// Background loops: a turn that waits on a lock gives up quickly,
    /// since the next turn comes within a second anyway.
    pub fn jobs() -> Self {
        Self {
            size: 2,
            lock_wait_seconds: 2,
            idle_before_ping: IDLE_BEFORE_PING,
        }
    }
}

/// Session settings every pooled connection starts with. READ COMMITTED
/// because every rule here is enforced by conditional writes and row locks,
/// not by snapshots, and it keeps InnoDB from taking gap locks on hot paths.
async fn set_up_session(
    conn: &mut AsyncMysqlConnection,
    lock_wait_seconds: u32,
) -> QueryResult<()> {
    conn.batch_execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await?;
    conn.batch_execute(&format!(
        "SET SESSION innodb_lock_wait_timeout = {lock_wait_seconds}"
    ))
    .await?;
    let version: String = diesel_async::RunQueryDsl::get_result(
        diesel::select(diesel::dsl::sql::<Text>("VERSION()")),
        conn,
    )
    .await?;
    // MySQL has no bound on idle transactions alone; its bound on idle
    // sessions is the nearest (the pool pings sessions idle half as long).
    conn.batch_execute(&if version.contains("MariaDB") {
        format!("SET SESSION idle_transaction_timeout = {IDLE_TRANSACTION_SECONDS}")
    } else {
        format!(
            "SET SESSION wait_timeout = {}",
            2 * IDLE_BEFORE_PING.as_secs()
        )
    })
    .await
}

pub fn build_pool(
    database_url: &str,
    options: PoolOptions,
    monitor: Arc<DbMonitor>,
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
            set_up_session(&mut conn, options.lock_wait_seconds)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            conn.set_instrumentation(monitor.instrumentation());
            Ok(conn)
        }
        .boxed()
    });
    let manager = CheckedManager {
        inner: AsyncDieselConnectionManager::new_with_config(database_url, config),
        monitor,
        idle_before_ping: options.idle_before_ping,
    };
    Pool::builder(manager)
        // The most recently returned connection goes out first, so light
        // traffic keeps reusing a few fresh ones (no ping) and only the
        // rarely needed rest ages past `idle_before_ping`.
        .queue_mode(QueueMode::Lifo)
        .max_size(options.size as usize)
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

async fn connect(pool: &DbPool) -> AppResult<DbConn> {
    pool.get()
        .await
        .map_err(|e| AppError::internal(format!("no database connection: {e}")))
}

/// Work to do on one pooled connection: `move |conn| async move { .. }.boxed()`.
pub trait DbWork<T>:
    for<'c> FnOnce(&'c mut AsyncMysqlConnection) -> BoxFuture<'c, AppResult<T>> + Send + 'static
{
}

impl<T, F> DbWork<T> for F where
    F: for<'c> FnOnce(&'c mut AsyncMysqlConnection) -> BoxFuture<'c, AppResult<T>> + Send + 'static
{
}

/// Runs `work` on a pooled connection, on a task of its own, and answers
/// what it returned. The only way to a pooled connection.
///
/// A request's future is dropped at whatever await it stands when its
/// client hangs up. Dropped halfway, a statement leaves its connection with
/// half a packet sent or an answer unread, and a transaction stays open
/// with its locks: the pool would hand that connection to the next request,
/// which would read the previous one's answer. On its own task the work
/// always runs to the end (statement read whole, transaction committed or
/// rolled back) whoever still waits for it; a connection whose work
/// panicked is taken out of the pool instead of going back.
pub async fn run<T: Send + 'static>(pool: &DbPool, work: impl DbWork<T>) -> AppResult<T> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut conn = connect(&pool).await?;
        let outcome = AssertUnwindSafe(work(&mut conn)).catch_unwind().await;
        outcome.unwrap_or_else(|_| {
            drop(Object::take(conn));
            Err(AppError::internal("database work panicked"))
        })
    })
    .await
    .map_err(AppError::internal)?
}

/// Answers whether the database takes a query now (for `/readyz`).
pub async fn ping(pool: &DbPool) -> AppResult<()> {
    run(pool, |conn| {
        async move {
            diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), conn).await?;
            Ok(())
        }
        .boxed()
    })
    .await
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
