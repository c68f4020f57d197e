//! Reservations and payments, and the booking writes to seats: rows and
//! queries, run in the caller's transaction.

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use uuid::Uuid;

use crate::catalogue::model::{SeatStatus, holdable_at};
use crate::db::schema::{payments, reservations, seats};
use crate::db::{DbUuid, Prepared, padded};
use crate::graphql::paging::Page;
use crate::text_enum;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, diesel::AsExpression, diesel::FromSqlRow, async_graphql::Enum,
)]
#[diesel(sql_type = diesel::sql_types::Varchar)]
#[graphql(name = "ReservationStatus")]
pub enum ReservationStatus {
    /// The seat is held for this user until heldUntil.
    Held,
    Paid,
    /// The hold lapsed unpaid; the seat went back on sale.
    Expired,
    /// The holder let the hold go (releaseHold), or the date was cancelled while it was held.
    Released,
    /// Paid, then the date was cancelled: the price went back to the balance.
    Refunded,
}

text_enum!(ReservationStatus {
    Held = "HELD",
    Paid = "PAID",
    Expired = "EXPIRED",
    Released = "RELEASED",
    Refunded = "REFUNDED",
});

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reservations, check_for_backend(diesel::mysql::Mysql))]
pub struct ReservationRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub seat_id: u64,
    pub token_seq: u64,
    pub status: ReservationStatus,
    pub price: BigDecimal,
    pub created_at: NaiveDateTime,
    pub held_until: NaiveDateTime,
    pub payment_id: Option<DbUuid>,
}

impl ReservationRow {
    /// What the reservation is now: a HELD row past its lapse is EXPIRED.
    pub fn status_at(&self, now: NaiveDateTime) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if self.held_until <= now => ReservationStatus::Expired,
            status => status,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments, check_for_backend(diesel::mysql::Mysql))]
pub struct PaymentRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub amount: BigDecimal,
    pub paid_at: NaiveDateTime,
}

/// The reservation holding a seat now, if its hold is live.
pub async fn live_hold_on(
    conn: &mut AsyncMysqlConnection,
    seat_id: u64,
    now: NaiveDateTime,
) -> QueryResult<Option<ReservationRow>> {
    seats::table
        .inner_join(
            reservations::table.on(reservations::id
                .nullable()
                .eq(seats::held_by_reservation_id)),
        )
        .filter(seats::id.eq(seat_id))
        .filter(seats::status.eq(SeatStatus::Held))
        .filter(seats::held_until.gt(now))
        .select(ReservationRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Seats of one date the user holds (live) or owns: what
/// `MAX_TICKETS_PER_USER` bounds.
pub async fn tickets_of_date(
    conn: &mut AsyncMysqlConnection,
    user_id: Uuid,
    concert_date_id: u64,
    now: NaiveDateTime,
) -> QueryResult<i64> {
    let live_or_paid = reservations::status
        .eq(ReservationStatus::Paid)
        .or(reservations::status
            .eq(ReservationStatus::Held)
            .and(reservations::held_until.gt(now)));
    reservations::table
        .inner_join(seats::table.on(seats::id.eq(reservations::seat_id)))
        .filter(reservations::user_id.eq(DbUuid(user_id)))
        .filter(seats::concert_date_id.eq(concert_date_id))
        .filter(live_or_paid)
        .count()
        .get_result(conn)
        .await
}

pub async fn insert_reservation(
    conn: &mut AsyncMysqlConnection,
    reservation: &ReservationRow,
) -> QueryResult<()> {
    Prepared(diesel::insert_into(reservations::table).values(reservation))
        .execute(conn)
        .await
        .map(drop)
}

/// The one conditional write that decides a race for a seat: it succeeds
/// only while the seat is AVAILABLE or its hold has lapsed. Concurrent
/// callers queue on the row lock for the winner's commit, then match nothing.
pub async fn take_seat(
    conn: &mut AsyncMysqlConnection,
    seat_id: u64,
    reservation: DbUuid,
    held_until: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let taken = Prepared(
        diesel::update(seats::table.find(seat_id).filter(holdable_at(now))).set((
            seats::status.eq(SeatStatus::Held),
            seats::held_by_reservation_id.eq(Some(reservation)),
            seats::held_until.eq(Some(held_until)),
        )),
    )
    .execute(conn)
    .await?;
    Ok(taken == 1)
}

/// What a seat's row says it is (for explaining a refused hold).
pub async fn seat_status(conn: &mut AsyncMysqlConnection, seat_id: u64) -> QueryResult<SeatStatus> {
    seats::table
        .find(seat_id)
        .select(seats::status)
        .first(conn)
        .await
}

/// Locks the reservations being paid, in primary-key order.
pub async fn lock_reservations(
    conn: &mut AsyncMysqlConnection,
    ids: &[DbUuid],
) -> QueryResult<Vec<ReservationRow>> {
    Prepared(
        reservations::table
            .filter(reservations::id.eq_any(padded(ids)))
            .order(reservations::id)
            .select(ReservationRow::as_select())
            .for_update(),
    )
    .load(conn)
    .await
}

/// Marks the seats of these live holds SOLD. Returns how many it sold; fewer
/// than asked means a hold lapsed and its seat was taken or swept meanwhile.
pub async fn sell_seats(
    conn: &mut AsyncMysqlConnection,
    seat_ids: &[u64],
    holds: &[DbUuid],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    Prepared(
        diesel::update(
            seats::table
                .filter(seats::id.eq_any(padded(seat_ids)))
                .filter(seats::status.eq(SeatStatus::Held))
                .filter(seats::held_by_reservation_id.eq_any(padded(holds)))
                .filter(seats::held_until.gt(now)),
        )
        .set((
            seats::status.eq(SeatStatus::Sold),
            seats::held_by_reservation_id.eq(None::<DbUuid>),
            seats::held_until.eq(None::<NaiveDateTime>),
        )),
    )
    .execute(conn)
    .await
}

pub async fn insert_payment(
    conn: &mut AsyncMysqlConnection,
    payment: &PaymentRow,
) -> QueryResult<()> {
    diesel::insert_into(payments::table)
        .values(payment)
        .execute(conn)
        .await
        .map(drop)
}

pub async fn mark_paid(
    conn: &mut AsyncMysqlConnection,
    ids: &[DbUuid],
    payment: DbUuid,
) -> QueryResult<usize> {
    Prepared(
        diesel::update(reservations::table.filter(reservations::id.eq_any(padded(ids)))).set((
            reservations::status.eq(ReservationStatus::Paid),
            reservations::payment_id.eq(Some(payment)),
        )),
    )
    .execute(conn)
    .await
}

pub async fn find_payment(
    conn: &mut AsyncMysqlConnection,
    id: DbUuid,
) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .find(id)
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The sweep: rewrites lapsed HELD reservations as EXPIRED.
pub async fn expire_lapsed_reservations(
    conn: &mut AsyncMysqlConnection,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    Prepared(
        diesel::update(
            reservations::table
                .filter(reservations::status.eq(ReservationStatus::Held))
                .filter(reservations::held_until.le(now)),
        )
        .set(reservations::status.eq(ReservationStatus::Expired)),
    )
    .execute(conn)
    .await
}

/// The assignments that put a held seat back on sale, for the sweep and for
/// holds that end early.
type BackOnSale = (
    diesel::dsl::Eq<seats::status, SeatStatus>,
    diesel::dsl::Eq<seats::held_by_reservation_id, Option<DbUuid>>,
    diesel::dsl::Eq<seats::held_until, Option<NaiveDateTime>>,
);

fn back_on_sale() -> BackOnSale {
    (
        seats::status.eq(SeatStatus::Available),
        seats::held_by_reservation_id.eq(None::<DbUuid>),
        seats::held_until.eq(None::<NaiveDateTime>),
    )
}

/// The sweep: puts seats under lapsed holds back on sale.
pub async fn release_lapsed_seats(
    conn: &mut AsyncMysqlConnection,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    Prepared(
        diesel::update(
            seats::table
                .filter(seats::status.eq(SeatStatus::Held))
                .filter(seats::held_until.le(now)),
        )
        .set(back_on_sale()),
    )
    .execute(conn)
    .await
}

/// One page of a user's reservations, newest first (by when they were
/// made, then id); `None` when `after` is no reservation of the user's.
pub async fn reservations_page(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    page: Page<Uuid>,
) -> QueryResult<Option<Vec<ReservationRow>>> {
    let mut query = reservations::table
        .filter(reservations::user_id.eq(user))
        .into_boxed();
    if let Some(after) = page.after.map(DbUuid) {
        let Some(made) = reservations::table
            .find(after)
            .filter(reservations::user_id.eq(user))
            .select(reservations::created_at)
            .first::<NaiveDateTime>(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        query = query.filter(
            reservations::created_at
                .lt(made)
                .or(reservations::created_at
                    .eq(made)
                    .and(reservations::id.lt(after))),
        );
    }
    query
        .order((reservations::created_at.desc(), reservations::id.desc()))
        .limit(page.limit())
        .select(ReservationRow::as_select())
        .load(conn)
        .await
        .map(Some)
}

pub async fn reservations_of_payments(
    conn: &mut AsyncMysqlConnection,
    payment_ids: &[DbUuid],
) -> QueryResult<Vec<ReservationRow>> {
    reservations::table
        .filter(reservations::payment_id.eq_any(payment_ids.iter().map(|id| Some(*id))))
        .order(reservations::id)
        .select(ReservationRow::as_select())
        .load(conn)
        .await
}

pub async fn payments_by_ids(
    conn: &mut AsyncMysqlConnection,
    ids: &[DbUuid],
) -> QueryResult<Vec<PaymentRow>> {
    payments::table
        .filter(payments::id.eq_any(ids))
        .select(PaymentRow::as_select())
        .load(conn)
        .await
}

/// One page of a user's payments, newest first (by when they were paid,
/// then id); `None` when `after` is no payment of the user's.
pub async fn payments_page(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    page: Page<Uuid>,
) -> QueryResult<Option<Vec<PaymentRow>>> {
    let mut query = payments::table
        .filter(payments::user_id.eq(user))
        .into_boxed();
    if let Some(after) = page.after.map(DbUuid) {
        let Some(paid) = payments::table
            .find(after)
            .filter(payments::user_id.eq(user))
            .select(payments::paid_at)
            .first::<NaiveDateTime>(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        query = query.filter(
            payments::paid_at
                .lt(paid)
                .or(payments::paid_at.eq(paid).and(payments::id.lt(after))),
        );
    }
    query
        .order((payments::paid_at.desc(), payments::id.desc()))
        .limit(page.limit())
        .select(PaymentRow::as_select())
        .load(conn)
        .await
        .map(Some)
}

/// Locks one reservation.
pub async fn lock_reservation(
    conn: &mut AsyncMysqlConnection,
    id: DbUuid,
) -> QueryResult<Option<ReservationRow>> {
    reservations::table
        .find(id)
        .select(ReservationRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Locks the reservations of a date that are HELD (live or lapsed) or PAID.
pub async fn lock_open_reservations_of_date(
    conn: &mut AsyncMysqlConnection,
    concert_date_id: u64,
) -> QueryResult<Vec<ReservationRow>> {
    reservations::table
        .inner_join(seats::table.on(seats::id.eq(reservations::seat_id)))
        .filter(seats::concert_date_id.eq(concert_date_id))
        .filter(reservations::status.eq_any([ReservationStatus::Held, ReservationStatus::Paid]))
        .order(reservations::id)
        .select(ReservationRow::as_select())
        .for_update()
        .load(conn)
        .await
}

pub async fn set_status(
    conn: &mut AsyncMysqlConnection,
    ids: &[DbUuid],
    status: ReservationStatus,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::update(reservations::table.filter(reservations::id.eq_any(ids)))
        .set(reservations::status.eq(status))
        .execute(conn)
        .await
}

/// Puts the seats held by these reservations back on sale at once.
pub async fn free_seats_held_by(
    conn: &mut AsyncMysqlConnection,
    holds: &[DbUuid],
) -> QueryResult<usize> {
    if holds.is_empty() {
        return Ok(0);
    }
    diesel::update(
        seats::table
            .filter(seats::status.eq(SeatStatus::Held))
            .filter(seats::held_by_reservation_id.eq_any(holds)),
    )
    .set(back_on_sale())
    .execute(conn)
    .await
}

/// A date's sales from its reservations: (sold, held now, revenue).
pub async fn sales_of_date(
    conn: &mut AsyncMysqlConnection,
    concert_date_id: u64,
    now: NaiveDateTime,
) -> QueryResult<(i64, i64, Option<BigDecimal>)> {
    use diesel::dsl::{case_when, count, sum};
    let paid = reservations::status.eq(ReservationStatus::Paid);
    let live = reservations::status
        .eq(ReservationStatus::Held)
        .and(reservations::held_until.gt(now));
    reservations::table
        .inner_join(seats::table.on(seats::id.eq(reservations::seat_id)))
        .filter(seats::concert_date_id.eq(concert_date_id))
        .select((
            count(case_when(paid, reservations::seat_id)),
            count(case_when(live, reservations::seat_id)),
            sum(case_when(
                reservations::status.eq(ReservationStatus::Paid),
                reservations::price,
            )),
        ))
        .first(conn)
        .await
}
