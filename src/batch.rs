//! Coalesces concurrent requests into one database round trip.
//!
//! Requests wait in a channel; one task drains whatever has arrived, runs a
//! single batch for all of it and answers each caller. A request that arrives
//! while a batch is running goes into the next batch, whose work starts after
//! it arrived, so answers are never staler than the request. Under load the
//! cost per request falls with the batch size; with no load a request runs
//! alone at once.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use tokio::sync::{mpsc, oneshot};

use crate::error::{AppError, AppResult};

type Envelope<Req, Resp> = (Req, oneshot::Sender<Resp>);

/// Requests one batcher holds waiting, beyond the batch it is running. A
/// full queue answers OVERLOADED at once: waiting longer would only make
/// every caller later.
const MAX_WAITING: usize = 4096;

pub struct Batcher<Req, Resp> {
    requests: mpsc::Sender<Envelope<Req, Resp>>,
}

impl<Req, Resp> Batcher<Req, Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    /// Starts the draining task. `run` receives at most `max_batch` requests
    /// in arrival order and returns one answer per request, in that order.
    pub fn spawn<F, Fut>(max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Resp>> + Send,
    {
        let (requests, mut inbox) = mpsc::channel::<Envelope<Req, Resp>>(MAX_WAITING);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            while inbox.recv_many(&mut batch, max_batch).await > 0 {
                let (payloads, replies): (Vec<Req>, Vec<_>) = batch.drain(..).unzip();
                // A batch that panics fails its own callers (their replies
                // are dropped: INTERNAL), never the batches after it.
                let Ok(answers) = AssertUnwindSafe(run(payloads)).catch_unwind().await else {
                    tracing::error!("a batch panicked; its callers were answered INTERNAL");
                    continue;
                };
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // The caller may have gone away (request cancelled); fine.
                    let _ = reply.send(answer);
                }
            }
        });
        Self { requests }
    }

    pub async fn call(&self, request: Req) -> AppResult<Resp> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .try_send((request, reply))
            .map_err(|refused| match refused {
                mpsc::error::TrySendError::Full(_) => AppError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => AppError::internal("batcher stopped"),
            })?;
        answer
            .await
            .map_err(|_| AppError::internal("batch dropped a request"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_batches_and_get_their_own_answers() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&batches);
        let batcher = Arc::new(Batcher::spawn(64, move |numbers: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                numbers.into_iter().map(|n| n * 2).collect::<Vec<_>>()
            }
        }));
        let calls = (0..200u32).map(|n| {
            let batcher = Arc::clone(&batcher);
            tokio::spawn(async move { (n, batcher.call(n).await.ok()) })
        });
        for call in futures_util::future::join_all(calls).await {
            let (n, doubled) = call.unwrap_or((0, None));
            assert_eq!(doubled, Some(n * 2));
        }
        assert!(
            batches.load(Ordering::SeqCst) < 200,
            "requests were not batched"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_batch_fails_only_its_own_callers() {
        let batcher = Batcher::spawn(1, |numbers: Vec<u32>| async move {
            assert!(numbers != [13], "unlucky");
            numbers
        });
        assert!(batcher.call(13).await.is_err());
        assert_eq!(batcher.call(7).await.ok(), Some(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_overloaded_at_once() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let running = Arc::new(tokio::sync::Notify::new());
        let (opened, started) = (Arc::clone(&gate), Arc::clone(&running));
        let batcher = Arc::new(Batcher::spawn(1, move |numbers: Vec<u32>| {
            let (gate, started) = (Arc::clone(&opened), Arc::clone(&started));
            async move {
                started.notify_one();
                let _pass = gate.acquire().await;
                numbers
            }
        }));
        let call = |n: u32| {
            let batcher = Arc::clone(&batcher);
            tokio::spawn(async move { batcher.call(n).await.ok() })
        };
        // One call runs and waits at the gate; MAX_WAITING more fill the queue.
        let mut calls = vec![call(0)];
        running.notified().await;
        calls.extend((1..=MAX_WAITING as u32).map(call));
        while batcher.requests.capacity() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            batcher.call(u32::MAX).await,
            Err(AppError::Overloaded)
        ));
        gate.add_permits(1);
        for (n, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.ok().flatten(), Some(n as u32));
        }
    }
}
