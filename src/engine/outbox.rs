//! The queue of server events one engine session has produced but not yet handed out, and the
//! identifiers it stamps on them (`event_…`, `item_…`, `resp_…`, `call_…`, …).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::error::RequestError;
use crate::realtime::event::ServerEvent;

/// Numbers sessions within the process so that identifiers differ between connections.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Generates identifiers unique within the process (for up to 2^32 ids per session): a
/// bijective mix of (session, sequence), so they look opaque like the real service's but never
/// collide.
#[derive(Debug)]
pub(crate) struct IdGen {
    session: u64,
    seq: u64,
}

impl IdGen {
    pub(crate) fn new() -> Self {
        Self {
            session: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            seq: 0,
        }
    }

    /// A fresh identifier such as `item_5f0c9a7d31e24b68`.
    pub(crate) fn next(&mut self, prefix: &str) -> String {
        self.seq += 1;
        let raw = (self.session << 32) | (self.seq & 0xFFFF_FFFF);
        format!("{prefix}_{:016x}", mix(raw))
    }
}

/// SplitMix64's finaliser: a bijection on `u64`.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Server events waiting to be sent, already serialized as JSON text frames.
#[derive(Debug)]
pub(crate) struct Outbox {
    ids: IdGen,
    queue: VecDeque<String>,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Self {
            ids: IdGen::new(),
            queue: VecDeque::new(),
        }
    }

    /// A fresh identifier with `prefix`.
    pub(crate) fn id(&mut self, prefix: &str) -> String {
        self.ids.next(prefix)
    }

    /// Queues an event of type `kind` whose other fields are those of `body` (an object; any
    /// other value is sent with no fields).
    pub(crate) fn emit(&mut self, kind: &str, body: Value) {
        let mut event = Map::new();
        event.insert("type".to_owned(), Value::from(kind));
        event.insert("event_id".to_owned(), Value::from(self.ids.next("event")));
        if let Value::Object(fields) = body {
            for (key, value) in fields {
                if key != "type" && key != "event_id" {
                    event.insert(key, value);
                }
            }
        }
        self.queue.push_back(Value::Object(event).to_string());
    }

    /// Queues a typed server event.
    pub(crate) fn emit_event(&mut self, event: &ServerEvent) {
        if let Ok(Value::Object(mut fields)) = serde_json::to_value(event) {
            if let Some(Value::String(kind)) = fields.remove("type") {
                self.emit(&kind, Value::Object(fields));
            }
        }
    }

    /// Queues an `error` event for a rejected client event.
    pub(crate) fn error(&mut self, error: &RequestError, client_event_id: Option<String>) {
        let detail = error.detail(client_event_id);
        let detail = serde_json::to_value(detail).unwrap_or(Value::Null);
        self.emit("error", serde_json::json!({ "error": detail }));
    }

    /// The oldest queued event.
    pub(crate) fn pop(&mut self) -> Option<String> {
        self.queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_across_sessions() {
        let mut seen = HashSet::new();
        for _ in 0..4 {
            let mut ids = IdGen::new();
            for _ in 0..1000 {
                assert!(seen.insert(ids.next("event")));
            }
        }
    }

    #[test]
    fn events_carry_type_and_event_id() {
        let mut out = Outbox::new();
        out.emit("x.y", serde_json::json!({"a": 1, "type": "spoofed"}));
        let v: Value = serde_json::from_str(&out.pop().unwrap()).unwrap();
        assert_eq!(v["type"], "x.y");
        assert_eq!(v["a"], 1);
        assert!(v["event_id"].as_str().unwrap().starts_with("event_"));
        assert!(out.pop().is_none());
    }
}
