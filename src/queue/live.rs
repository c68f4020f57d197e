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

use std::sync::Arc;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection,
};
use async_graphql::{Data, Request, Response, ServerError, Value, Variables};
use async_graphql_value::Value as ParsedValue;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

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
    let token = queue_status_token(&document, operation_name, &variables)?;
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
    })
}

/// The `token` argument, if the operation is exactly one `queueStatus`
/// subscription field, without fragments or directives.
fn queue_status_token(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<String> {
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
    match &field.node.get_argument("token")?.node {
        ParsedValue::String(token) => Some(token.clone()),
        ParsedValue::Variable(name) => match variables.get(name)? {
            Value::String(token) => Some(token.clone()),
            _ => None,
        },
        _ => None,
    }
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
    Follower::new(queue, claims)
        .into_stream()
        .then(move |view| {
            render(
                schema.clone(),
                Arc::clone(&session),
                Arc::clone(&request),
                Some(view.map_err(Into::into)),
            )
        })
        .boxed()
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
