//! Watches every pooled connection: counts the SQL statements the server
//! sends (tests and benchmarks state costs in statements, not guesses) and
//! notices when a connection's link to the database fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// After a link failure, connections are checked before reuse for this long.
const SUSPICION: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct DbMonitor {
    started: AtomicU64,
    last_link_failure_ms: AtomicU64,
}

impl DbMonitor {
    /// Statements started on every pooled connection since the server began.
    pub fn statements(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether a connection failed at the link level recently. Until the
    /// database blips, recently used connections are reused without a round
    /// trip; after one, each is pinged before reuse so dead ones leave the
    /// pool (see `db::CheckedManager`).
    pub fn links_suspect(&self) -> bool {
        let failed_at = self.last_link_failure_ms.load(Ordering::Relaxed);
        failed_at != 0 && now_ms().saturating_sub(failed_at) < SUSPICION.as_millis() as u64
    }

    pub(super) fn instrumentation(self: &Arc<Self>) -> MonitoringInstrumentation {
        MonitoringInstrumentation(Arc::clone(self))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

/// Errors that come from the driver or the socket rather than the server:
/// the connection is likely dead.
pub(super) fn is_link_failure(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            message.starts_with("Input/output error") || message.starts_with("Driver error")
        }
        _ => false,
    }
}

pub(super) struct MonitoringInstrumentation(Arc<DbMonitor>);

impl Instrumentation for MonitoringInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                self.0.started.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(target: "ticket_reservation::sql", %query);
            }
            InstrumentationEvent::FinishQuery {
                error: Some(error), ..
            } if is_link_failure(error) => {
                self.0
                    .last_link_failure_ms
                    .store(now_ms(), Ordering::Relaxed);
            }
            _ => {}
        }
    }
}
