//! The websocket fast path for `queueStatus` subscriptions.
//!
//! async-graphql keeps a whole execution alive for every subscription, some
//! 6 KiB per subscriber, for as long as the subscriber waits. Here a
//! `queueStatus` subscription keeps only its request and a `Follower`; each
//! state it sends is rendered by a one-off execution of the very same
//! request, with the state handed to the resolver (`PresetView`), so the
//! client gets exactly the fields, aliases and errors it asked for.
//! Anything that is not plainly a `queueStatus` subscription goes to
//! async-graphql's own websocket handling.
//!
//! A one-off execution costs tens of microseconds, and an admission turn
//! moves every subscriber at once. So when the subscription selects only
//! scalar fields of `QueueToken` (aliases allowed), each state after the
//! first is built straight from the state (`PlainSelection`) instead. The
//! first state is rendered both ways, and the direct one is used only if
//! it equals the executor's to the byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_graphql::parser::Positioned;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationType, Selection,
};
use async_graphql::{Data, Name, Request, Response, ServerError, Value, Variables};
use async_graphql_value::Value as ParsedValue;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

use super::graphql::{QueueToken, QueueTokenField};
use super::runtime::{QueueRuntime, TokenView};
use super::subscription::{Follower, PresetView};
use crate::graphql::context::Bearer;
use crate::graphql::nesting::{MAX_NESTING, nests_deeper_than};
use crate::graphql::{AppSchema, MAX_QUERY_BYTES};

/// A `queueStatus` subscription as the client sent it, and its token. The
/// variables stay JSON text until a state is rendered: kept parsed, they
/// would cost a map node per subscriber for as long as it waits.
pub struct LiveRequest {
    query: Box<str>,
    variables: Box<str>,
    operation_name: Option<Box<str>>,
    token: String,
    plain: Option<PlainSelection>,
}

/// `{ key: queueStatus(...) { alias: field ... } }` with scalar fields only:
/// the response keys and the fields they answer, in the order asked.
struct PlainSelection {
    key: Name,
    fields: Box<[(Name, QueueTokenField)]>,
}

impl PlainSelection {
    fn of(field: &Positioned<Field>) -> Option<Self> {
        let fields = field
            .node
            .selection_set
            .node
            .items
            .iter()
            .map(|selection| match &selection.node {
                Selection::Field(inner)
                    if inner.node.arguments.is_empty()
                        && inner.node.directives.is_empty()
                        && inner.node.selection_set.node.items.is_empty() =>
                {
                    let name = QueueTokenField::named(&inner.node.name.node)?;
                    Some((inner.node.response_key().node.clone(), name))
                }
                _ => None,
            })
            .collect::<Option<Box<[_]>>>()?;
        Some(Self {
            key: field.node.response_key().node.clone(),
            fields,
        })
    }

    fn render(&self, view: TokenView) -> Response {
        let token = QueueToken::from(view);
        let fields = self
            .fields
            .iter()
            .map(|(key, field)| (key.clone(), token.value_of(*field)))
            .collect();
        let mut data = async_graphql::indexmap::IndexMap::new();
        data.insert(self.key.clone(), Value::Object(fields));
        Response::new(Value::Object(data))
    }
}

/// The request, if the payload is a subscription to `queueStatus` and
/// nothing else, with a token argument (or an empty one and a connection
/// token). Anything else, oversized queries included, is for async-graphql.
pub fn recognize(
    payload: &serde_json::Value,
    connection_bearer: Option<&str>,
) -> Option<LiveRequest> {
    let query = payload.get("query")?.as_str()?;
    // The schema's own path refuses these before any parser runs.
    if query.len() > MAX_QUERY_BYTES || nests_deeper_than(query, MAX_NESTING) {
        return None;
    }
    let raw_variables = payload
        .get("variables")
        .filter(|variables| !variables.is_null());
    let variables = raw_variables
        .map(|variables| Variables::from_json(variables.clone()))
        .unwrap_or_default();
    let operation_name = payload
        .get("operationName")
        .and_then(serde_json::Value::as_str);
    let document = async_graphql::parser::parse_query(query).ok()?;
    let (token, plain) = queue_status_token(&document, operation_name, &variables)?;
    let token = if token.trim().is_empty() {
        connection_bearer?.to_owned()
    } else {
        token
    };
    Some(LiveRequest {
        query: Box::from(query),
        variables: raw_variables
            .map(|v| v.to_string())
            .unwrap_or_default()
            .into_boxed_str(),
        operation_name: operation_name.map(Box::from),
        token,
        plain,
    })
}

/// The `token` argument, if the operation is exactly one `queueStatus`
/// subscription field, without fragments or directives, and its selection
/// if that is plain.
fn queue_status_token(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<(String, Option<PlainSelection>)> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name)?,
        (DocumentOperations::Multiple(_), None) => return None,
    };
    if operation.node.ty != OperationType::Subscription || !document.fragments.is_empty() {
        return None;
    }
    let [selection] = operation.node.selection_set.node.items.as_slice() else {
        return None;
    };
    let Selection::Field(field) = &selection.node else {
        return None;
    };
    if field.node.name.node != "queueStatus" || !field.node.directives.is_empty() {
        return None;
    }
    let token = match &field.node.get_argument("token")?.node {
        ParsedValue::String(token) => token.clone(),
        ParsedValue::Variable(name) => match variables.get(name)? {
            Value::String(token) => token.clone(),
            _ => return None,
        },
        _ => return None,
    };
    Some((token, PlainSelection::of(field)))
}

/// The subscription's responses: the state now, then each change, the
/// same as async-graphql would send, ending where the subscription ends.
pub fn follow(
    queue: Arc<QueueRuntime>,
    schema: AppSchema,
    connection_bearer: Option<String>,
    request: LiveRequest,
) -> BoxStream<'static, Response> {
    let session = Arc::new({
        let mut data = Data::default();
        data.insert(Bearer(connection_bearer));
        data
    });
    let request = Arc::new(request);
    let Ok(claims) = queue.verify(&request.token) else {
        // Let the resolver say what is wrong with the token.
        return stream::once(render(schema, session, request, None)).boxed();
    };
    let direct = Arc::new(AtomicU8::new(UNTRIED));
    Follower::new(queue, claims)
        .into_stream()
        .then(move |view| {
            render_state(
                schema.clone(),
                Arc::clone(&session),
                Arc::clone(&request),
                Arc::clone(&direct),
                view,
            )
        })
        .boxed()
}

/// Whether a subscription's states may be built directly: not yet known,
/// yes (the first one matched the executor's), or no.
const UNTRIED: u8 = 0;
const TRUSTED: u8 = 1;
const REFUSED: u8 = 2;

/// One state of a followed token: built directly once that is trusted,
/// otherwise executed (and, the first time, compared with the direct one).
async fn render_state(
    schema: AppSchema,
    session: Arc<Data>,
    live: Arc<LiveRequest>,
    direct: Arc<AtomicU8>,
    view: crate::error::AppResult<TokenView>,
) -> Response {
    let (Some(plain), Ok(view)) = (&live.plain, &view) else {
        return render(schema, session, live, Some(view.map_err(Into::into))).await;
    };
    let trust = direct.load(Ordering::Relaxed);
    if trust == TRUSTED {
        return plain.render(view.clone());
    }
    let executed = render(schema, session, Arc::clone(&live), Some(Ok(view.clone()))).await;
    if trust == UNTRIED {
        let built = plain.render(view.clone());
        let same = executed.errors.is_empty()
            && executed.extensions.is_empty()
            && serde_json::to_string(&executed.data).ok()
                == serde_json::to_string(&built.data).ok();
        direct.store(if same { TRUSTED } else { REFUSED }, Ordering::Relaxed);
    }
    executed
}

/// One response to the request: of `view` (a state, or the error reading
/// it) when given, otherwise of whatever the resolver finds (a bad token).
async fn render(
    schema: AppSchema,
    session: Arc<Data>,
    live: Arc<LiveRequest>,
    view: Option<async_graphql::Result<TokenView>>,
) -> Response {
    let variables = serde_json::from_str(&live.variables).unwrap_or_default();
    let mut request = Request::new(live.query.as_ref()).variables(Variables::from_json(variables));
    if let Some(name) = &live.operation_name {
        request = request.operation_name(name.as_ref());
    }
    if let Some(view) = view {
        request = request.data(PresetView(view));
    }
    let mut responses = schema.execute_stream_with_session_data(request, session);
    match responses.next().await {
        Some(response) => response,
        // The resolver always answers once; if it did not, say so plainly.
        None => {
            let mut error = ServerError::new(crate::error::INTERNAL_MESSAGE, None);
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", "INTERNAL");
            Response::from_errors(vec![error])
        }
    }
}
