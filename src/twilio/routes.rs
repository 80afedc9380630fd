//! HTTP side of Twilio calls: the voice webhook that answers with `<Connect><Stream>` TwiML and
//! the Media Stream WebSocket endpoint.
//!
//! - `POST /twilio/voice`: Twilio's incoming-call webhook (form body). Answers with a stream to
//!   `/twilio/media` on the same public host, passing `From`, `To` and `CallSid` as
//!   `<Parameter>`s.
//! - `GET /twilio/media`: the Media Stream WebSocket, run by [`run_media_socket`].
//!
//! With an auth token configured, both check `X-Twilio-Signature` and answer 403 when it does
//! not match. The public URL of a request is the configured `public_url` followed by the
//! request's path and query; without one it is rebuilt from `X-Forwarded-Proto`,
//! `X-Forwarded-Host` and `Host` (the first value of each). With no `X-Forwarded-Proto`, webhook
//! signatures are checked against both `https` and `http`, and the stream URL uses `wss`.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Form, OriginalUri, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::counters::TwilioCounters;
use super::leg::{MediaContext, OnCall, run_media_socket};
use super::rest::TwilioRest;
use super::signature::{self, public_url, websocket_url};
use super::twiml;

/// Path of the incoming-call webhook.
pub const VOICE_PATH: &str = "/twilio/voice";
/// Path of the Media Stream WebSocket.
pub const MEDIA_PATH: &str = "/twilio/media";

/// The webhook form fields passed on to the stream as `<Parameter>`s.
const FORWARDED_FIELDS: [&str; 3] = ["From", "To", "CallSid"];

const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// What the Twilio routes share.
#[derive(Clone)]
pub struct TwilioState {
    /// Public origin Twilio reaches the bridge at, e.g. `https://bridge.example.com` (a path
    /// prefix is kept: `https://host/prefix` signs `/prefix/twilio/voice` and streams to
    /// `wss://host/prefix/twilio/media`).
    pub public_url: Option<String>,
    /// Account auth token; when set, requests must carry a valid `X-Twilio-Signature`.
    pub auth_token: Option<String>,
    /// REST client for hangup and transfer.
    pub rest: Option<Arc<TwilioRest>>,
    /// Receives each new call's leg.
    pub on_call: OnCall,
    pub counters: Arc<TwilioCounters>,
}

/// The Twilio routes, with their state applied.
pub fn router(state: TwilioState) -> Router {
    Router::new()
        .route(VOICE_PATH, post(voice))
        .route(MEDIA_PATH, get(media))
        .with_state(state)
}

async fn voice(
    State(state): State<TwilioState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    if let Some(token) = &state.auth_token {
        let origins = request_origins(&state, &headers, Transport::Http);
        if !is_signed(token, &origins, path_and_query, &fields, &headers) {
            return reject(&state, VOICE_PATH);
        }
    }

    let Some(origin) = request_origins(&state, &headers, Transport::WebSocket)
        .into_iter()
        .next()
    else {
        return (StatusCode::BAD_REQUEST, "no usable Host header").into_response();
    };
    let media_path = uri
        .path()
        .strip_suffix("/voice")
        .map_or_else(|| MEDIA_PATH.to_owned(), |prefix| format!("{prefix}/media"));
    let stream_url = public_url(&origin, &media_path);

    let params: Vec<(&str, &str)> = FORWARDED_FIELDS
        .iter()
        .filter_map(|&name| {
            fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| (name, value.as_str()))
        })
        .collect();
    let call_sid = params
        .iter()
        .find(|(name, _)| *name == "CallSid")
        .map(|&(_, sid)| sid);
    tracing::debug!(call_sid, "answering with a media stream");
    (
        [(CONTENT_TYPE, "text/xml")],
        twiml::connect_stream(&stream_url, &params),
    )
        .into_response()
}

async fn media(
    State(state): State<TwilioState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(token) = &state.auth_token {
        let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
        let origins = request_origins(&state, &headers, Transport::WebSocket);
        if !is_signed(token, &origins, path_and_query, &[], &headers) {
            return reject(&state, MEDIA_PATH);
        }
    }
    let ctx = MediaContext::new(state.on_call.clone(), state.counters.clone())
        .with_rest(state.rest.clone());
    // Buffers sized for thousands of streams (tungstenite's defaults suit one fast stream):
    // - reads: tungstenite zero-fills the free part of its read buffer before every read, so
    //   the default 128 KiB costs a 128 KiB memset per read and most of a call's memory.
    //   Twilio's messages are a few hundred bytes; 2 KiB takes several per read.
    // - writes: the call feeds a wake-up's messages and flushes once; 16 KiB holds them. A
    //   peer that stops reading fails the socket at 256 KiB (the playout lead keeps what a
    //   call sends ahead to well under that).
    // - messages: nothing Twilio sends comes near 64 KiB (a `start` with its custom
    //   parameters is the largest); a larger one is refused instead of buffered.
    upgrade
        .read_buffer_size(2 << 10)
        .write_buffer_size(16 << 10)
        .max_write_buffer_size(256 << 10)
        .max_message_size(64 << 10)
        .max_frame_size(64 << 10)
        .on_upgrade(move |socket| run_media_socket(socket, ctx))
}

/// Which URL scheme family a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http,
    WebSocket,
}

/// The origins (`scheme://host[:port]`) the request may have been addressed to, most likely
/// first; empty if there is no configured URL and no usable host header.
fn request_origins(state: &TwilioState, headers: &HeaderMap, transport: Transport) -> Vec<String> {
    let for_transport = |origin: String| match transport {
        Transport::Http => origin,
        Transport::WebSocket => websocket_url(&origin),
    };
    if let Some(base) = &state.public_url {
        return vec![for_transport(base.trim_end_matches('/').to_owned())];
    }
    let Some(host) = first_header_value(headers, "x-forwarded-host")
        .or_else(|| first_header_value(headers, HOST.as_str()))
        .filter(|host| is_plausible_host(host))
    else {
        return Vec::new();
    };
    let schemes: &[&str] = match first_header_value(headers, "x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("http") || proto.eq_ignore_ascii_case("ws") => {
            &["http"]
        }
        Some(_) => &["https"],
        None if transport == Transport::Http => &["https", "http"],
        None => &["https"],
    };
    schemes
        .iter()
        .map(|scheme| for_transport(format!("{scheme}://{host}")))
        .collect()
}

/// Whether the request carries a valid signature for one of `origins` + `path_and_query`.
fn is_signed(
    token: &str,
    origins: &[String],
    path_and_query: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> bool {
    let Some(signature) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origins.iter().any(|origin| {
        signature::validate(
            token,
            &public_url(origin, path_and_query),
            params,
            signature,
        )
    })
}

fn reject(state: &TwilioState, endpoint: &'static str) -> Response {
    TwilioCounters::bump(&state.counters.signature_rejected);
    tracing::warn!(
        endpoint,
        "rejected request without a valid X-Twilio-Signature"
    );
    StatusCode::FORBIDDEN.into_response()
}

/// The first comma-separated value of a header, trimmed; `None` if absent or empty.
fn first_header_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// A host header usable in a URL: no path, query, user info or whitespace.
fn is_plausible_host(host: &str) -> bool {
    !host.is_empty()
        && !host.chars().any(|c| {
            c.is_whitespace() || matches!(c, '/' | '\\' | '?' | '#' | '@' | '"' | '<' | '>')
        })
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
