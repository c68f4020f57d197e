//! The schema's one extension. It gives every request its scope (instant and
//! dataloaders) and runs the loaders' batches on the request's task; and it
//! gives every error a contract code: resolver errors carry theirs from
//! `AppError`, while what async-graphql itself reports (syntax, validation,
//! argument coercion, limits) arrives without one and is classified here.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextSubscribe, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, Selection};
use async_graphql::{Request, Response, ServerError, ServerResult, ValidationResult, Variables};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::context::RequestScope;
use super::documents::DocumentCache;
use super::entries::entries_in;
use super::nesting::{MAX_NESTING, nests_deeper_than};
use super::{MAX_COMPLEXITY, introspection};
use crate::AppState;
use crate::clock;
use crate::error::AppError;
use crate::limits::{ClientAddress, RetryAfter};

/// The longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

const LIMIT_MESSAGES: [&str; 4] = [
    "Query is too complex.",
    "Query is nested too deep.",
    "The recursion depth of the query cannot be greater than",
    "The number of directives on the field",
];

/// Made once with the schema; makes one `RequestSetup` per request.
#[derive(Default)]
pub struct RequestSetupFactory {
    documents: Arc<DocumentCache>,
}

impl ExtensionFactory for RequestSetupFactory {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestSetup {
            documents: Arc::clone(&self.documents),
            query: Mutex::new(None),
            started: Instant::now(),
            root_fields: Mutex::new(Vec::new()),
            operation_name: Mutex::new(None),
        })
    }
}

pub struct RequestSetup {
    documents: Arc<DocumentCache>,
    /// This request's query text, when it is one the cache keeps.
    query: Mutex<Option<String>>,
    started: Instant,
    /// Each operation's name and its first root field, for /metrics.
    root_fields: Mutex<Vec<(Option<String>, String)>>,
    /// The operation the request asks to run, for counting its entries.
    operation_name: Mutex<Option<String>>,
}

impl RequestSetup {
    fn cached_query(&self) -> Option<String> {
        self.query.lock().ok()?.clone()
    }

    fn note_root_fields(&self, document: &ExecutableDocument) {
        if let Ok(mut noted) = self.root_fields.lock() {
            *noted = document
                .operations
                .iter()
                .map(|(name, operation)| {
                    let root = match operation.node.selection_set.node.items.first() {
                        Some(selection) => match &selection.node {
                            Selection::Field(field) => field.node.name.node.to_string(),
                            _ => "fragment".to_owned(),
                        },
                        None => "none".to_owned(),
                    };
                    (name.map(|name| name.to_string()), root)
                })
                .collect();
        }
    }

    /// The executed operation's first root field. Validation has passed by
    /// then, so it is a field of the schema: the label's values are bounded.
    fn operation_label(&self, operation_name: Option<&str>) -> String {
        let Ok(noted) = self.root_fields.lock() else {
            return "unknown".to_owned();
        };
        let chosen = match operation_name {
            Some(wanted) => noted
                .iter()
                .find(|(name, _)| name.as_deref() == Some(wanted)),
            None => noted.first(),
        };
        chosen.map_or_else(|| "unknown".to_owned(), |(_, root)| root.clone())
    }

    /// Counts a request refused before it ran (a limit, a syntax or
    /// validation error), under the operation label `refused`.
    fn record_refused(&self, error: &ServerError) {
        crate::metrics::record_request(
            "refused".to_owned(),
            code_of(error),
            self.started.elapsed(),
        );
    }
}

/// Marks a request that came over a websocket, from this address.
pub struct OverWebsocket(pub ClientAddress);

fn rate_limited(refused: RetryAfter) -> ServerError {
    async_graphql::Error::from(AppError::RateLimited {
        retry_after_seconds: refused.seconds,
    })
    .into_server_error(Default::default())
}

impl RequestSetup {
    /// Spends the client's entries on those of the operation that will
    /// run, before anything of it runs: all of them pass, or none does.
    fn count_entries(
        &self,
        ctx: &ExtensionContext<'_>,
        document: &ExecutableDocument,
    ) -> Result<(), RetryAfter> {
        let client = match (
            ctx.data_opt::<ClientAddress>(),
            ctx.data_opt::<OverWebsocket>(),
        ) {
            (Some(client), _) | (None, Some(OverWebsocket(client))) => *client,
            // In-process callers (tests, the check) have no address.
            (None, None) => return Ok(()),
        };
        let Ok(state) = ctx.data::<AppState>() else {
            return Ok(());
        };
        let operation_name = self
            .operation_name
            .lock()
            .ok()
            .and_then(|name| name.clone());
        let entries = entries_in(document, operation_name.as_deref());
        state.limits.entries(client.0, entries)
    }

    /// Records a refusal and hands the error on.
    fn refused(&self, error: ServerError) -> ServerError {
        self.record_refused(&error);
        error
    }

    /// The parsed document: from the cache when the text is known, else
    /// parsed and checked against the introspection budget.
    async fn parsed(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if !DocumentCache::cacheable(query) {
            let document = next.run(ctx, query, variables).await.map_err(classify)?;
            return within_introspection_budget(document);
        }
        if let Ok(mut slot) = self.query.lock() {
            *slot = Some(query.to_owned());
        }
        if let Some(document) = self.documents.document(query) {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await.map_err(classify)?;
        let document = within_introspection_budget(document)?;
        self.documents.remember(query, &document);
        Ok(document)
    }
}

fn code_of(error: &ServerError) -> String {
    match error
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("code"))
    {
        Some(async_graphql::Value::String(code)) => code.clone(),
        _ => "INTERNAL".to_owned(),
    }
}

#[async_trait::async_trait]
impl Extension for RequestSetup {
    /// Every request, over HTTP or a websocket, gets its own instant and
    /// dataloaders; oversized queries, and queries nested deep enough to
    /// overflow the parser's stack, stop here, before it runs.
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if request.query.len() > MAX_QUERY_BYTES {
            return Err(self.refused(coded(
                ServerError::new(
                    format!("the query is larger than {MAX_QUERY_BYTES} bytes"),
                    None,
                ),
                "LIMIT_EXCEEDED",
            )));
        }
        if nests_deeper_than(&request.query, MAX_NESTING) {
            return Err(self.refused(coded(
                ServerError::new(
                    format!("the query nests deeper than {MAX_NESTING} levels"),
                    None,
                ),
                "LIMIT_EXCEEDED",
            )));
        }
        let state = ctx
            .data::<AppState>()
            .map_err(|e| e.into_server_error(Default::default()))?;
        // Over HTTP the request was counted as it arrived; over a websocket
        // each operation counts, as each would be a request over HTTP.
        if let Some(OverWebsocket(client)) = ctx.data_opt::<OverWebsocket>() {
            state
                .limits
                .request(client.0)
                .map_err(|refused| self.refused(rate_limited(refused)))?;
        }
        if let Ok(mut slot) = self.operation_name.lock() {
            slot.clone_from(&request.operation_name);
        }
        let request = request.data(RequestScope::new(state, clock::now()));
        next.run(ctx, request).await.map_err(classify)
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = self
            .parsed(ctx, query, variables, next)
            .await
            .map_err(|error| self.refused(error))?;
        self.note_root_fields(&document);
        self.count_entries(ctx, &document)
            .map_err(|refused| self.refused(rate_limited(refused)))?;
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let query = self.cached_query();
        if let Some(result) = query.as_deref().and_then(|q| self.documents.validation(q)) {
            return Ok(result);
        }
        let result = next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| self.refused(classify(error)))
                .collect::<Vec<_>>()
        })?;
        if let Some(query) = query {
            self.documents.remember_validation(&query, result);
        }
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = match ctx.data_opt::<RequestScope>() {
            Some(scope) => scope.batches.drive(next.run(ctx, operation_name)).await,
            None => next.run(ctx, operation_name).await,
        };
        let response = classify_response(response);
        let code = response
            .errors
            .first()
            .map_or_else(|| "ok".to_owned(), code_of);
        crate::metrics::record_request(
            self.operation_label(operation_name),
            code,
            self.started.elapsed(),
        );
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let stream = next.run(ctx, stream).map(classify_response).boxed();
        match ctx.data_opt::<RequestScope>() {
            Some(scope) => scope.batches.clone().drive_stream(stream),
            None => stream,
        }
    }
}

/// The document, unless its introspection lists nest deep enough to cost
/// more than the schema's budget (see `introspection`).
fn within_introspection_budget(document: ExecutableDocument) -> ServerResult<ExecutableDocument> {
    if introspection::cost(&document) > MAX_COMPLEXITY {
        return Err(coded(
            ServerError::new("Query is too complex.", None),
            "LIMIT_EXCEEDED",
        ));
    }
    Ok(document)
}

pub(super) fn classify_response(mut response: Response) -> Response {
    response.errors = response.errors.into_iter().map(classify).collect();
    response
}

/// Errors without a code are the client's: a limit, or a malformed query or
/// argument. Anything of ours already has its code.
fn classify(error: ServerError) -> ServerError {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|extensions| extensions.get("code").is_some());
    if has_code {
        return error;
    }
    let code = if LIMIT_MESSAGES.iter().any(|m| error.message.starts_with(m)) {
        "LIMIT_EXCEEDED"
    } else {
        "INVALID_INPUT"
    };
    coded(error, code)
}

fn coded(mut error: ServerError, code: &str) -> ServerError {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    error
}
