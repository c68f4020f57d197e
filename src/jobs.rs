//! Background loops. Each is safe to run in many processes on one database:
//! admission takes the line's counters row lock, and the sweep's writes are
//! conditional and idempotent.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::{booking, clock, queue};

/// How often lapsed holds are swept. Reads already treat a lapsed hold as
/// gone; the sweep only rewrites the rows, and wakes the admission loop,
/// since the holders' tokens ended with their holds.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a loop that panicked waits before it starts again.
const RESTART_PAUSE: Duration = Duration::from_millis(100);

/// Starts the loops; they end when `state.lifecycle.stop` is cancelled.
/// Each runs under a supervisor that starts it again if it panics: a dead
/// admission loop would freeze this process's line.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    spawn_until(state, &state.lifecycle.stop)
}

/// `spawn`, with the loops ending when `stop` is cancelled.
pub fn spawn_until(state: &AppState, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    state.queue.heartbeat.beat();
    let (admitting, sweeping, upkeeping) = (state.clone(), state.clone(), state.clone());
    vec![
        supervise("admission", stop.clone(), move |stop| {
            admission_loop(admitting.clone(), stop)
        }),
        supervise("hold sweep", stop.clone(), move |stop| {
            sweep_loop(sweeping.clone(), stop)
        }),
        supervise("upkeep", stop.clone(), move |stop| {
            upkeep_loop(upkeeping.clone(), stop)
        }),
    ]
}

/// How often the metrics recorder folds its samples into its buckets and
/// the rate limits forget the addresses that went quiet.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

async fn upkeep_loop(state: AppState, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                crate::metrics::upkeep();
                state.limits.forget_idle();
            }
        }
    }
}

/// Runs the loop that `start` makes on a task of its own, and starts it
/// again whenever it panics (logging each panic once), until `stop`.
pub fn supervise<F, Fut>(name: &'static str, stop: CancellationToken, start: F) -> JoinHandle<()>
where
    F: Fn(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(start(stop.clone())).await {
                Err(ended) if ended.is_panic() => {
                    tracing::error!(job = name, "background loop panicked; starting it again");
                }
                _ => return,
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RESTART_PAUSE) => {}
            }
        }
    })
}

/// Admits the earliest WAITING tokens into free slots and publishes the
/// line's counters to this process's subscribers. A turn comes at least
/// every half admit interval, so a slot never waits longer than the
/// interval; a payment or a sweep wakes it at once. The interval is the
/// shorter of `ADMIT_INTERVAL_MS` and the organizers' (read at each turn),
/// so a change of theirs is seen within `ADMIT_INTERVAL_MS`. The pause is
/// jittered so that several processes on one database do not tick in
/// lockstep.
async fn admission_loop(state: AppState, stop: CancellationToken) {
    let configured = state.queue.settings.admit_interval;
    let mut interval = configured;
    loop {
        let pause = (interval.min(configured) / 2)
            .mul_f64(rand::random_range(0.5..1.0))
            .max(Duration::from_millis(2));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
            _ = state.queue.admission_wakeup.notified() => {}
        }
        match queue::service::admit_waiting(&state.line_pool, state.queue.settings).await {
            Ok(Some(turn)) => {
                state.queue.heartbeat.beat();
                state
                    .queue
                    .admission_turns
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if turn.admitted > 0 {
                    let through = turn.counters.admitted_through_seq;
                    tracing::debug!(admitted = turn.admitted, through, "admission turn");
                }
                interval = state.queue.settings.admit_interval_under(&turn.controls);
                state.queue.publish(turn.counters);
            }
            // Another process holds the line right now: its turn admits.
            Ok(None) => state.queue.heartbeat.beat(),
            Err(error) if error.is_retryable() => {
                tracing::warn!(error = %error.detail(), "admission turn rolled back; the next one admits");
            }
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
            // On a cluster a sweep can meet a hold or payment on another
            // node; the next tick sweeps what this one left.
            Err(error) if error.is_retryable() => {
                tracing::warn!(error = %error.detail(), "hold sweep rolled back; the next one sweeps");
            }
            Err(error) => tracing::error!(error = %error.detail(), "hold sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_loop_that_panics_is_started_again_until_stopped() {
        let starts = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = Arc::clone(&starts);
        let supervisor = supervise("test", stop.clone(), move |stop| {
            let start = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if start < 2 {
                    panic!("loop failure {start}");
                }
                stop.cancelled().await;
            }
        });
        while starts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        assert!(supervisor.await.is_ok(), "the supervisor ends cleanly");
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }
}
