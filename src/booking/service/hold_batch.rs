//! A batch of holds in one transaction: every request told exactly whether
//! it won, with the rules of a single hold.
//!
//! The transaction locks the batch's ACTIVE tokens (a dead one is only
//! read, to say why it is refused), reads its seats, then locks those of
//! them that are for sale (each in primary-key order, one statement each,
//! so two batches never wait on each other in a cycle), counts the tickets
//! its users have, and decides every request in arrival order from those
//! rows in memory (`decide`). A seat that is sold or held is refused from
//! the read alone: a hold never waits for the payment or the release of a
//! seat it could not have had. The winners are then written with one
//! statement per table: the tokens' slots, the seats (still conditional on
//! being holdable, and counted), the reservations. (The lapse sweep locks
//! lapsed seats in lapse order, so it can deadlock with a batch taking
//! several of them; the database then rolls one back and it runs again.)
//!
//! Why the limits stay exact: every row a grant depends on is locked
//! before it is read (the token carries the user's live holds, and a user's
//! holds all lock that token first, as payments and releases do), and the
//! ticket count is a statement of its own after those locks (READ
//! COMMITTED: each statement sees every commit before it), so it sees every
//! hold of these users that committed before.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;

use super::BookingSettings;
use super::hold::new_hold;
use crate::booking::model::{self, ReservationRow, SeatState};
use crate::catalogue::directory::SeatFacts;
use crate::catalogue::model::SeatStatus;
use crate::clock;
use crate::db::DbUuid;
use crate::error::{AppError, AppResult};
use crate::queue;
use crate::queue::model::TokenRow;
use crate::queue::token::TokenClaims;

/// One `holdSeat` call, checked already against the seat's date.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub token: TokenClaims,
    pub seat: SeatFacts,
}

/// What the rows say of one request.
#[derive(Debug)]
enum Verdict {
    /// A new hold, to be written.
    Granted(ReservationRow),
    /// The seat's live hold, read before the batch: the caller's own hold
    /// is answered again, anyone else's is a refusal.
    HeldBy(DbUuid),
    Refused(AppError),
}

/// Runs the batch in the caller's transaction; one answer per request.
pub(super) async fn hold_all(
    conn: &mut AsyncMysqlConnection,
    settings: BookingSettings,
    requests: &[HoldRequest],
) -> AppResult<Vec<AppResult<ReservationRow>>> {
    // Read once the connection is ours: every lapse is judged by it.
    let now = clock::now();
    let tokens = active_tokens_locked(conn, requests, now).await?;
    let seats = seats_for_sale_locked(conn, requests, now).await?;
    let tickets = tickets_held(conn, requests, now).await?;
    let verdicts = decide(requests, &tokens, seats, &tickets, settings, now);
    write_grants(conn, &verdicts, now + settings.hold, now).await?;
    answer(conn, requests, verdicts).await
}

/// The batch's tokens: those ACTIVE at `now` locked, the others read only
/// to say why they are refused (`Locked::No`: never granted anything).
async fn active_tokens_locked(
    conn: &mut AsyncMysqlConnection,
    requests: &[HoldRequest],
    now: NaiveDateTime,
) -> AppResult<Vec<(TokenRow, Locked)>> {
    let seqs: Vec<u64> = requests
        .iter()
        .map(|request| request.token.seq)
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    let locked = queue::model::lock_active_tokens(conn, &seqs, now).await?;
    let dead: Vec<u64> = seqs
        .into_iter()
        .filter(|seq| !locked.iter().any(|row| row.seq == *seq))
        .collect();
    let mut tokens: Vec<(TokenRow, Locked)> =
        locked.into_iter().map(|row| (row, Locked::Yes)).collect();
    for row in queue::model::tokens_by_seq(conn, &dead).await? {
        tokens.push((row, Locked::No));
    }
    Ok(tokens)
}

/// Whether a row was read under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locked {
    Yes,
    No,
}

/// The batch's seats: those for sale at `now` as locked (the lock may show
/// that someone has taken one since), the others as read. Only a locked
/// seat can be granted, since only those read as holdable are locked.
async fn seats_for_sale_locked(
    conn: &mut AsyncMysqlConnection,
    requests: &[HoldRequest],
    now: NaiveDateTime,
) -> AppResult<Vec<SeatState>> {
    let ids: BTreeSet<u64> = requests
        .iter()
        .map(|request| request.seat.seat_id)
        .collect();
    let read = model::seats_by_ids(conn, &Vec::from_iter(ids)).await?;
    let for_sale: Vec<u64> = read
        .iter()
        .filter(|seat| seat.is_holdable_at(now))
        .map(|seat| seat.id)
        .collect();
    let mut locked: HashMap<u64, SeatState> = model::lock_seats(conn, &for_sale)
        .await?
        .into_iter()
        .map(|seat| (seat.id, seat))
        .collect();
    Ok(read
        .into_iter()
        .map(|seat| locked.remove(&seat.id).unwrap_or(seat))
        .collect())
}

/// Seats each (user, date) of the batch holds live or owns.
async fn tickets_held(
    conn: &mut AsyncMysqlConnection,
    requests: &[HoldRequest],
    now: NaiveDateTime,
) -> AppResult<HashMap<(DbUuid, u64), i64>> {
    let users: BTreeSet<DbUuid> = requests
        .iter()
        .map(|request| DbUuid(request.token.user_id))
        .collect();
    let counted = model::tickets_of_users(conn, &Vec::from_iter(users), now).await?;
    Ok(counted
        .into_iter()
        .map(|(user, date, count)| ((user, date), count))
        .collect())
}

/// Decides every request in arrival order, as if each ran alone after the
/// ones before it: a seat granted to an earlier request is held for the
/// later ones, and each grant counts against its token's and user's limits.
fn decide(
    requests: &[HoldRequest],
    tokens: &[(TokenRow, Locked)],
    seats: Vec<SeatState>,
    tickets: &HashMap<(DbUuid, u64), i64>,
    settings: BookingSettings,
    now: NaiveDateTime,
) -> Vec<Verdict> {
    let tokens: HashMap<u64, (&TokenRow, Locked)> = tokens
        .iter()
        .map(|(row, locked)| (row.seq, (row, *locked)))
        .collect();
    let mut seats: HashMap<u64, SeatState> = seats.into_iter().map(|row| (row.id, row)).collect();
    let mut slots_taken: HashMap<u64, u32> = HashMap::new();
    let mut tickets_taken: HashMap<(DbUuid, u64), i64> = HashMap::new();
    let mut verdicts = Vec::with_capacity(requests.len());
    for request in requests {
        let (token, facts) = (&request.token, &request.seat);
        let Some(seat) = seats.get_mut(&facts.seat_id) else {
            verdicts.push(Verdict::Refused(AppError::not_found("no such seat")));
            continue;
        };
        let ticket_key = (DbUuid(token.user_id), facts.concert_date_id);
        let refusal = match tokens.get(&token.seq) {
            // Only a token read under its lock can be granted anything.
            Some((row, Locked::Yes)) if row.matches(token) && row.is_active_at(now) => {
                let owned = tickets.get(&ticket_key).copied().unwrap_or(0)
                    + tickets_taken.get(&ticket_key).copied().unwrap_or(0);
                let slots = row.live_holds + slots_taken.get(&token.seq).copied().unwrap_or(0);
                refusal(seat, slots, owned, settings, now)
            }
            Some((row, _)) if row.matches(token) => Some(Verdict::Refused(AppError::TokenExpired)),
            _ => Some(Verdict::Refused(AppError::Unauthenticated(
                "the token is not one this server issued",
            ))),
        };
        if let Some(verdict) = refusal {
            verdicts.push(verdict);
            continue;
        }
        let reservation = new_hold(token, facts, settings, now);
        seat.status = SeatStatus::Held;
        seat.held_by_reservation_id = Some(reservation.id);
        seat.held_until = Some(reservation.held_until);
        *slots_taken.entry(token.seq).or_default() += 1;
        *tickets_taken.entry(ticket_key).or_default() += 1;
        verdicts.push(Verdict::Granted(reservation));
    }
    verdicts
}

/// Why a request with a valid token does not get the seat, checked in the
/// order a single hold checks: a live hold on the seat (the caller's own is
/// answered again, later), the token's hold slots, the seat's state, the
/// user's tickets of the date. `None`: it gets the seat.
fn refusal(
    seat: &SeatState,
    slots: u32,
    owned: i64,
    settings: BookingSettings,
    now: NaiveDateTime,
) -> Option<Verdict> {
    if let Some(holder) = seat.live_hold(now) {
        return Some(Verdict::HeldBy(holder));
    }
    if slots >= settings.max_holds_per_user {
        return Some(Verdict::Refused(AppError::HoldLimit {
            limit: settings.max_holds_per_user,
        }));
    }
    if !seat.is_holdable_at(now) {
        return Some(Verdict::Refused(AppError::SeatUnavailable(
            match seat.status {
                SeatStatus::Sold => "this seat is sold",
                SeatStatus::Cancelled => "this date was cancelled",
                _ => "someone else took this seat first",
            },
        )));
    }
    if owned >= i64::from(settings.max_tickets_per_user) {
        return Some(Verdict::Refused(AppError::TicketLimit {
            limit: settings.max_tickets_per_user,
        }));
    }
    None
}

/// Writes the grants: each token's new slots (one statement per number of
/// slots taken, nearly always one), the seats, the reservations. A count
/// that differs from the grants means a row changed under its lock, which
/// cannot happen; the batch then fails rather than answer wrongly.
async fn write_grants(
    conn: &mut AsyncMysqlConnection,
    verdicts: &[Verdict],
    lapse: NaiveDateTime,
    now: NaiveDateTime,
) -> AppResult<()> {
    let grants: Vec<ReservationRow> = verdicts
        .iter()
        .filter_map(|verdict| match verdict {
            Verdict::Granted(reservation) => Some(reservation.clone()),
            _ => None,
        })
        .collect();
    if grants.is_empty() {
        return Ok(());
    }
    let mut slots: BTreeMap<u64, u32> = BTreeMap::new();
    for grant in &grants {
        *slots.entry(grant.token_seq).or_default() += 1;
    }
    let mut tokens_by_slots: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (seq, taken) in slots {
        tokens_by_slots.entry(taken).or_default().push(seq);
    }
    for (taken, seqs) in tokens_by_slots {
        let written = queue::model::take_hold_slots(conn, &seqs, taken, lapse).await?;
        expect_rows("token", written, seqs.len())?;
    }
    let seats: Vec<(u64, DbUuid)> = grants
        .iter()
        .map(|grant| (grant.seat_id, grant.id))
        .collect();
    expect_rows(
        "seat",
        model::hold_seats(conn, &seats, lapse, now).await?,
        seats.len(),
    )?;
    model::insert_reservations(conn, &grants).await?;
    Ok(())
}

fn expect_rows(table: &str, written: usize, expected: usize) -> AppResult<()> {
    if written == expected {
        Ok(())
    } else {
        Err(AppError::internal(format!(
            "a hold batch wrote {written} {table} rows of {expected}"
        )))
    }
}

/// Each request's answer. A seat found held is answered with the hold when
/// it is the caller's own (taken before, or earlier in this batch), and
/// refused otherwise.
async fn answer(
    conn: &mut AsyncMysqlConnection,
    requests: &[HoldRequest],
    verdicts: Vec<Verdict>,
) -> AppResult<Vec<AppResult<ReservationRow>>> {
    let mut holds: HashMap<DbUuid, ReservationRow> = verdicts
        .iter()
        .filter_map(|verdict| match verdict {
            Verdict::Granted(reservation) => Some((reservation.id, reservation.clone())),
            _ => None,
        })
        .collect();
    let unknown: Vec<DbUuid> = verdicts
        .iter()
        .filter_map(|verdict| match verdict {
            Verdict::HeldBy(holder) if !holds.contains_key(holder) => Some(*holder),
            _ => None,
        })
        .collect();
    for row in model::reservations_by_ids(conn, &unknown).await? {
        holds.insert(row.id, row);
    }
    Ok(requests
        .iter()
        .zip(verdicts)
        .map(|(request, verdict)| match verdict {
            Verdict::Granted(reservation) => Ok(reservation),
            Verdict::Refused(error) => Err(error),
            Verdict::HeldBy(holder) => match holds.get(&holder) {
                Some(hold) if hold.user_id.0 == request.token.user_id => Ok(hold.clone()),
                _ => Err(AppError::SeatUnavailable("someone else holds this seat")),
            },
        })
        .collect())
}
