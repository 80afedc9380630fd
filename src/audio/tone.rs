//! Synthesised tones: DTMF digits (played in-band on legs without RFC 4733) and plain sine
//! tones (the embedded engine's chime).

use super::AudioFormat;
use super::g711;

/// Duration of one DTMF digit's tone.
pub const DTMF_TONE_MS: u64 = 100;
/// Silence after each DTMF digit.
pub const DTMF_GAP_MS: u64 = 60;
/// Silence for a `w` (wait) in a digit string, as in Twilio's `<Play digits>`.
pub const DTMF_WAIT_MS: u64 = 500;

/// Low (row) and high (column) frequencies of a DTMF digit.
pub fn dtmf_frequencies(digit: char) -> Option<(f32, f32)> {
    const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [[char; 4]; 4] = [
        ['1', '2', '3', 'A'],
        ['4', '5', '6', 'B'],
        ['7', '8', '9', 'C'],
        ['*', '0', '#', 'D'],
    ];
    let digit = digit.to_ascii_uppercase();
    KEYS.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|&k| k == digit)
            .map(|c| (ROWS[r], COLS[c]))
    })
}

/// Whether `digits` holds only DTMF digits (`0-9 * # A-D`) and `w` pauses.
pub fn is_dtmf_string(digits: &str) -> bool {
    !digits.is_empty()
        && digits
            .chars()
            .all(|c| c == 'w' || c == 'W' || dtmf_frequencies(c).is_some())
}

/// In-band DTMF for `digits` in `format`: each digit is a dual tone of [`DTMF_TONE_MS`]
/// followed by [`DTMF_GAP_MS`] of silence; `w` is [`DTMF_WAIT_MS`] of silence. Characters
/// that are neither are skipped. The result is a whole number of 20 ms frames.
pub fn dtmf(digits: &str, format: AudioFormat) -> Vec<u8> {
    let mut out = Vec::new();
    for c in digits.chars() {
        if c == 'w' || c == 'W' {
            push_tone(&mut out, &[], DTMF_WAIT_MS, 0.0, format);
        } else if let Some((low, high)) = dtmf_frequencies(c) {
            // −7 dBFS per component, a level exchanges detect reliably without clipping.
            push_tone(&mut out, &[low, high], DTMF_TONE_MS, 0.45, format);
            push_tone(&mut out, &[], DTMF_GAP_MS, 0.0, format);
        }
    }
    pad_to_frames(&mut out, format);
    out
}

/// A tone of `duration_ms` summing `freqs` at `amplitude` each (full scale = 1.0), with 5 ms
/// fades at both ends so it starts and stops without a click.
pub fn tone(freqs: &[f32], duration_ms: u64, amplitude: f32, format: AudioFormat) -> Vec<u8> {
    let mut out = Vec::new();
    push_tone(&mut out, freqs, duration_ms, amplitude, format);
    out
}

fn sample_rate(format: AudioFormat) -> u32 {
    match format {
        AudioFormat::Pcmu | AudioFormat::Pcma => 8_000,
        AudioFormat::Pcm16 => 24_000,
    }
}

fn push_tone(
    out: &mut Vec<u8>,
    freqs: &[f32],
    duration_ms: u64,
    amplitude: f32,
    format: AudioFormat,
) {
    let rate = sample_rate(format);
    let n = (u64::from(rate) * duration_ms / 1000) as usize;
    let fade = (rate as usize * 5 / 1000).max(1);
    out.reserve(n * format.bytes_per_ms() * 1000 / rate as usize);
    for i in 0..n {
        let t = i as f32 / rate as f32;
        let ramp = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
        let v: f32 = freqs
            .iter()
            .map(|f| (2.0 * std::f32::consts::PI * f * t).sin())
            .sum::<f32>()
            * amplitude
            * ramp;
        let s = (v * f32::from(i16::MAX)).clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
        match format {
            AudioFormat::Pcmu => out.push(g711::ulaw_encode(s)),
            AudioFormat::Pcma => out.push(g711::alaw_encode(s)),
            AudioFormat::Pcm16 => out.extend_from_slice(&s.to_le_bytes()),
        }
    }
}

fn pad_to_frames(out: &mut Vec<u8>, format: AudioFormat) {
    let frame = format.frame_bytes();
    let rem = out.len() % frame;
    if rem != 0 {
        let silence = format.silence_frame();
        out.extend_from_slice(&silence[..frame - rem]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power of `freq` in `samples` (Goertzel), relative to a full-scale sine.
    fn goertzel(samples: &[f32], rate: f32, freq: f32) -> f32 {
        let w = 2.0 * std::f32::consts::PI * freq / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &x in samples {
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        power / (samples.len() as f32 * samples.len() as f32 / 4.0)
    }

    fn decode_ulaw(bytes: &[u8]) -> Vec<f32> {
        bytes
            .iter()
            .map(|&b| f32::from(g711::ulaw_decode(b)) / 32768.0)
            .collect()
    }

    #[test]
    fn every_digit_has_its_two_frequencies_and_no_others() {
        let all = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
        for digit in "0123456789*#ABCD".chars() {
            let (low, high) = dtmf_frequencies(digit).unwrap();
            let audio = dtmf(&digit.to_string(), AudioFormat::Pcmu);
            let tone = &decode_ulaw(&audio)[..(8 * DTMF_TONE_MS) as usize];
            for f in all {
                let p = goertzel(tone, 8000.0, f);
                if f == low || f == high {
                    assert!(p > 0.1, "digit {digit}: {f} Hz power {p}");
                } else {
                    assert!(p < 0.01, "digit {digit}: stray {f} Hz power {p}");
                }
            }
        }
    }

    #[test]
    fn digits_are_timed_and_framed() {
        let audio = dtmf("12w3", AudioFormat::Pcmu);
        let expected_ms = 3 * (DTMF_TONE_MS + DTMF_GAP_MS) + DTMF_WAIT_MS;
        let frame_ms = AudioFormat::Pcmu.ms_of(audio.len());
        assert!(frame_ms >= expected_ms && frame_ms < expected_ms + 20);
        assert_eq!(audio.len() % AudioFormat::Pcmu.frame_bytes(), 0);
        let pcm16 = dtmf("1", AudioFormat::Pcm16);
        assert_eq!(pcm16.len() % AudioFormat::Pcm16.frame_bytes(), 0);
        assert_eq!(AudioFormat::Pcm16.ms_of(pcm16.len()), 160);
    }

    #[test]
    fn validates_digit_strings() {
        assert!(is_dtmf_string("123#*w9"));
        assert!(!is_dtmf_string(""));
        assert!(!is_dtmf_string("12x"));
    }
}
