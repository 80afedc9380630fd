//! The inbound jitter buffer: RTP packets in any order → 20 ms frames on a steady clock.
//!
//! Sans-IO. [`JitterBuffer::push`] takes audio packets as they arrive; [`JitterBuffer::pop`]
//! hands out one 20 ms frame in the leg format per tick of its own clock, which starts one
//! playout delay (60 ms by default, the reordering window) after the first packet and then
//! runs on a fixed grid. Playout follows RTP timestamps, so packets of any duration (10, 20,
//! 30 ms…) are re-framed into 20 ms frames, and the timestamp gaps of silence suppression
//! become silence.
//!
//! - Duplicates are dropped; packets whose audio was already played are dropped as late.
//! - A gap left by a missing packet is concealed when its time comes (the codec decides how:
//!   silence for G.711, packet-loss concealment for Opus) and counted. A gap after which the
//!   sequence continues unbroken is the sender's silence, not loss. Sequence numbers used by
//!   other payloads of the stream (telephone events) are reported with
//!   [`JitterBuffer::note_other`] so they are not taken for loss.
//! - With nothing buffered the frames are silence (the peer stopped or paused).
//! - Sequence numbers (16 bits) and timestamps (32 bits) are unwrapped to 64 bits.
//! - The timeline restarts (resync) on a new SSRC, a sequence jump over `max_seq_jump`, a
//!   packet too far ahead of playout, or the newest packet of the stream arriving behind
//!   playout (the sender's timeline moved, typically a talk-spurt start with the marker bit).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::audio::AudioFormat;

use super::codec::{FRAME_MS, MediaCodec, PayloadDecoder};
use super::packet::RtpHeader;

/// Duration of one output frame.
const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);
/// Frames a late `pop` still catches up on; beyond that the skipped audio is dropped.
const MAX_CATCH_UP: u32 = 5;
/// Played sequence numbers remembered to recognise duplicates.
const RECENT: usize = 64;
/// Sequence numbers of non-audio packets remembered.
const OTHERS: usize = 256;
/// Offsets that keep unwrapped sequence numbers and timestamps positive.
const SEQ_BASE: i64 = 1 << 20;
const TS_BASE: i64 = 1 << 40;

/// Framing and timing of a jitter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP timestamp units per 20 ms output frame.
    pub frame_ts: u32,
    /// Bytes of one 20 ms output frame in the leg format.
    pub frame_bytes: usize,
    /// Bytes per sample in the leg format; cuts never split a sample.
    pub sample_bytes: usize,
    /// How long the first packet waits before it plays: the reordering window.
    pub delay: Duration,
    /// How far ahead of playout packets may be buffered before the timeline restarts.
    pub capacity: Duration,
    /// A sequence number jump larger than this restarts the timeline.
    pub max_seq_jump: u16,
}

impl JitterConfig {
    /// The defaults for a codec: 60 ms delay, 2 s capacity, resync on jumps over 100.
    pub fn for_codec(codec: MediaCodec) -> Self {
        let format = codec.leg_format();
        Self {
            frame_ts: codec.frame_timestamp_units(),
            frame_bytes: format.frame_bytes(),
            sample_bytes: match format {
                AudioFormat::Pcm16 => 2,
                AudioFormat::Pcmu | AudioFormat::Pcma => 1,
            },
            delay: Duration::from_millis(60),
            capacity: Duration::from_secs(2),
            max_seq_jump: 100,
        }
    }

    /// The same configuration with another playout delay, rounded up to whole frames.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        let frames = delay.as_millis().div_ceil(FRAME.as_millis()).max(1);
        self.delay = FRAME * frames as u32;
        self
    }
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Buffered in order.
    Buffered,
    /// Buffered, but it arrived after a newer packet.
    Reordered,
    /// The first packet of a (new) timeline: first packet, new SSRC, or a jump.
    Resynced,
    /// Already received; dropped.
    Duplicate,
    /// Its audio was already played; dropped.
    Late,
}

/// One 20 ms frame handed out by [`JitterBuffer::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayoutFrame {
    /// The audio, in the leg format.
    pub audio: Vec<u8>,
    /// Whether part of it conceals lost audio.
    pub concealed: bool,
}

/// Counters of a jitter buffer since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub late: u64,
    pub duplicate: u64,
    pub reordered: u64,
    /// Packets never played: lost, or late (those are counted in `late` as well).
    pub lost: u64,
    pub concealed_frames: u64,
    /// Timeline restarts, not counting the first packet.
    pub resyncs: u64,
    /// Payloads the codec could not decode.
    pub undecodable: u64,
}

#[derive(Debug, Clone, Copy)]
struct Timeline {
    ssrc: u32,
    /// Highest unwrapped sequence number seen.
    highest_seq: i64,
    /// Highest unwrapped timestamp seen: the reference for unwrapping.
    highest_ts: i64,
}

#[derive(Debug)]
struct Buffered {
    seq: i64,
    payload: Vec<u8>,
}

/// Sans-IO jitter buffer of one inbound audio stream.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    timeline: Option<Timeline>,
    /// When the next frame is due; `None` until the first packet.
    next_pop: Option<Instant>,
    /// Buffered packets by unwrapped timestamp.
    packets: BTreeMap<i64, Buffered>,
    /// Decoded audio not yet handed out; starts at `play_ts`.
    decoded: Vec<u8>,
    /// Unwrapped timestamp of the first byte of `decoded`.
    play_ts: i64,
    last_played_seq: Option<i64>,
    recent: VecDeque<i64>,
    others: BTreeSet<i64>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        Self {
            config,
            timeline: None,
            next_pop: None,
            packets: BTreeMap::new(),
            decoded: Vec::with_capacity(config.frame_bytes * 4),
            play_ts: 0,
            last_played_seq: None,
            recent: VecDeque::with_capacity(RECENT),
            others: BTreeSet::new(),
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Whether the first packet has arrived (frames are handed out from then on).
    pub fn is_started(&self) -> bool {
        self.next_pop.is_some()
    }

    /// When the next frame is due, once started.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_pop
    }

    /// Takes one audio packet of the stream.
    pub fn push(&mut self, now: Instant, header: &RtpHeader, payload: &[u8]) -> Arrival {
        let Some(mut timeline) = self.timeline.filter(|t| t.ssrc == header.ssrc) else {
            return self.resync(now, header, payload);
        };
        let seq = unwrap_seq(timeline.highest_seq, header.sequence);
        if (seq - timeline.highest_seq).abs() > i64::from(self.config.max_seq_jump) {
            return self.resync(now, header, payload);
        }
        let ts = unwrap_ts(timeline.highest_ts, header.timestamp);
        if self.recent.contains(&seq) || self.packets.contains_key(&ts) {
            self.stats.duplicate += 1;
            return Arrival::Duplicate;
        }
        let newest = seq > timeline.highest_seq;
        if ts < self.fill_ts() {
            if newest {
                return self.resync(now, header, payload);
            }
            self.stats.late += 1;
            return Arrival::Late;
        }
        if ts - self.play_ts > self.capacity_ts() {
            return self.resync(now, header, payload);
        }
        if newest {
            timeline.highest_seq = seq;
        }
        timeline.highest_ts = timeline.highest_ts.max(ts);
        self.timeline = Some(timeline);
        self.packets.insert(
            ts,
            Buffered {
                seq,
                payload: payload.to_vec(),
            },
        );
        if newest {
            Arrival::Buffered
        } else {
            self.stats.reordered += 1;
            Arrival::Reordered
        }
    }

    /// Records a packet of the stream that carries no audio (a telephone event), so its
    /// sequence number is not counted as lost audio.
    pub fn note_other(&mut self, header: &RtpHeader) {
        let Some(timeline) = self.timeline.as_mut().filter(|t| t.ssrc == header.ssrc) else {
            return;
        };
        let seq = unwrap_seq(timeline.highest_seq, header.sequence);
        if (seq - timeline.highest_seq).abs() > i64::from(self.config.max_seq_jump) {
            return;
        }
        timeline.highest_seq = timeline.highest_seq.max(seq);
        self.others.insert(seq);
        while self.others.len() > OTHERS {
            self.others.pop_first();
        }
    }

    /// The frame due at `now`, if one is. Call again until `None` to catch up.
    pub fn pop(&mut self, now: Instant, decoder: &mut impl PayloadDecoder) -> Option<PlayoutFrame> {
        let due = self.next_pop?;
        if now < due {
            return None;
        }
        let behind = frames_in(now - due);
        if behind > MAX_CATCH_UP {
            // Stalled for too long: drop the audio of the missed frames instead of rushing it.
            self.next_pop = Some(due + FRAME * behind);
            self.advance(i64::from(self.config.frame_ts) * i64::from(behind));
        }
        let concealed = self.fill_frame(decoder);
        let audio: Vec<u8> = self.decoded.drain(..self.config.frame_bytes).collect();
        self.play_ts += i64::from(self.config.frame_ts);
        self.next_pop = self.next_pop.map(|t| t + FRAME);
        if concealed {
            self.stats.concealed_frames += 1;
        }
        Some(PlayoutFrame { audio, concealed })
    }

    /// Decodes, conceals or fills until one frame of audio is ready; true if it concealed.
    fn fill_frame(&mut self, decoder: &mut impl PayloadDecoder) -> bool {
        let frame_bytes = self.config.frame_bytes;
        let window_end = self.play_ts + i64::from(self.config.frame_ts);
        let mut concealed = false;
        while self.decoded.len() < frame_bytes {
            let fill = self.fill_ts();
            let before = self.decoded.len();
            let missing = frame_bytes - before;
            match self.packets.first_key_value() {
                Some((&ts, _)) if ts <= fill => {
                    if let Some((_, packet)) = self.packets.pop_first() {
                        self.play_packet(ts, fill, packet, decoder);
                    }
                    continue;
                }
                Some((&ts, packet)) => {
                    let gap = self.bytes_ceil(ts.min(window_end) - fill).min(missing);
                    if self.continues(packet.seq) {
                        decoder.silence(gap, &mut self.decoded);
                    } else {
                        decoder.conceal(gap, &mut self.decoded);
                        concealed = true;
                    }
                }
                None => decoder.silence(missing, &mut self.decoded),
            }
            if self.decoded.len() == before {
                // A decoder that filled nothing would stall playout: pad the frame instead.
                self.decoded.resize(frame_bytes, 0);
            }
        }
        concealed
    }

    /// Decodes one packet onto the end of `decoded`, dropping what overlaps audio already there.
    fn play_packet(
        &mut self,
        ts: i64,
        fill: i64,
        packet: Buffered,
        decoder: &mut impl PayloadDecoder,
    ) {
        if let Some(last) = self.last_played_seq {
            self.stats.lost += self.missing_between(last, packet.seq);
        }
        self.last_played_seq = Some(
            self.last_played_seq
                .map_or(packet.seq, |l| l.max(packet.seq)),
        );
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(packet.seq);
        let start = self.decoded.len();
        if decoder.decode(&packet.payload, &mut self.decoded).is_err() {
            self.decoded.truncate(start);
            self.stats.undecodable += 1;
            return;
        }
        let overlap = self.bytes_floor(fill - ts).min(self.decoded.len() - start);
        self.decoded.drain(start..start + overlap);
    }

    /// Whether the packet with `seq` directly follows the last one played (no audio lost).
    fn continues(&self, seq: i64) -> bool {
        self.last_played_seq
            .is_none_or(|last| self.missing_between(last, seq) == 0)
    }

    /// Audio packets missing strictly between two sequence numbers.
    fn missing_between(&self, last: i64, seq: i64) -> u64 {
        if seq <= last + 1 {
            return 0;
        }
        let others = self.others.range(last + 1..seq).count() as i64;
        (seq - last - 1 - others).max(0) as u64
    }

    /// Starts a new timeline at this packet: it plays one playout delay from now.
    fn resync(&mut self, now: Instant, header: &RtpHeader, payload: &[u8]) -> Arrival {
        let ts = TS_BASE + i64::from(header.timestamp);
        let seq = SEQ_BASE + i64::from(header.sequence);
        let target = now + self.config.delay;
        match self.next_pop {
            None => {
                self.next_pop = Some(target);
                self.play_ts = ts;
            }
            Some(next) => {
                let frames = if target > next {
                    frames_ceil(target - next)
                } else {
                    0
                };
                self.play_ts = ts - i64::from(self.config.frame_ts) * i64::from(frames);
                self.stats.resyncs += 1;
            }
        }
        self.timeline = Some(Timeline {
            ssrc: header.ssrc,
            highest_seq: seq,
            highest_ts: ts,
        });
        self.packets.clear();
        self.decoded.clear();
        self.recent.clear();
        self.others.clear();
        self.last_played_seq = None;
        self.packets.insert(
            ts,
            Buffered {
                seq,
                payload: payload.to_vec(),
            },
        );
        Arrival::Resynced
    }

    /// Moves playout forward by `ts` timestamp units without handing the audio out.
    fn advance(&mut self, ts: i64) {
        let bytes = self.bytes_floor(ts);
        if bytes >= self.decoded.len() {
            self.decoded.clear();
        } else {
            self.decoded.drain(..bytes);
        }
        self.play_ts += ts;
    }

    /// Unwrapped timestamp just after the decoded audio.
    fn fill_ts(&self) -> i64 {
        let bytes = self.decoded.len() as i64;
        self.play_ts
            + bytes * i64::from(self.config.frame_ts) / self.config.frame_bytes.max(1) as i64
    }

    fn capacity_ts(&self) -> i64 {
        (frames_in(self.config.capacity).max(1) * self.config.frame_ts) as i64
    }

    /// Bytes of audio in `ts` timestamp units, rounded down to whole samples.
    fn bytes_floor(&self, ts: i64) -> usize {
        let raw = (ts.max(0) as u64 * self.config.frame_bytes as u64
            / u64::from(self.config.frame_ts.max(1))) as usize;
        raw - raw % self.config.sample_bytes.max(1)
    }

    /// Bytes of audio in `ts` timestamp units, rounded up to at least one whole sample.
    fn bytes_ceil(&self, ts: i64) -> usize {
        let sample = self.config.sample_bytes.max(1);
        let raw = (ts.max(0) as u64 * self.config.frame_bytes as u64)
            .div_ceil(u64::from(self.config.frame_ts.max(1))) as usize;
        raw.div_ceil(sample).max(1) * sample
    }
}

fn unwrap_seq(reference: i64, seq: u16) -> i64 {
    reference + i64::from(seq.wrapping_sub(reference as u16) as i16)
}

fn unwrap_ts(reference: i64, ts: u32) -> i64 {
    reference + i64::from(ts.wrapping_sub(reference as u32) as i32)
}

/// Whole frames in `d`, rounded down.
fn frames_in(d: Duration) -> u32 {
    (d.as_nanos() / FRAME.as_nanos()).min(u128::from(u32::MAX)) as u32
}

/// Whole frames in `d`, rounded up.
fn frames_ceil(d: Duration) -> u32 {
    d.as_nanos()
        .div_ceil(FRAME.as_nanos())
        .min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
