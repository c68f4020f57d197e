//! What a resolver can take from its context: the application state, the
//! bearer token of the request or websocket connection, and the per-request
//! scope (its instant and its dataloaders).

use std::sync::{Arc, OnceLock};

use async_graphql::Context;
use std::hash::Hash;

use async_graphql::dataloader::{DataLoader, Loader};
use chrono::NaiveDateTime;

use super::loading::LoaderTasks;
use crate::AppState;
use crate::booking::loader::BookingLoader;
use crate::catalogue::loader::CatalogueLoader;
use crate::db::DbPool;
use crate::error::{AppError, AppResult};
use crate::queue::token::TokenClaims;
use crate::wallet::loader::WalletLoader;

/// The `Authorization: Bearer` token of an HTTP request, or of a websocket
/// connection's `connection_init` payload.
#[derive(Debug, Clone, Default)]
pub struct Bearer(pub Option<String>);

impl Bearer {
    /// Reads `Bearer <token>` (the scheme is case-insensitive).
    pub fn from_header(value: Option<&str>) -> Self {
        let token = value.and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
        Self(token.filter(|token| !token.is_empty()))
    }
}

/// Built once per GraphQL request, whatever the transport. The loaders are
/// made on first use: most requests need none, and a websocket subscriber
/// should not carry three of them for its whole life.
pub struct RequestScope {
    /// The request's instant: every lapse in one response is judged by it.
    pub now: NaiveDateTime,
    pool: DbPool,
    catalogue: OnceLock<DataLoader<CatalogueLoader>>,
    booking: OnceLock<DataLoader<BookingLoader>>,
    wallet: OnceLock<DataLoader<WalletLoader>>,
    /// The caller's JWT subject, checked once however many fields ask (a
    /// query of 250 aliased `user` fields checks one signature, not 250).
    caller: OnceLock<Result<Option<String>, &'static str>>,
    /// Where the loaders' batches wait for the request's task to run them.
    pub batches: LoaderTasks,
}

impl RequestScope {
    pub fn new(state: &AppState, now: NaiveDateTime) -> Self {
        Self {
            now,
            pool: state.pool.clone(),
            catalogue: OnceLock::new(),
            booking: OnceLock::new(),
            wallet: OnceLock::new(),
            caller: OnceLock::new(),
            batches: LoaderTasks::default(),
        }
    }

    /// The batches run when the resolvers have all asked (see `loading`),
    /// so there is no delay to wait out.
    fn loader<T: Send + Sync + 'static>(&self, loader: T) -> DataLoader<T> {
        DataLoader::new(loader, self.batches.spawner()).delay(std::time::Duration::ZERO)
    }

    pub fn catalogue(&self) -> &DataLoader<CatalogueLoader> {
        self.catalogue
            .get_or_init(|| self.loader(CatalogueLoader::new(self.pool.clone(), self.now)))
    }

    pub fn booking(&self) -> &DataLoader<BookingLoader> {
        self.booking
            .get_or_init(|| self.loader(BookingLoader::new(self.pool.clone())))
    }

    pub fn wallet(&self) -> &DataLoader<WalletLoader> {
        self.wallet
            .get_or_init(|| self.loader(WalletLoader::new(self.pool.clone())))
    }
}

pub trait AppContext {
    fn app(&self) -> &AppState;
    fn scope(&self) -> &RequestScope;
}

impl AppContext for Context<'_> {
    fn app(&self) -> &AppState {
        self.data_unchecked::<AppState>()
    }

    fn scope(&self) -> &RequestScope {
        self.data_unchecked::<RequestScope>()
    }
}

/// The request's (or websocket connection's) `Authorization: Bearer`
/// credential, whatever it is: a queue token, or in `jwt` mode a JWT.
pub fn bearer<'a>(ctx: &'a Context<'_>) -> Option<&'a str> {
    ctx.data_opt::<Bearer>()
        .and_then(|bearer| bearer.0.as_deref())
}

/// The subject of the caller's JWT in `jwt` mode (`None` in `open` mode),
/// checked once per request; UNAUTHENTICATED when it is missing or bad.
pub fn caller(ctx: &Context<'_>) -> AppResult<Option<String>> {
    let check = || {
        ctx.app()
            .accounts
            .subject(bearer(ctx))
            .map_err(|refused| match refused {
                AppError::Unauthenticated(why) => why,
                _ => "the credential could not be checked",
            })
    };
    match ctx.data_opt::<RequestScope>() {
        Some(scope) => scope.caller.get_or_init(check).clone(),
        None => check(),
    }
    .map_err(AppError::Unauthenticated)
}

/// The claims of the request's bearer token, from its seal alone (the
/// queue remembers tokens it has opened, so the guard and the resolver
/// asking in turn open it once). The token guard has already read its
/// state where an operation needs one.
pub fn bearer_claims(ctx: &Context<'_>) -> AppResult<TokenClaims> {
    let bearer = ctx
        .data_opt::<Bearer>()
        .and_then(|bearer| bearer.0.as_deref())
        .ok_or(AppError::Unauthenticated(
            "this operation needs a queue token: send 'Authorization: Bearer <token>' from issueToken",
        ))?;
    ctx.app().queue.verify(bearer)
}

/// The token a websocket connection carried in its `connection_init` payload.
pub fn connection_bearer(ctx: &Context<'_>) -> AppResult<String> {
    ctx.data_opt::<Bearer>()
        .and_then(|bearer| bearer.0.clone())
        .ok_or(AppError::Unauthenticated(
            "pass the token as the argument or as Authorization in the connection_init payload",
        ))
}

/// Dataloader errors are shared between the fields of one batch.
pub fn shared_error(error: Arc<AppError>) -> async_graphql::Error {
    async_graphql::ErrorExtensions::extend(error.as_ref())
}

/// The rows a loader keeps under `key` (none if it has none), each wrapped
/// as its GraphQL type.
pub async fn load_list<L, K, R, T>(
    loader: &DataLoader<L>,
    key: K,
    wrap: impl Fn(R) -> T,
) -> async_graphql::Result<Vec<T>>
where
    L: Loader<K, Value = Vec<R>, Error = Arc<AppError>>,
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    let rows = loader.load_one(key).await.map_err(shared_error)?;
    Ok(rows.unwrap_or_default().into_iter().map(wrap).collect())
}

/// The row under `key`, if there is one, wrapped as its GraphQL type.
pub async fn load_optional<L, K, R, T>(
    loader: &DataLoader<L>,
    key: K,
    wrap: impl Fn(R) -> T,
) -> async_graphql::Result<Option<T>>
where
    L: Loader<K, Value = R, Error = Arc<AppError>>,
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    let row = loader.load_one(key).await.map_err(shared_error)?;
    Ok(row.map(wrap))
}

/// The row a foreign key promises is there, wrapped as its GraphQL type.
pub async fn load_required<L, K, R, T>(
    loader: &DataLoader<L>,
    key: K,
    wrap: impl Fn(R) -> T,
) -> async_graphql::Result<T>
where
    L: Loader<K, Value = R, Error = Arc<AppError>>,
    K: Send + Sync + Hash + Eq + Clone + std::fmt::Debug + 'static,
{
    let missing = format!("{key:?}");
    match loader.load_one(key).await.map_err(shared_error)? {
        Some(row) => Ok(wrap(row)),
        None => Err(AppError::internal(format!("{missing} is referenced but missing")).into()),
    }
}

/// Groups a loader's rows under their parent key, keeping the query's order.
pub fn group_by<K: std::hash::Hash + Eq, V>(
    rows: Vec<V>,
    key: impl Fn(&V) -> K,
) -> std::collections::HashMap<K, Vec<V>> {
    let mut grouped: std::collections::HashMap<K, Vec<V>> = std::collections::HashMap::new();
    for row in rows {
        grouped.entry(key(&row)).or_default().push(row);
    }
    grouped
}
