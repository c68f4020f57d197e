//! Overload: 2,000 clients against a server that works on at most 256
//! requests at once. What is past the bound must be refused at once
//! (503 OVERLOADED, in milliseconds) and `/healthz` must keep answering
//! quickly throughout, instead of everyone queueing. Refused clients wait
//! the second that `Retry-After` asks, then try again.
//!
//! cargo bench --bench overload           (DATABASE_URL picks the server)

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const CLIENTS: usize = 2_000;
const MAX_IN_FLIGHT: &str = "256";
const USERS: u64 = 1_000;
const DURATION: Duration = Duration::from_secs(10);
const HEALTH_EVERY: Duration = Duration::from_millis(20);
/// What a refused client waits before it asks again (the server's
/// `Retry-After: 1`); a client that ignores it only burns the CPU both
/// sides need.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the clients saw, split by how they were answered.
#[derive(Default)]
struct Seen {
    answered: Vec<Duration>,
    refused: Vec<Duration>,
    other: usize,
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let db = BenchDb::create().await?;
    let users = Arc::new(insert_users(&db, 0, USERS, "0").await?);
    let server = ServerProcess::start(&db.url, &[("MAX_IN_FLIGHT", MAX_IN_FLIGHT)])?;
    // One connection per client, as 2,000 browsers would have.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = server.url("/graphql");
    let running = Arc::new(AtomicBool::new(true));

    let health = tokio::spawn({
        let (http, url, running) = (http.clone(), server.url("/healthz"), Arc::clone(&running));
        async move {
            let mut latencies = Vec::new();
            while running.load(Ordering::Relaxed) {
                let began = Instant::now();
                let ok = http.get(&url).send().await.is_ok_and(|r| r.status() == 200);
                latencies.push((began.elapsed(), ok));
                tokio::time::sleep(HEALTH_EVERY).await;
            }
            latencies
        }
    });

    let started = Instant::now();
    let cpu = CpuMeter::start(&server);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (http, url, users) = (http.clone(), url.clone(), Arc::clone(&users));
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut n = client;
                while started.elapsed() < DURATION {
                    let body = json!({
                        "query": "query($id: UUID!) { user(id: $id) { id balance } }",
                        "variables": {"id": users[n % users.len()]},
                    });
                    let began = Instant::now();
                    let status = http.post(&url).json(&body).send().await.map(|r| r.status());
                    let took = began.elapsed();
                    match status.map(|status| status.as_u16()) {
                        Ok(200) => seen.answered.push(took),
                        Ok(503) => {
                            seen.refused.push(took);
                            // As the answer's Retry-After asks.
                            tokio::time::sleep(RETRY_AFTER).await;
                        }
                        _ => seen.other += 1,
                    }
                    n += CLIENTS;
                }
                seen
            })
        })
        .collect();
    let mut seen = Seen::default();
    for client in clients {
        let client = client.await?;
        seen.answered.extend(client.answered);
        seen.refused.extend(client.refused);
        seen.other += client.other;
    }
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let health = health.await?;

    println!(
        "== {CLIENTS} clients, MAX_IN_FLIGHT={MAX_IN_FLIGHT}, {} s ==",
        DURATION.as_secs()
    );
    let answered = Phase {
        name: "user(id): answered".to_owned(),
        latencies: seen.answered,
        elapsed,
    };
    let refused = Phase {
        name: "user(id): refused, 503 OVERLOADED".to_owned(),
        latencies: seen.refused,
        elapsed,
    };
    println!("{}", answered.report());
    println!(
        "    cpu per answer: {}",
        cpu.per_op(answered.latencies.len())
    );
    println!("{}", refused.report());
    println!("    other outcomes (errors, timeouts): {}", seen.other);
    let healthy = health.iter().filter(|(_, ok)| *ok).count();
    let health = Phase {
        name: format!("/healthz every {} ms", HEALTH_EVERY.as_millis()),
        latencies: health.into_iter().map(|(took, _)| took).collect(),
        elapsed,
    };
    println!("{}", health.report());
    let slowest = health.latencies.iter().max().copied().unwrap_or_default();
    println!(
        "    {healthy} of {} answered 200; the slowest took {:.2} ms",
        health.latencies.len(),
        slowest.as_secs_f64() * 1e3
    );
    drop(server);
    db.drop_database().await?;
    Ok(())
}
