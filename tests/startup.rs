//! Servers started together migrate the schema and load the demo catalogue
//! once between them, and a migration a crash left half done is resumed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use chrono::Utc;
use common::TestDb;
use common::fixtures::sql_number;
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use ticket_reservation::db::migrate::MIGRATION_FILES;
use ticket_reservation::db::{self, PoolOptions};

/// What a server does at start before it serves: create and migrate the
/// database, then load the demo catalogue into an empty one.
async fn start_like_a_server(url: String) -> (usize, bool) {
    let applied = db::prepare(&url).await.expect("prepared");
    let pool = db::build_pool(&url, PoolOptions::requests(2), Default::default()).expect("pool");
    let seeded = ticket_reservation::catalogue::seed::seed_if_empty(&pool, Utc::now().naive_utc())
        .await
        .expect("seeded");
    (applied, seeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_started_together_migrate_and_seed_once() {
    let db = TestDb::unprepared();
    let starts = common::concurrently(8, |_| start_like_a_server(db.url.clone())).await;

    let migrated: usize = starts.iter().map(|(applied, _)| applied).sum();
    assert_eq!(
        migrated,
        MIGRATION_FILES.len(),
        "each migration ran once: {starts:?}"
    );
    let seeders = starts.iter().filter(|(_, seeded)| *seeded).count();
    assert_eq!(seeders, 1, "one process loaded the demo: {starts:?}");
    assert_eq!(
        sql_number(&db, "SELECT COUNT(*) FROM __diesel_schema_migrations").await,
        MIGRATION_FILES.len() as i64
    );
    assert_eq!(
        sql_number(&db, "SELECT COUNT(*) FROM __ticket_reservation_leases").await,
        0,
        "every lease was given back"
    );
    let alone = TestDb::unprepared();
    start_like_a_server(alone.url.clone()).await;
    for table in ["concerts", "concert_dates", "seats"] {
        let count = format!("SELECT COUNT(*) FROM {table}");
        assert_eq!(
            sql_number(&db, &count).await,
            sql_number(&alone, &count).await,
            "{table}: as many as one server alone loads"
        );
    }
    assert_eq!(
        sql_number(&db, "SELECT COUNT(*) FROM catalogue_seeds").await,
        1
    );
    // Started again: nothing left to do.
    assert_eq!(start_like_a_server(db.url.clone()).await, (0, false));
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = TABLE_NAME)]
    name: String,
}

#[derive(QueryableByName)]
struct CreateTable {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "Create Table")]
    sql: String,
}

/// Every table's `SHOW CREATE TABLE`, and the line's row: what a complete
/// migration must leave.
async fn schema_of(conn: &mut AsyncMysqlConnection) -> Vec<String> {
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME NOT LIKE '\\_\\_%' ORDER BY TABLE_NAME",
    )
    .load(conn)
    .await
    .unwrap();
    let mut schema = Vec::new();
    for table in tables {
        let shown: Vec<CreateTable> =
            diesel::sql_query(format!("SHOW CREATE TABLE `{}`", table.name))
                .load(conn)
                .await
                .unwrap();
        schema.extend(shown.into_iter().map(|row| row.sql));
    }
    schema
}

/// Applies the migrations before `stop_in` whole and recorded, then the
/// first `statements` statements of `stop_in` with all but the last
/// recorded as done: the state a process leaves that died in the middle of
/// that migration, just after a statement and before recording it.
async fn interrupt(conn: &mut AsyncMysqlConnection, stop_in: usize, statements: usize) {
    conn.batch_execute(
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    )
    .await
    .unwrap();
    for file in &MIGRATION_FILES[..stop_in] {
        for statement in file.statements() {
            conn.batch_execute(&statement).await.unwrap();
        }
        conn.batch_execute(&format!(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('{}')",
            file.version()
        ))
        .await
        .unwrap();
    }
    for statement in MIGRATION_FILES[stop_in]
        .statements()
        .iter()
        .take(statements)
    {
        conn.batch_execute(statement).await.unwrap();
    }
    conn.batch_execute(&format!(
        "CREATE TABLE __ticket_reservation_migration_progress (version VARCHAR(50) PRIMARY KEY, \
         statements_done INT UNSIGNED NOT NULL); \
         INSERT INTO __ticket_reservation_migration_progress VALUES ('{}', {})",
        MIGRATION_FILES[stop_in].version(),
        statements - 1
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_interrupted_after_any_statement_is_resumed() {
    let reference = TestDb::new().await;
    let expected = schema_of(&mut reference.connect().await).await;
    let line = sql_number(&reference, "SELECT COUNT(*) FROM queue_state").await;
    assert_eq!(line, 1);

    let mut cases = 0;
    for (index, file) in MIGRATION_FILES.iter().enumerate() {
        for done in 1..=file.statements().len() {
            let db = TestDb::unprepared();
            db::create_database_if_missing(&db.url).await.unwrap();
            interrupt(&mut db.connect().await, index, done).await;
            let applied = db::prepare(&db.url)
                .await
                .unwrap_or_else(|e| panic!("{} after {done} statements: {e:?}", file.name));
            assert_eq!(applied, MIGRATION_FILES.len() - index);
            assert_eq!(
                schema_of(&mut db.connect().await).await,
                expected,
                "{} resumed after {done} statements",
                file.name
            );
            assert_eq!(sql_number(&db, "SELECT COUNT(*) FROM queue_state").await, 1);
            cases += 1;
        }
    }
    assert!(
        cases > MIGRATION_FILES.len(),
        "some files have several statements"
    );
}
