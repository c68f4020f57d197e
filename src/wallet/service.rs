//! The wallet's rules: who exists, what a charge may be, and how a balance
//! moves together with its history.

use chrono::NaiveDateTime;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncMysqlConnection;
use uuid::Uuid;

use super::model::{self, EntryKind, KeyScope, UserRow};
use crate::clock;
use crate::db::{self, DbPool, DbUuid};
use crate::error::{AppError, AppResult};
use crate::money::Money;

pub const MAX_NAME_CHARS: usize = 50;
pub const MAX_KEY_CHARS: usize = 100;
/// The largest single charge: 10,000,000.00.
pub fn max_charge() -> Money {
    Money::from_cents(1_000_000_000)
}
/// The largest balance: 1,000,000,000.00.
pub fn balance_cap() -> Money {
    Money::from_cents(100_000_000_000)
}

/// Names are trimmed, then must be 1 to 50 characters.
pub fn valid_name(name: &str) -> AppResult<String> {
    let trimmed = name.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(AppError::invalid(format!(
            "a name is 1 to {MAX_NAME_CHARS} characters after trimming; this one has {chars}"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Idempotency keys are opaque, 1 to 100 characters, compared exactly.
pub fn valid_key(key: Option<String>) -> AppResult<Option<String>> {
    match key {
        Some(key) if key.is_empty() || key.chars().count() > MAX_KEY_CHARS => {
            Err(AppError::invalid(format!(
                "an idempotencyKey is 1 to {MAX_KEY_CHARS} characters"
            )))
        }
        other => Ok(other),
    }
}

pub async fn register(pool: &DbPool, name: &str, now: NaiveDateTime) -> AppResult<UserRow> {
    let user = UserRow {
        id: DbUuid(Uuid::new_v4()),
        name: valid_name(name)?,
        balance: Money::zero().into_decimal(),
        created_at: now,
    };
    let mut conn = db::connect(pool).await?;
    model::insert_user(&mut conn, &user).await?;
    Ok(user)
}

pub async fn find(pool: &DbPool, id: Uuid) -> AppResult<Option<UserRow>> {
    let mut conn = db::connect(pool).await?;
    Ok(model::find_user(&mut conn, DbUuid(id)).await?)
}

/// `chargeBalance`: adds `amount` once per idempotency key and answers the
/// user as they are after the call.
pub async fn charge(
    pool: &DbPool,
    user_id: Uuid,
    amount: Money,
    key: Option<String>,
) -> AppResult<UserRow> {
    if !amount.is_positive() || amount > max_charge() {
        return Err(AppError::invalid(format!(
            "a charge is above 0 and at most {}; got {amount}",
            max_charge()
        )));
    }
    let key = valid_key(key)?;
    let user = DbUuid(user_id);
    let mut conn = db::connect(pool).await?;
    crate::transaction_with_retry!(conn, |conn| {
        charge_in_transaction(conn, user, &amount, key.as_deref()).await
    })?;
    model::find_user(&mut conn, user)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no user with id {user_id}")))
}

async fn charge_in_transaction(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    amount: &Money,
    key: Option<&str>,
) -> AppResult<()> {
    if let Some(key) = key {
        let fresh = model::claim_key(conn, user, KeyScope::Charge, key, clock::now())
            .await
            .map_err(|e| unknown_user_on_fk(e, user))?;
        if !fresh {
            return Ok(());
        }
    }
    let cap = balance_cap();
    if !model::credit(conn, user, amount.as_decimal(), cap.as_decimal()).await? {
        return Err(match model::find_user(conn, user).await? {
            None => AppError::not_found(format!("no user with id {}", user.0)),
            Some(_) => AppError::invalid(format!(
                "the balance may not exceed {cap}; this charge would take it above"
            )),
        });
    }
    // Read under the user's row lock: entries' instants follow their order.
    model::record_entry(
        conn,
        user,
        EntryKind::Charge,
        amount.as_decimal(),
        None,
        clock::now(),
    )
    .await?;
    Ok(())
}

/// Takes `total` from the user's balance and records the PAYMENT entry, in
/// the caller's transaction. INSUFFICIENT_BALANCE leaves everything as it was
/// once the caller rolls back.
pub async fn pay_from_balance(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    total: &Money,
    payment: DbUuid,
) -> AppResult<()> {
    if !model::debit(conn, user, total.as_decimal()).await? {
        return Err(AppError::InsufficientBalance);
    }
    let amount = total.negated().into_decimal();
    model::record_entry(
        conn,
        user,
        EntryKind::Payment,
        &amount,
        Some(payment),
        clock::now(),
    )
    .await?;
    Ok(())
}

fn unknown_user_on_fk(error: DieselError, user: DbUuid) -> AppError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            AppError::not_found(format!("no user with id {}", user.0))
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(valid_name("  Ada  ").ok(), Some("Ada".to_owned()));
        assert!(valid_name("   ").is_err());
        assert!(valid_name(&"é".repeat(50)).is_ok());
        assert!(valid_name(&"é".repeat(51)).is_err());
    }

    #[test]
    fn keys_are_bounded() {
        assert!(valid_key(Some(String::new())).is_err());
        assert!(valid_key(Some("k".repeat(101))).is_err());
        assert_eq!(valid_key(None).ok(), Some(None));
    }
}
