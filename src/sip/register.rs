//! Registration of SIP trunks at their registrars (RFC 3261 §10).
//!
//! Every trunk with a `registrar` gets one task in [`run`] that keeps its binding alive:
//!
//! - **REGISTER with digest.** Requests go through rsipstack's transaction layer (UDP/TCP,
//!   retransmissions, Timer F) but are built and authenticated here, with [`super::digest`]:
//!   rsipstack 0.7.14's own registration client parses only the first challenge header and does
//!   not know the RFC 7616 algorithm token `SHA-256` (it expects `SHA256`), so a registrar that
//!   offers SHA-256 first, as RFC 8760 asks, could not be registered with. A `401`/`407` is
//!   answered with the first challenge we support, in the registrar's order (SHA-256 or MD5,
//!   `qop=auth` or the legacy form); a second challenge means the credentials were refused,
//!   unless it says `stale=true`. The Call-ID and From tag stay the same for as long as the
//!   process runs and CSeq keeps increasing (§10.2.4).
//! - **Refresh.** The lifetime the registrar granted (our Contact's `expires` in the `2xx`, or
//!   its `Expires` header, or what we asked for) decides when to refresh: at 80 % of it, but at
//!   least 30 s before it lapses when the lifetime allows ([`refresh_after`]).
//! - **Retry.** A failed attempt is retried after an exponential backoff, 2 s doubling up to
//!   5 min, with jitter ([`backoff`]). A registrar that cannot be parsed, or a trunk without
//!   credentials, is reported once and never retried.
//! - **`423 Interval Too Brief`.** The request is repeated at once with the `Min-Expires`
//!   lifetime, which is then kept for later refreshes.
//! - **Contact.** `<sip:username@address>`, the address being [`Settings::contact`] when given,
//!   else the local transport address, replaced by the one the registrar reports in the Via's
//!   `received`/`rport` (NAT).
//! - **Shutdown.** When the token is cancelled, a trunk that may hold a binding is unregistered
//!   (`Expires: 0`), best effort and bounded by [`Settings::unregister_timeout`].
//!
//! [`RegistrationStatus`] is the shared view of every trunk's registration: its
//! [`snapshot`](RegistrationStatus::snapshot) serializes for `/healthz`, and
//! [`render_metrics`](RegistrationStatus::render_metrics) appends Prometheus text for
//! `/metrics`. Logs name the trunk and its username, never the password or the registrar URI.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use rsipstack::sip::headers::{Authorization, CallId, Expires, ProxyAuthorization};
use rsipstack::sip::param::Tag;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::typed::Contact;
use rsipstack::sip::{
    HasHeaders, Header, Method, Param, Response, SipMessage, StatusCodeKind, Uri,
};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::{make_call_id, make_tag};
use rsipstack::transport::{SipAddr, SipConnection};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::Trunk;
use super::digest::{self, Challenge};

/// The first retry delay after a failed registration.
pub const BACKOFF_MIN: Duration = Duration::from_secs(2);

/// The longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long before expiry a refresh is sent at the latest, when the lifetime allows.
pub const REFRESH_LEAD: Duration = Duration::from_secs(30);

/// How many times in a row a `423 Interval Too Brief` is answered with a longer lifetime.
const MAX_INTERVAL_RETRIES: usize = 3;

/// The shortest wait before a refresh, whatever lifetime was granted.
const MIN_REFRESH: Duration = Duration::from_millis(500);

/// Why a registration attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The trunk's `registrar` is not a `sip:` or `sips:` URI the stack can parse.
    #[error("the registrar is not a valid SIP URI")]
    InvalidRegistrar,
    /// The trunk has a registrar but no credentials.
    #[error("the trunk has no credentials to register with")]
    NoCredentials,
    /// The registrar challenged again after the credentials were sent: they were refused.
    #[error("the registrar refused the credentials ({code})")]
    Unauthorized {
        /// `401` or `407`.
        code: u16,
    },
    /// The registrar answered with a final failure response.
    #[error("the registrar answered {code}")]
    Rejected {
        /// The status code.
        code: u16,
    },
    /// `423 Interval Too Brief` without a usable `Min-Expires`, or repeatedly.
    #[error("the registrar wants a longer lifetime{}", at_least(*.min_expires))]
    IntervalTooBrief {
        /// The `Min-Expires` value of the last `423`, if it had one.
        min_expires: Option<u32>,
    },
    /// The registrar's challenge has no algorithm or `qop` we support.
    #[error("the registrar's digest challenge is not supported ({code})")]
    UnsupportedChallenge {
        /// `401` or `407`.
        code: u16,
    },
    /// The registrar accepted the request but granted no lifetime.
    #[error("the registrar granted a zero lifetime")]
    NoLifetime,
    /// No final response arrived (transaction timeout, `408`).
    #[error("no answer from the registrar")]
    Timeout,
    /// The registrar's host name could not be resolved.
    #[error("the registrar's address could not be resolved")]
    Resolve,
    /// The request could not be sent.
    #[error("the request could not be sent")]
    Transport,
    /// Any other failure inside the SIP stack.
    #[error("SIP stack failure")]
    Stack,
}

impl RegisterError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            RegisterError::InvalidRegistrar | RegisterError::NoCredentials
        )
    }

    fn from_stack(error: &rsipstack::Error) -> RegisterError {
        match error {
            rsipstack::Error::DnsResolutionError(_) => RegisterError::Resolve,
            rsipstack::Error::TransportLayerError(..) | rsipstack::Error::IoError(_) => {
                RegisterError::Transport
            }
            _ => RegisterError::Stack,
        }
    }
}

/// ` (at least N s)` for a known `Min-Expires`.
fn at_least(min_expires: Option<u32>) -> String {
    min_expires
        .map(|m| format!(" (at least {m} s)"))
        .unwrap_or_default()
}

/// How [`run_with`] registers, beyond the trunks themselves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address put in the REGISTER's Contact (the public SIP address). When `None`, the
    /// stack uses the local transport address, then the address the registrar reports in
    /// `received`/`rport`.
    pub contact: Option<SocketAddr>,
    /// How long unregistering at shutdown may take (trunks unregister concurrently).
    pub unregister_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            contact: None,
            unregister_timeout: Duration::from_secs(5),
        }
    }
}

/// Where one trunk's registration stands, as shown by [`RegistrationStatus::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RegistrationState {
    /// The first attempt, or a retry after a failure, is under way.
    Registering,
    /// The registrar holds our binding.
    Registered {
        /// The lifetime granted by the last successful REGISTER, in seconds.
        granted_s: u32,
        /// Seconds until the binding lapses (rounded up).
        expires_in_s: u64,
        /// Seconds until the next refresh (rounded up; 0 while it is under way).
        refresh_in_s: u64,
    },
    /// The last attempt failed.
    Failed {
        /// Why.
        reason: String,
        /// Seconds until the next attempt (rounded up); `None` when it will not be retried.
        retry_in_s: Option<u64>,
    },
    /// Stopped at shutdown (after unregistering, when there was a binding to remove).
    Unregistered,
}

/// One trunk's registration, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrunkRegistration {
    /// The trunk's name.
    pub trunk: String,
    /// The username registered (the address-of-record's user part).
    pub username: Option<String>,
    /// The state, flattened into this object with a `state` tag.
    #[serde(flatten)]
    pub state: RegistrationState,
    /// The last failure, kept after later successes.
    pub last_error: Option<String>,
    /// Successful registrations and refreshes.
    pub successes: u64,
    /// Failed attempts.
    pub failures: u64,
}

/// The registration state of every registering trunk, shared between the registration tasks
/// and the HTTP handlers.
#[derive(Debug, Default)]
pub struct RegistrationStatus {
    trunks: Mutex<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    trunk: String,
    username: Option<String>,
    phase: Phase,
    last_error: Option<String>,
    successes: u64,
    failures: u64,
}

#[derive(Debug, Clone)]
enum Phase {
    Registering,
    Registered {
        granted_s: u32,
        expires_at: Instant,
        refresh_at: Instant,
    },
    Failed {
        reason: String,
        retry_at: Option<Instant>,
    },
    Unregistered,
}

impl RegistrationStatus {
    /// A status listing every trunk of `trunks` that has a registrar, as registering.
    pub fn new(trunks: &[Trunk]) -> RegistrationStatus {
        let status = RegistrationStatus::default();
        for trunk in trunks.iter().filter(|t| t.registrar.is_some()) {
            status.track(trunk);
        }
        status
    }

    /// Every tracked trunk's registration, in the order the trunks were given.
    pub fn snapshot(&self) -> Vec<TrunkRegistration> {
        let now = now();
        self.entries()
            .iter()
            .map(|e| TrunkRegistration {
                trunk: e.trunk.clone(),
                username: e.username.clone(),
                state: e.phase.view(now),
                last_error: e.last_error.clone(),
                successes: e.successes,
                failures: e.failures,
            })
            .collect()
    }

    /// Whether the trunk named `trunk` holds an unexpired binding.
    pub fn is_registered(&self, trunk: &str) -> bool {
        let now = now();
        self.entries()
            .iter()
            .any(|e| e.trunk == trunk && e.phase.in_force(now))
    }

    /// Appends the registration metrics in Prometheus text format: the gauge
    /// `dialtone_sip_registered{trunk}` (1 while a binding is in force) and the counter
    /// `dialtone_sip_registrations_total{trunk,outcome="ok"|"failed"}`. Appends nothing when no
    /// trunk registers.
    pub fn render_metrics(&self, out: &mut String) {
        let now = now();
        let entries = self.entries();
        if entries.is_empty() {
            return;
        }
        out.push_str(
            "# HELP dialtone_sip_registered Whether the trunk's registration is in force.\n\
             # TYPE dialtone_sip_registered gauge\n",
        );
        for e in entries.iter() {
            let _ = writeln!(
                out,
                "dialtone_sip_registered{{trunk=\"{}\"}} {}",
                escape_label(&e.trunk),
                u8::from(e.phase.in_force(now))
            );
        }
        out.push_str(
            "# HELP dialtone_sip_registrations_total Trunk registration attempts, by outcome.\n\
             # TYPE dialtone_sip_registrations_total counter\n",
        );
        for e in entries.iter() {
            let trunk = escape_label(&e.trunk);
            for (outcome, value) in [("ok", e.successes), ("failed", e.failures)] {
                let _ = writeln!(
                    out,
                    "dialtone_sip_registrations_total{{trunk=\"{trunk}\",outcome=\"{outcome}\"}} {value}"
                );
            }
        }
    }

    fn entries(&self) -> MutexGuard<'_, Vec<Entry>> {
        // Every update replaces whole fields: a panic elsewhere cannot leave an entry half
        // written, so a poisoned lock is still consistent.
        self.trunks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `trunk` as registering unless it is already tracked.
    fn track(&self, trunk: &Trunk) {
        let mut entries = self.entries();
        if entries.iter().all(|e| e.trunk != trunk.name) {
            entries.push(Entry {
                trunk: trunk.name.clone(),
                username: trunk.username().map(str::to_string),
                phase: Phase::Registering,
                last_error: None,
                successes: 0,
                failures: 0,
            });
        }
    }

    fn update(&self, trunk: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.entries().iter_mut().find(|e| e.trunk == trunk) {
            f(entry);
        }
    }

    /// An attempt starts: a trunk not currently registered shows as registering.
    fn attempting(&self, trunk: &str) {
        self.update(trunk, |e| {
            if !matches!(e.phase, Phase::Registered { .. }) {
                e.phase = Phase::Registering;
            }
        });
    }

    fn registered(&self, trunk: &str, granted_s: u32, refresh_in: Duration) {
        let now = now();
        self.update(trunk, |e| {
            e.successes += 1;
            e.phase = Phase::Registered {
                granted_s,
                expires_at: after(now, Duration::from_secs(u64::from(granted_s))),
                refresh_at: after(now, refresh_in),
            };
        });
    }

    fn failed(&self, trunk: &str, error: &RegisterError, retry_in: Option<Duration>) {
        let now = now();
        let reason = error.to_string();
        self.update(trunk, |e| {
            e.failures += 1;
            e.last_error = Some(reason.clone());
            e.phase = Phase::Failed {
                reason,
                retry_at: retry_in.map(|d| after(now, d)),
            };
        });
    }

    fn unregistered(&self, trunk: &str) {
        self.update(trunk, |e| e.phase = Phase::Unregistered);
    }
}

impl Phase {
    fn in_force(&self, now: Instant) -> bool {
        matches!(self, Phase::Registered { expires_at, .. } if *expires_at > now)
    }

    fn view(&self, now: Instant) -> RegistrationState {
        match self {
            Phase::Registering => RegistrationState::Registering,
            Phase::Registered {
                granted_s,
                expires_at,
                refresh_at,
            } => RegistrationState::Registered {
                granted_s: *granted_s,
                expires_in_s: seconds_until(*expires_at, now),
                refresh_in_s: seconds_until(*refresh_at, now),
            },
            Phase::Failed { reason, retry_at } => RegistrationState::Failed {
                reason: reason.clone(),
                retry_in_s: retry_at.map(|at| seconds_until(at, now)),
            },
            Phase::Unregistered => RegistrationState::Unregistered,
        }
    }
}

/// Keeps every trunk that has a registrar registered through `endpoint` until `shutdown` is
/// cancelled, then unregisters them; returns when that is done. `endpoint` must be served (its
/// transports receiving) for as long as this runs, unregistration included.
pub async fn run(
    endpoint: EndpointInnerRef,
    trunks: Vec<Trunk>,
    status: Arc<RegistrationStatus>,
    shutdown: CancellationToken,
) {
    run_with(endpoint, trunks, status, shutdown, Settings::default()).await;
}

/// [`run`] with explicit [`Settings`].
pub async fn run_with(
    endpoint: EndpointInnerRef,
    trunks: Vec<Trunk>,
    status: Arc<RegistrationStatus>,
    shutdown: CancellationToken,
    settings: Settings,
) {
    let registering: Vec<Trunk> = trunks
        .into_iter()
        .filter(|t| t.registrar.is_some())
        .collect();
    if registering.is_empty() {
        return;
    }
    for trunk in &registering {
        status.track(trunk);
    }
    let tasks = registering.into_iter().map(|trunk| {
        keep_registered(
            endpoint.clone(),
            trunk,
            Arc::clone(&status),
            shutdown.clone(),
            settings.clone(),
        )
    });
    join_all(tasks).await;
}

/// One trunk's registration loop.
async fn keep_registered(
    endpoint: EndpointInnerRef,
    trunk: Trunk,
    status: Arc<RegistrationStatus>,
    shutdown: CancellationToken,
    settings: Settings,
) {
    let name = trunk.name.as_str();
    let username = trunk.username().unwrap_or_default();
    let mut client = match Client::new(endpoint, &trunk, &settings) {
        Ok(client) => client,
        Err(error) => {
            warn!(trunk = name, %error, "trunk cannot register");
            status.failed(name, &error, None);
            return;
        }
    };
    let mut expires = trunk.expires;
    let mut failures: u32 = 0;
    let mut registered = false;
    // Whether the registrar may hold a binding of ours, to be removed at shutdown.
    let mut maybe_bound = false;
    info!(
        trunk = name,
        username,
        expires_s = expires,
        "registering trunk"
    );
    while !shutdown.is_cancelled() {
        status.attempting(name);
        let outcome = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                // The REGISTER in flight may have been accepted.
                maybe_bound = true;
                break;
            }
            outcome = client.register(&mut expires) => outcome,
        };
        let wait = match outcome {
            Ok(granted_s) => {
                failures = 0;
                maybe_bound = true;
                let refresh_in = refresh_after(granted_s);
                status.registered(name, granted_s, refresh_in);
                if registered {
                    debug!(trunk = name, granted_s, "trunk registration refreshed");
                } else {
                    info!(trunk = name, username, granted_s, "trunk registered");
                }
                registered = true;
                refresh_in
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                registered = false;
                let delay = backoff(failures);
                status.failed(name, &error, Some(delay));
                warn!(
                    trunk = name,
                    username,
                    %error,
                    failures,
                    retry_in_ms = millis(delay),
                    "trunk registration failed"
                );
                delay
            }
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    if maybe_bound {
        let limit = settings.unregister_timeout;
        match tokio::time::timeout(limit, client.unregister()).await {
            Ok(Ok(())) => info!(trunk = name, "trunk unregistered"),
            Ok(Err(error)) => warn!(trunk = name, %error, "trunk not unregistered"),
            Err(_) => warn!(
                trunk = name,
                limit_ms = millis(limit),
                "no answer to the unregistration in time"
            ),
        }
    }
    status.unregistered(name);
}

/// A registration client for one trunk: one address-of-record, Call-ID and From tag, and an
/// increasing CSeq, over the endpoint's transaction layer.
struct Client {
    endpoint: EndpointInnerRef,
    /// The Request-URI: the registrar as configured.
    registrar: Uri,
    /// The address-of-record (To and From): `sip:username@registrar-host[:port]`.
    aor: Uri,
    call_id: CallId,
    from_tag: Tag,
    cseq: u32,
    /// Our Contact; its address is filled in from the transport before the first request
    /// unless it was configured.
    contact: Contact,
    contact_known: bool,
    contact_fixed: bool,
    auth_username: String,
    password: String,
}

/// How many challenges one request may answer: the first, then `stale=true` ones.
const MAX_CHALLENGES: usize = 3;

impl Client {
    fn new(
        endpoint: EndpointInnerRef,
        trunk: &Trunk,
        settings: &Settings,
    ) -> Result<Client, RegisterError> {
        let registrar = trunk
            .registrar
            .as_deref()
            .ok_or(RegisterError::InvalidRegistrar)?;
        let registrar = Uri::try_from(registrar)
            .ok()
            .filter(|uri| {
                matches!(
                    uri.scheme,
                    Some(rsipstack::sip::Scheme::Sip | rsipstack::sip::Scheme::Sips)
                )
            })
            .ok_or(RegisterError::InvalidRegistrar)?;
        let credentials = trunk
            .credentials
            .as_ref()
            .ok_or(RegisterError::NoCredentials)?;
        let aor = Uri {
            scheme: registrar.scheme.clone(),
            auth: Some(rsipstack::sip::Auth {
                user: credentials.username.clone(),
                password: None,
            }),
            host_with_port: registrar.host_with_port.clone(),
            params: vec![],
            headers: vec![],
        };
        // The Contact keeps the registrar's scheme and transport, so that requests come back
        // over them.
        let transport_params = registrar
            .params
            .iter()
            .filter(|p| matches!(p, Param::Transport(_)))
            .cloned()
            .collect();
        let contact = Contact {
            display_name: None,
            uri: Uri {
                scheme: registrar.scheme.clone(),
                auth: Some(rsipstack::sip::Auth {
                    user: credentials.username.clone(),
                    password: None,
                }),
                host_with_port: settings
                    .contact
                    .map(Into::into)
                    .unwrap_or_else(|| registrar.host_with_port.clone()),
                params: transport_params,
                headers: vec![],
            },
            params: vec![],
        };
        let call_id = make_call_id(
            endpoint.option.callid_suffix.as_deref(),
            endpoint.option.callid_format,
        );
        Ok(Client {
            endpoint,
            registrar,
            aor,
            call_id,
            from_tag: make_tag(),
            cseq: 0,
            contact,
            contact_known: settings.contact.is_some(),
            contact_fixed: settings.contact.is_some(),
            auth_username: credentials.auth_username.clone(),
            password: credentials.password().to_string(),
        })
    }

    /// Registers, asking for `expires` seconds: the lifetime granted. `expires` is raised to
    /// the registrar's `Min-Expires` when it answers `423`.
    async fn register(&mut self, expires: &mut u32) -> Result<u32, RegisterError> {
        let mut last_min = None;
        for _ in 0..=MAX_INTERVAL_RETRIES {
            let response = self.authenticated(*expires).await?;
            let code = u16::from(response.status_code.clone());
            if response.status_code.kind() == StatusCodeKind::Successful {
                let granted = granted_lifetime(&response, &self.contact, *expires);
                return if granted == 0 {
                    Err(RegisterError::NoLifetime)
                } else {
                    Ok(granted)
                };
            }
            if code != 423 {
                return Err(failure(code));
            }
            match min_expires(&response) {
                Some(min) if min > *expires => {
                    info!(
                        from_s = *expires,
                        to_s = min,
                        "registrar asks for a longer registration lifetime"
                    );
                    *expires = min;
                    last_min = Some(min);
                }
                other => return Err(RegisterError::IntervalTooBrief { min_expires: other }),
            }
        }
        Err(RegisterError::IntervalTooBrief {
            min_expires: last_min,
        })
    }

    /// Removes our binding (`Expires: 0`).
    async fn unregister(&mut self) -> Result<(), RegisterError> {
        let response = self.authenticated(0).await?;
        if response.status_code.kind() == StatusCodeKind::Successful {
            Ok(())
        } else {
            Err(failure(u16::from(response.status_code.clone())))
        }
    }

    /// One REGISTER, answering digest challenges: the final response that is not a challenge
    /// to answer.
    async fn authenticated(&mut self, expires: u32) -> Result<Response, RegisterError> {
        let mut answered = 0;
        let mut response = self.send(expires, None).await?;
        loop {
            let code = u16::from(response.status_code.clone());
            let proxy = match code {
                401 => false,
                407 => true,
                _ => return Ok(response),
            };
            let Some(challenge) = select_challenge(&response, proxy) else {
                debug!(code, "no supported digest challenge");
                return Err(RegisterError::UnsupportedChallenge { code });
            };
            // Challenged again after answering: refused, unless only the nonce had expired.
            if answered == MAX_CHALLENGES || (answered > 0 && !challenge.stale) {
                return Err(RegisterError::Unauthorized { code });
            }
            answered += 1;
            let value = digest::authorization(
                &challenge,
                &self.auth_username,
                &self.password,
                "REGISTER",
                &self.registrar.to_string(),
                &digest::random_cnonce(),
                1,
            );
            debug!(
                code,
                algorithm = %challenge.algorithm,
                stale = challenge.stale,
                "answering digest challenge"
            );
            let header = if proxy {
                Header::ProxyAuthorization(ProxyAuthorization::new(value))
            } else {
                Header::Authorization(Authorization::new(value))
            };
            response = self.send(expires, Some(header)).await?;
        }
    }

    /// Sends one REGISTER transaction: its final response.
    async fn send(
        &mut self,
        expires: u32,
        authorization: Option<Header>,
    ) -> Result<Response, RegisterError> {
        self.cseq = self.cseq % 0x7fff_ffff + 1;
        let target = SipAddr::try_from(&self.registrar).map_err(|e| stack_error(&e))?;
        let (connection, _) = self
            .endpoint
            .transport_layer
            .lookup(&target, None)
            .await
            .map_err(|e| stack_error(&e))?;
        let via = self
            .endpoint
            .get_via(Some(connection.get_addr().clone()), None)
            .map_err(|e| stack_error(&e))?;
        if !self.contact_known {
            self.contact.uri.host_with_port = via.uri.host_with_port.clone();
            self.contact_known = true;
        }
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: self.aor.clone(),
            params: vec![],
        }
        .with_tag(self.from_tag.clone());
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: self.aor.clone(),
            params: vec![],
        };
        let mut request = self.endpoint.make_request(
            Method::Register,
            self.registrar.clone(),
            via,
            from,
            to,
            self.cseq,
            Some(self.call_id.clone()),
        );
        let headers = request.headers_mut();
        headers.unique_push(self.contact.clone().into());
        headers.unique_push(Expires::from(expires).into());
        if let Some(authorization) = authorization {
            headers.unique_push(authorization);
        }
        let key = TransactionKey::from_request(&request, TransactionRole::Client)
            .map_err(|e| stack_error(&e))?;
        let mut tx = Transaction::new_client(key, request, self.endpoint.clone(), None);
        tx.send().await.map_err(|e| stack_error(&e))?;
        // Ends with the transaction: at the final response or at Timer F (a local 408).
        while let Some(message) = tx.receive().await {
            if let SipMessage::Response(response) = message
                && response.status_code.kind() != StatusCodeKind::Provisional
            {
                self.learn_address(&response);
                return Ok(response);
            }
        }
        Err(RegisterError::Timeout)
    }

    /// Takes the address the registrar saw us at (`received`/`rport`) into our Contact.
    fn learn_address(&mut self, response: &Response) {
        if self.contact_fixed {
            return;
        }
        let seen = response
            .via_header()
            .ok()
            .and_then(|via| SipConnection::parse_target_from_via(via).ok())
            .map(|(_, host_with_port)| host_with_port);
        if let Some(seen) = seen
            && seen != self.contact.uri.host_with_port
        {
            debug!("Contact address updated from the registrar's Via");
            self.contact.uri.host_with_port = seen;
        }
    }
}

/// The error for a final failure response.
fn failure(code: u16) -> RegisterError {
    match code {
        401 | 407 => RegisterError::Unauthorized { code },
        408 => RegisterError::Timeout,
        _ => RegisterError::Rejected { code },
    }
}

/// Maps a SIP stack error, logging its details at debug level only (they may hold addresses).
fn stack_error(error: &rsipstack::Error) -> RegisterError {
    debug!(%error, "REGISTER failed in the SIP stack");
    RegisterError::from_stack(error)
}

/// The first supported challenge of a `401` (`WWW-Authenticate`) or `407`
/// (`Proxy-Authenticate`), in the registrar's order; the other header when that one is
/// missing.
fn select_challenge(response: &Response, proxy: bool) -> Option<Challenge> {
    let values = |want_proxy: bool| -> Vec<&str> {
        response
            .headers()
            .iter()
            .filter_map(|h| match h {
                Header::WwwAuthenticate(v) if !want_proxy => Some(v.value()),
                Header::ProxyAuthenticate(v) if want_proxy => Some(v.value()),
                _ => None,
            })
            .collect()
    };
    Challenge::select(values(proxy)).or_else(|| Challenge::select(values(!proxy)))
}

/// The lifetime the registrar granted our binding (RFC 3261 §10.2.4): the lowest `expires`
/// among the response's Contacts that are ours; for our Contact without one, the `Expires`
/// header, then what we asked for. When no Contact is recognisably ours (a registrar that
/// rewrites them), a lone Contact's `expires`, then the `Expires` header, then what we asked
/// for.
fn granted_lifetime(response: &Response, ours: &Contact, requested: u32) -> u32 {
    let header_or_requested = || expires_header(response).unwrap_or(requested);
    let contacts = response.typed_contact_headers().unwrap_or_default();
    let mine: Vec<&Contact> = contacts
        .iter()
        .filter(|c| same_binding(&c.uri, &ours.uri))
        .collect();
    if !mine.is_empty() {
        return mine
            .iter()
            .filter_map(|c| c.expires())
            .min()
            .unwrap_or_else(header_or_requested);
    }
    match contacts.as_slice() {
        [only] => only.expires().unwrap_or_else(header_or_requested),
        _ => header_or_requested(),
    }
}

/// Whether two Contact URIs are the same binding: user, host (case-insensitive) and port
/// (5060, or 5061 for `sips`, when absent) match; parameters are ignored, registrars add some.
fn same_binding(a: &Uri, b: &Uri) -> bool {
    let user = |u: &Uri| u.auth.as_ref().map(|a| a.user.clone());
    let port = |u: &Uri| {
        let default = match u.scheme {
            Some(rsipstack::sip::Scheme::Sips) => 5061,
            _ => 5060,
        };
        u.host_with_port
            .port
            .as_ref()
            .map_or(default, |p| p.value())
    };
    user(a) == user(b)
        && a.host_with_port
            .host
            .to_string()
            .eq_ignore_ascii_case(&b.host_with_port.host.to_string())
        && port(a) == port(b)
}

/// The `Min-Expires` of a `423`.
fn min_expires(response: &Response) -> Option<u32> {
    response
        .min_expires_header()
        .and_then(|h| h.value().trim().parse().ok())
}

/// The `Expires` header of a response.
fn expires_header(response: &Response) -> Option<u32> {
    response
        .expires_header()
        .and_then(|h| h.value().trim().parse().ok())
}

/// A duration in whole milliseconds, for logs.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When to refresh a binding granted for `granted_s` seconds: at 80 % of it, but at least
/// [`REFRESH_LEAD`] before it lapses as long as that leaves half of the lifetime; never
/// sooner than 500 ms.
pub fn refresh_after(granted_s: u32) -> Duration {
    let granted = Duration::from_secs(u64::from(granted_s));
    let at_80 = granted * 4 / 5;
    let lead = granted.saturating_sub(REFRESH_LEAD).max(granted / 2);
    at_80.min(lead).max(MIN_REFRESH)
}

/// The retry delay after `failures` consecutive failures (1 for the first): [`BACKOFF_MIN`]
/// doubling up to [`BACKOFF_MAX`], then shortened by a random 0–25 % so that trunks failing
/// together do not retry together.
pub fn backoff(failures: u32) -> Duration {
    jitter(backoff_nominal(failures), rand::random_range(0.0..0.25))
}

/// The retry delay before jitter.
fn backoff_nominal(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_MIN * (1u32 << doublings)).min(BACKOFF_MAX)
}

/// `delay` shortened by the fraction `cut` (0 to 1; anything else counts as 0 or 1).
fn jitter(delay: Duration, cut: f64) -> Duration {
    let cut = if cut.is_nan() {
        0.0
    } else {
        cut.clamp(0.0, 1.0)
    };
    delay.mul_f64(1.0 - cut)
}

/// Whole seconds from `now` to `at`, rounded up; 0 when past.
fn seconds_until(at: Instant, now: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// A Prometheus label value with `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `now + d`, with `d` capped at a century so that the sum cannot overflow.
fn after(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    now + d.min(CENTURY)
}

/// The current time; the only place this module reads the clock.
fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::config::{AccessList, TrunkCredentials};

    fn trunk(name: &str, registrar: Option<&str>) -> Trunk {
        Trunk {
            name: name.to_string(),
            registrar: registrar.map(str::to_string),
            credentials: Some(TrunkCredentials::new("alice", "alice", "secret")),
            expires: 3600,
            allow: AccessList::default(),
            challenge: false,
            proxy: None,
            from: None,
        }
    }

    #[test]
    fn refresh_at_80_percent_or_30_s_before() {
        assert_eq!(refresh_after(3600), Duration::from_secs(2880));
        assert_eq!(refresh_after(100), Duration::from_secs(70));
        assert_eq!(refresh_after(60), Duration::from_secs(30));
        assert_eq!(refresh_after(40), Duration::from_secs(20));
        assert_eq!(refresh_after(4), Duration::from_secs(2));
        assert_eq!(refresh_after(1), Duration::from_millis(500));
        assert_eq!(refresh_after(0), Duration::from_millis(500));
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let nominal: Vec<u64> = (1..=10).map(|n| backoff_nominal(n).as_secs()).collect();
        assert_eq!(nominal, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_nominal(0), BACKOFF_MIN);
        assert_eq!(backoff_nominal(u32::MAX), BACKOFF_MAX);
        for n in [1, 5, 40] {
            let d = backoff(n);
            assert!(
                d <= backoff_nominal(n) && d >= backoff_nominal(n) * 3 / 4,
                "{d:?}"
            );
        }
        assert_eq!(jitter(Duration::from_secs(4), 0.25), Duration::from_secs(3));
        assert_eq!(jitter(Duration::from_secs(4), 7.0), Duration::ZERO);
        assert_eq!(
            jitter(Duration::from_secs(4), f64::NAN),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn status_tracks_only_registering_trunks_in_order() {
        let status = RegistrationStatus::new(&[
            trunk("b", Some("sip:r.example")),
            trunk("pbx", None),
            trunk("a", Some("sip:r.example")),
        ]);
        let names: Vec<_> = status.snapshot().into_iter().map(|t| t.trunk).collect();
        assert_eq!(names, ["b", "a"]);
        status.track(&trunk("b", Some("sip:r.example")));
        assert_eq!(status.snapshot().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn states_counters_and_json() {
        let status = RegistrationStatus::new(&[trunk("carrier", Some("sip:r.example"))]);
        let [first] = status.snapshot().try_into().expect("one trunk");
        assert_eq!(first.state, RegistrationState::Registering);
        assert!(!status.is_registered("carrier"));

        status.failed(
            "carrier",
            &RegisterError::Timeout,
            Some(Duration::from_secs(4)),
        );
        status.registered("carrier", 60, Duration::from_secs(30));
        let [entry] = status.snapshot().try_into().expect("one trunk");
        assert_eq!(
            entry.state,
            RegistrationState::Registered {
                granted_s: 60,
                expires_in_s: 60,
                refresh_in_s: 30
            }
        );
        assert_eq!((entry.successes, entry.failures), (1, 1));
        assert_eq!(
            entry.last_error.as_deref(),
            Some("no answer from the registrar")
        );
        assert!(status.is_registered("carrier"));

        let json = serde_json::to_value(&entry).expect("serializes");
        assert_eq!(json["state"], "registered");
        assert_eq!(json["trunk"], "carrier");
        assert_eq!(json["username"], "alice");
        assert_eq!(json["granted_s"], 60);

        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(
            !status.is_registered("carrier"),
            "a lapsed binding is not in force"
        );

        status.failed("carrier", &RegisterError::Rejected { code: 403 }, None);
        let json = serde_json::to_value(status.snapshot()).expect("serializes");
        assert_eq!(json[0]["state"], "failed");
        assert_eq!(json[0]["reason"], "the registrar answered 403");
        assert_eq!(json[0]["retry_in_s"], serde_json::Value::Null);
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_text() {
        let status = RegistrationStatus::new(&[
            trunk("up", Some("sip:r.example")),
            trunk("we\"ird", Some("sip:r.example")),
        ]);
        status.registered("up", 120, Duration::from_secs(90));
        status.failed(
            "we\"ird",
            &RegisterError::Transport,
            Some(Duration::from_secs(2)),
        );
        let mut out = String::new();
        status.render_metrics(&mut out);
        let expected = "\
# HELP dialtone_sip_registered Whether the trunk's registration is in force.
# TYPE dialtone_sip_registered gauge
dialtone_sip_registered{trunk=\"up\"} 1
dialtone_sip_registered{trunk=\"we\\\"ird\"} 0
# HELP dialtone_sip_registrations_total Trunk registration attempts, by outcome.
# TYPE dialtone_sip_registrations_total counter
dialtone_sip_registrations_total{trunk=\"up\",outcome=\"ok\"} 1
dialtone_sip_registrations_total{trunk=\"up\",outcome=\"failed\"} 0
dialtone_sip_registrations_total{trunk=\"we\\\"ird\",outcome=\"ok\"} 0
dialtone_sip_registrations_total{trunk=\"we\\\"ird\",outcome=\"failed\"} 1
";
        assert_eq!(out, expected);

        let mut empty = String::new();
        RegistrationStatus::default().render_metrics(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn header_values() {
        let response: Response = "SIP/2.0 423 Interval Too Brief\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-t\r\n\
             From: <sip:alice@r.example>;tag=a\r\n\
             To: <sip:alice@r.example>;tag=b\r\n\
             Call-ID: c\r\n\
             CSeq: 2 REGISTER\r\n\
             Min-Expires: 1800\r\n\
             Expires: 90\r\n\
             Content-Length: 0\r\n\r\n"
            .try_into()
            .expect("parses");
        assert_eq!(min_expires(&response), Some(1800));
        assert_eq!(expires_header(&response), Some(90));
    }

    fn response(status: &str, extra: &str) -> Response {
        format!(
            "SIP/2.0 {status}\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-t;received=198.51.100.7;rport=40000\r\n\
             From: <sip:alice@r.example>;tag=a\r\n\
             To: <sip:alice@r.example>;tag=b\r\n\
             Call-ID: c\r\n\
             CSeq: 2 REGISTER\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        )
        .as_str()
        .try_into()
        .expect("parses")
    }

    fn ours() -> Contact {
        Contact::parse("<sip:alice@192.0.2.10:5060>").expect("parses")
    }

    #[test]
    fn granted_lifetime_prefers_our_binding() {
        let both = response(
            "200 OK",
            "Contact: <sip:alice@203.0.113.7:5080>;expires=60, \
             <sip:alice@192.0.2.10>;expires=1800\r\nExpires: 3600\r\n",
        );
        assert_eq!(granted_lifetime(&both, &ours(), 300), 1800);
        let ours_bare = response(
            "200 OK",
            "Contact: <sip:alice@192.0.2.10:5060;ob>\r\nExpires: 1200\r\n",
        );
        assert_eq!(granted_lifetime(&ours_bare, &ours(), 300), 1200);
        let rewritten = response(
            "200 OK",
            "Contact: <sip:alice@10.0.0.9:5062>;expires=600\r\n",
        );
        assert_eq!(granted_lifetime(&rewritten, &ours(), 300), 600);
        let others = response(
            "200 OK",
            "Contact: <sip:alice@10.0.0.9>;expires=600, <sip:alice@10.0.0.8>;expires=60\r\n",
        );
        assert_eq!(granted_lifetime(&others, &ours(), 300), 300);
        assert_eq!(granted_lifetime(&response("200 OK", ""), &ours(), 300), 300);
    }

    #[test]
    fn bindings_match_on_user_host_and_port() {
        let uri = |s: &str| Uri::try_from(s).expect("uri");
        assert!(same_binding(
            &uri("sip:a@Host.example"),
            &uri("sip:a@host.example:5060")
        ));
        assert!(same_binding(&uri("sips:a@h"), &uri("sips:a@h:5061")));
        assert!(!same_binding(&uri("sip:a@h"), &uri("sip:b@h")));
        assert!(!same_binding(&uri("sip:a@h:5062"), &uri("sip:a@h")));
    }

    #[test]
    fn challenges_are_taken_in_the_registrars_order() {
        let both = response(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", algorithm=MD5, qop=\"auth\"\r\n",
        );
        let chosen = select_challenge(&both, false).expect("supported");
        assert_eq!(chosen.algorithm, digest::Algorithm::Sha256);
        assert_eq!(chosen.nonce, "n1");

        let aka_first = response(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=AKAv1-MD5\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", algorithm=MD5\r\n",
        );
        let chosen = select_challenge(&aka_first, false).expect("supported");
        assert_eq!(
            (chosen.algorithm, chosen.nonce.as_str()),
            (digest::Algorithm::Md5, "n2")
        );

        let proxy = response(
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Digest realm=\"p\", nonce=\"n3\", stale=TRUE\r\n",
        );
        let chosen = select_challenge(&proxy, true).expect("supported");
        assert!(chosen.stale);
        assert_eq!(chosen.realm, "p");

        let unsupported = response(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"\r\n",
        );
        assert!(select_challenge(&unsupported, false).is_none());
    }

    #[test]
    fn final_failures() {
        assert_eq!(failure(401), RegisterError::Unauthorized { code: 401 });
        assert_eq!(failure(408), RegisterError::Timeout);
        assert_eq!(failure(503), RegisterError::Rejected { code: 503 });
    }

    #[test]
    fn errors_say_whether_to_retry() {
        assert_eq!(
            RegisterError::IntervalTooBrief {
                min_expires: Some(120)
            }
            .to_string(),
            "the registrar wants a longer lifetime (at least 120 s)"
        );
        assert!(!RegisterError::InvalidRegistrar.is_retryable());
        assert!(!RegisterError::NoCredentials.is_retryable());
        assert!(RegisterError::Unauthorized { code: 401 }.is_retryable());
        assert!(RegisterError::Timeout.is_retryable());
    }
}
