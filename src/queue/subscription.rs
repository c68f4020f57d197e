//! The `queueStatus` subscription. Kept apart from the modules that import
//! `diesel_async::RunQueryDsl`, whose `execute` clashes with the macro's.
//!
//! A follower costs one token row and a wait on the line's cursor
//! (`queue::cursor`): the admission loop reads the line once per turn, and
//! wakes only the followers whose place moved enough to tell.

use std::sync::Arc;

use async_graphql::{Context, Result, Subscription};
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};

use super::graphql::QueueToken;
use super::model::TokenRow;
use super::runtime::{QueueRuntime, SubscriberGuard, TokenView};
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

/// Places that always hear every move (subject to the spacing below).
const FRONT_OF_LINE: u64 = 100;
/// Further back, a move is told at once (after the spacing) when it is at
/// least this share of the place last told...
const NOTICEABLE_PERCENT: u64 = 1;
/// ...and any smaller move this long after the last state.
const QUIET_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How far a follower last told place `told` must move before it is told
/// again without waiting for the quiet limit.
fn noticeable_step(told: u64) -> u64 {
    if told <= FRONT_OF_LINE {
        1
    } else {
        (told * NOTICEABLE_PERCENT).div_ceil(100)
    }
}

/// Follows one token: its state now, then a new state whenever its
/// position or status changes, ending after the first ACTIVE or EXPIRED.
///
/// Leaving the line is sent at once. A new position is sent at most once
/// per `ADMIT_INTERVAL_MS`, always the latest; past the first 100 places,
/// a move of less than 1% waits until 30 s after the last state. An
/// admission turn moves every subscriber, and turns come as often as
/// payments free slots: telling each of 100,000 people every step of the
/// line would spend the server on places nobody can tell apart, while the
/// fans at the front wait to buy.
pub struct Follower {
    queue: Arc<QueueRuntime>,
    claims: TokenClaims,
    /// The row, its sealed token and the last position sent while the
    /// token waits.
    waiting: Option<(TokenRow, String, u64)>,
    /// When the last state was sent.
    told_at: tokio::time::Instant,
    finished: bool,
    _counted: SubscriberGuard,
}

impl Follower {
    pub fn new(queue: Arc<QueueRuntime>, claims: TokenClaims) -> Self {
        Self {
            _counted: queue.subscriber(),
            queue,
            claims,
            waiting: None,
            told_at: tokio::time::Instant::now(),
            finished: false,
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = AppResult<TokenView>> + Send + 'static {
        stream::unfold(self, |mut follower| async move {
            let item = follower.next_view().await?;
            follower.told_at = tokio::time::Instant::now();
            Some((item, follower))
        })
    }

    /// The first item is the state now; later ones come when the position
    /// or the status changes. `None` ends the stream.
    pub async fn next_view(&mut self) -> Option<AppResult<TokenView>> {
        if self.finished {
            return None;
        }
        let Some((row, token, told)) = self.waiting.clone() else {
            return Some(self.fresh_state().await);
        };
        let cursor = self.wait_for_news(told).await;
        if cursor >= self.claims.seq {
            return Some(self.fresh_state().await);
        }
        Some(Ok(self.moved(row, token, cursor)))
    }

    /// Waits until there is something to tell a follower last told place
    /// `told`, and returns the line's cursor then: admitted (at once), a
    /// noticeable move (once the spacing has passed), or any move at all
    /// after the quiet limit.
    async fn wait_for_news(&self, told: u64) -> u64 {
        let queue = &self.queue;
        let seq = self.claims.seq;
        let spacing = queue.settings.admit_interval;
        // Admission moves the cursor past this threshold too: one wait
        // covers both while the follower waits.
        let mut noticeable = queue
            .cursor_waits
            .wait_for(seq.saturating_sub(told) + noticeable_step(told));
        let mut quiet_until = self.told_at + QUIET_LIMIT.max(spacing);
        loop {
            tokio::select! {
                () = noticeable.reached() => break,
                () = tokio::time::sleep_until(quiet_until) => {
                    if seq - self.cursor().min(seq) < told {
                        break;
                    }
                    quiet_until += QUIET_LIMIT;
                }
            }
        }
        drop(noticeable);
        if self.cursor() >= seq {
            return self.cursor();
        }
        // A move to tell once the spacing is over, unless admission comes first.
        let mut admitted = queue.cursor_waits.wait_for(seq);
        tokio::select! {
            () = admitted.reached() => {}
            () = tokio::time::sleep_until(self.told_at + spacing) => {}
        }
        self.cursor()
    }

    fn cursor(&self) -> u64 {
        self.queue.last_snapshot().counters.admitted_through_seq
    }

    /// The token's state with the line's cursor at `cursor`, remembered as
    /// the last position sent.
    fn moved(&mut self, row: TokenRow, token: String, cursor: u64) -> TokenView {
        let view = self
            .queue
            .view_with_token(row.clone(), cursor, clock::now(), token.clone());
        if let TokenState::Waiting { position } = view.state {
            self.waiting = Some((row, token, position));
        }
        view
    }

    /// Reads the token's state: at the start, and once when it leaves the line.
    async fn fresh_state(&mut self) -> AppResult<TokenView> {
        let view = self
            .queue
            .view(&self.claims)
            .await
            .inspect_err(|_| self.finished = true)?;
        match view.state {
            TokenState::Waiting { position } => {
                self.waiting = Some((view.row.clone(), view.token.clone(), position));
            }
            TokenState::Active { .. } | TokenState::Expired { .. } => self.finished = true,
        }
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::noticeable_step;

    #[test]
    fn the_front_hears_every_step_and_the_back_hears_one_percent() {
        assert_eq!(noticeable_step(1), 1);
        assert_eq!(noticeable_step(100), 1);
        assert_eq!(noticeable_step(101), 2, "1% of 101, rounded up");
        assert_eq!(noticeable_step(5_000), 50);
        assert_eq!(noticeable_step(100_000), 1_000);
        for told in [1, 2, 99, 100, 101, 12_345, 1_000_000] {
            assert!(noticeable_step(told) <= told, "a move never past the front");
        }
    }
}
