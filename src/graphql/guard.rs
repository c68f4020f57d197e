//! The queue token guard: the one place where catalogue, hold and payment
//! operations learn whether the bearer got through the line.

use async_graphql::{Context, Guard, Result};

use super::context::{AppContext, bearer_claims};
use crate::error::AppError;
use crate::queue::runtime::Admission;
use crate::queue::service::TokenState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requirement {
    /// The token must be ACTIVE now (read from its row).
    Active,
    /// The token must be out of the line (read from the line's counters
    /// alone). For `holdSeat` and `pay`, whose transactions begin with a
    /// conditional write on the token's row (ACTIVE, and this very token)
    /// and, when it matches nothing, answer UNAUTHENTICATED or TOKEN_EXPIRED
    /// themselves, after any more precise error (a retried payment, a hold
    /// already paid or lapsed).
    Admitted,
}

pub struct TokenGuard {
    requirement: Requirement,
    /// `pay`'s idempotency key: a retry of a payment the user already made
    /// is answered even when the bearer's token is a new one still in line.
    paid_with: Option<String>,
}

impl TokenGuard {
    pub fn active() -> Self {
        Self {
            requirement: Requirement::Active,
            paid_with: None,
        }
    }

    pub fn admitted() -> Self {
        Self {
            requirement: Requirement::Admitted,
            paid_with: None,
        }
    }

    pub fn paying(idempotency_key: Option<String>) -> Self {
        Self {
            requirement: Requirement::Admitted,
            paid_with: idempotency_key,
        }
    }

    async fn is_payment_retry(&self, ctx: &Context<'_>, user_id: uuid::Uuid) -> Result<bool> {
        Ok(match &self.paid_with {
            Some(key) => crate::booking::service::is_retry(&ctx.app().pool, user_id, key).await?,
            None => false,
        })
    }
}

impl Guard for TokenGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let claims = bearer_claims(ctx)?;
        let queue = &ctx.app().queue;
        match self.requirement {
            Requirement::Active => match queue.view(&claims).await?.state {
                TokenState::Waiting { position } => Err(AppError::NotAdmitted { position }.into()),
                TokenState::Active { .. } => Ok(()),
                TokenState::Expired { .. } => Err(AppError::TokenExpired.into()),
            },
            Requirement::Admitted => match queue.admission(&claims).await? {
                Admission::Waiting { .. } if self.is_payment_retry(ctx, claims.user_id).await? => {
                    Ok(())
                }
                Admission::Waiting { position } => Err(AppError::NotAdmitted { position }.into()),
                Admission::Admitted => Ok(()),
            },
        }
    }
}

/// Organizer operations: the bearer must be one of `ORGANIZER_KEYS`.
pub struct OrganizerGuard;

impl Guard for OrganizerGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        crate::accounts::organizers::check_organizer(
            &ctx.app().config.organizer_keys,
            super::context::bearer(ctx),
        )
        .map_err(Into::into)
    }
}
