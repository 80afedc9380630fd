//! Process-wide counters of the Twilio side: media frames, marks, malformed input, rejected
//! signatures and failed REST calls. Shared by every call through an `Arc`; read with
//! [`TwilioCounters::snapshot`] for metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters, updated with relaxed atomics (they are statistics, not synchronisation).
#[derive(Debug, Default)]
pub struct TwilioCounters {
    /// Media Streams whose `start` arrived and whose call was handed to the host.
    pub streams_started: AtomicU64,
    /// Media Streams closed before a usable `start` arrived.
    pub streams_rejected: AtomicU64,
    /// Caller audio frames decoded and passed on.
    pub frames_in: AtomicU64,
    /// Caller audio frames dropped because the payload was not valid base64.
    pub frames_dropped: AtomicU64,
    /// Audio frames sent to Twilio.
    pub frames_out: AtomicU64,
    /// `media` messages sent to Twilio (one per playback segment).
    pub media_out: AtomicU64,
    /// Text frames that were not a valid Media Streams message, and unexpected binary frames.
    pub malformed_messages: AtomicU64,
    /// Marks sent to Twilio.
    pub marks_sent: AtomicU64,
    /// Mark echoes from Twilio that matched one of our marks.
    pub marks_played: AtomicU64,
    /// Mark echoes whose name was not one of ours.
    pub marks_foreign: AtomicU64,
    /// `clear` messages sent to Twilio.
    pub clears_sent: AtomicU64,
    /// DTMF digits received from the caller.
    pub dtmf_in: AtomicU64,
    /// Webhook or WebSocket requests refused because `X-Twilio-Signature` did not match.
    pub signature_rejected: AtomicU64,
    /// REST call updates (hangup, transfer) that failed.
    pub rest_failures: AtomicU64,
}

/// A point-in-time copy of [`TwilioCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwilioCountersSnapshot {
    pub streams_started: u64,
    pub streams_rejected: u64,
    pub frames_in: u64,
    pub frames_dropped: u64,
    pub frames_out: u64,
    pub media_out: u64,
    pub malformed_messages: u64,
    pub marks_sent: u64,
    pub marks_played: u64,
    pub marks_foreign: u64,
    pub clears_sent: u64,
    pub dtmf_in: u64,
    pub signature_rejected: u64,
    pub rest_failures: u64,
}

impl TwilioCounters {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> TwilioCountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TwilioCountersSnapshot {
            streams_started: get(&self.streams_started),
            streams_rejected: get(&self.streams_rejected),
            frames_in: get(&self.frames_in),
            frames_dropped: get(&self.frames_dropped),
            frames_out: get(&self.frames_out),
            media_out: get(&self.media_out),
            malformed_messages: get(&self.malformed_messages),
            marks_sent: get(&self.marks_sent),
            marks_played: get(&self.marks_played),
            marks_foreign: get(&self.marks_foreign),
            clears_sent: get(&self.clears_sent),
            dtmf_in: get(&self.dtmf_in),
            signature_rejected: get(&self.signature_rejected),
            rest_failures: get(&self.rest_failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_bumped_counters() {
        let counters = TwilioCounters::default();
        TwilioCounters::bump(&counters.frames_in);
        TwilioCounters::bump(&counters.frames_in);
        TwilioCounters::bump(&counters.signature_rejected);
        let snap = counters.snapshot();
        assert_eq!(snap.frames_in, 2);
        assert_eq!(snap.signature_rejected, 1);
        assert_eq!(snap.frames_out, 0);
    }
}
