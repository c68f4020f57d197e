//! The `queueStatus` subscription. Kept apart from the modules that import
//! `diesel_async::RunQueryDsl`, whose `execute` clashes with the macro's.
//!
//! A subscriber costs a watch receiver and one token row: the admission loop
//! reads the line once per tick, and every subscriber of the process works
//! out its own position from that one read.

use std::sync::Arc;

use async_graphql::{Context, Result, Subscription};
use futures_util::{Stream, stream};
use tokio::sync::watch;

use super::graphql::QueueToken;
use super::model::TokenRow;
use super::runtime::{QueueRuntime, QueueSnapshot, SubscriberGuard};
use super::service::TokenState;
use super::token::TokenClaims;
use crate::clock;
use crate::graphql::context::{AppContext, connection_bearer};

#[derive(Default)]
pub struct QueueSubscription;

#[Subscription]
impl QueueSubscription {
    /// The token's queue state now, then again at every change of status or position; ends after ACTIVE or EXPIRED is sent.
    async fn queue_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The bearer token; may be empty when the connection_init payload carries it."
        )]
        token: String,
    ) -> Result<impl Stream<Item = Result<QueueToken>> + use<>> {
        let queue = Arc::clone(&ctx.app().queue);
        let bearer = if token.trim().is_empty() {
            connection_bearer(ctx)?
        } else {
            token
        };
        let claims = queue.verify(&bearer)?;
        let follower = Follower {
            snapshots: queue.snapshots(),
            _counted: queue.subscriber(),
            queue,
            claims,
            waiting: None,
            finished: false,
        };
        Ok(stream::unfold(follower, |mut follower| async move {
            let item = follower.next_item().await?;
            Some((item, follower))
        }))
    }
}

struct Follower {
    queue: Arc<QueueRuntime>,
    claims: TokenClaims,
    snapshots: watch::Receiver<QueueSnapshot>,
    /// The row and last position sent while the token waits.
    waiting: Option<(TokenRow, u64)>,
    finished: bool,
    _counted: SubscriberGuard,
}

impl Follower {
    /// The first item is the state now; later ones come when the position
    /// or the status changes. `None` ends the stream.
    async fn next_item(&mut self) -> Option<Result<QueueToken>> {
        if self.finished {
            return None;
        }
        let Some((row, position)) = self.waiting.clone() else {
            return Some(self.fresh_state().await);
        };
        loop {
            self.snapshots.changed().await.ok()?;
            let cursor = self
                .snapshots
                .borrow_and_update()
                .counters
                .admitted_through_seq;
            if cursor >= self.claims.seq {
                return Some(self.fresh_state().await);
            }
            if self.claims.seq - cursor != position {
                let view = self.queue.to_view(row.clone(), cursor, clock::now());
                if let TokenState::Waiting { position } = view.state {
                    self.waiting = Some((row, position));
                }
                return Some(Ok(view.into()));
            }
        }
    }

    /// Reads the token's row: at the start, and once when it leaves the line.
    async fn fresh_state(&mut self) -> Result<QueueToken> {
        let view = self
            .queue
            .view(&self.claims)
            .await
            .inspect_err(|_| self.finished = true)?;
        match view.state {
            TokenState::Waiting { position } => self.waiting = Some((view.row.clone(), position)),
            TokenState::Active { .. } | TokenState::Expired { .. } => self.finished = true,
        }
        Ok(view.into())
    }
}
