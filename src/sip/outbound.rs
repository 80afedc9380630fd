//! Outbound SIP calls: an INVITE with our SDP offer, through a trunk (answering its 401/407
//! digest challenges, MD5 or SHA-256, with the trunk's credentials) or straight to a SIP URI;
//! once answered, the call runs like an inbound one.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::{Header, StatusCodeKind, Uri};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::config::Trunk;
use super::digest;
use super::leg::{Media, SipCall, TELEPHONE_EVENT_PT};
use super::message;
use super::register::select_challenge;
use super::sdp::{self, Direction, LocalMedia, SdpOrigin};
use super::ua::Shared;
use crate::rtp::ports;

/// How many challenges an INVITE answers before giving up (a stale nonce takes a second).
const MAX_CHALLENGES: u32 = 2;

/// A call to place.
#[derive(Debug, Clone, Default)]
pub struct OutboundCall {
    /// A SIP URI, or a number dialled through a trunk.
    pub to: String,
    /// Caller id: a number or SIP URI (default: the trunk's `from`).
    pub from: Option<String>,
    /// The dialplan route to run the call on (default: matched on `to`).
    pub route: Option<String>,
    /// The trunk to place it through (default: the first with a proxy or registrar).
    pub trunk: Option<String>,
}

/// Why a call could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("the server is shutting down")]
    Draining,
    #[error("unknown trunk {0}")]
    UnknownTrunk(String),
    #[error("{0} is a number: name a trunk to dial it through, or configure one with a proxy")]
    NoTrunk(String),
    #[error("{0} is not a SIP URI")]
    BadTarget(String),
    #[error("no RTP port: {0}")]
    NoPort(String),
    #[error("the call was not answered ({code})")]
    NotAnswered { code: u16 },
    #[error("the call failed: {0}")]
    Failed(String),
    #[error("the answer has no usable media: {0}")]
    NoMedia(String),
}

impl OutboundError {
    /// Whether the request itself was wrong (rather than the call failing).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::UnknownTrunk(_) | Self::NoTrunk(_) | Self::BadTarget(_)
        )
    }
}

/// Places `call` and returns its Call-ID once answered.
pub(crate) async fn place(
    shared: &Arc<Shared>,
    call: OutboundCall,
) -> Result<String, OutboundError> {
    if shared.draining.load(Ordering::Relaxed) {
        return Err(OutboundError::Draining);
    }
    let trunk = pick_trunk(&shared.config.trunks, &call)?;
    let callee = callee_uri(&call.to, trunk)?;
    let peer_ip: IpAddr = callee
        .host_with_port
        .host
        .to_string()
        .trim_matches(['[', ']'])
        .parse()
        .unwrap_or(shared.local.ip());
    let local_ip = shared
        .config
        .public_ip
        .unwrap_or_else(|| message::local_ip_facing(shared.local.ip(), peer_ip));
    let caller = caller_uri(call.from.as_deref(), trunk, local_ip, shared.local.port())?;
    let bind_ip = if shared.local.ip().is_unspecified() {
        shared.local.ip()
    } else {
        local_ip
    };
    let (rtp, rtcp) = ports::bind_pair(bind_ip, shared.config.rtp_ports)
        .await
        .map_err(|e| OutboundError::NoPort(e.to_string()))?;
    let port = rtp.local_addr().map_or(0, |a| a.port());
    let local = LocalMedia { ip: local_ip, port };
    let mut origin = SdpOrigin::new(rand::random());
    let offer = sdp::offer(
        &shared.config.codecs,
        TELEPHONE_EVENT_PT,
        &local,
        &mut origin,
        Direction::SendRecv,
    );
    // Ours, rather than the stack's default (which names its authors' domain).
    let call_id = format!("{:032x}@{}", rand::random::<u128>(), local_ip);
    info!(trunk = trunk.map(|t| t.name.as_str()), "placing a call");
    // Challenges are answered here with our digest code (MD5 or SHA-256): the stack's own
    // client only understands MD5.
    let mut authorization: Option<Header> = None;
    let mut challenges = 0;
    let (dialog, response) = loop {
        let option = InviteOption {
            caller: caller.clone(),
            callee: callee.clone(),
            content_type: Some("application/sdp".into()),
            offer: Some(offer.clone().into_bytes()),
            contact: message::contact_uri(local_ip, shared.local.port()),
            headers: authorization.clone().map(|h| vec![h]),
            call_id: Some(call_id.clone()),
            ..InviteOption::default()
        };
        shared
            .metrics
            .inc("sip_requests_out_total", &[("method", "INVITE")]);
        let (dialog, response) = shared
            .dialogs
            .do_invite(option, shared.states.clone())
            .await
            .map_err(|e| OutboundError::Failed(e.to_string()))?;
        let response = response.ok_or_else(|| OutboundError::Failed("no answer".into()))?;
        let code = u16::from(response.status_code.clone());
        let credentials = trunk.and_then(|t| t.credentials.as_ref());
        if (code == 401 || code == 407) && challenges < MAX_CHALLENGES {
            if let (Some(creds), Some(challenge)) =
                (credentials, select_challenge(&response, code == 407))
            {
                challenges += 1;
                let value = digest::authorization(
                    &challenge,
                    &creds.auth_username,
                    creds.password(),
                    "INVITE",
                    &callee.to_string(),
                    &digest::random_cnonce(),
                    1,
                );
                authorization = Some(if code == 407 {
                    Header::ProxyAuthorization(value.into())
                } else {
                    Header::Authorization(value.into())
                });
                continue;
            }
        }
        break (dialog, response);
    };
    if response.status_code.kind() != StatusCodeKind::Successful {
        return Err(OutboundError::NotAnswered {
            code: u16::from(response.status_code),
        });
    }
    let answer = String::from_utf8_lossy(&response.body).into_owned();
    let negotiated = match sdp::parse_answer(&answer, &shared.config.codecs, TELEPHONE_EVENT_PT) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "the answer has no usable media; hanging up");
            let _ = dialog.bye().await;
            return Err(OutboundError::NoMedia(e.to_string()));
        }
    };
    let request = dialog.initial_request();
    let call_id = message::call_id(&request);
    let (notices_tx, notices) = mpsc::channel(32);
    shared.register_call(&dialog.id(), notices_tx);
    let sip_call = SipCall {
        dialog,
        request,
        from: message::uri_user(&caller),
        to: message::uri_user(&callee),
        route: call.route,
        answered: true,
        media: Media::Answered(negotiated, offer),
        origin,
        local,
        rtp,
        rtcp,
        notices,
        shared: Arc::clone(shared),
    };
    shared.legs.spawn((shared.on_call)(sip_call.into_leg()));
    Ok(call_id)
}

fn pick_trunk<'a>(
    trunks: &'a [Trunk],
    call: &OutboundCall,
) -> Result<Option<&'a Trunk>, OutboundError> {
    if let Some(name) = &call.trunk {
        return trunks
            .iter()
            .find(|t| &t.name == name)
            .map(Some)
            .ok_or_else(|| OutboundError::UnknownTrunk(name.clone()));
    }
    if is_sip_uri(&call.to) {
        return Ok(None);
    }
    trunks
        .iter()
        .find(|t| t.outbound_proxy().is_some())
        .map(Some)
        .ok_or_else(|| OutboundError::NoTrunk(call.to.clone()))
}

fn is_sip_uri(s: &str) -> bool {
    s.starts_with("sip:") || s.starts_with("sips:")
}

/// The Request-URI: a SIP URI as given, or the number at the trunk's proxy.
fn callee_uri(to: &str, trunk: Option<&Trunk>) -> Result<Uri, OutboundError> {
    let text = if is_sip_uri(to) {
        to.to_owned()
    } else {
        let proxy = trunk
            .and_then(Trunk::outbound_proxy)
            .ok_or_else(|| OutboundError::NoTrunk(to.to_owned()))?;
        let proxy = Uri::try_from(proxy).map_err(|_| OutboundError::BadTarget(proxy.to_owned()))?;
        format!("sip:{}@{}", to.trim(), proxy.host_with_port)
    };
    Uri::try_from(text.as_str()).map_err(|_| OutboundError::BadTarget(to.to_owned()))
}

/// The From URI: the given caller id, the trunk's `from`, or `dialtone` at our address.
fn caller_uri(
    from: Option<&str>,
    trunk: Option<&Trunk>,
    ip: IpAddr,
    port: u16,
) -> Result<Uri, OutboundError> {
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    };
    let text = match from.or(trunk.and_then(|t| t.from.as_deref())) {
        Some(f) if is_sip_uri(f) => f.to_owned(),
        Some(number) => format!("sip:{}@{host}", number.trim()),
        None => format!("sip:dialtone@{host}"),
    };
    Uri::try_from(text.as_str()).map_err(|_| OutboundError::BadTarget(text))
}
