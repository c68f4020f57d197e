//! Following a place in line live over a real websocket.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::TestServer;
use common::fixtures::{issue_token, register};
use common::ws::{LEGACY_WS, TRANSPORT_WS, WsClient};
use serde_json::json;

const FOLLOW: &str = "subscription($token: String!) { queueStatus(token: $token) { status position estimatedWaitSeconds expiresAt } }";

/// One ACTIVE slot that turns over every second, and four people in line.
async fn line_of_four() -> (TestServer, Vec<String>) {
    let server = TestServer::with_jobs(|c| {
        c.max_active_tokens = 1;
        c.active_token_seconds = 1;
        c.admit_interval_ms = 100;
    })
    .await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        let user = register(&server, &format!("fan {i}")).await;
        tokens.push(issue_token(&server, user).await.token);
    }
    (server, tokens)
}

fn statuses(payloads: &[serde_json::Value]) -> Vec<(String, Option<u64>)> {
    payloads
        .iter()
        .map(|payload| {
            let state = &payload["data"]["queueStatus"];
            assert!(payload["errors"].is_null(), "{payload}");
            (
                state["status"].as_str().unwrap().to_owned(),
                state["position"].as_u64(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_follows_its_token_from_position_three_to_active() {
    let (server, tokens) = line_of_four().await;
    let mut client = WsClient::connect(server.addr, TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("follow", FOLLOW, json!({"token": tokens[3]}))
        .await;
    let seen = statuses(&client.collect_until_complete("follow").await);

    assert_eq!(
        seen.first(),
        Some(&("WAITING".to_owned(), Some(3))),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(|s| s.0.as_str()),
        Some("ACTIVE"),
        "{seen:?}"
    );
    let positions: Vec<u64> = seen.iter().filter_map(|s| s.1).collect();
    assert!(
        positions.windows(2).all(|w| w[0] > w[1]),
        "positions only fall: {seen:?}"
    );
    assert_eq!(positions, vec![3, 2, 1], "one item per change of position");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_may_come_in_connection_init_and_over_the_legacy_protocol() {
    let (server, tokens) = line_of_four().await;
    let mut client = WsClient::connect(server.addr, LEGACY_WS).await;
    client
        .init(json!({"Authorization": format!("Bearer {}", tokens[1])}))
        .await;
    client.subscribe("1", FOLLOW, json!({"token": ""})).await;
    let seen = statuses(&client.collect_until_complete("1").await);
    assert_eq!(
        seen.first(),
        Some(&("WAITING".to_owned(), Some(1))),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(|s| s.0.as_str()), Some("ACTIVE"));
}

/// A client offering both protocols is told which one the server chose and
/// must then be spoken to in that one, whatever order it offered them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_the_subprotocol_it_selected() {
    // No admission loop: one ACTIVE, two in line, standing still.
    let server = TestServer::with_settings(|c| c.max_active_tokens = 1).await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        let user = register(&server, &format!("fan {i}")).await;
        tokens.push(issue_token(&server, user).await.token);
    }
    for offered in [
        "graphql-ws, graphql-transport-ws",
        "graphql-transport-ws, graphql-ws",
    ] {
        let mut client = WsClient::connect_offering(server.addr, offered).await;
        assert_eq!(client.protocol, TRANSPORT_WS, "our preference wins");
        client
            .init(json!({"Authorization": format!("Bearer {}", tokens[2])}))
            .await;
        client
            .subscribe("1", FOLLOW, json!({"token": tokens[0]}))
            .await;
        let seen = statuses(&client.collect_until_complete("1").await);
        assert_eq!(seen, vec![("ACTIVE".to_owned(), None)], "offered {offered}");
        let query = "{ queueStatus { status position } }";
        client.subscribe("2", query, json!({})).await;
        let seen = statuses(&client.collect_until_complete("2").await);
        assert_eq!(
            seen,
            vec![("WAITING".to_owned(), Some(2))],
            "offered {offered}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_or_unknown_token_is_answered_once() {
    let (server, tokens) = line_of_four().await;
    let mut client = WsClient::connect(server.addr, TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("active", FOLLOW, json!({"token": tokens[0]}))
        .await;
    let seen = statuses(&client.collect_until_complete("active").await);
    assert_eq!(seen, vec![("ACTIVE".to_owned(), None)]);

    client
        .subscribe("forged", FOLLOW, json!({"token": "AAAA"}))
        .await;
    let answer = client.collect_until_complete("forged").await;
    let code = answer[0]["errors"][0]["extensions"]["code"].as_str();
    assert_eq!(code, Some("UNAUTHENTICATED"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_run_over_the_websocket_with_the_connection_token() {
    let (server, tokens) = line_of_four().await;
    let mut client = WsClient::connect(server.addr, TRANSPORT_WS).await;
    client
        .init(json!({"Authorization": format!("Bearer {}", tokens[2])}))
        .await;
    client
        .subscribe("poll", "{ queueStatus { status position } }", json!({}))
        .await;
    let seen = statuses(&client.collect_until_complete("poll").await);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "WAITING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_light_path_answers_exactly_as_the_general_one() {
    let (server, tokens) = line_of_four().await;
    let mut client = WsClient::connect(server.addr, TRANSPORT_WS).await;
    client.init(json!({})).await;
    // A plain queueStatus subscription takes the light path; one that uses
    // a named fragment goes through async-graphql's own handling.
    let light = "subscription($t: String!) { s: queueStatus(token: $t) { status place: position token issuedAt __typename } }";
    let general = "subscription($t: String!) { s: queueStatus(token: $t) { ...f } } fragment f on QueueToken { status place: position token issuedAt __typename }";
    client
        .subscribe("light", light, json!({"t": tokens[3]}))
        .await;
    let first_light = client.next().await.unwrap();
    client
        .subscribe("general", general, json!({"t": tokens[3]}))
        .await;
    let first_general = client.next().await.unwrap();
    assert_eq!(first_light["type"], "next");
    assert_eq!(
        first_light["payload"], first_general["payload"],
        "{first_light} / {first_general}"
    );
    assert_eq!(first_light["payload"]["data"]["s"]["place"], 3);

    // Either can be stopped by the client.
    for id in ["light", "general"] {
        client.send(json!({"type": "complete", "id": id})).await;
    }
    let mut completed = Vec::new();
    while completed.len() < 2 {
        let message = client.next().await.unwrap();
        if message["type"] == "complete" {
            completed.push(message["id"].as_str().unwrap().to_owned());
        }
    }
    completed.sort();
    assert_eq!(completed, vec!["general", "light"]);
    assert_eq!(
        server.state.queue.subscriber_count(),
        0,
        "stopped subscriptions release their followers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_before_connection_init_is_refused() {
    let (server, tokens) = line_of_four().await;
    let mut client = WsClient::connect(server.addr, TRANSPORT_WS).await;
    client
        .subscribe("early", FOLLOW, json!({"token": tokens[3]}))
        .await;
    assert_eq!(
        client.next().await,
        None,
        "the server closes the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_may_come_as_the_upgrade_requests_authorization() {
    let (server, tokens) = line_of_four().await;
    let mut client = WsClient::connect_with_token(server.addr, TRANSPORT_WS, &tokens[2]).await;
    client.init(json!({})).await;
    client.subscribe("1", FOLLOW, json!({"token": ""})).await;
    let first = client.next().await.unwrap();
    assert_eq!(
        first["payload"]["data"]["queueStatus"]["position"], 2,
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_follows_a_bounded_number_of_places() {
    let (server, tokens) = line_of_four().await;
    let mut client = WsClient::connect(server.addr, TRANSPORT_WS).await;
    client.init(json!({})).await;
    for i in 0..17 {
        client
            .subscribe(&format!("s{i}"), FOLLOW, json!({"token": tokens[3]}))
            .await;
    }
    let mut refused = None;
    for _ in 0..40 {
        let message = client.next().await.unwrap();
        if message["type"] == "error" {
            refused = Some(message);
            break;
        }
    }
    let refused = refused.expect("the 17th subscription is refused");
    assert_eq!(refused["id"], "s16");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "LIMIT_EXCEEDED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_later_state_of_the_light_path_matches_the_general_one() {
    // After its first state, a plain selection's states are built without
    // running the query; each must still be the executor's, to ACTIVE.
    let (server, tokens) = line_of_four().await;
    let fields = "status place: position expiresAt issuedAt userId __typename";
    let light = format!("subscription($t: String!) {{ s: queueStatus(token: $t) {{ {fields} }} }}");
    let general = format!(
        "subscription($t: String!) {{ s: queueStatus(token: $t) {{ ...f }} }} fragment f on QueueToken {{ {fields} }}"
    );
    // Both on one connection, sent back to back, so both start at one place.
    let mut client = WsClient::connect(server.addr, TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("light", &light, json!({"t": tokens[3]}))
        .await;
    client
        .subscribe("general", &general, json!({"t": tokens[3]}))
        .await;
    let mut states = std::collections::HashMap::<String, Vec<serde_json::Value>>::new();
    let mut completed = 0;
    while completed < 2 {
        let message = client.next().await.unwrap();
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        match message["type"].as_str() {
            Some("next") => states
                .entry(id)
                .or_default()
                .push(message["payload"].clone()),
            Some("complete") => completed += 1,
            other => panic!("unexpected {other:?}: {message}"),
        }
    }
    let (light_states, general_states) = (&states["light"], &states["general"]);
    assert_eq!(light_states, general_states);
    let places: Vec<_> = light_states
        .iter()
        .map(|state| state["data"]["s"]["place"].clone())
        .collect();
    assert_eq!(places, vec![json!(3), json!(2), json!(1), json!(null)]);
    assert_eq!(
        light_states
            .last()
            .map(|state| state["data"]["s"]["status"].clone()),
        Some(json!("ACTIVE"))
    );
}
