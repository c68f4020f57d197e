//! The contract's scalars: `Decimal` (money as an exact string), `DateTime`
//! (RFC 3339 in UTC) and `UUID` (async-graphql's own). A bad value carries the
//! INVALID_INPUT code from the point where it is parsed.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use bigdecimal::BigDecimal;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::money::Money;

fn invalid<T: async_graphql::InputType>(message: impl std::fmt::Display) -> InputValueError<T> {
    InputValueError::custom(message).with_extension("code", "INVALID_INPUT")
}

/// An exact amount of money, written as a decimal string such as "15000.00".
#[Scalar(name = "Decimal")]
impl ScalarType for Money {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            // A JSON number has already been through a binary float.
            Value::String(text) => Money::parse(&text).map_err(invalid),
            Value::Number(_) => Err(invalid(
                "amounts are decimal strings such as \"15000.00\", not JSON numbers",
            )),
            other => Err(invalid(format!("expected a decimal string, found {other}"))),
        }
    }

    /// Lets validation refuse a bad amount before anything runs, so that a
    /// document with several mutations does not run the ones before it.
    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(text) if Money::parse(text).is_ok())
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

/// An instant, always written in UTC with a `Z` offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(pub DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for Instant {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => DateTime::parse_from_rfc3339(&text)
                .map(|instant| Self(instant.with_timezone(&Utc)))
                .map_err(invalid),
            other => Err(invalid(format!(
                "expected an RFC 3339 string, found {other}"
            ))),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl From<chrono::NaiveDateTime> for Instant {
    fn from(stored: chrono::NaiveDateTime) -> Self {
        Self(stored.and_utc())
    }
}

impl From<BigDecimal> for Money {
    fn from(stored: BigDecimal) -> Self {
        Money::from_stored(stored)
    }
}
