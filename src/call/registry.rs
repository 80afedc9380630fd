//! The calls in progress, for `/calls` and for waiting on them at shutdown.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::leg::LegInfo;
use crate::telemetry::redact;

/// What `/calls` shows of one call. Numbers are redacted.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub id: u64,
    pub leg: &'static str,
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub route: String,
    /// Unix time the call started, in seconds.
    pub started_at: u64,
}

/// Active calls by id.
#[derive(Debug, Default)]
pub struct CallRegistry {
    next: AtomicU64,
    calls: Mutex<BTreeMap<u64, CallSummary>>,
}

impl CallRegistry {
    /// Records a call; it stays listed until the returned guard is dropped.
    pub fn register(&self, info: &LegInfo, route: &str) -> CallGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let summary = CallSummary {
            id,
            leg: info.kind.as_str(),
            call_id: info.call_id.clone(),
            from: redact(&info.from),
            to: redact(&info.to),
            route: route.to_owned(),
            #[allow(clippy::disallowed_methods)] // the registry lists calls with wall-clock times
            started_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        self.lock().insert(id, summary);
        CallGuard { registry: self, id }
    }

    /// The calls in progress, oldest first.
    pub fn list(&self) -> Vec<CallSummary> {
        self.lock().values().cloned().collect()
    }

    /// How many calls are in progress.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no call is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CallSummary>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps a call listed while it lives.
#[derive(Debug)]
pub struct CallGuard<'a> {
    registry: &'a CallRegistry,
    id: u64,
}

impl CallGuard<'_> {
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
