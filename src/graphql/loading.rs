//! Runs a request's dataloader batches on the request's own task.
//!
//! async-graphql's `DataLoader` batches the keys that arrive within a delay
//! on a spawned task. On a multi-threaded runtime that task can fire while
//! the resolvers are still registering keys (a list yields to the runtime
//! every 32 items), so 10,000 seats may be loaded in one batch or in fifty,
//! depending on timing. Here the "spawner" only queues the batch, and the
//! queued batches start once the execution has gone quiet: it returned
//! Pending without waking itself, so every resolver that could run has
//! asked for its keys. Each level of a query costs one statement per key
//! type, however long its lists.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, FuturesUnordered};

type Batch = BoxFuture<'static, ()>;

#[derive(Clone, Default)]
pub struct LoaderTasks {
    queued: Arc<Mutex<Vec<Batch>>>,
}

impl LoaderTasks {
    /// The spawner handed to each `DataLoader` of the request.
    pub fn spawner(&self) -> impl Fn(Batch) + Send + Sync + 'static {
        let queued = Arc::clone(&self.queued);
        move |batch| {
            if let Ok(mut queued) = queued.lock() {
                queued.push(batch);
            }
        }
    }

    /// Polls `future` and the batches it queues, all on the caller's task.
    pub async fn drive<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        let mut batches = Batches::new(self.clone());
        std::future::poll_fn(|cx| {
            loop {
                let (polled, busy) = batches.observe(cx, |cx| future.as_mut().poll(cx));
                if polled.is_ready() || busy {
                    return polled;
                }
                if !batches.poll(cx) {
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    /// The same for a subscription's stream of responses.
    pub fn drive_stream<'s, T: Send + 's>(self, mut stream: BoxStream<'s, T>) -> BoxStream<'s, T> {
        let mut batches = Batches::new(self);
        futures_util::stream::poll_fn(move |cx| {
            loop {
                let (polled, busy) = batches.observe(cx, |cx| stream.as_mut().poll_next(cx));
                if polled.is_ready() || busy {
                    return polled;
                }
                if !batches.poll(cx) {
                    return Poll::Pending;
                }
            }
        })
        .boxed()
    }
}

/// A waker that remembers being woken, to tell a future that yielded (and
/// woke itself to go on) from one that waits on something else.
struct NoticingWaker {
    woken: AtomicBool,
    inner: Mutex<Waker>,
}

impl Wake for NoticingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Ok(inner) = self.inner.lock() {
            inner.wake_by_ref();
        }
    }
}

struct Batches {
    tasks: LoaderTasks,
    running: FuturesUnordered<Batch>,
    /// Made on the first poll and kept: one allocation per request.
    noticing: Option<(Arc<NoticingWaker>, Waker)>,
}

impl Batches {
    fn new(tasks: LoaderTasks) -> Self {
        Self {
            tasks,
            running: FuturesUnordered::new(),
            noticing: None,
        }
    }

    /// Polls the execution and says whether it is still busy: Pending, but
    /// it woke itself (the task is already scheduled to go on), so more
    /// resolvers may yet ask for keys.
    fn observe<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> (Poll<T>, bool) {
        let (noticing, waker) = self.noticing.get_or_insert_with(|| {
            let noticing = Arc::new(NoticingWaker {
                woken: AtomicBool::new(false),
                inner: Mutex::new(cx.waker().clone()),
            });
            let waker = Waker::from(Arc::clone(&noticing));
            (noticing, waker)
        });
        if let Ok(mut inner) = noticing.inner.lock()
            && !inner.will_wake(cx.waker())
        {
            *inner = cx.waker().clone();
        }
        noticing.woken.store(false, Ordering::SeqCst);
        let polled = poll(&mut Context::from_waker(waker));
        let busy = polled.is_pending() && noticing.woken.load(Ordering::SeqCst);
        (polled, busy)
    }

    /// Starts the batches queued since the last call and polls the running
    /// ones. True when the execution must be polled again: a batch started
    /// (and may have finished) or finished, waking its resolvers.
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        let queued = self
            .tasks
            .queued
            .lock()
            .map(|mut queued| std::mem::take(&mut *queued))
            .unwrap_or_default();
        let started = !queued.is_empty();
        self.running.extend(queued);
        let mut finished = false;
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {
            finished = true;
        }
        started || finished
    }
}
