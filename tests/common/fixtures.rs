//! Scenario helpers: users, tokens, catalogue rows, holds, charges, payments.

use chrono::{Duration, NaiveDateTime};
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use ticket_reservation::catalogue::seed;
use uuid::Uuid;

use super::{Gql, TestDb, TestServer};

pub async fn register(server: &TestServer, name: &str) -> Uuid {
    let answer = server
        .gql(
            "mutation($name: String!) { registerUser(name: $name) { id } }",
            json!({"name": name}),
            None,
        )
        .await;
    answer.data("registerUser")["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A queue token as `issueToken` answered it.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub status: String,
    pub position: Option<u64>,
}

impl Token {
    fn from_answer(value: &Value) -> Self {
        Self {
            token: value["token"].as_str().unwrap().to_owned(),
            status: value["status"].as_str().unwrap().to_owned(),
            position: value["position"].as_u64(),
        }
    }
}

pub const TOKEN_FIELDS: &str =
    "token status position estimatedWaitSeconds issuedAt expiresAt userId";

pub async fn issue_token(server: &TestServer, user: Uuid) -> Token {
    let answer = server
        .gql(
            &format!("mutation($user: UUID!) {{ issueToken(userId: $user) {{ {TOKEN_FIELDS} }} }}"),
            json!({"user": user}),
            None,
        )
        .await;
    Token::from_answer(answer.data("issueToken"))
}

pub async fn queue_status(server: &TestServer, token: &str) -> Gql {
    server
        .gql(
            &format!("{{ queueStatus {{ {TOKEN_FIELDS} }} }}"),
            json!({}),
            Some(token),
        )
        .await
}

/// A registered user whose token is ACTIVE (the server must have room).
pub async fn admitted_user(server: &TestServer, name: &str) -> (Uuid, String) {
    let user = register(server, name).await;
    let token = issue_token(server, user).await;
    assert_eq!(
        token.status, "ACTIVE",
        "the line should have room for {name}"
    );
    (user, token.token)
}

pub fn days_from_now(days: i64) -> NaiveDateTime {
    ticket_reservation::clock::now() + Duration::days(days)
}

/// A concert with one date per start instant, each with seats 1 to 50.
pub async fn add_concert(db: &TestDb, name: &str, starts: &[NaiveDateTime]) -> (u64, Vec<u64>) {
    let mut conn = db.connect().await;
    diesel::sql_query(format!(
        "INSERT INTO concerts (name, venue, created_at) VALUES ('{name}', 'Test Hall', UTC_TIMESTAMP(6))"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let concert = seed::last_insert_id(&mut conn).await.unwrap();
    let mut dates = Vec::new();
    for starts_at in starts {
        dates.push(
            seed::insert_date(&mut conn, concert, *starts_at)
                .await
                .unwrap(),
        );
    }
    (concert, dates)
}

/// A concert with a single date a month ahead; returns the date's id.
pub async fn one_date(db: &TestDb) -> u64 {
    add_concert(db, "Solo", &[days_from_now(30)]).await.1[0]
}

pub async fn hold(server: &TestServer, token: &str, date: u64, seat: i32) -> Gql {
    server
        .gql(
            "mutation($date: ID!, $seat: Int!) { holdSeat(concertDateId: $date, seatNumber: $seat) { id status price heldUntil seat { id number status } } }",
            json!({"date": date.to_string(), "seat": seat}),
            Some(token),
        )
        .await
}

/// Holds a seat and returns the reservation id.
pub async fn held(server: &TestServer, token: &str, date: u64, seat: i32) -> String {
    hold(server, token, date, seat).await.data("holdSeat")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn charge(server: &TestServer, user: Uuid, amount: &str, key: Option<&str>) -> Gql {
    server
        .gql(
            "mutation($user: UUID!, $amount: Decimal!, $key: String) { chargeBalance(userId: $user, amount: $amount, idempotencyKey: $key) { id balance } }",
            json!({"user": user, "amount": amount, "key": key}),
            None,
        )
        .await
}

pub async fn pay(server: &TestServer, token: &str, ids: &[&str], key: Option<&str>) -> Gql {
    server
        .gql(
            "mutation($ids: [ID!]!, $key: String) { pay(reservationIds: $ids, idempotencyKey: $key) { id amount paidAt reservations { id status seat { status } } } }",
            json!({"ids": ids, "key": key}),
            Some(token),
        )
        .await
}

pub async fn balance(server: &TestServer, user: Uuid) -> String {
    let answer = server
        .gql(
            "query($id: UUID!) { user(id: $id) { balance } }",
            json!({"id": user}),
            None,
        )
        .await;
    answer.data("user")["balance"].as_str().unwrap().to_owned()
}

/// One number from the test database, e.g. a COUNT(*).
pub async fn sql_number(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.connect().await;
    diesel::select(diesel::dsl::sql::<BigInt>(&format!("({sql})")))
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn sql_execute(db: &TestDb, sql: &str) {
    let mut conn = db.connect().await;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
