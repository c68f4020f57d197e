//! `cargo bench --bench concurrency`: holds on distinct seats at 16, 64
//! and 256 concurrent clients, ours (`holdSeat` over HTTP, the release
//! server with its 32 connections) and the bare SQL of a hold (`BEGIN`,
//! `INSERT` the reservation, conditional `UPDATE` of the seat, `COMMIT`,
//! one connection per client), taking turns at each level. Prints a table
//! and writes it to `target/bench-concurrency.csv`, which
//! `scripts/plot-benchmarks` draws into `docs/holds-by-concurrency.png`.
//!
//! The bare SQL at 256 clients needs 256 connections: the bench raises the
//! database's `max_connections` to 300 for its run when it is lower, and
//! puts it back at the end.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::fmt::Write as _;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use serde_json::json;
use support::*;

const LEVELS: [usize; 3] = [16, 64, 256];
const HOLDS_PER_RUN: usize = 4000;
const HOLDS_EACH: usize = 4;
const SEATS_PER_DATE: usize = 50;
const HOLD: &str = "mutation($date: ID!, $seat: Int!) { holdSeat(concertDateId: $date, seatNumber: $seat) { id } }";

async fn our_holds(
    clients: usize,
    run: usize,
    http: &reqwest::Client,
    endpoint: &Arc<String>,
    tokens: &Arc<Vec<String>>,
    dates: &Arc<Vec<u64>>,
) -> Phase {
    let (http, endpoint, tokens, dates) = (
        http.clone(),
        Arc::clone(endpoint),
        Arc::clone(tokens),
        Arc::clone(dates),
    );
    run_phase(&format!("ours, {clients} clients"), clients, HOLDS_PER_RUN, move |i| {
        let (http, endpoint, tokens, dates) = (
            http.clone(),
            Arc::clone(&endpoint),
            Arc::clone(&tokens),
            Arc::clone(&dates),
        );
        async move {
            let n = run * HOLDS_PER_RUN + i;
            let vars = json!({"date": dates[n / SEATS_PER_DATE].to_string(), "seat": n % SEATS_PER_DATE + 1});
            match gql(&http, &endpoint, HOLD, vars, Some(&tokens[n / HOLDS_EACH])).await {
                Ok(answer) if answer["data"]["holdSeat"]["id"].is_string() => {}
                Ok(answer) => eprintln!("hold {n} failed: {answer}"),
                Err(error) => eprintln!("hold {n}: {error}"),
            }
        }
    })
    .await
}

async fn bare_holds(
    pool: &mysql_async::Pool,
    clients: usize,
    run: usize,
    seats: &Arc<Vec<u64>>,
    users: &Arc<Vec<uuid::Uuid>>,
) -> BenchResult<Phase> {
    let connections = connections(pool, clients).await?;
    let (seats, users) = (Arc::clone(seats), Arc::clone(users));
    let name = format!("bare SQL, {clients} clients");
    Ok(
        run_on_connections(&name, connections, HOLDS_PER_RUN, move |mut conn, i| {
            let (seats, users) = (Arc::clone(&seats), Arc::clone(&users));
            async move {
                let n = run * HOLDS_PER_RUN + i;
                if let Err(error) = bare_hold(&mut conn, users[n / HOLDS_EACH], seats[n]).await {
                    eprintln!("bare hold {n}: {error}");
                }
                conn
            }
        })
        .await,
    )
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let db = BenchDb::create().await?;
    let runs = LEVELS.len();
    let dates_per_side = (runs * HOLDS_PER_RUN / SEATS_PER_DATE) as u64;
    let our_dates = Arc::new(insert_concert(&db, dates_per_side).await?);
    let bare_seats = Arc::new(seats_of(&db, &insert_concert(&db, dates_per_side).await?).await?);
    let holders = (runs * HOLDS_PER_RUN / HOLDS_EACH) as u64;
    let users = insert_users(&db, 0, holders, "0").await?;
    let bare_users = Arc::new(insert_users(&db, holders, holders, "0").await?);
    let tokens = Arc::new(insert_tokens(&db, &users, 1, true).await?);

    let mut admin = db.pool.get_conn().await?;
    let max_connections: u64 = admin
        .query_first("SELECT @@GLOBAL.max_connections")
        .await?
        .unwrap_or(151);
    if max_connections < 300 {
        admin.query_drop("SET GLOBAL max_connections = 300").await?;
    }

    // The bench's own pool stops at 128 connections; the bare SQL at 256
    // clients needs one each.
    let bare_pool = mysql_async::Pool::new(
        mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&db.url)?).pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(mysql_async::PoolConstraints::new(1, 300).ok_or("pool bounds")?),
        ),
    );
    let server = ServerProcess::start(
        &db.url,
        &[
            ("MAX_ACTIVE_TOKENS", "100000"),
            ("ACTIVE_TOKEN_SECONDS", "3600"),
            ("HOLD_SECONDS", "3600"),
            ("MAX_HOLDS_PER_USER", "4"),
            ("MAX_IN_FLIGHT", "4096"),
        ],
    )?;
    let http = http_client();
    let endpoint = Arc::new(server.url("/graphql"));
    println!("{HOLDS_PER_RUN} holds on distinct seats per run; the server keeps 32 connections");
    let mut csv = String::from("clients,side,holds_per_second,p50_ms,p99_ms\n");
    for (run, clients) in LEVELS.into_iter().enumerate() {
        settle_database().await;
        let bare = bare_holds(&bare_pool, clients, run, &bare_seats, &bare_users).await?;
        settle_database().await;
        let ours = our_holds(clients, run, &http, &endpoint, &tokens, &our_dates).await;
        for phase in [&bare, &ours] {
            println!("{}", phase.report());
            let side = if phase.name.starts_with("ours") {
                "ours"
            } else {
                "bare SQL"
            };
            writeln!(
                csv,
                "{clients},{side},{:.0},{:.2},{:.2}",
                phase.per_second(),
                phase.percentile(0.5).as_secs_f64() * 1e3,
                phase.percentile(0.99).as_secs_f64() * 1e3
            )?;
        }
        println!(
            "  ours / bare SQL at {clients} clients: {:.2}",
            ours.per_second() / bare.per_second()
        );
    }
    let target =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-concurrency.csv");
    std::fs::write(&target, csv)?;
    println!("written: {}", target.display());

    if max_connections < 300 {
        admin
            .query_drop(format!("SET GLOBAL max_connections = {max_connections}"))
            .await?;
    }
    drop(admin);
    bare_pool.disconnect().await?;
    drop(server);
    db.drop_database().await?;
    Ok(())
}
