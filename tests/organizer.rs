//! Organizers: their key guards every organizer field; concerts and dates
//! are made with every input checked and nothing written on a refusal; a
//! date opens at its `salesOpenAt`; the line's limits and pause are kept in
//! the database and obeyed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::time::Duration;

use common::fixtures::{admitted_user, hold, issue_token, register, sql_number};
use common::{TestServer, concurrently};
use serde_json::{Value, json};
use ticket_reservation::config::{OrganizerKeys, TokenSecret};

const KEY: &str = "organizer-key-for-the-tests-0123456789";

async fn with_organizer(
    configure: impl FnOnce(&mut ticket_reservation::config::Config) + Send + 'static,
) -> TestServer {
    TestServer::with_settings(move |config| {
        config.organizer_keys = OrganizerKeys(vec![TokenSecret(KEY.as_bytes().to_vec())]);
        configure(config);
    })
    .await
}

const CREATE_CONCERT: &str =
    "mutation($input: NewConcertInput!) { createConcert(input: $input) { id name venue } }";
const ADD_DATE: &str = "mutation($concert: ID!, $input: NewConcertDateInput!) { addConcertDate(concertId: $concert, input: $input) { id startsAt salesOpenAt cancelledAt totalSeats availableSeats } }";
const LINE_FIELDS: &str =
    "waiting active maxActiveTokens admitIntervalMs paused admittedLastMinute";

fn in_seconds(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
}

fn full_prices() -> Value {
    json!([
        {"fromSeat": 1, "toSeat": 10, "price": "150.00"},
        {"fromSeat": 11, "toSeat": 50, "price": "80.50"},
    ])
}

async fn create_concert(server: &TestServer) -> String {
    let answer = server
        .gql(
            CREATE_CONCERT,
            json!({"input": {"name": "Rush Night", "venue": "Hall 1"}}),
            Some(KEY),
        )
        .await;
    answer.data("createConcert")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn catalogue_rows(server: &TestServer) -> (i64, i64, i64) {
    (
        sql_number(&server.db, "SELECT COUNT(*) FROM concerts").await,
        sql_number(&server.db, "SELECT COUNT(*) FROM concert_dates").await,
        sql_number(&server.db, "SELECT COUNT(*) FROM seats").await,
    )
}

/// Every organizer operation, with arguments that would pass.
fn organizer_operations(concert: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            CREATE_CONCERT,
            json!({"input": {"name": "X", "venue": "Y"}}),
        ),
        (
            ADD_DATE,
            json!({"concert": concert, "input": {"startsAt": in_seconds(86_400), "prices": full_prices()}}),
        ),
        ("{ line { waiting } }", json!({})),
        (
            "mutation { setLineLimits(maxActiveTokens: 5) { maxActiveTokens } }",
            json!({}),
        ),
        ("mutation { pauseAdmission { paused } }", json!({})),
        ("mutation { resumeAdmission { paused } }", json!({})),
    ]
}

#[tokio::test]
async fn organizer_operations_need_an_organizer_key() {
    let server = with_organizer(|_| {}).await;
    let concert = create_concert(&server).await;
    let (_, queue_token) = admitted_user(&server, "fan").await;
    let before = catalogue_rows(&server).await;
    for (query, variables) in organizer_operations(&concert) {
        server
            .gql(query, variables.clone(), None)
            .await
            .expect_code("UNAUTHENTICATED");
        for wrong in [
            queue_token.as_str(),
            "organizer-key-for-the-tests-012345678X",
            "x",
        ] {
            server
                .gql(query, variables.clone(), Some(wrong))
                .await
                .expect_code("FORBIDDEN");
        }
    }
    assert_eq!(catalogue_rows(&server).await, before, "nothing was written");
    let paused = sql_number(&server.db, "SELECT admission_paused FROM queue_state").await;
    assert_eq!(paused, 0);
    // With no keys configured nobody is an organizer.
    let closed = TestServer::start().await;
    closed
        .gql("{ line { waiting } }", json!({}), Some(KEY))
        .await
        .expect_code("FORBIDDEN");
}

#[tokio::test]
async fn a_new_date_is_listed_and_holdable_from_its_opening() {
    let server = with_organizer(|_| {}).await;
    let concert = create_concert(&server).await;
    let opens_in = 2;
    let answer = server
        .gql(
            ADD_DATE,
            json!({"concert": concert, "input": {
                "startsAt": in_seconds(86_400),
                "salesOpenAt": in_seconds(opens_in),
                "prices": full_prices(),
            }}),
            Some(KEY),
        )
        .await;
    let date = answer.data("addConcertDate");
    assert_eq!(date["totalSeats"], 50);
    assert_eq!(date["availableSeats"], 0, "not on sale yet");
    assert!(date["cancelledAt"].is_null());
    let date_id: u64 = date["id"].as_str().unwrap().parse().unwrap();
    let (_, token) = admitted_user(&server, "early fan").await;

    // Listed under concerts, but not on sale yet.
    let listed = server
        .gql(
            "{ concerts { id dates { id salesOpenAt } } }",
            json!({}),
            Some(&token),
        )
        .await;
    let concerts = listed.data("concerts").as_array().unwrap().clone();
    assert!(
        concerts.iter().any(|c| c["id"] == concert.as_str()),
        "{concerts:?}"
    );
    let available = server
        .gql(
            "query($c: ID!) { availableDates(concertId: $c) { id } }",
            json!({"c": concert}),
            Some(&token),
        )
        .await;
    assert_eq!(available.data("availableDates"), &json!([]));
    hold(&server, &token, date_id, 1)
        .await
        .expect_code("SEAT_UNAVAILABLE");

    tokio::time::sleep(Duration::from_millis(opens_in as u64 * 1000 + 300)).await;
    let held = hold(&server, &token, date_id, 1).await;
    assert_eq!(held.data("holdSeat")["price"], "150.00");
    let cheap = hold(&server, &token, date_id, 11).await;
    assert_eq!(cheap.data("holdSeat")["price"], "80.50");
    let available = server
        .gql(
            "query($c: ID!) { availableDates(concertId: $c) { id } }",
            json!({"c": concert}),
            Some(&token),
        )
        .await;
    assert_eq!(
        available.data("availableDates")[0]["id"],
        date_id.to_string()
    );
}

#[tokio::test]
async fn bad_catalogue_input_is_refused_and_writes_nothing() {
    let server = with_organizer(|_| {}).await;
    let concert = create_concert(&server).await;
    let before = catalogue_rows(&server).await;
    let future = in_seconds(86_400);
    let bad_dates = [
        // overlapping ranges
        json!({"startsAt": future, "prices": [{"fromSeat": 1, "toSeat": 30, "price": "10"}, {"fromSeat": 30, "toSeat": 50, "price": "10"}]}),
        // a seat in no range
        json!({"startsAt": future, "prices": [{"fromSeat": 1, "toSeat": 49, "price": "10"}]}),
        // three fraction digits
        json!({"startsAt": future, "prices": [{"fromSeat": 1, "toSeat": 50, "price": "10.005"}]}),
        // a price of zero
        json!({"startsAt": future, "prices": [{"fromSeat": 1, "toSeat": 50, "price": "0"}]}),
        // opening after the start
        json!({"startsAt": future, "salesOpenAt": in_seconds(90_000), "prices": full_prices()}),
        // a date in the past
        json!({"startsAt": in_seconds(-60), "prices": full_prices()}),
        // seats beyond 50
        json!({"startsAt": future, "prices": [{"fromSeat": 1, "toSeat": 51, "price": "10"}]}),
    ];
    for input in bad_dates {
        let answer = server
            .gql(
                ADD_DATE,
                json!({"concert": concert, "input": input}),
                Some(KEY),
            )
            .await;
        answer.expect_code("INVALID_INPUT");
    }
    server
        .gql(
            ADD_DATE,
            json!({"concert": "987654", "input": {"startsAt": future, "prices": full_prices()}}),
            Some(KEY),
        )
        .await
        .expect_code("NOT_FOUND");
    for input in [
        json!({"name": "", "venue": "Hall"}),
        json!({"name": "\u{200B}", "venue": "Hall"}),
        json!({"name": "Nul\u{0}", "venue": "Hall"}),
        json!({"name": "ok", "venue": "v".repeat(201)}),
    ] {
        server
            .gql(CREATE_CONCERT, json!({"input": input}), Some(KEY))
            .await
            .expect_code("INVALID_INPUT");
    }
    assert_eq!(catalogue_rows(&server).await, before, "nothing was written");

    // The same start twice: the second is refused.
    let input = json!({"startsAt": future, "prices": full_prices()});
    let first = server
        .gql(
            ADD_DATE,
            json!({"concert": concert, "input": input}),
            Some(KEY),
        )
        .await;
    assert!(first.errors().is_empty(), "{:?}", first.0);
    server
        .gql(
            ADD_DATE,
            json!({"concert": concert, "input": input}),
            Some(KEY),
        )
        .await
        .expect_code("INVALID_INPUT");
    assert_eq!(
        catalogue_rows(&server).await,
        (before.0, before.1 + 1, before.2 + 50)
    );
}

#[tokio::test]
async fn the_line_follows_the_limits_and_the_pause_kept_in_the_database() {
    let server = with_organizer(|config| config.max_active_tokens = 3).await;
    let line = |query: &'static str| {
        let server = &server;
        async move { server.gql(query, json!({}), Some(KEY)).await }
    };
    let state = line(
        "{ line { waiting active maxActiveTokens admitIntervalMs paused admittedLastMinute } }",
    )
    .await;
    assert_eq!(
        state.data("line"),
        &json!({"waiting": 0, "active": 0, "maxActiveTokens": 3, "admitIntervalMs": 1000, "paused": false, "admittedLastMinute": 0})
    );
    for bad in [
        "mutation { setLineLimits(maxActiveTokens: 0) { paused } }",
        "mutation { setLineLimits(maxActiveTokens: 1000001) { paused } }",
        "mutation { setLineLimits(admitIntervalMs: 9) { paused } }",
        "mutation { setLineLimits(admitIntervalMs: -1) { paused } }",
    ] {
        line(bad).await.expect_code("INVALID_INPUT");
    }

    // Paused: a newcomer waits though slots are free.
    let paused = line("mutation { pauseAdmission { paused } }").await;
    assert_eq!(paused.data("pauseAdmission")["paused"], true);
    let first = register(&server, "first").await;
    assert_eq!(issue_token(&server, first).await.status, "WAITING");

    // Resumed, with the limit raised to 5: the admission turn lets in the
    // waiting one and newcomers go straight in up to five.
    let limits = server
        .gql(
            &format!("mutation {{ setLineLimits(maxActiveTokens: 5, admitIntervalMs: 200) {{ {LINE_FIELDS} }} }}"),
            json!({}),
            Some(KEY),
        )
        .await;
    assert_eq!(limits.data("setLineLimits")["maxActiveTokens"], 5);
    assert_eq!(limits.data("setLineLimits")["admitIntervalMs"], 200);
    assert_eq!(
        limits.data("setLineLimits")["paused"],
        true,
        "limits leave the pause"
    );
    line("mutation { resumeAdmission { paused } }").await;
    // No jobs run in this server: run the admission turn by hand.
    ticket_reservation::queue::service::admit_waiting(
        &server.state.pool,
        server.state.queue.settings,
    )
    .await
    .unwrap();
    let newcomers = concurrently(8, |i| {
        let (http, url) = (server.http.clone(), server.url("/graphql"));
        async move {
            let answer: Value = http
                .post(url)
                .json(&json!({"query": "mutation($n: String!) { registerUser(name: $n) { id } }", "variables": {"n": format!("fan {i}")}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["data"]["registerUser"]["id"].as_str().unwrap().to_owned()
        }
    })
    .await;
    for user in &newcomers {
        issue_token(&server, user.parse().unwrap()).await;
    }
    let active = sql_number(
        &server.db,
        "SELECT COUNT(*) FROM queue_tokens WHERE status = 'ACTIVE'",
    )
    .await;
    assert_eq!(active, 5, "the raised limit, and no more");
    let state = line("{ line { waiting active maxActiveTokens paused admittedLastMinute } }").await;
    assert_eq!(
        state.data("line"),
        &json!({"waiting": 4, "active": 5, "maxActiveTokens": 5, "paused": false, "admittedLastMinute": 5})
    );
    let kept = sql_number(
        &server.db,
        "SELECT max_active_tokens * 1000000 + admit_interval_ms FROM queue_state",
    )
    .await;
    assert_eq!(kept, 5_000_200, "kept in the database");
}
