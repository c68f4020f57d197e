//! The HTTP surface: GraphiQL, health, readiness, limits, and errors that
//! carry a code and no internals.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestServer;
use common::fixtures::admitted_user;
use serde_json::json;
use ticket_reservation::AppState;
use tokio::net::{TcpListener, TcpStream};

/// Every operation of GraphiQL's worked session names only what the
/// schema has: run each, and no answer may be a validation error.
#[tokio::test]
async fn graphiqls_default_document_fits_the_schema() {
    let server = TestServer::start().await;
    let page = server
        .http
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let document = page
        .split("id=\"default-query\">")
        .nth(1)
        .and_then(|rest| rest.split("</script>").next())
        .expect("the default document");
    let parsed = async_graphql::parser::parse_query(document).expect("it parses");
    let names: Vec<String> = parsed
        .operations
        .iter()
        .filter_map(|(name, _)| name.map(|name| name.to_string()))
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        let answer = server
            .post_json(&json!({"query": document, "operationName": name, "variables": {}}))
            .await;
        let text = answer.to_string();
        for sign in [
            "Unknown field",
            "Unknown argument",
            "Unknown type",
            "Cannot query",
        ] {
            assert!(!text.contains(sign), "{name}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_is_served_with_its_own_assets() {
    let server = TestServer::start().await;
    let page = server.http.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("GraphiQL") && html.contains("/graphql/ws"));
    for (asset, kind) in [
        ("/graphiql/graphiql.min.js", "text/javascript"),
        ("/graphiql/graphiql.min.css", "text/css"),
        ("/graphiql/react.production.min.js", "text/javascript"),
        ("/graphiql/react-dom.production.min.js", "text/javascript"),
    ] {
        assert!(html.contains(asset), "the page loads {asset}");
        let response = server.http.get(server.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with(kind), "{asset}: {content_type}");
    }
    assert!(
        !html.contains("unpkg.com") && !html.contains("cdn."),
        "nothing from the internet"
    );
    let missing = server
        .http
        .get(server.url("/graphiql/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// A TCP proxy to MariaDB that the test can cut and restore.
struct CuttableProxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl CuttableProxy {
    async fn to(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (accepting, cuts) = (Arc::clone(&open), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_admission_loop_stops_turning() {
    let server = TestServer::with_jobs(|config| config.admit_interval_ms = 100).await;
    let readyz = || async {
        server
            .http
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(readyz().await, 200, "turning every 50 ms or so");
    // The loops die (as after a fault nobody restarted): within five
    // intervals of the last turn the process says it is not ready.
    server.jobs_stop.cancel();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(readyz().await, 503);
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the process itself is up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_health_does_not() {
    let db = common::TestDb::new().await;
    let real = url::Url::parse(&db.url).unwrap();
    let upstream = format!(
        "{}:{}",
        real.host_str().unwrap(),
        real.port().unwrap_or(3306)
    );
    let proxy = CuttableProxy::to(upstream).await;
    let mut through_proxy = real.clone();
    through_proxy.set_port(Some(proxy.addr.port())).unwrap();
    through_proxy.set_host(Some("127.0.0.1")).unwrap();
    // Or mysql_async would notice a local server and move to its unix socket.
    through_proxy.set_query(Some("prefer_socket=false"));
    let state = AppState::start(common::test_config(through_proxy.as_str()))
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, ticket_reservation::http::router(state)).into_future());
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    assert_eq!(status("/readyz").await, 200);
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await; // the proxy drops its sockets
    assert_eq!(status("/readyz").await, 503);
    assert_eq!(status("/healthz").await, 200);
    let answer: serde_json::Value = http
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": "mutation { registerUser(name: \"x\") { id } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Retry-safe, not INTERNAL: the client may send it again.
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{answer}"
    );
    proxy.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status("/readyz").await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "ready again once the database is back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_get_invalid_input_and_oversize_gets_limit_exceeded() {
    let server = TestServer::start().await;
    let (_, token) = admitted_user(&server, "tester").await;
    for broken in [
        "{ concerts { id ",
        "{ nosuchfield }",
        "query($x: Int) { concerts { id } }",
        "{ concerts }",
    ] {
        server
            .gql(broken, json!({}), Some(&token))
            .await
            .expect_code("INVALID_INPUT");
    }
    let deep = format!(
        "{{ concerts {} }}",
        "{ dates { seats { concertDate { concert ".repeat(4) + "{ id }" + &" } } } }".repeat(4)
    );
    let deep = server.gql(&deep, json!({}), Some(&token)).await;
    deep.expect_code("LIMIT_EXCEEDED");
    // Lists multiply: one more turn of seats -> concertDate -> seats than
    // the whole catalogue needs would be 50 times the rows.
    let cyclic = "{ concerts { dates { seats { concertDate { seats { concertDate { seats { number } } } } } } } }";
    assert!(
        cyclic.len() < ticket_reservation::graphql::MAX_QUERY_BYTES,
        "too complex, not too long or deep"
    );
    server
        .gql(cyclic, json!({}), Some(&token))
        .await
        .expect_code("LIMIT_EXCEEDED");
    // Twelve turns of the cycle: the cost would pass usize::MAX.
    let abyss = format!(
        "{{ availableSeats(concertDateId: \"1\") {}{{ number }}{} }}",
        "{ concertDate { seats ".repeat(12),
        " } }".repeat(12)
    );
    server
        .gql(&abyss, json!({}), Some(&token))
        .await
        .expect_code("LIMIT_EXCEEDED");
    let everything = "{ concerts { id name venue dates { id startsAt totalSeats availableSeats \
        concert { id name venue } seats { id number price status \
        concertDate { id startsAt totalSeats availableSeats concert { id name venue } } } } } }";
    let everything = server.gql(everything, json!({}), Some(&token)).await;
    assert!(everything.errors().is_empty(), "{:?}", everything.errors());
    // Each user(id) is a round trip of its own: 300 in one query are too many.
    let fields: Vec<String> = (0..300)
        .map(|i| format!("a{i}: user(id: $u) {{ id }}"))
        .collect();
    let wide = format!("query($u: UUID!) {{ {} }}", fields.join(" "));
    let nobody = uuid::Uuid::nil();
    server
        .gql(&wide, json!({"u": nobody}), None)
        .await
        .expect_code("LIMIT_EXCEEDED");
    let long = format!("{{ __typename }} # {}", "x".repeat(20_000));
    server
        .gql(&long, json!({}), None)
        .await
        .expect_code("LIMIT_EXCEEDED");

    let huge = server
        .http
        .post(server.url("/graphql"))
        .json(&json!({"query": "{ __typename }", "variables": {"pad": "x".repeat(100_000)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413, "bodies are capped at 64 KiB");
    let answer: serde_json::Value = huge.json().await.unwrap();
    assert_eq!(answer["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED");

    // Without a Content-Length the cap cuts the body off as it streams.
    let padded = json!({"query": "{ __typename }", "variables": {"pad": "x".repeat(100_000)}});
    let (status, body) = post_chunked(server.addr, &padded.to_string()).await;
    assert_eq!(status, 413, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED");
}

/// POSTs `body` to /graphql as one chunk of a chunked body, over a bare
/// connection (an HTTP client would send a Content-Length); the answer's
/// status and body.
async fn post_chunked(addr: SocketAddr, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let chunk = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before it has read the whole chunk.
    let _ = stream.write_all(chunk.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
}

/// The payload of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut payload = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        payload.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_are_not_graphql_get_a_coded_error_and_no_internals() {
    let server = TestServer::start().await;
    let post = |body: &'static str| {
        server
            .http
            .post(server.url("/graphql"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let put = server
        .http
        .put(server.url("/graphql"))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    let answer: serde_json::Value = put.json().await.unwrap();
    assert_eq!(answer["errors"][0]["extensions"]["code"], "INVALID_INPUT");

    let answers = [
        ("not json", post("not json").await.unwrap()),
        ("not an object", post("42").await.unwrap()),
        (
            "a batch",
            post(r#"[{"query": "{ __typename }"}]"#).await.unwrap(),
        ),
        (
            "a GET whose variables are not JSON",
            server
                .http
                .get(server.url("/graphql"))
                .query(&[("query", "{ __typename }"), ("variables", "{nope")])
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (what, response) in answers {
        assert_eq!(response.status(), 400, "{what}");
        let text = response.text().await.unwrap();
        let answer: serde_json::Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "INVALID_INPUT",
            "{what}: {text}"
        );
        for leak in ["InvalidRequest", "Error(", "Io(", ".rs"] {
            assert!(!text.contains(leak), "{what}: {leak:?} leaked: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_must_be_json_so_other_sites_cannot_post_forms() {
    let server = TestServer::start().await;
    let body = r#"{"query": "mutation { registerUser(name: \"csrf\") { id } }"}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let response = server
            .http
            .post(server.url("/graphql"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{content_type}");
    }
    assert_eq!(
        common::fixtures::sql_number(&server.db, "SELECT COUNT(*) FROM users").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_runs_queries_but_never_mutations() {
    let server = TestServer::start().await;
    let query = server
        .http
        .get(server.url("/graphql"))
        .query(&[("query", "{ __typename }")])
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    assert_eq!(
        query.json::<serde_json::Value>().await.unwrap()["data"]["__typename"],
        "Query"
    );
    let mutation = server
        .http
        .get(server.url("/graphql"))
        .query(&[("query", "mutation { registerUser(name: \"link\") { id } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(mutation.status(), 405);
    assert_eq!(
        common::fixtures::sql_number(&server.db, "SELECT COUNT(*) FROM users").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_reveal_no_sql_and_no_paths() {
    let server = TestServer::start().await;
    let (_, token) = admitted_user(&server, "unlucky").await;
    common::fixtures::sql_execute(&server.db, "RENAME TABLE concerts TO concerts_moved").await;
    let answer = server
        .gql("{ concerts { id name } }", json!({}), Some(&token))
        .await;
    answer.expect_code("INTERNAL");
    let text = answer.0.to_string();
    for leak in [
        "SELECT",
        "concerts`",
        "Table",
        "doesn't exist",
        ".rs",
        "diesel",
        "mysql",
    ] {
        assert!(!text.contains(leak), "{leak:?} leaked: {text}");
    }
    common::fixtures::sql_execute(&server.db, "RENAME TABLE concerts_moved TO concerts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_in_flight_requests_are_refused_at_once_and_health_answers() {
    use diesel_async::SimpleAsyncConnection;
    let server = TestServer::with_settings(|config| {
        config.max_in_flight = 2;
        config.max_websockets = 1;
    })
    .await;
    let user = common::fixtures::register(&server, "busy").await;
    // Two charges wait on the user's row, which another session holds.
    let mut holder = server.db.connect().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .batch_execute(&format!(
            "SELECT * FROM users WHERE id = UNHEX('{}') FOR UPDATE",
            user.simple()
        ))
        .await
        .unwrap();
    let waiting: Vec<_> = (0..2)
        .map(|n| {
            let (http, url) = (server.http.clone(), server.url("/graphql"));
            tokio::spawn(async move {
                let body = json!({
                    "query": "mutation($u: UUID!, $k: String!) { chargeBalance(userId: $u, amount: \"1.00\", idempotencyKey: $k) { balance } }",
                    "variables": {"u": user, "k": format!("k{n}")},
                });
                http.post(url).json(&body).send().await.unwrap().status()
            })
        })
        .collect();
    let lock_waits = format!(
        "SELECT COUNT(*) FROM information_schema.processlist \
         WHERE db = '{}' AND command = 'Execute' AND info LIKE 'UPDATE `users`%'",
        server.db.name
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while common::fixtures::sql_number(&server.db, &lock_waits).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "two charges wait on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let refused = server
        .http
        .post(server.url("/graphql"))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "OVERLOADED",
        "{body}"
    );
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health stays outside the bound");
    let metrics = scrape(&server).await;
    let refusals = ["reason=\"in_flight\""];
    assert!(
        series(&metrics, "ticket_reservation_refusals_total", &refusals) >= 1.0,
        "{metrics}"
    );
    assert!(series(&metrics, "ticket_reservation_requests_in_flight", &[]) >= 2.0);

    holder.batch_execute("ROLLBACK").await.unwrap();
    for charge in waiting {
        assert_eq!(charge.await.unwrap(), 200, "the two in flight finished");
    }
    common::assert_invariants_hold(&server);

    // One websocket at most: a second upgrade is refused while it is open.
    let open = common::ws::WsClient::connect(server.addr, common::ws::TRANSPORT_WS).await;
    assert_eq!(upgrade_status(server.addr).await, 503);
    drop(open);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while upgrade_status(server.addr).await != 101 {
        assert!(std::time::Instant::now() < deadline, "the slot came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status a graphql-transport-ws upgrade is answered with.
async fn upgrade_status(addr: SocketAddr) -> u16 {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        common::ws::TRANSPORT_WS.parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("the upgrade failed: {other}"),
    }
}

/// What /metrics says now.
async fn scrape(server: &TestServer) -> String {
    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the series `name` whose labels include all of `labels`
/// (summed over the series that match; 0 when there is none).
fn series(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && labels.iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_root_field_and_code_with_their_latency() {
    let server = TestServer::start().await;
    let total = "ticket_reservation_graphql_requests_total";
    let ok = ["operation=\"registerUser\"", "code=\"ok\""];
    let before = series(&scrape(&server).await, total, &ok);
    common::fixtures::register(&server, "counted").await;
    server
        .gql(
            "mutation { registerUser(name: \"\\u0000\") { id } }",
            json!({}),
            None,
        )
        .await
        .expect_code("INVALID_INPUT");
    let deep = format!(
        "{{ __typename(x: {}1{}) }}",
        "[".repeat(100),
        "]".repeat(100)
    );
    server
        .gql(&deep, json!({}), None)
        .await
        .expect_code("LIMIT_EXCEEDED");

    let text = scrape(&server).await;
    assert!(series(&text, total, &ok) >= before + 1.0, "{text}");
    let invalid = ["operation=\"registerUser\"", "code=\"INVALID_INPUT\""];
    assert!(series(&text, total, &invalid) >= 1.0, "{text}");
    let refused = ["operation=\"refused\"", "code=\"LIMIT_EXCEEDED\""];
    assert!(series(&text, total, &refused) >= 1.0, "{text}");
    let latency = "ticket_reservation_graphql_request_seconds_count";
    assert!(
        series(&text, latency, &["operation=\"registerUser\""]) >= 2.0,
        "{text}"
    );
    assert!(text.contains("ticket_reservation_graphql_request_seconds_bucket"));
    assert!(series(&text, "ticket_reservation_sql_statements_total", &[]) > 0.0);
    // No label takes a value the client chose: an operation name is not one.
    server
        .gql("query ClientChosenName { __typename }", json!({}), None)
        .await;
    assert!(!scrape(&server).await.contains("ClientChosenName"));
}
