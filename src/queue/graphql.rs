//! `issueToken`, the `queueStatus` query and the `QueueToken` type.

use async_graphql::{Context, Object, Result, SimpleObject};
use uuid::Uuid;

use super::model::TokenStatus;
use super::runtime::TokenView;
use super::service::TokenState;
use crate::graphql::context::{AppContext, bearer_claims};
use crate::graphql::scalars::Instant;

/// A place in the waiting line.
#[derive(SimpleObject)]
pub struct QueueToken {
    /// The opaque bearer token; send it as 'Authorization: Bearer <token>'.
    token: String,
    user_id: Uuid,
    status: TokenStatus,
    /// 1 for the first user in line; null unless WAITING.
    position: Option<u64>,
    /// Estimated seconds until admission; null unless WAITING.
    estimated_wait_seconds: Option<u64>,
    issued_at: Instant,
    /// When an ACTIVE token lapses; null while WAITING.
    expires_at: Option<Instant>,
}

impl From<TokenView> for QueueToken {
    fn from(view: TokenView) -> Self {
        let (position, expires_at) = match view.state {
            TokenState::Waiting { position } => (Some(position), None),
            TokenState::Active { expires_at } => (None, Some(expires_at)),
            TokenState::Expired { at } => (None, at),
        };
        Self {
            token: view.token,
            user_id: view.row.user_id.0,
            status: view.state.status(),
            position,
            estimated_wait_seconds: view.estimated_wait_seconds,
            issued_at: view.row.issued_at.into(),
            expires_at: expires_at.map(Into::into),
        }
    }
}

#[derive(Default)]
pub struct QueueQuery;

#[Object]
impl QueueQuery {
    /// The queue state of the bearer token, for polling; answers for WAITING, ACTIVE and EXPIRED tokens.
    async fn queue_status(&self, ctx: &Context<'_>) -> Result<QueueToken> {
        let queue = &ctx.app().queue;
        let claims = bearer_claims(ctx)?;
        Ok(queue.view(&claims).await?.into())
    }
}

#[derive(Default)]
pub struct QueueMutation;

#[Object]
impl QueueMutation {
    /// Puts the user in line, or returns the user's live (WAITING or ACTIVE) token unchanged.
    async fn issue_token(&self, ctx: &Context<'_>, user_id: Uuid) -> Result<QueueToken> {
        let app = ctx.app();
        app.accounts
            .authorize(&app.pool, crate::graphql::context::caller(ctx)?, user_id)
            .await?;
        Ok(app.queue.issue(user_id).await?.into())
    }
}
