//! The rules of the waiting line: who is in, who waits where, who is out.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel_async::AsyncMysqlConnection;
use futures_util::FutureExt;
use uuid::Uuid;

use super::model::{self, LineControls, QueueCounters, TokenRow, TokenStatus};
use super::token::random_nonce;
use crate::clock;
use crate::db::{self, DbPool, DbUuid};
use crate::error::{AppError, AppResult};

/// The settings of the line, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub max_active: u64,
    pub active_ttl: chrono::Duration,
    pub admit_interval: std::time::Duration,
}

impl QueueSettings {
    /// How many may be ACTIVE under these controls.
    pub fn max_active_under(&self, controls: &LineControls) -> u64 {
        controls
            .max_active_tokens
            .map_or(self.max_active, u64::from)
    }

    /// The longest a free slot waits under these controls.
    pub fn admit_interval_under(&self, controls: &LineControls) -> std::time::Duration {
        controls
            .admit_interval_ms
            .map_or(self.admit_interval, |ms| {
                std::time::Duration::from_millis(u64::from(ms))
            })
    }
}

/// What a token is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Waiting { position: u64 },
    Active { expires_at: NaiveDateTime },
    Expired { at: Option<NaiveDateTime> },
}

impl TokenState {
    /// Status and position from the stored row and the admission cursor read
    /// with it. Every token after the cursor is WAITING, and sequence numbers
    /// have no gaps, so the position is a subtraction.
    pub fn of(row: &TokenRow, admitted_through: u64, now: NaiveDateTime) -> Self {
        match (row.status, row.expires_at) {
            (TokenStatus::Waiting, _) => Self::Waiting {
                position: row.seq.saturating_sub(admitted_through).max(1),
            },
            (TokenStatus::Active, Some(expires_at)) if expires_at > now => {
                Self::Active { expires_at }
            }
            (_, at) => Self::Expired { at },
        }
    }

    pub fn status(&self) -> TokenStatus {
        match self {
            Self::Waiting { .. } => TokenStatus::Waiting,
            Self::Active { .. } => TokenStatus::Active,
            Self::Expired { .. } => TokenStatus::Expired,
        }
    }
}

/// Issues tokens for a batch of `issueToken` calls in one transaction, in
/// arrival order. Each answer is the user's live token (an existing one, or
/// a new one at the end of the line) with the admission cursor after the
/// batch, or NOT_FOUND for an unknown user.
pub async fn issue_batch(
    pool: &DbPool,
    settings: QueueSettings,
    requests: Vec<IssueRequest>,
) -> AppResult<Vec<AppResult<(TokenRow, u64)>>> {
    db::run(pool, move |conn| {
        async move {
            crate::transaction_with_retry!(conn, |conn| {
                issue_in_transaction(conn, settings, &requests).await
            })
        }
        .boxed()
    })
    .await
}

/// One `issueToken` call: the user, and with `AUTH_MODE=jwt` the caller's
/// subject when it is still to be checked against that user's.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub user_id: Uuid,
    pub subject: Option<String>,
}

/// Whether the request may act for its user, of this subject (`None`: the
/// user does not exist). A request naming no subject was checked already.
fn may_act(
    request: &IssueRequest,
    users: &HashMap<DbUuid, Option<String>>,
) -> Result<(), AppError> {
    match (users.get(&DbUuid(request.user_id)), &request.subject) {
        (Some(_), None) => Ok(()),
        (Some(Some(own)), Some(caller)) if own == caller => Ok(()),
        // Another's user, or none at all: the same answer, so that a
        // stranger learns nothing of which ids exist.
        (_, Some(_)) => Err(AppError::Forbidden(crate::accounts::NOT_YOURS)),
        (None, None) => Err(AppError::not_found(format!(
            "no user with id {}",
            request.user_id
        ))),
    }
}

async fn issue_in_transaction(
    conn: &mut AsyncMysqlConnection,
    settings: QueueSettings,
    requests: &[IssueRequest],
) -> AppResult<Vec<AppResult<(TokenRow, u64)>>> {
    let (counters, controls) = model::lock_counters(conn).await?;
    // Read once the line is ours: lapses and admissions are judged by it.
    let now = clock::now();
    let user_ids: Vec<Uuid> = requests.iter().map(|request| request.user_id).collect();
    let distinct: Vec<DbUuid> = distinct_in_order(&user_ids);
    let users: HashMap<DbUuid, Option<String>> =
        crate::accounts::model::subjects_of(conn, &distinct)
            .await?
            .into_iter()
            .collect();
    let allowed: HashSet<DbUuid> = requests
        .iter()
        .filter(|request| may_act(request, &users).is_ok())
        .map(|request| DbUuid(request.user_id))
        .collect();
    let known_in_order: Vec<DbUuid> = distinct
        .into_iter()
        .filter(|id| allowed.contains(id))
        .collect();
    model::expire_lapsed_tokens_of(conn, &known_in_order, now).await?;
    let mut live: HashMap<DbUuid, TokenRow> = model::live_tokens_of(conn, &known_in_order)
        .await?
        .into_iter()
        .map(|row| (row.user_id, row))
        .collect();

    let newcomers: Vec<DbUuid> = known_in_order
        .into_iter()
        .filter(|id| !live.contains_key(id))
        .collect();
    let issued = new_waiting_tokens(&newcomers, counters.last_issued_seq, now);
    let mut after = QueueCounters {
        last_issued_seq: counters.last_issued_seq + issued.len() as u64,
        ..counters
    };
    if !issued.is_empty() {
        model::insert_tokens(conn, &issued).await?;
        live.extend(issued.into_iter().map(|row| (row.user_id, row)));
        // Nobody overtakes: newcomers go straight in only when nobody waits.
        if counters.waiting() == 0 {
            after = admit_next(conn, settings, &controls, after, now).await?;
            let seqs: Vec<u64> =
                (counters.admitted_through_seq + 1..=after.admitted_through_seq).collect();
            if !seqs.is_empty() {
                for row in model::tokens_by_seq(conn, &seqs).await? {
                    live.insert(row.user_id, row);
                }
            }
        }
        model::save_counters(conn, after).await?;
    }

    Ok(requests
        .iter()
        .map(|request| {
            may_act(request, &users)?;
            live.get(&DbUuid(request.user_id))
                .map(|row| (row.clone(), after.admitted_through_seq))
                .ok_or_else(|| AppError::internal("an allowed user got no token"))
        })
        .collect())
}

fn distinct_in_order(user_ids: &[Uuid]) -> Vec<DbUuid> {
    let mut seen = HashSet::with_capacity(user_ids.len());
    user_ids
        .iter()
        .filter(|id| seen.insert(**id))
        .map(|id| DbUuid(*id))
        .collect()
}

fn new_waiting_tokens(users: &[DbUuid], last_issued: u64, now: NaiveDateTime) -> Vec<TokenRow> {
    users
        .iter()
        .zip(last_issued + 1..)
        .map(|(user_id, seq)| TokenRow {
            seq,
            user_id: *user_id,
            nonce: random_nonce().to_vec(),
            status: TokenStatus::Waiting,
            issued_at: now,
            admitted_at: None,
            expires_at: None,
            live_holds: 0,
        })
        .collect()
}

/// Admits as many of the earliest WAITING tokens as there are free slots and
/// returns the counters moved past them (the caller saves them). Runs under
/// the counters row lock, under the organizers' controls read with it:
/// nobody is admitted while admission is paused.
async fn admit_next(
    conn: &mut AsyncMysqlConnection,
    settings: QueueSettings,
    controls: &LineControls,
    counters: QueueCounters,
    now: NaiveDateTime,
) -> AppResult<QueueCounters> {
    if counters.waiting() == 0 || controls.admission_paused {
        return Ok(counters);
    }
    let active = model::count_active(conn, now).await?;
    let admit = settings
        .max_active_under(controls)
        .saturating_sub(active)
        .min(counters.waiting());
    if admit == 0 {
        return Ok(counters);
    }
    let through = counters.admitted_through_seq + admit;
    let active_until = now + settings.active_ttl;
    model::admit_range(
        conn,
        counters.admitted_through_seq,
        through,
        now,
        active_until,
    )
    .await?;
    Ok(QueueCounters {
        admitted_through_seq: through,
        ..counters
    })
}

/// Reads the line's counters and the rows of the admitted tokens among
/// `seqs`. A token after the cursor is WAITING and its own claims say all
/// there is to say, so its row is not read: the cost of a read does not
/// depend on how long the line is.
pub async fn lookup_batch(
    pool: &DbPool,
    seqs: Vec<u64>,
) -> AppResult<(QueueCounters, HashMap<u64, TokenRow>)> {
    db::run(pool, move |conn| lookup_on(conn, seqs).boxed()).await
}

async fn lookup_on(
    conn: &mut AsyncMysqlConnection,
    seqs: Vec<u64>,
) -> AppResult<(QueueCounters, HashMap<u64, TokenRow>)> {
    let counters = model::read_counters(conn).await?;
    let admitted: std::collections::BTreeSet<u64> = seqs
        .iter()
        .copied()
        .filter(|seq| *seq <= counters.admitted_through_seq)
        .collect();
    let rows = if admitted.is_empty() {
        Vec::new()
    } else {
        let admitted: Vec<u64> = admitted.into_iter().collect();
        model::tokens_by_seq(conn, &admitted).await?
    };
    Ok((
        counters,
        rows.into_iter().map(|row| (row.seq, row)).collect(),
    ))
}

/// One turn of the admission loop: rewrite lapsed tokens, then admit the
/// earliest WAITING tokens into the free slots. The counters row lock makes
/// concurrent turns from several processes take turns, so the limit and the
/// order hold across processes. A turn that finds the lock taken does not
/// wait for it (`None`): the holder is admitting or issuing right now, and
/// if it froze while holding the lock, waiting would freeze this process's
/// line with it; the next turn comes within half an interval.
pub async fn admit_waiting(
    pool: &DbPool,
    settings: QueueSettings,
) -> AppResult<Option<AdmissionTurn>> {
    db::run(pool, move |conn| {
        async move {
            crate::transaction_with_retry!(conn, |conn| {
                let Some((before, controls)) = model::lock_counters_unless_taken(conn).await?
                else {
                    return Ok(None);
                };
                let now = clock::now();
                model::expire_lapsed_tokens(conn, now).await?;
                let after = admit_next(conn, settings, &controls, before, now).await?;
                if after != before {
                    model::save_counters(conn, after).await?;
                }
                Ok(Some(AdmissionTurn {
                    controls,
                    counters: after,
                    admitted: after.admitted_through_seq - before.admitted_through_seq,
                }))
            })
        }
        .boxed()
    })
    .await
}

/// What one admission turn saw and did.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionTurn {
    pub counters: QueueCounters,
    /// The organizers' controls in force during the turn.
    pub controls: LineControls,
    /// Tokens this turn admitted.
    pub admitted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, status: TokenStatus, expires_at: Option<NaiveDateTime>) -> TokenRow {
        TokenRow {
            seq,
            user_id: DbUuid(Uuid::nil()),
            nonce: vec![0; 16],
            status,
            issued_at: NaiveDateTime::default(),
            admitted_at: expires_at,
            expires_at,
            live_holds: 0,
        }
    }

    #[test]
    fn position_is_the_distance_from_the_cursor() {
        let now = crate::clock::now();
        let waiting = row(1_000_007, TokenStatus::Waiting, None);
        assert_eq!(
            TokenState::of(&waiting, 1_000_000, now),
            TokenState::Waiting { position: 7 }
        );
    }

    #[test]
    fn an_active_token_past_its_lapse_reads_expired() {
        let now = crate::clock::now();
        let later = now + chrono::Duration::seconds(5);
        let earlier = now - chrono::Duration::seconds(5);
        assert_eq!(
            TokenState::of(&row(1, TokenStatus::Active, Some(later)), 1, now),
            TokenState::Active { expires_at: later }
        );
        assert_eq!(
            TokenState::of(&row(1, TokenStatus::Active, Some(earlier)), 1, now),
            TokenState::Expired { at: Some(earlier) }
        );
        assert_eq!(
            TokenState::of(&row(1, TokenStatus::Active, Some(now)), 1, now),
            TokenState::Expired { at: Some(now) }
        );
    }
}
