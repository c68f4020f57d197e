//! Clients that hang up mid-request, as browsers and mobile networks do all
//! the time, must never leave a database connection in a state where the
//! next request reads their answer, nor leave a transaction open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::fixtures::{self, one_date, register};
use common::{TestServer, assert_invariants_hold};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

const USERS: usize = 40;
const HONEST_CLIENTS: usize = 6;
const HANGING_CLIENTS: usize = 12;
const RUSH: Duration = Duration::from_secs(8);

#[derive(Clone)]
struct Fan {
    id: Uuid,
    name: String,
    token: String,
}

/// One request of each kind the rush sends: a read by id, a read by token,
/// a catalogue read and a write.
fn request_for(kind: usize, fan: &Fan, date: u64, key: &str) -> (Value, Option<String>) {
    match kind % 4 {
        0 => (
            json!({"query": "query($id: UUID!) { user(id: $id) { id name balance } }",
                   "variables": {"id": fan.id}}),
            None,
        ),
        1 => (
            json!({"query": "{ queueStatus { userId status } }"}),
            Some(fan.token.clone()),
        ),
        2 => (
            json!({"query": "query($d: ID!) { availableSeats(concertDateId: $d) { number } }",
                   "variables": {"d": date.to_string()}}),
            Some(fan.token.clone()),
        ),
        _ => (
            json!({"query": "mutation($id: UUID!, $k: String!) { chargeBalance(userId: $id, amount: \"1.00\", idempotencyKey: $k) { id name } }",
                   "variables": {"id": fan.id, "k": key}}),
            None,
        ),
    }
}

/// Whether an answer is about the fan (and date) it was asked for; the
/// reason when it is not.
fn answer_is_theirs(kind: usize, fan: &Fan, answer: &Value) -> Result<(), String> {
    if !answer["errors"].is_null() {
        return Err(format!("an error: {}", answer["errors"]));
    }
    let data = &answer["data"];
    let ok = match kind % 4 {
        0 => data["user"]["id"] == json!(fan.id.to_string()) && data["user"]["name"] == fan.name,
        1 => data["queueStatus"]["userId"] == json!(fan.id.to_string()),
        2 => data["availableSeats"].as_array().is_some_and(|seats| {
            seats.len() == 50 && seats.iter().all(|seat| seat["number"].is_i64())
        }),
        _ => {
            data["chargeBalance"]["id"] == json!(fan.id.to_string())
                && data["chargeBalance"]["name"] == fan.name
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("someone else's answer: {answer}"))
    }
}

/// Sends one request over a raw socket and closes it at a random point:
/// at once, while the server works on it, or after part of the answer.
async fn send_and_hang_up(addr: std::net::SocketAddr, body: &Value, token: Option<&str>) {
    let Ok(mut socket) = TcpStream::connect(addr).await else {
        return;
    };
    let body = body.to_string();
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if socket.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    match rand::random_range(0..10u32) {
        0 => {}
        1 => {
            let mut some = [0u8; 16];
            let _ = tokio::time::timeout(Duration::from_millis(50), socket.read(&mut some)).await;
        }
        _ => tokio::time::sleep(Duration::from_micros(rand::random_range(0..6_000))).await,
    }
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_hangs_up_never_hands_its_answer_to_another() {
    let server = TestServer::with_jobs(|config| config.database_pool_size = 8).await;
    let date = one_date(&server.db).await;
    let mut fans = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let name = format!("fan-{i}");
        let id = register(&server, &name).await;
        let token = fixtures::issue_token(&server, id).await.token;
        fans.push(Fan { id, name, token });
    }
    let fans = Arc::new(fans);
    let keys = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUSH;

    let hanging: Vec<_> = (0..HANGING_CLIENTS)
        .map(|client| {
            let (fans, keys, addr) = (Arc::clone(&fans), Arc::clone(&keys), server.addr);
            tokio::spawn(async move {
                let mut kind = client;
                while Instant::now() < deadline {
                    let fan = &fans[rand::random_range(0..fans.len())];
                    let key = format!("gone-{}", keys.fetch_add(1, Ordering::Relaxed));
                    let (body, token) = request_for(kind, fan, date, &key);
                    send_and_hang_up(addr, &body, token.as_deref()).await;
                    kind += 1;
                }
            })
        })
        .collect();

    let honest: Vec<_> = (0..HONEST_CLIENTS)
        .map(|client| {
            let (fans, keys) = (Arc::clone(&fans), Arc::clone(&keys));
            let (http, url) = (server.http.clone(), server.url("/graphql"));
            tokio::spawn(async move {
                let (mut answered, mut wrong) = (0u64, Vec::new());
                let mut kind = client;
                while Instant::now() < deadline {
                    let fan = &fans[rand::random_range(0..fans.len())];
                    let key = format!("kept-{}", keys.fetch_add(1, Ordering::Relaxed));
                    let (body, token) = request_for(kind, fan, date, &key);
                    let mut request = http.post(&url).json(&body);
                    if let Some(token) = token {
                        request = request.bearer_auth(token);
                    }
                    let answer: Value = request.send().await.unwrap().json().await.unwrap();
                    if let Err(reason) = answer_is_theirs(kind, fan, &answer) {
                        wrong.push(reason);
                    }
                    answered += 1;
                    kind += 1;
                }
                (answered, wrong)
            })
        })
        .collect();

    for client in hanging {
        client.await.unwrap();
    }
    let (mut answered, mut wrong) = (0, Vec::new());
    for client in honest {
        let (count, reasons) = client.await.unwrap();
        answered += count;
        wrong.extend(reasons);
    }
    assert!(
        answered > 100,
        "the honest clients got only {answered} answers"
    );
    assert!(
        wrong.is_empty(),
        "{} of {answered} honest answers were wrong ({} another's), e.g. {:?}",
        wrong.len(),
        wrong.iter().filter(|w| w.starts_with("someone")).count(),
        &wrong[..wrong.len().min(3)]
    );

    // Whatever the hang-ups interrupted has finished or rolled back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lingering = fixtures::sql_number(
        &server.db,
        &format!(
            "SELECT COUNT(*) FROM information_schema.innodb_trx t \
             JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id \
             WHERE p.db = '{}' AND TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) >= 2",
            server.db.name
        ),
    )
    .await;
    assert_eq!(lingering, 0, "transactions outlived the rush");

    // The line still admits: a newcomer goes straight in.
    let newcomer = register(&server, "late fan").await;
    let token = fixtures::issue_token(&server, newcomer).await;
    assert_eq!(token.status, "ACTIVE");
    // Every acknowledged charge is in the ledger, and nothing else is broken.
    assert_invariants_hold(&server);
}
