//! The one error type. Each variant is one code of the contract's error
//! table; anything unexpected becomes `Internal`, is logged with its detail
//! and reaches the client as a fixed sentence.

use async_graphql::ErrorExtensions;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

pub type AppResult<T> = Result<T, AppError>;

/// Deliberately not `Display`: async-graphql turns any `Display` error into
/// a client error through a blanket `From`, which would skip the code and
/// could leak an internal detail. The one way out is `From<AppError>` below.
#[derive(Debug)]
pub enum AppError {
    Unauthenticated(&'static str),
    /// A valid credential that may not do this (another user's id).
    Forbidden(&'static str),
    NotAdmitted {
        position: u64,
    },
    TokenExpired,
    NotFound(String),
    InvalidInput(String),
    SeatUnavailable(&'static str),
    HoldLimit {
        limit: u32,
    },
    TicketLimit {
        limit: u32,
    },
    HoldExpired,
    AlreadyPaid,
    InsufficientBalance,
    LimitExceeded(String),
    /// The caller's address sent more than its limit a minute.
    RateLimited {
        retry_after_seconds: u64,
    },
    /// The process is at its limit of work in flight and refuses at once
    /// rather than queue; the client may try again.
    Overloaded,
    /// An idempotency key turned out to be taken by a call that committed
    /// meanwhile: the transaction rolls back and the service answers what
    /// that call did. Never shown to a client (it would read INTERNAL).
    KeyTaken,
    /// The database could not be reached or could not take work (a node
    /// down or not yet synced, no connection free in time). Whether the
    /// request took effect is not known: the client retries it, with the
    /// same idempotency key where the operation takes one. The detail goes
    /// to the log only.
    Unavailable(String),
    /// A fault of ours; the detail goes to the log only.
    Internal(String),
    Database(DieselError),
}

impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        Self::Database(error)
    }
}

/// The message of every OVERLOADED refusal.
pub const OVERLOADED_MESSAGE: &str =
    "the server is at its limit of work in flight; try again in a moment";

/// One batch's failure, answered to each of its callers (an `AppError`
/// holds a database error and cannot be copied): its detail for the log,
/// and whether it said the database was unavailable (so each caller is
/// told UNAVAILABLE, retry-safe, rather than INTERNAL).
#[derive(Debug, Clone)]
pub struct SharedFailure {
    detail: String,
    unavailable: bool,
}

impl SharedFailure {
    pub fn of(error: &AppError) -> Self {
        Self {
            detail: error.detail(),
            unavailable: error.code() == "UNAVAILABLE",
        }
    }
}

impl From<SharedFailure> for AppError {
    fn from(failure: SharedFailure) -> Self {
        if failure.unavailable {
            Self::Unavailable(failure.detail)
        } else {
            Self::Internal(failure.detail)
        }
    }
}

/// The message of every UNAVAILABLE error.
pub const UNAVAILABLE_MESSAGE: &str = "the database could not be reached; whether this took effect \
     is not known: try again (with the same idempotencyKey where there is one)";

/// The message every INTERNAL error carries to the client.
pub const INTERNAL_MESSAGE: &str = "internal server error; it has been logged";

impl AppError {
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::NotAdmitted { .. } => "NOT_ADMITTED",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::NotFound(_) => "NOT_FOUND",
            Self::InvalidInput(_) => "INVALID_INPUT",
            Self::SeatUnavailable(_) => "SEAT_UNAVAILABLE",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::HoldLimit { .. } => "HOLD_LIMIT",
            Self::TicketLimit { .. } => "TICKET_LIMIT",
            Self::HoldExpired => "HOLD_EXPIRED",
            Self::AlreadyPaid => "ALREADY_PAID",
            Self::InsufficientBalance => "INSUFFICIENT_BALANCE",
            Self::LimitExceeded(_) => "LIMIT_EXCEEDED",
            Self::Overloaded => "OVERLOADED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Database(_) if self.is_unavailable() => "UNAVAILABLE",
            Self::KeyTaken | Self::Internal(_) | Self::Database(_) => "INTERNAL",
        }
    }

    /// The database rolled the transaction back (a lock wait timeout, a
    /// deadlock, or on Galera a certification conflict, which MariaDB reports
    /// as a deadlock) or could not take it yet (a Galera node not yet synced):
    /// nothing of it was kept, and running it again is safe.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Database(DieselError::DatabaseError(kind, info)) => {
                let message = info.message();
                matches!(kind, DatabaseErrorKind::SerializationFailure)
                    || message.contains("Deadlock found")
                    || message.contains("Lock wait timeout")
                    || message.contains("WSREP has not yet prepared node")
            }
            _ => false,
        }
    }

    /// A database error that says nothing about the request and is safe to
    /// retry: the database could not be reached or take work, or it rolled
    /// the work back more times than the server reruns it (`is_retryable`
    /// errors that reach an answer have outlasted every rerun: a storm of
    /// conflicts, on Galera a hot row written from several nodes). Answered
    /// UNAVAILABLE, never INTERNAL.
    fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(error) => crate::db::is_unavailable(error) || self.is_retryable(),
            _ => false,
        }
    }

    /// `is_retryable`, for an error that ended a transaction: also a unique
    /// key violation that no step of the transaction turned into an answer
    /// of its own. Every expected one is (a taken idempotency key, a date
    /// already there); one that escapes is a conflict with a transaction
    /// that committed meanwhile, which on Galera is how a writer on another
    /// node can show (rows numbered from a counter read before its commit
    /// arrived). The whole transaction is gone, so it runs again.
    pub fn is_retryable_transaction(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                Self::Database(DieselError::DatabaseError(
                    DatabaseErrorKind::UniqueViolation,
                    _
                ))
            )
    }

    /// The message a client may see; internal errors keep their detail to
    /// the log.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unauthenticated(why) | Self::Forbidden(why) => (*why).to_owned(),
            Self::NotAdmitted { position } => {
                format!("your token is still waiting in line at position {position}")
            }
            Self::TokenExpired => {
                "your token has expired; call issueToken for a new place in line".to_owned()
            }
            Self::NotFound(message)
            | Self::InvalidInput(message)
            | Self::LimitExceeded(message) => message.clone(),
            Self::SeatUnavailable(why) => (*why).to_owned(),
            Self::HoldLimit { limit } => {
                format!("you already hold {limit} seats; pay for them or let a hold lapse first")
            }
            Self::TicketLimit { limit } => {
                format!(
                    "you already hold or own {limit} seats of this date, the most one fan may have"
                )
            }
            Self::HoldExpired => {
                "the hold on a reservation has lapsed; hold the seat again if it is still free"
                    .to_owned()
            }
            Self::AlreadyPaid => "a reservation is already paid".to_owned(),
            Self::Overloaded => OVERLOADED_MESSAGE.to_owned(),
            Self::RateLimited {
                retry_after_seconds,
            } => {
                format!("too many requests from your address; try again in {retry_after_seconds} s")
            }
            Self::InsufficientBalance => {
                "the balance is below the total; charge the balance and pay again".to_owned()
            }
            Self::Unavailable(_) => UNAVAILABLE_MESSAGE.to_owned(),
            Self::Database(_) if self.is_unavailable() => UNAVAILABLE_MESSAGE.to_owned(),
            Self::KeyTaken | Self::Internal(_) | Self::Database(_) => INTERNAL_MESSAGE.to_owned(),
        }
    }

    /// Everything known about the error, for the log.
    pub fn detail(&self) -> String {
        match self {
            Self::KeyTaken => "internal: an idempotency key was taken meanwhile".to_owned(),
            Self::Internal(detail) => format!("internal: {detail}"),
            Self::Unavailable(detail) => format!("unavailable: {detail}"),
            Self::Database(error) => format!("database: {error}"),
            other => format!("{}: {}", other.code(), other.public_message()),
        }
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(error: AppError) -> Self {
        error.extend()
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if matches!(
            self,
            Self::KeyTaken | Self::Internal(_) | Self::Database(_) | Self::Unavailable(_)
        ) {
            tracing::error!(error = %self.detail(), "request failed");
        }
        async_graphql::Error::new(self.public_message()).extend_with(|_, extensions| {
            extensions.set("code", self.code());
            match self {
                Self::NotAdmitted { position } => extensions.set("position", *position),
                Self::HoldLimit { limit } | Self::TicketLimit { limit } => {
                    extensions.set("limit", *limit)
                }
                Self::RateLimited {
                    retry_after_seconds,
                } => extensions.set("retryAfterSeconds", *retry_after_seconds),
                _ => {}
            }
        })
    }
}

/// Unique-key violations are the database telling us a rule held; the
/// callers that expect one match on this before converting.
pub fn is_unique_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let error = AppError::internal("SELECT * FROM users failed at /src/db.rs:10");
        let gql = error.extend();
        assert_eq!(gql.message, INTERNAL_MESSAGE);
        let code = gql
            .extensions
            .as_ref()
            .and_then(|ext| ext.get("code").cloned());
        assert_eq!(code, Some(async_graphql::Value::from("INTERNAL")));
    }

    fn database_error(kind: DatabaseErrorKind, message: &str) -> AppError {
        AppError::Database(DieselError::DatabaseError(
            kind,
            Box::new(message.to_owned()),
        ))
    }

    #[test]
    fn work_the_database_rolled_back_or_could_not_take_is_unavailable_and_shared_so() {
        for message in [
            "Deadlock found when trying to get lock; try restarting transaction",
            "Lock wait timeout exceeded; try restarting transaction",
            "WSREP has not yet prepared node for application use",
            "Input/output error: Broken pipe (os error 32)",
        ] {
            let error = database_error(DatabaseErrorKind::Unknown, message);
            assert_eq!(error.code(), "UNAVAILABLE", "{message}");
            assert_eq!(error.public_message(), UNAVAILABLE_MESSAGE);
            assert_eq!(
                AppError::from(SharedFailure::of(&error)).code(),
                "UNAVAILABLE"
            );
        }
        let broken = database_error(DatabaseErrorKind::CheckViolation, "CONSTRAINT failed");
        assert_eq!(broken.code(), "INTERNAL");
        assert_eq!(
            AppError::from(SharedFailure::of(&broken)).code(),
            "INTERNAL"
        );
    }

    #[test]
    fn not_admitted_carries_the_position() {
        let gql = AppError::NotAdmitted { position: 7 }.extend();
        let extensions = gql.extensions.expect("extensions are set");
        assert_eq!(
            extensions.get("position"),
            Some(&async_graphql::Value::from(7u64))
        );
        assert_eq!(
            extensions.get("code"),
            Some(&async_graphql::Value::from("NOT_ADMITTED"))
        );
    }
}
