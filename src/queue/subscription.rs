//! The `queueStatus` subscription. Kept apart from the modules that import
//! `diesel_async::RunQueryDsl`, whose `execute` clashes with the macro's.
//!
//! A follower costs a watch receiver and one token row: the admission loop
//! reads the line once per tick, and every follower in the process works
//! out its own position from that one read.

use std::sync::Arc;

use async_graphql::{Context, Result, Subscription};
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

use super::graphql::QueueToken;
use super::model::TokenRow;
use super::runtime::{QueueRuntime, QueueSnapshot, SubscriberGuard, TokenView};
use super::service::TokenState;
use super::token::TokenClaims;
use crate::clock;
use crate::error::AppResult;
use crate::graphql::context::{AppContext, connection_bearer};

/// A state (or the error reading it) computed outside the resolver, by the
/// websocket fast path in `queue::live`, which the resolver answers once
/// instead of following.
pub struct PresetView(pub async_graphql::Result<TokenView>);

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
    ) -> Result<BoxStream<'static, Result<QueueToken>>> {
        if let Some(PresetView(view)) = ctx.data_opt::<PresetView>() {
            let answer = view.clone().map(QueueToken::from);
            return Ok(stream::once(std::future::ready(answer)).boxed());
        }
        let queue = Arc::clone(&ctx.app().queue);
        let bearer = if token.trim().is_empty() {
            connection_bearer(ctx)?
        } else {
            token
        };
        let claims = queue.verify(&bearer)?;
        Ok(Follower::new(queue, claims)
            .into_stream()
            .map(|view| view.map(QueueToken::from).map_err(Into::into))
            .boxed())
    }
}

/// Follows one token: its state now, then a new state whenever its
/// position or status changes, ending after the first ACTIVE or EXPIRED.
pub struct Follower {
    queue: Arc<QueueRuntime>,
    claims: TokenClaims,
    snapshots: watch::Receiver<QueueSnapshot>,
    /// The row and last position sent while the token waits.
    waiting: Option<(TokenRow, u64)>,
    finished: bool,
    _counted: SubscriberGuard,
}

impl Follower {
    pub fn new(queue: Arc<QueueRuntime>, claims: TokenClaims) -> Self {
        Self {
            snapshots: queue.snapshots(),
            _counted: queue.subscriber(),
            queue,
            claims,
            waiting: None,
            finished: false,
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = AppResult<TokenView>> + Send + 'static {
        stream::unfold(self, |mut follower| async move {
            let item = follower.next_view().await?;
            Some((item, follower))
        })
    }

    /// The first item is the state now; later ones come when the position
    /// or the status changes. `None` ends the stream.
    pub async fn next_view(&mut self) -> Option<AppResult<TokenView>> {
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
            // Only a newer cursor moves the position: a snapshot read before
            // the row this follower last read can be older than it.
            if self.claims.seq - cursor < position {
                let view = self.queue.to_view(row.clone(), cursor, clock::now());
                if let TokenState::Waiting { position } = view.state {
                    self.waiting = Some((row, position));
                }
                return Some(Ok(view));
            }
        }
    }

    /// Reads the token's state: at the start, and once when it leaves the line.
    async fn fresh_state(&mut self) -> AppResult<TokenView> {
        let view = self
            .queue
            .view(&self.claims)
            .await
            .inspect_err(|_| self.finished = true)?;
        match view.state {
            TokenState::Waiting { position } => self.waiting = Some((view.row.clone(), position)),
            TokenState::Active { .. } | TokenState::Expired { .. } => self.finished = true,
        }
        Ok(view)
    }
}
