//! The queue token guard: the one place where catalogue, hold and payment
//! operations learn whether the bearer got through the line.

use async_graphql::{Context, Guard, Result};

use super::context::{AppContext, bearer_claims};
use crate::error::AppError;
use crate::queue::service::TokenState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requirement {
    /// The token must be ACTIVE now.
    Active,
    /// The token must have been admitted; an EXPIRED one passes so that the
    /// operation can answer a retry or a more precise error itself (`pay`
    /// re-checks ACTIVE inside its transaction).
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
        let view = ctx.app().queue.view(&claims).await?;
        match (view.state, self.0) {
            (TokenState::Waiting { position }, _) => Err(AppError::NotAdmitted { position }.into()),
            (TokenState::Active { .. }, _)
            | (TokenState::Expired { .. }, Requirement::Admitted) => Ok(()),
            (TokenState::Expired { .. }, Requirement::Active) => Err(AppError::TokenExpired.into()),
        }
    }
}
