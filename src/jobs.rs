//! Background loops. Each is safe to run in many processes on one database:
//! admission takes the line's counters row lock, and the sweep's writes are
//! conditional and idempotent.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::{booking, clock, queue};

/// How often lapsed holds are swept. Reads already treat a lapsed hold as
/// gone; the sweep only rewrites the rows, and wakes the admission loop,
/// since the holders' tokens ended with their holds.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the loops; they end when `state.lifecycle.stop` is cancelled.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    let stop = &state.lifecycle.stop;
    vec![
        tokio::spawn(admission_loop(state.clone(), stop.clone())),
        tokio::spawn(sweep_loop(state.clone(), stop.clone())),
    ]
}

/// Admits the earliest WAITING tokens into free slots and publishes the
/// line's counters to this process's subscribers. A turn comes at least
/// every half admit interval, so a slot never waits longer than the
/// interval; a payment or a sweep wakes it at once. The pause is jittered so
/// that several processes on one database do not tick in lockstep.
async fn admission_loop(state: AppState, stop: CancellationToken) {
    let half = state.queue.settings.admit_interval / 2;
    loop {
        let pause = half
            .mul_f64(rand::random_range(0.5..1.0))
            .max(Duration::from_millis(2));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
            _ = state.queue.admission_wakeup.notified() => {}
        }
        match queue::service::admit_waiting(&state.jobs_pool, state.queue.settings).await {
            Ok(Some(turn)) => {
                state
                    .queue
                    .admission_turns
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if turn.admitted > 0 {
                    let through = turn.counters.admitted_through_seq;
                    tracing::debug!(admitted = turn.admitted, through, "admission turn");
                }
                state.queue.publish(turn.counters);
            }
            // Another process holds the line right now: its turn admits.
            Ok(None) => {}
            Err(error) => tracing::error!(error = %error.detail(), "admission turn failed"),
        }
    }
}

async fn sweep_loop(state: AppState, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match booking::service::sweep_lapsed_holds(&state.jobs_pool, clock::now()).await {
            Ok((expired, released)) if expired + released > 0 => {
                tracing::info!(expired, released, "lapsed holds swept");
                // The holders' tokens lapsed with their holds: admit others.
                state.queue.admission_wakeup.notify_one();
            }
            Ok(_) => {}
            Err(error) => tracing::error!(error = %error.detail(), "hold sweep failed"),
        }
    }
}
