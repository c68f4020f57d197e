//! `ticket-reservation catalogue import FILE`, run as the binary: all or
//! nothing, twice adds nothing, and the demo catalogue is such a file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use common::fixtures::sql_number;
use common::{TestDb, TestServer};

/// Runs the import; (success, output).
fn import(db: &TestDb, text: &str) -> (bool, String) {
    let file = std::env::temp_dir().join(format!("catalogue-{}.toml", db.name));
    std::fs::write(&file, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ticket-reservation"))
        .args(["catalogue", "import"])
        .arg(&file)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the import");
    std::fs::remove_file(&file).ok();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn rows(db: &TestDb) -> (i64, i64, i64) {
    (
        sql_number(db, "SELECT COUNT(*) FROM concerts").await,
        sql_number(db, "SELECT COUNT(*) FROM concert_dates").await,
        sql_number(db, "SELECT COUNT(*) FROM seats").await,
    )
}

const GOOD: &str = r#"
[[concert]]
name = "Autumn Rush"
venue = "Hall 2"

[[concert.date]]
starts_at = "2031-10-01T19:00:00Z"
sales_open_at = "2031-09-01T10:00:00Z"
prices = [
  { from_seat = 1, to_seat = 20, price = "120.00" },
  { from_seat = 21, to_seat = 50, price = "60.5" },
]

[[concert.date]]
starts_at = "2031-10-02T19:00:00Z"
prices = [{ from_seat = 1, to_seat = 50, price = "75" }]
"#;

#[tokio::test]
async fn an_import_writes_everything_once() {
    let db = TestDb::new().await;
    let (ok, output) = import(&db, GOOD);
    assert!(ok, "{output}");
    assert!(output.contains("1 concerts and 2 dates added"), "{output}");
    assert_eq!(rows(&db).await, (1, 2, 100));
    let opens = sql_number(
        &db,
        "SELECT COUNT(*) FROM concert_dates WHERE sales_open_at = '2031-09-01 10:00:00'",
    )
    .await;
    assert_eq!(opens, 1);
    let cheap = sql_number(
        &db,
        "SELECT COUNT(*) FROM seats WHERE price = 60.50 AND number BETWEEN 21 AND 50",
    )
    .await;
    assert_eq!(cheap, 30);

    let (ok, output) = import(&db, GOOD);
    assert!(ok, "{output}");
    assert!(
        output.contains("0 concerts and 0 dates added, 2 dates already there"),
        "{output}"
    );
    assert_eq!(
        rows(&db).await,
        (1, 2, 100),
        "the second import added nothing"
    );
}

#[tokio::test]
async fn one_bad_date_changes_nothing() {
    let db = TestDb::new().await;
    let bad_ones = [
        GOOD.replace(
            "to_seat = 50, price = \"75\"",
            "to_seat = 49, price = \"75\"",
        ),
        GOOD.replace("\"60.5\"", "\"60.505\""),
        GOOD.replace("2031-09-01T10:00:00Z", "2031-10-01T20:00:00Z"),
        GOOD.replace("2031-10-02T19:00:00Z", "2001-10-02T19:00:00Z"),
        GOOD.replace("venue = \"Hall 2\"", "venue = \"\""),
        GOOD.replace("prices = [{", "colour = 3\nprices = [{"),
        "not toml at all [[".to_owned(),
    ];
    for text in &bad_ones {
        let (ok, output) = import(&db, text);
        assert!(!ok, "{output}");
        assert!(!output.contains("panicked"), "{output}");
        assert_eq!(rows(&db).await, (0, 0, 0), "{output}");
    }
    let (ok, output) = import(&db, &bad_ones[0]);
    assert!(output.contains("concert 1: date 2"), "{output}");
    assert!(!ok);
}

#[tokio::test]
async fn seed_demo_loads_the_demo_file() {
    let server = TestServer::with_settings(|config| config.seed_demo = true).await;
    ticket_reservation::catalogue::seed::seed_if_empty(
        &server.state.pool,
        ticket_reservation::clock::now(),
    )
    .await
    .unwrap();
    assert_eq!(rows(&server.db).await, (3, 7, 350));
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/catalogue/demo.toml"))
        .unwrap();
    let (ok, output) = import(&server.db, &text);
    assert!(ok, "{output}");
    assert!(
        output.contains("0 dates added, 7 dates already there"),
        "{output}"
    );
}
