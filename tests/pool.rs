//! The connection pool hands out live connections: one the server closed
//! while it sat idle is pinged and replaced, not given to a request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{BigInt, Unsigned};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use futures_util::FutureExt;
use ticket_reservation::db::{self, DbMonitor, DbPool, PoolOptions};
use ticket_reservation::error::AppError;

async fn connection_id(pool: &DbPool) -> Result<u64, AppError> {
    db::run(pool, |conn| {
        async move {
            let id = diesel::select(diesel::dsl::sql::<Unsigned<BigInt>>("CONNECTION_ID()"))
                .get_result(conn)
                .await?;
            Ok(id)
        }
        .boxed()
    })
    .await
}

/// A pool of one connection, pinged after `idle`.
fn pool_pinging_after(db: &common::TestDb, idle: Duration) -> DbPool {
    let options = PoolOptions {
        idle_before_ping: idle,
        ..PoolOptions::requests(1)
    };
    db::build_pool(&db.url, options, Arc::new(DbMonitor::default())).unwrap()
}

/// Closes a connection from the server's side, as `wait_timeout` or a
/// restart would.
async fn kill(db: &common::TestDb, id: u64) {
    common::fixtures::sql_execute(db, &format!("KILL {id}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_while_idle_is_replaced_before_reuse() {
    let db = common::TestDb::new().await;
    let idle = Duration::from_millis(200);
    let pool = pool_pinging_after(&db, idle);
    let first = connection_id(&pool).await.unwrap();
    kill(&db, first).await;
    tokio::time::sleep(idle * 2).await;
    let second = connection_id(&pool).await.expect("a live connection");
    assert_ne!(first, second, "the dead one left the pool");

    // The contrast: reused without a ping, the dead connection reaches the
    // caller and its query fails.
    let trusting = pool_pinging_after(&db, Duration::MAX);
    let first = connection_id(&trusting).await.unwrap();
    kill(&db, first).await;
    tokio::time::sleep(idle * 2).await;
    assert!(connection_id(&trusting).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_idle_is_ended_and_its_locks_freed() {
    let db = common::TestDb::new().await;
    let pool = db::build_pool(
        &db.url,
        PoolOptions::requests(1),
        Arc::new(DbMonitor::default()),
    )
    .unwrap();
    // An owner that froze: it took the line's lock, then sends nothing.
    let idle = Duration::from_secs(u64::from(db::IDLE_TRANSACTION_SECONDS) + 2);
    let frozen = db::run(&pool, move |conn| {
        async move {
            conn.batch_execute("BEGIN").await?;
            conn.batch_execute("SELECT * FROM queue_state FOR UPDATE")
                .await?;
            tokio::time::sleep(idle).await;
            conn.batch_execute("SELECT 1").await?;
            Ok(())
        }
        .boxed()
    })
    .await;
    assert!(frozen.is_err(), "the database ended the idle transaction");

    // Its lock went with it: another session takes it without waiting.
    let mut other = db.connect().await;
    other
        .batch_execute("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .unwrap();
    other.batch_execute("BEGIN").await.unwrap();
    other
        .batch_execute("SELECT * FROM queue_state FOR UPDATE")
        .await
        .expect("the lock is free");
    // And the pool replaced the dead connection.
    connection_id(&pool).await.expect("a live connection");
}
