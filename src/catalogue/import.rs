//! `ticket-reservation catalogue import FILE`: concerts, dates, opening
//! times and prices from TOML (see `catalogue/demo.toml`), with the checks
//! of `addConcertDate`. All or nothing: every entry is checked before one
//! row is written, and the rows go in one transaction. Importing the same
//! file twice adds nothing: a concert is known by its name and venue, a
//! date by its concert and start.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Days, NaiveDateTime, NaiveTime};
use diesel_async::{AsyncConnection, AsyncMysqlConnection};
use futures_util::FutureExt;
use serde::Deserialize;

use super::manage::{self, NewDate, SeatPrices};
use super::model;
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult};
use crate::money::Money;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default, rename = "concert")]
    concerts: Vec<ConcertEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConcertEntry {
    name: String,
    venue: String,
    #[serde(default, rename = "date")]
    dates: Vec<DateEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DateEntry {
    starts_at: Option<String>,
    days_from_now: Option<u32>,
    /// With `days_from_now`: the UTC time of day, `HH:MM`.
    at: Option<String>,
    sales_open_at: Option<String>,
    opens_days_from_now: Option<u32>,
    prices: Vec<PriceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    from_seat: i32,
    to_seat: i32,
    price: String,
}

/// A checked catalogue, ready to write.
#[derive(Debug, Clone)]
pub struct Plan {
    concerts: Vec<PlannedConcert>,
}

#[derive(Debug, Clone)]
struct PlannedConcert {
    name: String,
    venue: String,
    dates: Vec<PlannedDate>,
}

#[derive(Debug, Clone)]
struct PlannedDate {
    starts_at: NaiveDateTime,
    sales_open_at: NaiveDateTime,
    prices: Vec<BigDecimal>,
}

/// What an import wrote, and what it found already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub concerts_added: usize,
    pub dates_added: usize,
    pub dates_already_there: usize,
}

/// Reads and checks a catalogue; the error names the entry at fault.
pub fn plan(text: &str, now: NaiveDateTime) -> AppResult<Plan> {
    let file: CatalogueFile = toml::from_str(text)
        .map_err(|error| AppError::invalid(format!("not a catalogue file: {error}")))?;
    let concerts = file
        .concerts
        .into_iter()
        .enumerate()
        .map(|(index, concert)| {
            planned_concert(concert, now)
                .map_err(|error| at_entry(format!("concert {}", index + 1), error))
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(Plan { concerts })
}

fn planned_concert(concert: ConcertEntry, now: NaiveDateTime) -> AppResult<PlannedConcert> {
    let name = manage::title("name", &concert.name)?;
    let venue = manage::title("venue", &concert.venue)?;
    let dates = concert
        .dates
        .into_iter()
        .enumerate()
        .map(|(index, date)| {
            planned_date(date, now).map_err(|error| at_entry(format!("date {}", index + 1), error))
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(PlannedConcert { name, venue, dates })
}

fn planned_date(date: DateEntry, now: NaiveDateTime) -> AppResult<PlannedDate> {
    let starts_at = instant(
        date.starts_at.as_deref(),
        date.days_from_now,
        date.at.as_deref(),
        now,
    )?
    .ok_or_else(|| AppError::invalid("give starts_at, or days_from_now with at"))?;
    let sales_open_at = instant(
        date.sales_open_at.as_deref(),
        date.opens_days_from_now,
        date.at.as_deref(),
        now,
    )?;
    let prices = date
        .prices
        .into_iter()
        .map(|range| {
            Ok(SeatPrices {
                from_seat: range.from_seat,
                to_seat: range.to_seat,
                price: Money::parse(&range.price).map_err(AppError::invalid)?,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let new = NewDate {
        starts_at,
        sales_open_at,
        prices,
    };
    let sales_open_at = manage::check_times(&new, now)?;
    let prices = manage::seat_prices(&new.prices)?;
    Ok(PlannedDate {
        starts_at,
        sales_open_at,
        prices,
    })
}

/// An RFC 3339 instant, or a number of days from today at a UTC time of day.
fn instant(
    exact: Option<&str>,
    days_from_now: Option<u32>,
    at: Option<&str>,
    now: NaiveDateTime,
) -> AppResult<Option<NaiveDateTime>> {
    match (exact, days_from_now) {
        (Some(_), Some(_)) => Err(AppError::invalid(
            "give an instant or a number of days from now, not both",
        )),
        (Some(text), None) => DateTime::parse_from_rfc3339(text)
            .map(|instant| Some(instant.naive_utc()))
            .map_err(|_| AppError::invalid(format!("{text:?} is not an RFC 3339 instant"))),
        (None, Some(days)) => {
            let time = NaiveTime::parse_from_str(at.unwrap_or("19:00"), "%H:%M")
                .map_err(|_| AppError::invalid("at is a UTC time of day, HH:MM"))?;
            now.date()
                .checked_add_days(Days::new(u64::from(days)))
                .map(|day| Some(day.and_time(time)))
                .ok_or_else(|| AppError::invalid("days_from_now is too far"))
        }
        (None, None) => Ok(None),
    }
}

fn at_entry(entry: String, error: AppError) -> AppError {
    match error {
        AppError::InvalidInput(why) => AppError::invalid(format!("{entry}: {why}")),
        other => other,
    }
}

/// Writes the plan in one transaction: a concert of the same name and venue
/// is reused, a date of the same concert and start is left as it is.
pub async fn import(pool: &DbPool, plan: Plan) -> AppResult<Imported> {
    db::run(pool, move |conn| {
        async move {
            conn.transaction::<_, AppError, _>(async |conn| import_on(conn, &plan).await)
                .await
        }
        .boxed()
    })
    .await
}

/// `import`, inside the caller's transaction.
pub async fn import_on(conn: &mut AsyncMysqlConnection, plan: &Plan) -> AppResult<Imported> {
    let mut imported = Imported::default();
    for concert in &plan.concerts {
        let concert_id = match model::find_concert(conn, &concert.name, &concert.venue).await? {
            Some(id) => id,
            None => {
                imported.concerts_added += 1;
                model::insert_concert(conn, &concert.name, &concert.venue, crate::clock::now())
                    .await?
            }
        };
        for date in &concert.dates {
            if model::date_exists(conn, concert_id, date.starts_at).await? {
                imported.dates_already_there += 1;
                continue;
            }
            model::insert_date(
                conn,
                concert_id,
                date.starts_at,
                date.sales_open_at,
                &date.prices,
            )
            .await?;
            imported.dates_added += 1;
        }
    }
    Ok(imported)
}

/// The demo catalogue, checked against `now`.
pub fn demo(now: NaiveDateTime) -> AppResult<Plan> {
    plan(include_str!("../../catalogue/demo.toml"), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> NaiveDateTime {
        DateTime::from_timestamp(1_800_000_000, 0)
            .expect("instant")
            .naive_utc()
    }

    #[test]
    fn the_demo_catalogue_is_a_valid_file() {
        let plan = demo(now()).expect("the demo parses and passes the checks");
        assert_eq!(plan.concerts.len(), 3);
        let dates: usize = plan.concerts.iter().map(|c| c.dates.len()).sum();
        assert_eq!(dates, 7);
    }

    #[test]
    fn a_bad_entry_is_named() {
        let text = r#"
            [[concert]]
            name = "A"
            venue = "B"
            [[concert.date]]
            starts_at = "2030-01-01T19:00:00Z"
            prices = [{ from_seat = 1, to_seat = 50, price = "10.00" }]
            [[concert.date]]
            starts_at = "2030-01-02T19:00:00Z"
            prices = [{ from_seat = 1, to_seat = 49, price = "10.00" }]
        "#;
        let error = plan(text, now()).expect_err("seat 50 has no price");
        let message = error.public_message();
        assert!(message.contains("concert 1: date 2"), "{message}");
        assert!(message.contains("seat 50"), "{message}");
        assert!(plan("[[concert]]\nname = 1", now()).is_err());
        assert!(
            plan(
                "[[concert]]\nname = \"A\"\nvenue = \"B\"\ncolour = 3",
                now()
            )
            .is_err()
        );
    }
}
