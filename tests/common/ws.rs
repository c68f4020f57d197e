//! A real websocket client speaking graphql-transport-ws or graphql-ws.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub protocol: &'static str,
}

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

impl WsClient {
    pub async fn connect(addr: std::net::SocketAddr, protocol: &'static str) -> Self {
        let client = Self::open(addr, protocol, None).await;
        assert_eq!(client.protocol, protocol, "the one protocol offered");
        client
    }

    /// Connects with `Authorization: Bearer <token>` on the upgrade request.
    pub async fn connect_with_token(
        addr: std::net::SocketAddr,
        protocol: &'static str,
        token: &str,
    ) -> Self {
        let client = Self::open(addr, protocol, Some(token)).await;
        assert_eq!(client.protocol, protocol, "the one protocol offered");
        client
    }

    /// Connects offering `offered` (a comma-separated list, in the client's
    /// order of preference) and speaks whichever the server selects.
    pub async fn connect_offering(addr: std::net::SocketAddr, offered: &str) -> Self {
        Self::open(addr, offered, None).await
    }

    async fn open(addr: std::net::SocketAddr, offered: &str, token: Option<&str>) -> Self {
        let mut request = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", offered.parse().unwrap());
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        }
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket upgrade");
        let selected = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        let protocol = match selected {
            Some(TRANSPORT_WS) => TRANSPORT_WS,
            Some(LEGACY_WS) => LEGACY_WS,
            other => panic!("the server selected {other:?} of {offered}"),
        };
        Self { socket, protocol }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// Sends a text frame as it is, JSON or not.
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// Starts the closing handshake with `code`; the code the server's
    /// Close frame answers with, if it answers one.
    pub async fn close_with(&mut self, code: u16) -> Option<u16> {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let frame = CloseFrame {
            code: code.into(),
            reason: "bye".into(),
        };
        self.socket.send(Message::Close(Some(frame))).await.ok()?;
        while let Some(message) = self.socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|frame| u16::from(frame.code));
            }
        }
        None
    }

    /// The next text message as JSON, skipping keep-alives; None on close.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .expect("a websocket message within 30 s")?
                .ok()?;
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if matches!(value["type"].as_str(), Some("ka" | "ping" | "pong")) {
                        continue;
                    }
                    return Some(value);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until the server closes; its close code and reason.
    pub async fn close_frame(&mut self) -> Option<(u16, String)> {
        while let Some(message) = self.socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
            }
        }
        None
    }

    pub async fn init(&mut self, payload: Value) {
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        let ack = self.next().await.expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == TRANSPORT_WS {
            "subscribe"
        } else {
            "start"
        };
        self.send(
            json!({"id": id, "type": kind, "payload": {"query": query, "variables": variables}}),
        )
        .await;
    }

    /// Payloads of `next` (or, in graphql-ws, `data`) messages for `id` until
    /// `complete`.
    pub async fn collect_until_complete(&mut self, id: &str) -> Vec<Value> {
        let mut payloads = Vec::new();
        while let Some(message) = self.next().await {
            if message["id"] != id {
                continue;
            }
            let data = if self.protocol == TRANSPORT_WS {
                "next"
            } else {
                "data"
            };
            match message["type"].as_str() {
                Some(kind) if kind == data => payloads.push(message["payload"].clone()),
                Some("complete") => return payloads,
                Some("error") => {
                    payloads.push(json!({"errors": message["payload"]}));
                    return payloads;
                }
                _ => {}
            }
        }
        panic!("the socket closed before {id} completed; got {payloads:?}");
    }
}
