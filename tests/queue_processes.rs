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
