//! The outbound pacer: the playout clock of a SIP leg.
//!
//! Sans-IO. Audio to play arrives as already-encoded 20 ms frames ([`Pacer::play`]) with
//! [`marks`](Pacer::mark) between them. The pacer sends one RTP packet per 20 ms slot on a
//! fixed grid from the stream start (slot `n` is due at `start + n × 20 ms`, so there is no
//! drift): the next queued frame, or the codec's silence when nothing is queued, so the peer
//! keeps receiving RTP while the call is up. Because a frame counts as played when its packet
//! is sent, a mark is reported (in the [`Sent`] of that packet) as soon as every frame queued
//! before it has been sent, and [`clear`](Pacer::clear) flushes the queue at once and returns
//! every pending mark.
//!
//! - One SSRC; sequence numbers +1 per packet; timestamps follow the slot (+160 per slot at
//!   8 kHz, +960 for Opus at 48 kHz) and keep advancing with real time across holds and
//!   stalls. Initial SSRC, sequence number and timestamp come from the RNG passed in.
//! - The marker bit is set on the first packet, on the first audio frame after silence (a
//!   talk-spurt start), and on the first packet after a hold or a stall.
//! - A late caller catches up at most [`MAX_CATCH_UP`] slots; beyond that the missed slots
//!   are skipped (nothing is sent for them) and sending resumes on the grid.
//! - [`hold`](Pacer::hold) stops sending until it is lifted.
//! - DTMF ([`send_dtmf`](Pacer::send_dtmf)) goes out as RFC 4733 events in the same stream;
//!   queued audio waits while a digit string is sent, and the [`Sent`] carrying the string's
//!   last packet names its job.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

use super::codec::FRAME_MS;
use super::dtmf::{DtmfError, DtmfSender, DtmfTick};
use super::packet::{self, PacketError, RtpHeader};
use crate::bridge::MarkId;

/// Duration of one packet slot.
pub const SLOT: Duration = Duration::from_millis(FRAME_MS as u64);

/// How many overdue slots are still sent when the pacer is polled late.
pub const MAX_CATCH_UP: u32 = 3;

/// Identifies one digit string handed to [`Pacer::send_dtmf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DtmfJobId(pub u64);

/// Errors of the pacer.
#[derive(Debug, thiserror::Error)]
pub enum PacerError {
    #[error("telephone-event was not negotiated")]
    NoTelephoneEvent,
    #[error("no digits to send")]
    NoDigits,
    #[error(transparent)]
    Dtmf(#[from] DtmfError),
    #[error(transparent)]
    Packet(#[from] PacketError),
}

/// The outbound stream's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacerConfig {
    /// Payload type of the audio codec.
    pub payload_type: u8,
    /// Payload type of telephone-event, if negotiated.
    pub telephone_event: Option<u8>,
    /// RTP clock rate of the codec (also used for telephone events).
    pub clock_rate: u32,
    /// One encoded 20 ms frame of silence.
    pub silence: Vec<u8>,
}

/// What a packet carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A queued audio frame.
    Audio,
    /// Silence fill (nothing queued, or a gap in a digit string).
    Silence,
    /// A telephone event.
    Dtmf,
}

/// One packet to send, and what sending it completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The RTP packet.
    pub packet: Vec<u8>,
    pub content: Content,
    /// Marks whose preceding frames have all been sent with this packet.
    pub played: Vec<MarkId>,
    /// The digit string whose last packet this is.
    pub dtmf_done: Option<DtmfJobId>,
}

#[derive(Debug)]
enum Entry {
    Frame(Vec<u8>),
    Mark(MarkId),
}

/// Sans-IO outbound RTP stream with its queue of frames and marks.
#[derive(Debug)]
pub struct Pacer {
    config: PacerConfig,
    /// Timestamp units per slot.
    slot_ts: u32,
    start: Instant,
    /// Index of the next slot to send.
    slot: u64,
    ssrc: u32,
    next_seq: u16,
    first_ts: u32,
    queue: VecDeque<Entry>,
    queued_frames: usize,
    held: bool,
    /// The next packet gets the marker bit (stream start, after a hold or a stall).
    marker_due: bool,
    /// The previous packet was queued audio.
    talking: bool,
    dtmf: VecDeque<(DtmfJobId, DtmfSender)>,
    next_job: u64,
    event_ts: u32,
    packets_sent: u64,
    octets_sent: u64,
}

impl Pacer {
    /// A stream starting at `now`, with random SSRC, sequence number and timestamp from `rng`.
    pub fn new(config: PacerConfig, rng: &mut impl Rng, now: Instant) -> Self {
        let slot_ts = (u64::from(config.clock_rate) * u64::from(FRAME_MS) / 1000) as u32;
        Self {
            config,
            slot_ts,
            start: now,
            slot: 0,
            ssrc: rng.next_u32(),
            next_seq: rng.next_u32() as u16,
            first_ts: rng.next_u32(),
            queue: VecDeque::new(),
            queued_frames: 0,
            held: false,
            marker_due: true,
            talking: false,
            dtmf: VecDeque::new(),
            next_job: 0,
            event_ts: 0,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// RTP packets sent so far.
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Payload octets sent so far.
    pub fn octets_sent(&self) -> u64 {
        self.octets_sent
    }

    /// Frames waiting to be sent.
    pub fn queued_frames(&self) -> usize {
        self.queued_frames
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// The RTP timestamp of the instant `now` on this stream's clock (for Sender Reports).
    pub fn rtp_timestamp_at(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let units = elapsed * u128::from(self.config.clock_rate) / 1_000_000_000;
        self.first_ts.wrapping_add(units as u32)
    }

    /// Queues one encoded 20 ms frame.
    pub fn play(&mut self, payload: Vec<u8>) {
        self.queue.push_back(Entry::Frame(payload));
        self.queued_frames += 1;
    }

    /// Queues a mark after the frames queued so far. Returns it right away if there are none:
    /// everything before it has been sent already.
    pub fn mark(&mut self, id: MarkId) -> Option<MarkId> {
        if self.queued_frames == 0 {
            return Some(id);
        }
        self.queue.push_back(Entry::Mark(id));
        None
    }

    /// Drops every queued frame; the next packet is silence. Returns the pending marks in order.
    pub fn clear(&mut self) -> Vec<MarkId> {
        let marks = self
            .queue
            .drain(..)
            .filter_map(|entry| match entry {
                Entry::Mark(id) => Some(id),
                Entry::Frame(_) => None,
            })
            .collect();
        self.queued_frames = 0;
        marks
    }

    /// Starts (`true`) or ends a hold. While held nothing is sent and [`poll_timeout`] is
    /// `None`; sending resumes on the grid, with timestamps reflecting the time that passed.
    /// Starting a hold abandons the digit strings in progress and returns their jobs.
    ///
    /// [`poll_timeout`]: Self::poll_timeout
    pub fn hold(&mut self, held: bool, now: Instant) -> Vec<DtmfJobId> {
        if held == self.held {
            return Vec::new();
        }
        self.held = held;
        if held {
            return self.cancel_dtmf();
        }
        let elapsed = now.saturating_duration_since(self.start);
        self.slot = self
            .slot
            .max(elapsed.as_nanos().div_ceil(SLOT.as_nanos()) as u64);
        self.marker_due = true;
        self.talking = false;
        Vec::new()
    }

    /// Queues a digit string (`0-9 * # A-D`, `w` for a 500 ms pause) to send as telephone
    /// events after the strings already queued.
    pub fn send_dtmf(&mut self, digits: &str) -> Result<DtmfJobId, PacerError> {
        if self.config.telephone_event.is_none() {
            return Err(PacerError::NoTelephoneEvent);
        }
        let sender = DtmfSender::new(digits, self.config.clock_rate)?;
        if sender.is_done() {
            return Err(PacerError::NoDigits);
        }
        let id = DtmfJobId(self.next_job);
        self.next_job += 1;
        self.dtmf.push_back((id, sender));
        Ok(id)
    }

    /// Abandons every digit string not yet fully sent and returns their jobs.
    pub fn cancel_dtmf(&mut self) -> Vec<DtmfJobId> {
        self.dtmf.drain(..).map(|(id, _)| id).collect()
    }

    /// When the next packet is due; `None` while held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.held).then(|| self.deadline(self.slot))
    }

    /// The packet due at `now`, if one is. Call again until `None` to catch up.
    pub fn next_send(&mut self, now: Instant) -> Option<Sent> {
        if self.held {
            return None;
        }
        let due = self.deadline(self.slot);
        if now < due {
            return None;
        }
        let behind = ((now - due).as_nanos() / SLOT.as_nanos()) as u64;
        if behind > u64::from(MAX_CATCH_UP) {
            self.slot += behind;
            self.marker_due = true;
            self.talking = false;
        }
        let slot_ts = self
            .first_ts
            .wrapping_add((self.slot as u32).wrapping_mul(self.slot_ts));
        self.slot += 1;
        match self.build(slot_ts) {
            Ok(sent) => Some(sent),
            Err(error) => {
                tracing::warn!(%error, "RTP packet not built");
                None
            }
        }
    }

    fn build(&mut self, slot_ts: u32) -> Result<Sent, PacerError> {
        let mut header = RtpHeader {
            payload_type: self.config.payload_type,
            marker: false,
            sequence: self.next_seq,
            timestamp: slot_ts,
            ssrc: self.ssrc,
        };
        let mut played = Vec::new();
        let mut dtmf_done = None;
        let (packet, content) = if let Some((id, sender)) = self.dtmf.front_mut() {
            let id = *id;
            self.talking = false;
            match sender.tick() {
                Some(DtmfTick::Event {
                    payload,
                    start,
                    last,
                }) => {
                    if start {
                        self.event_ts = slot_ts;
                    }
                    if last {
                        dtmf_done = Some(id);
                    }
                    header.payload_type =
                        self.config.telephone_event.unwrap_or(header.payload_type);
                    header.timestamp = self.event_ts;
                    header.marker = start;
                    (packet::build_vec(&header, &payload)?, Content::Dtmf)
                }
                tick => {
                    if tick.is_none() || tick == Some(DtmfTick::Pause { last: true }) {
                        dtmf_done = Some(id);
                    }
                    header.marker = self.marker_due;
                    (
                        packet::build_vec(&header, &self.config.silence)?,
                        Content::Silence,
                    )
                }
            }
        } else if let Some(frame) = self.pop_frame(&mut played) {
            header.marker = self.marker_due || !self.talking;
            self.talking = true;
            (packet::build_vec(&header, &frame)?, Content::Audio)
        } else {
            self.talking = false;
            header.marker = self.marker_due;
            (
                packet::build_vec(&header, &self.config.silence)?,
                Content::Silence,
            )
        };
        if dtmf_done.is_some() {
            self.dtmf.pop_front();
        }
        self.marker_due = false;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += (packet.len() - packet::HEADER_LEN) as u64;
        Ok(Sent {
            packet,
            content,
            played,
            dtmf_done,
        })
    }

    /// Takes the next frame off the queue, with the marks that directly follow it.
    fn pop_frame(&mut self, played: &mut Vec<MarkId>) -> Option<Vec<u8>> {
        // Marks are only ever queued behind a frame, so the head is a frame or nothing.
        if !matches!(self.queue.front(), Some(Entry::Frame(_))) {
            return None;
        }
        let Some(Entry::Frame(frame)) = self.queue.pop_front() else {
            return None;
        };
        self.queued_frames -= 1;
        while let Some(Entry::Mark(id)) = self.queue.front() {
            played.push(*id);
            self.queue.pop_front();
        }
        Some(frame)
    }

    fn deadline(&self, slot: u64) -> Instant {
        let nanos = u128::from(slot) * SLOT.as_nanos();
        self.start + Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }
}

#[cfg(test)]
#[path = "pacer_tests.rs"]
mod tests;
