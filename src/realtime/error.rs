//! [`RealtimeError`]: why a Realtime connection could not be opened, either while building
//! the handshake request (no endpoint, unusable URL or key) or during the handshake itself
//! (HTTP rejection, transport failure).

use tokio_tungstenite::tungstenite;

/// Errors opening a Realtime connection.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The embedded engine is reached with [`connect_stream`], not over the network.
    ///
    /// [`connect_stream`]: crate::realtime::client::RealtimeSocket::connect_stream
    #[error("the embedded engine has no network endpoint")]
    NoEndpoint,
    /// The configured URL cannot be used. `url` has its credentials and query removed.
    #[error("invalid Realtime URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The API key cannot be sent in an HTTP header (control characters, non-ASCII).
    #[error("the Realtime API key is not a valid HTTP header value")]
    InvalidKey,
    /// The server answered the WebSocket upgrade with an HTTP error (bad key: 401).
    #[error("Realtime server rejected the connection with HTTP {status}{}", excerpt_suffix(.body))]
    Rejected { status: u16, body: String },
    /// The connection or the WebSocket handshake failed.
    #[error("Realtime connection failed: {0}")]
    Handshake(#[source] tungstenite::Error),
}

fn excerpt_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}
