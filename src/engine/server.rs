//! The async adapter around [`EngineSession`]: the WebSocket server handshake, one select loop
//! per connection (client frames in, server events out, sleeping until the session's next
//! deadline), a TCP accept loop, and an in-process duplex pipe that speaks the same wire
//! protocol without a socket.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, error, info, warn};

use super::error::EngineError;
use super::session::{EngineConfig, EngineSession};

/// Most connections [`serve`] handles at once; further ones are closed on accept.
pub const MAX_CONNECTIONS: usize = 4096;

/// Buffer size of each direction of an [`in_process`] pipe.
pub const IN_PROCESS_BUFFER: usize = 64 * 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves one client on `stream`: accepts the WebSocket upgrade (any path; the `model` query
/// parameter names the model; authentication headers are ignored), then runs an
/// [`EngineSession`] until the client closes.
pub async fn serve_connection<S>(stream: S, config: Arc<EngineConfig>) -> Result<(), EngineError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut model = String::new();
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, ModelCapture(&mut model))
        .await
        .map_err(|e| EngineError::Handshake(Box::new(e)))?;
    let mut session = EngineSession::new(config, &model);
    debug!(session = session.session_id(), %model, "engine connection open");
    let result = run(&mut ws, &mut session).await;
    debug!(session = session.session_id(), "engine connection closed");
    match result {
        Ok(()) => {
            // The client may already be gone; there is nothing left to report either way.
            let _ = ws.close(None).await;
            Ok(())
        }
        Err(e) if is_disconnect(&e) => Ok(()),
        Err(e) => Err(EngineError::Transport(Box::new(e))),
    }
}

/// The select loop of one connection: client frames in, due events out.
async fn run<S>(
    ws: &mut WebSocketStream<S>,
    session: &mut EngineSession,
) -> Result<(), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    flush(ws, session).await?;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                None | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(Message::Text(text))) => session.handle_client(now(), text.as_str()),
                Some(Ok(Message::Binary(bytes))) => {
                    session.handle_client(now(), &String::from_utf8_lossy(&bytes));
                }
                // Pings are answered by the WebSocket layer on the next flush.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
            },
            () = wait_until(session.poll_timeout()) => session.handle_timeout(now()),
        }
        flush(ws, session).await?;
    }
}

/// Accepts connections on `listener` and serves each on its own task (at most
/// [`MAX_CONNECTIONS`] at once) until `shutdown` completes; open connections are then dropped.
pub async fn serve(
    listener: TcpListener,
    config: Arc<EngineConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "local engine listening");
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        error!(error = %e, "engine connection task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if tasks.len() >= MAX_CONNECTIONS {
                        warn!(%peer, limit = MAX_CONNECTIONS, "engine connection limit reached; refusing");
                        continue;
                    }
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, error = %e, "cannot disable Nagle");
                    }
                    let config = Arc::clone(&config);
                    tasks.spawn(async move {
                        match serve_connection(stream, config).await {
                            Ok(()) => debug!(%peer, "engine client left"),
                            Err(e) => warn!(%peer, error = %e, "engine connection failed"),
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "engine accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    info!(open = tasks.len(), "local engine shutting down");
    tasks.shutdown().await;
}

/// An in-process connection to a fresh engine session: the returned stream expects the
/// client side of the WebSocket handshake (e.g. `tokio_tungstenite::client_async`).
///
/// # Panics
///
/// Outside a Tokio runtime.
pub fn in_process(config: Arc<EngineConfig>) -> DuplexStream {
    let (client, server) = tokio::io::duplex(IN_PROCESS_BUFFER);
    tokio::spawn(async move {
        if let Err(e) = serve_connection(server, config).await {
            warn!(error = %e, "in-process engine connection failed");
        }
    });
    client
}

/// Handshake callback that records the `model` query parameter and accepts any request.
struct ModelCapture<'a>(&'a mut String);

impl Callback for ModelCapture<'_> {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        *self.0 = model_from_query(request.uri().query());
        Ok(response)
    }
}

/// The engine's only clock read.
#[allow(clippy::disallowed_methods)] // the engine is a server of its own: its adapter reads the clock
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Completes at `deadline`; never if there is none.
async fn wait_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Sends every queued event.
async fn flush<S>(
    ws: &mut WebSocketStream<S>,
    session: &mut EngineSession,
) -> Result<(), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(event) = session.poll_event() {
        ws.feed(Message::text(event)).await?;
    }
    ws.flush().await
}

/// Whether `e` just means the client went away.
fn is_disconnect(e: &tungstenite::Error) -> bool {
    matches!(
        e,
        tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
            )
    ) || matches!(
        e,
        tungstenite::Error::Io(io) if matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        )
    )
}

/// The `model` query parameter, or empty.
fn model_from_query(query: Option<&str>) -> String {
    query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("model="))
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_comes_from_the_query() {
        assert_eq!(
            model_from_query(Some("model=gpt-realtime-mini&x=1")),
            "gpt-realtime-mini"
        );
        assert_eq!(model_from_query(Some("a=b&model=m")), "m");
        assert_eq!(model_from_query(Some("deployment=d")), "");
        assert_eq!(model_from_query(None), "");
    }
}
