//! Fixed 3:1 resampling between the 8 kHz telephone rate and the 24 kHz model rate.
//!
//! This module owns the one low-pass filter both directions share and the streaming state
//! that keeps a call's audio continuous across frames:
//!
//! - [`Upsampler`]: 8 kHz → 24 kHz. Conceptually two zeros after every input sample, then the
//!   low-pass with a gain of 3; computed as three polyphase branches so no zero is multiplied.
//! - [`Downsampler`]: 24 kHz → 8 kHz. The low-pass, evaluated only at every third sample, as
//!   three branches over the three interleaved sub-streams of the input.
//!
//! The filter is a 91-tap Kaiser-windowed sinc at 24 kHz (cut-off 4 kHz, β = 7): flat to
//! within a few thousandths of a dB from 300 to 3400 Hz and more than 70 dB down from 4.6 kHz,
//! the image of 3.4 kHz, upwards. It is linear-phase, so each direction delays the audio by
//! exactly [`DELAY_SAMPLES_24K`] samples at 24 kHz (1.875 ms), which is also a whole number of
//! 8 kHz samples ([`DELAY_SAMPLES_8K`]).
//!
//! A 4 kHz cut-off at 24 kHz puts the sinc's zeros on every third tap, so one branch is a pure
//! delay (a third-band, or Nyquist, filter). The design keeps that exact: the upsampler passes
//! the input samples through untouched and only computes the two samples between them, and
//! the downsampler needs one multiplication for a whole third of its input. That saves a
//! third of the arithmetic in both directions. Each of the other two branches is normalised to
//! unity gain at DC, so a DC offset leaves no image at 8 kHz.
//!
//! Each resampler keeps the last samples of the previous call as filter history, so a stream
//! cut into frames of any size produces exactly the output of the unbroken stream. `process`
//! never allocates: the history and the working window are fixed-size arrays, the coefficients
//! are computed once per program run, and the arithmetic is `f32` with rounding and saturation to
//! `i16` on output.

use std::fmt;
use std::sync::LazyLock;

/// Taps of the low-pass at 24 kHz. Odd, so the delay is a whole number of samples.
const TAPS: usize = 91;
/// Delay of either direction in samples at 24 kHz: the centre of the symmetric filter.
pub const DELAY_SAMPLES_24K: usize = (TAPS - 1) / 2;
/// Delay of either direction in samples at 8 kHz.
pub const DELAY_SAMPLES_8K: usize = DELAY_SAMPLES_24K / 3;
const _: () = assert!(
    DELAY_SAMPLES_24K % 3 == 0,
    "the centre tap must fall on the pure-delay branch"
);

/// Cut-off of the low-pass: the middle of the 3.4–4.6 kHz transition band, and a sixth of
/// 24 kHz, which puts the sinc's zeros on every third tap (a third-band filter).
const CUTOFF_HZ: f64 = 4_000.0;
/// Kaiser window shape: about 72 dB of stop-band attenuation at this length.
const KAISER_BETA: f64 = 7.0;
const RATE_24K: f64 = 24_000.0;

/// Independent accumulators in a dot product: enough for the compiler to use full SIMD
/// registers and hide the latency of the additions.
const LANES: usize = 8;
/// Taps per computed branch (30 of them non-zero), padded to a multiple of [`LANES`].
const PHASE_LEN: usize = 32;
const _: () = assert!(3 * PHASE_LEN >= TAPS + 3 && PHASE_LEN % LANES == 0);

/// Samples per pass in 8 kHz terms (one 20 ms frame): input samples of the upsampler,
/// output samples of the downsampler.
const CHUNK: usize = 160;
/// Samples of history each branch keeps between passes (at 8 kHz).
const UP_HISTORY: usize = PHASE_LEN - 1;
const DOWN_HISTORY: usize = PHASE_LEN;

/// The two computed branches of the filter. Both are reversed so that index 0 multiplies
/// the oldest sample of a window and the last index the newest.
struct Kernels {
    /// Upsampler branches for output samples `3n + 1` and `3n + 2`, each with gain 3 (the
    /// zeros the upsampler skips would otherwise cost two thirds of the level).
    up: [[f32; PHASE_LEN]; 2],
    /// The same taps at the downsampler's gain: `down[0]` filters the sub-stream of input
    /// samples `3i + 2`, `down[1]` the sub-stream of samples `3i + 1`.
    down: [[f32; PHASE_LEN]; 2],
}

static KERNELS: LazyLock<Kernels> = LazyLock::new(Kernels::design);

impl Kernels {
    fn design() -> Self {
        let h = prototype();
        let mut up = [[0.0f32; PHASE_LEN]; 2];
        let mut down = [[0.0f32; PHASE_LEN]; 2];
        for (branch, (up, down)) in up.iter_mut().zip(down.iter_mut()).enumerate() {
            // Branch `p` holds taps p, p + 3, p + 6, …; newest sample × tap p.
            let phase = branch + 1;
            for i in 0..PHASE_LEN {
                let k = phase + 3 * (PHASE_LEN - 1 - i);
                let tap = h.get(k).copied().unwrap_or(0.0);
                up[i] = (3.0 * tap) as f32;
                down[i] = tap as f32;
            }
        }
        Self { up, down }
    }
}

/// The Kaiser-windowed sinc low-pass at 24 kHz, made exactly third-band: the centre tap is
/// 1/3, the other taps of its branch are 0, and the other two branches each sum to 1/3.
fn prototype() -> [f64; TAPS] {
    use std::f64::consts::PI;
    let mut h = [0.0f64; TAPS];
    let centre = DELAY_SAMPLES_24K as f64;
    let fc = CUTOFF_HZ / RATE_24K;
    let window_norm = bessel_i0(KAISER_BETA);
    for (k, c) in h.iter_mut().enumerate() {
        if k % 3 == DELAY_SAMPLES_24K % 3 {
            // The sinc's zeros, and its centre (set below).
            continue;
        }
        let t = k as f64 - centre;
        let sinc = (2.0 * PI * fc * t).sin() / (PI * t);
        let r = t / centre;
        let window = bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / window_norm;
        *c = sinc * window;
    }
    h[DELAY_SAMPLES_24K] = 1.0 / 3.0;
    for phase in [1, 2] {
        let sum: f64 = h.iter().skip(phase).step_by(3).sum();
        for c in h.iter_mut().skip(phase).step_by(3) {
            *c /= 3.0 * sum;
        }
    }
    h
}

/// Modified Bessel function of the first kind, order 0, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..64 {
        term *= q / f64::from(k * k);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// `Σ h[i]·x[i]` over `N` taps, `N` a multiple of [`LANES`].
#[inline(always)]
fn dot<const N: usize>(h: &[f32; N], x: &[f32]) -> f32 {
    let x = &x[..N];
    let mut acc = [0.0f32; LANES];
    for (hc, xc) in h.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for ((a, &hv), &xv) in acc.iter_mut().zip(hc).zip(xc) {
            *a += hv * xv;
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))
}

/// Rounds to the nearest integer (halves upwards) and saturates to the `i16` range.
#[inline(always)]
fn to_i16(x: f32) -> i16 {
    // Offset into the non-negative range so that the truncating conversion floors.
    ((x + 32_768.5).clamp(0.0, 65_535.0) as i32 - 32_768) as i16
}

/// Streaming 8 kHz → 24 kHz resampler for one audio stream.
#[derive(Clone)]
pub struct Upsampler {
    kernels: &'static Kernels,
    /// `[..UP_HISTORY]`: the last input samples of the previous pass, oldest first;
    /// then the current pass's input.
    buf: [f32; UP_HISTORY + CHUNK],
}

impl Upsampler {
    /// A resampler whose history is silence.
    pub fn new() -> Self {
        Self {
            kernels: LazyLock::force(&KERNELS),
            buf: [0.0; UP_HISTORY + CHUNK],
        }
    }

    /// Forgets the history, as at the start of a new stream.
    pub fn reset(&mut self) {
        self.buf = [0.0; UP_HISTORY + CHUNK];
    }

    /// Resamples `input` (8 kHz) into `out` (24 kHz), continuing the stream of earlier calls.
    /// Input sample `n` reappears unchanged as output sample `3n + DELAY_SAMPLES_24K`.
    ///
    /// Contract: `out.len() == 3 * input.len()`; any such length works. Otherwise only the
    /// common prefix is converted, `min(input.len(), out.len() / 3)` input samples, the
    /// remaining input is ignored (not added to the history) and the rest of `out` is set to
    /// silence.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        let n = input.len().min(out.len() / 3);
        let (out, excess) = out.split_at_mut(3 * n);
        excess.fill(0);
        let [b1, b2] = &self.kernels.up;
        for (chunk, out) in input[..n].chunks(CHUNK).zip(out.chunks_mut(3 * CHUNK)) {
            let len = chunk.len();
            for (d, &s) in self.buf[UP_HISTORY..UP_HISTORY + len].iter_mut().zip(chunk) {
                *d = f32::from(s);
            }
            // Window `i` ends with input sample `i` of this chunk.
            for (window, o) in self.buf[..UP_HISTORY + len]
                .windows(PHASE_LEN)
                .zip(out.chunks_exact_mut(3))
            {
                o[0] = to_i16(window[PHASE_LEN - 1 - DELAY_SAMPLES_8K]);
                o[1] = to_i16(dot(b1, window));
                o[2] = to_i16(dot(b2, window));
            }
            self.buf.copy_within(len..len + UP_HISTORY, 0);
        }
    }
}

impl Default for Upsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Upsampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upsampler").finish_non_exhaustive()
    }
}

/// Streaming 24 kHz → 8 kHz resampler for one audio stream.
#[derive(Clone)]
pub struct Downsampler {
    kernels: &'static Kernels,
    /// The input split into its sub-streams of samples `3i`, `3i + 1` and `3i + 2`. In each,
    /// `[..DOWN_HISTORY]` are the last samples of the previous pass, oldest first; then the
    /// current pass's input.
    streams: [[f32; DOWN_HISTORY + CHUNK]; 3],
}

impl Downsampler {
    /// A resampler whose history is silence.
    pub fn new() -> Self {
        Self {
            kernels: LazyLock::force(&KERNELS),
            streams: [[0.0; DOWN_HISTORY + CHUNK]; 3],
        }
    }

    /// Forgets the history, as at the start of a new stream.
    pub fn reset(&mut self) {
        self.streams = [[0.0; DOWN_HISTORY + CHUNK]; 3];
    }

    /// Resamples `input` (24 kHz) into `out` (8 kHz), continuing the stream of earlier calls.
    /// Output sample `m` is centred on input sample `3m - DELAY_SAMPLES_24K`.
    ///
    /// Contract: `input.len() == 3 * out.len()`; any such length works. Otherwise only the
    /// common prefix is converted, `min(out.len(), input.len() / 3)` output samples, the
    /// remaining input is ignored (not added to the history) and the rest of `out` is set to
    /// silence. Callers with a stream not cut at multiples of 3 carry the remainder to the
    /// next call themselves.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        let m = out.len().min(input.len() / 3);
        let (out, excess) = out.split_at_mut(m);
        excess.fill(0);
        let [d2, d1] = &self.kernels.down;
        let [s0, s1, s2] = &mut self.streams;
        for (chunk, out) in input[..3 * m].chunks(3 * CHUNK).zip(out.chunks_mut(CHUNK)) {
            let len = out.len();
            let new = DOWN_HISTORY..DOWN_HISTORY + len;
            for (((x, a), b), c) in chunk
                .chunks_exact(3)
                .zip(&mut s0[new.clone()])
                .zip(&mut s1[new.clone()])
                .zip(&mut s2[new])
            {
                *a = f32::from(x[0]);
                *b = f32::from(x[1]);
                *c = f32::from(x[2]);
            }
            // Output `j` of this chunk: the branch windows end with sub-stream sample `j - 1`,
            // the centre tap is sample `j - DELAY_SAMPLES_8K` of the first sub-stream.
            let centre = &s0[DOWN_HISTORY - DELAY_SAMPLES_8K..];
            for (((o, w1), w2), &c) in out
                .iter_mut()
                .zip(s1.windows(PHASE_LEN))
                .zip(s2.windows(PHASE_LEN))
                .zip(centre)
            {
                *o = to_i16(dot(d2, w2) + dot(d1, w1) + c * (1.0 / 3.0));
            }
            for s in [&mut *s0, &mut *s1, &mut *s2] {
                s.copy_within(len..len + DOWN_HISTORY, 0);
            }
        }
    }
}

impl Default for Downsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Downsampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Downsampler").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    const AMPLITUDE: f64 = 16_000.0;
    /// Telephone band edges the passband and rejection tests sweep.
    const BAND_LOW_HZ: u32 = 300;
    const BAND_HIGH_HZ: u32 = 3_400;

    fn sine(freq: f64, rate: f64, len: usize, amplitude: f64) -> Vec<i16> {
        (0..len)
            .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / rate).sin()).round() as i16)
            .collect()
    }

    /// Upsamples `input` in 20 ms frames.
    fn up_stream(input: &[i16]) -> Vec<i16> {
        let mut up = Upsampler::new();
        let mut out = vec![0; 3 * input.len()];
        for (i, o) in input.chunks(160).zip(out.chunks_mut(480)) {
            up.process(i, o);
        }
        out
    }

    /// Downsamples `input` (a multiple of 3 long) in 20 ms frames.
    fn down_stream(input: &[i16]) -> Vec<i16> {
        let mut down = Downsampler::new();
        let mut out = vec![0; input.len() / 3];
        for (i, o) in input.chunks(480).zip(out.chunks_mut(160)) {
            down.process(i, o);
        }
        out
    }

    /// Amplitude of the `freq` component of `x` (a full sine of amplitude A reads A), with a
    /// 4-term Blackman-Harris window so that strong tones elsewhere do not leak into it.
    fn amplitude(x: &[i16], rate: f64, freq: f64) -> f64 {
        let n = x.len() as f64;
        let (mut re, mut im, mut wsum) = (0.0, 0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let p = 2.0 * PI * i as f64 / (n - 1.0);
            let w =
                0.35875 - 0.48829 * p.cos() + 0.14128 * (2.0 * p).cos() - 0.01168 * (3.0 * p).cos();
            let ph = 2.0 * PI * freq * i as f64 / rate;
            re += w * f64::from(s) * ph.cos();
            im += w * f64::from(s) * ph.sin();
            wsum += w;
        }
        2.0 * (re * re + im * im).sqrt() / wsum
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    fn band() -> impl Iterator<Item = f64> {
        (BAND_LOW_HZ..=BAND_HIGH_HZ).step_by(100).map(f64::from)
    }

    #[test]
    fn filter_is_symmetric_third_band_and_unity_gain() {
        let h = prototype();
        for i in 0..TAPS {
            assert!((h[i] - h[TAPS - 1 - i]).abs() < 1e-12);
        }
        for (k, &c) in h.iter().enumerate().filter(|(k, _)| k % 3 == 0) {
            let expected = if k == DELAY_SAMPLES_24K {
                1.0 / 3.0
            } else {
                0.0
            };
            assert_eq!(c, expected, "tap {k}");
        }
        let k = &*KERNELS;
        for (up, down) in k.up.iter().zip(&k.down) {
            let sum: f32 = up.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "branch DC gain {sum}");
            let sum: f32 = down.iter().sum();
            assert!((sum - 1.0 / 3.0).abs() < 1e-5, "branch DC gain {sum}");
        }
        // The branches are each other's mirror image.
        let used = |b: &[f32; PHASE_LEN]| b[PHASE_LEN - 30..].to_vec();
        let mut mirrored = used(&k.up[0]);
        mirrored.reverse();
        assert_eq!(mirrored, used(&k.up[1]));
        assert!(
            k.up.iter()
                .all(|b| b[..PHASE_LEN - 30].iter().all(|&c| c == 0.0))
        );
    }

    #[test]
    fn upsampling_keeps_the_input_samples() {
        let x = noise(1_000);
        let y = up_stream(&x);
        for (n, &s) in x.iter().enumerate().take(x.len() - DELAY_SAMPLES_8K) {
            assert_eq!(y[3 * n + DELAY_SAMPLES_24K], s, "sample {n}");
        }
    }

    #[test]
    fn upsampling_rejects_images_by_60_db() {
        let mut worst = f64::INFINITY;
        for f in band() {
            let out = up_stream(&sine(f, 8_000.0, 4_000, AMPLITUDE));
            // Skip the start-up transient.
            let settled = &out[600..];
            let tone = amplitude(settled, 24_000.0, f);
            for image in [8_000.0 - f, 8_000.0 + f] {
                let rejection = db(tone / amplitude(settled, 24_000.0, image));
                worst = worst.min(rejection);
                assert!(
                    rejection >= 60.0,
                    "{f} Hz: image at {image} Hz {rejection:.1} dB"
                );
            }
        }
        println!("upsampling: worst image rejection {worst:.1} dB");
    }

    #[test]
    fn downsampling_rejects_aliases_by_60_db() {
        let mut worst = f64::INFINITY;
        for f in (4_600..=11_000).step_by(200).map(f64::from) {
            let out = down_stream(&sine(f, 24_000.0, 12_000, AMPLITUDE));
            // Everything left in the 8 kHz output is alias (or rounding noise).
            let rejection = db(AMPLITUDE / 2f64.sqrt() / rms(&out[200..]));
            worst = worst.min(rejection);
            assert!(rejection >= 60.0, "{f} Hz: alias {rejection:.1} dB");
        }
        println!("downsampling: worst alias rejection {worst:.1} dB");
    }

    #[test]
    fn passband_is_flat_from_300_to_3400_hz() {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for f in band() {
            let up = up_stream(&sine(f, 8_000.0, 4_000, AMPLITUDE));
            let down = down_stream(&sine(f, 24_000.0, 12_000, AMPLITUDE));
            for gain in [
                db(amplitude(&up[600..], 24_000.0, f) / AMPLITUDE),
                db(amplitude(&down[200..], 8_000.0, f) / AMPLITUDE),
            ] {
                lo = lo.min(gain);
                hi = hi.max(gain);
            }
        }
        println!("passband gain {lo:+.4} .. {hi:+.4} dB");
        assert!(lo > -0.5 && hi < 0.5, "passband {lo:.3} .. {hi:.3} dB");
    }

    #[test]
    fn delay_is_the_declared_constant_and_under_3_ms() {
        assert!(DELAY_SAMPLES_24K as f64 / 24.0 <= 3.0);
        assert_eq!(DELAY_SAMPLES_8K * 3, DELAY_SAMPLES_24K);

        let at = 50;
        let mut impulse = vec![0i16; 480];
        impulse[at] = 16_000;
        let up = up_stream(&impulse);
        let peak = argmax(&up);
        assert_eq!(peak - 3 * at, DELAY_SAMPLES_24K, "upsampler delay");

        let mut impulse = vec![0i16; 1440];
        impulse[3 * at] = 16_000;
        let down = down_stream(&impulse);
        let peak = argmax(&down);
        assert_eq!(peak - at, DELAY_SAMPLES_8K, "downsampler delay");
        println!(
            "delay per direction: {DELAY_SAMPLES_24K} samples at 24 kHz = {:.3} ms",
            DELAY_SAMPLES_24K as f64 / 24.0
        );
    }

    fn argmax(x: &[i16]) -> usize {
        x.iter()
            .enumerate()
            .max_by_key(|&(_, &s)| s)
            .map(|(i, _)| i)
            .unwrap_or(0)
    }

    /// A reproducible full-band noise (a linear congruential generator).
    fn noise(len: usize) -> Vec<i16> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 16) as i16) / 4
            })
            .collect()
    }

    #[test]
    fn round_trip_delay_by_cross_correlation() {
        let x = noise(8_000);
        let y = down_stream(&up_stream(&x));
        let corr = |lag: usize| -> f64 {
            x.iter()
                .zip(&y[lag..])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        };
        let best = (0..100)
            .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
            .unwrap_or(0);
        assert_eq!(best, 2 * DELAY_SAMPLES_8K);
    }

    /// SNR of `y` against `x` once `y` is advanced by `lag`, skipping the start-up transient.
    fn snr_db(x: &[i16], y: &[i16], lag: usize) -> f64 {
        let (mut signal, mut error) = (0.0, 0.0);
        for (&a, &b) in x[100..].iter().zip(&y[100 + lag..]) {
            signal += f64::from(a).powi(2);
            error += (f64::from(a) - f64::from(b)).powi(2);
        }
        10.0 * (signal / error).log10()
    }

    #[test]
    fn round_trip_keeps_the_tone() {
        // The 4 kHz cut-off puts the sinc's zeros on every third tap, so the branch of the
        // upsampler that lands on input instants is a pure delay. The round trip's only loss is
        // the rounding of the two in-between samples, small enough that the final rounding
        // usually restores the input exactly: the SNR can be infinite.
        for f in [1_000.0, 3_000.0] {
            let x = sine(f, 8_000.0, 8_000, AMPLITUDE);
            let y = down_stream(&up_stream(&x));
            let snr = snr_db(&x, &y, 2 * DELAY_SAMPLES_8K);
            if snr.is_infinite() {
                println!("round trip 8k -> 24k -> 8k at {f} Hz: bit-exact");
            } else {
                println!("round trip 8k -> 24k -> 8k at {f} Hz: SNR {snr:.1} dB");
            }
            assert!(snr > 60.0, "{f} Hz round-trip SNR {snr:.1} dB");
        }
    }

    #[test]
    fn any_framing_gives_the_unbroken_stream() {
        let x = noise(3_000);
        let whole_up = up_stream(&x);
        let mut up = Upsampler::new();
        let mut pieces = vec![0; whole_up.len()];
        let (mut at, mut size) = (0, 1);
        while at < x.len() {
            let end = (at + size).min(x.len());
            up.process(&x[at..end], &mut pieces[3 * at..3 * end]);
            at = end;
            size = (size * 7 + 3) % 401;
        }
        assert_eq!(pieces, whole_up);

        let whole_down = down_stream(&whole_up);
        let mut down = Downsampler::new();
        let mut pieces = vec![0; whole_down.len()];
        let (mut at, mut size) = (0, 1);
        while at < whole_down.len() {
            let end = (at + size).min(whole_down.len());
            down.process(&whole_up[3 * at..3 * end], &mut pieces[at..end]);
            at = end;
            size = (size * 5 + 2) % 347;
        }
        assert_eq!(pieces, whole_down);
    }

    #[test]
    fn reset_starts_a_fresh_stream() {
        let x = noise(480);
        let mut up = Upsampler::new();
        let mut first = vec![0; 1440];
        up.process(&x, &mut first);
        let mut again = vec![0; 1440];
        up.process(&x, &mut again);
        assert_ne!(first, again);
        up.reset();
        up.process(&x, &mut again);
        assert_eq!(first, again);

        let mut down = Downsampler::new();
        let mut first = vec![0; 160];
        down.process(&x, &mut first);
        let mut again = vec![0; 160];
        down.process(&x, &mut again);
        assert_ne!(first, again);
        down.reset();
        down.process(&x, &mut again);
        assert_eq!(first, again);
    }

    #[test]
    fn length_mismatch_converts_the_common_prefix() {
        let x = noise(160);
        let expected = up_stream(&x[..100]);
        let mut out = vec![7i16; 301];
        Upsampler::new().process(&x[..100], &mut out);
        assert_eq!(&out[..300], &expected[..]);
        assert_eq!(out[300], 0);
        let mut short = vec![7i16; 200];
        Upsampler::new().process(&x, &mut short);
        assert_eq!(&short[..198], &expected[..198]);
        assert_eq!(short[198..], [0, 0]);

        let wide = noise(482);
        let expected = down_stream(&wide[..480]);
        let mut out = vec![7i16; 161];
        Downsampler::new().process(&wide, &mut out);
        assert_eq!(&out[..160], &expected[..]);
        assert_eq!(out[160], 0);

        Upsampler::new().process(&[], &mut []);
        Downsampler::new().process(&[1, 2], &mut []);
    }

    #[test]
    fn full_scale_input_saturates_instead_of_wrapping() {
        // A full-scale square wave overshoots after filtering (Gibbs); the overshoot must clip.
        let x: Vec<i16> = (0..1_600)
            .map(|i| if (i / 8) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let up = up_stream(&x);
        assert!(up.contains(&i16::MAX) && up.contains(&i16::MIN));
        // Mid-way through each half period the sign must match the input's.
        let settled = x
            .iter()
            .enumerate()
            .take(x.len() - DELAY_SAMPLES_8K)
            .skip(40);
        for (i, &s) in settled.filter(|(i, _)| i % 8 == 4) {
            let y = up[3 * i + DELAY_SAMPLES_24K];
            assert_eq!(y > 0, s > 0, "sample {i}: {y}");
        }
        let x: Vec<i16> = (0..4_800)
            .map(|i| {
                if (i / 24) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        let down = down_stream(&x);
        assert!(down.contains(&i16::MAX) && down.contains(&i16::MIN));
        let settled = x
            .iter()
            .enumerate()
            .take(x.len() - DELAY_SAMPLES_24K)
            .skip(120);
        for (i, &s) in settled.filter(|(i, _)| i % 24 == 12 && i % 3 == 0) {
            let y = down[i / 3 + DELAY_SAMPLES_8K];
            assert_eq!(y > 0, s > 0, "sample {i}: {y}");
        }
    }

    #[test]
    fn rounding_is_to_nearest_and_saturating() {
        assert_eq!(to_i16(0.4), 0);
        assert_eq!(to_i16(0.6), 1);
        assert_eq!(to_i16(-0.4), 0);
        assert_eq!(to_i16(-0.6), -1);
        assert_eq!(to_i16(-1.5), -1);
        assert_eq!(to_i16(40_000.0), i16::MAX);
        assert_eq!(to_i16(-40_000.0), i16::MIN);
        assert_eq!(to_i16(f32::MAX), i16::MAX);
        assert_eq!(to_i16(f32::MIN), i16::MIN);
    }
}
