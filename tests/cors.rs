//! Browsers on the site's own origin: preflights and CORS headers for the
//! listed origins alone, websocket upgrades checked against the same list,
//! and `/metrics` behind `METRICS_TOKEN`. `scripts/browser-test` checks the
//! same from a real browser.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::TestServer;
use common::ws::TRANSPORT_WS;
use ticket_reservation::config::{Origins, TokenSecret};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SITE: &str = "https://tickets.example.com";
const OTHER: &str = "https://evil.example.net";

async fn with_site_origin() -> TestServer {
    TestServer::with_settings(|config| {
        config.cors_allowed_origins = Origins(vec![SITE.to_owned()]);
    })
    .await
}

async fn preflight(server: &TestServer, origin: &str) -> reqwest::Response {
    server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/graphql"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn the_sites_origin_gets_a_preflight_and_its_header_and_no_one_else_does() {
    let server = with_site_origin().await;
    let answer = preflight(&server, SITE).await;
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(SITE));
    let allowed_headers = header(&answer, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert!(
        allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );

    let post = server
        .http
        .post(server.url("/graphql"))
        .header("Origin", SITE)
        .json(&serde_json::json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    assert_eq!(header(&post, "access-control-allow-origin"), Some(SITE));

    let refused = preflight(&server, OTHER).await;
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    let post = server
        .http
        .post(server.url("/graphql"))
        .header("Origin", OTHER)
        .json(&serde_json::json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&post, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn without_allowed_origins_there_are_no_cors_headers_at_all() {
    let server = TestServer::start().await;
    let answer = preflight(&server, SITE).await;
    assert!(
        answer
            .headers()
            .keys()
            .all(|name| !name.as_str().starts_with("access-control-")),
        "{:?}",
        answer.headers()
    );
}

/// The status of a websocket upgrade sent with this `Origin` and `Host`.
async fn upgrade_status(server: &TestServer, origin: Option<&str>, host: Option<&str>) -> u16 {
    let mut request = format!("ws://{}/graphql/ws", server.addr)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", TRANSPORT_WS.parse().unwrap());
    if let Some(origin) = origin {
        headers.insert("Origin", origin.parse().unwrap());
    }
    if let Some(host) = host {
        headers.insert("Host", host.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("the upgrade failed: {other}"),
    }
}

#[tokio::test]
async fn websocket_upgrades_are_checked_against_the_same_origins() {
    let server = with_site_origin().await;
    assert_eq!(upgrade_status(&server, Some(SITE), None).await, 101);
    assert_eq!(upgrade_status(&server, Some(OTHER), None).await, 403);
    // Not a browser: no Origin at all.
    assert_eq!(upgrade_status(&server, None, None).await, 101);
    // The server's own page (GraphiQL) is same-origin.
    let own = format!("http://{}", server.addr);
    assert_eq!(upgrade_status(&server, Some(&own), None).await, 101);

    let closed = TestServer::start().await;
    assert_eq!(upgrade_status(&closed, Some(SITE), None).await, 403);
    let own = format!("http://{}", closed.addr);
    assert_eq!(upgrade_status(&closed, Some(&own), None).await, 101);
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let token = "scrape-me-0123456789";
    let server = TestServer::with_settings(move |config| {
        config.metrics_token = Some(TokenSecret(token.as_bytes().to_vec()));
    })
    .await;
    let get = |bearer: Option<&'static str>| {
        let mut request = server.http.get(server.url("/metrics"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let anonymous = get(None).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(header(&anonymous, "www-authenticate"), Some("Bearer"));
    assert_eq!(
        get(Some("scrape-me-012345678X")).await.unwrap().status(),
        401
    );
    assert_eq!(get(Some("scrape-me")).await.unwrap().status(), 401);
    let scraper = get(Some(token)).await.unwrap();
    assert_eq!(scraper.status(), 200);
    let text = scraper.text().await.unwrap();
    assert!(text.contains("ticket_reservation_"), "{text}");

    let open = TestServer::start().await;
    let answer = open.http.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(answer.status(), 200, "open when no token is set");
}
