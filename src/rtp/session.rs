//! The media session of one SIP leg, sans-IO: everything between the UDP sockets and the call.
//!
//! [`MediaSession`] combines the codec, the jitter buffer, the pacer, DTMF in both directions,
//! latching, reception statistics and RTCP. It never reads the clock or touches a socket:
//! datagrams go in through [`handle_rtp`](MediaSession::handle_rtp) and
//! [`handle_rtcp`](MediaSession::handle_rtcp), commands through the other `&mut self`
//! methods, time through [`handle_timeout`](MediaSession::handle_timeout); what to send and
//! what to tell the call comes out of [`poll_output`](MediaSession::poll_output), and
//! [`poll_timeout`](MediaSession::poll_timeout) says when to call `handle_timeout` next.
//!
//! Malformed datagrams, undecodable payloads and packets with payload types that were not
//! negotiated are dropped and counted, never fatal.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::codec::{Codec, CodecError, MediaCodec};
use super::dtmf::DtmfReceiver;
use super::jitter::{JitterBuffer, JitterConfig};
use super::latch::Latch;
use super::pacer::{DtmfJobId, Pacer, PacerConfig, PacerError};
use super::packet::{self, is_valid_payload_type};
use super::rtcp::{Rtcp, SenderInfo};
use super::stats::{MediaStats, ReceiveStats};
use crate::bridge::MarkId;

/// The jitter buffer waits twice the peer's ptime, within these bounds (60 to 300 ms).
const MIN_PTIME_FOR_DELAY: u32 = 30;
const MAX_PTIME_FOR_DELAY: u32 = 150;

/// Errors creating a media session.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("payload type {0} cannot be used for RTP")]
    InvalidPayloadType(u8),
    #[error("audio and telephone-event share payload type {0}")]
    PayloadTypeClash(u8),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// The negotiated parameters of one media stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub codec: MediaCodec,
    /// Payload type of the audio codec (answer with the offerer's number).
    pub payload_type: u8,
    /// Payload type of telephone-event, if negotiated.
    pub telephone_event: Option<u8>,
    /// The peer's `a=ptime` (0 if absent). We always send 20 ms packets; the jitter buffer
    /// waits twice the ptime, at least 60 ms and at most 300 ms.
    pub ptime_ms: u32,
    /// Where RTP goes until latching finds better: the `c=`/`m=` address of the peer's SDP.
    pub remote: SocketAddr,
    /// RTCP shares the RTP port (`a=rtcp-mux`).
    pub rtcp_mux: bool,
    /// Seed of the session's randomness (SSRC, initial sequence number and timestamp, RTCP
    /// intervals).
    pub seed: u64,
}

/// Which socket a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Rtp,
    /// The RTCP socket, or the RTP socket when RTCP is multiplexed.
    Rtcp,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub channel: Channel,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// Something for the IO layer to do or to tell the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Transmit(Transmit),
    /// One 20 ms frame of caller audio in the leg format.
    Audio(Vec<u8>),
    /// A DTMF digit from the caller.
    Dtmf(char),
    /// Every frame queued before this mark has been sent (or cleared).
    Played(MarkId),
    /// A digit string from [`MediaSession::send_dtmf`] was sent completely, or abandoned.
    DtmfFinished {
        job: DtmfJobId,
        result: Result<(), String>,
    },
}

/// The sans-IO media session of one SIP leg.
#[derive(Debug)]
pub struct MediaSession {
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
    jitter: JitterBuffer,
    pacer: Pacer,
    dtmf_in: DtmfReceiver,
    receive: ReceiveStats,
    rtcp: Rtcp,
    rtcp_mux: bool,
    /// Where the peer's RTCP comes from, once it has sent some.
    rtcp_remote: Option<SocketAddr>,
    latch: Latch,
    rng: StdRng,
    outputs: VecDeque<Output>,
    stats: MediaStats,
}

impl MediaSession {
    /// Creates the session at `now`; `wallclock` is the wall-clock time at `now` (for RTCP).
    pub fn new(
        config: SessionConfig,
        now: Instant,
        wallclock: SystemTime,
    ) -> Result<Self, MediaError> {
        for pt in std::iter::once(config.payload_type).chain(config.telephone_event) {
            if !is_valid_payload_type(pt) {
                return Err(MediaError::InvalidPayloadType(pt));
            }
        }
        if config.telephone_event == Some(config.payload_type) {
            return Err(MediaError::PayloadTypeClash(config.payload_type));
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut codec = Codec::new(config.codec)?;
        let pacer = Pacer::new(
            PacerConfig {
                payload_type: config.payload_type,
                telephone_event: config.telephone_event,
                clock_rate: config.codec.clock_rate(),
                silence: codec.silence_payload()?,
            },
            &mut rng,
            now,
        );
        let delay = Duration::from_millis(
            u64::from(
                config
                    .ptime_ms
                    .clamp(MIN_PTIME_FOR_DELAY, MAX_PTIME_FOR_DELAY),
            ) * 2,
        );
        let jitter = JitterBuffer::new(JitterConfig::for_codec(config.codec).with_delay(delay));
        let rtcp = Rtcp::new(pacer.ssrc(), now, wallclock, &mut rng);
        Ok(Self {
            codec,
            payload_type: config.payload_type,
            telephone_event: config.telephone_event,
            jitter,
            pacer,
            dtmf_in: DtmfReceiver::new(),
            receive: ReceiveStats::new(config.codec.clock_rate()),
            rtcp,
            rtcp_mux: config.rtcp_mux,
            rtcp_remote: None,
            latch: Latch::new(config.remote),
            rng,
            outputs: VecDeque::new(),
            stats: MediaStats::default(),
        })
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.pacer.ssrc()
    }

    /// Where RTP goes now (the SDP address, or the latched one).
    pub fn remote(&self) -> SocketAddr {
        self.latch.remote()
    }

    /// The counters so far, with the current jitter estimate.
    pub fn stats(&self) -> MediaStats {
        let jitter = self.jitter.stats();
        MediaStats {
            packets_out: self.pacer.packets_sent(),
            octets_out: self.pacer.octets_sent(),
            packets_lost: jitter.lost,
            packets_late: jitter.late,
            packets_reordered: jitter.reordered,
            packets_duplicate: jitter.duplicate,
            packets_malformed: self.stats.packets_malformed + jitter.undecodable,
            concealed_frames: jitter.concealed_frames,
            jitter_resyncs: jitter.resyncs,
            jitter_ms: self.receive.jitter_ms(),
            ..self.stats
        }
    }

    /// Takes one datagram received on the RTP socket (RTCP too, when multiplexed).
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if packet::is_rtcp(data) {
            self.handle_rtcp(now, from, data);
            return;
        }
        let view = match packet::parse(data) {
            Ok(view) => view,
            Err(error) => {
                self.stats.packets_malformed += 1;
                tracing::trace!(%error, "RTP datagram dropped");
                return;
            }
        };
        self.stats.packets_in += 1;
        let header = view.header;
        if header.payload_type == self.payload_type {
            self.receive
                .on_packet(now, header.ssrc, header.sequence, header.timestamp, true);
            self.observe_source(from, header.ssrc);
            self.jitter.push(now, &header, view.payload);
        } else if Some(header.payload_type) == self.telephone_event {
            self.receive
                .on_packet(now, header.ssrc, header.sequence, header.timestamp, false);
            self.observe_source(from, header.ssrc);
            self.jitter.note_other(&header);
            if self
                .dtmf_in
                .on_packet(now, header.ssrc, header.timestamp, view.payload)
                .is_err()
            {
                self.stats.packets_malformed += 1;
            }
            self.drain_digits(now);
        } else {
            self.stats.packets_unknown_pt += 1;
            tracing::trace!(
                payload_type = header.payload_type,
                "RTP packet with unknown payload type dropped"
            );
        }
    }

    /// Takes one datagram received on the RTCP socket.
    pub fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        match self.rtcp.on_packet(now, data) {
            Ok(summary) => {
                self.stats.rtcp_in += 1;
                if !self.rtcp_mux
                    && self.rtcp_remote.is_none()
                    && from.ip() == self.latch.remote().ip()
                {
                    self.rtcp_remote = Some(from);
                }
                if summary.bye {
                    tracing::debug!("peer sent RTCP BYE");
                }
            }
            Err(error) => {
                self.stats.rtcp_malformed += 1;
                tracing::trace!(%error, "RTCP datagram dropped");
            }
        }
    }

    /// Queues leg-format audio for playback: any number of 20 ms frames (a partial last frame
    /// is completed with silence).
    pub fn play(&mut self, audio: &[u8]) {
        let format = self.codec.kind().leg_format();
        let frame_bytes = format.frame_bytes();
        for chunk in audio.chunks(frame_bytes) {
            let encoded = if chunk.len() == frame_bytes {
                self.codec.encode(chunk)
            } else {
                let mut frame = chunk.to_vec();
                frame.extend_from_slice(&format.silence_frame()[chunk.len()..]);
                self.codec.encode(&frame)
            };
            match encoded {
                Ok(payload) => self.pacer.play(payload),
                Err(error) => tracing::warn!(%error, "audio frame not encoded; dropped"),
            }
        }
    }

    /// Queues a mark after the audio queued so far.
    pub fn mark(&mut self, id: MarkId) {
        if let Some(id) = self.pacer.mark(id) {
            self.outputs.push_back(Output::Played(id));
        }
    }

    /// Drops the queued audio; every pending mark is reported at once.
    pub fn clear(&mut self) {
        for id in self.pacer.clear() {
            self.outputs.push_back(Output::Played(id));
        }
    }

    /// Queues a digit string to send as RFC 4733 events; [`Output::DtmfFinished`] follows.
    /// An empty string is [`PacerError::NoDigits`]: there is nothing to wait for.
    pub fn send_dtmf(&mut self, digits: &str) -> Result<DtmfJobId, PacerError> {
        self.pacer.send_dtmf(digits)
    }

    /// Starts or ends a hold: nothing is sent while held (receiving goes on). Digit strings in
    /// progress are abandoned.
    pub fn hold(&mut self, held: bool, now: Instant) {
        for job in self.pacer.hold(held, now) {
            self.outputs.push_back(Output::DtmfFinished {
                job,
                result: Err("the call was put on hold".to_owned()),
            });
        }
    }

    /// Sends to a new address from now on (the peer re-negotiated `c=`/`m=`).
    pub fn set_remote(&mut self, remote: SocketAddr) {
        self.latch.set_remote(remote);
        self.rtcp_remote = None;
    }

    /// Does everything due at `now`: packets, caller frames, digit timeouts, RTCP reports.
    pub fn handle_timeout(&mut self, now: Instant) {
        let remote = self.latch.remote();
        while let Some(sent) = self.pacer.next_send(now) {
            self.outputs.push_back(Output::Transmit(Transmit {
                channel: Channel::Rtp,
                destination: remote,
                payload: sent.packet,
            }));
            self.outputs
                .extend(sent.played.into_iter().map(Output::Played));
            if let Some(job) = sent.dtmf_done {
                self.outputs.push_back(Output::DtmfFinished {
                    job,
                    result: Ok(()),
                });
            }
        }
        while let Some(frame) = self.jitter.pop(now, &mut self.codec) {
            self.outputs.push_back(Output::Audio(frame.audio));
        }
        self.drain_digits(now);
        if now >= self.rtcp.poll_timeout() {
            self.send_report(now);
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.pacer.poll_timeout(),
            self.jitter.poll_timeout(),
            self.dtmf_in.poll_timeout(),
            Some(self.rtcp.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next output, if any. Drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Ends the session: abandons digit strings in progress and sends an RTCP BYE.
    pub fn close(&mut self) {
        for job in self.pacer.cancel_dtmf() {
            self.outputs.push_back(Output::DtmfFinished {
                job,
                result: Err("the media session ended".to_owned()),
            });
        }
        match self.rtcp.bye() {
            Ok(payload) => self.transmit_rtcp(payload),
            Err(error) => tracing::debug!(%error, "RTCP BYE not built"),
        }
    }

    fn observe_source(&mut self, from: SocketAddr, ssrc: u32) {
        if self.latch.observe(from, ssrc) {
            self.stats.latched += 1;
            self.rtcp_remote = None;
            tracing::debug!(%from, "sending RTP to the source of the incoming media");
        }
    }

    fn drain_digits(&mut self, now: Instant) {
        while let Some(digit) = self.dtmf_in.poll(now) {
            self.stats.dtmf_in += 1;
            self.outputs.push_back(Output::Dtmf(digit));
        }
    }

    fn send_report(&mut self, now: Instant) {
        let sender = (self.pacer.packets_sent() > 0 && !self.pacer.is_held()).then(|| SenderInfo {
            rtp_timestamp: self.pacer.rtp_timestamp_at(now),
            packets: self.pacer.packets_sent(),
            octets: self.pacer.octets_sent(),
        });
        let reception = self.receive.report();
        match self.rtcp.report(now, sender, reception, &mut self.rng) {
            Ok(payload) => self.transmit_rtcp(payload),
            Err(error) => tracing::debug!(%error, "RTCP report not built"),
        }
    }

    fn transmit_rtcp(&mut self, payload: Vec<u8>) {
        let remote = self.latch.remote();
        let destination = if self.rtcp_mux {
            Some(remote)
        } else {
            self.rtcp_remote.or_else(|| {
                remote
                    .port()
                    .checked_add(1)
                    .map(|port| SocketAddr::new(remote.ip(), port))
            })
        };
        if let Some(destination) = destination {
            self.stats.rtcp_out += 1;
            self.outputs.push_back(Output::Transmit(Transmit {
                channel: Channel::Rtcp,
                destination,
                payload,
            }));
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
