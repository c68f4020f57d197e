//! `MAX_TICKETS_PER_USER`: seats of one date one user may hold and own
//! together, exact under concurrent holds on two server processes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::TestDb;
use common::fixtures::{add_concert, days_from_now, sql_number};
use common::process::ServerProcess;
use serde_json::{Value, json};

const MAX_TICKETS: i64 = 5;
const HOLD: &str = "mutation($date: ID!, $seat: Int!) { holdSeat(concertDateId: $date, seatNumber: $seat) { id } }";

fn start_server(database_url: &str) -> ServerProcess {
    ServerProcess::start(
        database_url,
        &[
            ("MAX_TICKETS_PER_USER", &MAX_TICKETS.to_string()),
            ("MAX_HOLDS_PER_USER", "4"),
        ],
    )
}

fn code(answer: &Value) -> Option<&str> {
    answer["errors"][0]["extensions"]["code"].as_str()
}

async fn token_of(server: &ServerProcess, user: &Value) -> String {
    let issued = server
        .gql(
            "mutation($id: UUID!) { issueToken(userId: $id) { token status } }",
            json!({"id": user}),
        )
        .await;
    assert_eq!(issued["data"]["issueToken"]["status"], "ACTIVE", "{issued}");
    issued["data"]["issueToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn hold(server: &ServerProcess, token: &str, date: u64, seat: i32) -> Value {
    server
        .gql_as(
            HOLD,
            json!({"date": date.to_string(), "seat": seat}),
            Some(token),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_holds_from_old_and_new_tokens_on_two_servers_stop_at_the_limit() {
    let db = TestDb::new().await;
    let (_, dates) = add_concert(&db, "Limited", &[days_from_now(30), days_from_now(31)]).await;
    let servers = [start_server(&db.url), start_server(&db.url)];
    let registered = servers[0]
        .gql(
            "mutation { registerUser(name: \"collector\") { id } }",
            json!({}),
        )
        .await;
    let user = registered["data"]["registerUser"]["id"].clone();
    let charged = servers[1]
        .gql(
            "mutation($id: UUID!) { chargeBalance(userId: $id, amount: \"5000000.00\") { balance } }",
            json!({"id": user}),
        )
        .await;
    assert!(charged["errors"].is_null(), "{charged}");

    // Three seats bought with a first token; paying ends it.
    let first = token_of(&servers[0], &user).await;
    let mut ids = Vec::new();
    for seat in 1..=3 {
        let held = hold(&servers[(seat % 2) as usize], &first, dates[0], seat).await;
        ids.push(held["data"]["holdSeat"]["id"].clone());
    }
    let paid = servers[1]
        .gql_as(
            "mutation($ids: [ID!]!) { pay(reservationIds: $ids) { id } }",
            json!({"ids": ids}),
            Some(&first),
        )
        .await;
    assert!(paid["errors"].is_null(), "{paid}");

    // A second token, then twelve holds at once on both servers, from the
    // new token and the spent one, on twelve free seats of the same date.
    let second = token_of(&servers[1], &user).await;
    assert_ne!(first, second);
    let answers = futures_util::future::join_all((0..12).map(|n| {
        let token = if n % 3 == 0 { &first } else { &second };
        hold(&servers[n % 2], token, dates[0], 10 + n as i32)
    }))
    .await;
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for answer in &answers {
        let outcome = code(answer).unwrap_or("HELD").to_owned();
        *codes.entry(outcome).or_default() += 1;
    }
    assert_eq!(codes.get("HELD"), Some(&2), "{codes:?}");
    assert_eq!(codes.get("TOKEN_EXPIRED"), Some(&4), "{codes:?}");
    assert_eq!(codes.get("TICKET_LIMIT"), Some(&6), "{codes:?}");
    let refused = answers
        .iter()
        .find(|answer| code(answer) == Some("TICKET_LIMIT"))
        .unwrap();
    assert_eq!(refused["errors"][0]["extensions"]["limit"], MAX_TICKETS);

    // From the rows: exactly the limit, three owned and two held.
    let date = dates[0];
    let counted = sql_number(
        &db,
        &format!(
            "SELECT COUNT(*) FROM reservations r JOIN seats s ON s.id = r.seat_id \
             WHERE s.concert_date_id = {date} AND r.status IN ('PAID', 'HELD')"
        ),
    )
    .await;
    assert_eq!(counted, MAX_TICKETS);

    // The limit is per date: another date is still open to the same token.
    let elsewhere = hold(&servers[0], &second, dates[1], 1).await;
    assert!(elsewhere["errors"].is_null(), "{elsewhere}");

    let (clean, report) = common::run_check_with(
        &db.url,
        &[("MAX_TICKETS_PER_USER", MAX_TICKETS.to_string())],
    );
    assert!(clean, "{report}");
    // And check sees a breach of the limit when there is one.
    let (clean, report) =
        common::run_check_with(&db.url, &[("MAX_TICKETS_PER_USER", "4".to_owned())]);
    assert!(
        !clean && report.contains("MAX_TICKETS_PER_USER"),
        "{report}"
    );
}
