//! `holdSeat`, `pay`, and the `Reservation` and `Payment` types.

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::loader::{PaymentKey, ReservationsOfPayment};
use super::model::{PaymentRow, ReservationRow, ReservationStatus};
use super::service;
use crate::catalogue::graphql::{ConcertDate, Seat};
use crate::catalogue::loader::SeatKey;
use crate::graphql::context::{AppContext, bearer_claims, load_list, load_required, shared_error};
use crate::graphql::guard::{OrganizerGuard, TokenGuard};
use crate::graphql::scalars::Instant;
use crate::money::Money;
use crate::wallet::service::valid_key;

pub struct Reservation(pub ReservationRow);

#[Object]
impl Reservation {
    async fn id(&self) -> ID {
        ID(self.0.id.0.to_string())
    }

    async fn seat(&self, ctx: &Context<'_>) -> Result<Seat> {
        load_required(ctx.scope().catalogue(), SeatKey(self.0.seat_id), Seat).await
    }

    async fn status(&self, ctx: &Context<'_>) -> ReservationStatus {
        self.0.status_at(ctx.scope().now)
    }

    async fn price(&self) -> Money {
        self.0.price.clone().into()
    }

    async fn created_at(&self) -> Instant {
        self.0.created_at.into()
    }

    async fn held_until(&self) -> Instant {
        self.0.held_until.into()
    }

    /// Set once PAID.
    async fn payment(&self, ctx: &Context<'_>) -> Result<Option<Payment>> {
        let Some(payment) = self.0.payment_id else {
            return Ok(None);
        };
        let row = ctx
            .scope()
            .booking()
            .load_one(PaymentKey(payment.0))
            .await
            .map_err(shared_error)?;
        Ok(row.map(Payment))
    }
}

pub struct Payment(pub PaymentRow);

#[Object]
impl Payment {
    async fn id(&self) -> ID {
        ID(self.0.id.0.to_string())
    }

    async fn amount(&self) -> Money {
        self.0.amount.clone().into()
    }

    async fn paid_at(&self) -> Instant {
        self.0.paid_at.into()
    }

    #[graphql(complexity = "crate::graphql::other_list_cost(child_complexity)")]
    async fn reservations(&self, ctx: &Context<'_>) -> Result<Vec<Reservation>> {
        load_list(
            ctx.scope().booking(),
            ReservationsOfPayment(self.0.id.0),
            Reservation,
        )
        .await
    }
}

/// One date's sales as they stand.
#[derive(SimpleObject)]
pub struct SalesReport {
    concert_date: ConcertDate,
    seats_sold: i64,
    seats_held: i64,
    seats_available: i64,
    /// The sum of the prices of the date's PAID reservations.
    revenue: Money,
}

#[derive(Default)]
pub struct BookingQuery;

#[Object]
impl BookingQuery {
    /// Organizer: one date's sales as they stand.
    #[graphql(guard = "OrganizerGuard")]
    async fn sales_report(&self, ctx: &Context<'_>, concert_date_id: ID) -> Result<SalesReport> {
        let date_id = crate::catalogue::service::parse_id(&concert_date_id, "concertDateId")?;
        let figures = service::sales_report(&ctx.app().pool, date_id, ctx.scope().now).await?;
        Ok(SalesReport {
            concert_date: ConcertDate(figures.date),
            seats_sold: figures.seats_sold,
            seats_held: figures.seats_held,
            seats_available: figures.seats_available,
            revenue: figures.revenue,
        })
    }
}

#[derive(Default)]
pub struct BookingMutation;

#[Object]
impl BookingMutation {
    /// Holds a seat for the bearer's user for the hold time. Needs an ACTIVE token.
    #[graphql(guard = "TokenGuard::admitted()")]
    async fn hold_seat(
        &self,
        ctx: &Context<'_>,
        concert_date_id: ID,
        seat_number: i32,
    ) -> Result<Reservation> {
        let token = bearer_claims(ctx)?;
        let date_id = crate::catalogue::service::parse_id(&concert_date_id, "concertDateId")?;
        let app = ctx.app();
        let reservation = app
            .holds
            .hold_seat(&app.pool, &app.seats, &token, date_id, seat_number)
            .await?;
        Ok(Reservation(reservation))
    }

    /// Pays for held reservations of the bearer's user in one payment, then expires the token. Needs an ACTIVE token, except for a retry with an idempotencyKey already used by the same user, which answers with the first payment.
    #[graphql(guard = "TokenGuard::paying(idempotency_key.clone())")]
    async fn pay(
        &self,
        ctx: &Context<'_>,
        reservation_ids: Vec<ID>,
        idempotency_key: Option<String>,
    ) -> Result<Payment> {
        let token = bearer_claims(ctx)?;
        let ids: Vec<String> = reservation_ids.into_iter().map(|id| id.0).collect();
        let ids = service::parse_reservation_ids(&ids)?;
        let key = valid_key(idempotency_key)?;
        let app = ctx.app();
        let payment = service::pay(&app.pool, &token, ids, key).await?;
        // A slot is free now: let the next in line in without waiting a tick.
        app.queue.admission_wakeup.notify_one();
        Ok(Payment(payment))
    }

    /// The bearer's own HELD reservation becomes RELEASED at once and its seat is back on sale; the token stays ACTIVE. Needs an ACTIVE token.
    #[graphql(guard = "TokenGuard::active()")]
    async fn release_hold(&self, ctx: &Context<'_>, reservation_id: ID) -> Result<Reservation> {
        let token = bearer_claims(ctx)?;
        let id = service::parse_reservation_ids(&[reservation_id.0])?
            .into_iter()
            .next()
            .ok_or_else(|| crate::error::AppError::invalid("reservationId is missing"))?;
        let app = ctx.app();
        let released =
            service::release_hold(&app.pool, &token, id, app.queue.settings.active_ttl).await?;
        Ok(Reservation(released))
    }

    /// Organizer: no more holds on the date; its HELD reservations become RELEASED and its PAID ones REFUNDED to their users' balances, in one transaction.
    #[graphql(guard = "OrganizerGuard")]
    async fn cancel_concert_date(
        &self,
        ctx: &Context<'_>,
        concert_date_id: ID,
    ) -> Result<ConcertDate> {
        let date_id = crate::catalogue::service::parse_id(&concert_date_id, "concertDateId")?;
        let app = ctx.app();
        let date = service::cancel_date(&app.pool, date_id, app.queue.settings.active_ttl).await?;
        Ok(ConcertDate(date))
    }
}
