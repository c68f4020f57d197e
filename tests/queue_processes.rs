//! Two server processes on one database admit from one line: never more
//! ACTIVE than the limit, always in order, each token once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use common::TestDb;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Nullable, Unsigned};
use diesel_async::RunQueryDsl;
use serde_json::json;

const MAX_ACTIVE: usize = 3;
const TOKENS: u64 = 45;

/// A `ticket-reservation serve` child process and the log lines it wrote.
struct ServerProcess {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    fn start(database_url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ticket-reservation"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("MAX_ACTIVE_TOKENS", MAX_ACTIVE.to_string())
            .env("ACTIVE_TOKEN_SECONDS", "1")
            .env("ADMIT_INTERVAL_MS", "40")
            .env("SEED_DEMO", "false")
            .env("TOKEN_SECRET", "two-processes-share-this-token-secret")
            .env("RUST_LOG", "info,ticket_reservation::jobs=debug")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the server binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("GraphiQL at http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = port_tx.send(port.parse::<u16>().unwrap());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens");
        Self { child, port, log }
    }

    fn admission_turns(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("admission turn"))
            .count()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn gql(port: u16, query: &str, variables: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
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
    let first = ServerProcess::start(&db.url);
    let second = ServerProcess::start(&db.url);

    // Both processes issue tokens, interleaved.
    for i in 0..TOKENS {
        let port = if i % 2 == 0 { first.port } else { second.port };
        let user = gql(
            port,
            "mutation { registerUser(name: \"fan\") { id } }",
            json!({}),
        )
        .await;
        let id = user["data"]["registerUser"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let token = gql(
            port,
            "mutation($id: UUID!) { issueToken(userId: $id) { status } }",
            json!({"id": id}),
        )
        .await;
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
    assert!(
        first.admission_turns() > 0 && second.admission_turns() > 0,
        "both processes admitted (turns: {} and {})",
        first.admission_turns(),
        second.admission_turns()
    );
    let (clean, report) = common::run_check(&db.url, MAX_ACTIVE as u32);
    assert!(clean, "{report}");
}
