//! Paying for holds: all or nothing, once, against the balance.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fixtures::{
    add_concert, admitted_user, balance, charge, days_from_now, held, issue_token, one_date, pay,
    queue_status, sql_number,
};
use common::{TestServer, concurrently};
use serde_json::json;

/// Seat 1-10 cost 165,000.00, 11-30 cost 132,000.00, 31-50 cost 99,000.00.
const FRONT: &str = "165000.00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_sells_the_seats_takes_the_money_and_ends_the_token() {
    let server = TestServer::start().await;
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "buyer").await;
    charge(&server, user, "500000.00", None)
        .await
        .data("chargeBalance");
    let front = held(&server, &token, date, 1).await;
    let back = held(&server, &token, date, 50).await;

    let payment = pay(&server, &token, &[&front, &back], None).await;
    let payment = payment.data("pay");
    assert_eq!(payment["amount"], "264000.00");
    let reservations = payment["reservations"].as_array().unwrap();
    assert_eq!(reservations.len(), 2);
    assert!(
        reservations
            .iter()
            .all(|r| r["status"] == "PAID" && r["seat"]["status"] == "SOLD")
    );
    assert_eq!(balance(&server, user).await, "236000.00");
    assert_eq!(
        queue_status(&server, &token).await.data("queueStatus")["status"],
        "EXPIRED"
    );

    let me = server
        .gql(
            "query($id: UUID!) { user(id: $id) { balance payments { id amount } reservations { status payment { id } } balanceHistory { kind amount balanceAfter } } }",
            json!({"id": user}),
            None,
        )
        .await;
    let me = me.data("user");
    assert_eq!(me["payments"][0]["id"], payment["id"]);
    assert!(
        me["reservations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["payment"]["id"] == payment["id"])
    );
    assert_eq!(
        me["balanceHistory"][0],
        json!({"kind": "PAYMENT", "amount": "-264000.00", "balanceAfter": "236000.00"})
    );
    assert_eq!(
        me["balanceHistory"][1],
        json!({"kind": "CHARGE", "amount": "500000.00", "balanceAfter": "500000.00"})
    );
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_payments_for_one_hold_pay_once() {
    let server = Arc::new(TestServer::start().await);
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "double clicker").await;
    charge(&server, user, "1000000.00", None)
        .await
        .data("chargeBalance");
    let hold = held(&server, &token, date, 3).await;
    let answers = {
        let (server, token, hold) = (Arc::clone(&server), token.clone(), hold.clone());
        concurrently(10, move |_| {
            let (server, token, hold) = (Arc::clone(&server), token.clone(), hold.clone());
            async move { pay(&server, &token, &[&hold], None).await.code() }
        })
        .await
    };
    let paid = answers.iter().filter(|code| code.is_none()).count();
    let already = answers
        .iter()
        .filter(|code| code.as_deref() == Some("ALREADY_PAID"))
        .count();
    assert_eq!((paid, already), (1, 9), "answers: {answers:?}");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM payments").await,
        1
    );
    assert_eq!(balance(&server, user).await, "835000.00");
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_with_one_key_answer_the_first_payment() {
    let server = Arc::new(TestServer::start().await);
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "retrier").await;
    charge(&server, user, "1000000.00", None)
        .await
        .data("chargeBalance");
    let hold = held(&server, &token, date, 4).await;
    let answers = {
        let (server, token, hold) = (Arc::clone(&server), token.clone(), hold.clone());
        concurrently(10, move |_| {
            let (server, token, hold) = (Arc::clone(&server), token.clone(), hold.clone());
            async move { pay(&server, &token, &[&hold], Some("checkout-1")).await }
        })
        .await
    };
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| a.data("pay")["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "every retry answers the one payment");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM payments").await,
        1
    );
    assert_eq!(balance(&server, user).await, "835000.00");
    // The token is EXPIRED now; a retry with the key still answers.
    let later = pay(&server, &token, &[&hold], Some("checkout-1")).await;
    assert!(ids.contains(later.data("pay")["id"].as_str().unwrap()));
    // Without the key, or with a new one, the expired token is refused.
    pay(&server, &token, &[&hold], Some("checkout-2"))
        .await
        .expect_code("ALREADY_PAID");
    common::assert_invariants_hold(&server);
}

/// The contract lets a retry with a used key answer whatever the token is
/// now: even a new token of the same user that is still in line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_answered_even_from_a_new_token_still_in_line() {
    let server = TestServer::with_settings(|c| c.max_active_tokens = 1).await;
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "returning").await;
    charge(&server, user, "1000000.00", None)
        .await
        .data("chargeBalance");
    let hold = held(&server, &token, date, 4).await;
    let first = pay(&server, &token, &[&hold], Some("checkout-1")).await;
    let first = first.data("pay")["id"].as_str().unwrap().to_owned();
    admitted_user(&server, "next in").await;
    let again = issue_token(&server, user).await;
    assert_eq!(
        (again.status.as_str(), again.position),
        ("WAITING", Some(1))
    );

    let retry = pay(&server, &again.token, &[&hold], Some("checkout-1")).await;
    assert_eq!(retry.data("pay")["id"], first.as_str());
    for key in [Some("checkout-2"), None] {
        let refused = pay(&server, &again.token, &[&hold], key).await;
        refused.expect_code("NOT_ADMITTED");
        assert_eq!(refused.errors()[0]["extensions"]["position"], 1);
    }
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM payments").await,
        1
    );
    assert_eq!(balance(&server, user).await, "835000.00");
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_balance_changes_nothing_and_a_top_up_lets_the_same_holds_pay() {
    let server = TestServer::start().await;
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "short").await;
    charge(&server, user, "100000.00", None)
        .await
        .data("chargeBalance");
    let hold = held(&server, &token, date, 2).await;
    pay(&server, &token, &[&hold], Some("try-1"))
        .await
        .expect_code("INSUFFICIENT_BALANCE");

    assert_eq!(balance(&server, user).await, "100000.00");
    assert_eq!(
        queue_status(&server, &token).await.data("queueStatus")["status"],
        "ACTIVE"
    );
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM payments").await,
        0
    );
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM idempotency_keys").await,
        0,
        "the key is free again"
    );
    assert_eq!(
        sql_number(
            &server.db,
            "SELECT COUNT(*) FROM seats WHERE status = 'HELD'"
        )
        .await,
        1
    );

    charge(&server, user, "65000.00", None)
        .await
        .data("chargeBalance");
    let paid = pay(&server, &token, &[&hold], Some("try-1")).await;
    assert_eq!(paid.data("pay")["amount"], FRONT);
    assert_eq!(balance(&server, user).await, "0.00");
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_what_is_not_yours_or_not_payable_is_refused_whole() {
    let server = TestServer::with_settings(|c| c.hold_seconds = 1).await;
    let (_, dates) = add_concert(&server.db, "Refusals", &[days_from_now(9)]).await;
    let date = dates[0];
    let (me, mine) = admitted_user(&server, "me").await;
    let (_, theirs) = admitted_user(&server, "them").await;
    charge(&server, me, "1000000.00", None)
        .await
        .data("chargeBalance");
    let my_hold = held(&server, &mine, date, 20).await;
    let their_hold = held(&server, &theirs, date, 21).await;

    pay(&server, &mine, &[&my_hold, &their_hold], None)
        .await
        .expect_code("NOT_FOUND");
    pay(&server, &mine, &[&uuid::Uuid::new_v4().to_string()], None)
        .await
        .expect_code("NOT_FOUND");
    pay(&server, &mine, &[], None)
        .await
        .expect_code("INVALID_INPUT");
    pay(&server, &mine, &[&my_hold, &my_hold], None)
        .await
        .expect_code("INVALID_INPUT");
    pay(&server, &mine, &["not-an-id"], None)
        .await
        .expect_code("INVALID_INPUT");
    pay(&server, &mine, &[&my_hold], Some(""))
        .await
        .expect_code("INVALID_INPUT");
    pay(&server, &mine, &[&my_hold], Some(&"k".repeat(101)))
        .await
        .expect_code("INVALID_INPUT");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM payments").await,
        0
    );
    assert_eq!(balance(&server, me).await, "1000000.00");

    // After the lapse the hold cannot be paid, and the seat is not sold.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pay(&server, &mine, &[&my_hold], None)
        .await
        .expect_code("HOLD_EXPIRED");
    assert_eq!(
        sql_number(
            &server.db,
            "SELECT COUNT(*) FROM seats WHERE status = 'SOLD'"
        )
        .await,
        0
    );
    assert_eq!(balance(&server, me).await, "1000000.00");
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_cannot_pay_a_live_hold() {
    let server = TestServer::with_settings(|c| c.max_holds_per_user = 2).await;
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "late").await;
    charge(&server, user, "1000000.00", None)
        .await
        .data("chargeBalance");
    let first = held(&server, &token, date, 30).await;
    let second = held(&server, &token, date, 31).await;
    pay(&server, &token, &[&first], None).await.data("pay");
    // Paying ended the token; the other hold stays until it lapses.
    pay(&server, &token, &[&second], None)
        .await
        .expect_code("TOKEN_EXPIRED");
    assert_eq!(
        sql_number(
            &server.db,
            "SELECT COUNT(*) FROM reservations WHERE status = 'HELD'"
        )
        .await,
        1
    );
}

/// Many holds lapse while their payments are in flight: each either sold
/// (seat SOLD, money taken) or answered HOLD_EXPIRED (seat back, money kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_racing_the_lapse_of_their_holds_are_all_or_nothing() {
    let server = Arc::new(
        TestServer::with_jobs(|c| {
            c.hold_seconds = 1;
            c.admit_interval_ms = 50;
        })
        .await,
    );
    let date = one_date(&server.db).await;
    let mut buyers = Vec::new();
    for seat in 1..=40 {
        let (user, token) = admitted_user(&server, &format!("racer {seat}")).await;
        charge(&server, user, "200000.00", None)
            .await
            .data("chargeBalance");
        buyers.push((user, token));
    }
    let buyers = Arc::new(buyers);
    let outcomes = {
        let (server, buyers) = (Arc::clone(&server), Arc::clone(&buyers));
        concurrently(40, move |i| {
            let (server, buyers) = (Arc::clone(&server), Arc::clone(&buyers));
            async move {
                let (_, token) = &buyers[i];
                let held = common::fixtures::hold(&server, token, date, i as i32 + 1).await;
                let held = held.data("holdSeat");
                let hold = held["id"].as_str().unwrap().to_owned();
                let lapse: chrono::DateTime<chrono::Utc> =
                    held["heldUntil"].as_str().unwrap().parse().unwrap();
                // Aim at the lapse itself, from 100 ms before to 100 ms after.
                let aim = lapse + chrono::Duration::milliseconds((i as i64 % 21) * 10 - 100);
                let wait = (aim - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                pay(&server, token, &[&hold], None).await.code()
            }
        })
        .await
    };
    for (i, code) in outcomes.iter().enumerate() {
        let (user, _) = &buyers[i];
        let seat = i + 1;
        let sold = sql_number(
            &server.db,
            &format!("SELECT COUNT(*) FROM seats WHERE number = {seat} AND status = 'SOLD'"),
        )
        .await;
        let money = balance(&server, *user).await;
        match code.as_deref() {
            None => {
                let left = match seat {
                    1..=10 => "35000.00",
                    11..=30 => "68000.00",
                    _ => "101000.00",
                };
                assert_eq!((sold, money.as_str()), (1, left), "seat {seat} paid");
            }
            Some("HOLD_EXPIRED") => assert_eq!((sold, money.as_str()), (0, "200000.00")),
            other => panic!("seat {seat}: unexpected answer {other:?}"),
        }
    }
    let paid = outcomes.iter().filter(|code| code.is_none()).count();
    eprintln!("{paid} of 40 payments beat the lapse");
    common::assert_invariants_hold(&server);
}

/// Charges (with and without keys) racing a payment of the same user: each
/// takes the user's row for writing before any foreign key takes it for
/// reading, so none deadlocks; all apply once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn charges_and_a_payment_of_one_user_all_apply_once() {
    let server = Arc::new(TestServer::start().await);
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "busy").await;
    charge(&server, user, "200000.00", Some("first"))
        .await
        .data("chargeBalance");
    let holds = [
        held(&server, &token, date, 40).await,
        held(&server, &token, date, 41).await,
    ];
    let answers = {
        let (server, token) = (Arc::clone(&server), token.clone());
        let holds = Arc::new(holds.clone());
        concurrently(41, move |i| {
            let (server, token, holds) = (Arc::clone(&server), token.clone(), Arc::clone(&holds));
            async move {
                match i {
                    0 => pay(&server, &token, &[&holds[0], &holds[1]], Some("checkout"))
                        .await
                        .code(),
                    odd if odd % 2 == 1 => charge(&server, user, "1.00", Some(&format!("k{odd}")))
                        .await
                        .code(),
                    _ => charge(&server, user, "1.00", None).await.code(),
                }
            }
        })
        .await
    };
    assert!(answers.iter().all(Option::is_none), "{answers:?}");
    // 200,000 + 40 charges of 1.00 - 2 x 99,000
    assert_eq!(balance(&server, user).await, "2040.00");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM balance_entries").await,
        42
    );
    common::assert_invariants_hold(&server);
}
