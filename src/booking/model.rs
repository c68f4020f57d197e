//! Reservations and payments, and the booking writes to seats: rows and
//! queries, run in the caller's transaction.

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use uuid::Uuid;

use crate::catalogue::model::SeatStatus;
use crate::db::schema::{payments, reservations, seats};
use crate::db::{DbUuid, Prepared, padded, power_of_two_pieces};
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

/// What a batch of holds needs to know of a seat.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = seats, check_for_backend(diesel::mysql::Mysql))]
pub struct SeatState {
    pub id: u64,
    pub status: SeatStatus,
    pub held_by_reservation_id: Option<DbUuid>,
    pub held_until: Option<NaiveDateTime>,
}

impl SeatState {
    /// The reservation whose hold on the seat is live now, if any.
    pub fn live_hold(&self, now: NaiveDateTime) -> Option<DbUuid> {
        let live = self.status == SeatStatus::Held && self.held_until.is_some_and(|end| end > now);
        self.held_by_reservation_id.filter(|_| live)
    }

    /// What `holdable_at` says in SQL: on sale, or held past its lapse.
    pub fn is_holdable_at(&self, now: NaiveDateTime) -> bool {
        match self.status {
            SeatStatus::Available => true,
            SeatStatus::Held => self.held_until.is_none_or(|end| end <= now),
            SeatStatus::Sold | SeatStatus::Cancelled => false,
        }
    }
}

/// These seats as last committed, without waiting for any lock.
pub async fn seats_by_ids(
    conn: &mut AsyncMysqlConnection,
    ids: &[u64],
) -> QueryResult<Vec<SeatState>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Prepared(
        seats::table
            .filter(seats::id.eq_any(padded(ids)))
            .select(SeatState::as_select()),
    )
    .load(conn)
    .await
}

/// Locks these seats' rows, in primary-key order (a batch of holds).
pub async fn lock_seats(
    conn: &mut AsyncMysqlConnection,
    ids: &[u64],
) -> QueryResult<Vec<SeatState>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Prepared(
        seats::table
            .filter(seats::id.eq_any(padded(ids)))
            .select(SeatState::as_select())
            .for_update(),
    )
    .load(conn)
    .await
}

/// Holds each seat for its reservation until `lapse`: one write for the
/// whole batch, still conditional on each seat being holdable, so the
/// caller can tell from the count that every seat it decided on was taken.
/// (Diesel's DSL has no CASE with a run-time number of arms, hence SQL.)
pub async fn hold_seats(
    conn: &mut AsyncMysqlConnection,
    holds: &[(u64, DbUuid)],
    lapse: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    use diesel::sql_types::{Binary, Datetime, Unsigned, Varchar};
    let holds = padded(holds);
    let Some(arms) = holds.len().checked_sub(1) else {
        return Ok(0);
    };
    let sql = format!(
        "UPDATE seats SET status = ?, held_until = ?, held_by_reservation_id = CASE id{} END \
         WHERE id IN (?{}) AND (status = ? OR (status = ? AND held_until <= ?))",
        " WHEN ? THEN ?".repeat(holds.len()),
        ", ?".repeat(arms),
    );
    let mut query = diesel::sql_query(sql)
        .into_boxed()
        .bind::<Varchar, _>(SeatStatus::Held)
        .bind::<Datetime, _>(lapse);
    for (seat_id, reservation_id) in &holds {
        query = query
            .bind::<Unsigned<diesel::sql_types::BigInt>, _>(*seat_id)
            .bind::<Binary, _>(*reservation_id);
    }
    for (seat_id, _) in &holds {
        query = query.bind::<Unsigned<diesel::sql_types::BigInt>, _>(*seat_id);
    }
    Prepared(
        query
            .bind::<Varchar, _>(SeatStatus::Available)
            .bind::<Varchar, _>(SeatStatus::Held)
            .bind::<Datetime, _>(now),
    )
    .execute(conn)
    .await
}

/// Records a batch's new holds, in pieces of prepared statements of few
/// shapes: unprepared, one statement of n rows would make the database
/// describe its 9 n parameters afresh every time.
pub async fn insert_reservations(
    conn: &mut AsyncMysqlConnection,
    rows: &[ReservationRow],
) -> QueryResult<usize> {
    let mut inserted = 0;
    for piece in power_of_two_pieces(rows) {
        inserted += Prepared(diesel::insert_into(reservations::table).values(piece))
            .execute(conn)
            .await?;
    }
    Ok(inserted)
}

// The ticket count of a batch of holds groups by user and date.
diesel::allow_columns_to_appear_in_same_group_by_clause!(
    reservations::user_id,
    seats::concert_date_id
);

/// Seats each of these users holds (live) or owns, by date: what
/// `MAX_TICKETS_PER_USER` bounds, for a whole batch at once. (Every date
/// of theirs, not only the batch's: a user has a handful, and one padded
/// list keeps the statement to seven shapes.)
pub async fn tickets_of_users(
    conn: &mut AsyncMysqlConnection,
    user_ids: &[DbUuid],
    now: NaiveDateTime,
) -> QueryResult<Vec<(DbUuid, u64, i64)>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let live_or_paid = reservations::status
        .eq(ReservationStatus::Paid)
        .or(reservations::status
            .eq(ReservationStatus::Held)
            .and(reservations::held_until.gt(now)));
    Prepared(
        reservations::table
            .inner_join(seats::table.on(seats::id.eq(reservations::seat_id)))
            .filter(reservations::user_id.eq_any(padded(user_ids)))
            .filter(live_or_paid)
            .group_by((reservations::user_id, seats::concert_date_id))
            .select((
                reservations::user_id,
                seats::concert_date_id,
                diesel::dsl::count_star(),
            )),
    )
    .load(conn)
    .await
}

/// These reservations, in no particular order.
pub async fn reservations_by_ids(
    conn: &mut AsyncMysqlConnection,
    ids: &[DbUuid],
) -> QueryResult<Vec<ReservationRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    reservations::table
        .filter(reservations::id.eq_any(ids))
        .select(ReservationRow::as_select())
        .load(conn)
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
