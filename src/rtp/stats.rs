//! Media statistics: the per-stream counters ([`MediaStats`]) and the RFC 3550 reception
//! statistics of the remote source ([`ReceiveStats`]: extended sequence numbers, loss, and the
//! interarrival jitter estimate of appendix A.8) that feed RTCP reports.

use std::time::Instant;

/// Counters and estimates of one media stream, from the start of the call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaStats {
    /// Well-formed RTP packets received (any payload type).
    pub packets_in: u64,
    /// RTP packets sent (audio, silence and telephone events).
    pub packets_out: u64,
    /// Payload octets sent, as reported in Sender Reports.
    pub octets_out: u64,
    /// Audio packets missing when their time to play came (lost, or late and counted there too).
    pub packets_lost: u64,
    /// Audio packets that arrived after their audio had been played, and were dropped.
    pub packets_late: u64,
    /// Audio packets that arrived after a newer one and were still played in order.
    pub packets_reordered: u64,
    /// Audio packets received twice; the copies are dropped.
    pub packets_duplicate: u64,
    /// Datagrams on the RTP port that are not valid RTP, and undecodable payloads.
    pub packets_malformed: u64,
    /// RTP packets with a payload type that was not negotiated; dropped.
    pub packets_unknown_pt: u64,
    /// 20 ms frames handed to the call with concealment for lost audio.
    pub concealed_frames: u64,
    /// Times the jitter buffer restarted its timeline (new SSRC, jumps).
    pub jitter_resyncs: u64,
    /// Times sending switched to the address media actually comes from.
    pub latched: u64,
    /// DTMF digits received.
    pub dtmf_in: u64,
    /// RTCP packets received.
    pub rtcp_in: u64,
    /// RTCP reports sent.
    pub rtcp_out: u64,
    /// Datagrams on the RTCP port (or with RTCP types on a muxed port) that are not valid RTCP.
    pub rtcp_malformed: u64,
    /// The last interarrival jitter estimate of the remote source, in milliseconds.
    pub jitter_ms: f64,
}

/// Metric name and help text of every [`MediaStats`] counter, in [`MediaStats::counters`]
/// order.
pub const COUNTERS: [(&str, &str); 16] = [
    (
        "rtp_packets_in_total",
        "Well-formed RTP packets received on SIP legs.",
    ),
    ("rtp_packets_out_total", "RTP packets sent on SIP legs."),
    (
        "rtp_octets_out_total",
        "RTP payload octets sent on SIP legs.",
    ),
    (
        "rtp_packets_lost_total",
        "Caller audio packets missing at their playout time.",
    ),
    (
        "rtp_packets_late_total",
        "Caller audio packets dropped for arriving after their playout time.",
    ),
    (
        "rtp_packets_reordered_total",
        "Caller audio packets that arrived out of order and were put back in order.",
    ),
    (
        "rtp_packets_duplicate_total",
        "Duplicate caller audio packets dropped.",
    ),
    (
        "rtp_packets_malformed_total",
        "Invalid RTP datagrams and undecodable payloads dropped.",
    ),
    (
        "rtp_packets_unknown_pt_total",
        "RTP packets with a payload type that was not negotiated, dropped.",
    ),
    (
        "rtp_concealed_frames_total",
        "Caller audio frames with concealment for lost packets.",
    ),
    (
        "rtp_jitter_resyncs_total",
        "Jitter buffer timeline restarts (new SSRC, sequence or timestamp jumps).",
    ),
    (
        "rtp_latched_total",
        "Times RTP sending switched to the source address of the incoming media.",
    ),
    (
        "rtp_dtmf_digits_in_total",
        "RFC 4733 DTMF digits received on SIP legs.",
    ),
    (
        "rtcp_packets_in_total",
        "RTCP packets received on SIP legs.",
    ),
    ("rtcp_packets_out_total", "RTCP packets sent on SIP legs."),
    (
        "rtcp_packets_malformed_total",
        "Invalid RTCP datagrams dropped.",
    ),
];

impl MediaStats {
    /// Every counter with its metric name (see [`COUNTERS`]), in a fixed order.
    pub fn counters(&self) -> [(&'static str, u64); 16] {
        let values = [
            self.packets_in,
            self.packets_out,
            self.octets_out,
            self.packets_lost,
            self.packets_late,
            self.packets_reordered,
            self.packets_duplicate,
            self.packets_malformed,
            self.packets_unknown_pt,
            self.concealed_frames,
            self.jitter_resyncs,
            self.latched,
            self.dtmf_in,
            self.rtcp_in,
            self.rtcp_out,
            self.rtcp_malformed,
        ];
        std::array::from_fn(|i| (COUNTERS[i].0, values[i]))
    }
}

/// One reception report block's worth of statistics (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceptionReport {
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, out of 256.
    pub fraction_lost: u8,
    /// Packets lost since the start, as a 24-bit two's complement value.
    pub cumulative_lost: u32,
    /// Cycles in the high 16 bits, highest sequence number received in the low 16.
    pub extended_highest_sequence: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    base_seq: i64,
    max_seq: i64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Arrival (in timestamp units) and RTP timestamp of the previous audio packet.
    previous: Option<(i64, u32)>,
    /// Jitter estimate in timestamp units.
    jitter: f64,
}

/// Sans-IO reception statistics of the remote stream (the newest SSRC seen).
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    clock_rate: u32,
    epoch: Option<Instant>,
    source: Option<Source>,
}

impl ReceiveStats {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            epoch: None,
            source: None,
        }
    }

    /// Records one received packet of the stream. `audio` is false for packets (telephone
    /// events) whose timestamp is not their sampling instant; they count for loss, not jitter.
    pub fn on_packet(&mut self, now: Instant, ssrc: u32, seq: u16, timestamp: u32, audio: bool) {
        let epoch = *self.epoch.get_or_insert(now);
        let source = match &mut self.source {
            Some(source) if source.ssrc == ssrc => source,
            slot => slot.insert(Source {
                ssrc,
                base_seq: i64::from(seq),
                max_seq: i64::from(seq),
                received: 0,
                expected_prior: 0,
                received_prior: 0,
                previous: None,
                jitter: 0.0,
            }),
        };
        let delta = i64::from(seq.wrapping_sub(source.max_seq as u16) as i16);
        source.max_seq = source.max_seq.max(source.max_seq + delta);
        source.received += 1;
        if !audio {
            return;
        }
        let arrival = (now.saturating_duration_since(epoch).as_nanos()
            * u128::from(self.clock_rate)
            / 1_000_000_000) as i64;
        if let Some((prev_arrival, prev_ts)) = source.previous {
            let sent = i64::from(timestamp.wrapping_sub(prev_ts) as i32);
            let d = ((arrival - prev_arrival) - sent).abs() as f64;
            source.jitter += (d - source.jitter) / 16.0;
        }
        source.previous = Some((arrival, timestamp));
    }

    /// The SSRC of the remote stream, once a packet has arrived.
    pub fn ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    /// The interarrival jitter estimate in milliseconds (0 before two audio packets).
    pub fn jitter_ms(&self) -> f64 {
        self.source
            .as_ref()
            .map_or(0.0, |s| s.jitter * 1000.0 / f64::from(self.clock_rate))
    }

    /// A report block for the remote stream; starts a new loss interval.
    pub fn report(&mut self) -> Option<ReceptionReport> {
        let source = self.source.as_mut()?;
        let expected = (source.max_seq - source.base_seq + 1).max(0) as u64;
        let expected_interval = expected.saturating_sub(source.expected_prior);
        let received_interval = source.received.saturating_sub(source.received_prior);
        source.expected_prior = expected;
        source.received_prior = source.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |fraction| fraction.min(255) as u8);
        let lost = (expected as i64 - source.received as i64).clamp(-(1 << 23), (1 << 23) - 1);
        Some(ReceptionReport {
            ssrc: source.ssrc,
            fraction_lost,
            cumulative_lost: (lost as i32 as u32) & 0x00FF_FFFF,
            extended_highest_sequence: source.max_seq.max(0) as u32,
            jitter: source.jitter as u32,
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counters_are_named_after_their_metrics() {
        let stats = MediaStats {
            packets_in: 3,
            concealed_frames: 1,
            ..MediaStats::default()
        };
        let counters = stats.counters();
        assert!(counters.contains(&("rtp_packets_in_total", 3)));
        assert!(counters.contains(&("rtp_concealed_frames_total", 1)));
        assert!(counters.iter().all(|(name, _)| name.ends_with("_total")));
    }

    #[test]
    fn steady_arrivals_have_no_jitter_and_no_loss() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new(8000);
        for i in 0..50u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            stats.on_packet(at, 7, 65_530u16.wrapping_add(i), 160 * u32::from(i), true);
        }
        assert!(stats.jitter_ms() < 0.01);
        let report = stats.report().unwrap();
        assert_eq!(report.fraction_lost, 0);
        assert_eq!(report.cumulative_lost, 0);
        // Wrapped once: cycles 1, highest 65530 + 49 - 65536 = 43.
        assert_eq!(report.extended_highest_sequence, (1 << 16) | 43);
    }

    #[test]
    fn loss_and_jitter_are_estimated() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new(8000);
        for i in (0..100u16).filter(|i| i % 10 != 3) {
            // Every other packet arrives 10 ms late.
            let skew = if i % 2 == 0 { 0 } else { 10 };
            let at = t0 + Duration::from_millis(20 * u64::from(i) + skew);
            stats.on_packet(at, 7, i, 160 * u32::from(i), true);
        }
        let report = stats.report().unwrap();
        assert_eq!(report.cumulative_lost, 10);
        assert_eq!(report.fraction_lost, (10 * 256 / 100) as u8);
        assert!(stats.jitter_ms() > 5.0 && stats.jitter_ms() < 11.0);
        // The next interval has no new packets: no loss in it.
        assert_eq!(stats.report().unwrap().fraction_lost, 0);
    }

    #[test]
    fn a_new_ssrc_starts_over() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new(8000);
        stats.on_packet(t0, 1, 100, 0, true);
        stats.on_packet(t0, 1, 200, 0, true);
        stats.on_packet(t0, 2, 5, 0, true);
        let report = stats.report().unwrap();
        assert_eq!(report.ssrc, 2);
        assert_eq!(report.cumulative_lost, 0);
        assert_eq!(report.extended_highest_sequence, 5);
    }
}
