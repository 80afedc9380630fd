//! Whole-buffer audio conversion for the engine: decoding the caller's audio to PCM16 (for the
//! VAD and the kept turn) and turning a kept turn into the session's output format (the echo).

use crate::audio::transcode::Transcoder;
use crate::audio::{AudioFormat, g711};

/// Samples per second of `format`.
pub(crate) const fn sample_rate(format: AudioFormat) -> u32 {
    match format {
        AudioFormat::Pcmu | AudioFormat::Pcma => 8_000,
        AudioFormat::Pcm16 => 24_000,
    }
}

/// Decodes `bytes` of `format` to PCM16, appending to `out`. For PCM16 a trailing odd byte is
/// ignored; the caller carries it over to the next buffer.
pub(crate) fn decode(format: AudioFormat, bytes: &[u8], out: &mut Vec<i16>) {
    match format {
        AudioFormat::Pcmu => out.extend(bytes.iter().map(|&b| g711::ulaw_decode(b))),
        AudioFormat::Pcma => out.extend(bytes.iter().map(|&b| g711::alaw_decode(b))),
        AudioFormat::Pcm16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
        ),
    }
}

/// Encodes PCM16 `samples` (already at the rate of `format`) in `format`.
pub(crate) fn encode(format: AudioFormat, samples: &[i16]) -> Vec<u8> {
    match format {
        AudioFormat::Pcmu => samples.iter().map(|&s| g711::ulaw_encode(s)).collect(),
        AudioFormat::Pcma => samples.iter().map(|&s| g711::alaw_encode(s)).collect(),
        AudioFormat::Pcm16 => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
    }
}

/// PCM16 `samples` of audio that arrived in `from` (so at its sample rate), as audio in
/// `to`. The rate change uses the call transcoder's resamplers, started afresh for the
/// buffer; it delays the audio by the filters' few samples and keeps its length.
pub(crate) fn to_format(samples: &[i16], from: AudioFormat, to: AudioFormat) -> Vec<u8> {
    let mut out = Vec::new();
    Transcoder::new(to, from).to_leg(&encode(from, samples), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_duration() {
        let pcm: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
        let wide = to_format(&pcm, AudioFormat::Pcmu, AudioFormat::Pcm16);
        assert_eq!(wide.len(), 960);
        let mut up = Vec::new();
        decode(AudioFormat::Pcm16, &wide, &mut up);
        assert_eq!(
            to_format(&up, AudioFormat::Pcm16, AudioFormat::Pcma).len(),
            160
        );
        assert_eq!(
            to_format(&pcm, AudioFormat::Pcmu, AudioFormat::Pcma).len(),
            160
        );
    }

    #[test]
    fn same_format_is_exact() {
        let codes: Vec<u8> = (0..=255).collect();
        let mut pcm = Vec::new();
        decode(AudioFormat::Pcma, &codes, &mut pcm);
        assert_eq!(to_format(&pcm, AudioFormat::Pcma, AudioFormat::Pcma), codes);
    }

    #[test]
    fn pcm16_round_trips_and_ignores_odd_byte() {
        let bytes = encode(AudioFormat::Pcm16, &[1, -2, 300]);
        let mut out = Vec::new();
        decode(AudioFormat::Pcm16, &[&bytes[..], &[7]].concat(), &mut out);
        assert_eq!(out, vec![1, -2, 300]);
    }
}
