//! Concerts, their dates and seats: rows and queries.

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::dsl::{And, Eq, Le, Or, case_when, count, count_star, exists};
use diesel::prelude::*;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use crate::db::DbUuid;
use crate::db::schema::{catalogue_seeds, concert_dates, concerts, seats};
use crate::text_enum;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, diesel::AsExpression, diesel::FromSqlRow, async_graphql::Enum,
)]
#[diesel(sql_type = diesel::sql_types::Varchar)]
#[graphql(name = "SeatStatus")]
pub enum SeatStatus {
    Available,
    /// Held for someone until their hold lapses.
    Held,
    Sold,
    /// Its date was cancelled: never on sale again.
    Cancelled,
}

text_enum!(SeatStatus {
    Available = "AVAILABLE",
    Held = "HELD",
    Sold = "SOLD",
    Cancelled = "CANCELLED",
});

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = concerts, check_for_backend(diesel::mysql::Mysql))]
pub struct ConcertRow {
    pub id: u64,
    pub name: String,
    pub venue: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = concert_dates, check_for_backend(diesel::mysql::Mysql))]
pub struct ConcertDateRow {
    pub id: u64,
    pub concert_id: u64,
    pub starts_at: NaiveDateTime,
    pub sales_open_at: NaiveDateTime,
    pub cancelled_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = seats, check_for_backend(diesel::mysql::Mysql))]
pub struct SeatRow {
    pub id: u64,
    pub concert_date_id: u64,
    pub number: i32,
    pub price: BigDecimal,
    pub status: SeatStatus,
    pub held_by_reservation_id: Option<DbUuid>,
    pub held_until: Option<NaiveDateTime>,
}

impl SeatRow {
    /// What the seat is now: a hold whose lapse has passed is gone.
    pub fn status_at(&self, now: NaiveDateTime) -> SeatStatus {
        match (self.status, self.held_until) {
            (SeatStatus::Held, Some(until)) if until <= now => SeatStatus::Available,
            (status, _) => status,
        }
    }
}

type HoldableNow = Or<
    Eq<seats::status, SeatStatus>,
    And<Eq<seats::status, SeatStatus>, Le<seats::held_until, NaiveDateTime>>,
>;

/// Seats that can be held at `now`: AVAILABLE, or HELD under a lapsed hold.
pub fn holdable_at(now: NaiveDateTime) -> HoldableNow {
    seats::status.eq(SeatStatus::Available).or(seats::status
        .eq(SeatStatus::Held)
        .and(seats::held_until.le(now)))
}

/// Concerts with at least one date that has not begun, by id.
pub async fn concerts_on_sale(
    conn: &mut AsyncMysqlConnection,
    now: NaiveDateTime,
) -> QueryResult<Vec<ConcertRow>> {
    concerts::table
        .filter(exists(
            concert_dates::table
                .filter(concert_dates::concert_id.eq(concerts::id))
                .filter(concert_dates::starts_at.gt(now)),
        ))
        .order(concerts::id)
        .select(ConcertRow::as_select())
        .load(conn)
        .await
}

pub async fn concert_exists(conn: &mut AsyncMysqlConnection, id: u64) -> QueryResult<bool> {
    diesel::select(exists(concerts::table.find(id)))
        .get_result(conn)
        .await
}

pub async fn find_date(
    conn: &mut AsyncMysqlConnection,
    id: u64,
) -> QueryResult<Option<ConcertDateRow>> {
    concert_dates::table
        .find(id)
        .select(ConcertDateRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Dates of a concert that have not begun and have a seat to hold, earliest first.
pub async fn available_dates(
    conn: &mut AsyncMysqlConnection,
    concert_id: u64,
    now: NaiveDateTime,
) -> QueryResult<Vec<ConcertDateRow>> {
    concert_dates::table
        .filter(concert_dates::concert_id.eq(concert_id))
        .filter(concert_dates::starts_at.gt(now))
        .filter(concert_dates::sales_open_at.le(now))
        .filter(concert_dates::cancelled_at.is_null())
        .filter(exists(
            seats::table
                .filter(seats::concert_date_id.eq(concert_dates::id))
                .filter(holdable_at(now)),
        ))
        .order((concert_dates::starts_at, concert_dates::id))
        .select(ConcertDateRow::as_select())
        .load(conn)
        .await
}

/// Seats of a date that can be held now, by number.
pub async fn available_seats(
    conn: &mut AsyncMysqlConnection,
    concert_date_id: u64,
    now: NaiveDateTime,
) -> QueryResult<Vec<SeatRow>> {
    seats::table
        .filter(seats::concert_date_id.eq(concert_date_id))
        .filter(holdable_at(now))
        .order(seats::number)
        .select(SeatRow::as_select())
        .load(conn)
        .await
}

pub async fn concerts_by_ids(
    conn: &mut AsyncMysqlConnection,
    ids: &[u64],
) -> QueryResult<Vec<ConcertRow>> {
    concerts::table
        .filter(concerts::id.eq_any(ids))
        .select(ConcertRow::as_select())
        .load(conn)
        .await
}

pub async fn dates_by_ids(
    conn: &mut AsyncMysqlConnection,
    ids: &[u64],
) -> QueryResult<Vec<ConcertDateRow>> {
    concert_dates::table
        .filter(concert_dates::id.eq_any(ids))
        .select(ConcertDateRow::as_select())
        .load(conn)
        .await
}

/// Every date of these concerts, earliest first.
pub async fn dates_of_concerts(
    conn: &mut AsyncMysqlConnection,
    concert_ids: &[u64],
) -> QueryResult<Vec<ConcertDateRow>> {
    concert_dates::table
        .filter(concert_dates::concert_id.eq_any(concert_ids))
        .order((concert_dates::starts_at, concert_dates::id))
        .select(ConcertDateRow::as_select())
        .load(conn)
        .await
}

pub async fn seats_by_ids(
    conn: &mut AsyncMysqlConnection,
    ids: &[u64],
) -> QueryResult<Vec<SeatRow>> {
    seats::table
        .filter(seats::id.eq_any(ids))
        .select(SeatRow::as_select())
        .load(conn)
        .await
}

/// Every seat of these dates, by number.
pub async fn seats_of_dates(
    conn: &mut AsyncMysqlConnection,
    date_ids: &[u64],
) -> QueryResult<Vec<SeatRow>> {
    seats::table
        .filter(seats::concert_date_id.eq_any(date_ids))
        .order((seats::concert_date_id, seats::number))
        .select(SeatRow::as_select())
        .load(conn)
        .await
}

/// (date, seats in all, seats holdable now) for each of these dates.
pub async fn seat_counts_of_dates(
    conn: &mut AsyncMysqlConnection,
    date_ids: &[u64],
    now: NaiveDateTime,
) -> QueryResult<Vec<(u64, i64, i64)>> {
    seats::table
        .filter(seats::concert_date_id.eq_any(date_ids))
        .group_by(seats::concert_date_id)
        .select((
            seats::concert_date_id,
            count_star(),
            count(case_when(holdable_at(now), seats::id)),
        ))
        .load(conn)
        .await
}

pub async fn insert_concert(
    conn: &mut AsyncMysqlConnection,
    name: &str,
    venue: &str,
    now: NaiveDateTime,
) -> QueryResult<u64> {
    diesel::insert_into(concerts::table)
        .values((
            concerts::name.eq(name),
            concerts::venue.eq(venue),
            concerts::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    last_insert_id(conn).await
}

/// Adds a date and its seats, `prices[n - 1]` being seat n's.
pub async fn insert_date(
    conn: &mut AsyncMysqlConnection,
    concert_id: u64,
    starts_at: NaiveDateTime,
    sales_open_at: NaiveDateTime,
    prices: &[BigDecimal],
) -> QueryResult<u64> {
    diesel::insert_into(concert_dates::table)
        .values((
            concert_dates::concert_id.eq(concert_id),
            concert_dates::starts_at.eq(starts_at),
            concert_dates::sales_open_at.eq(sales_open_at),
        ))
        .execute(conn)
        .await?;
    let date_id = last_insert_id(conn).await?;
    let rows: Vec<_> = (1..)
        .zip(prices)
        .map(|(number, price)| {
            (
                seats::concert_date_id.eq(date_id),
                seats::number.eq(number),
                seats::price.eq(price),
            )
        })
        .collect();
    diesel::insert_into(seats::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(date_id)
}

/// Writes the row of the catalogue seed `name`; false when it is there
/// already (`INSERT IGNORE`: a duplicate is no error, so nothing of the
/// caller's transaction is left to an error's handling).
pub async fn claim_seed(
    conn: &mut AsyncMysqlConnection,
    name: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let written = diesel::insert_or_ignore_into(catalogue_seeds::table)
        .values((
            catalogue_seeds::name.eq(name),
            catalogue_seeds::seeded_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(written == 1)
}

pub async fn last_insert_id(conn: &mut AsyncMysqlConnection) -> QueryResult<u64> {
    diesel::select(diesel::dsl::sql::<
        diesel::sql_types::Unsigned<diesel::sql_types::BigInt>,
    >("LAST_INSERT_ID()"))
    .get_result(conn)
    .await
}

/// Locks a date's row: cancellations of one date take turns on it.
pub async fn lock_date(
    conn: &mut AsyncMysqlConnection,
    id: u64,
) -> QueryResult<Option<ConcertDateRow>> {
    concert_dates::table
        .find(id)
        .select(ConcertDateRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn mark_cancelled(
    conn: &mut AsyncMysqlConnection,
    id: u64,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(concert_dates::table.find(id))
        .set(concert_dates::cancelled_at.eq(Some(now)))
        .execute(conn)
        .await
}

/// Takes every seat of the date off sale for good. Each seat's row lock is
/// the one a hold's conditional write needs, so a hold either committed
/// before this (and its reservation is then ended with the rest) or finds
/// the seat CANCELLED.
pub async fn cancel_seats(conn: &mut AsyncMysqlConnection, date_id: u64) -> QueryResult<usize> {
    diesel::update(seats::table.filter(seats::concert_date_id.eq(date_id)))
        .set((
            seats::status.eq(SeatStatus::Cancelled),
            seats::held_by_reservation_id.eq(None::<DbUuid>),
            seats::held_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
        .await
}

/// The concert of this name and venue, if there is one (the oldest).
pub async fn find_concert(
    conn: &mut AsyncMysqlConnection,
    name: &str,
    venue: &str,
) -> QueryResult<Option<u64>> {
    concerts::table
        .filter(concerts::name.eq(name))
        .filter(concerts::venue.eq(venue))
        .order(concerts::id)
        .select(concerts::id)
        .first(conn)
        .await
        .optional()
}

pub async fn date_exists(
    conn: &mut AsyncMysqlConnection,
    concert_id: u64,
    starts_at: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::select(exists(
        concert_dates::table
            .filter(concert_dates::concert_id.eq(concert_id))
            .filter(concert_dates::starts_at.eq(starts_at)),
    ))
    .get_result(conn)
    .await
}
