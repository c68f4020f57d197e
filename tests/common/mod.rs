//! Test support: a fresh database per test, the real server on a free
//! port, and helpers that make a test read like the scenario it checks.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fixtures;
pub mod process;
pub mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use serde_json::{Value, json};
use ticket_reservation::AppState;
use ticket_reservation::config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The server the tests use: DATABASE_URL's host and credentials, or the
/// local MariaDB. Each test gets its own database on it.
pub fn server_url() -> url::Url {
    let configured = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/ticket_reservation".to_owned());
    let mut url = url::Url::parse(&configured).expect("DATABASE_URL is a URL");
    url.set_path("");
    url
}

/// A database created for one test, migrated, and dropped when the test ends.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut url = server_url();
        url.set_path(&name);
        let url = url.to_string();
        ticket_reservation::db::prepare(&url)
            .await
            .expect("test database prepared");
        Self { url, name }
    }

    /// A name for a database that does not exist yet (dropped at the end
    /// like the others), for tests of how servers create and migrate it.
    pub fn unprepared() -> Self {
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut url = server_url();
        url.set_path(&name);
        Self {
            url: url.to_string(),
            name,
        }
    }

    pub async fn connect(&self) -> AsyncMysqlConnection {
        AsyncMysqlConnection::establish(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async code: a private runtime on its own thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = AsyncMysqlConnection::establish(server_url().as_str())
                    .await
                    .map_err(std::io::Error::other)?;
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Settings for a test server: everything explicit, nothing from the
/// environment but the database server.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::from_args(["ticket-reservation"]).expect("default settings");
    config.database_url = database_url.into();
    config.database_pool_size = 16;
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    config.max_active_tokens = 1000;
    config.active_token_seconds = 600;
    config.hold_seconds = 300;
    config.admit_interval_ms = 1000;
    config.max_holds_per_user = 4;
    config.seed_demo = false;
    config.token_secret = None;
    // Tests drive the server from one address, far past what one fan
    // sends: the per-address limits are off here, and on in tests/limits.rs.
    config.rate_limit_per_minute = 0;
    config.entry_limit_per_minute = 0;
    config
}

/// The real router on a free port, with or without the background jobs.
pub struct TestServer {
    pub state: AppState,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: CancellationToken,
    /// Ends the background jobs alone, as if they had died.
    pub jobs_stop: CancellationToken,
    pub db: TestDb,
}

pub struct ServerOptions {
    pub jobs: bool,
    pub configure: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            jobs: false,
            configure: Box::new(|_| {}),
        }
    }
}

impl TestServer {
    /// A server without background jobs: lapses happen only by reading.
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn with_settings(configure: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        Self::start_with(ServerOptions {
            jobs: false,
            configure: Box::new(configure),
        })
        .await
    }

    pub async fn with_jobs(configure: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        Self::start_with(ServerOptions {
            jobs: true,
            configure: Box::new(configure),
        })
        .await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        let db = TestDb::new().await;
        let mut config = test_config(&db.url);
        (options.configure)(&mut config);
        let state = AppState::start(config).await.expect("server state");
        let stop = state.lifecycle.stop.clone();
        let jobs_stop = stop.child_token();
        if options.jobs {
            ticket_reservation::jobs::spawn_until(&state, &jobs_stop);
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = ticket_reservation::http::app(state.clone());
        let shutdown = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .ok();
        });
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            state,
            addr,
            http,
            stop,
            jobs_stop,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a GraphQL request, with the bearer token when given.
    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Gql {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        Gql(response.json().await.expect("a JSON answer"))
    }

    /// POSTs a request body as it is (an operationName, say); the answer.
    pub async fn post_json(&self, body: &Value) -> Value {
        let response = self.http.post(self.url("/graphql")).json(body).send();
        response
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("JSON")
    }

    /// `GET /graphql?query=`; the answer.
    pub async fn get_query(&self, query: &str) -> Value {
        let response = self
            .http
            .get(self.url("/graphql"))
            .query(&[("query", query)])
            .send();
        response
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("JSON")
    }

    /// SQL statements the server has sent since it started.
    pub fn statements(&self) -> u64 {
        self.state.db_monitor.statements()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A GraphQL response.
#[derive(Debug, Clone)]
pub struct Gql(pub Value);

impl Gql {
    pub fn data(&self, field: &str) -> &Value {
        assert!(self.errors().is_empty(), "unexpected errors: {}", self.0);
        &self.0["data"][field]
    }

    pub fn errors(&self) -> Vec<Value> {
        self.0["errors"].as_array().cloned().unwrap_or_default()
    }

    /// The code of the first error, or None when the request succeeded.
    pub fn code(&self) -> Option<String> {
        self.errors()
            .first()
            .and_then(|error| error["extensions"]["code"].as_str().map(str::to_owned))
    }

    pub fn expect_code(&self, code: &str) -> &Self {
        assert_eq!(self.code().as_deref(), Some(code), "answer: {}", self.0);
        self
    }

    pub fn message(&self) -> String {
        self.errors()
            .first()
            .and_then(|error| error["message"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Runs `ticket-reservation check` against a database and returns whether
/// it found nothing, with its output.
pub fn run_check(database_url: &str, max_active_tokens: u32) -> (bool, String) {
    run_check_with(
        database_url,
        &[("MAX_ACTIVE_TOKENS", max_active_tokens.to_string())],
    )
}

/// `ticket-reservation check` with these settings of the server under test.
pub fn run_check_with(database_url: &str, settings: &[(&str, String)]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ticket-reservation"))
        .arg("check")
        .env("DATABASE_URL", database_url)
        .envs(settings.iter().map(|(name, value)| (*name, value.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ticket-reservation check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Asserts `ticket-reservation check` finds no broken invariant.
pub fn assert_invariants_hold(server: &TestServer) {
    let config = &server.state.config;
    let (clean, report) = run_check_with(
        &server.db.url,
        &[
            ("MAX_ACTIVE_TOKENS", config.max_active_tokens.to_string()),
            (
                "MAX_TICKETS_PER_USER",
                config.max_tickets_per_user.to_string(),
            ),
        ],
    );
    assert!(clean, "check found violations:\n{report}");
}

/// Runs `count` futures at once and collects their outputs in order.
pub async fn concurrently<F, T>(count: usize, make: impl Fn(usize) -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..count).map(|i| tokio::spawn(make(i))).collect();
    let mut outputs = Vec::with_capacity(count);
    for task in tasks {
        outputs.push(task.await.expect("task finished"));
    }
    outputs
}
