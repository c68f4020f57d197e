//! Nothing a client sends stops the server: hostile shapes of query get a
//! coded refusal, and the process goes on answering everyone else.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::TestServer;
use common::ws::{TRANSPORT_WS, WsClient};
use serde_json::{Value, json};

const LEVELS: usize = 3_000;

/// Every place where a query can nest a value or a type, 3,000 levels deep.
fn deep_queries() -> Vec<(&'static str, String)> {
    let list = format!("{}1{}", "[".repeat(LEVELS), "]".repeat(LEVELS));
    let object = format!("{}1{}", "{a: ".repeat(LEVELS), "}".repeat(LEVELS));
    let list_type = format!("{}Int{}", "[".repeat(LEVELS), "]".repeat(LEVELS));
    vec![
        ("a list argument", format!("{{ __typename(x: {list}) }}")),
        (
            "an object argument",
            format!("{{ __typename(x: {object}) }}"),
        ),
        (
            "a variable's default",
            format!("query($v: Int = {list}) {{ __typename }}"),
        ),
        (
            "a variable's list type",
            format!("query($v: {list_type}) {{ __typename }}"),
        ),
        (
            "a directive argument",
            format!("{{ __typename @include(if: {list}) }}"),
        ),
        (
            "selection sets",
            format!("{}__typename{}", "{ a ".repeat(LEVELS), "}".repeat(LEVELS)),
        ),
    ]
}

/// The first error of a websocket answer: an `error` message, or a `next`
/// whose payload has errors.
fn first_error(answer: &Value) -> &Value {
    match answer["type"].as_str() {
        Some("error") => &answer["payload"][0],
        _ => &answer["payload"]["errors"][0],
    }
}

async fn still_answers(server: &TestServer) {
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let answer = server.gql("{ __typename }", json!({}), None).await;
    assert_eq!(answer.data("__typename"), "Query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_nested_3000_deep_are_refused_on_every_path() {
    let server = TestServer::start().await;
    for (shape, query) in deep_queries() {
        let posted = server.gql(&query, json!({}), None).await;
        posted.expect_code("LIMIT_EXCEEDED");
        assert!(posted.message().contains("64"), "{shape}: {}", posted.0);

        let got: Value = server
            .http
            .get(server.url("/graphql"))
            .query(&[("query", &query)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            got["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED",
            "GET, {shape}: {got}"
        );

        let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
        ws.init(json!({})).await;
        let subscription = query.replacen('{', "subscription {", 1);
        for (id, text) in [("q", &query), ("s", &subscription)] {
            ws.subscribe(id, text, json!({})).await;
            let answer = ws.next().await.expect("an answer");
            assert_eq!(
                first_error(&answer)["extensions"]["code"],
                "LIMIT_EXCEEDED",
                "websocket, {shape}: {answer}"
            );
            if answer["type"] == "next" {
                let done = ws.next().await.expect("complete");
                assert_eq!(done["type"], "complete", "{done}");
            }
        }
        still_answers(&server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_within_the_bound_is_parsed_as_usual() {
    let server = TestServer::start().await;
    let list = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let answer = server
        .gql(&format!("{{ __typename(x: {list}) }}"), json!({}), None)
        .await;
    // Past the nesting check the query is parsed and answered as usual.
    assert_eq!(answer.data("__typename"), "Query");
    still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_name_that_names_no_operation_gets_a_code() {
    let server = TestServer::start().await;
    let cases = [
        ("query A { __typename }", Some("C")),
        ("query A { __typename } query B { __typename }", Some("C")),
        ("query A { __typename } query B { __typename }", None),
    ];
    for (query, name) in cases {
        let body = json!({"query": query, "operationName": name});
        let answer: Value = server
            .http
            .post(server.url("/graphql"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "INVALID_INPUT",
            "{query} / {name:?}: {answer}"
        );

        let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
        ws.init(json!({})).await;
        ws.send(json!({"id": "1", "type": "subscribe", "payload": body}))
            .await;
        let answer = ws.next().await.expect("an answer");
        assert_eq!(
            first_error(&answer)["extensions"]["code"],
            "INVALID_INPUT",
            "websocket, {query} / {name:?}: {answer}"
        );
    }
}
