//! Counts the SQL statements the server sends, so tests and benchmarks can
//! state what an operation costs in round trips rather than guess.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::{Instrumentation, InstrumentationEvent};

#[derive(Debug, Default)]
pub struct StatementCounter {
    started: AtomicU64,
}

impl StatementCounter {
    /// Statements started on every pooled connection since the server began.
    pub fn total(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    pub(super) fn instrumentation(self: &Arc<Self>) -> CountingInstrumentation {
        CountingInstrumentation(Arc::clone(self))
    }
}

pub(super) struct CountingInstrumentation(Arc<StatementCounter>);

impl Instrumentation for CountingInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.started.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(target: "ticket_reservation::sql", %query);
        }
    }
}
