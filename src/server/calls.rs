//! `POST /calls`: placing outbound calls, through a SIP trunk or through Twilio's REST API.
//!
//! Body: `{"to": "...", "from": "...", "route": "...", "trunk": "...", "via": "sip"|"twilio"}`
//! (only `to` is required; `via` defaults to `sip`). A SIP call answers `201` with its Call-ID
//! once answered; a Twilio call answers `201` with the new CallSid once Twilio accepted it, and
//! is bridged when its Media Stream connects. Placing calls costs money: with
//! `DIALTONE_API_TOKEN` set the request needs `Authorization: Bearer <token>`, and without it
//! only clients on loopback may place calls.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::AppState;
use crate::sip::outbound::OutboundCall;
use crate::sip::ua::SipCaller;
use crate::telemetry::Pii;
use crate::twilio::{TwilioRest, signature, twiml};

/// What placing calls needs.
pub(super) struct Placer {
    pub sip: Option<SipCaller>,
    pub twilio: Option<Arc<TwilioRest>>,
    pub public_url: Option<String>,
    pub api_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlaceCall {
    to: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    trunk: Option<String>,
    #[serde(default)]
    via: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Whether the client may place calls.
fn authorized(placer: &Placer, peer: SocketAddr, headers: &HeaderMap) -> bool {
    match &placer.api_token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())),
        None => peer.ip().is_loopback(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) async fn place(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(request): Json<PlaceCall>,
) -> Response {
    let placer = &state.placer;
    if !authorized(placer, peer, &headers) {
        state
            .services
            .metrics
            .inc("calls_place_refused_total", &[("reason", "unauthorized")]);
        return error(
            StatusCode::FORBIDDEN,
            "placing calls needs a bearer token (DIALTONE_API_TOKEN), or a client on loopback",
        );
    }
    if request.to.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "`to` is empty");
    }
    if let Some(route) = &request.route {
        if state.services.dialplan.route_named(route).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                format!("no dialplan route named {route}"),
            );
        }
    }
    match request.via.as_deref().unwrap_or("sip") {
        "sip" => place_sip(placer, request).await,
        "twilio" => place_twilio(placer, request).await,
        other => error(
            StatusCode::BAD_REQUEST,
            format!("`via` must be sip or twilio, not {other}"),
        ),
    }
}

async fn place_sip(placer: &Placer, request: PlaceCall) -> Response {
    let Some(sip) = &placer.sip else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SIP is not enabled on this server",
        );
    };
    info!(to = %Pii(&request.to), "placing a SIP call");
    let call = OutboundCall {
        to: request.to,
        from: request.from,
        route: request.route,
        trunk: request.trunk,
    };
    match sip.place(call).await {
        Ok(call_id) => (
            StatusCode::CREATED,
            Json(json!({ "via": "sip", "call_id": call_id })),
        )
            .into_response(),
        Err(e) if e.is_bad_request() => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => {
            warn!(error = %e, "outbound SIP call failed");
            error(StatusCode::BAD_GATEWAY, e.to_string())
        }
    }
}

async fn place_twilio(placer: &Placer, request: PlaceCall) -> Response {
    let (Some(rest), Some(public_url)) = (&placer.twilio, &placer.public_url) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "placing Twilio calls needs TWILIO_AUTH_TOKEN, TWILIO_ACCOUNT_SID and --public-url",
        );
    };
    let Some(from) = request.from.as_deref() else {
        return error(
            StatusCode::BAD_REQUEST,
            "a Twilio call needs `from` (your Twilio number)",
        );
    };
    let stream_url = format!(
        "{}{}",
        signature::websocket_url(public_url.trim_end_matches('/')),
        crate::twilio::MEDIA_PATH
    );
    let route = request.route.as_deref().unwrap_or("");
    let twiml = twiml::connect_stream(
        &stream_url,
        &[("From", from), ("To", &request.to), ("Route", route)],
    );
    info!(to = %Pii(&request.to), "placing a Twilio call");
    match rest.create_call(from, &request.to, &twiml).await {
        Ok(sid) => (
            StatusCode::CREATED,
            Json(json!({ "via": "twilio", "call_id": sid })),
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "outbound Twilio call failed");
            error(StatusCode::BAD_GATEWAY, e.to_string())
        }
    }
}
