//! Per-address limits over the wire: 429 with `Retry-After` and
//! RATE_LIMITED past a limit, nothing changed by a refused request, entries
//! counted per field, one address's limit never another's, and
//! `X-Forwarded-For` believed only from trusted proxies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::fixtures::sql_number;
use common::ws::{TRANSPORT_WS, WsClient};
use common::{TestServer, concurrently};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A server with these limits a minute (0 is off).
async fn limited(requests: u32, entries: u32) -> TestServer {
    TestServer::with_settings(move |config| {
        config.rate_limit_per_minute = requests;
        config.entry_limit_per_minute = entries;
    })
    .await
}

/// A client whose requests leave from `source`, another loopback address.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().ok())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    fn assert_rate_limited(&self) {
        assert_eq!(self.status, 429, "{}", self.body);
        assert_eq!(self.code(), Some("RATE_LIMITED"), "{}", self.body);
        let seconds = self.retry_after.expect("a Retry-After header");
        assert!(seconds >= 1, "retry after {seconds}");
        assert_eq!(
            self.body["errors"][0]["extensions"]["retryAfterSeconds"].as_u64(),
            Some(seconds),
            "the extension says what the header says"
        );
        assert!(self.body.get("data").is_none_or(Value::is_null));
    }
}

async fn post(
    client: &reqwest::Client,
    server: &TestServer,
    query: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    post_to(client, server.url("/graphql"), query, forwarded_for).await
}

async fn post_to(
    client: &reqwest::Client,
    url: String,
    query: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut request = client.post(url).json(&json!({ "query": query }));
    if let Some(forwarded) = forwarded_for {
        request = request.header("X-Forwarded-For", forwarded);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    let body = response.json().await.expect("a JSON answer");
    Answer {
        status,
        retry_after,
        body,
    }
}

const CHEAP_QUERY: &str = "{ __typename }";

fn register_many(count: usize) -> String {
    let fields = (0..count)
        .map(|i| format!("u{i}: registerUser(name: \"fan {i}\") {{ id }}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!("mutation {{ {fields} }}")
}

async fn users(server: &TestServer) -> i64 {
    sql_number(&server.db, "SELECT COUNT(*) FROM users").await
}

#[tokio::test]
async fn past_the_request_limit_an_address_gets_429_and_nothing_changes() {
    let server = limited(5, 0).await;
    let fan = client_from("127.0.0.1");
    for _ in 0..5 {
        let answer = post(&fan, &server, CHEAP_QUERY, None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    post(&fan, &server, CHEAP_QUERY, None)
        .await
        .assert_rate_limited();
    post(&fan, &server, &register_many(1), None)
        .await
        .assert_rate_limited();
    assert_eq!(users(&server).await, 0, "a refused mutation made nothing");

    // Another address is not slowed by the first one's limit.
    let other = client_from("127.0.0.2");
    let answer = post(&other, &server, &register_many(1), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(users(&server).await, 1);
}

#[tokio::test]
async fn concurrent_entries_from_one_address_pass_exactly_up_to_the_limit() {
    let server = limited(0, 10).await;
    let answers = concurrently(50, |_| {
        let (client, url) = (server.http.clone(), server.url("/graphql"));
        async move { post_to(&client, url, &register_many(1), None).await }
    })
    .await;
    let passed = answers.iter().filter(|a| a.status == 200).count();
    for refused in answers.iter().filter(|a| a.status != 200) {
        refused.assert_rate_limited();
    }
    assert_eq!(passed, 10, "a burst of the limit passes, no more");
    assert_eq!(users(&server).await, 10, "each refused call made nothing");
}

#[tokio::test]
async fn aliased_entries_count_one_each_and_a_refused_batch_spends_nothing() {
    let server = limited(0, 60).await;
    let client = &server.http;
    post(client, &server, &register_many(200), None)
        .await
        .assert_rate_limited();
    // Through fragments too: 2 spreads of 40 are 80 entries.
    let fragment = format!(
        "mutation {{ ...F ...F }} fragment F on Mutation {{ {} }}",
        (0..40)
            .map(|i| format!("u{i}: registerUser(name: \"f{i}\") {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    post(client, &server, &fragment, None)
        .await
        .assert_rate_limited();
    assert_eq!(users(&server).await, 0);
    // Nothing was spent: the whole minute's 60 still pass in one request.
    let answer = post(client, &server, &register_many(60), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(users(&server).await, 60);
    post(client, &server, &register_many(1), None)
        .await
        .assert_rate_limited();
    // Queries are no entries.
    let answer = post(client, &server, CHEAP_QUERY, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    let trusted = TestServer::with_settings(|config| {
        config.rate_limit_per_minute = 2;
        config.trusted_proxies.0 = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    let proxy = client_from("127.0.0.1");
    for _ in 0..2 {
        let answer = post(&proxy, &trusted, CHEAP_QUERY, Some("198.51.100.1")).await;
        assert_eq!(answer.status, 200);
    }
    post(&proxy, &trusted, CHEAP_QUERY, Some("198.51.100.1"))
        .await
        .assert_rate_limited();
    // A client's own claim left of the proxy's entry changes nothing.
    post(
        &proxy,
        &trusted,
        CHEAP_QUERY,
        Some("203.0.113.50, 198.51.100.1"),
    )
    .await
    .assert_rate_limited();
    // Another fan behind the same proxy has a limit of its own.
    let answer = post(&proxy, &trusted, CHEAP_QUERY, Some("198.51.100.2")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A peer that is not a trusted proxy counts as itself whatever it says.
    let stranger = client_from("127.0.0.3");
    for forwarded in ["192.0.2.1", "192.0.2.2"] {
        let answer = post(&stranger, &trusted, CHEAP_QUERY, Some(forwarded)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    post(&stranger, &trusted, CHEAP_QUERY, Some("192.0.2.3"))
        .await
        .assert_rate_limited();
}

#[tokio::test]
async fn websocket_upgrades_and_their_operations_count() {
    let server = limited(3, 0).await;
    // One upgrade and two operations over it: three requests.
    let mut socket = WsClient::connect(server.addr, TRANSPORT_WS).await;
    socket.init(json!({})).await;
    for id in ["1", "2"] {
        socket.subscribe(id, CHEAP_QUERY, json!({})).await;
        let answer = socket.next().await.expect("an answer");
        assert_eq!(answer["type"], "next", "{answer}");
        assert!(answer["payload"]["errors"].is_null(), "{answer}");
        let _complete = socket.next().await;
    }
    socket.subscribe("3", CHEAP_QUERY, json!({})).await;
    let refused = socket.next().await.expect("an answer");
    let error = &refused["payload"]["errors"][0];
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{refused}");
    assert!(error["extensions"]["retryAfterSeconds"].as_u64() >= Some(1));

    // The next upgrade from this address is refused before it opens.
    let mut request = format!("ws://{}/graphql/ws", server.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        TRANSPORT_WS.parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 429 refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn entries_over_a_websocket_count_against_the_same_address() {
    let server = limited(0, 2).await;
    let answer = post(&server.http, &server, &register_many(1), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut socket = WsClient::connect(server.addr, TRANSPORT_WS).await;
    socket.init(json!({})).await;
    // Each operation read to its `complete`: a message of the first one
    // arriving late must not pass for the second one's answer.
    socket.subscribe("1", &register_many(2), json!({})).await;
    let refused = socket.collect_until_complete("1").await;
    assert_eq!(
        refused[0]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused:?}"
    );
    socket.subscribe("2", &register_many(1), json!({})).await;
    let passed = socket.collect_until_complete("2").await;
    assert!(passed[0]["errors"].is_null(), "{passed:?}");
    assert!(passed[0]["data"].is_object(), "{passed:?}");
    assert_eq!(users(&server).await, 2);
}
