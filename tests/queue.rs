//! The waiting line through the real server: fairness, exact positions, one
//! token per user, the guard's codes, lapse and re-issue.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::fixtures::{self, Token, issue_token, queue_status, register};
use common::{TestServer, concurrently};
use serde_json::json;
use ticket_reservation::queue;

async fn admit_now(server: &TestServer) {
    let turn = queue::service::admit_waiting(&server.state.pool, server.state.queue.settings)
        .await
        .unwrap()
        .expect("nobody else holds the line");
    server.state.queue.publish(turn.counters);
}

/// Makes the ACTIVE token of `user` lapse now, as if its time had run out.
async fn lapse_active_token_of(server: &TestServer, user: uuid::Uuid) {
    fixtures::sql_execute(
        &server.db,
        &format!(
            "UPDATE queue_tokens SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND \
             WHERE user_id = UNHEX('{}') AND status = 'ACTIVE'",
            user.simple()
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_turn_skips_rather_than_waits_when_another_holds_the_line() {
    use diesel_async::SimpleAsyncConnection;
    let server = TestServer::start().await;
    let settings = server.state.queue.settings;
    let mut other = server.db.connect().await;
    other.batch_execute("BEGIN").await.unwrap();
    other
        .batch_execute("SELECT * FROM queue_state FOR UPDATE")
        .await
        .unwrap();
    let turn = queue::service::admit_waiting(&server.state.jobs_pool, settings)
        .await
        .expect("a skipped turn is no error");
    assert!(turn.is_none(), "the turn skipped: {turn:?}");
    other.batch_execute("ROLLBACK").await.unwrap();
    let turn = queue::service::admit_waiting(&server.state.jobs_pool, settings)
        .await
        .unwrap();
    assert!(turn.is_some(), "with the line free the turn runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_arrivals_get_exact_gapless_positions() {
    let server = Arc::new(TestServer::with_settings(|c| c.max_active_tokens = 10).await);
    let users = {
        let server = Arc::clone(&server);
        concurrently(1000, move |i| {
            let server = Arc::clone(&server);
            async move { register(&server, &format!("fan {i}")).await }
        })
        .await
    };
    let tokens: Vec<Token> = {
        let users = Arc::new(users);
        let server = Arc::clone(&server);
        concurrently(1000, move |i| {
            let (server, users) = (Arc::clone(&server), Arc::clone(&users));
            async move { issue_token(&server, users[i]).await }
        })
        .await
    };

    let active = tokens.iter().filter(|t| t.status == "ACTIVE").count();
    assert_eq!(active, 10);
    let mut positions: Vec<u64> = tokens.iter().filter_map(|t| t.position).collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=990).collect::<Vec<u64>>(),
        "positions 1..990, no gaps, no repeats"
    );

    // The same holds when every token asks again, and in the database.
    let mut polled = Vec::new();
    for token in &tokens {
        let status = queue_status(&server, &token.token).await;
        polled.push(status.data("queueStatus")["position"].as_u64());
    }
    let mut polled: Vec<u64> = polled.into_iter().flatten().collect();
    polled.sort_unstable();
    assert_eq!(polled, (1..=990).collect::<Vec<u64>>());
    let db = &server.db;
    assert_eq!(
        fixtures::sql_number(
            db,
            "SELECT COUNT(*) FROM queue_tokens WHERE status = 'ACTIVE'"
        )
        .await,
        10
    );
    assert_eq!(
        fixtures::sql_number(
            db,
            "SELECT COUNT(*) FROM queue_tokens WHERE status = 'WAITING'"
        )
        .await,
        990
    );
    assert_eq!(
        fixtures::sql_number(
            db,
            "SELECT COUNT(DISTINCT seq) FROM queue_tokens WHERE seq BETWEEN 1 AND 1000"
        )
        .await,
        1000,
        "sequence numbers are gapless"
    );
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_issues_for_one_user_yield_one_token() {
    let server = Arc::new(TestServer::with_settings(|c| c.max_active_tokens = 1).await);
    let first = register(&server, "early bird").await;
    issue_token(&server, first).await; // takes the only slot, so the next one waits
    let user = register(&server, "impatient").await;
    let tokens = {
        let server = Arc::clone(&server);
        concurrently(50, move |_| {
            let server = Arc::clone(&server);
            async move { issue_token(&server, user).await }
        })
        .await
    };
    let distinct: HashSet<&str> = tokens.iter().map(|t| t.token.as_str()).collect();
    assert_eq!(distinct.len(), 1, "one live token per user");
    assert!(tokens.iter().all(|t| t.position == Some(1)));
    let stored = fixtures::sql_number(
        &server.db,
        &format!(
            "SELECT COUNT(*) FROM queue_tokens WHERE user_id = UNHEX('{}')",
            user.simple()
        ),
    )
    .await;
    assert_eq!(stored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_freed_one_by_one_admit_in_issue_order() {
    let server = TestServer::with_settings(|c| c.max_active_tokens = 1).await;
    let mut users = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..5 {
        let user = register(&server, &format!("fan {i}")).await;
        tokens.push(issue_token(&server, user).await);
        users.push(user);
    }
    assert_eq!(tokens[0].status, "ACTIVE");
    let positions: Vec<Option<u64>> = tokens.iter().map(|t| t.position).collect();
    assert_eq!(positions, vec![None, Some(1), Some(2), Some(3), Some(4)]);

    for next in 1..5 {
        lapse_active_token_of(&server, users[next - 1]).await;
        admit_now(&server).await;
        for (i, token) in tokens.iter().enumerate() {
            let state = queue_status(&server, &token.token).await;
            let state = state.data("queueStatus");
            let expected = match i.cmp(&next) {
                std::cmp::Ordering::Less => "EXPIRED",
                std::cmp::Ordering::Equal => "ACTIVE",
                std::cmp::Ordering::Greater => "WAITING",
            };
            assert_eq!(
                state["status"], expected,
                "token {i} after freeing slot {next}"
            );
            if i > next {
                assert_eq!(state["position"].as_u64(), Some((i - next) as u64));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_never_overtakes_the_line_even_when_a_slot_is_free() {
    let server = TestServer::with_settings(|c| c.max_active_tokens = 1).await;
    let first = register(&server, "first").await;
    let second = register(&server, "second").await;
    let third = register(&server, "third").await;
    issue_token(&server, first).await;
    let waiting = issue_token(&server, second).await;
    assert_eq!(waiting.position, Some(1));

    lapse_active_token_of(&server, first).await; // a slot is free, the loop has not run
    let newcomer = issue_token(&server, third).await;
    assert_eq!(newcomer.status, "WAITING");
    assert_eq!(newcomer.position, Some(2));

    admit_now(&server).await;
    assert_eq!(
        queue_status(&server, &waiting.token)
            .await
            .data("queueStatus")["status"],
        "ACTIVE"
    );
    assert_eq!(
        queue_status(&server, &newcomer.token)
            .await
            .data("queueStatus")["position"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_token_lapses_and_its_user_rejoins_at_the_end() {
    let server = TestServer::with_settings(|c| {
        c.max_active_tokens = 1;
        c.active_token_seconds = 1;
    })
    .await;
    let early = register(&server, "early").await;
    let later = register(&server, "later").await;
    let first = issue_token(&server, early).await;
    let second = issue_token(&server, later).await;
    assert_eq!(
        (first.status.as_str(), second.position),
        ("ACTIVE", Some(1))
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // No background job has run: the lapse is read from the row.
    let lapsed = queue_status(&server, &first.token).await;
    assert_eq!(lapsed.data("queueStatus")["status"], "EXPIRED");
    server
        .gql("{ concerts { id } }", json!({}), Some(&first.token))
        .await
        .expect_code("TOKEN_EXPIRED");

    let again = issue_token(&server, early).await;
    assert_ne!(
        again.token, first.token,
        "an EXPIRED token is never valid again"
    );
    assert_eq!(
        (again.status.as_str(), again.position),
        ("WAITING", Some(2))
    );
    admit_now(&server).await;
    assert_eq!(
        queue_status(&server, &second.token)
            .await
            .data("queueStatus")["status"],
        "ACTIVE"
    );
    assert_eq!(
        queue_status(&server, &again.token)
            .await
            .data("queueStatus")["position"],
        1
    );
}

/// The server remembers tokens it has opened; a token one character away
/// from a remembered one must still be opened, and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_token_vouches_for_no_other_text() {
    let server = TestServer::start().await;
    let user = register(&server, "remembered").await;
    let issued = issue_token(&server, user).await;
    for _ in 0..3 {
        queue_status(&server, &issued.token)
            .await
            .data("queueStatus");
    }
    for position in [0, 20, issued.token.len() - 1] {
        let mut changed = issued.token.clone().into_bytes();
        changed[position] = if changed[position] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let changed = String::from_utf8(changed).unwrap();
        queue_status(&server, &changed)
            .await
            .expect_code("UNAUTHENTICATED");
    }
    queue_status(&server, &format!("{}A", issued.token))
        .await
        .expect_code("UNAUTHENTICATED");
    queue_status(&server, &issued.token)
        .await
        .data("queueStatus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_answers_each_code() {
    let server = TestServer::with_settings(|c| c.max_active_tokens = 1).await;
    let date = fixtures::one_date(&server.db).await;
    let (_, active) = fixtures::admitted_user(&server, "inside").await;
    let outside = register(&server, "outside").await;
    let waiting = issue_token(&server, outside).await;

    let operations = [
        "{ concerts { id } }".to_owned(),
        "{ availableDates(concertId: \"1\") { id } }".to_owned(),
        format!("{{ availableSeats(concertDateId: \"{date}\") {{ id }} }}"),
        format!("mutation {{ holdSeat(concertDateId: \"{date}\", seatNumber: 1) {{ id }} }}"),
        format!(
            "mutation {{ pay(reservationIds: [\"{}\"]) {{ id }} }}",
            uuid::Uuid::new_v4()
        ),
    ];
    let mut tampered = active.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    for operation in &operations {
        server
            .gql(operation, json!({}), None)
            .await
            .expect_code("UNAUTHENTICATED");
        server
            .gql(operation, json!({}), Some("made-up"))
            .await
            .expect_code("UNAUTHENTICATED");
        server
            .gql(operation, json!({}), Some(&tampered))
            .await
            .expect_code("UNAUTHENTICATED");
        let not_admitted = server.gql(operation, json!({}), Some(&waiting.token)).await;
        not_admitted.expect_code("NOT_ADMITTED");
        assert_eq!(
            not_admitted.errors()[0]["extensions"]["position"],
            1,
            "{operation}"
        );
    }
    server
        .gql(&operations[0], json!({}), Some(&active))
        .await
        .data("concerts");

    fixtures::sql_execute(
        &server.db,
        "UPDATE queue_tokens SET expires_at = UTC_TIMESTAMP(6) WHERE status = 'ACTIVE'",
    )
    .await;
    for operation in &operations[..4] {
        server
            .gql(operation, json!({}), Some(&active))
            .await
            .expect_code("TOKEN_EXPIRED");
    }
    // pay lets an expired token through to answer retries; with no such
    // reservation of this user it answers NOT_FOUND.
    server
        .gql(&operations[4], json!({}), Some(&active))
        .await
        .expect_code("NOT_FOUND");
    queue_status(&server, &tampered)
        .await
        .expect_code("UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_status_answers_every_state_and_estimates_only_while_waiting() {
    let server = TestServer::with_settings(|c| c.max_active_tokens = 1).await;
    let first = issue_token(&server, register(&server, "a").await).await;
    let second = issue_token(&server, register(&server, "b").await).await;
    let active = queue_status(&server, &first.token).await;
    let active = active.data("queueStatus");
    assert_eq!(active["status"], "ACTIVE");
    assert!(active["position"].is_null() && active["estimatedWaitSeconds"].is_null());
    assert!(
        active["expiresAt"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    let waiting = queue_status(&server, &second.token).await;
    let waiting = waiting.data("queueStatus");
    assert_eq!(
        (waiting["status"].as_str(), waiting["position"].as_u64()),
        (Some("WAITING"), Some(1))
    );
    assert!(
        waiting["estimatedWaitSeconds"]
            .as_u64()
            .is_some_and(|s| s > 0)
    );
    assert!(waiting["expiresAt"].is_null());
    queue_status(&server, "")
        .await
        .expect_code("UNAUTHENTICATED");
    server
        .gql(
            "mutation { issueToken(userId: \"00000000-0000-0000-0000-000000000000\") { token } }",
            json!({}),
            None,
        )
        .await
        .expect_code("NOT_FOUND");
    server
        .gql(
            "mutation { issueToken(userId: \"not-a-uuid\") { token } }",
            json!({}),
            None,
        )
        .await
        .expect_code("INVALID_INPUT");
}
