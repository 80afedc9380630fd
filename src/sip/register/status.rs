//! The shared view of every trunk's registration: [`RegistrationStatus`], updated by the
//! registration tasks, with its JSON snapshot for `/healthz` ([`TrunkRegistration`]) and its
//! Prometheus text for `/metrics`.

use crate::metrics::escape_label_value;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::RegisterError;
use crate::sip::config::Trunk;

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
                escape_label_value(&e.trunk),
                u8::from(e.phase.in_force(now))
            );
        }
        out.push_str(
            "# HELP dialtone_sip_registrations_total Trunk registration attempts, by outcome.\n\
             # TYPE dialtone_sip_registrations_total counter\n",
        );
        for e in entries.iter() {
            let trunk = escape_label_value(&e.trunk);
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
    pub(super) fn track(&self, trunk: &Trunk) {
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
    pub(super) fn attempting(&self, trunk: &str) {
        self.update(trunk, |e| {
            if !matches!(e.phase, Phase::Registered { .. }) {
                e.phase = Phase::Registering;
            }
        });
    }

    pub(super) fn registered(&self, trunk: &str, granted_s: u32, refresh_in: Duration) {
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

    pub(super) fn failed(&self, trunk: &str, error: &RegisterError, retry_in: Option<Duration>) {
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

    pub(super) fn unregistered(&self, trunk: &str) {
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

/// Whole seconds from `now` to `at`, rounded up; 0 when past.
fn seconds_until(at: Instant, now: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// `now + d`, with `d` capped at a century so that the sum cannot overflow.
fn after(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    now + d.min(CENTURY)
}

/// The current time; the only place this module reads the clock.
#[allow(clippy::disallowed_methods)] // registration status is read by adapters, at the time of reading
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
}
