//! An organizer steers a 2,000-token line that two server processes admit
//! from: lowering and raising `maxActiveTokens`, pausing and resuming, each
//! sent to one process and obeyed by both. Afterwards, from the rows: the
//! ACTIVE count at every admission stayed within the limit in force,
//! nobody was admitted while paused, and the order held.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use common::TestDb;
use common::fixtures::{sql_execute, sql_number};
use common::process::ServerProcess;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Nullable, Unsigned};
use diesel_async::RunQueryDsl;
use serde_json::json;

const KEY: &str = "organizer-key-for-the-tests-0123456789";
const TOKENS: u64 = 2000;

/// Puts 2,000 users in line, WAITING, straight into the database.
async fn fill_line(db: &TestDb) {
    let users: Vec<String> = (1..=TOKENS)
        .map(|i| format!("(UNHEX('{i:032x}'), 'fan {i}', 0, UTC_TIMESTAMP(6))"))
        .collect();
    sql_execute(
        db,
        &format!(
            "INSERT INTO users (id, name, balance, created_at) VALUES {}",
            users.join(",")
        ),
    )
    .await;
    let tokens: Vec<String> = (1..=TOKENS)
        .map(|i| {
            format!("({i}, UNHEX('{i:032x}'), UNHEX('{i:032x}'), 'WAITING', UTC_TIMESTAMP(6))")
        })
        .collect();
    sql_execute(
        db,
        &format!(
            "INSERT INTO queue_tokens (seq, user_id, nonce, status, issued_at) VALUES {}",
            tokens.join(",")
        ),
    )
    .await;
    sql_execute(
        db,
        &format!("UPDATE queue_state SET last_issued_seq = {TOKENS}"),
    )
    .await;
}

/// When a change was sent and when its answer came: it took effect between.
#[derive(Debug, Clone, Copy)]
struct Change {
    sent: NaiveDateTime,
    answered: NaiveDateTime,
}

async fn organizer(server: &ServerProcess, mutation: &str) -> Change {
    let sent = ticket_reservation::clock::now();
    let answer = server.gql_as(mutation, json!({}), Some(KEY)).await;
    assert!(answer["errors"].is_null(), "{answer}");
    Change {
        sent,
        answered: ticket_reservation::clock::now(),
    }
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
async fn two_processes_obey_the_organizers_limits_and_pause() {
    let db = TestDb::new().await;
    fill_line(&db).await;
    let settings = [
        ("MAX_ACTIVE_TOKENS", "20"),
        ("ACTIVE_TOKEN_SECONDS", "1"),
        ("ADMIT_INTERVAL_MS", "50"),
        ("ORGANIZER_KEYS", KEY),
    ];
    let first = ServerProcess::start(&db.url, &settings);
    let second = ServerProcess::start(&db.url, &settings);
    let pause_for = Duration::from_millis(1500);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lowered = organizer(
        &first,
        "mutation { setLineLimits(maxActiveTokens: 5) { maxActiveTokens } }",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let paused = organizer(&second, "mutation { pauseAdmission { paused } }").await;
    let admitted_when_paused =
        sql_number(&db, "SELECT admitted_through_seq FROM queue_state").await;
    tokio::time::sleep(pause_for).await;
    assert_eq!(
        sql_number(&db, "SELECT admitted_through_seq FROM queue_state").await,
        admitted_when_paused,
        "nobody admitted while paused"
    );
    let line = second
        .gql_as(
            "{ line { paused waiting maxActiveTokens } }",
            json!({}),
            Some(KEY),
        )
        .await;
    assert_eq!(line["data"]["line"]["paused"], true, "{line}");
    assert_eq!(line["data"]["line"]["maxActiveTokens"], 5, "{line}");
    let raised = organizer(
        &second,
        "mutation { setLineLimits(maxActiveTokens: 400) { maxActiveTokens } }",
    )
    .await;
    let resumed = organizer(&first, "mutation { resumeAdmission { paused } }").await;

    let started = Instant::now();
    while (sql_number(&db, "SELECT admitted_through_seq FROM queue_state").await as u64) < TOKENS {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the line stalled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut conn = db.connect().await;
    let rows: Vec<Admission> =
        diesel::sql_query("SELECT seq, admitted_at, expires_at FROM queue_tokens ORDER BY seq")
            .load(&mut conn)
            .await
            .unwrap();
    let spans: Vec<(u64, NaiveDateTime, NaiveDateTime)> = rows
        .iter()
        .map(|row| (row.seq, row.admitted_at.unwrap(), row.expires_at.unwrap()))
        .collect();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "admitted out of order: {pair:?}");
    }
    // The limit in force at an instant; around a change, either side's.
    let limit_at = |at: NaiveDateTime| -> usize {
        let phases = [(lowered, 20, 5), (raised, 5, 400)];
        let mut limit = 20;
        for (change, before, after) in phases {
            if at >= change.answered {
                limit = after;
            } else if at >= change.sent {
                limit = before.max(after);
            }
        }
        limit
    };
    for &(seq, admitted_at, _) in &spans {
        assert!(
            admitted_at <= paused.answered || admitted_at >= resumed.sent,
            "token {seq} admitted at {admitted_at} while paused ({paused:?} to {resumed:?})"
        );
        let active_then = spans
            .iter()
            .filter(|(_, from, until)| *from <= admitted_at && admitted_at < *until)
            .count();
        assert!(
            active_then <= limit_at(admitted_at),
            "{active_then} ACTIVE when token {seq} was admitted at {admitted_at}, limit {}",
            limit_at(admitted_at)
        );
    }
    let after_lowering = spans
        .iter()
        .filter(|(_, at, _)| *at > lowered.answered && *at < paused.sent)
        .count();
    assert!(
        after_lowering > 0,
        "the line kept moving under the lowered limit"
    );
    let (clean, report) = common::run_check(&db.url, 20);
    assert!(clean, "{report}");
}
