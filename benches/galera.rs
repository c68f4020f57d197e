//! `cargo bench --bench galera`: the same on-sale work on one MariaDB, on a
//! three-node Galera cluster through one node (single writer), and through
//! all three (multi-writer), side by side in one run.
//!
//! Each setup gets a fresh database, a concert of `FANS / 50` dates written
//! straight to the database, and three server processes (release build),
//! then 64 clients spread over the three servers drive five phases in turn:
//! `registerUser`, `chargeBalance`, `issueToken`, `holdSeat` on distinct
//! seats, `pay`. Printed per phase: rate, p50, p99, errors by code, and on
//! Galera the certification failures and brute-force aborts the nodes
//! counted, per 1,000 operations. Each setup ends with `ticket-reservation
//! check`. The cluster is `scripts/galera_cluster.py` (its own ports and
//! data directories); the single MariaDB is the one of `DATABASE_URL`.
//!
//! Settings: `GALERA_BENCH_FANS` (default 2,000), `GALERA_BENCH_ROUNDS`
//! (default 2: the three setups take turns, round after round).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use support::*;
use uuid::Uuid;

const CLIENTS: usize = 64;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A private three-node cluster, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    ports: Vec<u16>,
}

fn cluster_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/galera_cluster.py")
}

impl Cluster {
    fn up() -> BenchResult<Self> {
        let dir = std::env::temp_dir().join(format!("galera-bench-{}", Uuid::new_v4().simple()));
        let status = std::process::Command::new("python3")
            .arg(cluster_script())
            .arg("up")
            .arg(&dir)
            .status()?;
        if !status.success() {
            return Err("the Galera cluster did not start".into());
        }
        let described: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json"))?)?;
        let ports = described["nodes"]
            .as_array()
            .ok_or("cluster.json lists no nodes")?
            .iter()
            .filter_map(|node| node["port"].as_u64())
            .map(|port| port as u16)
            .collect();
        Ok(Self { dir, ports })
    }

    fn host(&self, node: usize) -> String {
        format!("127.0.0.1:{}", self.ports[node])
    }

    /// Certification failures and brute-force aborts, summed over the nodes.
    async fn conflicts(&self) -> BenchResult<u64> {
        let mut total = 0;
        for port in &self.ports {
            let mut conn =
                mysql_async::Conn::from_url(format!("mysql://root@127.0.0.1:{port}/")).await?;
            let rows: Vec<(String, String)> = conn
                .query(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN \
                     ('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')",
                )
                .await?;
            total += rows
                .iter()
                .filter_map(|(_, value)| value.parse::<u64>().ok())
                .sum::<u64>();
            conn.disconnect().await?;
        }
        Ok(total)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("python3")
            .arg(cluster_script())
            .arg("down")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the three servers of a setup connect, and the one host fixtures
/// and `check` use.
struct Setup {
    name: &'static str,
    /// `user@host` lists, one per server.
    server_hosts: [String; 3],
    fixture_host: String,
    galera: bool,
}

fn setups(cluster: &Cluster) -> Vec<Setup> {
    let single = server_url();
    let single_host = format!(
        "{}:{}",
        single.host_str().unwrap_or("127.0.0.1"),
        single.port().unwrap_or(3306)
    );
    let nodes = |first: usize| {
        (0..3)
            .map(|offset| cluster.host((first + offset) % 3))
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        Setup {
            name: "single MariaDB",
            server_hosts: [
                single_host.clone(),
                single_host.clone(),
                single_host.clone(),
            ],
            fixture_host: single_host,
            galera: false,
        },
        Setup {
            name: "Galera, one writer node",
            server_hosts: [nodes(0), nodes(0), nodes(0)],
            fixture_host: cluster.host(0),
            galera: true,
        },
        Setup {
            name: "Galera, multi-writer",
            server_hosts: [nodes(0), nodes(1), nodes(2)],
            fixture_host: cluster.host(0),
            galera: true,
        },
    ]
}

/// One phase's figures.
struct Figures {
    phase: Phase,
    errors: BTreeMap<String, usize>,
    conflicts_per_1000: Option<f64>,
}

struct Run {
    servers: Vec<ServerProcess>,
    http: reqwest::Client,
    errors: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Run {
    fn server(&self, i: usize) -> String {
        self.servers[i % self.servers.len()].url("/graphql")
    }
}

/// Sends one call and counts an error answer by its code.
async fn call(
    http: &reqwest::Client,
    url: &str,
    errors: &Mutex<BTreeMap<String, usize>>,
    query: &str,
    variables: Value,
    token: Option<&str>,
) -> Option<Value> {
    let answer = gql(http, url, query, variables, token).await.ok();
    let code = match &answer {
        None => Some("no answer".to_owned()),
        Some(answer) => error_code(answer).map(str::to_owned),
    };
    if let Some(code) = code {
        if let Ok(mut errors) = errors.lock() {
            *errors.entry(code).or_default() += 1;
        }
        return None;
    }
    answer
}

async fn phase<F, Fut>(
    run: &Run,
    cluster: Option<&Cluster>,
    name: &str,
    fans: usize,
    work: F,
) -> BenchResult<Figures>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    if let Ok(mut errors) = run.errors.lock() {
        errors.clear();
    }
    let before = match cluster {
        Some(cluster) => Some(cluster.conflicts().await?),
        None => None,
    };
    let phase = run_phase(name, CLIENTS, fans, work).await;
    let conflicts_per_1000 = match (cluster, before) {
        (Some(cluster), Some(before)) => {
            Some((cluster.conflicts().await? - before) as f64 * 1000.0 / fans as f64)
        }
        _ => None,
    };
    let errors = run.errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(Figures {
        phase,
        errors,
        conflicts_per_1000,
    })
}

async fn run_setup(setup: &Setup, cluster: &Cluster, fans: usize) -> BenchResult<Vec<Figures>> {
    let name = format!("bench_{}", Uuid::new_v4().simple());
    let url_of = |hosts: &str| format!("mysql://root@{hosts}/{name}");
    ticket_reservation::db::prepare(&url_of(&setup.server_hosts[0]))
        .await
        .map_err(|e| e.detail())?;
    let fixture_url = url_of(&setup.fixture_host);
    let db = BenchDb {
        url: fixture_url.clone(),
        name: name.clone(),
        pool: mysql_async::Pool::new(fixture_url.as_str()),
    };
    let dates = insert_concert(&db, fans.div_ceil(50) as u64).await?;
    let settings = [
        ("MAX_ACTIVE_TOKENS", "1000000"),
        ("ACTIVE_TOKEN_SECONDS", "3600"),
        ("DATABASE_POOL_SIZE", "16"),
    ];
    let mut servers = Vec::new();
    for hosts in &setup.server_hosts {
        servers.push(ServerProcess::start(&url_of(hosts), &settings)?);
    }
    let run = Arc::new(Run {
        servers,
        http: http_client(),
        errors: Arc::new(Mutex::new(BTreeMap::new())),
    });
    let cluster = setup.galera.then_some(cluster);
    let users: Arc<Vec<OnceLock<String>>> = Arc::new((0..fans).map(|_| OnceLock::new()).collect());
    let tokens: Arc<Vec<OnceLock<String>>> = Arc::new((0..fans).map(|_| OnceLock::new()).collect());
    let holds: Arc<Vec<OnceLock<String>>> = Arc::new((0..fans).map(|_| OnceLock::new()).collect());
    let mut figures = Vec::new();

    let (r, u) = (Arc::clone(&run), Arc::clone(&users));
    figures.push(
        phase(&run, cluster, "registerUser", fans, move |i| {
            let (r, u) = (Arc::clone(&r), Arc::clone(&u));
            async move {
                let q = "mutation($n: String!) { registerUser(name: $n) { id } }";
                if let Some(a) = call(
                    &r.http,
                    &r.server(i),
                    &r.errors,
                    q,
                    json!({"n": format!("fan {i}")}),
                    None,
                )
                .await
                    && let Some(id) = a["data"]["registerUser"]["id"].as_str()
                {
                    let _ = u[i].set(id.to_owned());
                }
            }
        })
        .await?,
    );
    let (r, u) = (Arc::clone(&run), Arc::clone(&users));
    figures.push(
        phase(&run, cluster, "chargeBalance", fans, move |i| {
            let (r, u) = (Arc::clone(&r), Arc::clone(&u));
            async move {
                let Some(user) = u[i].get() else { return };
                let q = "mutation($u: UUID!, $k: String!) { chargeBalance(userId: $u, amount: \"5000.00\", idempotencyKey: $k) { balance } }";
                call(&r.http, &r.server(i), &r.errors, q, json!({"u": user, "k": format!("c{i}")}), None).await;
            }
        })
        .await?,
    );
    let (r, u, t) = (Arc::clone(&run), Arc::clone(&users), Arc::clone(&tokens));
    figures.push(
        phase(&run, cluster, "issueToken", fans, move |i| {
            let (r, u, t) = (Arc::clone(&r), Arc::clone(&u), Arc::clone(&t));
            async move {
                let Some(user) = u[i].get() else { return };
                let q = "mutation($u: UUID!) { issueToken(userId: $u) { token status } }";
                if let Some(a) = call(
                    &r.http,
                    &r.server(i),
                    &r.errors,
                    q,
                    json!({"u": user}),
                    None,
                )
                .await
                    && let Some(token) = a["data"]["issueToken"]["token"].as_str()
                {
                    let _ = t[i].set(token.to_owned());
                }
            }
        })
        .await?,
    );
    let (r, t, h, d) = (
        Arc::clone(&run),
        Arc::clone(&tokens),
        Arc::clone(&holds),
        Arc::new(dates),
    );
    figures.push(
        phase(&run, cluster, "holdSeat (distinct seats)", fans, move |i| {
            let (r, t, h, d) = (Arc::clone(&r), Arc::clone(&t), Arc::clone(&h), Arc::clone(&d));
            async move {
                let Some(token) = t[i].get() else { return };
                let q = "mutation($d: ID!, $s: Int!) { holdSeat(concertDateId: $d, seatNumber: $s) { id } }";
                let vars = json!({"d": d[i / 50].to_string(), "s": (i % 50) as i32 + 1});
                if let Some(a) = call(&r.http, &r.server(i), &r.errors, q, vars, Some(token)).await
                    && let Some(id) = a["data"]["holdSeat"]["id"].as_str()
                {
                    let _ = h[i].set(id.to_owned());
                }
            }
        })
        .await?,
    );
    let (r, t, h) = (Arc::clone(&run), Arc::clone(&tokens), Arc::clone(&holds));
    figures.push(
        phase(&run, cluster, "pay (one hold)", fans, move |i| {
            let (r, t, h) = (Arc::clone(&r), Arc::clone(&t), Arc::clone(&h));
            async move {
                let (Some(token), Some(hold)) = (t[i].get(), h[i].get()) else { return };
                let q = "mutation($r: [ID!]!, $k: String!) { pay(reservationIds: $r, idempotencyKey: $k) { id } }";
                call(&r.http, &r.server(i), &r.errors, q, json!({"r": [hold], "k": format!("p{i}")}), Some(token)).await;
            }
        })
        .await?,
    );
    drop(run);
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_ticket-reservation"))
        .arg("check")
        .env("DATABASE_URL", &fixture_url)
        .env("MAX_ACTIVE_TOKENS", "1000000")
        .env("RUST_LOG", "warn")
        .output()?;
    println!(
        "  check: {}",
        String::from_utf8_lossy(&check.stdout)
            .trim()
            .lines()
            .next()
            .unwrap_or("(nothing)")
    );
    db.drop_database().await?;
    Ok(figures)
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let fans = setting("GALERA_BENCH_FANS", 2000);
    let rounds = setting("GALERA_BENCH_ROUNDS", 2);
    let cluster = Cluster::up()?;
    println!(
        "three Galera nodes on ports {:?}; {fans} fans, {CLIENTS} clients, three servers per setup",
        cluster.ports
    );
    for round in 1..=rounds {
        for setup in setups(&cluster) {
            println!("round {round}: {}", setup.name);
            for figures in run_setup(&setup, &cluster, fans).await? {
                let conflicts = figures
                    .conflicts_per_1000
                    .map(|c| format!("  conflicts {c:.1}/1000"))
                    .unwrap_or_default();
                println!(
                    "  {}{conflicts}  errors {:?}",
                    figures.phase.report(),
                    figures.errors
                );
            }
        }
    }
    Ok(())
}
