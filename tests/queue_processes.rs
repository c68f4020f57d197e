//! Two server processes on one database admit from one line: never more
//! ACTIVE than the limit, always in order, each token once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use common::TestDb;
use common::process::ServerProcess;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Nullable, Unsigned};
use diesel_async::RunQueryDsl;
use serde_json::json;
use ticket_reservation::db;

const MAX_ACTIVE: usize = 3;
const TOKENS: u64 = 45;

fn start_server(database_url: &str) -> ServerProcess {
    ServerProcess::start(
        database_url,
        &[
            ("MAX_ACTIVE_TOKENS", &MAX_ACTIVE.to_string()),
            ("ACTIVE_TOKEN_SECONDS", "1"),
            ("ADMIT_INTERVAL_MS", "40"),
        ],
    )
}

#[derive(QueryableByName, Debug)]
struct Admission {
    #[diesel(sql_type = Unsigned<BigInt>)]
    seq: u64,
    #[diesel(sql_type = Nullable<Datetime>)]
    admitted_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Datetime>)]
    expires_at: Option<NaiveDateTime>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_admit_in_order_and_never_above_the_limit() {
    let db = TestDb::new().await;
    let first = start_server(&db.url);
    let second = start_server(&db.url);

    // Both processes issue tokens, interleaved.
    for i in 0..TOKENS {
        let server = if i % 2 == 0 { &first } else { &second };
        let token = server.newcomer("fan").await;
        assert!(token["errors"].is_null(), "{token}");
    }

    let started = Instant::now();
    loop {
        let admitted =
            common::fixtures::sql_number(&db, "SELECT admitted_through_seq FROM queue_state").await;
        if admitted as u64 == TOKENS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {admitted} of {TOKENS} admitted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut conn = db.connect().await;
    let rows: Vec<Admission> =
        diesel::sql_query("SELECT seq, admitted_at, expires_at FROM queue_tokens ORDER BY seq")
            .load(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len() as u64, TOKENS);
    let spans: Vec<(NaiveDateTime, NaiveDateTime)> = rows
        .iter()
        .map(|row| {
            (
                row.admitted_at.expect("every token admitted once"),
                row.expires_at.unwrap(),
            )
        })
        .collect();
    for pair in spans.windows(2) {
        assert!(pair[0].0 <= pair[1].0, "admitted out of order: {pair:?}");
    }
    for (i, (admitted_at, _)) in spans.iter().enumerate() {
        let active_then = spans
            .iter()
            .filter(|(from, until)| from <= admitted_at && admitted_at < until)
            .count();
        assert!(
            active_then <= MAX_ACTIVE,
            "{active_then} ACTIVE when token {} was admitted",
            rows[i].seq
        );
    }
    // A turn that admitted someone logs "admission turn admitted=N"; a
    // failed turn logs "admission turn failed", which must not count.
    let admitting = "admission turn admitted=";
    assert!(
        first.log_lines_containing(admitting) > 0 && second.log_lines_containing(admitting) > 0,
        "both processes admitted (turns: {} and {})",
        first.log_lines_containing(admitting),
        second.log_lines_containing(admitting)
    );
    let (clean, report) = common::run_check(&db.url, MAX_ACTIVE as u32);
    assert!(clean, "{report}");
}

/// The line's admitted-through number, read from the database.
async fn admitted_through(db: &TestDb) -> i64 {
    common::fixtures::sql_number(db, "SELECT admitted_through_seq FROM queue_state").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_process_does_not_freeze_the_line_for_the_others() {
    let db = TestDb::new().await;
    let settings = [
        ("MAX_ACTIVE_TOKENS", "3"),
        ("ACTIVE_TOKEN_SECONDS", "1"),
        ("ADMIT_INTERVAL_MS", "10"),
    ];
    let frozen = ServerProcess::start(&db.url, &settings);
    let other = ServerProcess::start(&db.url, &settings);
    for _ in 0..150 {
        let token = other.newcomer("fan").await;
        assert!(token["errors"].is_null(), "{token}");
    }
    // A rush on the process about to freeze, so that it is likely to hold
    // the line's lock (issuing or admitting) at the instant it stops.
    let url = format!("http://127.0.0.1:{}/graphql", frozen.port);
    let rush = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let ask = |query: &'static str, variables: serde_json::Value| {
            client
                .post(&url)
                .json(&serde_json::json!({"query": query, "variables": variables}))
                .timeout(Duration::from_millis(300))
                .send()
        };
        loop {
            let Ok(registered) = ask(
                "mutation { registerUser(name: \"rush\") { id } }",
                json!({}),
            )
            .await
            else {
                continue;
            };
            let id = registered
                .json::<serde_json::Value>()
                .await
                .unwrap_or_default()["data"]["registerUser"]["id"]
                .clone();
            let _ = ask(
                "mutation($id: UUID!) { issueToken(userId: $id) { seq: position } }",
                json!({"id": id}),
            )
            .await;
        }
    });
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300 + 170 * round)).await;
        frozen.signal("STOP");
        let before = admitted_through(&db).await;
        let stopped = Instant::now();
        // A frozen lock holder is cut off after IDLE_TRANSACTION_SECONDS;
        // after that a slot frees every second (ACTIVE_TOKEN_SECONDS).
        let bound = Duration::from_secs(u64::from(db::IDLE_TRANSACTION_SECONDS) + 6);
        while admitted_through(&db).await < before + 3 {
            assert!(
                stopped.elapsed() < bound,
                "round {round}: the line stood still for {bound:?} while one process was frozen"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        frozen.signal("CONT");
    }
    rush.abort();
    assert!(other.log_lines_containing("admission turn admitted=") > 0);
    let (clean, report) = common::run_check(&db.url, 3);
    assert!(clean, "{report}");
}
