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

        let got = server.get_query(&query).await;
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
        let answer = server.post_json(&body).await;
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

/// graphql-js 16/17's `getIntrospectionQuery` with every option GraphiQL
/// turns on (descriptions, specifiedByUrl, directiveIsRepeatable,
/// schemaDescription, inputValueDeprecation, oneOf), its ten `ofType`.
const GRAPHQL_JS_INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    description
    queryType { name kind }
    mutationType { name kind }
    subscriptionType { name kind }
    types { ...FullType }
    directives {
      name description isRepeatable locations
      args(includeDeprecated: true) { ...InputValue }
    }
  }
}
fragment FullType on __Type {
  kind name description specifiedByURL isOneOf
  fields(includeDeprecated: true) {
    name description
    args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name description type { ...TypeRef } defaultValue isDeprecated deprecationReason
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
  ofType { kind name ofType { kind name } } } } } } } } } }
}
"#;

/// graphql-core's `get_introspection_query(descriptions=True)`.
const GRAPHQL_CORE_INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_introspection_queries_are_answered_and_deeper_ones_refused() {
    let server = TestServer::start().await;
    for query in [GRAPHQL_JS_INTROSPECTION, GRAPHQL_CORE_INTROSPECTION] {
        let answer = server.gql(query, json!({}), None).await;
        let schema = answer.data("__schema");
        let types = schema["types"].as_array().expect("the types");
        let user = types.iter().find(|t| t["name"] == "User").expect("User");
        let fields = user["fields"].as_array().expect("User's fields");
        assert!(
            fields.iter().any(|field| field["description"].is_string()),
            "descriptions included"
        );
    }

    // Depth that comes from nesting the introspection lists multiplies the
    // answer as it goes: refused, like nested lists of the schema's own.
    let unwrap_and_list = "type { ofType { fields { ";
    let hostile = format!(
        "{{ __type(name: \"Query\") {{ fields {{ {} name {} }} }} }}",
        unwrap_and_list.repeat(4),
        "} } } ".repeat(4)
    );
    server
        .gql(&hostile, json!({}), None)
        .await
        .expect_code("LIMIT_EXCEEDED");
    let hostile_schema = "{ __schema { types { fields { type { fields { type { fields { \
        type { fields { name } } } } } } } } } }";
    server
        .gql(hostile_schema, json!({}), None)
        .await
        .expect_code("LIMIT_EXCEEDED");
}

/// A fresh graphql-transport-ws connection, acknowledged.
async fn acknowledged(server: &TestServer) -> WsClient {
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init(json!({})).await;
    ws
}

async fn closes_with(mut ws: WsClient, code: u16, what: &str) {
    let (closed, reason) = ws.close_frame().await.expect("a close frame");
    assert_eq!(closed, code, "{what}: {reason}");
    assert!(
        reason.len() <= 123,
        "{what}: a reason of {} bytes",
        reason.len()
    );
}

/// A token that stays WAITING: the one slot is taken by someone else, so
/// a subscription to it stays open.
async fn token_in_line(server: &TestServer) -> String {
    let first = common::fixtures::register(server, "first").await;
    common::fixtures::issue_token(server, first).await;
    let waiting = common::fixtures::register(server, "second").await;
    let token = common::fixtures::issue_token(server, waiting).await;
    assert_eq!(token.status, "WAITING");
    token.token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_closes_each_breach_with_its_graphql_transport_ws_code() {
    let server = TestServer::with_settings(|config| config.max_active_tokens = 1).await;
    for (what, message) in [
        ("not JSON", "{".to_owned()),
        ("an unknown type", json!({"type": "gimme"}).to_string()),
        ("a type that is not text", json!({"type": 7}).to_string()),
        (
            "a subscribe without id",
            json!({"type": "subscribe", "payload": {"query": "{ __typename }"}}).to_string(),
        ),
        (
            "a subscribe without query",
            json!({"type": "subscribe", "id": "1", "payload": {}}).to_string(),
        ),
        (
            "a long unknown type",
            json!({"type": "x".repeat(300)}).to_string(),
        ),
    ] {
        let mut ws = acknowledged(&server).await;
        ws.send_text(&message).await;
        closes_with(ws, 4400, what).await;
    }

    let mut early = WsClient::connect(server.addr, TRANSPORT_WS).await;
    early.subscribe("1", "{ __typename }", json!({})).await;
    closes_with(early, 4401, "subscribe before connection_init").await;

    let mut twice = acknowledged(&server).await;
    twice.send(json!({"type": "connection_init"})).await;
    closes_with(twice, 4429, "a second connection_init").await;

    // A subscription that stays open (a token still in line), then its id again.
    let token = token_in_line(&server).await;
    let mut again = acknowledged(&server).await;
    let follow = "subscription($t: String!) { queueStatus(token: $t) { status } }";
    again.subscribe("same", follow, json!({"t": token})).await;
    let first = again.next().await.expect("the state at once");
    assert_eq!(first["id"], "same");
    again.subscribe("same", follow, json!({"t": token})).await;
    closes_with(again, 4409, "a subscribe reusing a live id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_and_a_silent_socket_is_closed() {
    let server = TestServer::start().await;
    let mut ws = acknowledged(&server).await;
    assert_eq!(
        ws.close_with(1000).await,
        Some(1000),
        "the Close is answered"
    );

    let silent = WsClient::connect(server.addr, TRANSPORT_WS).await;
    closes_with(silent, 4408, "no connection_init within 10 s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cap_counts_every_operation_of_a_connection() {
    let server = TestServer::with_settings(|config| config.max_active_tokens = 1).await;
    let mut ws = acknowledged(&server).await;
    // Eight on the queueStatus fast path, eight that async-graphql serves
    // itself (a directive keeps them off the fast path): sixteen in all.
    let token = token_in_line(&server).await;
    let follow = "subscription($t: String!) { queueStatus(token: $t) { status } }";
    let general =
        "subscription($t: String!) { queueStatus(token: $t) @include(if: true) { status } }";
    for n in 0..16 {
        let query = if n % 2 == 0 { follow } else { general };
        ws.subscribe(&format!("op{n}"), query, json!({"t": token}))
            .await;
    }
    ws.subscribe("op16", follow, json!({"t": token})).await;
    loop {
        let message = ws.next().await.expect("answers");
        if message["id"] == "op16" {
            assert_eq!(message["type"], "error", "{message}");
            assert_eq!(
                message["payload"][0]["extensions"]["code"],
                "LIMIT_EXCEEDED"
            );
            break;
        }
    }
}

/// The code of the first error in a websocket message, whichever way the
/// protocol framed it (`next` with errors, or `error`).
fn ws_error_code(message: &Value) -> Option<&str> {
    let payload = &message["payload"];
    payload["errors"][0]["extensions"]["code"]
        .as_str()
        .or_else(|| payload[0]["extensions"]["code"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_past_its_time_bound_ends_and_the_connection_carries_on() {
    use diesel_async::RunQueryDsl;

    let server = TestServer::with_settings(|config| {
        config.max_active_tokens = 1;
        config.request_timeout_ms = 500;
    })
    .await;
    let user = common::fixtures::register(&server, "patient").await;
    let token = token_in_line(&server).await;

    // Another session takes the tables every answer below reads, so each
    // waits (a metadata lock wait lasts a day) until the bound stops it.
    let mut locker = server.db.connect().await;
    diesel::sql_query("LOCK TABLES users WRITE, queue_state WRITE, queue_tokens WRITE")
        .execute(&mut locker)
        .await
        .unwrap();

    let mut ws = acknowledged(&server).await;
    let balance = "query($id: UUID!) { user(id: $id) { balance } }";
    ws.subscribe("general", balance, json!({"id": user})).await;
    let follow = "subscription($t: String!) { queueStatus(token: $t) { status position } }";
    ws.subscribe("fast", follow, json!({"t": token})).await;
    let mut ended = std::collections::BTreeMap::new();
    while ended.len() < 2 {
        let message = ws
            .next()
            .await
            .expect("an answer while the tables are locked");
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        if let Some(code) = ws_error_code(&message) {
            ended.insert(id, code.to_owned());
        }
    }
    assert_eq!(ended.get("general").map(String::as_str), Some("INTERNAL"));
    assert_eq!(ended.get("fast").map(String::as_str), Some("INTERNAL"));

    // Over HTTP the same bound answers 408.
    let response = server
        .http
        .post(server.url("/graphql"))
        .json(&json!({"query": balance, "variables": {"id": user}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 408);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "INTERNAL",
        "{answer}"
    );

    diesel::sql_query("UNLOCK TABLES")
        .execute(&mut locker)
        .await
        .unwrap();
    // The connection is still open and serves the next operation.
    ws.subscribe("after", balance, json!({"id": user})).await;
    loop {
        let message = ws.next().await.expect("the connection carries on");
        if message["id"] == "after" && message["type"] == "next" {
            assert_eq!(
                message["payload"]["data"]["user"]["balance"], "0.00",
                "{message}"
            );
            break;
        }
    }
    still_answers(&server).await;
}
