//! The organizers' controls of the line: its limits and a pause, kept on
//! the counters' row (see `model::LineControls`), so that every server's
//! admission turn, which takes that row's lock, obeys the same values.

use futures_util::FutureExt;

use super::model;
use super::service::QueueSettings;
use crate::clock;
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult};

/// The bounds of the settings these replace (`MAX_ACTIVE_TOKENS`,
/// `ADMIT_INTERVAL_MS`).
const MAX_ACTIVE_RANGE: std::ops::RangeInclusive<i32> = 1..=1_000_000;
const ADMIT_INTERVAL_RANGE: std::ops::RangeInclusive<i32> = 10..=600_000;

/// The line as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineState {
    pub waiting: u64,
    pub active: u64,
    pub max_active_tokens: u64,
    pub admit_interval_ms: u64,
    pub paused: bool,
    pub admitted_last_minute: u64,
}

/// What an organizer changes; `None` leaves it as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineChange {
    pub max_active_tokens: Option<i32>,
    pub admit_interval_ms: Option<i32>,
    pub paused: Option<bool>,
}

pub async fn line_state(pool: &DbPool, settings: QueueSettings) -> AppResult<LineState> {
    db::run(pool, move |conn| {
        async move {
            let (counters, controls) = model::read_line(conn).await?;
            let now = clock::now();
            let active = model::count_active(conn, now).await?;
            let minute_ago = now - chrono::Duration::seconds(60);
            let admitted_last_minute = model::count_admitted_since(conn, minute_ago).await?;
            let interval = settings.admit_interval_under(&controls);
            Ok(LineState {
                waiting: counters.waiting(),
                active,
                max_active_tokens: settings.max_active_under(&controls),
                admit_interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                paused: controls.admission_paused,
                admitted_last_minute,
            })
        }
        .boxed()
    })
    .await
}

/// Saves the change (after the admission turn under way, whose row lock
/// the write waits for) and answers the line as it then stands.
pub async fn change_line(
    pool: &DbPool,
    settings: QueueSettings,
    change: LineChange,
) -> AppResult<LineState> {
    let max_active = within(
        "maxActiveTokens",
        change.max_active_tokens,
        MAX_ACTIVE_RANGE,
    )?;
    let interval = within(
        "admitIntervalMs",
        change.admit_interval_ms,
        ADMIT_INTERVAL_RANGE,
    )?;
    db::run(pool, move |conn| {
        async move {
            crate::transaction_with_retry!(conn, |conn| {
                model::save_controls(conn, max_active, interval, change.paused)
                    .await
                    .map_err(AppError::from)
            })
        }
        .boxed()
    })
    .await?;
    line_state(pool, settings).await
}

fn within(
    name: &str,
    value: Option<i32>,
    range: std::ops::RangeInclusive<i32>,
) -> AppResult<Option<u32>> {
    match value {
        None => Ok(None),
        Some(value) if range.contains(&value) => Ok(u32::try_from(value).ok()),
        Some(value) => Err(AppError::invalid(format!(
            "{name} is {} to {}; got {value}",
            range.start(),
            range.end()
        ))),
    }
}
