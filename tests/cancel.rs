//! Holds and sales that end early: `releaseHold` for fans, and
//! `cancelConcertDate` for organizers racing holds and payments on the
//! date; `salesReport` counted from the rows. Each ends with `check`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::fixtures::{admitted_user, charge, held, hold, one_date, pay, sql_number};
use common::{Gql, TestServer, assert_invariants_hold, concurrently};
use serde_json::json;
use ticket_reservation::config::{OrganizerKeys, TokenSecret};

const KEY: &str = "organizer-key-for-the-tests-0123456789";
const RELEASE: &str =
    "mutation($id: ID!) { releaseHold(reservationId: $id) { id status seat { number status } } }";
const CANCEL: &str =
    "mutation($d: ID!) { cancelConcertDate(concertDateId: $d) { id cancelledAt } }";
const REPORT: &str = "query($d: ID!) { salesReport(concertDateId: $d) { seatsSold seatsHeld seatsAvailable revenue concertDate { id cancelledAt } } }";

async fn server() -> TestServer {
    TestServer::with_settings(|config| {
        config.organizer_keys = OrganizerKeys(vec![TokenSecret(KEY.as_bytes().to_vec())]);
    })
    .await
}

async fn release(server: &TestServer, token: &str, id: &str) -> Gql {
    server.gql(RELEASE, json!({"id": id}), Some(token)).await
}

/// Sends one request from a concurrent task; the first error's code, or
/// "ok".
async fn code_of(
    http: &reqwest::Client,
    url: String,
    bearer: &str,
    query: &str,
    variables: serde_json::Value,
) -> String {
    let answer: serde_json::Value = http
        .post(url)
        .bearer_auth(bearer)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("ok")
        .to_owned()
}

async fn report(server: &TestServer, date: u64) -> serde_json::Value {
    server
        .gql(REPORT, json!({"d": date.to_string()}), Some(KEY))
        .await
        .data("salesReport")
        .clone()
}

#[tokio::test]
async fn a_released_hold_frees_its_seat_and_its_slot_at_once() {
    let server = server().await;
    let date = one_date(&server.db).await;
    let (_, token) = admitted_user(&server, "fan").await;
    let holds: Vec<String> = {
        let mut ids = Vec::new();
        for seat in 1..=4 {
            ids.push(held(&server, &token, date, seat).await);
        }
        ids
    };
    hold(&server, &token, date, 5)
        .await
        .expect_code("HOLD_LIMIT");
    let released = release(&server, &token, &holds[0]).await;
    let released = released.data("releaseHold");
    assert_eq!(released["status"], "RELEASED");
    assert_eq!(
        released["seat"]["status"], "AVAILABLE",
        "on sale in the same instant"
    );
    // The slot is free again, and someone else can take the seat.
    held(&server, &token, date, 5).await;
    let (_, other) = admitted_user(&server, "other fan").await;
    held(&server, &other, date, 1).await;

    // Twice, someone else's, a made-up id: refused, nothing changed.
    release(&server, &token, &holds[0])
        .await
        .expect_code("INVALID_INPUT");
    release(&server, &other, &holds[1])
        .await
        .expect_code("NOT_FOUND");
    release(&server, &token, "00000000-0000-0000-0000-000000000000")
        .await
        .expect_code("NOT_FOUND");
    release(&server, &token, "not-an-id")
        .await
        .expect_code("INVALID_INPUT");
    release(&server, KEY, &holds[1])
        .await
        .expect_code("UNAUTHENTICATED");
    let live = sql_number(
        &server.db,
        "SELECT COUNT(*) FROM reservations WHERE status = 'HELD'",
    )
    .await;
    assert_eq!(live, 5, "four of the fan's, one of the other's");
    assert_eq!(report(&server, date).await["seatsHeld"], 5);
    assert_invariants_hold(&server);
}

#[tokio::test]
async fn release_racing_other_holds_and_the_lapse_leaves_one_holder() {
    let server = TestServer::with_settings(|config| config.hold_seconds = 1).await;
    let date = one_date(&server.db).await;
    for round in 0..6 {
        let seat = round + 1;
        let (_, owner) = admitted_user(&server, &format!("owner {round}")).await;
        let id = held(&server, &owner, date, seat).await;
        // Around the lapse: early rounds release at once, later ones late.
        tokio::time::sleep(std::time::Duration::from_millis(200 * round as u64)).await;
        let mut rivals = Vec::new();
        for rival in 0..8 {
            rivals.push(
                admitted_user(&server, &format!("rival {round}.{rival}"))
                    .await
                    .1,
            );
        }
        let (url, http) = (server.url("/graphql"), server.http.clone());
        let answers = concurrently(9, move |i| {
            let (url, http, id) = (url.clone(), http.clone(), id.clone());
            let token = if i == 0 { owner.clone() } else { rivals[i - 1].clone() };
            async move {
                let (query, variables) = if i == 0 {
                    (RELEASE.to_owned(), json!({"id": id}))
                } else {
                    (
                        "mutation($d: ID!, $s: Int!) { holdSeat(concertDateId: $d, seatNumber: $s) { id } }".to_owned(),
                        json!({"d": date.to_string(), "s": seat}),
                    )
                };
                code_of(&http, url, &token, &query, variables).await
            }
        })
        .await;
        for code in &answers {
            assert!(
                ["ok", "SEAT_UNAVAILABLE", "INVALID_INPUT", "TOKEN_EXPIRED"]
                    .contains(&code.as_str()),
                "{answers:?}"
            );
        }
        let live_holders = sql_number(
            &server.db,
            &format!(
                "SELECT COUNT(*) FROM reservations r JOIN seats s ON s.id = r.seat_id \
                 WHERE s.concert_date_id = {date} AND s.number = {seat} \
                 AND r.status = 'HELD' AND r.held_until > UTC_TIMESTAMP(6)"
            ),
        )
        .await;
        assert!(
            live_holders <= 1,
            "round {round}: {live_holders} live holds on one seat"
        );
        assert_invariants_hold(&server);
    }
}

#[tokio::test]
async fn cancelling_a_date_mid_rush_refunds_every_sale_and_sells_nothing_after() {
    let server = server().await;
    let date = one_date(&server.db).await;
    // 50 fans with money, each holding one seat, ready to pay.
    let mut payers = Vec::new();
    for seat in 1..=50 {
        let (user, token) = admitted_user(&server, &format!("payer {seat}")).await;
        charge(&server, user, "1000000.00", None).await;
        let id = held(&server, &token, date, seat).await;
        payers.push((user, token, id));
    }
    let balances_before = sql_number(
        &server.db,
        "SELECT CAST(SUM(balance) * 100 AS SIGNED) FROM users",
    )
    .await;
    // 50 more fans who will try four holds each: 200 holds.
    let mut hunters = Vec::new();
    for i in 0..50 {
        hunters.push(admitted_user(&server, &format!("hunter {i}")).await.1);
    }
    let (url, http) = (server.url("/graphql"), server.http.clone());
    let payers_for_tasks = payers.clone();
    let answers = concurrently(251, move |i| {
        let (url, http) = (url.clone(), http.clone());
        let (query, variables, bearer) = match i {
            0 => (CANCEL.to_owned(), json!({"d": date.to_string()}), KEY.to_owned()),
            1..=50 => {
                let (_, token, id) = &payers_for_tasks[i - 1];
                (
                    "mutation($ids: [ID!]!) { pay(reservationIds: $ids) { id } }".to_owned(),
                    json!({"ids": [id]}),
                    token.clone(),
                )
            }
            _ => {
                let hunter = &hunters[(i - 51) / 4];
                (
                    "mutation($d: ID!, $s: Int!) { holdSeat(concertDateId: $d, seatNumber: $s) { id } }".to_owned(),
                    json!({"d": date.to_string(), "s": (i % 50) + 1}),
                    hunter.clone(),
                )
            }
        };
        async move {
            code_of(&http, url, &bearer, &query, variables).await
        }
    })
    .await;
    assert_eq!(answers[0], "ok", "the cancellation went through");
    for code in &answers[1..] {
        assert!(
            ["ok", "SEAT_UNAVAILABLE", "HOLD_EXPIRED", "HOLD_LIMIT"].contains(&code.as_str()),
            "{code}"
        );
    }
    let open = sql_number(
        &server.db,
        &format!(
            "SELECT COUNT(*) FROM reservations r JOIN seats s ON s.id = r.seat_id \
             WHERE s.concert_date_id = {date} AND r.status IN ('HELD', 'PAID')"
        ),
    )
    .await;
    assert_eq!(open, 0, "nothing held or sold on a cancelled date");
    let paid_ok = answers[1..=50].iter().filter(|code| *code == "ok").count() as i64;
    let refunded = sql_number(
        &server.db,
        "SELECT COUNT(*) FROM reservations WHERE status = 'REFUNDED'",
    )
    .await;
    assert_eq!(refunded, paid_ok, "every acknowledged payment was refunded");
    let refunds = sql_number(
        &server.db,
        "SELECT COUNT(*) FROM balance_entries WHERE kind = 'REFUND'",
    )
    .await;
    assert_eq!(refunds, refunded);
    let balances_after = sql_number(
        &server.db,
        "SELECT CAST(SUM(balance) * 100 AS SIGNED) FROM users",
    )
    .await;
    assert_eq!(balances_after, balances_before, "every payment came back");

    // Afterwards: holds refused, cancelling again answers the same date.
    let (_, late) = admitted_user(&server, "late fan").await;
    hold(&server, &late, date, 7)
        .await
        .expect_code("SEAT_UNAVAILABLE");
    let first = sql_number(
        &server.db,
        &format!("SELECT CAST(UNIX_TIMESTAMP(cancelled_at) * 1000000 AS SIGNED) FROM concert_dates WHERE id = {date}"),
    )
    .await;
    let again = server
        .gql(CANCEL, json!({"d": date.to_string()}), Some(KEY))
        .await;
    assert!(again.data("cancelConcertDate")["cancelledAt"].is_string());
    let second = sql_number(
        &server.db,
        &format!("SELECT CAST(UNIX_TIMESTAMP(cancelled_at) * 1000000 AS SIGNED) FROM concert_dates WHERE id = {date}"),
    )
    .await;
    assert_eq!(first, second, "a second cancel changes nothing");
    let figures = report(&server, date).await;
    assert_eq!(figures["seatsSold"], 0);
    assert_eq!(figures["seatsHeld"], 0);
    assert_eq!(figures["seatsAvailable"], 0);
    assert_eq!(figures["revenue"], "0.00");
    assert_invariants_hold(&server);
}

#[tokio::test]
async fn the_sales_report_counts_the_rows() {
    let server = server().await;
    let date = one_date(&server.db).await;
    let (buyer, token) = admitted_user(&server, "buyer").await;
    charge(&server, buyer, "1000000.00", None).await;
    let first = held(&server, &token, date, 1).await;
    held(&server, &token, date, 2).await;
    pay(&server, &token, &[&first], None).await.data("pay");
    let (_, other) = admitted_user(&server, "holder").await;
    held(&server, &other, date, 40).await;
    let figures = report(&server, date).await;
    assert_eq!(figures["seatsSold"], 1);
    assert_eq!(figures["seatsHeld"], 2);
    assert_eq!(figures["seatsAvailable"], 47);
    assert_eq!(figures["revenue"], "165000.00", "the price of seat 1");
    assert_eq!(figures["concertDate"]["id"], date.to_string());
    server
        .gql(REPORT, json!({"d": "999999"}), Some(KEY))
        .await
        .expect_code("NOT_FOUND");
    server
        .gql(REPORT, json!({"d": date.to_string()}), Some(&token))
        .await
        .expect_code("FORBIDDEN");
    server
        .gql(CANCEL, json!({"d": "999999"}), Some(KEY))
        .await
        .expect_code("NOT_FOUND");

    // Cancelled: the sale is refunded, to the cent, with one REFUND entry.
    server
        .gql(CANCEL, json!({"d": date.to_string()}), Some(KEY))
        .await
        .data("cancelConcertDate");
    assert_eq!(
        common::fixtures::balance(&server, buyer).await,
        "1000000.00"
    );
    let history = server
        .gql(
            "query($u: UUID!) { user(id: $u) { balanceHistory(first: 5) { kind amount balanceAfter } } }",
            json!({"u": buyer}),
            None,
        )
        .await;
    let newest = &history.data("user")["balanceHistory"][0];
    assert_eq!(newest["kind"], "REFUND", "{newest}");
    assert_eq!(newest["amount"], "165000.00");
    assert_eq!(newest["balanceAfter"], "1000000.00");
    let statuses = server
        .gql(
            "query($u: UUID!) { user(id: $u) { reservations(first: 5) { status } } }",
            json!({"u": buyer}),
            None,
        )
        .await;
    let mut seen: Vec<String> = statuses.data("user")["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reservation| reservation["status"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, ["REFUNDED", "RELEASED"]);
    assert_invariants_hold(&server);
}
