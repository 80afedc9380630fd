//! The `serve` process: loads the dialplans, binds the HTTP listener (Twilio webhook and Media
//! Streams socket, `/healthz`, `/metrics`, `/calls`), starts a call driver for each call, and
//! shuts down gracefully.
//!
//! Shutdown: new calls are refused at once (the HTTP listener stops accepting, new INVITEs get
//! 503), calls in progress may finish for up to the drain period, then the rest are hung up
//! (SIP calls get a BYE).

mod calls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::bridge::Timing;
use crate::call::driver::{CallServices, run_call};
use crate::call::leg::CallerLeg;
use crate::call::registry::CallRegistry;
use crate::dialplan::{Dialplan, DialplanError};
use crate::engine::EngineConfig;
use crate::metrics::{self, Metrics};
use crate::realtime::client::RealtimeSettings;
use crate::sip::register::{self, RegistrationStatus};
use crate::sip::ua::{DialogCount, DrainHandle, SipConfig, SipUa};
use crate::tools::{WebhookError, WebhookRunner};
use crate::twilio::{self, TwilioCounters, TwilioRest, TwilioState};

/// Twilio account settings.
#[derive(Debug, Clone, Default)]
pub struct TwilioSettings {
    /// When set, webhook and stream requests must be signed with it, and REST call control
    /// (hangup, transfer) is enabled.
    pub auth_token: Option<String>,
    /// Account SID for REST calls; by default the one each stream's `start` names.
    pub account_sid: Option<String>,
    /// REST API base URL (default `https://api.twilio.com`).
    pub api_base: Option<String>,
}

/// Everything `serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http: SocketAddr,
    pub dialplans: PathBuf,
    /// Public origin Twilio reaches us at (`https://bridge.example.com`).
    pub public_url: Option<String>,
    pub realtime: RealtimeSettings,
    pub twilio: TwilioSettings,
    pub engine: EngineConfig,
    pub timing: Timing,
    /// How long calls in progress may go on after shutdown starts.
    pub drain: Duration,
    /// The SIP user agent's settings; `None` serves Twilio only.
    pub sip: Option<SipConfig>,
    /// Bearer token `POST /calls` must carry; without one only loopback clients may place
    /// calls.
    pub api_token: Option<String>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Dialplan(#[from] DialplanError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP client set-up failed: {0}")]
    Http(String),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Sip(#[from] crate::sip::ua::SipError),
}

impl From<WebhookError> for ServerError {
    fn from(e: WebhookError) -> Self {
        Self::Http(e.to_string())
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    app: Router,
    services: Arc<CallServices>,
    calls: TaskTracker,
    drain: Duration,
    sip: Option<SipUa>,
    registrations: Arc<RegistrationStatus>,
}

impl Server {
    /// Loads the dialplans and binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let dialplan = Dialplan::load_dir(&config.dialplans)?;
        let services = Arc::new(CallServices {
            dialplan: Arc::new(dialplan),
            realtime: config.realtime,
            engine: Arc::new(config.engine),
            webhooks: WebhookRunner::new()?,
            metrics: Arc::new(Metrics::new()),
            registry: CallRegistry::default(),
            timing: config.timing,
            hang_up_all: CancellationToken::new(),
        });
        let calls = TaskTracker::new();
        let rest = match &config.twilio.auth_token {
            Some(token) => {
                let mut rest =
                    TwilioRest::new(token.clone()).map_err(|e| ServerError::Http(e.to_string()))?;
                if let Some(base) = &config.twilio.api_base {
                    rest = rest.with_base_url(base.clone());
                }
                if let Some(sid) = &config.twilio.account_sid {
                    rest = rest.with_account_sid(sid.clone());
                }
                Some(Arc::new(rest))
            }
            None => None,
        };
        let on_call = {
            let services = Arc::clone(&services);
            let calls = calls.clone();
            // A Twilio call runs on its Media Stream's own task; the tracker counts it for
            // the drain.
            let on_call: twilio::OnCall = Arc::new(move |leg: CallerLeg| {
                Box::pin(calls.track_future(run_call(Arc::clone(&services), leg)))
            });
            on_call
        };
        let sip = match config.sip {
            Some(sip_config) => {
                let metrics = Arc::clone(&services.metrics);
                let services = Arc::clone(&services);
                let calls = calls.clone();
                // A SIP call runs on the task the user agent spawns for it.
                let on_sip_call: crate::call::leg::OnCall = Arc::new(move |leg: CallerLeg| {
                    Box::pin(calls.track_future(run_call(Arc::clone(&services), leg)))
                });
                Some(SipUa::bind(sip_config, metrics, on_sip_call).await?)
            }
            None => None,
        };
        let registrations = Arc::new(RegistrationStatus::new(
            sip.as_ref()
                .map_or(&[][..], |ua| ua.config().trunks.as_slice()),
        ));
        let counters = Arc::new(TwilioCounters::default());
        let twilio = twilio::router(TwilioState {
            public_url: config.public_url.clone(),
            auth_token: config.twilio.auth_token,
            rest: rest.clone(),
            on_call,
            counters: Arc::clone(&counters),
        });
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .route("/calls", get(calls_list).post(calls::place))
            .with_state(AppState {
                services: Arc::clone(&services),
                twilio: counters,
                registrations: Arc::clone(&registrations),
                dialogs: sip.as_ref().map(SipUa::dialogs),
                placer: Arc::new(calls::Placer {
                    sip: sip.as_ref().map(SipUa::caller),
                    twilio: rest,
                    public_url: config.public_url,
                    api_token: config.api_token,
                }),
            })
            .merge(twilio);
        let listener =
            TcpListener::bind(config.http)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.http,
                    source,
                })?;
        Ok(Self {
            listener,
            app,
            services,
            calls,
            drain: config.drain,
            sip,
            registrations,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The SIP signalling address, when SIP is served.
    pub fn sip_addr(&self) -> Option<SocketAddr> {
        self.sip.as_ref().map(SipUa::local_addr)
    }

    /// The metrics of this server.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.services.metrics)
    }

    /// Serves until `shutdown` completes, then drains calls and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Self {
            listener,
            app,
            services,
            calls,
            drain,
            sip,
            registrations,
        } = self;
        let stop_sip = CancellationToken::new();
        let stop_registering = CancellationToken::new();
        let registering = sip.as_ref().map(|ua| {
            let settings = register::Settings {
                contact: ua
                    .config()
                    .public_ip
                    .map(|ip| SocketAddr::new(ip, ua.local_addr().port())),
                ..register::Settings::default()
            };
            tokio::spawn(register::run_with(
                ua.endpoint(),
                ua.config().trunks.clone(),
                Arc::clone(&registrations),
                stop_registering.clone(),
                settings,
            ))
        });
        let sip_drain: Option<DrainHandle> = sip.as_ref().map(SipUa::drain_handle);
        let sip_task = sip.map(|ua| tokio::spawn(ua.run(stop_sip.clone())));
        let stop_accepting = CancellationToken::new();
        let mut serve = {
            let stop = stop_accepting.clone();
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            })
        };
        tokio::select! {
            () = shutdown => {}
            result = &mut serve => {
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(ServerError::Serve(e)),
                    Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
                };
            }
        }
        let active = services.registry.len();
        info!(
            active,
            drain_s = drain.as_secs(),
            "shutting down: refusing new calls"
        );
        stop_accepting.cancel();
        if let Some(drain) = &sip_drain {
            drain.start_draining();
        }
        // Unregister while the SIP endpoint still serves.
        stop_registering.cancel();
        if let Some(task) = registering {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        calls.close();
        if tokio::time::timeout(drain, calls.wait()).await.is_err() {
            warn!(
                active = services.registry.len(),
                "drain period over; hanging up the remaining calls"
            );
            services.hang_up_all.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), calls.wait()).await;
        }
        stop_sip.cancel();
        if let Some(task) = sip_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        match tokio::time::timeout(Duration::from_secs(5), serve).await {
            Ok(Ok(Err(e))) => Err(ServerError::Serve(e)),
            _ => Ok(()),
        }
    }
}

#[derive(Clone)]
struct AppState {
    services: Arc<CallServices>,
    twilio: Arc<TwilioCounters>,
    registrations: Arc<RegistrationStatus>,
    dialogs: Option<DialogCount>,
    placer: Arc<calls::Placer>,
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "calls": state.services.registry.len(),
        "realtime": state.services.realtime.describe(),
        "routes": state.services.dialplan.routes.len(),
        "sip_registrations": state.registrations.snapshot(),
    }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.services.metrics.render();
    render_twilio(&state.twilio, &mut body);
    render_realtime(&mut body);
    state.registrations.render_metrics(&mut body);
    if let Some(dialogs) = &state.dialogs {
        use std::fmt::Write as _;
        let p = metrics::PREFIX;
        let _ = writeln!(
            body,
            "# HELP {p}sip_dialogs_active SIP dialogs with a call in progress.\n\
             # TYPE {p}sip_dialogs_active gauge\n\
             {p}sip_dialogs_active {}",
            dialogs.get()
        );
        let g = dialogs.guard();
        let _ = writeln!(
            body,
            "# HELP {p}sip_datagrams_total SIP datagrams by what the check before the parser did.\n\
             # TYPE {p}sip_datagrams_total counter"
        );
        for (decision, n) in [
            ("passed", g.passed),
            ("answered_400", g.answered_400),
            ("answered_501", g.answered_501),
            ("answered_505", g.answered_505),
            ("dropped", g.dropped),
        ] {
            let _ = writeln!(
                body,
                "{p}sip_datagrams_total{{decision=\"{decision}\"}} {n}"
            );
        }
    }
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}

async fn calls_list(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({ "calls": state.services.registry.list() }))
}

/// Appends the Realtime client's process-wide counters.
fn render_realtime(out: &mut String) {
    use std::fmt::Write as _;
    let p = metrics::PREFIX;
    let _ = writeln!(
        out,
        "# HELP {p}realtime_malformed_frames_total Realtime frames that were not valid events\n\
         # TYPE {p}realtime_malformed_frames_total counter\n\
         {p}realtime_malformed_frames_total {}",
        crate::realtime::client::malformed_frames()
    );
}

/// Appends the Twilio leg's counters in Prometheus text format.
fn render_twilio(counters: &TwilioCounters, out: &mut String) {
    use std::fmt::Write as _;
    let s = counters.snapshot();
    let rows: [(&str, &str, u64); 14] = [
        (
            "streams_started",
            "Media streams started",
            s.streams_started,
        ),
        (
            "streams_rejected",
            "Media streams closed before start",
            s.streams_rejected,
        ),
        ("frames_in", "Caller audio frames received", s.frames_in),
        (
            "frames_dropped",
            "Caller audio frames dropped (malformed)",
            s.frames_dropped,
        ),
        ("frames_out", "Audio frames sent to Twilio", s.frames_out),
        (
            "media_messages_out",
            "Media messages sent to Twilio (one per playback segment)",
            s.media_out,
        ),
        (
            "malformed_messages",
            "Malformed Media Streams messages",
            s.malformed_messages,
        ),
        ("marks_sent", "Playback marks sent", s.marks_sent),
        (
            "marks_played",
            "Playback marks acknowledged",
            s.marks_played,
        ),
        (
            "marks_foreign",
            "Marks not sent by the bridge",
            s.marks_foreign,
        ),
        (
            "clears_sent",
            "Clear messages sent (barge-in)",
            s.clears_sent,
        ),
        ("dtmf_in", "DTMF digits received", s.dtmf_in),
        (
            "signature_rejected",
            "Requests refused for a bad X-Twilio-Signature",
            s.signature_rejected,
        ),
        ("rest_failures", "Failed Twilio REST calls", s.rest_failures),
    ];
    for (name, help, value) in rows {
        let _ = writeln!(out, "# HELP {}twilio_{name}_total {help}", metrics::PREFIX);
        let _ = writeln!(out, "# TYPE {}twilio_{name}_total counter", metrics::PREFIX);
        let _ = writeln!(out, "{}twilio_{name}_total {value}", metrics::PREFIX);
    }
}
