//! `concerts`, `availableDates`, `availableSeats` and the catalogue types.
//! Nested fields go through the request's dataloader.

use async_graphql::{Context, ID, InputObject, Object, Result};

use super::loader::{ConcertDateKey, ConcertKey, DatesOfConcert, SeatCountsOfDate, SeatsOfDate};
use super::manage::{self, NewDate, SeatPrices};
use super::model::{ConcertDateRow, ConcertRow, SeatRow, SeatStatus};
use super::service;
use crate::graphql::context::{AppContext, load_list, load_required, shared_error};
use crate::graphql::guard::{OrganizerGuard, TokenGuard};
use crate::graphql::scalars::Instant;
use crate::money::Money;

pub struct Concert(pub ConcertRow);
pub struct ConcertDate(pub ConcertDateRow);
pub struct Seat(pub SeatRow);

#[Object]
impl Concert {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn venue(&self) -> &str {
        &self.0.venue
    }

    /// Every date of the concert, earliest first.
    #[graphql(complexity = "crate::graphql::other_list_cost(child_complexity)")]
    async fn dates(&self, ctx: &Context<'_>) -> Result<Vec<ConcertDate>> {
        load_list(
            ctx.scope().catalogue(),
            DatesOfConcert(self.0.id),
            ConcertDate,
        )
        .await
    }
}

#[Object]
impl ConcertDate {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn concert(&self, ctx: &Context<'_>) -> Result<Concert> {
        load_required(
            ctx.scope().catalogue(),
            ConcertKey(self.0.concert_id),
            Concert,
        )
        .await
    }

    async fn starts_at(&self) -> Instant {
        self.0.starts_at.into()
    }

    /// When holds may begin.
    async fn sales_open_at(&self) -> Instant {
        self.0.sales_open_at.into()
    }

    /// Set once an organizer cancelled the date.
    async fn cancelled_at(&self) -> Option<Instant> {
        self.0.cancelled_at.map(Into::into)
    }

    async fn total_seats(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(self.seat_counts(ctx).await?.total)
    }

    /// Seats that can be held right now.
    async fn available_seats(&self, ctx: &Context<'_>) -> Result<i64> {
        let now = ctx.scope().now;
        let date = &self.0;
        if date.starts_at <= now || date.sales_open_at > now || date.cancelled_at.is_some() {
            return Ok(0);
        }
        Ok(self.seat_counts(ctx).await?.holdable)
    }

    /// All seats of the date, by number.
    #[graphql(complexity = "crate::graphql::seats_cost(child_complexity)")]
    async fn seats(&self, ctx: &Context<'_>) -> Result<Vec<Seat>> {
        load_list(ctx.scope().catalogue(), SeatsOfDate(self.0.id), Seat).await
    }
}

impl ConcertDate {
    async fn seat_counts(&self, ctx: &Context<'_>) -> Result<super::loader::SeatCounts> {
        let counts = ctx
            .scope()
            .catalogue()
            .load_one(SeatCountsOfDate(self.0.id))
            .await
            .map_err(shared_error)?;
        Ok(counts.unwrap_or_default())
    }
}

#[Object]
impl Seat {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// 1 to 50.
    async fn number(&self) -> i32 {
        self.0.number
    }

    async fn price(&self) -> Money {
        self.0.price.clone().into()
    }

    async fn status(&self, ctx: &Context<'_>) -> SeatStatus {
        self.0.status_at(ctx.scope().now)
    }

    async fn concert_date(&self, ctx: &Context<'_>) -> Result<ConcertDate> {
        let date = ConcertDateKey(self.0.concert_date_id);
        load_required(ctx.scope().catalogue(), date, ConcertDate).await
    }
}

#[derive(Default)]
pub struct CatalogueQuery;

#[Object]
impl CatalogueQuery {
    /// Concerts on sale. Needs an ACTIVE token.
    #[graphql(
        guard = "TokenGuard::active()",
        complexity = "crate::graphql::other_list_cost(child_complexity)"
    )]
    async fn concerts(&self, ctx: &Context<'_>) -> Result<Vec<Concert>> {
        let scope = ctx.scope();
        let rows = service::concerts_on_sale(&ctx.app().pool, scope.now).await?;
        Ok(rows.into_iter().map(Concert).collect())
    }

    /// Dates of a concert that start in the future and have at least one seat that can be held now, earliest first. Needs an ACTIVE token.
    #[graphql(
        guard = "TokenGuard::active()",
        complexity = "crate::graphql::other_list_cost(child_complexity)"
    )]
    async fn available_dates(&self, ctx: &Context<'_>, concert_id: ID) -> Result<Vec<ConcertDate>> {
        let concert_id = service::parse_id(&concert_id, "concertId")?;
        let rows = service::available_dates(&ctx.app().pool, concert_id, ctx.scope().now).await?;
        Ok(rows.into_iter().map(ConcertDate).collect())
    }

    /// Seats of a date that can be held now, by number. Needs an ACTIVE token.
    #[graphql(
        guard = "TokenGuard::active()",
        complexity = "crate::graphql::seats_cost(child_complexity)"
    )]
    async fn available_seats(&self, ctx: &Context<'_>, concert_date_id: ID) -> Result<Vec<Seat>> {
        let date_id = service::parse_id(&concert_date_id, "concertDateId")?;
        let rows = service::available_seats(&ctx.app().pool, date_id, ctx.scope().now).await?;
        Ok(rows.into_iter().map(Seat).collect())
    }
}

/// Seats fromSeat to toSeat (both included) of a new date, at one price.
#[derive(InputObject)]
pub struct SeatPricesInput {
    from_seat: i32,
    to_seat: i32,
    price: Money,
}

#[derive(InputObject)]
pub struct NewConcertInput {
    name: String,
    venue: String,
}

#[derive(InputObject)]
pub struct NewConcertDateInput {
    starts_at: Instant,
    /// When holds may begin; null: at once. Must be before startsAt.
    sales_open_at: Option<Instant>,
    /// Ranges that together cover seats 1 to 50, each seat exactly once.
    prices: Vec<SeatPricesInput>,
}

impl From<NewConcertDateInput> for NewDate {
    fn from(input: NewConcertDateInput) -> Self {
        Self {
            starts_at: input.starts_at.0.naive_utc(),
            sales_open_at: input.sales_open_at.map(|at| at.0.naive_utc()),
            prices: input
                .prices
                .into_iter()
                .map(|range| SeatPrices {
                    from_seat: range.from_seat,
                    to_seat: range.to_seat,
                    price: range.price,
                })
                .collect(),
        }
    }
}

#[derive(Default)]
pub struct CatalogueMutation;

#[Object]
impl CatalogueMutation {
    /// Organizer: a new concert, with no dates yet.
    #[graphql(guard = "OrganizerGuard")]
    async fn create_concert(&self, ctx: &Context<'_>, input: NewConcertInput) -> Result<Concert> {
        let now = ctx.scope().now;
        let row = manage::create_concert(&ctx.app().pool, &input.name, &input.venue, now).await?;
        Ok(Concert(row))
    }

    /// Organizer: a new date of a concert, seats 1 to 50 priced by the ranges.
    #[graphql(guard = "OrganizerGuard")]
    async fn add_concert_date(
        &self,
        ctx: &Context<'_>,
        concert_id: ID,
        input: NewConcertDateInput,
    ) -> Result<ConcertDate> {
        let concert_id = service::parse_id(&concert_id, "concertId")?;
        let now = ctx.scope().now;
        let row = manage::add_date(&ctx.app().pool, concert_id, input.into(), now).await?;
        Ok(ConcertDate(row))
    }
}
