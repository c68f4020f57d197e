//! `issueToken`, the `queueStatus` query and the `QueueToken` type.

use async_graphql::{Context, Name, Object, Result, ScalarType, SimpleObject, Value};
use uuid::Uuid;

use super::line::{self, LineChange};
use super::model::TokenStatus;
use super::runtime::TokenView;
use super::service::TokenState;
use crate::graphql::context::{AppContext, bearer_claims};
use crate::graphql::guard::OrganizerGuard;
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

/// A scalar field of `QueueToken`, named as the schema names it: what the
/// websocket fast path (`queue::live`) renders without running the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueTokenField {
    Typename,
    Token,
    UserId,
    Status,
    Position,
    EstimatedWaitSeconds,
    IssuedAt,
    ExpiresAt,
}

impl QueueTokenField {
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "__typename" => Self::Typename,
            "token" => Self::Token,
            "userId" => Self::UserId,
            "status" => Self::Status,
            "position" => Self::Position,
            "estimatedWaitSeconds" => Self::EstimatedWaitSeconds,
            "issuedAt" => Self::IssuedAt,
            "expiresAt" => Self::ExpiresAt,
            _ => return None,
        })
    }
}

impl QueueToken {
    /// The value the executor would answer for `field`.
    pub fn value_of(&self, field: QueueTokenField) -> Value {
        let count = |number: Option<u64>| number.map_or(Value::Null, Value::from);
        match field {
            QueueTokenField::Typename => Value::String("QueueToken".to_owned()),
            QueueTokenField::Token => Value::String(self.token.clone()),
            QueueTokenField::UserId => self.user_id.to_value(),
            QueueTokenField::Status => Value::Enum(Name::new(self.status.as_str())),
            QueueTokenField::Position => count(self.position),
            QueueTokenField::EstimatedWaitSeconds => count(self.estimated_wait_seconds),
            QueueTokenField::IssuedAt => self.issued_at.to_value(),
            QueueTokenField::ExpiresAt => self
                .expires_at
                .as_ref()
                .map_or(Value::Null, ScalarType::to_value),
        }
    }
}

/// The waiting line as it stands, for organizers.
#[derive(SimpleObject)]
pub struct LineState {
    /// Tokens WAITING now.
    waiting: u64,
    /// Tokens ACTIVE now.
    active: u64,
    max_active_tokens: u64,
    admit_interval_ms: u64,
    /// True while admission is paused.
    paused: bool,
    /// Tokens admitted in the last 60 seconds.
    admitted_last_minute: u64,
}

impl From<line::LineState> for LineState {
    fn from(state: line::LineState) -> Self {
        Self {
            waiting: state.waiting,
            active: state.active,
            max_active_tokens: state.max_active_tokens,
            admit_interval_ms: state.admit_interval_ms,
            paused: state.paused,
            admitted_last_minute: state.admitted_last_minute,
        }
    }
}

/// Saves an organizer's change and lets this server's admission turn
/// follow it at once; the other servers follow within their interval.
async fn change_line(ctx: &Context<'_>, change: LineChange) -> Result<LineState> {
    let app = ctx.app();
    let state = line::change_line(&app.line_pool, app.queue.settings, change).await?;
    app.queue.admission_wakeup.notify_one();
    Ok(state.into())
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

    /// Organizer: the waiting line as it stands.
    #[graphql(guard = "OrganizerGuard")]
    async fn line(&self, ctx: &Context<'_>) -> Result<LineState> {
        let app = ctx.app();
        Ok(line::line_state(&app.line_pool, app.queue.settings)
            .await?
            .into())
    }
}

#[derive(Default)]
pub struct QueueMutation;

#[Object]
impl QueueMutation {
    /// Puts the user in line, or returns the user's live (WAITING or ACTIVE) token unchanged.
    async fn issue_token(&self, ctx: &Context<'_>, user_id: Uuid) -> Result<QueueToken> {
        let app = ctx.app();
        let caller = crate::graphql::context::caller(ctx)?;
        // The subject is checked in the issue batch's own transaction: no
        // round trip of its own for a fan this process has not seen yet.
        let subject = app.accounts.subject_to_check(caller, user_id)?;
        let view = app.queue.issue(user_id, subject.clone()).await?;
        if let Some(subject) = subject {
            app.accounts.remember(subject, user_id);
        }
        Ok(view.into())
    }

    /// Organizer: new limits for the line, followed by every server within ADMIT_INTERVAL_MS; a null argument leaves that limit as it is.
    #[graphql(guard = "OrganizerGuard")]
    async fn set_line_limits(
        &self,
        ctx: &Context<'_>,
        max_active_tokens: Option<i32>,
        admit_interval_ms: Option<i32>,
    ) -> Result<LineState> {
        let change = LineChange {
            max_active_tokens,
            admit_interval_ms,
            paused: None,
        };
        change_line(ctx, change).await
    }

    /// Organizer: nobody is admitted until resumeAdmission; ACTIVE tokens stay ACTIVE.
    #[graphql(guard = "OrganizerGuard")]
    async fn pause_admission(&self, ctx: &Context<'_>) -> Result<LineState> {
        let change = LineChange {
            paused: Some(true),
            ..LineChange::default()
        };
        change_line(ctx, change).await
    }

    /// Organizer: admission goes on.
    #[graphql(guard = "OrganizerGuard")]
    async fn resume_admission(&self, ctx: &Context<'_>) -> Result<LineState> {
        let change = LineChange {
            paused: Some(false),
            ..LineChange::default()
        };
        change_line(ctx, change).await
    }
}
