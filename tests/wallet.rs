//! Users and balances: exact amounts, charges applied once, the cap.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::sync::Arc;

use common::fixtures::{balance, charge, register, sql_number};
use common::{TestServer, concurrently};
use serde_json::json;

/// Every entry of the user's history, newest first, page after page.
async fn entries_of(server: &TestServer, user: uuid::Uuid) -> Vec<serde_json::Value> {
    let mut entries: Vec<serde_json::Value> = Vec::new();
    loop {
        let after = entries.last().map(|entry| entry["id"].clone());
        let answer = server
            .gql(
                "query($id: UUID!, $after: ID) { user(id: $id) { balanceHistory(first: 100, after: $after) { id kind amount balanceAfter at } } }",
                json!({"id": user, "after": after}),
                None,
            )
            .await;
        let page = answer.data("user")["balanceHistory"]
            .as_array()
            .unwrap()
            .clone();
        let last_page = page.len() < 100;
        entries.extend(page);
        if last_page {
            return entries;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_charges_all_apply_once() {
    let server = Arc::new(TestServer::start().await);
    let user = register(&server, "saver").await;
    let answers = {
        let server = Arc::clone(&server);
        concurrently(100, move |_| {
            let server = Arc::clone(&server);
            async move { charge(&server, user, "1.00", None).await.code() }
        })
        .await
    };
    assert!(answers.iter().all(Option::is_none), "{answers:?}");
    assert_eq!(balance(&server, user).await, "100.00");
    let entries = entries_of(&server, user).await;
    assert_eq!(entries.len(), 100);
    assert_eq!(entries[0]["balanceAfter"], "100.00", "newest first");
    let afters: Vec<String> = entries
        .iter()
        .map(|e| e["balanceAfter"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (1..=100).rev().map(|n| format!("{n}.00")).collect();
    assert_eq!(
        afters, expected,
        "each entry saw the balance its charge made"
    );
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_charges_with_one_key_charge_once() {
    let server = Arc::new(TestServer::start().await);
    let user = register(&server, "retrier").await;
    let answers = {
        let server = Arc::clone(&server);
        concurrently(20, move |_| {
            let server = Arc::clone(&server);
            async move { charge(&server, user, "250.50", Some("top-up-7")).await }
        })
        .await
    };
    for answer in &answers {
        assert_eq!(answer.data("chargeBalance")["balance"], "250.50");
    }
    assert_eq!(entries_of(&server, user).await.len(), 1);
    // The key is the user's own: another user may use the same text.
    let other = register(&server, "other").await;
    charge(&server, other, "1.00", Some("top-up-7"))
        .await
        .data("chargeBalance");
    assert_eq!(balance(&server, other).await, "1.00");
    common::assert_invariants_hold(&server);
}

/// Keys are compared byte for byte: a key that differs only in case, in
/// trailing spaces or in Unicode normalisation is another key, whose charge
/// applies; the same bytes again charge nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_differ_in_any_byte_are_different_keys() {
    let server = TestServer::start().await;
    let user = register(&server, "precise").await;
    let keys = ["k", "k ", "k  ", "K", " k", "caf\u{e9}", "cafe\u{301}"];
    for key in keys {
        charge(&server, user, "1.00", Some(key))
            .await
            .data("chargeBalance");
    }
    for key in keys {
        charge(&server, user, "1.00", Some(key))
            .await
            .data("chargeBalance");
    }
    assert_eq!(balance(&server, user).await, "7.00");
    assert_eq!(entries_of(&server, user).await.len(), keys.len());
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_amounts_are_refused_not_rounded() {
    let server = TestServer::start().await;
    let user = register(&server, "careful").await;
    let refused = [
        "1e3",
        "NaN",
        "-0",
        "0",
        "0.00",
        "-5.00",
        "0.001",
        "1.005",
        "123456789012345678901234567890",
        "10000000.01",
        "",
        " 1",
        "1,00",
        "+1",
        "Infinity",
        "0x10",
        ".5",
        "5.",
    ];
    for amount in refused {
        charge(&server, user, amount, None)
            .await
            .expect_code("INVALID_INPUT");
    }
    // JSON numbers went through a binary float on their way; refused too.
    for amount in [json!(5), json!(0.1), json!(true)] {
        server
            .gql(
                "mutation($user: UUID!, $amount: Decimal!) { chargeBalance(userId: $user, amount: $amount) { balance } }",
                json!({"user": user, "amount": amount}),
                None,
            )
            .await
            .expect_code("INVALID_INPUT");
    }
    server
        .gql(
            &format!("mutation {{ chargeBalance(userId: \"{user}\", amount: 5) {{ balance }} }}"),
            json!({}),
            None,
        )
        .await
        .expect_code("INVALID_INPUT");
    assert_eq!(balance(&server, user).await, "0.00");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM balance_entries").await,
        0
    );

    // The edges that are fine.
    charge(&server, user, "0.01", None)
        .await
        .data("chargeBalance");
    charge(&server, user, "10000000", None)
        .await
        .data("chargeBalance");
    assert_eq!(balance(&server, user).await, "10000000.01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balance_never_passes_the_cap() {
    let server = TestServer::start().await;
    let user = register(&server, "whale").await;
    for _ in 0..99 {
        charge(&server, user, "10000000.00", None)
            .await
            .data("chargeBalance");
    }
    charge(&server, user, "9999999.99", None)
        .await
        .data("chargeBalance");
    assert_eq!(balance(&server, user).await, "999999999.99");
    charge(&server, user, "0.02", Some("over"))
        .await
        .expect_code("INVALID_INPUT");
    charge(&server, user, "0.01", Some("exact"))
        .await
        .data("chargeBalance");
    assert_eq!(balance(&server, user).await, "1000000000.00");
    charge(&server, user, "0.01", None)
        .await
        .expect_code("INVALID_INPUT");
    assert_eq!(entries_of(&server, user).await.len(), 101);
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_registered_with_trimmed_names_and_found_by_id() {
    let server = TestServer::start().await;
    let answer = server
        .gql("mutation { registerUser(name: \"  Ada Lovelace  \") { id name balance balanceHistory { id } reservations { id } payments { id } } }", json!({}), None)
        .await;
    let user = answer.data("registerUser");
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["balance"], "0.00");
    assert_eq!(user["balanceHistory"], json!([]));
    let id: uuid::Uuid = user["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 4, "ids are random");

    let invisible = [
        "Ada\u{0}",
        "Ada\nLovelace",
        "\u{1b}[31mAda",
        "\u{200B}\u{200B}",
        "\u{2060} \u{FEFF}",
        "\u{3164}",
        "\u{202E}\u{00AD}",
    ];
    let too_long = "x".repeat(51);
    let mut refused = vec!["", "   ", &too_long];
    refused.extend(invisible);
    for name in refused {
        server
            .gql(
                "mutation($n: String!) { registerUser(name: $n) { id } }",
                json!({"n": name}),
                None,
            )
            .await
            .expect_code("INVALID_INPUT");
    }
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM users").await,
        1,
        "only Ada was registered"
    );
    // Visible text in any script, with a joiner inside, is a name.
    server
        .gql(
            "mutation($n: String!) { registerUser(name: $n) { name } }",
            json!({"n": "👩\u{200D}🎤 Zoë"}),
            None,
        )
        .await
        .data("registerUser");
    let fifty_wide = "가".repeat(50);
    server
        .gql(
            "mutation($n: String!) { registerUser(name: $n) { name } }",
            json!({"n": fifty_wide}),
            None,
        )
        .await
        .data("registerUser");

    let nobody = server
        .gql(
            "query($id: UUID!) { user(id: $id) { id } }",
            json!({"id": uuid::Uuid::new_v4()}),
            None,
        )
        .await;
    assert_eq!(nobody.data("user"), &json!(null));
    charge(&server, uuid::Uuid::new_v4(), "1.00", None)
        .await
        .expect_code("NOT_FOUND");
    charge(&server, uuid::Uuid::new_v4(), "1.00", Some("k"))
        .await
        .expect_code("NOT_FOUND");
    charge(&server, id, "1.00", Some(&"k".repeat(101)))
        .await
        .expect_code("INVALID_INPUT");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM users").await,
        3,
        "Ada, the joiner name and the fifty-wide one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_amount_anywhere_in_a_document_stops_all_of_it() {
    let server = TestServer::start().await;
    let user = register(&server, "careful").await;
    let two = "mutation($u: UUID!, $a: Decimal!, $b: Decimal!) { \
               first: chargeBalance(userId: $u, amount: $a) { balance } \
               second: chargeBalance(userId: $u, amount: $b) { balance } }";
    // Twice: the second time the document is known and its parse is cached.
    for _ in 0..2 {
        server
            .gql(two, json!({"u": user, "a": "10.00", "b": "1e3"}), None)
            .await
            .expect_code("INVALID_INPUT");
    }
    assert_eq!(balance(&server, user).await, "0.00");
    let answer = server
        .gql(two, json!({"u": user, "a": "10.00", "b": "2.50"}), None)
        .await;
    assert_eq!(answer.data("second")["balance"], "12.50");
}
