//! `cargo bench --bench instructions`: the work per operation that does not
//! depend on the machine. The server runs under `valgrind --tool=callgrind`
//! while a small fixed workload drives it, one phase at a time; before a
//! phase its counters are zeroed (`callgrind_control --zero`), after it they
//! are dumped (`--dump`), and the dump's total is the instructions the
//! server executed for that phase. Callgrind counts the same on a busy or a
//! quiet machine. Beside them: SQL statements per operation, as the server
//! counts them (`/metrics`).
//!
//! Phases (8 clients): `issueToken` for new users, `queueStatus` polls of
//! ACTIVE tokens, `holdSeat` on distinct seats, the same from 64 clients
//! (where holds share their commits), `pay` for one hold each.
//! Each phase's instructions include the background loops' turns during it
//! (an admission turn every ≤ 500 ms); the `idle` line shows what those
//! cost per second, measured over a phase with no requests.
//!
//! `INSTRUCTIONS_OPS` sets the operations per phase (default 200);
//! `INSTRUCTIONS_KEEP_DUMPS=1` keeps the dumps for `callgrind_annotate`.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const CLIENTS: usize = 8;
/// Clients of the second hold phase, where holds share their commits.
const CROWD: usize = 64;

/// Runs `callgrind_control` with `flag` against the server and waits until
/// it has answered.
fn control(flag: &str, pid: u32) -> BenchResult<()> {
    let status = std::process::Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("callgrind_control {flag} failed").into());
    }
    Ok(())
}

/// The `totals:` of the newest dump in `dir`.
fn newest_dump_total(dir: &Path) -> BenchResult<u64> {
    let newest = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("callgrind.out")
        })
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .ok_or("no callgrind dump")?;
    let text = std::fs::read_to_string(newest.path())?;
    text.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .or_else(|| text.lines().find_map(|line| line.strip_prefix("summary:")))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "a dump without totals".into())
}

/// Instructions and statements of one phase.
struct Cost {
    name: &'static str,
    ops: usize,
    instructions: u64,
    statements: u64,
    seconds: f64,
}

impl Cost {
    fn report(&self) -> String {
        format!(
            "{:<36} {:>6} ops  {:>10.0} instructions/op  {:>6.2} statements/op  ({:.1} s under callgrind)",
            self.name,
            self.ops,
            self.instructions as f64 / self.ops as f64,
            self.statements as f64 / self.ops as f64,
            self.seconds,
        )
    }
}

struct Meter {
    server: ServerProcess,
    http: reqwest::Client,
    dumps: PathBuf,
}

impl Meter {
    async fn measure<F, Fut>(&self, name: &'static str, ops: usize, work: F) -> BenchResult<Cost>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        self.measure_from(name, CLIENTS, ops, work).await
    }

    /// As `measure`, from `clients` concurrent clients.
    async fn measure_from<F, Fut>(
        &self,
        name: &'static str,
        clients: usize,
        ops: usize,
        work: F,
    ) -> BenchResult<Cost>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let statements = self
            .server
            .metric(&self.http, "sql_statements_total")
            .await?;
        control("--zero", self.server.pid())?;
        let began = Instant::now();
        run_phase(name, clients, ops, work).await;
        let seconds = began.elapsed().as_secs_f64();
        control("--dump", self.server.pid())?;
        let instructions = newest_dump_total(&self.dumps)?;
        let statements = self
            .server
            .metric(&self.http, "sql_statements_total")
            .await?
            - statements;
        Ok(Cost {
            name,
            ops,
            instructions,
            statements,
            seconds,
        })
    }
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let ops: usize = std::env::var("INSTRUCTIONS_OPS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let db = BenchDb::create().await?;
    // Seats for the holds from 8 clients, then as many for those from 64.
    let dates = Arc::new(insert_concert(&db, (2 * ops).div_ceil(50) as u64).await?);
    let newcomers = Arc::new(insert_users(&db, 0, ops as u64, "0").await?);
    let holders = insert_users(&db, ops as u64, ops as u64, "1000000.00").await?;
    let tokens = Arc::new(insert_tokens(&db, &holders, 1, true).await?);
    let crowd = insert_users(&db, 2 * ops as u64, ops as u64, "0").await?;
    let crowd_tokens = Arc::new(insert_tokens(&db, &crowd, ops as u64 + 1, true).await?);

    let dumps = std::env::temp_dir().join(format!("callgrind-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dumps)?;
    let wrapper = vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}/callgrind.out.%p", dumps.display()),
    ];
    let server = ServerProcess::start_under(
        &wrapper,
        &db.url,
        &[
            ("MAX_ACTIVE_TOKENS", "100000"),
            ("ACTIVE_TOKEN_SECONDS", "3600"),
            ("HOLD_SECONDS", "3600"),
            ("DATABASE_POOL_SIZE", "8"),
        ],
    )?;
    let meter = Meter {
        server,
        http: http_client(),
        dumps: dumps.clone(),
    };
    let endpoint = Arc::new(meter.server.url("/graphql"));
    println!("{ops} operations per phase, {CLIENTS} clients, the server under callgrind");

    // Warm up: the first requests compile caches (parsed queries, prepared
    // statements) that later ones reuse.
    for i in 0..8 {
        let answer = gql(
            &meter.http,
            &endpoint,
            "{ queueStatus { status } }",
            json!({}),
            Some(&tokens[i]),
        )
        .await?;
        assert!(error_code(&answer).is_none(), "{answer}");
    }

    let idle_seconds = 5.0;
    let idle = meter
        .measure(
            "idle (background loops), per second",
            1,
            move |_| async move {
                tokio::time::sleep(Duration::from_secs_f64(idle_seconds)).await;
            },
        )
        .await?;
    let mut costs = Vec::new();

    let (http, url, users) = (
        meter.http.clone(),
        Arc::clone(&endpoint),
        Arc::clone(&newcomers),
    );
    costs.push(
        meter
            .measure("issueToken (new users)", ops, move |i| {
                let (http, url, users) = (http.clone(), Arc::clone(&url), Arc::clone(&users));
                async move {
                    let q = "mutation($u: UUID!) { issueToken(userId: $u) { token } }";
                    let answer = gql(&http, &url, q, json!({"u": users[i]}), None)
                        .await
                        .unwrap();
                    assert!(error_code(&answer).is_none(), "{answer}");
                }
            })
            .await?,
    );
    let (http, url, t) = (
        meter.http.clone(),
        Arc::clone(&endpoint),
        Arc::clone(&tokens),
    );
    costs.push(
        meter
            .measure("queueStatus (ACTIVE tokens)", ops * 2, move |i| {
                let (http, url, t) = (http.clone(), Arc::clone(&url), Arc::clone(&t));
                async move {
                    let q = "{ queueStatus { status position } }";
                    let answer = gql(&http, &url, q, json!({}), Some(&t[i % t.len()]))
                        .await
                        .unwrap();
                    assert!(error_code(&answer).is_none(), "{answer}");
                }
            })
            .await?,
    );
    let holds: Arc<Vec<OnceLock<String>>> = Arc::new((0..ops).map(|_| OnceLock::new()).collect());
    let (http, url, t, d, h) = (
        meter.http.clone(),
        Arc::clone(&endpoint),
        Arc::clone(&tokens),
        Arc::clone(&dates),
        Arc::clone(&holds),
    );
    costs.push(
        meter
            .measure("holdSeat (distinct seats)", ops, move |i| {
                let (http, url, t, d, h) =
                    (http.clone(), Arc::clone(&url), Arc::clone(&t), Arc::clone(&d), Arc::clone(&h));
                async move {
                    let q = "mutation($d: ID!, $s: Int!) { holdSeat(concertDateId: $d, seatNumber: $s) { id } }";
                    let vars = json!({"d": d[i / 50].to_string(), "s": (i % 50) as i32 + 1});
                    let answer = gql(&http, &url, q, vars, Some(&t[i])).await.unwrap();
                    let id = answer["data"]["holdSeat"]["id"].as_str().expect("a hold");
                    h[i].set(id.to_owned()).unwrap();
                }
            })
            .await?,
    );
    // The same holds from a crowd: shared commits grow with the load.
    let (http, url, t, d) = (
        meter.http.clone(),
        Arc::clone(&endpoint),
        Arc::clone(&crowd_tokens),
        Arc::clone(&dates),
    );
    costs.push(
        meter
            .measure_from("holdSeat (distinct seats, 64 clients)", CROWD, ops, move |i| {
                let (http, url, t, d) = (http.clone(), Arc::clone(&url), Arc::clone(&t), Arc::clone(&d));
                async move {
                    let q = "mutation($d: ID!, $s: Int!) { holdSeat(concertDateId: $d, seatNumber: $s) { id } }";
                    let seat = ops + i;
                    let vars = json!({"d": d[seat / 50].to_string(), "s": (seat % 50) as i32 + 1});
                    let answer = gql(&http, &url, q, vars, Some(&t[i])).await.unwrap();
                    assert!(answer["data"]["holdSeat"]["id"].is_string(), "{answer}");
                }
            })
            .await?,
    );
    let (http, url, t, h) = (
        meter.http.clone(),
        Arc::clone(&endpoint),
        Arc::clone(&tokens),
        Arc::clone(&holds),
    );
    costs.push(
        meter
            .measure("pay (one hold)", ops, move |i| {
                let (http, url, t, h) = (
                    http.clone(),
                    Arc::clone(&url),
                    Arc::clone(&t),
                    Arc::clone(&h),
                );
                async move {
                    let q = "mutation($r: [ID!]!) { pay(reservationIds: $r) { id } }";
                    let hold = h[i].get().expect("held");
                    let answer = gql(&http, &url, q, json!({"r": [hold]}), Some(&t[i]))
                        .await
                        .unwrap();
                    assert!(error_code(&answer).is_none(), "{answer}");
                }
            })
            .await?,
    );

    let idle_per_second = idle.instructions as f64 / idle.seconds;
    println!(
        "{:<36} {:>10.0} instructions/s, {:.2} statements/s",
        "idle (background loops)",
        idle_per_second,
        idle.statements as f64 / idle.seconds
    );
    for cost in &costs {
        println!("{}", cost.report());
    }
    drop(meter);
    if std::env::var_os("INSTRUCTIONS_KEEP_DUMPS").is_some() {
        // One dump per phase, in order, for `callgrind_annotate`.
        println!("callgrind dumps kept in {}", dumps.display());
    } else {
        let _ = std::fs::remove_dir_all(&dumps);
    }
    db.drop_database().await?;
    Ok(())
}
