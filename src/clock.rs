//! The server's notion of now. Instants are stored as `DATETIME(6)` in UTC,
//! so now is truncated to microseconds: a value compared before and after a
//! round trip through the database stays the same.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

pub fn utc(stored: NaiveDateTime) -> DateTime<Utc> {
    stored.and_utc()
}
