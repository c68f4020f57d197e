//! A `DATABASE_URL` of several hosts: the server works through the first
//! one that takes work; a dead link answers UNAVAILABLE (retry-safe), not
//! INTERNAL. (The same through a real Galera cluster, nodes killed
//! mid-rush, is `scripts/galera-rush`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::fixtures::{admitted_user, balance, charge, held, one_date, pay, sql_execute};
use common::{TestServer, assert_invariants_hold};
use serde_json::json;

/// A local port nothing listens on: a host that is down.
fn dead_host() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_first_host_is_down_works_through_the_next() {
    let server = TestServer::with_settings(|config| {
        let live = url::Url::parse(&config.database_url).unwrap();
        let live_host = format!(
            "{}:{}",
            live.host_str().unwrap(),
            live.port().unwrap_or(3306)
        );
        let multi =
            config
                .database_url
                .replacen(&live_host, &format!("{},{live_host}", dead_host()), 1);
        config.database_url = multi.as_str().into();
    })
    .await;
    assert!(server.state.config.database_url.contains(','));
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "fan").await;
    charge(&server, user, "200000.00", Some("c1"))
        .await
        .data("chargeBalance");
    let hold = held(&server, &token, date, 7).await;
    pay(&server, &token, &[&hold], Some("p1")).await.data("pay");
    assert_eq!(balance(&server, user).await, "35000.00");
    assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_dies_under_a_request_answers_unavailable() {
    let server = TestServer::start().await;
    let (user, _) = admitted_user(&server, "fan").await;
    let read = "query($id: UUID!) { user(id: $id) { balance } }";
    server
        .gql(read, json!({"id": user}), None)
        .await
        .data("user");
    // Every session of the server on its database dies, as when the
    // database restarts or a proxy drops them.
    sql_execute(
        &server.db,
        &format!(
            "BEGIN NOT ATOMIC \
               FOR session IN (SELECT ID FROM information_schema.PROCESSLIST \
                               WHERE DB = '{}' AND ID <> CONNECTION_ID()) DO \
                 KILL CONNECTION session.ID; \
               END FOR; \
             END",
            server.db.name
        ),
    )
    .await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let answer = server.gql(read, json!({"id": user}), None).await;
        codes.push(answer.code().unwrap_or_else(|| "ok".to_owned()));
    }
    assert!(codes.iter().any(|code| code == "UNAVAILABLE"), "{codes:?}");
    assert!(!codes.iter().any(|code| code == "INTERNAL"), "{codes:?}");
    assert_eq!(codes.last().map(String::as_str), Some("ok"), "{codes:?}");
}
