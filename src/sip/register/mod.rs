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
//!
//! The parts: [`RegisterError`] and the mapping of failures to it (`error`), the shared
//! status with its JSON and Prometheus views (`status`), the per-trunk loop with its refresh
//! and backoff timing (`task`), the REGISTER client that builds, sends and authenticates
//! requests (`client`), and the reading of the registrar's responses (`response`).

mod client;
mod error;
mod response;

pub(crate) use response::select_challenge;
mod status;
mod task;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use tokio_util::sync::CancellationToken;

use super::config::Trunk;

pub use error::RegisterError;
pub use status::{RegistrationState, RegistrationStatus, TrunkRegistration};
pub use task::{BACKOFF_MAX, BACKOFF_MIN, REFRESH_LEAD, backoff, refresh_after};

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
        task::keep_registered(
            endpoint.clone(),
            trunk,
            Arc::clone(&status),
            shutdown.clone(),
            settings.clone(),
        )
    });
    join_all(tasks).await;
}
