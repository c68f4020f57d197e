//! Load-generator support: a fresh database, the real server binary as a
//! child process, bulk fixtures written straight to MariaDB, a GraphQL
//! client, and latency statistics. Nothing here times a test; it measures.

#![allow(
    dead_code,
    clippy::print_stdout,
    reason = "load generators print their figures"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use ticket_reservation::queue::token::{TokenClaims, TokenSealer};
use uuid::Uuid;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Every bench server signs with this key, so fixtures can sign tokens.
pub const TOKEN_SECRET: &str = "benchmark-token-secret-benchmark-token-secret";

pub fn server_url() -> url::Url {
    let configured = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/ticket_reservation".to_owned());
    let mut url = url::Url::parse(&configured).expect("DATABASE_URL is a URL");
    url.set_path("");
    url.set_query(None);
    url
}

/// A database for one benchmark run, migrated, dropped at the end.
pub struct BenchDb {
    pub url: String,
    pub name: String,
    pub pool: mysql_async::Pool,
}

impl BenchDb {
    pub async fn create() -> BenchResult<Self> {
        let name = format!("bench_{}", Uuid::new_v4().simple());
        let mut url = server_url();
        url.set_path(&name);
        let url = url.to_string();
        ticket_reservation::db::prepare(&url)
            .await
            .map_err(|e| e.detail())?;
        let opts = mysql_async::Opts::from_url(&url)?;
        let pool =
            mysql_async::Pool::new(mysql_async::OptsBuilder::from_opts(opts).pool_opts(
                mysql_async::PoolOpts::default().with_constraints(
                    mysql_async::PoolConstraints::new(1, 128).ok_or("pool bounds")?,
                ),
            ));
        Ok(Self { url, name, pool })
    }

    pub async fn execute(&self, sql: &str) -> BenchResult<()> {
        self.pool.get_conn().await?.query_drop(sql).await?;
        Ok(())
    }

    pub async fn number(&self, sql: &str) -> BenchResult<i64> {
        let value: Option<i64> = self.pool.get_conn().await?.query_first(sql).await?;
        Ok(value.unwrap_or(0))
    }

    pub async fn drop_database(self) -> BenchResult<()> {
        self.execute(&format!("DROP DATABASE `{}`", self.name))
            .await?;
        self.pool.disconnect().await?;
        Ok(())
    }
}

/// `ticket-reservation serve` as a child process.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
}

/// The server this bench drives: the one built with it, or the binary that
/// `BENCH_SERVER_BIN` names, to compare another build side by side with the
/// same load generator (e.g. the commit before a change).
fn server_binary() -> String {
    std::env::var("BENCH_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ticket-reservation").to_owned())
}

impl ServerProcess {
    pub fn start(database_url: &str, settings: &[(&str, &str)]) -> BenchResult<Self> {
        Self::start_under(&[], database_url, settings)
    }

    /// `start`, with the server run by `wrapper` (e.g. `valgrind
    /// --tool=callgrind`), which must run it in its own process.
    pub fn start_under(
        wrapper: &[String],
        database_url: &str,
        settings: &[(&str, &str)],
    ) -> BenchResult<Self> {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(server_binary());
                command
            }
            None => Command::new(server_binary()),
        };
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            // Driven from one address: the per-address limits are off.
            .env("RATE_LIMIT_PER_MINUTE", "0")
            .env("ENTRY_LIMIT_PER_MINUTE", "0")
            .env("TOKEN_SECRET", TOKEN_SECRET)
            .env("SEED_DEMO", "false")
            .env("RUST_LOG", "warn,ticket_reservation::server=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in settings {
            command.env(name, value);
        }
        let mut child = command.spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("GraphiQL at http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = port_tx.send(port.parse::<u16>().unwrap_or(0));
                } else if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("server: {line}");
                }
            }
        });
        let port = port_rx.recv_timeout(Duration::from_secs(120))?;
        Ok(Self { child, port })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// One counter or gauge from /metrics.
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> BenchResult<u64> {
        let text = http.get(self.url("/metrics")).send().await?.text().await?;
        let wanted = format!("ticket_reservation_{name} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&wanted))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| format!("no metric {name}").into())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// POSTs one GraphQL request; the answer's JSON.
pub async fn gql(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
    token: Option<&str>,
) -> BenchResult<Value> {
    let mut request = http
        .post(url)
        .json(&json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?.json().await?)
}

pub fn error_code(answer: &Value) -> Option<&str> {
    answer["errors"][0]["extensions"]["code"].as_str()
}

/// Inserts `count` users with ids `first..first+count` (as UUIDs from
/// the number) and returns their ids. Multi-row INSERTs of 2,000.
pub async fn insert_users(
    db: &BenchDb,
    first: u64,
    count: u64,
    balance: &str,
) -> BenchResult<Vec<Uuid>> {
    let ids: Vec<Uuid> = (first..first + count)
        .map(|n| Uuid::from_u128(0xB0_0000_0000_0000_0000_0000_0000_0000 + u128::from(n)))
        .collect();
    let mut conn = db.pool.get_conn().await?;
    for chunk in ids.chunks(2000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|id| {
                format!(
                    "(UNHEX('{}'), 'bench', {balance}, UTC_TIMESTAMP(6))",
                    id.simple()
                )
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO users (id, name, balance, created_at) VALUES {}",
            values.join(",")
        ))
        .await?;
        if balance != "0" {
            let entries: Vec<String> = chunk
                .iter()
                .map(|id| {
                    format!(
                        "(UNHEX('{}'), 'CHARGE', {balance}, {balance}, UTC_TIMESTAMP(6))",
                        id.simple()
                    )
                })
                .collect();
            conn.query_drop(format!(
                "INSERT INTO balance_entries (user_id, kind, amount, balance_after, at) VALUES {}",
                entries.join(",")
            ))
            .await?;
        }
    }
    Ok(ids)
}

/// Puts these users in line as tokens `first_seq..`, ACTIVE (for an hour)
/// or WAITING, moves the line's counters to match, and returns the signed
/// bearer tokens the server will accept.
pub async fn insert_tokens(
    db: &BenchDb,
    users: &[Uuid],
    first_seq: u64,
    active: bool,
) -> BenchResult<Vec<String>> {
    let sealer = TokenSealer::new(TOKEN_SECRET.as_bytes());
    let mut conn = db.pool.get_conn().await?;
    let mut tokens = Vec::with_capacity(users.len());
    for (chunk_index, chunk) in users.chunks(2000).enumerate() {
        let mut values = Vec::with_capacity(chunk.len());
        for (i, user) in chunk.iter().enumerate() {
            let seq = first_seq + (chunk_index * 2000 + i) as u64;
            let nonce: [u8; 16] = rand::random();
            let issued_at = ticket_reservation::clock::now();
            tokens.push(sealer.seal(&TokenClaims {
                seq,
                user_id: *user,
                issued_at,
                nonce,
            }));
            let (status, admitted, expires) = if active {
                (
                    "ACTIVE",
                    "UTC_TIMESTAMP(6)",
                    "UTC_TIMESTAMP(6) + INTERVAL 1 HOUR",
                )
            } else {
                ("WAITING", "NULL", "NULL")
            };
            values.push(format!(
                "({seq}, UNHEX('{}'), UNHEX('{}'), '{status}', '{}', {admitted}, {expires})",
                user.simple(),
                hex(&nonce),
                issued_at.format("%Y-%m-%d %H:%M:%S%.6f"),
            ));
        }
        conn.query_drop(format!(
            "INSERT INTO queue_tokens (seq, user_id, nonce, status, issued_at, admitted_at, expires_at) VALUES {}",
            values.join(",")
        ))
        .await?;
    }
    let last = first_seq + users.len() as u64 - 1;
    let cursor = if active {
        format!(", admitted_through_seq = {last}")
    } else {
        String::new()
    };
    conn.query_drop(format!(
        "UPDATE queue_state SET last_issued_seq = {last}{cursor}"
    ))
    .await?;
    Ok(tokens)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A concert with `dates` dates of 50 seats each; returns the date ids.
pub async fn insert_concert(db: &BenchDb, dates: u64) -> BenchResult<Vec<u64>> {
    let mut conn = db.pool.get_conn().await?;
    conn.query_drop("INSERT INTO concerts (name, venue, created_at) VALUES ('Bench Tour', 'Bench Arena', UTC_TIMESTAMP(6))")
        .await?;
    let concert: u64 = conn
        .query_first("SELECT LAST_INSERT_ID()")
        .await?
        .ok_or("no concert id")?;
    let mut ids = Vec::new();
    for day in 0..dates {
        conn.query_drop(format!(
            "INSERT INTO concert_dates (concert_id, starts_at) VALUES ({concert}, UTC_TIMESTAMP(6) + INTERVAL {} HOUR)",
            24 + day
        ))
        .await?;
        let date: u64 = conn
            .query_first("SELECT LAST_INSERT_ID()")
            .await?
            .ok_or("no date id")?;
        let seats: Vec<String> = (1..=50)
            .map(|n| format!("({date}, {n}, 1000.00)"))
            .collect();
        conn.query_drop(format!(
            "INSERT INTO seats (concert_date_id, number, price) VALUES {}",
            seats.join(",")
        ))
        .await?;
        ids.push(date);
    }
    Ok(ids)
}

/// Latencies of one phase, and how long the phase took.
pub struct Phase {
    pub name: String,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Phase {
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }

    pub fn report(&self) -> String {
        format!(
            "{:<44} {:>8} ops  {:>9.0} /s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            self.name,
            self.latencies.len(),
            self.per_second(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
        )
    }
}

/// Runs `work(i)` for i in 0..total from `clients` concurrent workers and
/// times each call.
pub async fn run_phase<F, Fut>(name: &str, clients: usize, total: usize, work: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = std::sync::Arc::new(work);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (work, next) = (std::sync::Arc::clone(&work), std::sync::Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let began = Instant::now();
                    work(i).await;
                    latencies.push(began.elapsed());
                }
            })
        })
        .collect();
    gather(name, started, workers).await
}

/// Runs `work(connection, i)` for i in 0..total straight against MariaDB,
/// one worker per connection (each keeping its connection and prepared
/// statements), and times each call: the bare SQL the benches compare with.
/// `work` hands the connection back when it is done.
pub async fn run_on_connections<F, Fut>(
    name: &str,
    connections: Vec<mysql_async::Conn>,
    total: usize,
    work: F,
) -> Phase
where
    F: Fn(mysql_async::Conn, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = mysql_async::Conn> + Send,
{
    let work = std::sync::Arc::new(work);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = connections
        .into_iter()
        .map(|mut conn| {
            let (work, next) = (std::sync::Arc::clone(&work), std::sync::Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let began = Instant::now();
                    conn = work(conn, i).await;
                    latencies.push(began.elapsed());
                }
            })
        })
        .collect();
    gather(name, started, workers).await
}

/// `count` connections of `pool`, opened before a phase starts.
pub async fn connections(
    pool: &mysql_async::Pool,
    count: usize,
) -> BenchResult<Vec<mysql_async::Conn>> {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        connections.push(pool.get_conn().await?);
    }
    Ok(connections)
}

/// Runs `work(i)` from `clients` workers for `duration`; i counts calls.
pub async fn run_for<F, Fut>(name: &str, clients: usize, duration: Duration, work: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = std::sync::Arc::new(work);
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|client| {
            let work = std::sync::Arc::clone(&work);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = client;
                while started.elapsed() < duration {
                    let began = Instant::now();
                    work(i).await;
                    latencies.push(began.elapsed());
                    i += clients;
                }
                latencies
            })
        })
        .collect();
    gather(name, started, workers).await
}

/// CPU seconds a process has used so far (user + system), from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits until the local database has finished the background work a bulk
/// insert leaves (InnoDB's purge and page flushing): until it uses under
/// 5 % of a core over a second, for at most a minute. Phases compared with
/// each other then start from the same quiet database. How long it took.
pub async fn settle_database() -> Duration {
    let began = Instant::now();
    let Some(pid) = database_pid() else {
        return Duration::ZERO;
    };
    while began.elapsed() < Duration::from_secs(60) {
        let before = cpu_seconds(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if cpu_seconds(pid) - before < 0.05 {
            break;
        }
    }
    began.elapsed()
}

/// The database server's process id, when it runs on this machine.
pub fn database_pid() -> Option<u32> {
    let output = Command::new("pidof")
        .args(["mariadbd", "mysqld"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds spent by the server, the database and this load generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuTotals {
    pub server: f64,
    pub database: f64,
    pub load_generator: f64,
}

impl CpuTotals {
    pub fn add(&mut self, other: &CpuTotals) {
        self.server += other.server;
        self.database += other.database;
        self.load_generator += other.load_generator;
    }

    /// "cpu per op: server X us, database Y us, load generator Z us".
    pub fn per_op(&self, ops: usize) -> String {
        let per = |seconds: f64| seconds / ops as f64 * 1e6;
        format!(
            "cpu per op: server {:.0} us, database {:.0} us, load generator {:.0} us",
            per(self.server),
            per(self.database),
            per(self.load_generator)
        )
    }
}

/// Where the CPU went during a phase: the server, the database, this load
/// generator, per operation.
pub struct CpuMeter {
    server: u32,
    database: Option<u32>,
    start: (f64, f64, f64),
}

impl CpuMeter {
    pub fn start(server: &ServerProcess) -> Self {
        let database = database_pid();
        let start = (
            cpu_seconds(server.pid()),
            database.map(cpu_seconds).unwrap_or(0.0),
            cpu_seconds(std::process::id()),
        );
        Self {
            server: server.pid(),
            database,
            start,
        }
    }

    pub fn totals(&self) -> CpuTotals {
        CpuTotals {
            server: cpu_seconds(self.server) - self.start.0,
            database: self.database.map(cpu_seconds).unwrap_or(0.0) - self.start.1,
            load_generator: cpu_seconds(std::process::id()) - self.start.2,
        }
    }

    /// "cpu per op: server X us, database Y us, load generator Z us".
    pub fn per_op(&self, ops: usize) -> String {
        self.totals().per_op(ops)
    }
}

/// POSTs a ready-made JSON body and returns the raw answer: for the
/// highest-rate phases, so that the load generator spends as little CPU
/// per request as it can and the server gets the machine.
pub async fn post_raw(
    http: &reqwest::Client,
    url: &str,
    body: bytes::Bytes,
    token: &str,
) -> BenchResult<bytes::Bytes> {
    Ok(http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .bearer_auth(token)
        .body(body)
        .send()
        .await?
        .bytes()
        .await?)
}

/// Waits for the workers and makes their latencies one phase.
async fn gather(
    name: &str,
    started: Instant,
    workers: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
) -> Phase {
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap_or_default());
    }
    Phase {
        name: name.to_owned(),
        latencies,
        elapsed: started.elapsed(),
    }
}

/// The seat ids of these dates, in date and number order.
pub async fn seats_of(db: &BenchDb, dates: &[u64]) -> BenchResult<Vec<u64>> {
    let mut seat_ids = Vec::new();
    let mut conn = db.pool.get_conn().await?;
    for date in dates {
        let ids: Vec<u64> = conn
            .query(format!(
                "SELECT id FROM seats WHERE concert_date_id = {date} ORDER BY number"
            ))
            .await?;
        seat_ids.extend(ids);
    }
    Ok(seat_ids)
}

/// The bare SQL of a hold, the benches' reference: `BEGIN`, `INSERT` the
/// reservation, the conditional `UPDATE` of the seat, `COMMIT`.
pub async fn bare_hold(
    conn: &mut mysql_async::Conn,
    user: uuid::Uuid,
    seat: u64,
) -> BenchResult<uuid::Uuid> {
    let reservation = uuid::Uuid::now_v7();
    conn.query_drop("BEGIN").await?;
    conn.exec_drop(
        "INSERT INTO reservations (id, user_id, seat_id, token_seq, status, price, created_at, held_until) \
         VALUES (?, ?, ?, 1, 'HELD', 1000.00, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL 1 HOUR)",
        (reservation.as_bytes().to_vec(), user.as_bytes().to_vec(), seat),
    )
    .await?;
    conn.exec_drop(
        "UPDATE seats SET status = 'HELD', held_by_reservation_id = ?, held_until = UTC_TIMESTAMP(6) + INTERVAL 1 HOUR \
         WHERE id = ? AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= UTC_TIMESTAMP(6)))",
        (reservation.as_bytes().to_vec(), seat),
    )
    .await?;
    conn.query_drop("COMMIT").await?;
    Ok(reservation)
}

/// `ticket-reservation check` on the bench's database: its summary line
/// when every rule holds, an error with its report when one does not.
/// `settings` are the server's, whose limits the check holds the rows to.
pub fn run_check(database_url: &str, settings: &[(&str, &str)]) -> BenchResult<String> {
    let mut command = Command::new(server_binary());
    command.envs(settings.iter().copied());
    let output = command
        .arg("check")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()?;
    let report = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(if report.is_empty() {
            "clean".to_owned()
        } else {
            report
        })
    } else {
        Err(format!(
            "check found violations: {report} {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into())
    }
}

pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws connection to the server's websocket, with the
/// small buffers a load generator holding thousands of them needs.
pub async fn open_websocket(port: u16) -> BenchResult<WebSocket> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/graphql/ws").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    Ok(socket)
}
