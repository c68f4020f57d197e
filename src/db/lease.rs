//! Startup leases: one process at a time migrates the schema or loads the
//! demo catalogue, whichever database node each one talks to.
//!
//! `GET_LOCK` is a lock of one server: on a Galera cluster each node has its
//! own, so servers started together on three nodes all "got" it. A lease is
//! a row instead, written in a statement of its own (autocommit): on one
//! MariaDB the second writer waits on the row lock and then sees the row;
//! on Galera two nodes' writes of the row conflict at commit, one fails
//! certification (a deadlock error), tries again and sees the winner's row.
//! A process that dies holding a lease stops renewing it, and it lapses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{Binary, Integer, Text, Unsigned};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use tokio::task::JoinHandle;

use super::Hosts;
use crate::error::{AppError, AppResult};

/// A lease lapses this long after its holder last renewed it.
const LEASE: Duration = Duration::from_secs(20);
/// The holder renews it this often while its work runs.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a process waiting for a lease looks again.
const LOOK_AGAIN: Duration = Duration::from_millis(200);

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Binary)]
    holder: Vec<u8>,
}

/// A lease this process holds; `release` gives it up.
pub struct Lease {
    name: &'static str,
    holder: [u8; 16],
    renewal: JoinHandle<()>,
    /// Set by the renewal once the lease cannot be shown to be ours any
    /// more (a renewal found another holder, or none succeeded for half the
    /// lease): the work it guards must stop.
    lost: Arc<AtomicBool>,
}

/// Creates the leases table when missing. It lives outside the migrations
/// because it guards them.
pub async fn prepare_table(conn: &mut AsyncMysqlConnection) -> AppResult<()> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS __ticket_reservation_leases ( \
             name        VARCHAR(32)  NOT NULL, \
             holder      BINARY(16)   NOT NULL, \
             expires_at  DATETIME(6)  NOT NULL, \
             PRIMARY KEY (name)) ENGINE = InnoDB",
    )
    .await?;
    Ok(())
}

/// Waits up to `wait` for the lease `name`, then holds it (renewed over a
/// connection of its own to one of `hosts`) until `release`.
pub async fn acquire(
    conn: &mut AsyncMysqlConnection,
    hosts: Arc<Hosts>,
    name: &'static str,
    wait: Duration,
) -> AppResult<Lease> {
    let holder: [u8; 16] = rand::random();
    let deadline = Instant::now() + wait;
    loop {
        match try_take(conn, name, &holder).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) if error.is_retryable() => {
                tracing::info!(lease = name, error = %error.detail(), "lease write conflicted; looking again");
            }
            Err(error) => return Err(error),
        }
        if Instant::now() >= deadline {
            return Err(AppError::internal(format!(
                "another process held the startup lease {name} for over {} s; start again",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(LOOK_AGAIN).await;
    }
    let lost = Arc::new(AtomicBool::new(false));
    let renewal = tokio::spawn(renew(hosts, name, holder, Arc::clone(&lost)));
    Ok(Lease {
        name,
        holder,
        renewal,
        lost,
    })
}

/// Writes the lease for `holder` unless another holds it unexpired, and
/// answers whether it is now `holder`'s.
async fn try_take(
    conn: &mut AsyncMysqlConnection,
    name: &'static str,
    holder: &[u8; 16],
) -> AppResult<bool> {
    // Assignments run left to right: `expires_at` in the second IF is still
    // the old one, so both columns change together or not at all.
    diesel::sql_query(
        "INSERT INTO __ticket_reservation_leases (name, holder, expires_at) \
         VALUES (?, ?, NOW(6) + INTERVAL ? SECOND) \
         ON DUPLICATE KEY UPDATE \
             holder = IF(expires_at < NOW(6), VALUES(holder), holder), \
             expires_at = IF(expires_at < NOW(6), VALUES(expires_at), expires_at)",
    )
    .bind::<Text, _>(name)
    .bind::<Binary, _>(holder.as_slice())
    .bind::<Unsigned<Integer>, _>(LEASE.as_secs() as u32)
    .execute(conn)
    .await?;
    let current: Vec<Holder> =
        diesel::sql_query("SELECT holder FROM __ticket_reservation_leases WHERE name = ?")
            .bind::<Text, _>(name)
            .load(conn)
            .await?;
    Ok(<[Holder]>::first(&current).is_some_and(|row| row.holder == holder))
}

/// Pushes the lease's lapse forward while its work runs. A renewal that
/// fails is tried again at the next beat; the lease lasts four beats. When
/// a renewal finds the row no longer ours, or none has succeeded for half
/// the lease (so another process may soon take it, by its own node's
/// clock), the lease counts as lost.
async fn renew(hosts: Arc<Hosts>, name: &'static str, holder: [u8; 16], lost: Arc<AtomicBool>) {
    let mut conn: Option<AsyncMysqlConnection> = None;
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        if last_renewed.elapsed() > LEASE / 2 {
            lost.store(true, Ordering::Relaxed);
        }
        if conn.is_none() {
            conn = super::open_session(&hosts, LEASE.as_secs() as u32)
                .await
                .ok();
        }
        let Some(open) = conn.as_mut() else { continue };
        let renewed = diesel::sql_query(
            "UPDATE __ticket_reservation_leases SET expires_at = NOW(6) + INTERVAL ? SECOND \
             WHERE name = ? AND holder = ?",
        )
        .bind::<Unsigned<Integer>, _>(LEASE.as_secs() as u32)
        .bind::<Text, _>(name)
        .bind::<Binary, _>(holder.as_slice())
        .execute(open)
        .await;
        match renewed {
            Ok(1) => last_renewed = Instant::now(),
            Ok(_) => {
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(error) => {
                tracing::warn!(lease = name, %error, "could not renew a startup lease");
                conn = None;
            }
        }
    }
}

impl Lease {
    /// Fails once the lease can no longer be shown to be this process's:
    /// checked between the steps of the guarded work.
    pub fn still_held(&self) -> AppResult<()> {
        if AtomicBool::load(&self.lost, Ordering::Relaxed) {
            return Err(AppError::internal(format!(
                "lost the startup lease {} (it could not be renewed); start again",
                self.name
            )));
        }
        Ok(())
    }

    /// Gives the lease up, so the next process need not wait for it to lapse.
    pub async fn release(self, conn: &mut AsyncMysqlConnection) -> AppResult<()> {
        self.renewal.abort();
        diesel::sql_query("DELETE FROM __ticket_reservation_leases WHERE name = ? AND holder = ?")
            .bind::<Text, _>(self.name)
            .bind::<Binary, _>(self.holder.as_slice())
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Dropped without `release` (an error on the way): stop renewing so
        // the lease lapses for the next process.
        self.renewal.abort();
    }
}
