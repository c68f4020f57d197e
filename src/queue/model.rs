//! Rows and queries of the waiting line. Every function runs on the
//! connection it is given, inside whatever transaction the caller opened.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Unsigned};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use super::token::TokenClaims;
use crate::db::schema::{queue_state, queue_tokens};
use crate::db::{DbUuid, Prepared, padded, power_of_two_pieces};
use crate::text_enum;

/// The stored status of a token. An ACTIVE row whose `expires_at` has passed
/// reads as EXPIRED everywhere, whether or not a sweep has rewritten it yet.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, diesel::AsExpression, diesel::FromSqlRow, async_graphql::Enum,
)]
#[diesel(sql_type = diesel::sql_types::Varchar)]
#[graphql(name = "TokenStatus")]
pub enum TokenStatus {
    /// In line; position and estimatedWaitSeconds are set.
    Waiting,
    /// Admitted: may browse, hold and pay until expiresAt.
    Active,
    /// Used up (payment), lapsed (TTL or an unpaid hold) - never valid again.
    Expired,
}

text_enum!(TokenStatus {
    Waiting = "WAITING",
    Active = "ACTIVE",
    Expired = "EXPIRED",
});

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = queue_tokens, check_for_backend(diesel::mysql::Mysql))]
pub struct TokenRow {
    pub seq: u64,
    pub user_id: DbUuid,
    pub nonce: Vec<u8>,
    pub status: TokenStatus,
    pub issued_at: NaiveDateTime,
    pub admitted_at: Option<NaiveDateTime>,
    pub expires_at: Option<NaiveDateTime>,
    pub live_holds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = queue_state, check_for_backend(diesel::mysql::Mysql))]
pub struct QueueCounters {
    pub last_issued_seq: u64,
    pub admitted_through_seq: u64,
}

/// The line's limits as organizers set them (`None`: the server's own
/// setting applies), kept on the counters' row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = queue_state, check_for_backend(diesel::mysql::Mysql))]
pub struct LineControls {
    pub max_active_tokens: Option<u32>,
    pub admit_interval_ms: Option<u32>,
    pub admission_paused: bool,
}

impl QueueCounters {
    pub fn waiting(&self) -> u64 {
        self.last_issued_seq - self.admitted_through_seq
    }
}

impl TokenRow {
    /// The row of a token still in line, as its claims describe it.
    pub fn waiting(seq: u64, user_id: DbUuid, issued_at: NaiveDateTime, nonce: [u8; 16]) -> Self {
        Self {
            seq,
            user_id,
            nonce: nonce.to_vec(),
            status: TokenStatus::Waiting,
            issued_at,
            admitted_at: None,
            expires_at: None,
            live_holds: 0,
        }
    }

    /// Whether this row is the token the claims describe.
    pub fn matches(&self, claims: &TokenClaims) -> bool {
        self.user_id.0 == claims.user_id && self.nonce == claims.nonce
    }

    pub fn is_active_at(&self, now: NaiveDateTime) -> bool {
        self.status == TokenStatus::Active && self.expires_at.is_some_and(|lapse| lapse > now)
    }
}

const STATE_ROW: u8 = 1;

/// Locks the line's counters: issuing and admitting take turns on this row,
/// in this process and in every other one on the same database.
/// The limits come with them: what is read under the lock is in force
/// until it is released, since changing them takes the same lock.
pub async fn lock_counters(
    conn: &mut AsyncMysqlConnection,
) -> QueryResult<(QueueCounters, LineControls)> {
    queue_state::table
        .find(STATE_ROW)
        .select((QueueCounters::as_select(), LineControls::as_select()))
        .for_update()
        .first(conn)
        .await
}

/// `lock_counters`, or `None` at once when another session holds the lock.
pub async fn lock_counters_unless_taken(
    conn: &mut AsyncMysqlConnection,
) -> QueryResult<Option<(QueueCounters, LineControls)>> {
    queue_state::table
        .find(STATE_ROW)
        .select((QueueCounters::as_select(), LineControls::as_select()))
        .for_update()
        .skip_locked()
        .first(conn)
        .await
        .optional()
}

/// The counters and the limits as they stand, without a lock.
pub async fn read_line(
    conn: &mut AsyncMysqlConnection,
) -> QueryResult<(QueueCounters, LineControls)> {
    queue_state::table
        .find(STATE_ROW)
        .select((QueueCounters::as_select(), LineControls::as_select()))
        .first(conn)
        .await
}

/// Sets the limits that are `Some`, and the pause when given.
pub async fn save_controls(
    conn: &mut AsyncMysqlConnection,
    max_active_tokens: Option<u32>,
    admit_interval_ms: Option<u32>,
    paused: Option<bool>,
) -> QueryResult<()> {
    let (max_active, interval, pause) = (
        max_active_tokens.map(|limit| queue_state::max_active_tokens.eq(Some(limit))),
        admit_interval_ms.map(|ms| queue_state::admit_interval_ms.eq(Some(ms))),
        paused.map(|paused| queue_state::admission_paused.eq(paused)),
    );
    if max_active.is_none() && interval.is_none() && pause.is_none() {
        return Ok(());
    }
    diesel::update(queue_state::table.find(STATE_ROW))
        .set((max_active, interval, pause))
        .execute(conn)
        .await
        .map(drop)
}

/// Tokens admitted at or after `since` (an index range of the recent ones).
pub async fn count_admitted_since(
    conn: &mut AsyncMysqlConnection,
    since: NaiveDateTime,
) -> QueryResult<u64> {
    let admitted: i64 = queue_tokens::table
        .filter(queue_tokens::admitted_at.ge(since))
        .count()
        .get_result(conn)
        .await?;
    Ok(u64::try_from(admitted).unwrap_or(0))
}

pub async fn read_counters(conn: &mut AsyncMysqlConnection) -> QueryResult<QueueCounters> {
    queue_state::table
        .find(STATE_ROW)
        .select(QueueCounters::as_select())
        .first(conn)
        .await
}

pub async fn save_counters(
    conn: &mut AsyncMysqlConnection,
    counters: QueueCounters,
) -> QueryResult<()> {
    Prepared(diesel::update(queue_state::table.find(STATE_ROW)).set((
        queue_state::last_issued_seq.eq(counters.last_issued_seq),
        queue_state::admitted_through_seq.eq(counters.admitted_through_seq),
    )))
    .execute(conn)
    .await
    .map(drop)
}

pub async fn tokens_by_seq(
    conn: &mut AsyncMysqlConnection,
    seqs: &[u64],
) -> QueryResult<Vec<TokenRow>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    // Prepared: every coalesced token read and every token check runs it.
    Prepared(
        queue_tokens::table
            .filter(queue_tokens::seq.eq_any(padded(seqs)))
            .select(TokenRow::as_select()),
    )
    .load(conn)
    .await
}

/// The live (WAITING or ACTIVE) token of each of these users that has one.
pub async fn live_tokens_of(
    conn: &mut AsyncMysqlConnection,
    users: &[DbUuid],
) -> QueryResult<Vec<TokenRow>> {
    queue_tokens::table
        .filter(queue_tokens::live_user_id.eq_any(users))
        .select(TokenRow::as_select())
        .load(conn)
        .await
}

/// Rewrites these users' lapsed ACTIVE tokens as EXPIRED, freeing the
/// one-live-token-per-user key for a new place in line.
pub async fn expire_lapsed_tokens_of(
    conn: &mut AsyncMysqlConnection,
    users: &[DbUuid],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        queue_tokens::table
            .filter(queue_tokens::live_user_id.eq_any(users))
            .filter(queue_tokens::status.eq(TokenStatus::Active))
            .filter(queue_tokens::expires_at.le(now)),
    )
    .set(queue_tokens::status.eq(TokenStatus::Expired))
    .execute(conn)
    .await
}

/// Rewrites every lapsed ACTIVE token as EXPIRED; its `expires_at` already
/// says when it ended.
pub async fn expire_lapsed_tokens(
    conn: &mut AsyncMysqlConnection,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    Prepared(
        diesel::update(
            queue_tokens::table
                .filter(queue_tokens::status.eq(TokenStatus::Active))
                .filter(queue_tokens::expires_at.le(now)),
        )
        .set(queue_tokens::status.eq(TokenStatus::Expired)),
    )
    .execute(conn)
    .await
}

/// Tokens that are ACTIVE now (a range read of at most the active set).
pub async fn count_active(conn: &mut AsyncMysqlConnection, now: NaiveDateTime) -> QueryResult<u64> {
    let active: i64 = queue_tokens::table
        .filter(queue_tokens::status.eq(TokenStatus::Active))
        .filter(queue_tokens::expires_at.gt(now))
        .count()
        .get_result(conn)
        .await?;
    Ok(u64::try_from(active).unwrap_or(0))
}

/// New tokens, in pieces of prepared statements of few shapes (see
/// `power_of_two_pieces`).
pub async fn insert_tokens(conn: &mut AsyncMysqlConnection, rows: &[TokenRow]) -> QueryResult<()> {
    for piece in power_of_two_pieces(rows) {
        Prepared(diesel::insert_into(queue_tokens::table).values(piece))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Admits the WAITING tokens with `after < seq <= through`. Each lapses at
/// `active_until`, or earlier if its user still has an unpaid hold from an
/// earlier token: the contract ends a user's ACTIVE token when any hold of
/// theirs lapses unpaid, so the earliest such lapse caps it from the start,
/// and those holds start its count of live holds.
pub async fn admit_range(
    conn: &mut AsyncMysqlConnection,
    after: u64,
    through: u64,
    now: NaiveDateTime,
    active_until: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE queue_tokens t \
         SET t.status = 'ACTIVE', t.admitted_at = ?, t.expires_at = LEAST(?, COALESCE( \
             (SELECT MIN(r.held_until) FROM reservations r \
              WHERE r.user_id = t.user_id AND r.status = 'HELD' AND r.held_until > ?), ?)), \
             t.live_holds = (SELECT COUNT(*) FROM reservations r \
              WHERE r.user_id = t.user_id AND r.status = 'HELD' AND r.held_until > ?) \
         WHERE t.seq > ? AND t.seq <= ? AND t.status = 'WAITING'",
    )
    .bind::<Datetime, _>(now)
    .bind::<Datetime, _>(active_until)
    .bind::<Datetime, _>(now)
    .bind::<Datetime, _>(active_until)
    .bind::<Datetime, _>(now)
    .bind::<Unsigned<BigInt>, _>(after)
    .bind::<Unsigned<BigInt>, _>(through)
    .execute(conn)
    .await
}

pub async fn find_token(
    conn: &mut AsyncMysqlConnection,
    seq: u64,
) -> QueryResult<Option<TokenRow>> {
    queue_tokens::table
        .find(seq)
        .select(TokenRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The bearer's own token row, if it is ACTIVE at `now`: this seq, with the
/// user and nonce the token claims.
#[diesel::dsl::auto_type]
fn bearer_token(
    seq: u64,
    user: DbUuid,
    nonce: Vec<u8>,
    status: TokenStatus,
    now: NaiveDateTime,
) -> _ {
    queue_tokens::table
        .find(seq)
        .filter(queue_tokens::user_id.eq(user))
        .filter(queue_tokens::nonce.eq(nonce))
        .filter(queue_tokens::status.eq(status))
        .filter(queue_tokens::expires_at.gt(now))
}

fn active_bearer_token(claims: &TokenClaims, now: NaiveDateTime) -> bearer_token {
    let nonce = claims.nonce.to_vec();
    bearer_token(
        claims.seq,
        DbUuid(claims.user_id),
        nonce,
        TokenStatus::Active,
        now,
    )
}

/// Ends the bearer's token now if it is ACTIVE (a payment). Locks the row;
/// false when it is not ACTIVE, or not this token.
pub async fn end_active_token(
    conn: &mut AsyncMysqlConnection,
    claims: &TokenClaims,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let ended = Prepared(diesel::update(active_bearer_token(claims, now)).set((
        queue_tokens::status.eq(TokenStatus::Expired),
        queue_tokens::expires_at.eq(now),
    )))
    .execute(conn)
    .await?;
    Ok(ended == 1)
}

/// Locks those of these tokens that are ACTIVE at `now`, in primary-key
/// order (a batch of holds). A lapsed or ended token stays unlocked (under
/// READ COMMITTED the lock of a row the condition rejects is let go at
/// once), so a fan calling with a dead token holds up no admission turn.
pub async fn lock_active_tokens(
    conn: &mut AsyncMysqlConnection,
    seqs: &[u64],
    now: NaiveDateTime,
) -> QueryResult<Vec<TokenRow>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    Prepared(
        queue_tokens::table
            .filter(queue_tokens::seq.eq_any(padded(seqs)))
            .filter(queue_tokens::status.eq(TokenStatus::Active))
            .filter(queue_tokens::expires_at.gt(now))
            .select(TokenRow::as_select())
            .for_update(),
    )
    .load(conn)
    .await
}

/// Takes `slots` more hold slots on each of these ACTIVE tokens (locked by
/// the caller and checked against the limit) and ends them no later than
/// `lapse`. Returns the rows written.
pub async fn take_hold_slots(
    conn: &mut AsyncMysqlConnection,
    seqs: &[u64],
    slots: u32,
    lapse: NaiveDateTime,
) -> QueryResult<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    Prepared(
        diesel::update(
            queue_tokens::table
                .filter(queue_tokens::seq.eq_any(padded(seqs)))
                .filter(queue_tokens::status.eq(TokenStatus::Active)),
        )
        .set((
            queue_tokens::live_holds.eq(queue_tokens::live_holds + slots),
            queue_tokens::expires_at.eq(least(queue_tokens::expires_at, lapse)),
        )),
    )
    .execute(conn)
    .await
}

diesel::define_sql_function! {
    /// SQL `LEAST`: the earlier of a lapse and another instant.
    fn least(a: diesel::sql_types::Nullable<Datetime>, b: Datetime) -> diesel::sql_types::Nullable<Datetime>;
}

/// Locks the bearer's token row if it is ACTIVE, as a hold does first, so
/// that a release takes turns with the user's holds. False otherwise.
pub async fn lock_active_token(
    conn: &mut AsyncMysqlConnection,
    claims: &TokenClaims,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let locked = active_bearer_token(claims, now)
        .select(queue_tokens::seq)
        .for_update()
        .first::<u64>(conn)
        .await
        .optional()?;
    Ok(locked.is_some())
}

/// Counts the user's live holds again on their ACTIVE token, after some
/// ended early (released, or their date cancelled), and lets the token run
/// to its full term or to the earliest hold still live: a hold that ended
/// early can no longer lapse, so it no longer caps the token.
pub async fn recount_live_holds(
    conn: &mut AsyncMysqlConnection,
    user: DbUuid,
    now: NaiveDateTime,
    active_ttl: chrono::Duration,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE queue_tokens t \
         SET t.live_holds = (SELECT COUNT(*) FROM reservations r \
              WHERE r.user_id = t.user_id AND r.status = 'HELD' AND r.held_until > ?), \
             t.expires_at = LEAST(t.admitted_at + INTERVAL ? SECOND, COALESCE( \
             (SELECT MIN(r.held_until) FROM reservations r \
              WHERE r.user_id = t.user_id AND r.status = 'HELD' AND r.held_until > ?), \
              t.admitted_at + INTERVAL ? SECOND)) \
         WHERE t.live_user_id = ? AND t.status = 'ACTIVE' AND t.expires_at > ?",
    )
    .bind::<Datetime, _>(now)
    .bind::<BigInt, _>(active_ttl.num_seconds())
    .bind::<Datetime, _>(now)
    .bind::<BigInt, _>(active_ttl.num_seconds())
    .bind::<diesel::sql_types::Binary, _>(user)
    .bind::<Datetime, _>(now)
    .execute(conn)
    .await
}
