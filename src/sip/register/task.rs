//! One trunk's registration loop: registering, refreshing before the binding lapses,
//! retrying with backoff after failures, and unregistering at shutdown; with the timing
//! ([`refresh_after`], [`backoff`]) it follows.

use std::sync::Arc;
use std::time::Duration;

use rsipstack::transaction::endpoint::EndpointInnerRef;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::Client;
use super::{RegistrationStatus, Settings};
use crate::sip::config::Trunk;

/// The first retry delay after a failed registration.
pub const BACKOFF_MIN: Duration = Duration::from_secs(2);

/// The longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long before expiry a refresh is sent at the latest, when the lifetime allows.
pub const REFRESH_LEAD: Duration = Duration::from_secs(30);

/// The shortest wait before a refresh, whatever lifetime was granted.
const MIN_REFRESH: Duration = Duration::from_millis(500);

/// One trunk's registration loop.
pub(super) async fn keep_registered(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
