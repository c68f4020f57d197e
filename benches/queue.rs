//! Load generator for the waiting line, driving the real server binary:
//! issueToken throughput, queueStatus polling with a thousand and a million
//! in line, and ten thousand websocket subscribers following their places.
//!
//! cargo bench --bench queue              (DATABASE_URL picks the server)

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 64;
const ISSUES: usize = 30_000;
const ACTIVE: usize = 100;
const SMALL_LINE: usize = 1_000;
const LARGE_LINE: usize = 1_000_000;
const POLL_FOR: Duration = Duration::from_secs(10);
const SUBSCRIBERS: usize = 10_000;

const ISSUE: &str =
    "mutation($user: UUID!) { issueToken(userId: $user) { token status position } }";
const POLL: &str = "{ queueStatus { status position estimatedWaitSeconds } }";
const FOLLOW: &str =
    "subscription($token: String!) { queueStatus(token: $token) { status position } }";

/// `cargo bench --bench queue` runs every phase; `-- subscribers` runs only
/// the websocket phase, on a short line, for quick iterations.
#[tokio::main]
async fn main() -> BenchResult<()> {
    if std::env::args().any(|arg| arg == "subscribers") {
        return subscribers_only().await;
    }
    issue_tokens().await?;
    poll_and_follow().await?;
    Ok(())
}

async fn subscribers_only() -> BenchResult<()> {
    let db = BenchDb::create().await?;
    let users = insert_users(&db, 0, (ACTIVE + SUBSCRIBERS) as u64, "0").await?;
    insert_tokens(&db, &users[..ACTIVE], 1, true).await?;
    let waiting = insert_tokens(&db, &users[ACTIVE..], ACTIVE as u64 + 1, false).await?;
    let server = ServerProcess::start(&db.url, &line_settings())?;
    follow(&db, &server, &http_client(), &waiting).await?;
    drop(server);
    db.drop_database().await?;
    Ok(())
}

fn line_settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MAX_ACTIVE_TOKENS", "100"),
        ("ACTIVE_TOKEN_SECONDS", "3600"),
        ("ADMIT_INTERVAL_MS", "1000"),
    ]
}

/// issueToken for 30,000 new users from 64 clients, beside MariaDB's own
/// rate for single-row inserts of the same rows at the same concurrency.
async fn issue_tokens() -> BenchResult<()> {
    let db = BenchDb::create().await?;
    let users = Arc::new(insert_users(&db, 0, ISSUES as u64, "0").await?);
    let server = ServerProcess::start(&db.url, &line_settings())?;
    let http = http_client();
    let endpoint = Arc::new(server.url("/graphql"));
    println!("== issueToken ({ISSUES} new users, {CLIENTS} clients) ==");

    let statements_before = server.metric(&http, "sql_statements_total").await?;
    let cpu = CpuMeter::start(&server);
    let phase = {
        let (http, endpoint, users) = (http.clone(), Arc::clone(&endpoint), Arc::clone(&users));
        run_phase("issueToken: new users", CLIENTS, ISSUES, move |i| {
            let (http, endpoint, users) = (http.clone(), Arc::clone(&endpoint), Arc::clone(&users));
            async move {
                match gql(&http, &endpoint, ISSUE, json!({"user": users[i]}), None).await {
                    Ok(answer) if answer["data"]["issueToken"]["token"].is_string() => {}
                    other => eprintln!("issue {i}: {other:?}"),
                }
            }
        })
        .await
    };
    let statements = server.metric(&http, "sql_statements_total").await? - statements_before;
    println!("{}", phase.report());
    println!("    {}", cpu.per_op(ISSUES));
    println!(
        "    {:.3} SQL statements per issued token",
        statements as f64 / ISSUES as f64
    );
    let waiting = db
        .number("SELECT COUNT(*) FROM queue_tokens WHERE status = 'WAITING'")
        .await?;
    let last = db.number("SELECT last_issued_seq FROM queue_state").await?;
    println!("    {last} tokens issued, {waiting} WAITING");

    let bare = bare_inserts(&db).await?;
    println!("{}", bare.report());
    println!(
        "    ours / MariaDB alone: {:.2}",
        phase.per_second() / bare.per_second()
    );
    drop(server);
    db.drop_database().await?;
    Ok(())
}

/// MariaDB alone: the same token rows, one autocommitted INSERT each, from
/// as many connections as we have clients.
async fn bare_inserts(db: &BenchDb) -> BenchResult<Phase> {
    db.execute("CREATE TABLE bare_tokens LIKE queue_tokens")
        .await?;
    let connections = connections(&db.pool, CLIENTS).await?;
    let name = "MariaDB alone: single-row INSERT";
    Ok(run_on_connections(name, connections, ISSUES, |mut conn, i| async move {
        let user = uuid::Uuid::from_u128(0xB0_0000_0000_0000_0000_0000_0000_0000 + i as u128);
        let nonce: [u8; 16] = rand::random();
        let inserted = conn
            .exec_drop(
                "INSERT INTO bare_tokens (seq, user_id, nonce, status, issued_at) VALUES (?, ?, ?, 'WAITING', UTC_TIMESTAMP(6))",
                (i as u64 + 1, user.as_bytes().to_vec(), nonce.to_vec()),
            )
            .await;
        if let Err(error) = inserted {
            eprintln!("bare insert {i}: {error}");
        }
        conn
    })
    .await)
}

/// Polls with a thousand in line, then with a million, then follows ten
/// thousand places over websockets while the line moves.
async fn poll_and_follow() -> BenchResult<()> {
    let db = BenchDb::create().await?;
    let started = Instant::now();
    let users = insert_users(&db, 0, (ACTIVE + LARGE_LINE) as u64, "0").await?;
    insert_tokens(&db, &users[..ACTIVE], 1, true).await?;
    let mut waiting = insert_tokens(
        &db,
        &users[ACTIVE..ACTIVE + SMALL_LINE],
        ACTIVE as u64 + 1,
        false,
    )
    .await?;
    println!(
        "\n(fixtures: {} users in {:.0?})",
        users.len(),
        started.elapsed()
    );
    let server = ServerProcess::start(&db.url, &line_settings())?;
    let http = http_client();

    println!("\n== queueStatus polling ({CLIENTS} clients, {POLL_FOR:?} each) ==");
    println!("(database settled in {:.0?})", settle_database().await);
    let small = poll(
        &server,
        &http,
        &waiting,
        &format!("queueStatus: {SMALL_LINE} WAITING"),
    )
    .await?;
    let started = Instant::now();
    waiting.extend(
        insert_tokens(
            &db,
            &users[ACTIVE + SMALL_LINE..],
            (ACTIVE + SMALL_LINE) as u64 + 1,
            false,
        )
        .await?,
    );
    let in_line = db
        .number("SELECT COUNT(*) FROM queue_tokens WHERE status = 'WAITING'")
        .await?;
    println!(
        "(line grown to {in_line} WAITING in {:.0?}; database settled in {:.0?})",
        started.elapsed(),
        settle_database().await
    );
    let large = poll(
        &server,
        &http,
        &waiting,
        &format!("queueStatus: {LARGE_LINE} WAITING"),
    )
    .await?;
    println!(
        "    {LARGE_LINE} in line / {SMALL_LINE} in line: {:.2}",
        large.per_second() / small.per_second()
    );

    follow(&db, &server, &http, &waiting[..SUBSCRIBERS]).await?;
    drop(server);
    db.drop_database().await?;
    Ok(())
}

async fn poll(
    server: &ServerProcess,
    http: &reqwest::Client,
    tokens: &[String],
    name: &str,
) -> BenchResult<Phase> {
    let tokens = Arc::new(tokens.to_vec());
    let endpoint = Arc::new(server.url("/graphql"));
    let statements_before = server.metric(http, "sql_statements_total").await?;
    let cpu = CpuMeter::start(server);
    let body = bytes::Bytes::from(json!({ "query": POLL }).to_string());
    let phase = {
        let (http, endpoint, tokens) = (http.clone(), Arc::clone(&endpoint), Arc::clone(&tokens));
        run_for(name, CLIENTS, POLL_FOR, move |i| {
            let (http, endpoint, tokens, body) = (
                http.clone(),
                Arc::clone(&endpoint),
                Arc::clone(&tokens),
                body.clone(),
            );
            async move {
                // A different place in line each time, spread over the line.
                let token = &tokens[(i.wrapping_mul(2_654_435_761)) % tokens.len()];
                match post_raw(&http, &endpoint, body, token).await {
                    Ok(answer) if memchr_position(&answer) => {}
                    other => eprintln!("poll: {other:?}"),
                }
            }
        })
        .await
    };
    let statements = server.metric(http, "sql_statements_total").await? - statements_before;
    println!("{}", phase.report());
    println!("    {}", cpu.per_op(phase.latencies.len()));
    println!(
        "    {:.4} SQL statements per poll",
        statements as f64 / phase.latencies.len() as f64
    );
    Ok(phase)
}

/// Whether an answer carries a numeric position (cheaper than parsing it).
fn memchr_position(answer: &[u8]) -> bool {
    answer.windows(11).any(|window| window == b"\"position\":") && !answer.starts_with(b"{\"errors")
}

/// Statements the server sent per admission turn over `window`.
async fn statements_per_turn(
    server: &ServerProcess,
    http: &reqwest::Client,
    window: Duration,
) -> BenchResult<f64> {
    let (statements, turns) = (
        server.metric(http, "sql_statements_total").await?,
        server.metric(http, "admission_turns_total").await?,
    );
    tokio::time::sleep(window).await;
    let statements = server.metric(http, "sql_statements_total").await? - statements;
    let turns = server.metric(http, "admission_turns_total").await? - turns;
    Ok(statements as f64 / turns.max(1) as f64)
}

/// Opens a websocket per token, subscribes, and waits for the first state.
async fn subscribe(
    port: u16,
    token: String,
) -> BenchResult<(
    futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
    Box<dyn std::any::Any + Send>,
)> {
    let (mut sink, mut stream) = open_websocket(port).await?.split();
    sink.send(Message::text(
        json!({"type": "connection_init", "payload": {}}).to_string(),
    ))
    .await?;
    next_json(&mut stream).await?; // connection_ack
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": FOLLOW, "variables": {"token": token}}});
    sink.send(Message::text(subscribe.to_string())).await?;
    let first = next_json(&mut stream).await?;
    if !first["payload"]["data"]["queueStatus"]["position"].is_u64() {
        return Err(format!("unexpected first state {first}").into());
    }
    Ok((stream, Box::new(sink)))
}

async fn next_json<S>(stream: &mut S) -> BenchResult<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(message) = stream.next().await {
        if let Message::Text(text) = message? {
            let value: Value = serde_json::from_str(&text)?;
            if value["type"] != "ping" && value["type"] != "pong" {
                return Ok(value);
            }
        }
    }
    Err("the socket closed".into())
}

async fn follow(
    db: &BenchDb,
    server: &ServerProcess,
    http: &reqwest::Client,
    tokens: &[String],
) -> BenchResult<()> {
    println!("\n== {SUBSCRIBERS} websocket subscribers ==");
    let idle_per_turn = statements_per_turn(server, http, Duration::from_secs(5)).await?;
    let rss_before = server.rss_kib();
    let started = Instant::now();
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    let mut pending = Vec::new();
    for token in tokens {
        let (port, token, connecting) = (server.port, token.clone(), Arc::clone(&connecting));
        pending.push(tokio::spawn(async move {
            let _slot = connecting.acquire().await;
            subscribe(port, token).await
        }));
    }
    let mut streams = Vec::new();
    for task in pending {
        streams.push(task.await??);
    }
    let subscribed_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server.rss_kib();
    let live = server.metric(http, "queue_subscribers").await?;
    println!(
        "{} subscribed in {subscribed_in:.1?}; the server counts {live} live subscriptions",
        streams.len()
    );
    println!(
        "    server memory: {} MiB before, {} MiB with them: {:.1} KiB per subscriber",
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before)) as f64 / streams.len() as f64
    );
    let busy_per_turn = statements_per_turn(server, http, Duration::from_secs(5)).await?;
    println!(
        "    SQL statements per admission turn: {idle_per_turn:.2} without subscribers, {busy_per_turn:.2} with {SUBSCRIBERS}"
    );

    // Free the ACTIVE slots: the next turn admits 100 and every subscriber's
    // position falls by 100; time until the last one has heard.
    let heard: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(streams.len())));
    let mut listeners = Vec::new();
    for (mut stream, sink) in streams {
        let heard = Arc::clone(&heard);
        listeners.push(tokio::spawn(async move {
            let _sink = sink;
            if next_json(&mut stream).await.is_ok() {
                heard
                    .lock()
                    .map(|mut heard| heard.push(Instant::now()))
                    .ok();
            }
        }));
    }
    let turns_before = server.metric(http, "admission_turns_total").await?;
    let freed_at = Instant::now();
    db.execute("UPDATE queue_tokens SET expires_at = UTC_TIMESTAMP(6) WHERE status = 'ACTIVE'")
        .await?;
    for listener in listeners {
        let _ = tokio::time::timeout(Duration::from_secs(60), listener).await;
    }
    let heard = heard.lock().map(|heard| heard.clone()).unwrap_or_default();
    let first = heard
        .iter()
        .min()
        .map(|t| t.duration_since(freed_at))
        .unwrap_or_default();
    let last = heard
        .iter()
        .max()
        .map(|t| t.duration_since(freed_at))
        .unwrap_or_default();
    println!(
        "    slots freed: {} of {SUBSCRIBERS} heard their new position; first after {first:.0?}, last after {last:.0?} \
         (fan-out {:.0?}; the admission turn comes within ADMIT_INTERVAL_MS/2)",
        heard.len(),
        last - first
    );
    println!(
        "    admission turns meanwhile: {}",
        server.metric(http, "admission_turns_total").await? - turns_before
    );
    Ok(())
}
