//! `ticket-reservation check` finds nothing in a healthy database and finds
//! each kind of damage planted in one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::fixtures::{admitted_user, charge, held, one_date, pay, sql_execute};
use common::{TestServer, run_check};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_a_healthy_database_and_reports_planted_violations() {
    let server = TestServer::with_settings(|c| c.max_active_tokens = 3).await;
    let date = one_date(&server.db).await;
    let (user, token) = admitted_user(&server, "buyer").await;
    charge(&server, user, "500000.00", None)
        .await
        .data("chargeBalance");
    let hold = held(&server, &token, date, 1).await;
    pay(&server, &token, &[&hold], None).await.data("pay");
    let (clean, report) = run_check(&server.db.url, 3);
    assert!(clean, "{report}");
    assert!(report.contains("ok: no invariant is broken"), "{report}");

    let plants = [
        (
            "UPDATE seats SET status = 'SOLD' WHERE number = 2",
            "a SOLD seat has exactly one PAID reservation",
        ),
        (
            "UPDATE users SET balance = balance + 1",
            "a balance equals the sum of its entries",
        ),
        (
            "UPDATE payments SET amount = amount - 1",
            "a payment's amount is the sum of its reservations",
        ),
        (
            "INSERT INTO users (id, name, balance, created_at) \
             SELECT UNHEX(REPLACE(UUID(), '-', '')), CONCAT('extra ', n), 0, NOW() \
             FROM (SELECT 1 AS n UNION SELECT 2 UNION SELECT 3 UNION SELECT 4) four",
            "",
        ),
        (
            "INSERT INTO queue_tokens (seq, user_id, nonce, status, issued_at, admitted_at, expires_at) \
             SELECT 100 + ROW_NUMBER() OVER (ORDER BY id), id, id, 'ACTIVE', NOW(6), NOW(6), NOW(6) + INTERVAL 1 HOUR \
             FROM users WHERE name LIKE 'extra %'",
            "",
        ),
    ];
    for (sql, _) in &plants {
        sql_execute(&server.db, sql).await;
    }
    let (clean, report) = run_check(&server.db.url, 3);
    assert!(!clean, "check must fail:\n{report}");
    for (_, rule) in plants.iter().filter(|(_, rule)| !rule.is_empty()) {
        assert!(report.contains(rule), "missing {rule:?} in:\n{report}");
    }
    assert!(report.contains("above MAX_ACTIVE_TOKENS=3"), "{report}");
}

/// `check` only reads: pointed at a database that does not exist, it fails
/// and leaves it uncreated rather than create, migrate and pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_and_never_creates_or_migrates() {
    let db = common::TestDb::new().await;
    let name = format!("{}_missing", db.name);
    let mut missing = url::Url::parse(&db.url).unwrap();
    missing.set_path(&name);
    let (clean, report) = run_check(missing.as_str(), 3);
    assert!(!clean, "check of a missing database must fail:\n{report}");
    let created = common::fixtures::sql_number(
        &db,
        &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"),
    )
    .await;
    if created > 0 {
        common::fixtures::sql_execute(&db, &format!("DROP DATABASE `{name}`")).await;
    }
    assert_eq!(created, 0, "check created {name}");
}

/// The wedges seen on a Galera cluster: tokens stored without the counter
/// that numbers them, a counter ahead of its tokens, a token ACTIVE beyond
/// the admitted number. Each is reported, none reads "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_line_whose_rows_and_counters_disagree() {
    let server = TestServer::with_settings(|c| c.max_active_tokens = 1).await;
    for name in ["first", "second", "third", "fourth"] {
        let user = common::fixtures::register(&server, name).await;
        common::fixtures::issue_token(&server, user).await;
    }
    let (clean, report) = run_check(&server.db.url, 1);
    assert!(clean, "{report}");

    let plants = [
        (
            "UPDATE queue_state SET last_issued_seq = last_issued_seq - 1",
            "the line's counter numbers every token: none above it",
        ),
        (
            "DELETE FROM queue_tokens WHERE seq = 2",
            "the line's counter numbers every token: one token for each number, no gaps",
        ),
        (
            "UPDATE queue_tokens SET status = 'ACTIVE', admitted_at = NOW(6), \
             expires_at = NOW(6) + INTERVAL 1 HOUR WHERE seq = 3",
            "tokens after the admission cursor are WAITING, tokens up to it are not",
        ),
    ];
    for (sql, rule) in plants {
        sql_execute(&server.db, sql).await;
        let (clean, report) = run_check(&server.db.url, 10);
        assert!(!clean, "check must fail after {sql}:\n{report}");
        assert!(report.contains(rule), "missing {rule:?} in:\n{report}");
    }
}
