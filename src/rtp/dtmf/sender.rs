//! Sending RFC 4733 events: the per-packet schedule of a digit string.
//!
//! The pacer calls [`DtmfSender::tick`] once per 20 ms packet slot. For each digit the schedule
//! is: updates every 20 ms with a growing duration for the length of the tone (100 ms by
//! default; the first carries the marker bit and fixes the event timestamp), then the final
//! packet with the end bit, sent three times in consecutive slots (RFC 4733 §2.5.1.4). Digits
//! are separated by a 60 ms gap; `w` inserts a 500 ms pause. Gap and pause slots are
//! [`DtmfTick::Pause`]: audio stays suppressed until the whole string has been sent.

use std::time::Duration;

use super::{DEFAULT_VOLUME, DtmfError, encode, event_for_digit};

/// Duration of one packet slot.
const SLOT: Duration = Duration::from_millis(20);

/// Tone, gap and pause lengths of a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfTiming {
    /// How long each tone lasts (rounded up to whole 20 ms slots).
    pub tone: Duration,
    /// Silence between two consecutive digits.
    pub gap: Duration,
    /// Length of a `w` pause.
    pub pause: Duration,
    /// How many times the end packet is sent.
    pub end_repeats: u8,
    /// Volume in dB below 0 dBm0.
    pub volume: u8,
}

impl Default for DtmfTiming {
    fn default() -> Self {
        Self {
            tone: Duration::from_millis(100),
            gap: Duration::from_millis(60),
            pause: Duration::from_millis(500),
            end_repeats: 3,
            volume: DEFAULT_VOLUME,
        }
    }
}

/// What to send in one packet slot while a digit string is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfTick {
    /// A telephone-event packet. `start`: the event's first packet (marker bit; its slot's RTP
    /// timestamp becomes the timestamp of every packet of the event). `last`: the final packet
    /// of the whole string.
    Event {
        payload: [u8; 4],
        start: bool,
        last: bool,
    },
    /// No event in this slot (gap or pause); audio stays suppressed. `last`: the string ends
    /// with this slot.
    Pause { last: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Tone(u8),
    Silence(u32),
}

/// Sans-IO schedule of one digit string, one [`DtmfTick`] per 20 ms slot.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    segments: Vec<Segment>,
    /// Index of the current segment.
    segment: usize,
    /// Slot within the current segment.
    slot: u32,
    /// RTP timestamp units per slot.
    slot_ts: u32,
    tone_slots: u32,
    end_repeats: u32,
    volume: u8,
}

impl DtmfSender {
    /// The schedule for `digits` (`0-9`, `*`, `#`, `A-D`, `w` for a pause) with the default
    /// timing, for an RTP clock of `clock_rate` Hz.
    pub fn new(digits: &str, clock_rate: u32) -> Result<Self, DtmfError> {
        Self::with_timing(digits, clock_rate, DtmfTiming::default())
    }

    /// The schedule for `digits` with explicit timing.
    pub fn with_timing(
        digits: &str,
        clock_rate: u32,
        timing: DtmfTiming,
    ) -> Result<Self, DtmfError> {
        let slot_ts = (u64::from(clock_rate) * SLOT.as_millis() as u64 / 1000).max(1);
        let max_tone_slots = (u64::from(u16::MAX) / slot_ts).max(1);
        let tone_slots = slots(timing.tone).clamp(1, max_tone_slots as u32);
        let mut segments = Vec::new();
        for c in digits.chars() {
            let segment = match c {
                'w' | 'W' => Segment::Silence(slots(timing.pause)),
                _ => Segment::Tone(event_for_digit(c).ok_or(DtmfError::InvalidDigit(c))?),
            };
            if matches!(segments.last(), Some(Segment::Tone(_))) {
                segments.push(Segment::Silence(slots(timing.gap)));
            }
            segments.push(segment);
        }
        segments.retain(|s| *s != Segment::Silence(0));
        Ok(Self {
            segments,
            segment: 0,
            slot: 0,
            slot_ts: slot_ts as u32,
            tone_slots,
            end_repeats: u32::from(timing.end_repeats.max(1)),
            volume: timing.volume,
        })
    }

    /// Whether every slot of the string has been handed out.
    pub fn is_done(&self) -> bool {
        self.segment >= self.segments.len()
    }

    /// The next slot's content; `None` once the string is done.
    pub fn tick(&mut self) -> Option<DtmfTick> {
        let segment = *self.segments.get(self.segment)?;
        let length = match segment {
            Segment::Tone(_) => self.tone_slots + self.end_repeats,
            Segment::Silence(n) => n,
        };
        let slot = self.slot;
        self.slot += 1;
        if self.slot >= length {
            self.segment += 1;
            self.slot = 0;
        }
        let last = self.is_done();
        Some(match segment {
            Segment::Tone(event) => {
                let end = slot >= self.tone_slots;
                let elapsed = if end { self.tone_slots } else { slot + 1 };
                let duration = (elapsed * self.slot_ts).min(u32::from(u16::MAX)) as u16;
                DtmfTick::Event {
                    payload: encode(event, end, self.volume, duration),
                    start: slot == 0,
                    last,
                }
            }
            Segment::Silence(_) => DtmfTick::Pause { last },
        })
    }
}

/// Whole 20 ms slots in `d`, rounded up.
fn slots(d: Duration) -> u32 {
    d.as_millis()
        .div_ceil(SLOT.as_millis())
        .min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;

    fn all(sender: &mut DtmfSender) -> Vec<DtmfTick> {
        std::iter::from_fn(|| sender.tick()).collect()
    }

    #[test]
    fn one_digit_follows_rfc_4733() {
        let mut sender = DtmfSender::new("5", 8000).unwrap();
        let ticks = all(&mut sender);
        assert_eq!(ticks.len(), 8, "5 updates + 3 end packets");
        let mut durations = Vec::new();
        for (i, tick) in ticks.iter().enumerate() {
            let DtmfTick::Event {
                payload,
                start,
                last,
            } = *tick
            else {
                panic!("slot {i} is not an event");
            };
            let event = decode(&payload).unwrap();
            assert_eq!(event.event, 5);
            assert_eq!(event.volume, 10);
            assert_eq!(start, i == 0);
            assert_eq!(last, i == 7);
            assert_eq!(event.end, i >= 5);
            durations.push(event.duration);
        }
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800, 800]);
        assert!(sender.is_done());
        assert_eq!(sender.tick(), None);
    }

    #[test]
    fn digits_are_separated_by_a_gap_and_w_pauses() {
        let mut sender = DtmfSender::new("1#w2", 8000).unwrap();
        let ticks = all(&mut sender);
        let shape: String = ticks
            .iter()
            .map(|t| match t {
                DtmfTick::Event { start: true, .. } => 'S',
                DtmfTick::Event { payload, .. } if decode(payload).unwrap().end => 'E',
                DtmfTick::Event { .. } => 'u',
                DtmfTick::Pause { .. } => '.',
            })
            .collect();
        let tone = "SuuuuEEE";
        let gap = "...";
        let pause = ".".repeat(25);
        assert_eq!(shape, format!("{tone}{gap}{tone}{gap}{pause}{tone}"));
        let events: Vec<u8> = ticks
            .iter()
            .filter_map(|t| match t {
                DtmfTick::Event {
                    payload,
                    start: true,
                    ..
                } => Some(payload[0]),
                _ => None,
            })
            .collect();
        assert_eq!(events, [1, 11, 2]);
        assert_eq!(
            ticks
                .iter()
                .filter(|t| matches!(t, DtmfTick::Event { last: true, .. }))
                .count(),
            1
        );
    }

    #[test]
    fn a_trailing_pause_is_the_end() {
        let mut sender = DtmfSender::new("9w", 8000).unwrap();
        let ticks = all(&mut sender);
        assert_eq!(ticks.len(), 8 + 3 + 25);
        assert_eq!(ticks.last(), Some(&DtmfTick::Pause { last: true }));
    }

    #[test]
    fn durations_follow_the_rtp_clock() {
        let mut sender = DtmfSender::new("0", 48_000).unwrap();
        let DtmfTick::Event { payload, .. } = sender.tick().unwrap() else {
            panic!("not an event");
        };
        assert_eq!(decode(&payload).unwrap().duration, 960);
    }

    #[test]
    fn invalid_digits_are_rejected_and_empty_strings_are_done() {
        assert_eq!(
            DtmfSender::new("12x", 8000).unwrap_err(),
            DtmfError::InvalidDigit('x')
        );
        let mut empty = DtmfSender::new("", 8000).unwrap();
        assert!(empty.is_done());
        assert_eq!(empty.tick(), None);
    }

    #[test]
    fn long_tones_never_overflow_the_duration() {
        let timing = DtmfTiming {
            tone: Duration::from_secs(20),
            ..DtmfTiming::default()
        };
        let mut sender = DtmfSender::with_timing("1", 8000, timing).unwrap();
        let max = all(&mut sender)
            .iter()
            .filter_map(|t| match t {
                DtmfTick::Event { payload, .. } => Some(decode(payload).unwrap().duration),
                DtmfTick::Pause { .. } => None,
            })
            .max()
            .unwrap();
        // The longest whole number of 20 ms slots that fits in 16 bits at 8 kHz.
        assert_eq!(max, 65_440);
    }
}
