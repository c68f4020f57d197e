//! `user`, `registerUser`, `chargeBalance` and the `User` type, whose
//! history, reservations and payments come through dataloaders.

use async_graphql::{Context, ID, Object, Result};
use uuid::Uuid;

use super::loader::{EntriesOfUser, UserKey};
use super::model::{BalanceEntryRow, EntryKind, UserRow};
use super::service;
use crate::booking::graphql::{Payment, Reservation};
use crate::booking::loader::{PaymentsOfUser, ReservationsOfUser};
use crate::graphql::context::{AppContext, caller, load_list, load_optional};
use crate::graphql::paging::Page;
use crate::graphql::scalars::Instant;
use crate::money::Money;

pub struct User(pub UserRow);

#[Object]
impl User {
    /// The user's identifier; it is also the user's credential, so it is unguessable.
    async fn id(&self) -> Uuid {
        self.0.id.0
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn balance(&self) -> Money {
        self.0.balance.clone().into()
    }

    /// Newest first: at most `first` entries (1 to 100; 50 when omitted), those older than the entry whose id is `after`. The newest entry's balanceAfter equals balance.
    #[graphql(complexity = "crate::graphql::paging::cost(first, child_complexity)")]
    async fn balance_history(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<ID>,
    ) -> Result<Vec<BalanceEntry>> {
        let page = Page::new(first, after.as_ref().map(|id| id.as_str()), |id| {
            id.parse().ok()
        })?;
        let key = EntriesOfUser {
            user: self.0.id.0,
            page,
        };
        load_list(ctx.scope().wallet(), key, BalanceEntry).await
    }

    /// Newest first: at most `first` (1 to 100; 50 when omitted), those older than the reservation whose id is `after`.
    #[graphql(complexity = "crate::graphql::paging::cost(first, child_complexity)")]
    async fn reservations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<ID>,
    ) -> Result<Vec<Reservation>> {
        let page = Page::new(first, after.as_ref().map(|id| id.as_str()), |id| {
            id.parse().ok()
        })?;
        let key = ReservationsOfUser {
            user: self.0.id.0,
            page,
        };
        load_list(ctx.scope().booking(), key, Reservation).await
    }

    /// Newest first: at most `first` (1 to 100; 50 when omitted), those older than the payment whose id is `after`.
    #[graphql(complexity = "crate::graphql::paging::cost(first, child_complexity)")]
    async fn payments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<ID>,
    ) -> Result<Vec<Payment>> {
        let page = Page::new(first, after.as_ref().map(|id| id.as_str()), |id| {
            id.parse().ok()
        })?;
        let key = PaymentsOfUser {
            user: self.0.id.0,
            page,
        };
        load_list(ctx.scope().booking(), key, Payment).await
    }
}

pub struct BalanceEntry(pub BalanceEntryRow);

#[Object]
impl BalanceEntry {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn kind(&self) -> EntryKind {
        self.0.kind
    }

    /// Positive for CHARGE, negative for PAYMENT.
    async fn amount(&self) -> Money {
        self.0.amount.clone().into()
    }

    async fn balance_after(&self) -> Money {
        self.0.balance_after.clone().into()
    }

    async fn at(&self) -> Instant {
        self.0.at.into()
    }
}

#[derive(Default)]
pub struct WalletQuery;

#[Object]
impl WalletQuery {
    /// A user by id; null if there is none. With AUTH_MODE=jwt only the caller's own (another id is FORBIDDEN).
    #[graphql(complexity = "crate::graphql::lookup_cost(child_complexity)")]
    async fn user(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<User>> {
        let app = ctx.app();
        app.accounts.authorize(&app.pool, caller(ctx)?, id).await?;
        load_optional(ctx.scope().wallet(), UserKey(id), User).await
    }

    /// The caller's own user. With AUTH_MODE=jwt: the user of the JWT's subject, null before its registerUser. With AUTH_MODE=open: always null.
    #[graphql(complexity = "crate::graphql::lookup_cost(child_complexity)")]
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let app = ctx.app();
        let Some(subject) = caller(ctx)? else {
            return Ok(None);
        };
        let Some(id) = app.accounts.user_of(&app.pool, subject).await? else {
            return Ok(None);
        };
        load_optional(ctx.scope().wallet(), UserKey(id), User).await
    }
}

#[derive(Default)]
pub struct WalletMutation;

#[Object]
impl WalletMutation {
    /// Creates a user with a zero balance. With AUTH_MODE=jwt: the user of the JWT's subject, made now or, if it exists, answered unchanged.
    async fn register_user(&self, ctx: &Context<'_>, name: String) -> Result<User> {
        let app = ctx.app();
        let now = ctx.scope().now;
        let Some(subject) = caller(ctx)? else {
            return Ok(User(service::register(&app.pool, &name, now).await?));
        };
        let user = service::register_subject(&app.pool, &name, now, subject.clone()).await?;
        app.accounts.remember(subject, user.id.0);
        Ok(User(user))
    }

    /// Adds amount to the balance. A repeated idempotencyKey of the same user charges nothing again and answers with the user as it is now.
    async fn charge_balance(
        &self,
        ctx: &Context<'_>,
        user_id: Uuid,
        amount: Money,
        idempotency_key: Option<String>,
    ) -> Result<User> {
        let app = ctx.app();
        app.accounts
            .authorize(&app.pool, caller(ctx)?, user_id)
            .await?;
        let user = service::charge(&app.pool, user_id, amount, idempotency_key).await?;
        Ok(User(user))
    }
}
