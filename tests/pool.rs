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
use diesel_async::RunQueryDsl;
use ticket_reservation::db::{self, DbMonitor, DbPool};

async fn connection_id(pool: &DbPool) -> Result<u64, diesel::result::Error> {
    let mut conn = db::connect(pool).await.unwrap();
    diesel::select(diesel::dsl::sql::<Unsigned<BigInt>>("CONNECTION_ID()"))
        .get_result(&mut conn)
        .await
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
    let monitor = Arc::new(DbMonitor::default());
    let pool = db::build_pool_pinging_after(&db.url, 1, monitor, idle).unwrap();
    let first = connection_id(&pool).await.unwrap();
    kill(&db, first).await;
    tokio::time::sleep(idle * 2).await;
    let second = connection_id(&pool).await.expect("a live connection");
    assert_ne!(first, second, "the dead one left the pool");

    // The contrast: reused without a ping, the dead connection reaches the
    // caller and its query fails.
    let monitor = Arc::new(DbMonitor::default());
    let trusting = db::build_pool_pinging_after(&db.url, 1, monitor, Duration::MAX).unwrap();
    let first = connection_id(&trusting).await.unwrap();
    kill(&db, first).await;
    tokio::time::sleep(idle * 2).await;
    assert!(connection_id(&trusting).await.is_err());
}
