//! SIGTERM stops the server cleanly: websockets hear "going away" (1001)
//! so their clients reconnect elsewhere, and the process exits with 0.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::time::Duration;

use common::TestDb;
use common::process::ServerProcess;
use common::ws::{TRANSPORT_WS, WsClient};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_with_going_away_and_exits_cleanly() {
    let db = TestDb::new().await;
    let mut server = ServerProcess::start(&db.url, &[("MAX_ACTIVE_TOKENS", "1")]);
    server.newcomer("first").await;
    let second = server.newcomer("second").await;
    assert_eq!(second["data"]["issueToken"]["position"], 1);
    let token = second["data"]["issueToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut client = WsClient::connect(server.addr(), TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe(
            "line",
            "subscription($t: String!) { queueStatus(token: $t) { position } }",
            json!({"t": token}),
        )
        .await;
    let first = client.next().await.unwrap();
    assert_eq!(first["payload"]["data"]["queueStatus"]["position"], 1);

    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(15));
        (server, status)
    });
    let close = tokio::time::timeout(Duration::from_secs(15), client.close_frame())
        .await
        .unwrap();
    assert_eq!(close.map(|(code, _)| code), Some(1001), "going away");
    let (_server, status) = status.await.unwrap();
    assert!(
        status.is_some_and(|status| status.success()),
        "exit status {status:?}"
    );
}
