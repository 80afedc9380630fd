//! The Realtime WebSocket client: where to connect, how to authenticate, and the two tasks
//! that move events between the socket and a pair of channels.
//!
//! [`RealtimeSettings::from_env_map`] picks the provider from the environment;
//! [`request_for`] turns it into the handshake request (URL and auth header); [`connect`]
//! opens a network connection and [`connect_stream`] runs the same protocol over any byte
//! stream (the embedded engine's in-process duplex). Either returns a [`RealtimeConnection`]:
//! typed server events come out of `events`, client events go into `sender`.
//!
//! API keys are never logged: [`RealtimeSettings::describe`] and the `Debug` output of
//! [`Provider`] redact them, and auth header values are marked sensitive.
//!
//! Text frames that are not valid events, and binary frames, are skipped and counted in a
//! process-wide counter read with [`malformed_frames`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::endpoint::stream_request;
pub use super::endpoint::{Provider, RealtimeSettings, request_for};
pub use super::error::RealtimeError;
use super::event::{ClientEvent, ServerEvent};

/// Capacity of each direction's channel, in events.
pub const CHANNEL_CAPACITY: usize = 256;

/// How long a closing connection waits for the other side to finish the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Longest excerpt of a rejected handshake's response body kept in the error, in bytes.
const REJECT_BODY_EXCERPT: usize = 512;

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
    /// The connection ended; always the last item. `reason` names the close code, if any.
    Closed { reason: String },
}

/// An open Realtime connection.
///
/// `events` yields server events, then one [`RealtimeIncoming::Closed`] when the connection
/// ends, then `None`. (If this side closes and the server never answers the close, the
/// reader stops after a grace period and `events` ends without `Closed`.)
///
/// Events sent on `sender` are written in order. Dropping every `sender` closes the
/// connection with code 1000. Once the connection has ended, sends fail.
#[derive(Debug)]
pub struct RealtimeConnection {
    pub events: mpsc::Receiver<RealtimeIncoming>,
    pub sender: mpsc::Sender<ClientEvent>,
}

/// Opens a network connection for `model` (see [`request_for`]).
///
/// Does not time out by itself: callers bound it with their own deadline. `wss` URLs need a
/// process-wide rustls crypto provider, installed by the binary at startup.
pub async fn connect(
    settings: &RealtimeSettings,
    model: &str,
) -> Result<RealtimeConnection, RealtimeError> {
    let request = request_for(settings, model)?;
    tracing::debug!(endpoint = %settings.describe(), model, "connecting to Realtime");
    let (ws, _response) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(handshake_error)?;
    Ok(spawn_tasks(ws))
}

/// Runs the WebSocket handshake for `model` over `stream` (no TLS, no auth header), e.g. the
/// embedded engine's in-process duplex.
pub async fn connect_stream<S>(stream: S, model: &str) -> Result<RealtimeConnection, RealtimeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = stream_request(model)?;
    let (ws, _response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(handshake_error)?;
    Ok(spawn_tasks(ws))
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

fn spawn_tasks<S>(ws: WebSocketStream<S>) -> RealtimeConnection
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let (event_tx, events) = mpsc::channel(CHANNEL_CAPACITY);
    let (sender, outgoing) = mpsc::channel(CHANNEL_CAPACITY);
    let (reader_done_tx, reader_done) = oneshot::channel();
    let reader = tokio::spawn(read_loop(stream, event_tx, reader_done_tx));
    tokio::spawn(write_loop(
        sink,
        outgoing,
        reader_done,
        reader.abort_handle(),
    ));
    RealtimeConnection { events, sender }
}

/// Reads frames until the connection ends, then reports `Closed`. Dropping `_done` on return
/// tells the writer the connection is over.
async fn read_loop<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    events: mpsc::Sender<RealtimeIncoming>,
    _done: oneshot::Sender<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reason, got_close) = loop {
        let message = match stream.next().await {
            None => break ("connection closed without a close frame".to_owned(), false),
            Some(Err(e)) => break (read_error_reason(&e), false),
            Some(Ok(message)) => message,
        };
        let event = match message {
            Message::Text(text) => match ServerEvent::parse(&text) {
                Ok(ServerEvent::Unknown) => {
                    tracing::debug!(
                        kind = ServerEvent::kind_of(&text).as_deref().unwrap_or("?"),
                        "Realtime event ignored"
                    );
                    continue;
                }
                Ok(event) => event,
                Err(error) => {
                    MALFORMED_FRAMES.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        %error,
                        kind = ServerEvent::kind_of(&text).as_deref().unwrap_or("?"),
                        bytes = text.len(),
                        "malformed Realtime event skipped"
                    );
                    continue;
                }
            },
            Message::Binary(bytes) => {
                MALFORMED_FRAMES.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(bytes = bytes.len(), "binary Realtime frame skipped");
                continue;
            }
            Message::Close(frame) => break (close_reason(frame.as_ref()), true),
            // Pings are answered by tungstenite; pongs and raw frames carry nothing for us.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        if events.send(RealtimeIncoming::Event(event)).await.is_err() {
            // Nobody reads events any more; the writer closes the socket.
            return;
        }
    };
    tracing::debug!(%reason, "Realtime connection closed");
    let _ = events.send(RealtimeIncoming::Closed { reason }).await;
    drop(events);
    if got_close {
        // Keep reading so tungstenite sends the close reply, until the peer drops the socket.
        let drain = async { while stream.next().await.is_some() {} };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
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

/// Writes client events until the senders are dropped (then closes with code 1000) or the
/// reader has seen the connection end.
async fn write_loop<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut outgoing: mpsc::Receiver<ClientEvent>,
    mut reader_done: oneshot::Receiver<()>,
    reader: AbortHandle,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            event = outgoing.recv() => match event {
                Some(event) => {
                    if let Err(error) = sink.send(Message::text(event.to_json())).await {
                        tracing::debug!(%error, kind = event.kind(), "Realtime send failed");
                        return;
                    }
                }
                None => {
                    let close = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    };
                    if let Err(error) = sink.send(Message::Close(Some(close))).await {
                        tracing::debug!(%error, "Realtime close failed");
                    }
                    // The reader ends when the server answers the close.
                    if tokio::time::timeout(CLOSE_GRACE, &mut reader_done).await.is_err() {
                        reader.abort();
                    }
                    return;
                }
            },
            _ = &mut reader_done => {
                // The reader stopped: either the connection ended (closing again is a no-op
                // error) or nobody reads events any more (this closes the socket properly).
                let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
