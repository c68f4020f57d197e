//! Users, balances, balance entries and idempotency keys: rows and queries.
//! Balances change only by conditional updates, never read-modify-write.

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::IntoSql;
use diesel::prelude::*;
use diesel::sql_types::{Binary, Datetime, Decimal, Nullable, Varchar};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use crate::db::schema::{balance_entries, idempotency_keys, users};
use crate::db::{DbUuid, Prepared};
use crate::graphql::paging::Page;
use crate::text_enum;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::mysql::Mysql))]
pub struct UserRow {
    pub id: DbUuid,
    pub name: String,
    pub balance: BigDecimal,
    pub created_at: NaiveDateTime,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, diesel::AsExpression, diesel::FromSqlRow, async_graphql::Enum,
)]
#[diesel(sql_type = diesel::sql_types::Varchar)]
#[graphql(name = "BalanceEntryKind")]
pub enum EntryKind {
    Charge,
    Payment,
    /// Positive: the price of a reservation of a cancelled date.
    Refund,
}

text_enum!(EntryKind {
    Charge = "CHARGE",
    Payment = "PAYMENT",
    Refund = "REFUND",
});

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = balance_entries, check_for_backend(diesel::mysql::Mysql))]
pub struct BalanceEntryRow {
    pub id: u64,
    pub user_id: DbUuid,
    pub kind: EntryKind,
    pub amount: BigDecimal,
    pub balance_after: BigDecimal,
    pub at: NaiveDateTime,
}

/// Which operation an idempotency key belongs to; each has its own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::AsExpression, diesel::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Varchar)]
pub enum KeyScope {
    Charge,
    Pay,
}

text_enum!(KeyScope {
    Charge = "CHARGE",
    Pay = "PAY",
});

pub async fn insert_user(conn: &mut AsyncMysqlConnection, user: &UserRow) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values(user)
        .execute(conn)
        .await
        .map(drop)
}

/// Inserts a user bound to a JWT subject. A second user of the subject is
/// refused by the unique key (`UniqueViolation`).
pub async fn insert_user_of_subject(
    conn: &mut AsyncMysqlConnection,
    user: &UserRow,
    subject: &str,
) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values((user, users::subject.eq(subject)))
        .execute(conn)
        .await
        .map(drop)
}

pub async fn find_user_of_subject(
    conn: &mut AsyncMysqlConnection,
    subject: &str,
) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::subject.eq(subject))
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_user(
    conn: &mut AsyncMysqlConnection,
    id: DbUuid,
) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn users_by_ids(
    conn: &mut AsyncMysqlConnection,
    ids: &[DbUuid],
) -> QueryResult<Vec<UserRow>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(UserRow::as_select())
        .load(conn)
        .await
}

/// Adds `amount` unless that would take the balance above `cap`. Locks the
/// user's row until the transaction ends. False: no such user, or the cap.
pub async fn credit(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    amount: &BigDecimal,
    cap: &BigDecimal,
) -> QueryResult<bool> {
    let changed = Prepared(
        diesel::update(
            users::table
                .find(user)
                .filter((users::balance + amount.clone()).le(cap.clone())),
        )
        .set(users::balance.eq(users::balance + amount.clone())),
    )
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Takes `amount` unless the balance is below it. Locks the user's row until
/// the transaction ends. False: no such user, or not enough money.
pub async fn debit(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    amount: &BigDecimal,
) -> QueryResult<bool> {
    let changed = Prepared(
        diesel::update(
            users::table
                .find(user)
                .filter(users::balance.ge(amount.clone())),
        )
        .set(users::balance.eq(users::balance - amount.clone())),
    )
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Records a change of the balance, with the balance it left, read in the
/// same statement from the row the caller's update locked; a refund names
/// its payment and reservation.
pub async fn record_entry(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    kind: EntryKind,
    amount: &BigDecimal,
    payment: Option<DbUuid>,
    reservation: Option<DbUuid>,
    at: NaiveDateTime,
) -> QueryResult<()> {
    let balance_now = users::table.find(user).select((
        users::id,
        kind.into_sql::<Varchar>(),
        amount.clone().into_sql::<Decimal>(),
        users::balance,
        payment.into_sql::<Nullable<Binary>>(),
        reservation.into_sql::<Nullable<Binary>>(),
        at.into_sql::<Datetime>(),
    ));
    Prepared(
        diesel::insert_into(balance_entries::table)
            .values(balance_now)
            .into_columns((
                balance_entries::user_id,
                balance_entries::kind,
                balance_entries::amount,
                balance_entries::balance_after,
                balance_entries::payment_id,
                balance_entries::reservation_id,
                balance_entries::at,
            )),
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Gives back a refunded reservation's price: the balance grows whatever
/// the cap (which limits charges), and one REFUND entry records it. Locks
/// the user's row.
pub async fn refund(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    amount: &BigDecimal,
    payment: DbUuid,
    reservation: DbUuid,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(users::table.find(user))
        .set(users::balance.eq(users::balance + amount.clone()))
        .execute(conn)
        .await?;
    record_entry(
        conn,
        user,
        EntryKind::Refund,
        amount,
        Some(payment),
        Some(reservation),
        at,
    )
    .await
}

/// One page of a user's entries, newest first (ids grow as entries are
/// written); `None` when `after` is no entry of the user's.
pub async fn entries_page(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    page: Page<u64>,
) -> QueryResult<Option<Vec<BalanceEntryRow>>> {
    let mut query = balance_entries::table
        .filter(balance_entries::user_id.eq(user))
        .into_boxed();
    if let Some(after) = page.after {
        let known: i64 = balance_entries::table
            .filter(balance_entries::id.eq(after))
            .filter(balance_entries::user_id.eq(user))
            .count()
            .get_result(conn)
            .await?;
        if known == 0 {
            return Ok(None);
        }
        query = query.filter(balance_entries::id.lt(after));
    }
    query
        .order(balance_entries::id.desc())
        .limit(page.limit())
        .select(BalanceEntryRow::as_select())
        .load(conn)
        .await
        .map(Some)
}

/// Records that an idempotency key was used (by a payment, for PAY keys).
/// False when it already was. Called last in a transaction, once the
/// user's row is locked: the key's foreign key takes a shared lock on that
/// row, which taken first would deadlock with the exclusive one.
pub async fn claim_key(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    scope: KeyScope,
    key: &str,
    payment: Option<DbUuid>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::user_id.eq(user),
            idempotency_keys::scope.eq(scope),
            idempotency_keys::idempotency_key.eq(key.as_bytes()),
            idempotency_keys::payment_id.eq(payment),
            idempotency_keys::created_at.eq(now),
        ))
        .execute(conn)
        .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(error) if crate::error::is_unique_violation(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Whether this user already used this key for this operation.
pub async fn key_used(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    scope: KeyScope,
    key: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(idempotency_keys::table.find((
        user,
        scope,
        key.as_bytes(),
    ))))
    .get_result(conn)
    .await
}

/// The payment a used PAY key answered with.
pub async fn payment_of_key(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    key: &str,
) -> QueryResult<Option<Option<DbUuid>>> {
    idempotency_keys::table
        .find((user, KeyScope::Pay, key.as_bytes()))
        .select(idempotency_keys::payment_id)
        .first(conn)
        .await
        .optional()
}
