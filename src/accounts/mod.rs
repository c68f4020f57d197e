//! Who may act for a user (`AUTH_MODE`).
//!
//! In `open` mode a user's id is its credential, as in a demo. In `jwt` mode
//! the account is the subject (`sub`) of a JWT the site's own sign-in
//! issued: `registerUser` binds a user to the caller's subject, and the
//! operations that name a user (`issueToken`, `chargeBalance`, `user(id)`)
//! act only for the caller's own. The other domains ask here through
//! `Accounts::authorize` and `Accounts::subject`; this module reads only the
//! users' `subject` column.

pub mod jwt;
pub mod model;
pub mod organizers;

use futures_util::FutureExt;
use uuid::Uuid;

use crate::batch::Batcher;
use crate::config::{AuthMode, Config};
use crate::db::{self, DbPool};
use crate::error::{AppError, AppResult, SharedFailure};
use jwt::JwtVerifier;

/// Subjects whose user is known, per process: a subject's user never
/// changes once registered, so a hit needs no database.
const KNOWN_SUBJECTS: usize = 100_000;

pub struct Accounts {
    /// `Some` in `jwt` mode.
    verifier: Option<JwtVerifier>,
    users_by_subject: quick_cache::sync::Cache<String, Uuid>,
    /// Subjects not in the cache, looked up together: in a rush every
    /// `issueToken` of a fan new to this process asks, and one query per
    /// batch costs the server far less than one per call.
    lookups: Option<Batcher<String, Result<Option<Uuid>, SharedFailure>>>,
}

/// Why another user's id is refused.
pub const NOT_YOURS: &str = "you may act only for your own user (the one of your JWT's subject)";

/// Subjects looked up in one query at the most.
const MAX_LOOKUP_BATCH: usize = 256;

fn spawn_lookups(pool: DbPool) -> Batcher<String, Result<Option<Uuid>, SharedFailure>> {
    Batcher::spawn(MAX_LOOKUP_BATCH, move |subjects: Vec<String>| {
        let pool = pool.clone();
        async move {
            let asked = subjects.clone();
            let found = db::run(&pool, move |conn| {
                async move { Ok(model::users_of_subjects(conn, &asked).await?) }.boxed()
            })
            .await;
            match found {
                Ok(found) => {
                    let users: std::collections::HashMap<String, Uuid> =
                        found.into_iter().collect();
                    subjects
                        .iter()
                        .map(|subject| Ok(users.get(subject).copied()))
                        .collect()
                }
                Err(error) => vec![Err(SharedFailure::of(&error)); subjects.len()],
            }
        }
    })
}

impl Accounts {
    pub fn from_config(config: &Config) -> AppResult<Self> {
        let verifier = match config.auth_mode {
            AuthMode::Open => {
                tracing::warn!(
                    "AUTH_MODE=open: anyone who knows a user's id may act for that user; \
                     use AUTH_MODE=jwt in front of real fans"
                );
                None
            }
            AuthMode::Jwt => {
                if config.token_secret.is_none() {
                    return Err(AppError::internal(
                        "AUTH_MODE=jwt needs TOKEN_SECRET: give every server the same one",
                    ));
                }
                Some(JwtVerifier::from_config(config)?)
            }
        };
        Ok(Self {
            verifier,
            users_by_subject: quick_cache::sync::Cache::new(KNOWN_SUBJECTS),
            lookups: None,
        })
    }

    /// Starts the batched subject lookups on this pool (`jwt` mode only).
    pub fn with_pool(mut self, pool: &DbPool) -> Self {
        if self.verifier.is_some() {
            self.lookups = Some(spawn_lookups(pool.clone()));
        }
        self
    }

    /// The subject of the caller's JWT in `jwt` mode (`None` in `open` mode);
    /// UNAUTHENTICATED when the JWT is missing or fails a check.
    pub fn subject(&self, bearer: Option<&str>) -> AppResult<Option<String>> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let jwt = bearer.ok_or(AppError::Unauthenticated(
            "this operation needs the JWT of your sign-in: send 'Authorization: Bearer <JWT>'",
        ))?;
        verifier.subject(jwt).map(Some)
    }

    /// Passes when the caller, of JWT subject `caller` (see `subject`), may
    /// act for `user_id`: always in `open` mode; in `jwt` mode only for the
    /// user of the caller's subject. Any other id, existing or not, is
    /// FORBIDDEN, so a stranger learns nothing of which ids exist.
    pub async fn authorize(
        &self,
        pool: &DbPool,
        caller: Option<String>,
        user_id: Uuid,
    ) -> AppResult<()> {
        if self.verifier.is_none() {
            return Ok(());
        }
        let subject = caller.ok_or(AppError::Unauthenticated(
            "this operation needs the JWT of your sign-in: send 'Authorization: Bearer <JWT>'",
        ))?;
        match self.user_of(pool, subject).await? {
            Some(own) if own == user_id => Ok(()),
            _ => Err(AppError::Forbidden(NOT_YOURS)),
        }
    }

    /// Which subject `issueToken` must check against `user_id` in its own
    /// transaction, which reads the users anyway: `None` when nothing is
    /// left to check (open mode, or this process knows the subject's user
    /// is `user_id`). FORBIDDEN when it knows another; UNAUTHENTICATED
    /// without a JWT.
    pub fn subject_to_check(
        &self,
        caller: Option<String>,
        user_id: Uuid,
    ) -> AppResult<Option<String>> {
        if self.verifier.is_none() {
            return Ok(None);
        }
        let subject = caller.ok_or(AppError::Unauthenticated(
            "this operation needs the JWT of your sign-in: send 'Authorization: Bearer <JWT>'",
        ))?;
        match self.users_by_subject.get(&subject) {
            Some(own) if own == user_id => Ok(None),
            Some(_) => Err(AppError::Forbidden(NOT_YOURS)),
            None => Ok(Some(subject)),
        }
    }

    /// The user registered for `subject`, if any.
    pub async fn user_of(&self, pool: &DbPool, subject: String) -> AppResult<Option<Uuid>> {
        if let Some(user) = self.users_by_subject.get(&subject) {
            return Ok(Some(user));
        }
        let found = match &self.lookups {
            Some(lookups) => lookups
                .call(subject.clone())
                .await?
                .map_err(AppError::from)?,
            None => {
                let lookup = subject.clone();
                db::run(pool, move |conn| {
                    async move { Ok(model::user_of_subject(conn, &lookup).await?) }.boxed()
                })
                .await?
            }
        };
        if let Some(user) = found {
            self.remember(subject, user);
        }
        Ok(found)
    }

    /// Notes a subject's user (registration tells it first).
    pub fn remember(&self, subject: String, user: Uuid) {
        self.users_by_subject.insert(subject, user);
    }
}
