//! `/metrics`: what operators watch during a rush, in the Prometheus text
//! format (the `metrics` facade and its Prometheus exporter).
//!
//! Requests by operation and code with their latency, work in flight and
//! refusals are recorded as they happen; the line's counters, the pool and
//! the statements sent are read from the process when scraped.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

const REQUESTS: &str = "ticket_reservation_graphql_requests_total";
const LATENCY: &str = "ticket_reservation_graphql_request_seconds";
const IN_FLIGHT: &str = "ticket_reservation_requests_in_flight";
const REFUSALS: &str = "ticket_reservation_refusals_total";

/// Latency buckets, in seconds: from a cached read to the request limit.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The process's one recorder, installed on first use. (A test process may
/// run several servers: they share it, as they share the process.)
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), &LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// Installs the recorder, so that the first requests are counted too.
pub fn install() {
    if handle().is_none() {
        tracing::warn!("metrics recorder not installed: /metrics will be empty");
    }
}

/// Drains the histograms' raw samples into their buckets. The recorder
/// keeps every sample until this runs, so a server nobody scrapes would
/// grow without bound; the background jobs call it every few seconds.
pub fn upkeep() {
    if let Some(handle) = handle() {
        handle.run_upkeep();
    }
}

/// One answered GraphQL request: its root field (bounded by the schema,
/// never a name the client made up), its code (`ok` without error) and how
/// long it took.
pub fn record_request(operation: String, code: String, took: Duration) {
    metrics::histogram!(LATENCY, "operation" => operation.clone()).record(took.as_secs_f64());
    metrics::counter!(REQUESTS, "operation" => operation, "code" => code).increment(1);
}

/// A request refused at once: `in_flight` (MAX_IN_FLIGHT) or `websockets`.
pub fn record_refusal(reason: &'static str) {
    metrics::counter!(REFUSALS, "reason" => reason).increment(1);
}

/// Counts a request as in flight for as long as the guard lives.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}

/// The text a scrape gets: the recorded series, and this process's state.
pub fn render(app: &AppState) -> String {
    let line = app.queue.last_snapshot().counters;
    let pool = app.pool.status();
    metrics::counter!("ticket_reservation_sql_statements_total")
        .absolute(app.db_monitor.statements());
    metrics::counter!("ticket_reservation_admission_turns_total")
        .absolute(app.queue.admission_turns.load(Ordering::Relaxed));
    let gauges = [
        (
            "ticket_reservation_queue_subscribers",
            app.queue.subscriber_count() as f64,
        ),
        (
            "ticket_reservation_queue_last_issued_seq",
            line.last_issued_seq as f64,
        ),
        (
            "ticket_reservation_queue_admitted_through_seq",
            line.admitted_through_seq as f64,
        ),
        ("ticket_reservation_db_pool_connections", pool.size as f64),
        ("ticket_reservation_db_pool_idle", pool.available as f64),
    ];
    for (name, value) in gauges {
        metrics::gauge!(name).set(value);
    }
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// Descriptions for the series, shown as `# HELP` lines.
fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "GraphQL requests answered, by root field and code"
    );
    metrics::describe_histogram!(LATENCY, "GraphQL request latency, by root field");
    metrics::describe_gauge!(
        IN_FLIGHT,
        "GraphQL requests and websocket upgrades in flight"
    );
    metrics::describe_counter!(REFUSALS, "requests refused at once (OVERLOADED), by reason");
    metrics::describe_counter!(
        "ticket_reservation_sql_statements_total",
        "SQL statements sent"
    );
    metrics::describe_counter!(
        "ticket_reservation_admission_turns_total",
        "admission turns this process ran"
    );
    metrics::describe_gauge!(
        "ticket_reservation_queue_subscribers",
        "live queueStatus subscriptions"
    );
    metrics::describe_gauge!(
        "ticket_reservation_queue_last_issued_seq",
        "the newest token's number, as last read"
    );
    metrics::describe_gauge!(
        "ticket_reservation_queue_admitted_through_seq",
        "tokens admitted through this number, as last read"
    );
    metrics::describe_gauge!(
        "ticket_reservation_db_pool_connections",
        "open database connections"
    );
    metrics::describe_gauge!(
        "ticket_reservation_db_pool_idle",
        "idle database connections"
    );
}
