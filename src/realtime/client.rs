//! The Realtime WebSocket client: where to connect, how to authenticate, and the socket a
//! call's task reads and writes itself.
//!
//! [`RealtimeSettings::from_env_map`] picks the provider from the environment;
//! [`request_for`] turns it into the handshake request (URL and auth header);
//! [`RealtimeSocket::connect`] opens a network connection and
//! [`RealtimeSocket::connect_stream`] runs the same protocol over any byte stream (the embedded
//! engine's in-process duplex). The socket has no task of its own: the call's task awaits
//! [`RealtimeSocket::recv`] in its `select!` (typed server events, then one
//! [`RealtimeIncoming::Closed`]), writes client events with [`RealtimeSocket::feed`] as it
//! drains its call, and [`flush`](RealtimeSocket::flush)es once per wake-up.
//!
//! API keys are never logged: [`RealtimeSettings::describe`] and the `Debug` output of
//! [`Provider`] redact them, and auth header values are marked sensitive.
//!
//! Text frames that are not valid events, and binary frames, are skipped and counted in a
//! process-wide counter read with [`malformed_frames`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::endpoint::stream_request;
pub use super::endpoint::{Provider, RealtimeSettings, request_for};
pub use super::error::RealtimeError;
use super::event::{ClientEvent, ServerEvent};

/// How long a closing connection waits for the other side to finish the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Longest excerpt of a rejected handshake's response body kept in the error, in bytes.
const REJECT_BODY_EXCERPT: usize = 512;

/// Largest server event taken, in bytes: 16 MiB of JSON is about 170 s of PCM16 audio in one
/// delta. A larger frame fails the connection instead of growing the call's memory.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// The socket's buffers, chosen for thousands of calls rather than one fast stream.
///
/// - Reads: tungstenite zero-fills the free part of its read buffer before every read, so the
///   default 128 KiB costs a 128 KiB `memset` per read and most of a call's memory. Server
///   events are a few hundred bytes (a 20 ms µ-law delta) to about 7 KB (100 ms of PCM16):
///   8 KiB takes several per read and costs little to clear. Larger events still arrive
///   whole: the buffer grows to the frame's size while it is read.
/// - Writes: the call feeds every event of a wake-up and flushes once, so the write buffer
///   is where a wake-up's events become one `write`; 16 KiB holds a busy wake-up. A peer that
///   stops reading fails the connection at 1 MiB instead of growing it without bound.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 << 10)
        .write_buffer_size(16 << 10)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(MAX_EVENT_BYTES))
        .max_frame_size(Some(MAX_EVENT_BYTES))
}

static MALFORMED_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Frames received on any Realtime connection of this process that were skipped: text that
/// is not a valid server event, and binary frames. Monotonic; export it as a counter.
pub fn malformed_frames() -> u64 {
    MALFORMED_FRAMES.load(Ordering::Relaxed)
}

/// Something read from the Realtime connection.
#[derive(Debug, Clone, PartialEq)]
pub enum RealtimeIncoming {
    /// A server event. Event types the bridge does not act on are not delivered.
    Event(ServerEvent),
    /// The connection ended. `reason` names the close code, if any.
    Closed { reason: String },
}

/// A byte stream a Realtime connection runs over: TCP, or the engine's in-process duplex.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<MaybeTlsStream<Box<dyn Io>>>;

/// An open Realtime connection, read and written by the call's task.
pub struct RealtimeSocket {
    ws: Socket,
    /// Why the connection ended, once it has: reads return it again, writes are skipped.
    closed: Option<String>,
}

impl std::fmt::Debug for RealtimeSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeSocket")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl RealtimeSocket {
    /// Opens a network connection for `model` (see [`request_for`]).
    ///
    /// Does not time out by itself: callers bound it with their own deadline. `wss` URLs
    /// need a process-wide rustls crypto provider, installed by the binary at startup.
    pub async fn connect(settings: &RealtimeSettings, model: &str) -> Result<Self, RealtimeError> {
        let request = request_for(settings, model)?;
        tracing::debug!(endpoint = %settings.describe(), model, "connecting to Realtime");
        let uri = request.uri();
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("wss") {
                443
            } else {
                80
            });
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| RealtimeError::Handshake(tungstenite::Error::Io(e)))?;
        // Events are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        Self::handshake(request, Box::new(tcp)).await
    }

    /// Runs the WebSocket handshake for `model` over `stream` (no TLS, no auth header), e.g.
    /// the embedded engine's in-process duplex.
    pub async fn connect_stream<S: Io + 'static>(
        stream: S,
        model: &str,
    ) -> Result<Self, RealtimeError> {
        Self::handshake(stream_request(model)?, Box::new(stream)).await
    }

    async fn handshake(
        request: http::Request<()>,
        stream: Box<dyn Io>,
    ) -> Result<Self, RealtimeError> {
        let (ws, _response) = tokio_tungstenite::client_async_tls_with_config(
            request,
            stream,
            Some(socket_config()),
            None,
        )
        .await
        .map_err(handshake_error)?;
        Ok(Self { ws, closed: None })
    }

    /// The next server event, or `Closed` once the connection has ended (and on every call
    /// after that). Cancel-safe: a `select!` may drop it between frames.
    pub async fn recv(&mut self) -> RealtimeIncoming {
        if let Some(reason) = &self.closed {
            return RealtimeIncoming::Closed {
                reason: reason.clone(),
            };
        }
        let (reason, got_close) = loop {
            let message = match self.ws.next().await {
                None => break ("connection closed without a close frame".to_owned(), false),
                Some(Err(e)) => break (read_error_reason(&e), false),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Text(text) => match ServerEvent::parse(&text) {
                    Ok(ServerEvent::Unknown) => {
                        tracing::trace!(
                            kind = ServerEvent::kind_of(&text).as_deref().unwrap_or("?"),
                            "Realtime event ignored"
                        );
                    }
                    Ok(event) => return RealtimeIncoming::Event(event),
                    Err(error) => {
                        MALFORMED_FRAMES.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            %error,
                            kind = ServerEvent::kind_of(&text).as_deref().unwrap_or("?"),
                            bytes = text.len(),
                            "malformed Realtime event skipped"
                        );
                    }
                },
                Message::Binary(bytes) => {
                    MALFORMED_FRAMES.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(bytes = bytes.len(), "binary Realtime frame skipped");
                }
                Message::Close(frame) => break (close_reason(frame.as_ref()), true),
                // Pings are answered by tungstenite (on the next flush); pongs and raw frames
                // carry nothing for us.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        };
        tracing::debug!(%reason, "Realtime connection closed");
        self.closed = Some(reason.clone());
        if got_close {
            // tungstenite has queued the answer to the server's close: send it.
            let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.flush()).await;
        }
        RealtimeIncoming::Closed { reason }
    }

    /// Queues `event` for sending; it leaves with the next [`flush`](Self::flush) (or
    /// earlier, once the write buffer is full). A failure means the connection is ending:
    /// the next [`recv`](Self::recv) reports it.
    pub async fn feed(&mut self, event: &ClientEvent) {
        if self.closed.is_some() {
            return;
        }
        if let Err(error) = self.ws.feed(Message::text(event.to_json())).await {
            tracing::debug!(%error, kind = event.kind(), "Realtime send failed");
        }
    }

    /// Writes everything fed so far.
    pub async fn flush(&mut self) {
        if self.closed.is_some() {
            return;
        }
        if let Err(error) = self.ws.flush().await {
            tracing::debug!(%error, "Realtime flush failed");
        }
    }

    /// Closes the connection with code 1000 and waits, for a few seconds at most, for the
    /// server's answer.
    pub async fn close(mut self) {
        if self.closed.is_some() {
            return;
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let closing = async {
            if let Err(error) = self.ws.send(Message::Close(Some(close))).await {
                tracing::debug!(%error, "Realtime close failed");
                return;
            }
            // Read until the server answers the close (tungstenite then ends the stream).
            while let Some(Ok(_)) = self.ws.next().await {}
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
    }
}

fn handshake_error(error: tungstenite::Error) -> RealtimeError {
    match error {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| {
                    let text = String::from_utf8_lossy(b);
                    let text = text.trim();
                    let mut end = text.len().min(REJECT_BODY_EXCERPT);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text[..end].to_owned()
                })
                .unwrap_or_default();
            RealtimeError::Rejected {
                status: response.status().as_u16(),
                body,
            }
        }
        other => RealtimeError::Handshake(other),
    }
}

fn close_reason(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) if frame.reason.is_empty() => format!("code {}", u16::from(frame.code)),
        Some(frame) => format!("code {}: {}", u16::from(frame.code), frame.reason.as_str()),
        None => "closed without a close code".to_owned(),
    }
}

fn read_error_reason(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            "connection closed".to_owned()
        }
        other => format!("connection failed: {other}"),
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
