//! Holds: one winner per seat, the hold limit, lapses, and bad input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fixtures::{
    add_concert, admitted_user, charge, days_from_now, held, hold, issue_token, one_date, pay,
    queue_status, sql_number,
};
use common::{TestServer, concurrently};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_fans_race_for_one_seat_and_exactly_one_wins() {
    let server = Arc::new(TestServer::start().await);
    let date = one_date(&server.db).await;
    let tokens = {
        let server = Arc::clone(&server);
        concurrently(200, move |i| {
            let server = Arc::clone(&server);
            async move { admitted_user(&server, &format!("fan {i}")).await.1 }
        })
        .await
    };
    let tokens = Arc::new(tokens);
    let answers = {
        let (server, tokens) = (Arc::clone(&server), Arc::clone(&tokens));
        concurrently(200, move |i| {
            let (server, tokens) = (Arc::clone(&server), Arc::clone(&tokens));
            async move { hold(&server, &tokens[i], date, 25).await.code() }
        })
        .await
    };
    let winners = answers.iter().filter(|code| code.is_none()).count();
    let losers = answers
        .iter()
        .filter(|code| code.as_deref() == Some("SEAT_UNAVAILABLE"))
        .count();
    assert_eq!((winners, losers), (1, 199), "answers: {answers:?}");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM reservations").await,
        1
    );
    assert_eq!(
        sql_number(
            &server.db,
            "SELECT COUNT(*) FROM seats WHERE status = 'HELD' AND number = 25"
        )
        .await,
        1
    );
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_racing_for_many_seats_stops_at_the_hold_limit() {
    let server = Arc::new(TestServer::with_settings(|c| c.max_holds_per_user = 2).await);
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "greedy").await;
    let answers = {
        let (server, token) = (Arc::clone(&server), token.clone());
        concurrently(12, move |i| {
            let (server, token) = (Arc::clone(&server), token.clone());
            async move { hold(&server, &token, date, i as i32 + 1).await.code() }
        })
        .await
    };
    let held = answers.iter().filter(|code| code.is_none()).count();
    let limited = answers
        .iter()
        .filter(|code| code.as_deref() == Some("HOLD_LIMIT"))
        .count();
    assert_eq!((held, limited), (2, 10), "answers: {answers:?}");
    let stored = sql_number(
        &server.db,
        &format!(
            "SELECT COUNT(*) FROM reservations WHERE user_id = UNHEX('{}')",
            user.simple()
        ),
    )
    .await;
    assert_eq!(stored, 2);
    let limit = hold(&server, &token, date, 40).await;
    limit.expect_code("HOLD_LIMIT");
    assert_eq!(limit.errors()[0]["extensions"]["limit"], 2);
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_repeating_a_hold_gets_the_same_reservation() {
    let server = TestServer::start().await;
    let date = one_date(&server.db).await;
    let (_, mine) = admitted_user(&server, "holder").await;
    let (_, theirs) = admitted_user(&server, "rival").await;
    let first = hold(&server, &mine, date, 9).await.data("holdSeat").clone();
    let again = hold(&server, &mine, date, 9).await.data("holdSeat").clone();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(
        first["heldUntil"], again["heldUntil"],
        "a repeat does not extend the hold"
    );
    hold(&server, &theirs, date, 9)
        .await
        .expect_code("SEAT_UNAVAILABLE");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM reservations").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_holds_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let (_, dates) = add_concert(&server.db, "Edge", &[days_from_now(3), days_from_now(-1)]).await;
    let (future, begun) = (dates[0], dates[1]);
    let (_, token) = admitted_user(&server, "edgy").await;
    for seat in [0, 51, -1, i32::MAX] {
        hold(&server, &token, future, seat)
            .await
            .expect_code("INVALID_INPUT");
    }
    hold(&server, &token, begun, 1)
        .await
        .expect_code("SEAT_UNAVAILABLE");
    hold(&server, &token, 999_999, 1)
        .await
        .expect_code("NOT_FOUND");
    server
        .gql(
            "mutation { holdSeat(concertDateId: \"x\", seatNumber: 1) { id } }",
            json!({}),
            Some(&token),
        )
        .await
        .expect_code("INVALID_INPUT");
    server
        .gql(
            "mutation { holdSeat(concertDateId: \"1\", seatNumber: \"1\") { id } }",
            json!({}),
            Some(&token),
        )
        .await
        .expect_code("INVALID_INPUT");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM reservations").await,
        0
    );
    assert_eq!(
        sql_number(
            &server.db,
            "SELECT COUNT(*) FROM seats WHERE status <> 'AVAILABLE'"
        )
        .await,
        0
    );
    // A refused hold does not cut the token short.
    let status = queue_status(&server, &token).await;
    assert_eq!(status.data("queueStatus")["status"], "ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_hold_frees_the_seat_and_ends_the_token_without_any_sweep() {
    let server = TestServer::with_settings(|c| c.hold_seconds = 1).await;
    let date = one_date(&server.db).await;
    let (user, holder) = admitted_user(&server, "forgetful").await;
    let (_, rival) = admitted_user(&server, "rival").await;
    hold(&server, &holder, date, 5).await.data("holdSeat");
    hold(&server, &rival, date, 5)
        .await
        .expect_code("SEAT_UNAVAILABLE");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mine = server
        .gql(
            "query($id: UUID!) { user(id: $id) { reservations { status } } }",
            json!({"id": user}),
            None,
        )
        .await;
    assert_eq!(mine.data("user")["reservations"][0]["status"], "EXPIRED");
    let token = queue_status(&server, &holder).await;
    assert_eq!(
        token.data("queueStatus")["status"],
        "EXPIRED",
        "the holder's token ends with the hold"
    );
    let seats = server
        .gql(
            "query($d: ID!) { availableSeats(concertDateId: $d) { number } }",
            json!({"d": date.to_string()}),
            Some(&rival),
        )
        .await;
    assert_eq!(seats.data("availableSeats").as_array().unwrap().len(), 50);
    // The rows still say HELD: nothing has swept them, yet the seat is free.
    assert_eq!(
        sql_number(
            &server.db,
            "SELECT COUNT(*) FROM seats WHERE status = 'HELD'"
        )
        .await,
        1
    );
    let retaken = hold(&server, &rival, date, 5).await;
    assert_eq!(retaken.data("holdSeat")["status"], "HELD");
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_rewrites_lapsed_holds_and_their_tokens() {
    let server = TestServer::with_jobs(|c| {
        c.hold_seconds = 1;
        c.admit_interval_ms = 100;
    })
    .await;
    let date = one_date(&server.db).await;
    let (_, holder) = admitted_user(&server, "sleepy").await;
    hold(&server, &holder, date, 11).await.data("holdSeat");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reservations = sql_number(
            &server.db,
            "SELECT COUNT(*) FROM reservations WHERE status = 'EXPIRED'",
        )
        .await;
        let seats = sql_number(
            &server.db,
            "SELECT COUNT(*) FROM seats WHERE status = 'AVAILABLE'",
        )
        .await;
        let tokens = sql_number(
            &server.db,
            "SELECT COUNT(*) FROM queue_tokens WHERE status = 'EXPIRED'",
        )
        .await;
        if (reservations, seats, tokens) == (1, 50, 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "swept: {reservations} {seats} {tokens}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::assert_invariants_hold(&server);
}

/// A user's next token ends when a hold made under the previous token lapses
/// unpaid, long before the token's own ACTIVE_TOKEN_SECONDS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_from_an_earlier_token_still_ends_the_next_one_when_it_lapses() {
    // Long enough for the second hold, the payment and the new token to
    // happen before the first hold lapses, even on a loaded machine.
    let server = TestServer::with_settings(|c| {
        c.hold_seconds = 6;
        c.active_token_seconds = 600;
    })
    .await;
    let date = one_date(&server.db).await;
    let (user, first) = admitted_user(&server, "returning").await;
    charge(&server, user, "500000.00", None)
        .await
        .data("chargeBalance");
    let lapsing = hold(&server, &first, date, 2).await;
    let held_until = instant(&lapsing.data("holdSeat")["heldUntil"]);
    // Paying for another seat ends the first token; the hold on seat 2 stays.
    let paid = held(&server, &first, date, 3).await;
    pay(&server, &first, &[&paid], None).await.data("pay");

    let second = issue_token(&server, user).await;
    assert_eq!(second.status, "ACTIVE");
    let status = queue_status(&server, &second.token).await;
    assert_eq!(
        instant(&status.data("queueStatus")["expiresAt"]),
        held_until,
        "the unpaid hold caps the new token, not its 600 s"
    );
    let lapsed = held_until + chrono::Duration::milliseconds(100);
    let wait = (lapsed - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let status = queue_status(&server, &second.token).await;
    assert_eq!(
        status.data("queueStatus")["status"],
        "EXPIRED",
        "the unpaid hold lapsed"
    );
}

fn instant(value: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_at_the_limit_still_gets_its_own_hold_back() {
    let server = TestServer::with_settings(|c| c.max_holds_per_user = 2).await;
    let date = one_date(&server.db).await;
    let (_, token) = admitted_user(&server, "full hands").await;
    let first = hold(&server, &token, date, 1).await.data("holdSeat")["id"].clone();
    hold(&server, &token, date, 2).await.data("holdSeat");
    hold(&server, &token, date, 3)
        .await
        .expect_code("HOLD_LIMIT");
    let again = hold(&server, &token, date, 1).await;
    assert_eq!(again.data("holdSeat")["id"], first);
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_does_not_get_its_old_hold_back() {
    let server = TestServer::with_settings(|c| c.max_holds_per_user = 2).await;
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "paid one, kept one").await;
    common::fixtures::charge(&server, user, "1000000.00", None)
        .await
        .data("chargeBalance");
    let paid = common::fixtures::held(&server, &token, date, 1).await;
    common::fixtures::held(&server, &token, date, 2).await;
    common::fixtures::pay(&server, &token, &[&paid], None)
        .await
        .data("pay");
    // Paying ended the token: the hold on seat 2 stays, the token does not.
    hold(&server, &token, date, 2)
        .await
        .expect_code("TOKEN_EXPIRED");
}
