//! `ticket-reservation`: a concert ticketing GraphQL server with a fair
//! waiting line, seat holds that lapse, and exactly-once payment.

pub mod accounts;
pub mod batch;
pub mod booking;
pub mod catalogue;
pub mod check;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod money;
pub mod queue;
pub mod secrets;
pub mod server;
pub mod wallet;

use std::sync::Arc;

use accounts::Accounts;
use booking::service::{BookingSettings, Holds};
use catalogue::directory::SeatDirectory;
use config::Config;
use db::{DbMonitor, DbPool, PoolOptions};
use error::AppResult;
use limits::RateLimits;
use queue::runtime::QueueRuntime;
use queue::service::QueueSettings;

/// Everything a request or a background job needs, behind one `Arc`: a
/// request clones it several times (axum's `State`, the schema's data, the
/// loaders), and one reference count is cheaper than a dozen plus the
/// cancellation token's lock.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What `AppState` holds.
pub struct AppParts {
    pub config: Arc<Config>,
    pub pool: DbPool,
    /// Connections of the background loops, whose lock waits are short.
    pub jobs_pool: DbPool,
    /// Connections for the line's own writes: `issueToken` batches,
    /// admission turns, line controls. Every one of them writes the line's
    /// one counter row. With several database hosts (a Galera cluster)
    /// these connections go to the first host of the *sorted* list that can
    /// take work, the same host for every server whatever order its own
    /// `DATABASE_URL` lists them in: there the writers of that row queue on
    /// its lock instead of meeting at certification, where all but one
    /// would be rolled back. On one database it is just a small pool.
    pub line_pool: DbPool,
    pub db_monitor: Arc<DbMonitor>,
    /// Who may act for a user (`AUTH_MODE`).
    pub accounts: Arc<Accounts>,
    /// Per-address limits of requests and entries.
    pub limits: Arc<RateLimits>,
    pub queue: Arc<QueueRuntime>,
    pub booking: BookingSettings,
    /// Holds, taken in shared transactions.
    pub holds: Arc<Holds>,
    /// The immutable facts of seats that holds need, kept in memory.
    pub seats: Arc<SeatDirectory>,
    /// Tells long-lived work (jobs, websockets) to stop, and waits for it.
    pub lifecycle: Lifecycle,
}

/// Shutdown for work that outlives a request: cancelling `stop` ends the
/// background jobs and closes websockets with "going away"; `connections`
/// lets the server wait for those closes to go out.
#[derive(Clone, Default)]
pub struct Lifecycle {
    pub stop: tokio_util::sync::CancellationToken,
    pub connections: tokio_util::task::TaskTracker,
}

impl AppState {
    /// Prepares the database (create, migrate), opens the pool and starts
    /// the queue's batchers. Background jobs are started separately.
    pub async fn start(config: Config) -> AppResult<Self> {
        // Settings that cannot work stop the start before any I/O.
        let accounts = Accounts::from_config(&config)?;
        let applied = db::prepare(&config.database_url).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let db_monitor = Arc::new(DbMonitor::default());
        let pool = db::build_pool(
            &config.database_url,
            PoolOptions::requests(config.database_pool_size),
            Arc::clone(&db_monitor),
        )?;
        let jobs_pool = db::build_pool(
            &config.database_url,
            PoolOptions::jobs(),
            Arc::clone(&db_monitor),
        )?;
        let line_pool = db::build_pool(
            &config.database_url,
            PoolOptions::line(),
            Arc::clone(&db_monitor),
        )?;
        let accounts = Arc::new(accounts.with_pool(&pool));
        let secret = secrets::token_secret(&pool, config.token_secret.as_ref()).await?;
        let queue = Arc::new(QueueRuntime::start(
            pool.clone(),
            line_pool.clone(),
            queue_settings(&config),
            &secret,
        ));
        let booking = BookingSettings {
            hold: duration(config.hold_duration()),
            max_holds_per_user: config.max_holds_per_user,
            max_tickets_per_user: config.max_tickets_per_user,
        };
        let holds = Arc::new(Holds::start(pool.clone(), booking));
        let limits = Arc::new(RateLimits::from_config(&config));
        Ok(Self(Arc::new(AppParts {
            limits,
            config: Arc::new(config),
            pool,
            jobs_pool,
            line_pool,
            db_monitor,
            accounts,
            queue,
            booking,
            holds,
            seats: Arc::new(SeatDirectory::default()),
            lifecycle: Lifecycle::default(),
        })))
    }
}

fn queue_settings(config: &Config) -> QueueSettings {
    QueueSettings {
        max_active: u64::from(config.max_active_tokens),
        active_ttl: duration(config.active_token_duration()),
        admit_interval: config.admit_interval(),
    }
}

fn duration(span: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX)
}
