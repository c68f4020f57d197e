//! A user's lists come in pages: newest first, `first` 1 to 100 (50 when
//! omitted), `after` the id of the last item of the previous page.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::fixtures::{admitted_user, charge, held, one_date, register, sql_number};
use common::{TestServer, assert_invariants_hold, concurrently};
use serde_json::{Value, json};
use uuid::Uuid;

/// One page of `list` (with its items' `id`), as the server answers it.
async fn page(server: &TestServer, user: Uuid, list: &str, args: &str) -> common::Gql {
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("({args})")
    };
    server
        .gql(
            &format!("query($id: UUID!) {{ user(id: $id) {{ {list}{args} {{ id }} }} }}"),
            json!({"id": user}),
            None,
        )
        .await
}

fn ids(answer: &common::Gql, list: &str) -> Vec<String> {
    answer.data("user")[list]
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every item of `list`, following `after` from page to page.
async fn every_page(server: &TestServer, user: Uuid, list: &str, first: usize) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    loop {
        let after = all
            .last()
            .map(|id| format!(", after: \"{id}\""))
            .unwrap_or_default();
        let got = ids(
            &page(server, user, list, &format!("first: {first}{after}")).await,
            list,
        );
        assert!(got.len() <= first, "a page holds at most first items");
        let done = got.len() < first;
        all.extend(got);
        if done {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_written_concurrently_pages_newest_first_without_gaps_or_repeats() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let user = register(&server, "collector").await;
    let charges = 120;
    let answers = concurrently(charges, {
        let server = std::sync::Arc::clone(&server);
        move |n| {
            let server = std::sync::Arc::clone(&server);
            async move {
                charge(&server, user, "1.00", Some(&format!("c{n}")))
                    .await
                    .code()
            }
        }
    })
    .await;
    assert!(answers.iter().all(Option::is_none), "{answers:?}");

    let default = ids(
        &page(&server, user, "balanceHistory", "").await,
        "balanceHistory",
    );
    assert_eq!(default.len(), 50, "50 when first is omitted");
    let all = every_page(&server, user, "balanceHistory", 7).await;
    assert_eq!(all.len(), charges, "every entry once, none twice");
    let numbers: Vec<u64> = all.iter().map(|id| id.parse().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first"
    );
    assert_eq!(default, all[..50], "the first page is the newest");
    let stored = sql_number(&server.db, "SELECT COUNT(*) FROM balance_entries").await;
    assert_eq!(stored as usize, charges);

    for bad in [
        "first: 0",
        "first: 101",
        "first: -1",
        "after: \"999999\"",
        "after: \"x\"",
    ] {
        page(&server, user, "balanceHistory", bad)
            .await
            .expect_code("INVALID_INPUT");
    }
    // Another user's entry is no cursor of this user's list.
    let other = register(&server, "other").await;
    page(
        &server,
        other,
        "balanceHistory",
        &format!("after: \"{}\"", all[0]),
    )
    .await
    .expect_code("INVALID_INPUT");
    assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_and_payments_come_in_pages_too() {
    let server = TestServer::with_settings(|config| config.max_holds_per_user = 10).await;
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "holder").await;
    let mut made = Vec::new();
    for seat in 1..=5 {
        made.push(held(&server, &token, date, seat).await);
    }
    made.reverse();
    assert_eq!(every_page(&server, user, "reservations", 2).await, made);
    page(&server, user, "reservations", "after: \"not-an-id\"")
        .await
        .expect_code("INVALID_INPUT");
    page(
        &server,
        user,
        "reservations",
        &format!("after: \"{}\"", Uuid::new_v4()),
    )
    .await
    .expect_code("INVALID_INPUT");

    charge(&server, user, "10000000.00", None).await;
    let paid = common::fixtures::pay(&server, &token, &[made[0].as_str()], None).await;
    let payment = paid.data("pay")["id"].as_str().unwrap().to_owned();
    assert_eq!(
        every_page(&server, user, "payments", 1).await,
        std::slice::from_ref(&payment)
    );
    page(
        &server,
        user,
        "payments",
        &format!("after: \"{}\"", made[0]),
    )
    .await
    .expect_code("INVALID_INPUT");
    assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_in_one_query_are_one_batch_and_pages_count_in_the_cost() {
    let server = TestServer::start().await;
    let users: Vec<Uuid> = {
        let mut users = Vec::new();
        for n in 0..40 {
            users.push(register(&server, &format!("fan {n}")).await);
        }
        users
    };
    let fields: String = users
        .iter()
        .enumerate()
        .map(|(n, id)| format!("u{n}: user(id: \"{id}\") {{ id name }} "))
        .collect();
    let before = server.statements();
    let answer = server
        .gql(&format!("{{ {fields} }}"), json!({}), None)
        .await;
    let statements = server.statements() - before;
    for (n, id) in users.iter().enumerate() {
        assert_eq!(
            answer.0["data"][format!("u{n}")]["id"],
            json!(id.to_string())
        );
    }
    assert!(
        (1..=2).contains(&statements),
        "40 lookups in {statements} statements"
    );

    // The cost counts a page as its `first` items: asking for fewer nested
    // items lets a query through that asking for a hundred does not.
    let nested = |first: u32| {
        format!(
            "{{ user(id: \"{}\") {{ reservations(first: {first}) {{ id seat {{ concertDate {{ \
             seats {{ concertDate {{ seats {{ id }} }} }} }} }} }} }} }}",
            users[0]
        )
    };
    let small: Value = server.gql(&nested(1), json!({}), None).await.0;
    assert!(small["errors"].is_null(), "{small}");
    server
        .gql(&nested(100), json!({}), None)
        .await
        .expect_code("LIMIT_EXCEEDED");
}
