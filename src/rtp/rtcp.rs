//! Minimal RTCP (RFC 3550 §6), enough that peers watching for it are satisfied.
//!
//! Sans-IO. Incoming compound packets are validated with `rtcp-types` and otherwise ignored,
//! except that a Sender Report's NTP time is remembered for the LSR/DLSR fields of our
//! reports. While the call is up a report goes out about every [`REPORT_INTERVAL`]
//! (randomised over 0.5–1.5× as §6.2 asks): a Sender Report with our packet and octet counts
//! once we have sent RTP, a Receiver Report otherwise, each with a reception report block for
//! the remote source when there is one, and an SDES CNAME. A BYE closes the stream.
//! RTCP travels on the RTP port + 1, or on the RTP port itself with `a=rtcp-mux`
//! ([`is_rtcp`](super::packet::is_rtcp) tells them apart there).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rtcp_types::prelude::*;
use rtcp_types::{
    Bye, Compound, CompoundBuilder, Packet, ReceiverReport, ReportBlock, ReportBlockBuilder,
    RtcpParseError, RtcpWriteError, Sdes, SdesChunk, SdesItem, SenderReport,
};

use super::stats::ReceptionReport;

/// Average time between two reports.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Errors of RTCP parsing and building.
#[derive(Debug, thiserror::Error)]
pub enum RtcpError {
    #[error("malformed RTCP packet: {0}")]
    Malformed(#[from] RtcpParseError),
    #[error("cannot build RTCP packet: {0}")]
    Write(#[from] RtcpWriteError),
}

/// What an incoming compound packet contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    pub sender_reports: usize,
    pub receiver_reports: usize,
    /// The peer said BYE.
    pub bye: bool,
}

/// Our sending statistics for a Sender Report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// The RTP timestamp of the report's instant.
    pub rtp_timestamp: u32,
    pub packets: u64,
    pub octets: u64,
}

/// Sans-IO RTCP state of one media stream.
#[derive(Debug, Clone)]
pub struct Rtcp {
    ssrc: u32,
    cname: String,
    next_report: Instant,
    /// `now` and the wall clock at the same instant, to put NTP times on reports.
    anchor: (Instant, SystemTime),
    /// SSRC, middle 32 bits of the NTP time, and arrival of the last Sender Report received.
    last_sr: Option<(u32, u32, Instant)>,
}

impl Rtcp {
    /// RTCP for our stream `ssrc`, with the first report after a randomised half interval.
    /// `wallclock` is the wall-clock time at `now`.
    pub fn new(ssrc: u32, now: Instant, wallclock: SystemTime, rng: &mut impl Rng) -> Self {
        Self {
            ssrc,
            cname: format!("{ssrc:08x}@dialtone"),
            next_report: now + randomised(REPORT_INTERVAL / 2, rng),
            anchor: (now, wallclock),
            last_sr: None,
        }
    }

    /// When the next report is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_report
    }

    /// Validates one incoming compound packet.
    pub fn on_packet(&mut self, now: Instant, data: &[u8]) -> Result<RtcpSummary, RtcpError> {
        let mut summary = RtcpSummary::default();
        for packet in Compound::parse(data)? {
            match packet? {
                Packet::Sr(sr) => {
                    summary.sender_reports += 1;
                    let middle = (sr.ntp_timestamp() >> 16) as u32;
                    self.last_sr = Some((sr.ssrc(), middle, now));
                }
                Packet::Rr(_) => summary.receiver_reports += 1,
                Packet::Bye(_) => summary.bye = true,
                _ => {}
            }
        }
        Ok(summary)
    }

    /// Builds the report due at `now` and schedules the next one. `sender` is `Some` once we
    /// have sent RTP (Sender Report), `reception` once the peer has.
    pub fn report(
        &mut self,
        now: Instant,
        sender: Option<SenderInfo>,
        reception: Option<ReceptionReport>,
        rng: &mut impl Rng,
    ) -> Result<Vec<u8>, RtcpError> {
        self.next_report = now + randomised(REPORT_INTERVAL, rng);
        let block = reception.map(|r| self.report_block(now, r));
        let compound = match sender {
            Some(info) => {
                let mut sr = SenderReport::builder(self.ssrc)
                    .ntp_timestamp(self.ntp_at(now))
                    .rtp_timestamp(info.rtp_timestamp)
                    .packet_count(info.packets as u32)
                    .octet_count(info.octets as u32);
                if let Some(block) = block {
                    sr = sr.add_report_block(block);
                }
                CompoundBuilder::default().add_packet(sr)
            }
            None => {
                let mut rr = ReceiverReport::builder(self.ssrc);
                if let Some(block) = block {
                    rr = rr.add_report_block(block);
                }
                CompoundBuilder::default().add_packet(rr)
            }
        };
        self.write(compound.add_packet(self.sdes()))
    }

    /// A BYE for our stream, with a Receiver Report first as a compound packet must start.
    pub fn bye(&self) -> Result<Vec<u8>, RtcpError> {
        let compound = CompoundBuilder::default()
            .add_packet(ReceiverReport::builder(self.ssrc))
            .add_packet(self.sdes())
            .add_packet(Bye::builder().add_source(self.ssrc));
        self.write(compound)
    }

    /// The 64-bit NTP time of `now`.
    pub fn ntp_at(&self, now: Instant) -> u64 {
        let (anchor, wallclock) = self.anchor;
        let time = wallclock + now.saturating_duration_since(anchor);
        let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
        let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        (seconds << 32) | fraction
    }

    fn report_block(&self, now: Instant, r: ReceptionReport) -> ReportBlockBuilder {
        let (lsr, dlsr) = match self.last_sr {
            Some((ssrc, middle, at)) if ssrc == r.ssrc => {
                let delay = now.saturating_duration_since(at);
                let units = (delay.as_nanos() * 65_536 / 1_000_000_000).min(u128::from(u32::MAX));
                (middle, units as u32)
            }
            _ => (0, 0),
        };
        ReportBlock::builder(r.ssrc)
            .fraction_lost(r.fraction_lost)
            .cumulative_lost(r.cumulative_lost)
            .extended_sequence_number(r.extended_highest_sequence)
            .interarrival_jitter(r.jitter)
            .last_sender_report_timestamp(lsr)
            .delay_since_last_sender_report_timestamp(dlsr)
    }

    fn sdes(&self) -> rtcp_types::SdesBuilder<'_> {
        Sdes::builder().add_chunk(
            SdesChunk::builder(self.ssrc).add_item(SdesItem::builder(SdesItem::CNAME, &self.cname)),
        )
    }

    fn write(&self, compound: CompoundBuilder<'_>) -> Result<Vec<u8>, RtcpError> {
        let mut buf = vec![0; compound.calculate_size()?];
        let len = compound.write_into(&mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }
}

/// `base` scaled by a random factor in [0.5, 1.5).
fn randomised(base: Duration, rng: &mut impl Rng) -> Duration {
    let factor = 0.5 + f64::from(rng.next_u32()) / f64::from(u32::MAX);
    base.mul_f64(factor.min(1.5))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn rtcp(now: Instant) -> Rtcp {
        Rtcp::new(
            0xAAAA_BBBB,
            now,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            &mut StdRng::seed_from_u64(3),
        )
    }

    fn reception() -> ReceptionReport {
        ReceptionReport {
            ssrc: 0x1234,
            fraction_lost: 12,
            cumulative_lost: 3,
            extended_highest_sequence: 70_000,
            jitter: 40,
        }
    }

    #[test]
    fn reports_come_every_few_seconds() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let mut r = rtcp(t0);
        let first = r.poll_timeout();
        assert!(first >= t0 + REPORT_INTERVAL / 4 && first <= t0 + REPORT_INTERVAL * 3 / 4);
        r.report(first, None, None, &mut rng).unwrap();
        let second = r.poll_timeout();
        assert!(second >= first + REPORT_INTERVAL / 2 && second <= first + REPORT_INTERVAL * 3 / 2);
    }

    #[test]
    fn sender_report_carries_our_counts_and_a_reception_block() {
        let t0 = Instant::now();
        let mut r = rtcp(t0);
        let info = SenderInfo {
            rtp_timestamp: 12_345,
            packets: 250,
            octets: 40_000,
        };
        let bytes = r
            .report(
                t0,
                Some(info),
                Some(reception()),
                &mut StdRng::seed_from_u64(1),
            )
            .unwrap();
        let packets: Vec<Packet<'_>> = Compound::parse(&bytes)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(packets.len(), 2);
        let Packet::Sr(sr) = &packets[0] else {
            panic!("first packet is not a sender report");
        };
        assert_eq!(sr.ssrc(), 0xAAAA_BBBB);
        assert_eq!(sr.packet_count(), 250);
        assert_eq!(sr.octet_count(), 40_000);
        assert_eq!(sr.rtp_timestamp(), 12_345);
        assert_eq!(sr.ntp_timestamp() >> 32, 1_700_000_000 + NTP_UNIX_OFFSET);
        let block = sr.report_blocks().next().unwrap();
        assert_eq!(block.ssrc(), 0x1234);
        assert_eq!(block.fraction_lost(), 12);
        assert_eq!(block.cumulative_lost(), 3);
        assert_eq!(block.extended_sequence_number(), 70_000);
        assert!(matches!(packets[1], Packet::Sdes(_)));
    }

    #[test]
    fn receiver_report_before_we_send_and_lsr_from_their_sender_report() {
        let t0 = Instant::now();
        let mut peer = Rtcp::new(
            0x1234,
            t0,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            &mut StdRng::seed_from_u64(9),
        );
        let info = SenderInfo {
            rtp_timestamp: 0,
            packets: 1,
            octets: 160,
        };
        let their_sr = peer
            .report(t0, Some(info), None, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let mut r = rtcp(t0);
        let summary = r.on_packet(t0, &their_sr).unwrap();
        assert_eq!(summary.sender_reports, 1);
        let bytes = r
            .report(
                t0 + Duration::from_secs(1),
                None,
                Some(reception()),
                &mut StdRng::seed_from_u64(1),
            )
            .unwrap();
        let mut compound = Compound::parse(&bytes).unwrap();
        let Some(Ok(Packet::Rr(rr))) = compound.next() else {
            panic!("first packet is not a receiver report");
        };
        let block = rr.report_blocks().next().unwrap();
        assert_eq!(
            block.last_sender_report_timestamp(),
            (peer.ntp_at(t0) >> 16) as u32
        );
        assert_eq!(block.delay_since_last_sender_report_timestamp(), 65_536);
    }

    #[test]
    fn bye_is_a_valid_compound_packet() {
        let r = rtcp(Instant::now());
        let bytes = r.bye().unwrap();
        let mut rx = rtcp(Instant::now());
        assert!(rx.on_packet(Instant::now(), &bytes).unwrap().bye);
        assert!(crate::rtp::packet::is_rtcp(&bytes));
    }

    #[test]
    fn malformed_rtcp_is_an_error_and_never_panics() {
        let t0 = Instant::now();
        let mut r = rtcp(t0);
        assert!(r.on_packet(t0, &[]).is_err());
        assert!(r.on_packet(t0, &[0x80, 200, 0, 50]).is_err());
        assert!(r.on_packet(t0, &[0x40, 201, 0, 0]).is_err());
        let mut state = 0x1234_5678u32;
        for len in 0..80 {
            for _ in 0..200 {
                let data: Vec<u8> = (0..len)
                    .map(|i| {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        match i {
                            0 => 0x80 | (state as u8 & 0x3F),
                            1 => 200 + (state % 5) as u8,
                            _ => state as u8,
                        }
                    })
                    .collect();
                let _ = r.on_packet(t0, &data);
            }
        }
    }
}
