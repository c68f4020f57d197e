//! The wallet's rules: who exists, what a charge may be, and how a balance
//! moves together with its history.

use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;
use futures_util::FutureExt;
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

/// Names are trimmed, then must be 1 to 50 characters of visible text: no
/// control characters (NUL, line breaks, escapes), and at least one that
/// is neither white space nor invisible formatting, so that no two users
/// look alike by a name nobody can see.
pub fn valid_name(name: &str) -> AppResult<String> {
    let trimmed = name.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(AppError::invalid(format!(
            "a name is 1 to {MAX_NAME_CHARS} characters after trimming; this one has {chars}"
        )));
    }
    visible_text(trimmed).map_err(|why| AppError::invalid(format!("a name {why}")))
}

/// Text that is all visible: no control characters, and at least one
/// character that is neither white space nor invisible formatting. The
/// error says why not, to follow "a name ...".
pub fn visible_text(text: &str) -> Result<String, &'static str> {
    if text.chars().any(char::is_control) {
        return Err("may not hold control characters");
    }
    if !text.chars().any(|c| !c.is_whitespace() && !is_invisible(c)) {
        return Err("needs at least one visible character");
    }
    Ok(text.to_owned())
}

/// Characters that render as nothing: Unicode's format characters (zero
/// widths, joiners, direction marks, tags) and the blank letters that
/// pass for text (Hangul fillers, the blank braille pattern).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
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
    let user = new_user(name, now)?;
    db::run(pool, move |conn| {
        async move {
            model::insert_user(conn, &user).await?;
            Ok(user)
        }
        .boxed()
    })
    .await
}

/// A user to register: a fresh id, the name checked, a zero balance.
fn new_user(name: &str, now: NaiveDateTime) -> AppResult<UserRow> {
    Ok(UserRow {
        id: DbUuid(Uuid::new_v4()),
        name: valid_name(name)?,
        balance: Money::zero().into_decimal(),
        created_at: now,
    })
}

/// `registerUser` in `jwt` mode: the user of `subject`, made now with `name`
/// or, if the subject has one already, that user unchanged. Concurrent
/// calls for one subject make one user: the unique key on the subject lets
/// one insert through, and the others read what it committed.
pub async fn register_subject(
    pool: &DbPool,
    name: &str,
    now: NaiveDateTime,
    subject: String,
) -> AppResult<UserRow> {
    let user = new_user(name, now)?;
    db::run(pool, move |conn| {
        async move {
            match model::insert_user_of_subject(conn, &user, &subject).await {
                Ok(()) => Ok(user),
                Err(error) if crate::error::is_unique_violation(&error) => {
                    model::find_user_of_subject(conn, &subject)
                        .await?
                        .ok_or_else(|| AppError::internal("a subject's user vanished"))
                }
                Err(error) => Err(error.into()),
            }
        }
        .boxed()
    })
    .await
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
    db::run(pool, move |conn| {
        charge_once(conn, DbUuid(user_id), amount, key).boxed()
    })
    .await
}

async fn charge_once(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    amount: Money,
    key: Option<String>,
) -> AppResult<UserRow> {
    let repeated = match key.as_deref() {
        Some(key) => model::key_used(conn, user, KeyScope::Charge, key).await?,
        None => false,
    };
    if !repeated {
        let charged = crate::transaction_with_retry!(conn, |conn| {
            charge_in_transaction(conn, user, &amount, key.as_deref()).await
        });
        // A refusal may be the trace of a concurrent call with this key
        // (the cap it filled, the key it took): then answer as it left things.
        if let Err(refused) = charged {
            let replay = match key.as_deref() {
                Some(key) => model::key_used(conn, user, KeyScope::Charge, key).await?,
                None => false,
            };
            if !replay {
                return Err(refused);
            }
        }
    }
    model::find_user(conn, user)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no user with id {}", user.0)))
}

/// Credits the balance (locking the user's row first), records the entry,
/// then the key.
async fn charge_in_transaction(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    amount: &Money,
    key: Option<&str>,
) -> AppResult<()> {
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
    let now = clock::now();
    model::record_entry(
        conn,
        user,
        EntryKind::Charge,
        amount.as_decimal(),
        None,
        None,
        now,
    )
    .await?;
    if let Some(key) = key
        && !model::claim_key(conn, user, KeyScope::Charge, key, None, now).await?
    {
        return Err(AppError::KeyTaken);
    }
    Ok(())
}

/// Takes `total` from the user's balance, locking the user's row, in the
/// caller's transaction. INSUFFICIENT_BALANCE leaves everything as it was
/// once the caller rolls back.
pub async fn take_from_balance(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    total: &Money,
) -> AppResult<()> {
    if !model::debit(conn, user, total.as_decimal()).await? {
        return Err(AppError::InsufficientBalance);
    }
    Ok(())
}

/// Records the PAYMENT entry of a payment whose amount was taken.
pub async fn record_payment(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    total: &Money,
    payment: DbUuid,
) -> AppResult<()> {
    let amount = total.negated().into_decimal();
    model::record_entry(
        conn,
        user,
        EntryKind::Payment,
        &amount,
        Some(payment),
        None,
        clock::now(),
    )
    .await?;
    Ok(())
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
    fn names_are_visible_text() {
        for hidden in [
            "a\u{0}",
            "a\tb",
            "\u{200B}",
            "\u{FEFF}\u{2060}",
            "\u{3164}\u{3164}",
        ] {
            assert!(valid_name(hidden).is_err(), "{hidden:?}");
        }
        assert!(valid_name("Zoë \u{200D}").is_ok());
    }

    #[test]
    fn keys_are_bounded() {
        assert!(valid_key(Some(String::new())).is_err());
        assert!(valid_key(Some("k".repeat(101))).is_err());
        assert_eq!(valid_key(None).ok(), Some(None));
    }
}
