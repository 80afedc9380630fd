//! Per-call conversion between the leg's audio format and the model's.
//!
//! A [`Transcoder`] owns everything one call needs to turn the caller's audio into the model's
//! input format and the model's output back into the caller's format: the two resamplers, the
//! scratch buffers, and the bytes and samples a direction has to carry from one chunk to the
//! next. Each direction is its own stream with its own state, so calls for the two directions
//! may interleave in any order.
//!
//! | leg ↔ model | conversion |
//! |---|---|
//! | same format | copy |
//! | µ-law ↔ A-law | one 256-entry table per direction (decode to PCM16 at 8 kHz, re-encode) |
//! | G.711 8 kHz → PCM16 24 kHz | decode, [`Upsampler`], little-endian bytes |
//! | PCM16 24 kHz → G.711 8 kHz | little-endian samples, [`Downsampler`], encode |
//!
//! PCM16 input may arrive cut anywhere: an odd trailing byte, and samples beyond a multiple
//! of three (one 8 kHz sample's worth), are kept and put in front of the next chunk. Outputs
//! are written into caller-owned `Vec`s whose capacity is reused, so a warm transcoder does
//! not allocate.

use std::sync::LazyLock;

use super::AudioFormat;
use super::g711;
use super::resample::{Downsampler, Upsampler};

/// Converts one call's audio between its leg format and its model format, both ways.
#[derive(Debug, Clone)]
pub struct Transcoder {
    leg: AudioFormat,
    model: AudioFormat,
    to_model: Direction,
    to_leg: Direction,
}

impl Transcoder {
    /// A transcoder for a call whose leg carries `leg` and whose model session uses `model`.
    pub fn new(leg: AudioFormat, model: AudioFormat) -> Self {
        Self {
            leg,
            model,
            to_model: Direction::new(leg, model),
            to_leg: Direction::new(model, leg),
        }
    }

    /// The leg's format.
    pub fn leg(&self) -> AudioFormat {
        self.leg
    }

    /// The model's format.
    pub fn model(&self) -> AudioFormat {
        self.model
    }

    /// Whether both sides use the same format, so audio is copied unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.leg == self.model
    }

    /// Converts audio from the leg into the model's format. `out` is cleared and filled.
    pub fn to_model(&mut self, leg_audio: &[u8], out: &mut Vec<u8>) {
        self.to_model.convert(leg_audio, out);
    }

    /// Converts audio from the model into the leg's format. `out` is cleared and filled.
    pub fn to_leg(&mut self, model_audio: &[u8], out: &mut Vec<u8>) {
        self.to_leg.convert(model_audio, out);
    }

    /// Starts the leg-to-model stream afresh: forgets filter history and carried input.
    pub fn reset_to_model(&mut self) {
        self.to_model.reset();
    }

    /// Starts the model-to-leg stream afresh: forgets filter history and carried input, as
    /// when the model's playback is cut off and what follows is a new utterance.
    pub fn reset_to_leg(&mut self) {
        self.to_leg.reset();
    }
}

/// One G.711 companding law.
#[derive(Debug, Clone, Copy)]
enum Law {
    Ulaw,
    Alaw,
}

impl Law {
    fn of(format: AudioFormat) -> Option<Self> {
        match format {
            AudioFormat::Pcmu => Some(Self::Ulaw),
            AudioFormat::Pcma => Some(Self::Alaw),
            AudioFormat::Pcm16 => None,
        }
    }

    fn decode(self, codes: &[u8], out: &mut [i16]) {
        match self {
            Self::Ulaw => g711::ulaw_decode_slice(codes, out),
            Self::Alaw => g711::alaw_decode_slice(codes, out),
        }
    }

    fn encode(self, pcm: &[i16], out: &mut [u8]) {
        match self {
            Self::Ulaw => g711::ulaw_encode_slice(pcm, out),
            Self::Alaw => g711::alaw_encode_slice(pcm, out),
        }
    }
}

/// µ-law code → A-law code of the same PCM16 value.
static ULAW_TO_ALAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| recode_table(g711::ulaw_decode, g711::alaw_encode));
/// A-law code → µ-law code of the same PCM16 value.
static ALAW_TO_ULAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| recode_table(g711::alaw_decode, g711::ulaw_encode));

fn recode_table(decode: fn(u8) -> i16, encode: fn(i16) -> u8) -> [u8; 256] {
    let mut table = [0u8; 256];
    for (code, out) in (0..=u8::MAX).zip(table.iter_mut()) {
        *out = encode(decode(code));
    }
    table
}

/// One direction of a call's conversion, with its streaming state.
#[derive(Debug, Clone)]
enum Direction {
    /// Same format on both sides.
    Copy,
    /// G.711 to the other law, byte by byte.
    Recode(&'static [u8; 256]),
    /// G.711 at 8 kHz to PCM16 at 24 kHz.
    Up {
        law: Law,
        up: Box<Upsampler>,
        narrow: Vec<i16>,
        wide: Vec<i16>,
    },
    /// PCM16 at 24 kHz to G.711 at 8 kHz.
    Down {
        law: Law,
        down: Box<Downsampler>,
        carry: Carry,
        wide: Vec<i16>,
        narrow: Vec<i16>,
    },
}

impl Direction {
    fn new(from: AudioFormat, to: AudioFormat) -> Self {
        match (Law::of(from), Law::of(to)) {
            _ if from == to => Self::Copy,
            (Some(Law::Ulaw), Some(_)) => Self::Recode(LazyLock::force(&ULAW_TO_ALAW)),
            (Some(Law::Alaw), Some(_)) => Self::Recode(LazyLock::force(&ALAW_TO_ULAW)),
            (Some(law), None) => Self::Up {
                law,
                up: Box::default(),
                narrow: Vec::new(),
                wide: Vec::new(),
            },
            (None, Some(law)) => Self::Down {
                law,
                down: Box::default(),
                carry: Carry::default(),
                wide: Vec::new(),
                narrow: Vec::new(),
            },
            // Two PCM16 sides are the same format, handled by the first arm.
            (None, None) => Self::Copy,
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Copy | Self::Recode(_) => {}
            Self::Up { up, .. } => up.reset(),
            Self::Down { down, carry, .. } => {
                down.reset();
                *carry = Carry::default();
            }
        }
    }

    fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        match self {
            Self::Copy => out.extend_from_slice(input),
            Self::Recode(table) => out.extend(input.iter().map(|&b| table[usize::from(b)])),
            Self::Up {
                law,
                up,
                narrow,
                wide,
            } => {
                narrow.clear();
                narrow.resize(input.len(), 0);
                law.decode(input, narrow);
                wide.clear();
                wide.resize(3 * narrow.len(), 0);
                up.process(narrow, wide);
                out.resize(2 * wide.len(), 0);
                for (bytes, &s) in out.chunks_exact_mut(2).zip(wide.iter()) {
                    bytes.copy_from_slice(&s.to_le_bytes());
                }
            }
            Self::Down {
                law,
                down,
                carry,
                wide,
                narrow,
            } => {
                carry.gather(input, wide);
                narrow.clear();
                narrow.resize(wide.len() / 3, 0);
                down.process(wide, narrow);
                out.resize(narrow.len(), 0);
                law.encode(narrow, out);
            }
        }
    }
}

/// PCM16 input not yet converted: an odd trailing byte and up to two whole samples short of
/// a multiple of three.
#[derive(Debug, Clone, Copy, Default)]
struct Carry {
    samples: [i16; 2],
    len: usize,
    odd_byte: Option<u8>,
}

impl Carry {
    /// Replaces `wide` with the carried samples followed by `bytes` as little-endian samples,
    /// truncated to a multiple of three; what is left over is carried again.
    fn gather(&mut self, bytes: &[u8], wide: &mut Vec<i16>) {
        wide.clear();
        wide.extend_from_slice(&self.samples[..self.len]);
        let mut bytes = bytes;
        if let Some(low) = self.odd_byte {
            if let Some((&high, rest)) = bytes.split_first() {
                wide.push(i16::from_le_bytes([low, high]));
                bytes = rest;
                self.odd_byte = None;
            }
        }
        let pairs = bytes.chunks_exact(2);
        if let [last] = pairs.remainder() {
            self.odd_byte = Some(*last);
        }
        wide.extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
        let whole = wide.len() - wide.len() % 3;
        self.len = wide.len() - whole;
        self.samples[..self.len].copy_from_slice(&wide[whole..]);
        wide.truncate(whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::resample::DELAY_SAMPLES_8K;
    use std::f64::consts::PI;

    const FORMATS: [AudioFormat; 3] = [AudioFormat::Pcmu, AudioFormat::Pcma, AudioFormat::Pcm16];

    fn sine_8k(freq: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| (16_000.0 * (2.0 * PI * freq * i as f64 / 8_000.0).sin()).round() as i16)
            .collect()
    }

    fn encode(format: AudioFormat, pcm: &[i16]) -> Vec<u8> {
        match format {
            AudioFormat::Pcmu => pcm.iter().map(|&s| g711::ulaw_encode(s)).collect(),
            AudioFormat::Pcma => pcm.iter().map(|&s| g711::alaw_encode(s)).collect(),
            AudioFormat::Pcm16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        }
    }

    fn decode(format: AudioFormat, bytes: &[u8]) -> Vec<i16> {
        match format {
            AudioFormat::Pcmu => bytes.iter().map(|&b| g711::ulaw_decode(b)).collect(),
            AudioFormat::Pcma => bytes.iter().map(|&b| g711::alaw_decode(b)).collect(),
            AudioFormat::Pcm16 => bytes
                .chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]]))
                .collect(),
        }
    }

    /// SNR of `y` against `x` once `y` is advanced by `lag`, skipping the first 20 ms.
    fn snr_db(x: &[i16], y: &[i16], lag: usize) -> f64 {
        let (mut signal, mut error) = (0.0, 0.0);
        for (&a, &b) in x[160..].iter().zip(&y[160 + lag..]) {
            signal += f64::from(a).powi(2);
            error += (f64::from(a) - f64::from(b)).powi(2);
        }
        10.0 * (signal / error).log10()
    }

    #[test]
    fn equal_formats_pass_through_byte_identical() {
        let bytes: Vec<u8> = (0..=255).cycle().take(1_001).collect();
        for format in FORMATS {
            let mut t = Transcoder::new(format, format);
            assert!(t.is_passthrough());
            let mut out = Vec::new();
            t.to_model(&bytes, &mut out);
            assert_eq!(out, bytes);
            t.to_leg(&bytes[..7], &mut out);
            assert_eq!(out, &bytes[..7]);
        }
        assert!(!Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16).is_passthrough());
    }

    #[test]
    fn frame_lengths_follow_the_formats() {
        for leg in FORMATS {
            for model in FORMATS {
                let mut t = Transcoder::new(leg, model);
                let mut out = Vec::new();
                t.to_model(&leg.silence_frame(), &mut out);
                assert_eq!(out.len(), model.frame_bytes(), "{leg:?} -> {model:?}");
                t.to_leg(&model.silence_frame(), &mut out);
                assert_eq!(out.len(), leg.frame_bytes(), "{model:?} -> {leg:?}");
            }
        }
        let mut t = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16);
        let mut out = Vec::new();
        t.to_model(&[g711::ULAW_SILENCE; 160], &mut out);
        assert_eq!(out.len(), 960);
        t.to_model(&[g711::ULAW_SILENCE; 7], &mut out);
        assert_eq!(out.len(), 42);
        t.to_model(&[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn g711_through_pcm16_and_back_keeps_a_1_khz_tone() {
        // At exactly 1 kHz every period is the same 8 samples; 1011 Hz visits many more
        // companding steps.
        for (law, freq) in [AudioFormat::Pcmu, AudioFormat::Pcma]
            .into_iter()
            .flat_map(|law| [(law, 1_000.0), (law, 1_011.0)])
        {
            let pcm = sine_8k(freq, 8_000);
            let leg_in = encode(law, &pcm);
            let mut t = Transcoder::new(law, AudioFormat::Pcm16);
            let (mut model, mut leg, mut back) = (Vec::new(), Vec::new(), Vec::new());
            for frame in leg_in.chunks(160) {
                t.to_model(frame, &mut model);
                assert_eq!(model.len(), 6 * frame.len());
                t.to_leg(&model, &mut leg);
                back.extend_from_slice(&leg);
            }
            let lag = 2 * DELAY_SAMPLES_8K;
            let snr = snr_db(&pcm, &decode(law, &back), lag);
            let companding = snr_db(&pcm, &decode(law, &leg_in), 0);
            println!(
                "{law:?} -> PCM16 24k -> {law:?} at {freq} Hz: SNR {snr:.1} dB \
                 (one companding alone: {companding:.1} dB)"
            );
            assert!(snr > 30.0, "{law:?} round trip SNR {snr:.1} dB");
        }
    }

    #[test]
    fn pcm16_leg_to_g711_model_and_back() {
        let pcm8 = sine_8k(1_000.0, 1_600);
        let mut t = Transcoder::new(AudioFormat::Pcm16, AudioFormat::Pcmu);
        let mut wide = Vec::new();
        let mut narrow = Vec::new();
        let mut back = Vec::new();
        // The model sends µ-law; the leg hears PCM16 at 24 kHz, which the model hears back.
        let mut up = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16);
        for frame in encode(AudioFormat::Pcmu, &pcm8).chunks(160) {
            up.to_model(frame, &mut wide);
            t.to_model(&wide, &mut narrow);
            assert_eq!(narrow.len(), 160);
            back.extend_from_slice(&narrow);
        }
        let snr = snr_db(
            &pcm8,
            &decode(AudioFormat::Pcmu, &back),
            2 * DELAY_SAMPLES_8K,
        );
        assert!(snr > 30.0, "SNR {snr:.1} dB");
        t.to_leg(&narrow, &mut wide);
        assert_eq!(wide.len(), 960);
    }

    #[test]
    fn ulaw_and_alaw_convert_through_pcm16() {
        let pcm = sine_8k(1_000.0, 800);
        let ulaw = encode(AudioFormat::Pcmu, &pcm);
        let mut t = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcma);
        let mut alaw = Vec::new();
        t.to_model(&ulaw, &mut alaw);
        let expected: Vec<u8> = ulaw
            .iter()
            .map(|&b| g711::alaw_encode(g711::ulaw_decode(b)))
            .collect();
        assert_eq!(alaw, expected);
        assert!(snr_db(&pcm, &decode(AudioFormat::Pcma, &alaw), 0) > 30.0);
        let mut again = Vec::new();
        t.to_leg(&alaw, &mut again);
        assert!(snr_db(&pcm, &decode(AudioFormat::Pcmu, &again), 0) > 30.0);
    }

    /// The whole stream converted in one call, to compare cut-up conversions against.
    fn one_shot(model_audio: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16).to_leg(model_audio, &mut out);
        out
    }

    #[test]
    fn odd_bytes_and_partial_triples_are_carried() {
        let pcm8 = sine_8k(700.0, 800);
        let mut up = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16);
        let mut model_audio = Vec::new();
        up.to_model(&encode(AudioFormat::Pcmu, &pcm8), &mut model_audio);
        let expected = one_shot(&model_audio);
        assert_eq!(expected.len(), 800);

        for cut in [1, 2, 3, 5, 7, 959, 961] {
            let mut t = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16);
            let (mut out, mut all) = (Vec::new(), Vec::new());
            for piece in model_audio.chunks(cut) {
                t.to_leg(piece, &mut out);
                all.extend_from_slice(&out);
            }
            assert_eq!(all, expected, "pieces of {cut} bytes");
        }
    }

    #[test]
    fn a_lone_byte_waits_for_its_pair() {
        let mut t = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16);
        let mut out = Vec::new();
        let sample = 1_000i16.to_le_bytes();
        t.to_leg(&sample[..1], &mut out);
        assert!(out.is_empty());
        t.to_leg(&[], &mut out);
        assert!(out.is_empty());
        t.to_leg(&sample[1..], &mut out);
        assert!(out.is_empty());
        t.to_leg(&[sample[0], sample[1], sample[0], sample[1]], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out, one_shot(&sample.repeat(3)));
    }

    #[test]
    fn reset_drops_carried_input() {
        let mut t = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16);
        let mut out = Vec::new();
        t.to_leg(&[0x12, 0x34, 0x56], &mut out);
        t.reset_to_leg();
        let frame = AudioFormat::Pcm16.silence_frame();
        t.to_leg(&frame, &mut out);
        assert_eq!(out, vec![g711::ULAW_SILENCE; 160]);
        t.reset_to_model();
    }

    #[test]
    fn warm_transcoder_does_not_reallocate() {
        for (leg, model) in [
            (AudioFormat::Pcmu, AudioFormat::Pcm16),
            (AudioFormat::Pcma, AudioFormat::Pcm16),
            (AudioFormat::Pcmu, AudioFormat::Pcma),
            (AudioFormat::Pcm16, AudioFormat::Pcmu),
        ] {
            let mut t = Transcoder::new(leg, model);
            let (leg_frame, model_frame) = (leg.silence_frame(), model.silence_frame());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            t.to_model(&leg_frame, &mut a);
            t.to_leg(&model_frame, &mut b);
            let before = (a.as_ptr(), b.as_ptr(), scratch(&t));
            for _ in 0..10 {
                t.to_model(&leg_frame, &mut a);
                t.to_leg(&model_frame, &mut b);
            }
            assert_eq!((a.as_ptr(), b.as_ptr(), scratch(&t)), before);
        }
    }

    /// Addresses of the transcoder's scratch buffers.
    fn scratch(t: &Transcoder) -> Vec<*const i16> {
        [&t.to_model, &t.to_leg]
            .into_iter()
            .flat_map(|d| match d {
                Direction::Up { narrow, wide, .. } | Direction::Down { narrow, wide, .. } => {
                    vec![narrow.as_ptr(), wide.as_ptr()]
                }
                Direction::Copy | Direction::Recode(_) => Vec::new(),
            })
            .collect()
    }
}
