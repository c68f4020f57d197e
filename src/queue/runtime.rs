//! The line's per-process machinery: token signing, batched reads and
//! issues, the admission snapshot every subscriber follows, and the
//! admission rate that estimates waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::NaiveDateTime;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::cursor::CursorWaits;
use super::model::{QueueCounters, TokenRow};
use super::rate::AdmissionRate;
use super::service::{self, IssueRequest, QueueSettings, TokenState};
use super::token::{TokenClaims, TokenSealer};
use crate::batch::Batcher;
use crate::clock;
use crate::db::{DbPool, DbUuid};
use crate::error::{AppError, AppResult, SharedFailure};

/// Largest number of requests one batched statement serves.
const MAX_BATCH: usize = 512;

/// A token as the server sees it now: its row, its state and its bearer text.
#[derive(Debug, Clone)]
pub struct TokenView {
    pub token: String,
    pub row: TokenRow,
    pub state: TokenState,
    pub estimated_wait_seconds: Option<u64>,
}

/// The line as this process last read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub counters: QueueCounters,
}

/// A read of the line for one token: always the counters, and the token's
/// row when it has been admitted and the caller needs its state.
struct Lookup {
    seq: u64,
    with_row: bool,
}

/// The line's counters, and the token's row if it was asked for and has
/// been admitted.
type LookupAnswer = Result<(QueueCounters, Option<TokenRow>), SharedFailure>;

/// Where a token stands, as far as the line alone can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Waiting {
        position: u64,
    },
    /// ACTIVE, or EXPIRED since: the operation's own transaction tells which.
    Admitted,
}
type IssueAnswer = Result<(TokenRow, u64), IssueFailure>;

#[derive(Debug, Clone)]
enum IssueFailure {
    UnknownUser(String),
    NotYours,
    Failed(SharedFailure),
}

/// How many verified tokens `verify` remembers: the fans polling or acting
/// at once, the ones that ask again and again. ~200 bytes each.
const VERIFIED_TOKENS: usize = 16_384;

pub struct QueueRuntime {
    pub settings: QueueSettings,
    sealer: TokenSealer,
    /// Tokens already opened, by their text. Opening one is a decryption
    /// (~10 k instructions, 7 % of a `queueStatus`); the same text always
    /// opens to the same claims under this process's key, so a token seen
    /// before need not be opened again. Only tokens that opened are kept,
    /// so made-up texts cannot fill it.
    verified: quick_cache::sync::Cache<String, TokenClaims>,
    lookups: Batcher<Lookup, LookupAnswer>,
    issues: Batcher<IssueRequest, IssueAnswer>,
    snapshot: watch::Sender<QueueSnapshot>,
    /// Followers waiting for the cursor to move far enough to tell.
    pub cursor_waits: CursorWaits,
    admissions: Mutex<AdmissionRate>,
    /// Wakes the admission loop early, e.g. when a payment frees a slot.
    pub admission_wakeup: Notify,
    /// Admission turns this process has run, for /metrics.
    pub admission_turns: AtomicU64,
    /// Live `queueStatus` subscriptions in this process, for /metrics.
    subscribers: AtomicU64,
    /// When this process's admission loop last completed a turn.
    pub heartbeat: Heartbeat,
}

/// When a background loop last showed it is alive; never, until it starts.
#[derive(Debug)]
pub struct Heartbeat {
    since: Instant,
    /// Milliseconds from `since` to the last beat, plus one; 0: never.
    last: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        let at = self.since.elapsed().as_millis() as u64 + 1;
        self.last.store(at, Ordering::Relaxed);
    }

    /// How long since the last beat; `None` if the loop never started.
    pub fn silent_for(&self) -> Option<std::time::Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.since
                    .elapsed()
                    .saturating_sub(std::time::Duration::from_millis(at - 1)),
            ),
        }
    }
}

impl QueueRuntime {
    /// Lookups read through `pool`; issue batches write the line through
    /// `line_pool` (see `AppState::line_pool`).
    pub fn start(pool: DbPool, line_pool: DbPool, settings: QueueSettings, secret: &[u8]) -> Self {
        let lookups = spawn_lookups(pool);
        let issues = spawn_issues(line_pool, settings);
        let (snapshot, _) = watch::channel(QueueSnapshot {
            counters: QueueCounters {
                last_issued_seq: 0,
                admitted_through_seq: 0,
            },
        });
        Self {
            settings,
            sealer: TokenSealer::new(secret),
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS),
            lookups,
            issues,
            snapshot,
            cursor_waits: CursorWaits::default(),
            admissions: Mutex::new(AdmissionRate::default()),
            admission_wakeup: Notify::new(),
            admission_turns: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            heartbeat: Heartbeat::default(),
        }
    }

    /// The claims of a token this server sealed; anything else is
    /// UNAUTHENTICATED. Costs one decryption the first time and no I/O.
    pub fn verify(&self, bearer: &str) -> AppResult<TokenClaims> {
        let token = bearer.trim();
        if let Some(claims) = self.verified.get(token) {
            return Ok(claims);
        }
        let claims = self.sealer.verify(token).ok_or(AppError::Unauthenticated(
            "the token is not one this server issued",
        ))?;
        self.verified.insert(token.to_owned(), claims);
        Ok(claims)
    }

    /// The token's current state, read fresh (batched with concurrent reads).
    /// A token in line is answered from its claims and the counters; an
    /// admitted one from its row, which must match the claims.
    pub async fn view(&self, claims: &TokenClaims) -> AppResult<TokenView> {
        let forged = AppError::Unauthenticated("the token is not one this server issued");
        let lookup = Lookup {
            seq: claims.seq,
            with_row: true,
        };
        let (counters, row) = self.lookups.call(lookup).await?.map_err(AppError::from)?;
        let row = if claims.seq > counters.admitted_through_seq {
            if claims.seq > counters.last_issued_seq {
                return Err(forged);
            }
            TokenRow::waiting(
                claims.seq,
                DbUuid(claims.user_id),
                claims.issued_at,
                claims.nonce,
            )
        } else {
            row.filter(|row| row.user_id.0 == claims.user_id && row.nonce == claims.nonce)
                .ok_or(forged)?
        };
        self.observe(counters.admitted_through_seq);
        Ok(self.to_view(row, counters.admitted_through_seq, clock::now()))
    }

    /// Whether a token is still in line, from the line's counters alone: for
    /// operations whose transaction checks the token's row itself.
    pub async fn admission(&self, claims: &TokenClaims) -> AppResult<Admission> {
        let lookup = Lookup {
            seq: claims.seq,
            with_row: false,
        };
        let (counters, _) = self.lookups.call(lookup).await?.map_err(AppError::from)?;
        if claims.seq > counters.last_issued_seq {
            return Err(AppError::Unauthenticated(
                "the token is not one this server issued",
            ));
        }
        self.observe(counters.admitted_through_seq);
        Ok(
            match claims.seq.checked_sub(counters.admitted_through_seq) {
                Some(position) if position > 0 => Admission::Waiting { position },
                _ => Admission::Admitted,
            },
        )
    }

    /// `issueToken`: the user's live token, or a new place at the end of the
    /// line; with a `subject`, only if it is the user's (else FORBIDDEN).
    pub async fn issue(&self, user_id: Uuid, subject: Option<String>) -> AppResult<TokenView> {
        let (row, cursor) = self
            .issues
            .call(IssueRequest { user_id, subject })
            .await?
            .map_err(|failure| match failure {
                IssueFailure::UnknownUser(message) => AppError::NotFound(message),
                IssueFailure::NotYours => AppError::Forbidden(crate::accounts::NOT_YOURS),
                IssueFailure::Failed(failure) => failure.into(),
            })?;
        self.observe(cursor);
        Ok(self.to_view(row, cursor, clock::now()))
    }

    pub fn to_view(&self, row: TokenRow, cursor: u64, now: NaiveDateTime) -> TokenView {
        let token = self.sealer.seal(&claims_of(&row));
        self.view_with_token(row, cursor, now, token)
    }

    /// `to_view` with the row's token already sealed: a follower seals its
    /// token once, not at every move of the line.
    pub fn view_with_token(
        &self,
        row: TokenRow,
        cursor: u64,
        now: NaiveDateTime,
        token: String,
    ) -> TokenView {
        let state = TokenState::of(&row, cursor, now);
        let estimated_wait_seconds = match state {
            TokenState::Waiting { position } => Some(self.estimate_wait_seconds(position)),
            _ => None,
        };
        TokenView {
            token,
            row,
            state,
            estimated_wait_seconds,
        }
    }

    /// Counts a subscriber for as long as the returned guard lives.
    pub fn subscriber(self: &Arc<Self>) -> SubscriberGuard {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(Arc::clone(self))
    }

    pub fn subscriber_count(&self) -> u64 {
        self.subscribers.load(Ordering::Relaxed)
    }

    pub fn last_snapshot(&self) -> QueueSnapshot {
        *self.snapshot.borrow()
    }

    /// Records counters read from the database: they feed the admission rate
    /// and, when the cursor moved, every subscriber of this process. A longer
    /// line alone is kept without waking anyone: no follower's place changes
    /// when people join behind it, and during the arrivals of a rush that
    /// would wake every follower at every batch of `issueToken`.
    pub fn publish(&self, counters: QueueCounters) {
        self.observe(counters.admitted_through_seq);
        self.snapshot.send_if_modified(|current| {
            let cursor_moved =
                counters.admitted_through_seq > current.counters.admitted_through_seq;
            current.counters = QueueCounters {
                last_issued_seq: counters
                    .last_issued_seq
                    .max(current.counters.last_issued_seq),
                admitted_through_seq: counters
                    .admitted_through_seq
                    .max(current.counters.admitted_through_seq),
            };
            cursor_moved
        });
        let cursor = self.snapshot.borrow().counters.admitted_through_seq;
        self.cursor_waits.advance(cursor);
    }

    fn observe(&self, cursor: u64) {
        if let Ok(mut admissions) = self.admissions.lock() {
            admissions.record(Instant::now(), cursor);
        }
    }

    /// Seconds until admission at `position`, from the admission rate seen
    /// over the last minute. While the line is full every slot frees at least
    /// once per ACTIVE_TOKEN_SECONDS, so that turnover is the floor.
    pub fn estimate_wait_seconds(&self, position: u64) -> u64 {
        let guaranteed =
            self.settings.max_active as f64 / self.settings.active_ttl.num_seconds().max(1) as f64;
        let observed = self
            .admissions
            .lock()
            .map(|mut admissions| admissions.per_second(Instant::now()))
            .unwrap_or(0.0);
        let rate = observed.max(guaranteed);
        (position as f64 / rate).ceil() as u64
    }
}

/// Token reads, coalesced: one read of the counters (and of the admitted
/// tokens' rows that were asked for) answers every read waiting meanwhile.
fn spawn_lookups(pool: DbPool) -> Batcher<Lookup, LookupAnswer> {
    Batcher::spawn(MAX_BATCH, move |asked: Vec<Lookup>| {
        let pool = pool.clone();
        async move {
            let rows_wanted: Vec<u64> = asked
                .iter()
                .filter(|lookup| lookup.with_row)
                .map(|lookup| lookup.seq)
                .collect();
            let mut answered = service::lookup_batch(&pool, rows_wanted.clone()).await;
            if answered.as_ref().is_err_and(is_dead_link) {
                // A read: asking again, on a live connection, is always safe.
                answered = service::lookup_batch(&pool, rows_wanted).await;
            }
            match answered {
                // One token may be asked about several times in one batch.
                Ok((counters, rows)) => asked
                    .iter()
                    .map(|lookup| Ok((counters, rows.get(&lookup.seq).cloned())))
                    .collect(),
                Err(error) => {
                    tracing::error!(error = %error.detail(), "token lookup batch failed");
                    vec![Err(SharedFailure::of(&error)); asked.len()]
                }
            }
        }
    })
}

/// A batch that failed because its connection died (its node went down, the
/// database restarted): every caller would be told UNAVAILABLE, so the
/// batch is tried once more on another connection, which the pool checks.
fn is_dead_link(error: &AppError) -> bool {
    error.code() == "UNAVAILABLE"
}

/// `issueToken` calls, coalesced into one transaction per batch.
fn spawn_issues(pool: DbPool, settings: QueueSettings) -> Batcher<IssueRequest, IssueAnswer> {
    Batcher::spawn(MAX_BATCH, move |requests: Vec<IssueRequest>| {
        let pool = pool.clone();
        async move {
            let asked = requests.len();
            let mut issued = service::issue_batch(&pool, settings, requests.clone()).await;
            if issued.as_ref().is_err_and(is_dead_link) {
                // Safe to send again whether or not the first one committed:
                // a user who has a live token gets it back unchanged.
                issued = service::issue_batch(&pool, settings, requests).await;
            }
            match issued {
                Ok(answers) => answers
                    .into_iter()
                    .map(|answer| {
                        answer.map_err(|refused| match refused {
                            AppError::Forbidden(_) => IssueFailure::NotYours,
                            other => IssueFailure::UnknownUser(other.public_message()),
                        })
                    })
                    .collect(),
                Err(error) => {
                    tracing::error!(error = %error.detail(), "token issue batch failed");
                    vec![Err(IssueFailure::Failed(SharedFailure::of(&error))); asked]
                }
            }
        }
    })
}

pub struct SubscriberGuard(Arc<QueueRuntime>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn claims_of(row: &TokenRow) -> TokenClaims {
    let mut nonce = [0u8; 16];
    let stored = row.nonce.get(..16).unwrap_or(&[0u8; 16]);
    nonce.copy_from_slice(stored);
    TokenClaims {
        seq: row.seq,
        user_id: row.user_id.0,
        issued_at: row.issued_at,
        nonce,
    }
}
