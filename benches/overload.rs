//! Overload: 2,000 clients against a server that works on at most 256
//! requests at once. What is past the bound must be refused at once
//! (503 OVERLOADED, in milliseconds) and `/healthz` must keep answering
//! quickly throughout, instead of everyone queueing. Refused clients wait
//! the second that `Retry-After` asks and a random part of a second more,
//! then try again (`OVERLOAD_LOCKSTEP=1`: exactly the second).
//!
//! The 2,000 clients share this process's runtime, and on two cores they
//! starve it: a latency they record includes the time their own task
//! waited to be polled. So the server's answer times are read by a probe
//! of its own, on a thread and runtime of its own, as a monitor or one
//! more browser would see them: a `/healthz` every 20 ms and a `user(id)`
//! every 5 ms, the latter refused or answered as the load allows.
//!
//! cargo bench --bench overload                       (DATABASE_URL picks the server)
//! OVERLOAD_LOCKSTEP=1 cargo bench --bench overload   (retries without jitter)

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::sync::Arc;
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
/// A refused client waits the answer's `Retry-After` (a client that ignores
/// it only burns the CPU both sides need), plus a random part of this, as
/// the README asks of clients: without it the ~1,500 clients refused in one
/// moment all come back in the same millisecond a second later, and the
/// last of each such wave waits for the whole wave to be refused.
/// `OVERLOAD_LOCKSTEP=1` drops the jitter, to measure those waves.
const RETRY_JITTER: Duration = Duration::from_secs(1);

/// How long a refused client waits before it asks again.
fn wait_after_refusal(retry_after: Option<u64>, lockstep: bool) -> Duration {
    let asked = Duration::from_secs(retry_after.unwrap_or(1));
    if lockstep {
        asked
    } else {
        asked + RETRY_JITTER.mul_f64(rand::random::<f64>())
    }
}

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
    other: usize,
}

/// The probe, on a thread and runtime of its own. It sends at a steady
/// pace whatever became of its earlier requests (an open loop), so an
/// answer that takes 50 ms does not thin out its samples: ~2,000 `user(id)`
/// and ~500 `/healthz` a run, enough for a p99 of each outcome.
fn spawn_probe(
    health_url: String,
    graphql_url: String,
    user: serde_json::Value,
    until: Instant,
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
            let body = Arc::new(json!({
                "query": "query($id: UUID!) { user(id: $id) { id balance } }",
                "variables": {"id": user},
            }));
            let mut health = Vec::new();
            let mut users = Vec::new();
            let mut pace = tokio::time::interval(PROBE_EVERY);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut round = 0_u32;
            // Only while the clients send: after the deadline the server
            // is winding down and would flatter the figures.
            while Instant::now() < until {
                pace.tick().await;
                if round.is_multiple_of(HEALTH_EVERY_ROUNDS) {
                    let (http, url) = (http.clone(), health_url.clone());
                    health.push(tokio::spawn(async move {
                        let began = Instant::now();
                        let ok = http.get(&url).send().await.is_ok_and(|r| r.status() == 200);
                        (began.elapsed(), ok)
                    }));
                }
                round += 1;
                let (http, url, body) = (http.clone(), graphql_url.clone(), Arc::clone(&body));
                users.push(tokio::spawn(async move {
                    let began = Instant::now();
                    let status = http.post(&url).json(&*body).send().await;
                    (began.elapsed(), status.map(|r| r.status().as_u16()).ok())
                }));
            }
            let mut probed = Probed::default();
            for asked in health {
                probed.health.push(asked.await.unwrap());
            }
            for asked in users {
                match asked.await.unwrap() {
                    (took, Some(200)) => probed.answered.push(took),
                    (took, Some(503)) => probed.refused.push(took),
                    _ => probed.other += 1,
                }
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
    let lockstep = std::env::var("OVERLOAD_LOCKSTEP").is_ok_and(|value| value == "1");
    let started = Instant::now();
    let deadline = started + DURATION;
    let probe = spawn_probe(
        server.url("/healthz"),
        url.clone(),
        json!(users[0]),
        deadline,
    );
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
                    let answer = http.post(&url).json(&body).send().await.map(|response| {
                        let retry_after = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|value| value.to_str().ok()?.parse().ok());
                        (response.status().as_u16(), retry_after)
                    });
                    let took = began.elapsed();
                    match answer {
                        Ok((200, _)) => seen.answered.push(took),
                        Ok((503, retry_after)) => {
                            if began.duration_since(started) < CONNECTING {
                                seen.refused_connecting.push(took);
                            } else {
                                seen.refused.push(took);
                            }
                            // No later than the deadline, so that no client
                            // idles past the end of the run it is timed in.
                            let wait = wait_after_refusal(retry_after, lockstep);
                            let left = deadline.saturating_duration_since(Instant::now());
                            tokio::time::sleep(wait.min(left)).await;
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
    let probed = probe.join().expect("the probe thread");

    println!(
        "== {CLIENTS} clients, MAX_IN_FLIGHT={MAX_IN_FLIGHT}, {} s, refused clients back after Retry-After{} ==",
        DURATION.as_secs(),
        if lockstep {
            " exactly (lockstep)"
        } else {
            " and up to 1 s of jitter"
        }
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
    println!("-- the probe, at a steady pace on a thread of its own --");
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
    println!(
        "    probe's other outcomes (errors, timeouts): {}",
        probed.other
    );
    drop(server);
    db.drop_database().await?;
    Ok(())
}
