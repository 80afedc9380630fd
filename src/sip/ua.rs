//! The SIP user agent: the adapter around rsipstack.
//!
//! rsipstack owns the transports (UDP and TCP), the transaction layer (retransmissions,
//! timers A–K, CANCEL matching, absorbing ACKs) and dialogs (tags, CSeq, route sets, 2xx
//! retransmission until ACK). This module decides what to do with each new request — which
//! calls to take, the answers outside dialogs (OPTIONS, 405, 481, 403, 503), semantic checks
//! the parser does not make — and routes each dialog's events to its call's task
//! (`leg.rs`). rsipstack's types stay in this module and `leg.rs`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::EndpointBuilder;
use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver, DialogStateSender};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{Header, HeadersExt, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::TransportLayer;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::config::{AccessList, Trunk};
use super::digest::{Challenger, Verdict};
use super::leg::{Notice, SipCall};
use super::message;
use super::outbound::{OutboundCall, OutboundError};
use super::sdp::{self, Codec, LocalMedia, SdpOrigin};
use crate::metrics::Metrics;
use crate::rtp::ports::{self, PortRange};

/// How long calls may take to finish their signalling (BYE and its answer) at shutdown.
pub const LEG_SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Methods this user agent implements.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY, INFO";
/// Bodies it accepts.
pub const ACCEPT: &str = "application/sdp, message/sipfrag";

/// What the user agent is configured with.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// Signalling address, UDP and TCP.
    pub listen: SocketAddr,
    pub rtp_ports: PortRange,
    /// Address put in Contact and SDP; by default the local address facing the peer.
    pub public_ip: Option<IpAddr>,
    /// Codec preference order.
    pub codecs: Vec<Codec>,
    /// Who may call without authenticating.
    pub allow: AccessList,
    /// Minimum ringing before a call is answered.
    pub ring: Duration,
    /// Trunks outbound calls go through; those with `challenge = true` authenticate callers
    /// that are not on an allow list.
    pub trunks: Vec<Trunk>,
    /// Digest realm callers are challenged with.
    pub realm: String,
}

/// Why the user agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen for SIP on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// Receives each new SIP call's leg.
pub type OnSipCall = crate::call::leg::OnCall;

/// State shared by the dispatcher and the calls.
pub(crate) struct Shared {
    pub config: SipConfig,
    pub dialogs: Arc<DialogLayer>,
    pub states: DialogStateSender,
    pub calls: Mutex<HashMap<String, mpsc::Sender<Notice>>>,
    pub metrics: Arc<Metrics>,
    pub on_call: OnSipCall,
    pub draining: AtomicBool,
    /// The signalling address actually bound.
    pub local: SocketAddr,
    /// Issues and checks digest challenges for callers off the allow lists.
    pub challenger: Challenger,
    /// What the datagram check did.
    pub guard: Arc<super::guard::GuardCounters>,
    /// The calls' tasks, so shutdown can wait for their BYEs.
    pub legs: TaskTracker,
}

impl Shared {
    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Notice>>> {
        // Single inserts and removes cannot leave the map inconsistent after a panic.
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Routes the dialog's events to a call's task.
    pub(crate) fn register_call(&self, id: &DialogId, notices: mpsc::Sender<Notice>) {
        self.calls().insert(id.to_string(), notices);
    }

    pub(crate) fn forget(&self, id: &DialogId) {
        self.calls().remove(&id.to_string());
        self.dialogs.remove_dialog(id);
    }

    fn count_request(&self, method: &Method) {
        self.metrics.inc(
            "sip_requests_total",
            &[("method", &message::method_name(method))],
        );
    }
}

/// A bound user agent.
pub struct SipUa {
    shared: Arc<Shared>,
    endpoint: rsipstack::transaction::endpoint::Endpoint,
    incoming: rsipstack::transaction::TransactionReceiver,
    state_rx: DialogStateReceiver,
    cancel: CancellationToken,
}

impl SipUa {
    /// Binds UDP and TCP on the configured address (port 0 picks a free port for both).
    pub async fn bind(
        config: SipConfig,
        metrics: Arc<Metrics>,
        on_call: OnSipCall,
    ) -> Result<Self, SipError> {
        let cancel = CancellationToken::new();
        let bind_err = |reason: String| SipError::Bind {
            addr: config.listen,
            reason,
        };
        let transport = TransportLayer::new(cancel.child_token());
        let guard = Arc::new(super::guard::GuardCounters::default());
        let udp =
            super::guard::guarded_udp(config.listen, cancel.child_token(), Arc::clone(&guard))
                .await
                .map_err(|e| bind_err(e.to_string()))?;
        let local = udp
            .get_addr()
            .get_socketaddr()
            .map_err(|e| bind_err(e.to_string()))?;
        transport.add_transport(udp.into());
        let tcp = TcpListenerConnection::new(local, None)
            .await
            .map_err(|e| bind_err(e.to_string()))?;
        transport.add_transport(tcp.into());
        // Call-IDs of requests the stack makes (registrations) end in our host rather than
        // the stack's default domain.
        let option = rsipstack::transaction::endpoint::EndpointOption {
            callid_suffix: Some(config.public_ip.unwrap_or(local.ip()).to_string()),
            ..Default::default()
        };
        let endpoint = EndpointBuilder::new()
            .with_option(option)
            .with_inspector(Box::new(super::inspect::CountingInspector(Arc::clone(
                &metrics,
            ))))
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transport)
            .with_user_agent(concat!("dialtone/", env!("CARGO_PKG_VERSION")))
            .with_allows(message::allowed_methods())
            .build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| bind_err(e.to_string()))?;
        describe_metrics(&metrics);
        let realm = config.realm.clone();
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (states, state_rx) = dialogs.new_dialog_state_channel();
        let shared = Arc::new(Shared {
            config,
            dialogs,
            states,
            calls: Mutex::new(HashMap::new()),
            metrics,
            on_call,
            draining: AtomicBool::new(false),
            local,
            challenger: Challenger::with_random_secret(&realm),
            guard,
            legs: TaskTracker::new(),
        });
        Ok(Self {
            shared,
            endpoint,
            incoming,
            state_rx,
            cancel,
        })
    }

    /// The bound signalling address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The transaction layer, for requests outside calls (registrations).
    pub fn endpoint(&self) -> rsipstack::transaction::endpoint::EndpointInnerRef {
        self.endpoint.inner.clone()
    }

    /// The trunks and public address registrations need.
    pub fn config(&self) -> &SipConfig {
        &self.shared.config
    }

    /// A handle to refuse new calls (503) once shutdown starts.
    pub fn drain_handle(&self) -> DrainHandle {
        DrainHandle(Arc::clone(&self.shared))
    }

    /// How many dialogs have a call task.
    pub fn dialogs(&self) -> DialogCount {
        DialogCount(Arc::clone(&self.shared))
    }

    /// A handle to place outbound calls.
    pub fn caller(&self) -> SipCaller {
        SipCaller(Arc::clone(&self.shared))
    }

    /// Serves until `shutdown` is cancelled.
    ///
    /// Once `shutdown` fires, the calls still ending (their BYEs, and the answers to them) are
    /// served for up to [`LEG_SHUTDOWN_GRACE`] before the transports close.
    pub async fn run(mut self, shutdown: CancellationToken) {
        info!(addr = %self.shared.local, "SIP listening on UDP and TCP");
        let serve = self.endpoint.serve();
        tokio::pin!(serve);
        let stopping = tokio::time::sleep(Duration::MAX);
        tokio::pin!(stopping);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                () = &mut serve => break,
                () = shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    self.shared.legs.close();
                    #[allow(clippy::disallowed_methods)] // the user agent task bounds its own shutdown
                    stopping.as_mut().reset(tokio::time::Instant::now() + LEG_SHUTDOWN_GRACE);
                }
                () = self.shared.legs.wait(), if shutting_down => break,
                () = &mut stopping => {
                    warn!(calls = self.shared.legs.len(), "SIP calls still ending at shutdown");
                    break;
                }
                tx = self.incoming.recv() => match tx {
                    Some(tx) => {
                        let shared = Arc::clone(&self.shared);
                        tokio::spawn(on_transaction(shared, tx));
                    }
                    None => break,
                },
                state = self.state_rx.recv() => match state {
                    Some(state) => on_dialog_state(&self.shared, state).await,
                    None => break,
                },
            }
        }
        self.cancel.cancel();
    }
}

/// Gives the user agent's counters their help text.
fn describe_metrics(metrics: &Metrics) {
    for (name, help) in [
        (
            "sip_requests_total",
            "New SIP transactions received, by method.",
        ),
        (
            "sip_messages_total",
            "SIP messages on the wire, by direction, kind, method and status code.",
        ),
        (
            "sip_requests_out_total",
            "SIP requests sent to start calls, by method.",
        ),
        ("sip_calls_refused_total", "INVITEs refused, by reason."),
        (
            "sip_calls_cancelled_total",
            "Calls cancelled by the caller while ringing.",
        ),
        (
            "sip_auth_failures_total",
            "Callers whose digest credentials were wrong.",
        ),
        (
            "calls_rejected_total",
            "Calls ended before starting, by reason.",
        ),
        (
            "rtp_jitter_ms_sum",
            "Interarrival jitter of SIP calls' caller audio, summed (ms).",
        ),
        (
            "rtp_jitter_ms_count",
            "SIP calls whose jitter is in rtp_jitter_ms_sum.",
        ),
        (
            "calls_place_refused_total",
            "POST /calls requests refused, by reason.",
        ),
    ] {
        metrics.describe_counter(name, help);
    }
}

/// Reads the number of SIP dialogs with a call.
#[derive(Clone)]
pub struct DialogCount(Arc<Shared>);

impl DialogCount {
    pub fn get(&self) -> usize {
        self.0.calls().len()
    }

    /// What the datagram check did, for `/metrics`.
    pub fn guard(&self) -> super::guard::GuardSnapshot {
        self.0.guard.snapshot()
    }
}

/// Tells the user agent to refuse new calls.
#[derive(Clone)]
pub struct DrainHandle(Arc<Shared>);

impl DrainHandle {
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }
}

/// Places outbound calls through the user agent.
#[derive(Clone)]
pub struct SipCaller(Arc<Shared>);

impl SipCaller {
    /// Places `call`; returns its Call-ID once answered.
    pub async fn place(&self, call: OutboundCall) -> Result<String, OutboundError> {
        super::outbound::place(&self.0, call).await
    }
}

/// Handles one new server transaction.
async fn on_transaction(shared: Arc<Shared>, mut tx: Transaction) {
    let method = tx.original.method;
    shared.count_request(&method);
    if let Err(refusal) = message::check_request(&tx.original) {
        debug!(%method, status = u16::from(refusal.status.clone()), "request refused");
        respond(&mut tx, refusal.status, refusal.headers).await;
        return;
    }
    let in_dialog = message::has_to_tag(&tx.original);
    match method {
        Method::Invite if !in_dialog => new_invite(shared, tx).await,
        Method::Ack => {} // a stray ACK: nothing to answer
        Method::Options if !in_dialog => {
            let status = if shared.draining.load(Ordering::Relaxed) {
                StatusCode::ServiceUnavailable
            } else {
                StatusCode::OK
            };
            respond(&mut tx, status, message::capabilities()).await;
        }
        _ => match shared.dialogs.match_dialog(&tx) {
            Some(Dialog::Invite(mut dialog)) => {
                if let Err(e) = dialog.handle(&mut tx).await {
                    debug!(error = %e, %method, "in-dialog request failed");
                }
            }
            Some(_) | None => {
                let status = match method {
                    _ if in_dialog => StatusCode::CallTransactionDoesNotExist,
                    Method::Bye | Method::Cancel => StatusCode::CallTransactionDoesNotExist,
                    Method::Register
                    | Method::Subscribe
                    | Method::Publish
                    | Method::Message
                    | Method::Info
                    | Method::Notify
                    | Method::Refer
                    | Method::Update
                    | Method::PRack => StatusCode::MethodNotAllowed,
                    _ => StatusCode::NotImplemented,
                };
                respond(&mut tx, status, message::capabilities()).await;
            }
        },
    }
}

/// Sends a final response outside any dialog (counted on the wire, see `inspect.rs`).
async fn respond(tx: &mut Transaction, status: StatusCode, headers: Vec<Header>) {
    if let Err(e) = tx.reply_with(status, headers, None).await {
        debug!(error = %e, "response not sent");
    }
}

/// A new INVITE: check who calls, negotiate media, create the dialog and the call's task.
async fn new_invite(shared: Arc<Shared>, mut tx: Transaction) {
    if shared.draining.load(Ordering::Relaxed) {
        shared
            .metrics
            .inc("sip_calls_refused_total", &[("reason", "draining")]);
        respond(&mut tx, StatusCode::ServiceUnavailable, vec![]).await;
        return;
    }
    let source = message::source_addr(&tx.original);
    if !source.is_some_and(|s| shared.config.allow.allows(s.ip())) {
        match authenticate(&shared, &tx.original) {
            Authenticated::Yes => {}
            Authenticated::Challenge { stale } => {
                let now = unix_now();
                // MD5 first: many phones and SIPp answer only the first challenge and only
                // know MD5; RFC 8760 clients still find SHA-256 in the second.
                let headers = shared
                    .challenger
                    .challenge_headers(stale, now)
                    .into_iter()
                    .rev()
                    .map(|v| Header::WwwAuthenticate(v.into()))
                    .collect();
                respond(&mut tx, StatusCode::Unauthorized, headers).await;
                return;
            }
            Authenticated::No => {
                warn!(source = ?source.map(|s| s.ip()), "INVITE from an address that may not call");
                shared
                    .metrics
                    .inc("sip_calls_refused_total", &[("reason", "forbidden")]);
                respond(&mut tx, StatusCode::Forbidden, vec![]).await;
                return;
            }
        }
    }
    let peer_ip = source.map_or(shared.local.ip(), |s| s.ip());
    let local_ip = shared
        .config
        .public_ip
        .unwrap_or_else(|| message::local_ip_facing(shared.local.ip(), peer_ip));
    let bind_ip = if shared.local.ip().is_unspecified() {
        shared.local.ip()
    } else {
        local_ip
    };
    let (rtp, rtcp) = match ports::bind_pair(bind_ip, shared.config.rtp_ports).await {
        Ok(pair) => pair,
        Err(e) => {
            warn!(error = %e, "no RTP port for a new call");
            shared
                .metrics
                .inc("sip_calls_refused_total", &[("reason", "no_rtp_port")]);
            respond(&mut tx, StatusCode::ServiceUnavailable, vec![]).await;
            return;
        }
    };
    let port = rtp.local_addr().map_or(0, |a| a.port());
    let local = LocalMedia { ip: local_ip, port };
    let mut origin = SdpOrigin::new(rand::random());
    let offer = String::from_utf8_lossy(&tx.original.body).into_owned();
    let media = if offer.trim().is_empty() {
        super::leg::Media::Offered(sdp::offer(
            &shared.config.codecs,
            super::leg::TELEPHONE_EVENT_PT,
            &local,
            &mut origin,
            sdp::Direction::SendRecv,
        ))
    } else {
        match sdp::answer(&offer, &shared.config.codecs, &local, &mut origin) {
            Ok((negotiated, answer)) => super::leg::Media::Answered(negotiated, answer),
            Err(e) => {
                debug!(error = %e, "no usable media in the offer");
                shared
                    .metrics
                    .inc("sip_calls_refused_total", &[("reason", "not_acceptable")]);
                let warning = message::warning(&shared.local, &e.to_string());
                respond(&mut tx, StatusCode::NotAcceptableHere, warning).await;
                return;
            }
        }
    };
    let contact = message::contact_uri(local_ip, shared.local.port());
    let mut dialog = match shared.dialogs.get_or_create_server_invite(
        &tx,
        shared.states.clone(),
        None,
        Some(contact),
    ) {
        Ok(dialog) => dialog,
        Err(e) => {
            warn!(error = %e, "cannot create a dialog for an INVITE");
            respond(&mut tx, StatusCode::ServerInternalError, vec![]).await;
            return;
        }
    };
    let (notices_tx, notices) = mpsc::channel(32);
    shared.register_call(&dialog.id(), notices_tx);
    let call = SipCall {
        dialog: dialog.clone(),
        request: tx.original.clone(),
        from: message::from_user(&tx.original),
        to: message::uri_user(&tx.original.uri),
        route: None,
        answered: false,
        media,
        origin,
        local,
        rtp,
        rtcp,
        notices,
        shared: Arc::clone(&shared),
    };
    shared.legs.spawn((shared.on_call)(call.into_leg()));
    // Runs the INVITE server transaction: 100 Trying, then waits for our final response's
    // ACK, or a CANCEL (487).
    if let Err(e) = dialog.handle(&mut tx).await {
        debug!(error = %e, "INVITE transaction ended with an error");
    }
}

/// What digest authentication says of a caller off the allow lists.
enum Authenticated {
    Yes,
    /// Send a challenge (again, `stale` when the nonce had only expired).
    Challenge {
        stale: bool,
    },
    No,
}

/// Checks an INVITE's `Authorization` against the trunks that challenge callers.
fn authenticate(shared: &Shared, req: &rsipstack::sip::Request) -> Authenticated {
    let trunks = &shared.config.trunks;
    if !trunks.iter().any(|t| t.challenge) {
        return Authenticated::No;
    }
    let Some(header) = req
        .header_value("Authorization")
        .or_else(|| req.header_value("Proxy-Authorization"))
    else {
        return Authenticated::Challenge { stale: false };
    };
    let password_for = |user: &str| {
        trunks
            .iter()
            .find(|t| t.challenge && t.username() == Some(user))
            .and_then(|t| t.password().map(str::to_owned))
    };
    match shared
        .challenger
        .verify("INVITE", &header, password_for, unix_now())
    {
        Verdict::Ok { username } => {
            debug!(%username, "caller authenticated");
            Authenticated::Yes
        }
        Verdict::Stale => Authenticated::Challenge { stale: true },
        Verdict::Invalid => {
            shared.metrics.inc("sip_auth_failures_total", &[]);
            Authenticated::No
        }
    }
}

#[allow(clippy::disallowed_methods)] // SDP origin times come from the wall clock, in the adapter
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Routes a dialog's event to its call.
async fn on_dialog_state(shared: &Arc<Shared>, state: DialogState) {
    let id = match &state {
        DialogState::Calling(id)
        | DialogState::Trying(id)
        | DialogState::Early(id, _)
        | DialogState::WaitAck(id, _)
        | DialogState::Confirmed(id, _)
        | DialogState::Updated(id, _, _)
        | DialogState::Publish(id, _, _)
        | DialogState::Notify(id, _, _)
        | DialogState::Refer(id, _, _)
        | DialogState::Message(id, _, _)
        | DialogState::Info(id, _, _)
        | DialogState::Options(id, _, _)
        | DialogState::Terminated(id, _) => id.clone(),
    };
    let sender = shared.calls().get(&id.to_string()).cloned();
    let terminated = matches!(state, DialogState::Terminated(..));
    match sender {
        Some(sender) => {
            if sender.send(Notice::Dialog(state)).await.is_err() && terminated {
                shared.forget(&id);
            }
        }
        None => {
            // No call for this dialog (it has ended): answer what needs an answer.
            if let DialogState::Updated(_, _, handle)
            | DialogState::Notify(_, _, handle)
            | DialogState::Refer(_, _, handle)
            | DialogState::Info(_, _, handle)
            | DialogState::Options(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) = state
            {
                let _ = handle.reply(StatusCode::CallTransactionDoesNotExist).await;
            }
            if terminated {
                shared.forget(&id);
            }
        }
    }
}
