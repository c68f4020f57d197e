//! The HTTP surface: GraphQL over HTTP and websockets, GraphiQL, health
//! checks, and the layers every request passes through.

mod ws;

use std::time::Duration;

use std::sync::Arc;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::OperationType;
use async_graphql::{Executor, ParseRequestError};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{ConnectInfo, FromRequestParts, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tower::util::option_layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::config::Origins;
use crate::error::{AppError, OVERLOADED_MESSAGE};
use crate::graphql::context::Bearer;
use crate::graphql::nesting::{MAX_NESTING, nests_deeper_than};
use crate::graphql::{self, AppSchema};
use crate::limits::{ClientAddress, RetryAfter};

/// The largest request body accepted; a GraphQL request is a few KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Websocket buffers: messages here are small, and a subscriber should cost
/// a few KiB, not the 128 KiB tungstenite reserves by default.
const WS_READ_BUFFER: usize = 256;
const WS_WRITE_BUFFER: usize = 512;
const WS_MAX_MESSAGE: usize = 64 * 1024;

#[derive(Clone)]
struct HttpState {
    app: AppState,
    schema: AppSchema,
    /// One permit per open websocket, up to MAX_WEBSOCKETS.
    websockets: Arc<Semaphore>,
    /// One permit per GraphQL request or websocket upgrade being worked
    /// on, up to MAX_IN_FLIGHT.
    in_flight: Arc<Semaphore>,
}

pub fn router(app: AppState) -> Router {
    crate::metrics::install();
    let schema = graphql::build_schema(app.clone());
    let max_in_flight = app.config.max_in_flight as usize;
    let websockets = Arc::new(Semaphore::new(app.config.max_websockets as usize));
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let cors = cors(&app.config.cors_allowed_origins);
    // Requests taking longer than this are answered 408 and dropped.
    let request_timeout = app.config.request_timeout();
    let state = HttpState {
        app,
        schema,
        websockets,
        in_flight,
    };
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        // The per-address limit, then the bound on work in flight; health,
        // metrics and GraphiQL stay outside both.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), admit))
        .route("/", get(graphiql))
        .route("/graphiql/{file}", get(graphiql_asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::map_response_with_state(
            request_timeout,
            bare_refusals_as_graphql_errors,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        // Outside the rest, so that refusals (429, 503) carry CORS headers
        // too and a page can read them.
        .layer(option_layer(cors))
        .layer(TraceLayer::new_for_http().on_failure(log_failure))
}

/// The router, served with each connection's peer address, which the
/// per-address limits need.
pub fn app(state: AppState) -> IntoMakeServiceWithConnectInfo<Router, SocketAddr> {
    router(state).into_make_service_with_connect_info::<SocketAddr>()
}

/// The address a request counts against, as `per_address` found it.
fn client_of(request: &axum::extract::Request, state: &HttpState) -> Option<ClientAddress> {
    let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    Some(ClientAddress::of(
        *peer,
        request.headers(),
        &state.app.config.trusted_proxies.0,
    ))
}

/// Lets a request to `/graphql` in, or refuses it at once:
///
/// 1. against its address's limit (429 past it), first, so that one address
///    past its limit spends none of the work in flight others need; the
///    address goes on with the request for the entry limit, which needs the
///    parsed operation;
/// 2. against the work in flight: past MAX_IN_FLIGHT requests at once the
///    next is refused with 503 `OVERLOADED` rather than queued, so a rush
///    cannot make everyone (and the health checks) wait.
///
/// One layer, not a stack of tower's (load shedding over a concurrency
/// limit, its error handler, two middlewares): each layer costs every
/// request a boxed future and a clone of the service below it.
async fn admit(
    State(state): State<HttpState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Served without peer addresses (`router` alone, in-process): no limit.
    if let Some(client) = client_of(&request, &state) {
        if let Err(refused) = state.app.limits.request(client.0) {
            crate::metrics::record_refusal("rate_limited");
            return rate_limited(refused);
        }
        request.extensions_mut().insert(client);
    }
    let Ok(_permit) = state.in_flight.try_acquire() else {
        return overloaded("in_flight");
    };
    let _counted = crate::metrics::InFlight::start();
    next.run(request).await
}

/// 429 RATE_LIMITED, with when to try again in `Retry-After` and in the
/// error's extensions.
fn rate_limited(refused: RetryAfter) -> Response {
    let error = AppError::RateLimited {
        retry_after_seconds: refused.seconds,
    };
    let body = json!({"errors": [{
        "message": error.public_message(),
        "extensions": {"code": error.code(), "retryAfterSeconds": refused.seconds},
    }]});
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, refused.seconds.into());
    response
}

/// tower-http's CORS for the configured origins: the preflight answered,
/// `Authorization` and `Content-Type` allowed, `Retry-After` readable.
/// No origins: no layer, so no CORS header at all.
fn cors(origins: &Origins) -> Option<CorsLayer> {
    if origins.0.is_empty() {
        return None;
    }
    let allowed = origins
        .0
        .iter()
        .filter_map(|origin| header::HeaderValue::from_str(origin).ok())
        .collect::<Vec<_>>();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(CORS_MAX_AGE),
    )
}

/// How long a browser may reuse a preflight's answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// Browsers send `Origin` with a websocket upgrade but apply no CORS to it:
/// the server must check it. A page of the server's own origin (GraphiQL)
/// or of `CORS_ALLOWED_ORIGINS` may connect; so may clients that are not
/// browsers, which send no `Origin`.
fn websocket_origin_allowed(headers: &HeaderMap, allowed: &Origins) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed.0.iter().any(|allowed| allowed == origin) {
        return true;
    }
    let own_host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, authority)| authority.trim_end_matches('/'));
    matches!((own_host, origin_host), (Some(own), Some(from)) if own.eq_ignore_ascii_case(from))
}

fn bearer_of(headers: &HeaderMap) -> Bearer {
    Bearer::from_header(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok()),
    )
}

/// `POST /graphql` takes JSON only. A browser may send a form or text/plain
/// to any site without asking first; JSON makes it ask (CORS preflight), so
/// another site cannot post a mutation with a visitor's browser.
async fn graphql_post(
    State(state): State<HttpState>,
    client: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    _: JsonContentType,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match graphql_request_of(body) {
        Ok(request) => request.data(bearer_of(&headers)),
        Err(refusal) => return refusal.into_response(),
    };
    execute(&state, with_client(request, client)).await
}

/// The request, with the address its entries count against.
fn with_client(
    request: async_graphql::Request,
    client: Option<Extension<ClientAddress>>,
) -> async_graphql::Request {
    match client {
        Some(Extension(client)) => request.data(client),
        None => request,
    }
}

/// Why a POST body holds no GraphQL request.
enum RefusedBody {
    TooLarge,
    NotGraphql(String),
}

impl IntoResponse for RefusedBody {
    fn into_response(self) -> Response {
        match self {
            Self::TooLarge => body_too_large(),
            Self::NotGraphql(why) => not_graphql(&why),
        }
    }
}

/// The one GraphQL request a POST body holds, or why not: a body past the
/// size cap, a batch, or one that is not `{"query": ...}` JSON (serde says
/// where: "expected value at line 1 column 1").
fn graphql_request_of(
    body: Result<Bytes, BytesRejection>,
) -> Result<async_graphql::Request, RefusedBody> {
    let body = body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            RefusedBody::TooLarge
        }
        other => {
            tracing::debug!(error = %other.body_text(), "request body unreadable");
            RefusedBody::NotGraphql("the request body could not be read".to_owned())
        }
    })?;
    if body.trim_ascii_start().starts_with(b"[") {
        return Err(RefusedBody::NotGraphql(
            "send one operation per request; batches are not supported".to_owned(),
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|error| RefusedBody::NotGraphql(format!("not a GraphQL request as JSON: {error}")))
}

/// Passes requests declared `Content-Type: application/json`; answers the
/// rest 415 before their body is read.
struct JsonContentType;

impl<S: Send + Sync> FromRequestParts<S> for JsonContentType {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if json {
            Ok(Self)
        } else {
            Err(graphql_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "INVALID_INPUT",
                "send the GraphQL request as Content-Type: application/json",
            ))
        }
    }
}

/// `GET /graphql?query=...` runs queries only: a GET must never change
/// anything, or a link could buy tickets.
async fn graphql_get(
    State(state): State<HttpState>,
    client: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    request: GraphQLRequest<UnreadableQueryString>,
) -> Response {
    let request = request.into_inner();
    if changes_state(&request) {
        return graphql_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "INVALID_INPUT",
            "mutations and subscriptions need POST /graphql or the websocket",
        );
    }
    let request = with_client(request.data(bearer_of(&headers)), client);
    execute(&state, request).await
}

async fn execute(state: &HttpState, request: async_graphql::Request) -> Response {
    let schema = graphql::CodedSchema(state.schema.clone());
    let response = schema.execute(request).await;
    let retry_after = retry_after_of(&response);
    let mut response = GraphQLResponse::from(response).into_response();
    // Past the entry limit: the status and header of any 429.
    if let Some(seconds) = retry_after {
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

/// `retryAfterSeconds` of a RATE_LIMITED error, if the response has one.
fn retry_after_of(response: &async_graphql::Response) -> Option<u64> {
    response.errors.iter().find_map(|error| {
        let extensions = error.extensions.as_ref()?;
        match (extensions.get("code"), extensions.get("retryAfterSeconds")) {
            (
                Some(async_graphql::Value::String(code)),
                Some(async_graphql::Value::Number(seconds)),
            ) if code == "RATE_LIMITED" => seconds.as_u64(),
            _ => None,
        }
    })
}

/// A refusal outside any operation, shaped like the errors of one so that a
/// client reads every answer of `/graphql` the same way.
fn graphql_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"errors": [{"message": message, "extensions": {"code": code}}]});
    (status, Json(body)).into_response()
}

/// A GET whose query string is not a GraphQL request (variables that are
/// not JSON, say), answered as a GraphQL error rather than
/// async-graphql-axum's plain-text debug dump.
struct UnreadableQueryString;

impl From<ParseRequestError> for UnreadableQueryString {
    fn from(error: ParseRequestError) -> Self {
        tracing::debug!(%error, "unreadable GraphQL query string");
        Self
    }
}

impl IntoResponse for UnreadableQueryString {
    fn into_response(self) -> Response {
        not_graphql("GET /graphql takes ?query=... and, optionally, variables as JSON")
    }
}

/// 503 OVERLOADED, with a hint of when to try again; counted by `reason`.
fn overloaded(reason: &'static str) -> Response {
    crate::metrics::record_refusal(reason);
    let mut response = graphql_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "OVERLOADED",
        OVERLOADED_MESSAGE,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

fn not_graphql(message: &str) -> Response {
    graphql_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", message)
}

fn body_too_large() -> Response {
    graphql_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "LIMIT_EXCEEDED",
        &format!("a request body is at most {} KiB", MAX_BODY_BYTES / 1024),
    )
}

/// The layers and the router refuse some requests to `/graphql` by
/// themselves, with an empty or plain-text body: a body over the cap (413),
/// a request past the time limit (408), a method the path does not take
/// (405). Answer those as GraphQL errors too.
async fn bare_refusals_as_graphql_errors(
    State(request_timeout): State<Duration>,
    uri: Uri,
    response: Response,
) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json || !uri.path().starts_with("/graphql") {
        return response;
    }
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        StatusCode::REQUEST_TIMEOUT => graphql_error(
            StatusCode::REQUEST_TIMEOUT,
            "INTERNAL",
            &format!(
                "the request took longer than {} ms and was stopped",
                request_timeout.as_millis()
            ),
        ),
        StatusCode::METHOD_NOT_ALLOWED => graphql_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "INVALID_INPUT",
            "use POST /graphql, GET /graphql?query= for queries, or the websocket at /graphql/ws",
        ),
        _ => response,
    }
}

fn changes_state(request: &async_graphql::Request) -> bool {
    if nests_deeper_than(&request.query, MAX_NESTING) {
        return false; // the schema refuses it before parsing
    }
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false; // the schema answers the syntax error itself
    };
    document
        .operations
        .iter()
        .any(|(_, operation)| operation.node.ty != OperationType::Query)
}

async fn graphql_ws(
    State(state): State<HttpState>,
    client: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !websocket_origin_allowed(&headers, &state.app.config.cors_allowed_origins) {
        let reason = "a page of this origin may not open the websocket";
        return (StatusCode::FORBIDDEN, reason).into_response();
    }
    // Served without peer addresses: every socket counts as one address.
    let client = client.map_or(
        ClientAddress(std::net::IpAddr::from([0, 0, 0, 0])),
        |Extension(client)| client,
    );
    let bearer = bearer_of(&headers);
    // Speak the subprotocol axum names in the upgrade response: our first
    // preference among those the client offers.
    let upgrade = upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS);
    let Some(protocol) = ws::protocol_of(upgrade.selected_protocol()) else {
        let reason = "offer the graphql-transport-ws or graphql-ws subprotocol";
        return (StatusCode::BAD_REQUEST, reason).into_response();
    };
    // Held for the connection's life.
    let Ok(open) = Arc::clone(&state.websockets).try_acquire_owned() else {
        return overloaded("websockets");
    };
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(WS_MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let lifecycle = state.app.lifecycle.clone();
            let context = ws::Context {
                protocol,
                schema: state.schema,
                queue: Arc::clone(&state.app.queue),
                stop: lifecycle.stop.clone(),
                bearer,
                operation_timeout: state.app.config.request_timeout(),
                client,
            };
            lifecycle.connections.track_future(async move {
                ws::serve(socket, context).await;
                drop(open);
            })
        })
}

async fn healthz() -> &'static str {
    "ok"
}

/// How many admission intervals may pass without a turn before this
/// process is not ready: its line would be frozen.
const MISSED_TURNS_BEFORE_UNREADY: u32 = 5;

/// 200 while the database answers a query and the admission loop turns,
/// 503 otherwise.
async fn readyz(State(state): State<HttpState>) -> Response {
    let patience = state.app.queue.settings.admit_interval * MISSED_TURNS_BEFORE_UNREADY;
    if let Some(silent) = state.app.queue.heartbeat.silent_for()
        && silent > patience
    {
        tracing::warn!(?silent, "readiness check failed: no admission turn");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the admission loop has not run",
        )
            .into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), crate::db::ping(&state.app.pool)).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(error)) => {
            tracing::warn!(error = %error.detail(), "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database did not answer in time",
        )
            .into_response(),
    }
}

/// The Prometheus text format: see `crate::metrics`. With `METRICS_TOKEN`
/// set, only for `Authorization: Bearer <METRICS_TOKEN>`.
async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.app.config.metrics_token {
        let offered = bearer_of(&headers).0.unwrap_or_default();
        // In constant time: a comparison that stops at the first wrong
        // byte tells a patient caller how many were right.
        if !bool::from(offered.as_bytes().ct_eq(&expected.0)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "send Authorization: Bearer <METRICS_TOKEN>",
            )
                .into_response();
        }
    }
    let text = crate::metrics::render(&state.app);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A failed response in the log, except refusals under overload: those are
/// counted in /metrics, and a line each would flood the log (and spend the
/// CPU the refusal was meant to save) exactly when the server is busiest.
fn log_failure(failure: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    match failure {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {}
        failure => tracing::error!(%failure, ?latency, "response failed"),
    }
}

async fn graphiql() -> Html<&'static str> {
    Html(graphiql_assets::INDEX)
}

async fn graphiql_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match graphiql_assets::file(&file) {
        Some((content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    graphql_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        crate::error::INTERNAL_MESSAGE,
    )
}

/// GraphiQL and its scripts, vendored from npm so that the page works on a
/// machine without internet access (see assets/graphiql/LICENSES.md).
mod graphiql_assets {
    pub const INDEX: &str = include_str!("../../assets/graphiql/index.html");

    const FILES: [(&str, &str, &[u8]); 4] = [
        (
            "graphiql.min.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/graphiql/graphiql.min.js"),
        ),
        (
            "graphiql.min.css",
            "text/css; charset=utf-8",
            include_bytes!("../../assets/graphiql/graphiql.min.css"),
        ),
        (
            "react.production.min.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/graphiql/react.production.min.js"),
        ),
        (
            "react-dom.production.min.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
        ),
    ];

    pub fn file(name: &str) -> Option<(&'static str, &'static [u8])> {
        FILES
            .iter()
            .find(|(file, _, _)| *file == name)
            .map(|(_, content_type, bytes)| (*content_type, *bytes))
    }
}
