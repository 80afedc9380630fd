//! Audio: pure DSP with no I/O, no clock and no allocation per frame.
//!
//! - [`g711`]: µ-law and A-law to and from PCM16.
//! - [`resample`]: 8 kHz ↔ 24 kHz for 20 ms frames.
//! - [`transcode`]: leg format ↔ model format for one call, pass-through when they agree.
//! - [`tone`]: DTMF and sine tones.
//! - [`AudioFormat`]: the three formats a call can carry (the Realtime API's `audio/pcmu`,
//!   `audio/pcma` and `audio/pcm` at 24 kHz) and their framing.

pub mod g711;
pub mod resample;
pub mod tone;
pub mod transcode;

use crate::realtime::event::AudioFormatSpec;

/// Duration of one media frame.
pub const FRAME_MS: u64 = 20;

/// An audio encoding on one side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// G.711 µ-law, 8 kHz mono.
    Pcmu,
    /// G.711 A-law, 8 kHz mono.
    Pcma,
    /// PCM16 little-endian, 24 kHz mono.
    Pcm16,
}

impl AudioFormat {
    /// Bytes of audio per millisecond.
    pub const fn bytes_per_ms(self) -> usize {
        match self {
            Self::Pcmu | Self::Pcma => 8,
            Self::Pcm16 => 48,
        }
    }

    /// Bytes in one 20 ms frame.
    pub const fn frame_bytes(self) -> usize {
        self.bytes_per_ms() * FRAME_MS as usize
    }

    /// Whole milliseconds of audio in `bytes` bytes (rounded down).
    pub const fn ms_of(self, bytes: usize) -> u64 {
        (bytes / self.bytes_per_ms()) as u64
    }

    /// The byte value (or byte pair) that encodes digital silence.
    pub fn silence_frame(self) -> Vec<u8> {
        match self {
            Self::Pcmu => vec![g711::ULAW_SILENCE; self.frame_bytes()],
            Self::Pcma => vec![g711::ALAW_SILENCE; self.frame_bytes()],
            Self::Pcm16 => vec![0; self.frame_bytes()],
        }
    }

    /// The Realtime API's name for this format.
    pub const fn spec(self) -> AudioFormatSpec {
        match self {
            Self::Pcmu => AudioFormatSpec::Pcmu,
            Self::Pcma => AudioFormatSpec::Pcma,
            Self::Pcm16 => AudioFormatSpec::Pcm { rate: 24_000 },
        }
    }

    /// The format named by a Realtime API format object, if it is one we carry.
    pub const fn from_spec(spec: AudioFormatSpec) -> Option<Self> {
        match spec {
            AudioFormatSpec::Pcmu => Some(Self::Pcmu),
            AudioFormatSpec::Pcma => Some(Self::Pcma),
            AudioFormatSpec::Pcm { rate: 24_000 } => Some(Self::Pcm16),
            AudioFormatSpec::Pcm { .. } => None,
        }
    }

    /// Short lowercase name, as used in dialplans: `pcmu`, `pcma`, `pcm16`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "pcmu",
            Self::Pcma => "pcma",
            Self::Pcm16 => "pcm16",
        }
    }
}
