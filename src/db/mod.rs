//! The connection pool, the embedded migrations and the Diesel schema.

pub mod galera;
pub mod hosts;
pub mod lease;
pub mod migrate;
mod monitor;
mod prepared;
pub mod schema;
mod types;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, Object, Pool, QueueMode, RecycleError, RecycleResult};
use diesel::ConnectionError;
use diesel::result::QueryResult;
use diesel::sql_types::Text;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

pub use hosts::Hosts;
pub use monitor::DbMonitor;
pub use prepared::{Prepared, padded, power_of_two_pieces};
pub use types::DbUuid;

use crate::error::{AppError, AppResult};

pub type DbPool = Pool<CheckedManager>;
pub type DbConn = Object<CheckedManager>;

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
    /// Whether several hosts are tried in sorted order rather than as given
    /// (`line`).
    pub hosts_sorted: bool,
    /// Connections older than this are closed when handed back and opened
    /// anew (`line`: so that after a failover they return to the first
    /// host once it is back, on every server).
    pub max_age: Option<Duration>,
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
            hosts_sorted: false,
            max_age: None,
        }
    }

    /// The line's writes (`AppState::line_pool`): one issue batch and one
    /// admission turn at a time, and now and then an organizer's change.
    pub fn line() -> Self {
        Self {
            size: 4,
            lock_wait_seconds: 10,
            idle_before_ping: IDLE_BEFORE_PING,
            hosts_sorted: true,
            max_age: Some(LINE_CONNECTION_AGE),
        }
    }

    /// Background loops: a turn that waits on a lock gives up quickly,
    /// since the next turn comes within a second anyway.
    pub fn jobs() -> Self {
        Self {
            size: 2,
            lock_wait_seconds: 2,
            idle_before_ping: IDLE_BEFORE_PING,
            hosts_sorted: false,
            max_age: None,
        }
    }
}

/// Session settings every pooled connection starts with. READ COMMITTED
/// because every rule here is enforced by conditional writes and row locks,
/// not by snapshots, and it keeps InnoDB from taking gap locks on hot paths.
/// On a Galera node, reads are causal too (`galera`).
async fn set_up_session(
    conn: &mut AsyncMysqlConnection,
    lock_wait_seconds: u32,
    on_galera: bool,
) -> QueryResult<()> {
    conn.batch_execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await?;
    if on_galera {
        conn.batch_execute("SET SESSION wsrep_sync_wait = 1")
            .await?;
    }
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

/// How long a connection of the line pool lives: the longest the line's
/// writes stay on a later host after the first one is back.
const LINE_CONNECTION_AGE: Duration = Duration::from_secs(10);

/// How long opening a connection to one host may take before the next
/// host is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a session, set up for work, on the first host of `hosts` that
/// answers and can take work; a host that cannot is passed over for a while.
pub async fn open_session(
    hosts: &Hosts,
    lock_wait_seconds: u32,
) -> Result<AsyncMysqlConnection, ConnectionError> {
    let mut last_error = ConnectionError::BadConnection("no database host".to_owned());
    for (index, url) in hosts.in_order() {
        match open_on_host(url, lock_wait_seconds).await {
            Ok(conn) => return Ok(conn),
            Err(error) => {
                if hosts.len() > 1 {
                    tracing::warn!(host = index + 1, %error, "a database host cannot take work; trying the next");
                }
                hosts.failed(index);
                last_error = error;
            }
        }
    }
    Err(last_error)
}

/// Connecting and setting the session up together: a host that accepts the
/// connection and then hangs (or lags behind with causal reads on) is
/// passed over like one that refuses it.
async fn open_on_host(
    url: &str,
    lock_wait_seconds: u32,
) -> Result<AsyncMysqlConnection, ConnectionError> {
    tokio::time::timeout(CONNECT_TIMEOUT, open_and_set_up(url, lock_wait_seconds))
        .await
        .map_err(|_| ConnectionError::BadConnection("timed out connecting".to_owned()))?
}

async fn open_and_set_up(
    url: &str,
    lock_wait_seconds: u32,
) -> Result<AsyncMysqlConnection, ConnectionError> {
    let mut conn = <AsyncMysqlConnection as AsyncConnection>::establish(url).await?;
    let state = galera::node_state(&mut conn)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    if let galera::NodeState::NotReady(why) = &state {
        return Err(ConnectionError::BadConnection(format!(
            "a Galera node that cannot take work ({why})"
        )));
    }
    set_up_session(
        &mut conn,
        lock_wait_seconds,
        state == galera::NodeState::Ready,
    )
    .await
    .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// The hosts of a `DATABASE_URL` that may name several.
pub fn hosts_of(database_url: &str) -> AppResult<Hosts> {
    hosts::single_host_urls(database_url)
        .map(Hosts::new)
        .map_err(AppError::internal)
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
    let mut hosts = hosts_of(database_url)?;
    if options.hosts_sorted {
        hosts = hosts.sorted();
    }
    let hosts = Arc::new(hosts);
    // The manager's own URL is ignored: each new connection picks its host.
    config.custom_setup = Box::new(move |_url| {
        let monitor = Arc::clone(&setup_monitor);
        let hosts = Arc::clone(&hosts);
        async move {
            let mut conn = open_session(&hosts, options.lock_wait_seconds).await?;
            conn.set_instrumentation(monitor.instrumentation());
            Ok(conn)
        }
        .boxed()
    });
    let manager = CheckedManager {
        inner: AsyncDieselConnectionManager::new_with_config(database_url, config),
        monitor,
        idle_before_ping: options.idle_before_ping,
        max_age: options.max_age,
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
    max_age: Option<Duration>,
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
        if self.max_age.is_some_and(|max_age| metrics.age() > max_age) {
            return Err(RecycleError::message("the connection reached its age"));
        }
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
        .map_err(|e| AppError::Unavailable(format!("no database connection: {e}")))
}

/// A database error that says the database could not be reached or could
/// not take work, rather than anything about the request: the link died
/// (a node killed, a restart), or a Galera node left the primary component.
pub fn is_unavailable(error: &diesel::result::Error) -> bool {
    monitor::is_link_failure(error)
        || matches!(
            error,
            diesel::result::Error::DatabaseError(_, info)
                if ["WSREP has not yet prepared node", "Server shutdown in progress", "Connection was killed"]
                    .iter()
                    .any(|sign| info.message().contains(sign))
        )
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
    let mut servers = Vec::new();
    let mut name = String::new();
    for host_url in hosts::single_host_urls(database_url).map_err(AppError::internal)? {
        let mut url = url::Url::parse(&host_url).map_err(AppError::internal)?;
        name = database_name(&url).map_err(AppError::internal)?;
        url.set_path("");
        servers.push(url.to_string());
    }
    let mut conn = open_session(&Hosts::new(servers), PoolOptions::jobs().lock_wait_seconds)
        .await
        .map_err(|e| AppError::internal(format!("cannot connect to the database server: {e}")))?;
    conn.batch_execute(&format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    ))
    .await?;
    Ok(())
}

/// Applies pending migrations and returns how many ran. Processes starting
/// together, on one database server or on several nodes of a cluster, take
/// turns through the startup lease; a migration that a crash interrupted is
/// resumed where it stopped (`migrate`).
pub async fn run_migrations(database_url: &str) -> AppResult<usize> {
    let hosts = Arc::new(hosts_of(database_url)?);
    // Reads are causal on Galera: the previous holder of the lease may have
    // recorded its migrations through another node.
    let mut conn = open_session(&hosts, PoolOptions::jobs().lock_wait_seconds)
        .await
        .map_err(|e| AppError::internal(format!("cannot connect to the database: {e}")))?;
    lease::prepare_table(&mut conn).await?;
    let lease = lease::acquire(&mut conn, Arc::clone(&hosts), "migrations", MIGRATION_WAIT).await?;
    let applied = migrate::run_pending(&mut conn, &lease).await;
    lease.release(&mut conn).await?;
    applied
}

/// How long a starting process waits for another's migrations.
const MIGRATION_WAIT: Duration = Duration::from_secs(300);

/// Creates the database if needed and brings its schema up to date.
/// Every step can be run again, so one the database rolled back (on
/// Galera, DDL of several nodes at once meets as a deadlock) is.
pub async fn prepare(database_url: &str) -> AppResult<usize> {
    let mut attempt = 0;
    loop {
        let prepared = async {
            create_database_if_missing(database_url).await?;
            run_migrations(database_url).await
        }
        .await;
        match prepared {
            Err(error) if error.is_retryable() && attempt < STARTUP_RETRIES => {
                attempt += 1;
                tracing::warn!(error = %error.detail(), attempt, "preparing the database again");
                tokio::time::sleep(retry_pause(attempt)).await;
            }
            prepared => return prepared,
        }
    }
}

/// How many times preparing the database is started again after the
/// database rolled a step back.
const STARTUP_RETRIES: usize = 10;

/// How many times a transaction that lost a deadlock or a lock wait is run
/// again before the error reaches the caller.
pub const DEADLOCK_RETRIES: usize = 8;

/// The pause before the `attempt`th rerun of a rolled-back transaction: a
/// few random milliseconds, growing, so that writers that collided on one
/// row (on Galera, on different nodes) do not collide again in step.
pub fn retry_pause(attempt: usize) -> Duration {
    let ceiling_ms = 2u64 << attempt.min(6);
    Duration::from_micros(rand::random_range(0..ceiling_ms * 1000))
}

/// Runs `async |conn| body` as a transaction on `$conn`, and runs it again
/// when the database rolled it back (`AppError::is_retryable_transaction`):
/// that leaves nothing behind, so a rerun is safe. Every error of the body
/// ends the transaction; none is taken as leave to carry on in it. (A macro rather than a
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
                Err(error)
                    if error.is_retryable_transaction()
                        && attempt < $crate::db::DEADLOCK_RETRIES =>
                {
                    attempt += 1;
                    tracing::warn!(
                        error = %error.detail(),
                        attempt,
                        "transaction rolled back by the database; running it again"
                    );
                    tokio::time::sleep($crate::db::retry_pause(attempt)).await;
                }
                outcome => break outcome,
            }
        }
    }};
}
