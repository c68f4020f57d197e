//! Coalesces concurrent requests into one database round trip.
//!
//! Requests wait in a channel; one task drains whatever has arrived, runs a
//! single batch for all of it and answers each caller. A request that arrives
//! while a batch is running goes into the next batch, whose work starts after
//! it arrived, so answers are never staler than the request. Under load the
//! cost per request falls with the batch size; with no load a request runs
//! alone at once.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::{AppError, AppResult};

type Envelope<Req, Resp> = (Req, oneshot::Sender<Resp>);

pub struct Batcher<Req, Resp> {
    requests: mpsc::UnboundedSender<Envelope<Req, Resp>>,
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
        let (requests, mut inbox) = mpsc::unbounded_channel::<Envelope<Req, Resp>>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            while inbox.recv_many(&mut batch, max_batch).await > 0 {
                let (payloads, replies): (Vec<Req>, Vec<_>) = batch.drain(..).unzip();
                let answers = run(payloads).await;
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
            .send((request, reply))
            .map_err(|_| AppError::internal("batcher stopped"))?;
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
}
