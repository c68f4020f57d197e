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

pub struct TokenGuard(Requirement);

impl TokenGuard {
    pub fn active() -> Self {
        Self(Requirement::Active)
    }

    pub fn admitted() -> Self {
        Self(Requirement::Admitted)
    }
}

impl Guard for TokenGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let claims = bearer_claims(ctx)?;
        let queue = &ctx.app().queue;
        match self.0 {
            Requirement::Active => match queue.view(&claims).await?.state {
                TokenState::Waiting { position } => Err(AppError::NotAdmitted { position }.into()),
                TokenState::Active { .. } => Ok(()),
                TokenState::Expired { .. } => Err(AppError::TokenExpired.into()),
            },
            Requirement::Admitted => match queue.admission(&claims).await? {
                Admission::Waiting { position } => Err(AppError::NotAdmitted { position }.into()),
                Admission::Admitted => Ok(()),
            },
        }
    }
}
