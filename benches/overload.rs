//! Overload: 2,000 clients against a server that works on at most 256
//! requests at once. What is past the bound must be refused at once
//! (503 OVERLOADED, in milliseconds) and `/healthz` must keep answering
//! quickly throughout, instead of everyone queueing. Refused clients wait
//! the second that `Retry-After` asks, then try again.
//!
//! The 2,000 clients share this process's runtime, and on two cores they
//! starve it: a latency they record includes the time their own task
//! waited to be polled. So the server's answer times are read by a probe
//! of its own, on a thread and runtime of its own, as a monitor or one
//! more browser would see them: a `/healthz` every 20 ms and a `user(id)`
//! every 5 ms, the latter refused or answered as the load allows.
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
/// The probe's pace: a `user(id)` every 5 ms, a `/healthz` every 20 ms.
const PROBE_EVERY: Duration = Duration::from_millis(5);
const HEALTH_EVERY_ROUNDS: u32 = 4;
/// What a refused client waits before it asks again (the server's
/// `Retry-After: 1`); a client that ignores it only burns the CPU both
/// sides need.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the clients saw, split by how they were answered.
#[derive(Default)]
struct Seen {
    answered: Vec<Duration>,
    /// Refusals of requests sent in the first second, when the 2,000
    /// clients also open their connections.
    refused_connecting: Vec<Duration>,
    refused: Vec<Duration>,
    other: usize,
}

/// The first second: 2,000 connections opening at once.
const CONNECTING: Duration = Duration::from_secs(1);

/// What the probe saw: `/healthz`, and `user(id)` by how it was answered.
#[derive(Default)]
struct Probed {
    health: Vec<(Duration, bool)>,
    answered: Vec<Duration>,
    refused: Vec<Duration>,
}

/// The probe, on a thread and runtime of its own with one connection.
fn spawn_probe(
    health_url: String,
    graphql_url: String,
    user: serde_json::Value,
    running: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Probed> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let body = json!({
                "query": "query($id: UUID!) { user(id: $id) { id balance } }",
                "variables": {"id": user},
            });
            let mut probed = Probed::default();
            let mut round = 0_u32;
            while running.load(Ordering::Relaxed) {
                if round.is_multiple_of(HEALTH_EVERY_ROUNDS) {
                    let began = Instant::now();
                    let ok = http
                        .get(&health_url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    probed.health.push((began.elapsed(), ok));
                }
                round += 1;
                let began = Instant::now();
                let status = http.post(&graphql_url).json(&body).send().await;
                match status.map(|r| r.status().as_u16()) {
                    Ok(200) => probed.answered.push(began.elapsed()),
                    Ok(503) => probed.refused.push(began.elapsed()),
                    _ => {}
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            probed
        })
    })
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

    let probe = spawn_probe(
        server.url("/healthz"),
        url.clone(),
        json!(users[0]),
        Arc::clone(&running),
    );

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
                        Ok(503) if began.duration_since(started) < CONNECTING => {
                            seen.refused_connecting.push(took);
                            tokio::time::sleep(RETRY_AFTER).await;
                        }
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
        seen.refused_connecting.extend(client.refused_connecting);
        seen.other += client.other;
    }
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let probed = probe.join().expect("the probe thread");

    println!(
        "== {CLIENTS} clients, MAX_IN_FLIGHT={MAX_IN_FLIGHT}, {} s ==",
        DURATION.as_secs()
    );
    let answered = Phase {
        name: "user(id): answered".to_owned(),
        latencies: seen.answered,
        elapsed,
    };
    let refused_connecting = Phase {
        name: "user(id): refused in the first second".to_owned(),
        latencies: seen.refused_connecting,
        elapsed,
    };
    let refused = Phase {
        name: "user(id): refused after it".to_owned(),
        latencies: seen.refused,
        elapsed,
    };
    println!("{}", answered.report());
    println!(
        "    cpu per answer: {}",
        cpu.per_op(answered.latencies.len())
    );
    println!("{}", refused_connecting.report());
    println!("{}", refused.report());
    println!("    other outcomes (errors, timeouts): {}", seen.other);
    println!("-- the probe, one request at a time on a thread of its own --");
    let healthy = probed.health.iter().filter(|(_, ok)| *ok).count();
    let health = Phase {
        name: format!(
            "probe: /healthz every {} ms",
            PROBE_EVERY.as_millis() * u128::from(HEALTH_EVERY_ROUNDS)
        ),
        latencies: probed.health.into_iter().map(|(took, _)| took).collect(),
        elapsed,
    };
    println!("{}", health.report());
    let slowest = health.latencies.iter().max().copied().unwrap_or_default();
    println!(
        "    {healthy} of {} answered 200; the slowest took {:.2} ms",
        health.latencies.len(),
        slowest.as_secs_f64() * 1e3
    );
    for (name, latencies) in [
        ("probe: user(id) refused", probed.refused),
        ("probe: user(id) answered", probed.answered),
    ] {
        let phase = Phase {
            name: name.to_owned(),
            latencies,
            elapsed,
        };
        let slowest = phase.latencies.iter().max().copied().unwrap_or_default();
        println!(
            "{}  slowest {:.2} ms",
            phase.report(),
            slowest.as_secs_f64() * 1e3
        );
    }
    drop(server);
    db.drop_database().await?;
    Ok(())
}
