//! Browsing the catalogue: what is on sale, what can be held, and what a
//! nested query costs in SQL statements.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::TestServer;
use common::fixtures::{add_concert, admitted_user, days_from_now, hold, sql_execute};
use serde_json::json;

const NESTED: &str = "{ concerts { id name dates { id startsAt totalSeats availableSeats seats { number price status concertDate { id concert { name } } } } } }";

/// Statements one nested catalogue query costs with `dates` dates of 50 seats.
async fn statements_for_nested_query(dates: usize) -> (u64, usize) {
    let server = TestServer::start().await;
    let starts: Vec<_> = (0..dates).map(|d| days_from_now(10 + d as i64)).collect();
    add_concert(&server.db, "Big Tour", &starts).await;
    let (_, token) = admitted_user(&server, "counter").await;
    let before = server.statements();
    let answer = server.gql(NESTED, json!({}), Some(&token)).await;
    let spent = server.statements() - before;
    let concerts = answer.data("concerts").as_array().unwrap().clone();
    let seats: usize = concerts[0]["dates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|date| date["seats"].as_array().unwrap().len())
        .sum();
    (spent, seats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_queries_cost_the_same_statements_for_2_or_200_dates() {
    let (small, small_seats) = statements_for_nested_query(2).await;
    let (large, large_seats) = statements_for_nested_query(200).await;
    assert_eq!((small_seats, large_seats), (100, 10_000));
    assert_eq!(
        small, large,
        "statements must not grow with the number of dates"
    );
    // token check, concerts, dates, seat counts, seats, their dates, their
    // concerts; at least concerts, dates and seats, or nothing was counted.
    assert!(
        (3..=8).contains(&small),
        "{small} statements for one nested query"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_future_dates_with_a_free_seat_are_available() {
    let server = TestServer::start().await;
    let (concert, dates) = add_concert(
        &server.db,
        "Mixed",
        &[
            days_from_now(-1),
            days_from_now(3),
            days_from_now(2),
            days_from_now(5),
        ],
    )
    .await;
    let (past, later, sooner, sold_out) = (dates[0], dates[1], dates[2], dates[3]);
    sql_execute(
        &server.db,
        &format!("UPDATE seats SET status = 'SOLD' WHERE concert_date_id = {sold_out}"),
    )
    .await;
    let (_, token) = admitted_user(&server, "browser").await;

    let answer = server
        .gql(
            "query($id: ID!) { availableDates(concertId: $id) { id availableSeats totalSeats } }",
            json!({"id": concert.to_string()}),
            Some(&token),
        )
        .await;
    let ids: Vec<String> = answer
        .data("availableDates")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        vec![sooner.to_string(), later.to_string()],
        "earliest first, no past or full dates"
    );

    let all = server
        .gql(
            "{ concerts { dates { id availableSeats } } }",
            json!({}),
            Some(&token),
        )
        .await;
    let listed: Vec<(String, i64)> = all.data("concerts")[0]["dates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["availableSeats"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 4, "Concert.dates lists every date");
    assert!(
        listed.contains(&(past.to_string(), 0)),
        "a date that has begun has no seat to hold"
    );
    assert!(listed.contains(&(sold_out.to_string(), 0)));

    let seats = server
        .gql(
            "query($id: ID!) { availableSeats(concertDateId: $id) { number } }",
            json!({"id": past.to_string()}),
            Some(&token),
        )
        .await;
    assert_eq!(seats.data("availableSeats"), &json!([]));
    hold(&server, &token, past, 1)
        .await
        .expect_code("SEAT_UNAVAILABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_seats_leave_the_available_list_until_they_lapse() {
    let server = TestServer::with_settings(|c| c.hold_seconds = 1).await;
    let (_, dates) = add_concert(&server.db, "Lapse", &[days_from_now(7)]).await;
    let date = dates[0];
    let (_, holder) = admitted_user(&server, "holder").await;
    let (_, browser) = admitted_user(&server, "browser").await;
    hold(&server, &holder, date, 3).await.data("holdSeat");

    let query = "query($id: ID!) { availableSeats(concertDateId: $id) { number status } }";
    let seats = server
        .gql(query, json!({"id": date.to_string()}), Some(&browser))
        .await;
    let numbers: Vec<i64> = seats
        .data("availableSeats")
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers.len(), 49);
    assert!(!numbers.contains(&3));
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "by number");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let seats = server
        .gql(query, json!({"id": date.to_string()}), Some(&browser))
        .await;
    let seats = seats.data("availableSeats").as_array().unwrap().clone();
    assert_eq!(
        seats.len(),
        50,
        "a lapsed hold is available without any sweep"
    );
    assert_eq!(seats[2], json!({"number": 3, "status": "AVAILABLE"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids_are_told_apart() {
    let server = TestServer::start().await;
    let (_, token) = admitted_user(&server, "curious").await;
    for (query, code) in [
        ("{ availableDates(concertId: \"999\") { id } }", "NOT_FOUND"),
        (
            "{ availableDates(concertId: \"abc\") { id } }",
            "INVALID_INPUT",
        ),
        (
            "{ availableSeats(concertDateId: \"999\") { id } }",
            "NOT_FOUND",
        ),
        (
            "{ availableSeats(concertDateId: \"-1\") { id } }",
            "INVALID_INPUT",
        ),
    ] {
        server
            .gql(query, json!({}), Some(&token))
            .await
            .expect_code(code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_catalogue_is_loaded_once_into_an_empty_catalogue() {
    let server = TestServer::start().await;
    let now = ticket_reservation::clock::now();
    let pool = &server.state.pool;
    assert!(
        ticket_reservation::catalogue::seed::seed_if_empty(pool, now)
            .await
            .unwrap()
    );
    assert!(
        !ticket_reservation::catalogue::seed::seed_if_empty(pool, now)
            .await
            .unwrap()
    );
    let (_, token) = admitted_user(&server, "newcomer").await;
    let answer = server
        .gql(
            "{ concerts { dates { startsAt totalSeats seats { number price } } } }",
            json!({}),
            Some(&token),
        )
        .await;
    let concerts = answer.data("concerts").as_array().unwrap();
    assert!(concerts.len() >= 2);
    for concert in concerts {
        let dates = concert["dates"].as_array().unwrap();
        assert!(dates.len() >= 2);
        for date in dates {
            assert_eq!(date["totalSeats"], 50);
            let numbers: Vec<i64> = date["seats"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["number"].as_i64().unwrap())
                .collect();
            assert_eq!(numbers, (1..=50).collect::<Vec<i64>>());
            assert!(
                date["seats"][0]["price"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(".00"))
            );
        }
    }
}
