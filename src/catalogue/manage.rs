//! Organizers' catalogue: new concerts and new dates, checked before
//! anything is written. A date's seats and prices are written with it, in
//! one transaction, and never change afterwards; that rule is what lets
//! every server keep them in memory (`directory`) without ever refreshing.

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use futures_util::FutureExt;

use super::model::{self, ConcertDateRow, ConcertRow};
use super::seed::SEATS_PER_DATE;
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult, is_unique_violation};
use crate::money::Money;
use crate::wallet::service::max_charge;

/// Concert names and venues: visible text, up to the column's width.
const MAX_TITLE_CHARS: usize = 200;

/// Seats `from_seat..=to_seat` at one price.
#[derive(Debug, Clone)]
pub struct SeatPrices {
    pub from_seat: i32,
    pub to_seat: i32,
    pub price: Money,
}

#[derive(Debug, Clone)]
pub struct NewDate {
    pub starts_at: NaiveDateTime,
    /// `None`: on sale at once.
    pub sales_open_at: Option<NaiveDateTime>,
    pub prices: Vec<SeatPrices>,
}

pub async fn create_concert(
    pool: &DbPool,
    name: &str,
    venue: &str,
    now: NaiveDateTime,
) -> AppResult<ConcertRow> {
    let name = title("name", name)?;
    let venue = title("venue", venue)?;
    db::run(pool, move |conn| {
        async move {
            let id = model::insert_concert(conn, &name, &venue, now).await?;
            Ok(ConcertRow { id, name, venue })
        }
        .boxed()
    })
    .await
}

/// Checks the date against `now`, then writes it and its 50 seats.
pub async fn add_date(
    pool: &DbPool,
    concert_id: u64,
    date: NewDate,
    now: NaiveDateTime,
) -> AppResult<ConcertDateRow> {
    let sales_open_at = check_times(&date, now)?;
    let prices = seat_prices(&date.prices)?;
    let starts_at = date.starts_at;
    db::run(pool, move |conn| {
        async move {
            crate::transaction_with_retry!(conn, |conn| {
                if !model::concert_exists(conn, concert_id).await? {
                    return Err(AppError::not_found(format!(
                        "no concert with id {concert_id}"
                    )));
                }
                let id = model::insert_date(conn, concert_id, starts_at, sales_open_at, &prices)
                    .await
                    .map_err(|error| {
                        if is_unique_violation(&error) {
                            AppError::invalid("the concert already has a date at that startsAt")
                        } else {
                            error.into()
                        }
                    })?;
                Ok(ConcertDateRow {
                    id,
                    concert_id,
                    starts_at,
                    sales_open_at,
                    cancelled_at: None,
                })
            })
        }
        .boxed()
    })
    .await
}

/// A date starts in the future and opens before it starts; no opening
/// given means now. Datetimes keep microseconds, as the columns do.
pub(super) fn check_times(date: &NewDate, now: NaiveDateTime) -> AppResult<NaiveDateTime> {
    if date.starts_at <= now {
        return Err(AppError::invalid("startsAt must be in the future"));
    }
    let sales_open_at = date.sales_open_at.unwrap_or(now);
    if sales_open_at >= date.starts_at {
        return Err(AppError::invalid("salesOpenAt must be before startsAt"));
    }
    Ok(sales_open_at)
}

/// Each seat's price, from ranges that cover seats 1 to 50 exactly once,
/// each price above 0 and at most a charge's largest.
pub fn seat_prices(ranges: &[SeatPrices]) -> AppResult<Vec<BigDecimal>> {
    let seats = usize::try_from(SEATS_PER_DATE).unwrap_or(50);
    let mut prices: Vec<Option<BigDecimal>> = vec![None; seats];
    for range in ranges {
        let (from, to) = (range.from_seat, range.to_seat);
        if from < 1 || to > SEATS_PER_DATE || from > to {
            return Err(AppError::invalid(format!(
                "seats {from} to {to}: a range runs from a lower to a higher seat, within 1 to {SEATS_PER_DATE}"
            )));
        }
        if !range.price.is_positive() || range.price > max_charge() {
            return Err(AppError::invalid(format!(
                "seats {from} to {to}: a price is above 0 and at most {}",
                max_charge()
            )));
        }
        for number in from..=to {
            let slot = usize::try_from(number - 1)
                .ok()
                .and_then(|index| prices.get_mut(index))
                .ok_or_else(|| AppError::invalid(format!("no seat {number}")))?;
            if slot.is_some() {
                return Err(AppError::invalid(format!(
                    "seat {number} is in more than one price range"
                )));
            }
            *slot = Some(range.price.as_decimal().clone());
        }
    }
    prices
        .into_iter()
        .enumerate()
        .map(|(index, price)| {
            price.ok_or_else(|| {
                AppError::invalid(format!("seat {} is in no price range", index + 1))
            })
        })
        .collect()
}

/// Names and venues follow the rules of a user's name (visible text, no
/// control characters), up to 200 characters.
pub(super) fn title(field: &str, text: &str) -> AppResult<String> {
    let trimmed = text.trim();
    if trimmed.chars().count() > MAX_TITLE_CHARS {
        return Err(AppError::invalid(format!(
            "a concert's {field} is at most {MAX_TITLE_CHARS} characters"
        )));
    }
    crate::wallet::service::visible_text(trimmed)
        .map_err(|why| AppError::invalid(format!("a concert's {field}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: i32, to: i32, price: &str) -> SeatPrices {
        SeatPrices {
            from_seat: from,
            to_seat: to,
            price: Money::parse(price).expect("money"),
        }
    }

    #[test]
    fn ranges_must_cover_every_seat_once() {
        let prices = seat_prices(&[range(11, 50, "99.00"), range(1, 10, "150.50")]).expect("ok");
        assert_eq!(prices.len(), 50);
        assert_eq!(prices[0].to_string(), "150.50");
        assert_eq!(prices[49].to_string(), "99.00");
        for bad in [
            vec![range(1, 49, "10")],
            vec![range(1, 30, "10"), range(30, 50, "10")],
            vec![range(0, 50, "10")],
            vec![range(1, 51, "10")],
            vec![range(20, 10, "10"), range(1, 50, "1")],
            vec![range(1, 50, "0")],
            vec![range(1, 50, "-5")],
            vec![range(1, 50, "10000000.01")],
            vec![],
        ] {
            assert!(seat_prices(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_date_starts_in_the_future_and_opens_before() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .expect("instant")
            .naive_utc();
        let date = |starts: i64, opens: Option<i64>| NewDate {
            starts_at: now + chrono::Duration::seconds(starts),
            sales_open_at: opens.map(|s| now + chrono::Duration::seconds(s)),
            prices: Vec::new(),
        };
        assert_eq!(check_times(&date(60, None), now).ok(), Some(now));
        assert!(check_times(&date(60, Some(30)), now).is_ok());
        assert!(
            check_times(&date(60, Some(-30)), now).is_ok(),
            "opened already"
        );
        assert!(check_times(&date(0, None), now).is_err());
        assert!(check_times(&date(-60, None), now).is_err());
        assert!(check_times(&date(60, Some(60)), now).is_err());
        assert!(check_times(&date(60, Some(90)), now).is_err());
    }
}
