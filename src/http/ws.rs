//! `/graphql/ws`: GraphQL over a websocket, in either subprotocol.
//!
//! async-graphql speaks the protocols. This loop sits between it and the
//! socket to take `queueStatus` subscriptions, the one kind a crowd keeps
//! open, onto the lighter path of `queue::live`; their messages are framed
//! here the way async-graphql frames its own.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor, Request, Response, ServerError};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::future::OptionFuture;
use futures_util::stream::{self, BoxStream};
use futures_util::{SinkExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Sleep;
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

use crate::graphql::AppSchema;
use crate::graphql::OverWebsocket;
use crate::graphql::context::Bearer;
use crate::limits::ClientAddress;
use crate::queue::live;
use crate::queue::runtime::QueueRuntime;

/// What this loop needs to know of a client message; the rest goes on to
/// async-graphql untouched.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    payload: Option<serde_json::Value>,
}

/// The part of an outgoing message that says which operation ended.
#[derive(Deserialize)]
struct Outgoing<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    id: Option<&'a str>,
}

/// A `subscribe` payload: an object with the query text.
fn is_request(payload: &serde_json::Value) -> bool {
    payload
        .get("query")
        .is_some_and(serde_json::Value::is_string)
}

/// A live subscription's output: its responses, then its end.
enum Live {
    Next(Box<Response>),
    Complete,
}

/// Operations one connection may run at once, on either path; a browser
/// follows one place.
const MAX_OPERATIONS_PER_CONNECTION: usize = 16;
/// How long a client has to send `connection_init` after the upgrade.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A close frame's reason is at most 123 bytes (RFC 6455: 125 with the code).
const MAX_CLOSE_REASON: usize = 123;
/// Messages waiting for async-graphql before the connection is dropped.
const MAX_QUEUED_MESSAGES: usize = 64;

/// What to do with a message from the client.
enum Handling {
    /// async-graphql takes it.
    Forward,
    /// Taken here; nothing to answer yet.
    Taken,
    /// Taken here; answer this.
    Answer(Message),
    /// A breach of the protocol: close the connection with this code.
    Close(u16, &'static str),
}

/// One connection's state beside async-graphql's: the live subscriptions
/// and the connection's token.
struct Connection {
    protocol: WebSocketProtocols,
    schema: AppSchema,
    queue: Arc<QueueRuntime>,
    live: StreamMap<String, BoxStream<'static, Live>>,
    /// Operations handed to async-graphql that it has not ended yet.
    forwarded: HashSet<String>,
    initialised: bool,
    bearer: Option<String>,
    /// How long an operation may take to give its first answer.
    operation_timeout: Duration,
}

impl Connection {
    fn handle(&mut self, data: &[u8]) -> Handling {
        let strict = self.protocol == WebSocketProtocols::GraphQLWS;
        let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else {
            return if strict {
                Handling::Close(4400, "Invalid message received")
            } else {
                Handling::Forward // async-graphql answers malformed messages
            };
        };
        if strict && let Some(breach) = self.breach(&envelope) {
            return breach;
        }
        match (envelope.kind.as_str(), envelope.id, envelope.payload) {
            ("connection_init", _, payload) if !self.initialised => {
                self.initialised = true;
                if let Some(token) = payload.as_ref().and_then(|payload| bearer_of(payload).0) {
                    self.bearer = Some(token);
                }
                Handling::Forward
            }
            ("subscribe" | "start", Some(id), Some(payload))
                if self.initialised && !self.is_running(&id) =>
            {
                if self.live.len() + self.forwarded.len() >= MAX_OPERATIONS_PER_CONNECTION {
                    return Handling::Answer(self.too_many(&id));
                }
                match live::recognize(&payload, self.bearer.as_deref()) {
                    Some(request) => {
                        self.start(id, request);
                        Handling::Taken
                    }
                    None => {
                        self.forwarded.insert(id);
                        Handling::Forward
                    }
                }
            }
            ("complete" | "stop", Some(id), _) if self.live.remove(&id).is_some() => {
                Handling::Answer(text(json!({"type": "complete", "id": id})))
            }
            ("complete" | "stop", Some(id), _) => {
                self.forwarded.remove(&id);
                Handling::Forward
            }
            _ => Handling::Forward,
        }
    }

    fn is_running(&self, id: &str) -> bool {
        self.live.contains_key(id) || self.forwarded.contains(id)
    }

    /// What graphql-transport-ws closes the connection for, if `envelope`
    /// is such a breach.
    fn breach(&self, envelope: &Envelope) -> Option<Handling> {
        let has_id = envelope.id.is_some();
        let breach = match envelope.kind.as_str() {
            "connection_init" if self.initialised => (4429, "Too many initialisation requests"),
            "connection_init" | "ping" | "pong" => return None,
            "subscribe" if !has_id || !envelope.payload.as_ref().is_some_and(is_request) => {
                (4400, "Invalid message received")
            }
            "subscribe" if !self.initialised => (4401, "Unauthorized"),
            "subscribe" if envelope.id.as_deref().is_some_and(|id| self.is_running(id)) => {
                (4409, "Subscriber for this id already exists")
            }
            "subscribe" => return None,
            "complete" if has_id => return None,
            _ => (4400, "Invalid message received"),
        };
        Some(Handling::Close(breach.0, breach.1))
    }

    /// Notes the operations async-graphql ends, from what it sends.
    fn note_outgoing(&mut self, reply: &str) {
        if self.forwarded.is_empty() {
            return;
        }
        if let Ok(outgoing) = serde_json::from_str::<Outgoing<'_>>(reply)
            && matches!(outgoing.kind, "complete" | "error")
            && let Some(id) = outgoing.id
        {
            self.forwarded.remove(id);
        }
    }

    fn start(&mut self, id: String, request: live::LiveRequest) {
        let responses = live::follow(
            Arc::clone(&self.queue),
            self.schema.clone(),
            self.bearer.clone(),
            request,
        );
        let framed = FirstWithin::new(responses, self.operation_timeout)
            .map(|response| Live::Next(Box::new(response)))
            .chain(stream::once(std::future::ready(Live::Complete)));
        self.live.insert(id, framed.boxed());
    }

    fn too_many(&self, id: &str) -> Message {
        let error = json!({
            "message": format!("at most {MAX_OPERATIONS_PER_CONNECTION} operations at once per connection"),
            "extensions": {"code": "LIMIT_EXCEEDED"},
        });
        let payload = match self.protocol {
            WebSocketProtocols::GraphQLWS => json!([error]),
            WebSocketProtocols::SubscriptionsTransportWS => error,
        };
        text(json!({"type": "error", "id": id, "payload": payload}))
    }

    fn frame(&self, id: String, event: Live) -> Message {
        match event {
            // Serialized straight from the response: a turn of the line
            // frames one of these for every subscriber.
            Live::Next(response) => {
                let frame = NextFrame {
                    kind: next_type(self.protocol),
                    id: &id,
                    payload: &response,
                };
                match serde_json::to_string(&frame) {
                    Ok(frame) => Message::Text(frame.into()),
                    Err(_) => text(json!({"type": "complete", "id": id})),
                }
            }
            Live::Complete => text(json!({"type": "complete", "id": id})),
        }
    }
}

/// A `next` (or `data`) message, in the order the protocol shows it.
#[derive(serde::Serialize)]
struct NextFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    payload: &'a async_graphql::Response,
}

/// What a websocket needs from the server around it.
pub struct Context {
    pub protocol: WebSocketProtocols,
    pub schema: AppSchema,
    pub queue: Arc<QueueRuntime>,
    pub stop: CancellationToken,
    /// The upgrade request's `Authorization: Bearer` token, if any; a token
    /// in the `connection_init` payload takes its place.
    pub bearer: Bearer,
    /// `REQUEST_TIMEOUT_MS`: how long an operation may take to answer.
    pub operation_timeout: Duration,
    /// The address the connection's operations count against.
    pub client: ClientAddress,
}

pub async fn serve(socket: WebSocket, context: Context) {
    let Context {
        protocol,
        schema,
        queue,
        stop,
        bearer,
        operation_timeout,
        client,
    } = context;
    let (mut sink, mut incoming) = socket.split();
    // futures' channel allocates per message, not a block of slots up front:
    // it costs an idle subscriber next to nothing.
    let (mut to_graphql, graphql_input) =
        futures_channel::mpsc::channel::<Vec<u8>>(MAX_QUEUED_MESSAGES);
    let upgrade_bearer = bearer.clone();
    let mut graphql = async_graphql::http::WebSocket::new(
        TimedSchema {
            schema: crate::graphql::CodedSchema(schema.clone()),
            operation_timeout,
        },
        graphql_input,
        protocol,
    )
    .on_connection_init(move |payload| connection_init(payload, upgrade_bearer, client));
    let mut connection = Connection {
        protocol,
        schema,
        queue,
        live: StreamMap::new(),
        forwarded: HashSet::new(),
        initialised: false,
        bearer: bearer.0,
        operation_timeout,
    };
    // Boxed and dropped once the client has said connection_init, so that
    // an idle subscriber does not keep a timer for its whole life.
    let mut init_deadline = Some(Box::pin(tokio::time::sleep(INIT_TIMEOUT)));
    loop {
        if connection.initialised {
            init_deadline = None;
        }
        let outgoing = tokio::select! {
            message = incoming.next() => {
                let data = match message {
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    // The closing handshake: answer the client's Close
                    // with its own code (tungstenite queues that reply as
                    // it reads the Close; closing the sink sends it), then end.
                    Some(Ok(Message::Close(_))) => {
                        let _ = sink.close().await;
                        break;
                    }
                    Some(Err(_)) | None => break,
                };
                match connection.handle(&data) {
                    Handling::Forward if to_graphql.try_send(data).is_err() => break,
                    Handling::Forward | Handling::Taken => continue,
                    Handling::Answer(answer) => answer,
                    Handling::Close(code, reason) => close(code, reason),
                }
            }
            reply = graphql.next() => match reply {
                Some(WsMessage::Text(reply)) => {
                    connection.note_outgoing(&reply);
                    Message::Text(reply.into())
                }
                Some(WsMessage::Close(code, reason)) => close(code, &reason),
                None => break,
            },
            Some(()) = OptionFuture::from(init_deadline.as_mut()) => {
                close(4408, "Connection initialisation timeout")
            }
            Some((id, event)) = connection.live.next() => connection.frame(id, event),
            // The server is going away: say so, so that clients reconnect.
            () = stop.cancelled() => Message::Close(Some(CloseFrame {
                code: axum::extract::ws::close_code::AWAY,
                reason: "the server is shutting down".into(),
            })),
        };
        let closing = matches!(outgoing, Message::Close(_));
        if sink.send(outgoing).await.is_err() || closing {
            break;
        }
    }
}

/// The schema as async-graphql's websocket handler runs it: every operation
/// it serves gets the same bound on its first answer as the fast path's.
#[derive(Clone)]
struct TimedSchema {
    schema: crate::graphql::CodedSchema,
    operation_timeout: Duration,
}

impl Executor for TimedSchema {
    async fn execute(&self, request: Request) -> Response {
        match tokio::time::timeout(self.operation_timeout, self.schema.execute(request)).await {
            Ok(response) => response,
            Err(_) => timed_out(self.operation_timeout),
        }
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let responses = self.schema.execute_stream(request, session_data);
        FirstWithin::new(responses, self.operation_timeout).boxed()
    }
}

/// An operation's responses, the first of which must come within a bound:
/// a query's or mutation's only answer, a subscription's state now. Later
/// states of a subscription come when the state changes, which may be
/// hours in a long line, so they are not bounded. Past the bound the
/// operation ends with one error; the connection and its other operations
/// carry on, and work already started on the database finishes on its own
/// task (`db::run`), as if the client had hung up.
struct FirstWithin {
    responses: BoxStream<'static, Response>,
    /// Until the first answer; dropped then, so a waiting subscriber keeps
    /// no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    bound: Duration,
    ended: bool,
}

impl FirstWithin {
    fn new(responses: BoxStream<'static, Response>, bound: Duration) -> Self {
        Self {
            responses,
            deadline: Some(Box::pin(tokio::time::sleep(bound))),
            bound,
            ended: false,
        }
    }
}

impl Stream for FirstWithin {
    type Item = Response;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Response>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(next) = self.responses.poll_next_unpin(cx) {
            self.deadline = None;
            return Poll::Ready(next);
        }
        match self
            .deadline
            .as_mut()
            .map(|deadline| deadline.as_mut().poll(cx))
        {
            Some(Poll::Ready(())) => {
                self.ended = true;
                self.deadline = None;
                Poll::Ready(Some(timed_out(self.bound)))
            }
            _ => Poll::Pending,
        }
    }
}

/// The answer of an operation stopped at its time bound.
fn timed_out(bound: Duration) -> Response {
    let mut error = ServerError::new(
        format!(
            "the operation took longer than {} ms and was stopped",
            bound.as_millis()
        ),
        None,
    );
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", "INTERNAL");
    Response::from_errors(vec![error])
}

/// A Close frame whose reason fits the frame: cut at a character boundary.
fn close(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
    }))
}

fn text(value: serde_json::Value) -> Message {
    Message::Text(value.to_string().into())
}

/// `next` in graphql-transport-ws, `data` in the older graphql-ws.
fn next_type(protocol: WebSocketProtocols) -> &'static str {
    match protocol {
        WebSocketProtocols::GraphQLWS => "next",
        WebSocketProtocols::SubscriptionsTransportWS => "data",
    }
}

/// Takes the token from `{"Authorization": "Bearer <token>"}`, or from
/// `{"headers": {"Authorization": ...}}` as some clients send it.
fn bearer_of(payload: &serde_json::Value) -> Bearer {
    let header = ["Authorization", "authorization"].iter().find_map(|name| {
        payload
            .get(name)
            .or_else(|| payload.get("headers").and_then(|headers| headers.get(name)))
            .and_then(|value| value.as_str())
    });
    Bearer::from_header(header)
}

async fn connection_init(
    payload: serde_json::Value,
    upgrade: Bearer,
    client: ClientAddress,
) -> async_graphql::Result<Data> {
    let mut data = Data::default();
    data.insert(OverWebsocket(client));
    let from_payload = bearer_of(&payload);
    data.insert(if from_payload.0.is_some() {
        from_payload
    } else {
        upgrade
    });
    Ok(data)
}

/// The subprotocol selected for the upgrade, if it is one we speak.
pub fn protocol_of(selected: Option<&axum::http::HeaderValue>) -> Option<WebSocketProtocols> {
    selected?.to_str().ok()?.parse().ok()
}
