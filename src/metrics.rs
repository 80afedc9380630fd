//! The process's Prometheus metrics and their text exposition (format 0.0.4).
//!
//! One [`Metrics`] value is shared by every part of the process behind an `Arc`. The metrics
//! every call touches have typed recorders ([`Metrics::call_started`],
//! [`Metrics::barge_in`], …); counters added later by other modules go through the generic
//! [`Metrics::inc`] / [`Metrics::add`], optionally described first with
//! [`Metrics::describe_counter`]. [`Metrics::render`] produces the `/metrics` body.
//!
//! Every metric name is exposed with the `dialtone_` prefix. Families are rendered in name
//! order and series in label order, so the output is stable between scrapes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::call::leg::LegKind;

/// Prefix of every exposed metric name.
pub const PREFIX: &str = "dialtone_";

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const CALLS_ACTIVE: &str = "calls_active";
const CALLS_TOTAL: &str = "calls_total";
const CALLS_ENDED_TOTAL: &str = "calls_ended_total";
const BARGE_INS_TOTAL: &str = "barge_ins_total";
const TRUNCATES_TOTAL: &str = "truncates_total";
const TOOL_CALLS_TOTAL: &str = "tool_calls_total";
const REALTIME_ERRORS_TOTAL: &str = "realtime_errors_total";
const FRAMES_DROPPED_TOTAL: &str = "frames_dropped_total";
const REALTIME_CONNECT_FAILURES_TOTAL: &str = "realtime_connect_failures_total";
const DTMF_DIGITS_TOTAL: &str = "dtmf_digits_total";
const ASSISTANT_AUDIO_DROPPED: &str = "assistant_audio_dropped_ms_total";

/// Every leg kind, in rendering order.
const LEG_KINDS: [LegKind; 2] = [LegKind::Twilio, LegKind::Sip];

/// Help text of the labelled counter families this module defines.
const LABELLED_FAMILIES: [(&str, &str); 5] = [
    (CALLS_ENDED_TOTAL, "Calls ended, by end reason."),
    (
        TOOL_CALLS_TOTAL,
        "Function calls from the model, by dialplan action and outcome.",
    ),
    (
        REALTIME_ERRORS_TOTAL,
        "Error events from the Realtime server, by error code (\"none\" when absent).",
    ),
    (
        FRAMES_DROPPED_TOTAL,
        "Audio frames dropped instead of sent, by reason.",
    ),
    (CALLS_TOTAL, "Calls started, by leg kind."),
];

/// A sorted set of label pairs identifying one series of a family.
type LabelSet = Vec<(&'static str, String)>;

/// One counter family kept in the label map.
#[derive(Debug, Default)]
struct Family {
    help: Option<&'static str>,
    series: BTreeMap<LabelSet, u64>,
}

/// The unlabelled counters, kept as plain atomics.
#[derive(Debug, Default)]
struct Plain {
    barge_ins: AtomicU64,
    truncates: AtomicU64,
    realtime_connect_failures: AtomicU64,
    dtmf_digits: AtomicU64,
    assistant_audio_dropped_ms: AtomicU64,
}

impl Plain {
    fn get(&self, name: &str) -> Option<&AtomicU64> {
        match name {
            BARGE_INS_TOTAL => Some(&self.barge_ins),
            TRUNCATES_TOTAL => Some(&self.truncates),
            REALTIME_CONNECT_FAILURES_TOTAL => Some(&self.realtime_connect_failures),
            DTMF_DIGITS_TOTAL => Some(&self.dtmf_digits),
            ASSISTANT_AUDIO_DROPPED => Some(&self.assistant_audio_dropped_ms),
            _ => None,
        }
    }

    /// `(name, help, counter)` of every unlabelled counter.
    fn all(&self) -> [(&'static str, &'static str, &AtomicU64); 5] {
        [
            (
                BARGE_INS_TOTAL,
                "Times the caller talked over the assistant.",
                &self.barge_ins,
            ),
            (
                TRUNCATES_TOTAL,
                "Assistant items truncated to what the caller heard.",
                &self.truncates,
            ),
            (
                REALTIME_CONNECT_FAILURES_TOTAL,
                "Realtime connections that could not be opened.",
                &self.realtime_connect_failures,
            ),
            (
                DTMF_DIGITS_TOTAL,
                "DTMF digits received from callers.",
                &self.dtmf_digits,
            ),
            (
                ASSISTANT_AUDIO_DROPPED,
                "Milliseconds of model audio dropped because a call's playback queue was full.",
                &self.assistant_audio_dropped_ms,
            ),
        ]
    }
}

/// The process's metrics. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    /// Calls in progress, indexed like [`LEG_KINDS`].
    calls_active: [AtomicI64; 2],
    plain: Plain,
    /// Labelled counter families, this module's and those added through [`Metrics::inc`].
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics with every counter at zero.
    pub fn new() -> Self {
        let mut families: BTreeMap<&'static str, Family> = LABELLED_FAMILIES
            .iter()
            .map(|&(name, help)| {
                (
                    name,
                    Family {
                        help: Some(help),
                        series: BTreeMap::new(),
                    },
                )
            })
            .collect();
        // Every leg kind is shown from the start, including those without calls yet.
        if let Some(calls) = families.get_mut(CALLS_TOTAL) {
            for leg in LEG_KINDS {
                calls
                    .series
                    .insert(vec![("leg", leg.as_str().to_owned())], 0);
            }
        }
        Self {
            calls_active: [AtomicI64::new(0), AtomicI64::new(0)],
            plain: Plain::default(),
            families: Mutex::new(families),
        }
    }

    /// A call came in on a leg of `leg` kind: counts it and adds it to the active calls.
    /// Pair every call with one [`Metrics::call_ended`].
    pub fn call_started(&self, leg: LegKind) {
        self.calls_active[leg_index(leg)].fetch_add(1, Ordering::Relaxed);
        self.add(CALLS_TOTAL, &[("leg", leg.as_str())], 1);
    }

    /// A call on a leg of `leg` kind ended for `reason` (e.g. `EndReason::as_str`).
    pub fn call_ended(&self, leg: LegKind, reason: &str) {
        self.calls_active[leg_index(leg)].fetch_sub(1, Ordering::Relaxed);
        self.add(CALLS_ENDED_TOTAL, &[("reason", reason)], 1);
    }

    /// Calls in progress on legs of `leg` kind.
    pub fn calls_active(&self, leg: LegKind) -> i64 {
        self.calls_active[leg_index(leg)].load(Ordering::Relaxed)
    }

    /// The caller talked over the assistant.
    pub fn barge_in(&self) {
        self.plain.barge_ins.fetch_add(1, Ordering::Relaxed);
    }

    /// An assistant item was truncated.
    pub fn truncate(&self) {
        self.plain.truncates.fetch_add(1, Ordering::Relaxed);
    }

    /// A function call finished with `outcome` (`ok`, `error`, `timeout`, `unknown_tool`, …)
    /// running a dialplan action of kind `action`.
    pub fn tool_call(&self, action: &str, outcome: &str) {
        self.add(
            TOOL_CALLS_TOTAL,
            &[("action", action), ("outcome", outcome)],
            1,
        );
    }

    /// The Realtime server reported an error, with its code if it had one.
    pub fn realtime_error(&self, code: Option<&str>) {
        self.add(
            REALTIME_ERRORS_TOTAL,
            &[("code", code.unwrap_or("none"))],
            1,
        );
    }

    /// `count` audio frames were dropped for `reason`.
    pub fn frames_dropped(&self, reason: &str, count: u64) {
        self.add(FRAMES_DROPPED_TOTAL, &[("reason", reason)], count);
    }

    /// `ms` of the model's audio did not fit a call's playback queue.
    pub fn assistant_audio_dropped(&self, ms: u64) {
        self.plain
            .assistant_audio_dropped_ms
            .fetch_add(ms, Ordering::Relaxed);
    }

    /// A Realtime connection could not be opened.
    pub fn realtime_connect_failure(&self) {
        self.plain
            .realtime_connect_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A DTMF digit arrived from a caller.
    pub fn dtmf_digit(&self) {
        self.plain.dtmf_digits.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the `# HELP` text of a counter family added through [`Metrics::inc`], and makes it
    /// appear in [`Metrics::render`] before its first increment. `name` is given without the
    /// `dialtone_` prefix and should end in `_total`.
    pub fn describe_counter(&self, name: &'static str, help: &'static str) {
        if !valid_name(name) || self.plain.get(name).is_some() {
            invalid(name);
            return;
        }
        self.lock().entry(name).or_default().help = Some(help);
    }

    /// Adds one to the counter `name` (without the `dialtone_` prefix) in the series `labels`.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    /// Adds `n` to the counter `name` (without the `dialtone_` prefix) in the series `labels`.
    ///
    /// Label order does not matter. The unlabelled counters of this module can be reached by
    /// name with empty `labels`. An invalid metric or label name, or labels on one of those
    /// unlabelled counters, is a programming error: it is logged and the call ignored (and it
    /// asserts in debug builds).
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        if let Some(counter) = self.plain.get(name) {
            if labels.is_empty() {
                counter.fetch_add(n, Ordering::Relaxed);
            } else {
                invalid(name);
            }
            return;
        }
        if !valid_name(name) || name == CALLS_ACTIVE {
            invalid(name);
            return;
        }
        let mut key: LabelSet = Vec::with_capacity(labels.len());
        for &(label, value) in labels {
            if !valid_label_name(label) {
                invalid(label);
                return;
            }
            match key.iter_mut().find(|(l, _)| *l == label) {
                Some(existing) => existing.1 = value.to_owned(),
                None => key.push((label, value.to_owned())),
            }
        }
        key.sort_unstable();
        let mut families = self.lock();
        let counter = families
            .entry(name)
            .or_default()
            .series
            .entry(key)
            .or_insert(0);
        *counter = counter.saturating_add(n);
    }

    /// The current value of counter `name` in the series `labels` (0 if never incremented).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        if let Some(counter) = self.plain.get(name) {
            return if labels.is_empty() {
                counter.load(Ordering::Relaxed)
            } else {
                0
            };
        }
        let mut wanted: Vec<(&str, &str)> = labels.to_vec();
        wanted.sort_unstable();
        let families = self.lock();
        families
            .get(name)
            .and_then(|family| {
                family.series.iter().find_map(|(key, value)| {
                    let same = key.len() == wanted.len()
                        && key
                            .iter()
                            .zip(&wanted)
                            .all(|((l, v), (wl, wv))| l == wl && v == wv);
                    same.then_some(*value)
                })
            })
            .unwrap_or(0)
    }

    /// Renders every metric in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut blocks: Vec<(&'static str, String)> = Vec::new();

        let mut gauge = String::new();
        header(
            &mut gauge,
            CALLS_ACTIVE,
            "Calls in progress, by leg kind.",
            "gauge",
        );
        for leg in LEG_KINDS {
            let value = self.calls_active[leg_index(leg)].load(Ordering::Relaxed);
            sample(
                &mut gauge,
                CALLS_ACTIVE,
                &[("leg", leg.as_str())],
                &value.to_string(),
            );
        }
        blocks.push((CALLS_ACTIVE, gauge));

        for (name, help, counter) in self.plain.all() {
            let mut block = String::new();
            header(&mut block, name, help, "counter");
            sample(
                &mut block,
                name,
                &[],
                &counter.load(Ordering::Relaxed).to_string(),
            );
            blocks.push((name, block));
        }

        {
            let families = self.lock();
            for (&name, family) in families.iter() {
                let mut block = String::new();
                let help = family.help.unwrap_or("Counter without a description.");
                header(&mut block, name, help, "counter");
                for (key, value) in &family.series {
                    let labels: Vec<(&str, &str)> =
                        key.iter().map(|(l, v)| (*l, v.as_str())).collect();
                    sample(&mut block, name, &labels, &value.to_string());
                }
                blocks.push((name, block));
            }
        }

        blocks.sort_by(|a, b| a.0.cmp(b.0));
        for (_, block) in blocks {
            out.push_str(&block);
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Family>> {
        // A panic while holding the lock cannot leave a map half-updated in a way that
        // matters for counters, so a poisoned lock is still used.
        self.families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

const fn leg_index(leg: LegKind) -> usize {
    match leg {
        LegKind::Twilio => 0,
        LegKind::Sip => 1,
    }
}

fn invalid(name: &str) {
    tracing::error!(name, "invalid metric or label name; update ignored");
    debug_assert!(false, "invalid metric or label name: {name}");
}

/// Metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Label names: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(PREFIX);
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            out.push_str(&escape_label_value(v));
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Escapes a label value: backslash, double quote and line feed.
pub(crate) fn escape_label_value(value: &str) -> String {
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

/// Escapes `# HELP` text: backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines (no comments) of a rendering.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn fresh_metrics_render_every_builtin_family_at_zero() {
        let text = Metrics::new().render();
        for name in [
            CALLS_ACTIVE,
            CALLS_TOTAL,
            CALLS_ENDED_TOTAL,
            BARGE_INS_TOTAL,
            TRUNCATES_TOTAL,
            TOOL_CALLS_TOTAL,
            REALTIME_ERRORS_TOTAL,
            FRAMES_DROPPED_TOTAL,
            REALTIME_CONNECT_FAILURES_TOTAL,
            DTMF_DIGITS_TOTAL,
        ] {
            assert!(
                text.contains(&format!("# HELP dialtone_{name} ")),
                "missing HELP for {name}"
            );
            let kind = if name == CALLS_ACTIVE {
                "gauge"
            } else {
                "counter"
            };
            assert!(text.contains(&format!("# TYPE dialtone_{name} {kind}\n")));
        }
        assert!(text.contains("dialtone_calls_active{leg=\"twilio\"} 0\n"));
        assert!(text.contains("dialtone_calls_active{leg=\"sip\"} 0\n"));
        assert!(text.contains("dialtone_calls_total{leg=\"sip\"} 0\n"));
        assert!(text.contains("dialtone_barge_ins_total 0\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn typed_recorders_show_up_in_the_rendering() {
        let m = Metrics::new();
        m.call_started(LegKind::Twilio);
        m.call_started(LegKind::Twilio);
        m.call_started(LegKind::Sip);
        m.call_ended(LegKind::Twilio, "caller_hangup");
        m.barge_in();
        m.truncate();
        m.truncate();
        m.tool_call("webhook", "ok");
        m.tool_call("webhook", "timeout");
        m.tool_call("webhook", "ok");
        m.realtime_error(None);
        m.realtime_error(Some("session_expired"));
        m.frames_dropped("not_ready", 12);
        m.frames_dropped("not_ready", 3);
        m.realtime_connect_failure();
        m.dtmf_digit();

        assert_eq!(m.calls_active(LegKind::Twilio), 1);
        let text = m.render();
        let lines = samples(&text);
        for expected in [
            "dialtone_calls_active{leg=\"twilio\"} 1",
            "dialtone_calls_active{leg=\"sip\"} 1",
            "dialtone_calls_total{leg=\"twilio\"} 2",
            "dialtone_calls_total{leg=\"sip\"} 1",
            "dialtone_calls_ended_total{reason=\"caller_hangup\"} 1",
            "dialtone_barge_ins_total 1",
            "dialtone_truncates_total 2",
            "dialtone_tool_calls_total{action=\"webhook\",outcome=\"ok\"} 2",
            "dialtone_tool_calls_total{action=\"webhook\",outcome=\"timeout\"} 1",
            "dialtone_realtime_errors_total{code=\"none\"} 1",
            "dialtone_realtime_errors_total{code=\"session_expired\"} 1",
            "dialtone_frames_dropped_total{reason=\"not_ready\"} 15",
            "dialtone_realtime_connect_failures_total 1",
            "dialtone_dtmf_digits_total 1",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.call_ended(LegKind::Sip, "a\"b\\c\nd");
        let text = m.render();
        assert!(
            text.contains("dialtone_calls_ended_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
    }

    #[test]
    fn rendering_order_is_stable_and_sorted() {
        let m = Metrics::new();
        m.tool_call("transfer", "ok");
        m.tool_call("hangup", "ok");
        m.inc("sip_register_total", &[("result", "ok")]);
        let first = m.render();
        assert_eq!(first, m.render());

        let families: Vec<&str> = first
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or_default())
            .collect();
        let mut sorted = families.clone();
        sorted.sort_unstable();
        assert_eq!(families, sorted);

        let hangup = first.find("action=\"hangup\"").unwrap();
        let transfer = first.find("action=\"transfer\"").unwrap();
        assert!(hangup < transfer);
    }

    #[test]
    fn generic_counters_sort_labels_and_accumulate() {
        let m = Metrics::new();
        m.describe_counter("sip_invites_total", "SIP INVITEs received, by result.");
        let text = m.render();
        assert!(text.contains("# HELP dialtone_sip_invites_total SIP INVITEs received"));
        assert!(text.contains("# TYPE dialtone_sip_invites_total counter\n"));

        m.inc("sip_invites_total", &[("result", "ok"), ("codec", "pcmu")]);
        m.add(
            "sip_invites_total",
            &[("codec", "pcmu"), ("result", "ok")],
            4,
        );
        assert_eq!(
            m.counter("sip_invites_total", &[("result", "ok"), ("codec", "pcmu")]),
            5
        );
        let text = m.render();
        assert!(text.contains("dialtone_sip_invites_total{codec=\"pcmu\",result=\"ok\"} 5\n"));

        m.inc("undescribed_total", &[]);
        let text = m.render();
        assert!(text.contains("# HELP dialtone_undescribed_total "));
        assert!(text.contains("dialtone_undescribed_total 1\n"));
    }

    #[test]
    fn generic_api_reaches_builtin_counters() {
        let m = Metrics::new();
        m.inc(BARGE_INS_TOTAL, &[]);
        m.add(CALLS_ENDED_TOTAL, &[("reason", "shutdown")], 2);
        assert_eq!(m.counter(BARGE_INS_TOTAL, &[]), 1);
        assert_eq!(m.counter(CALLS_ENDED_TOTAL, &[("reason", "shutdown")]), 2);
        assert_eq!(m.counter(CALLS_ENDED_TOTAL, &[("reason", "other")]), 0);
    }

    #[test]
    fn name_validation() {
        assert!(valid_name("sip_invites_total"));
        assert!(valid_name("a:b_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("with-dash"));
        assert!(valid_label_name("leg"));
        assert!(!valid_label_name("__reserved"));
        assert!(!valid_label_name("a:b"));
    }
}
