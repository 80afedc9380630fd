//! G.711 µ-law and A-law (ITU-T G.711) to and from 16-bit linear PCM.
//!
//! µ-law encoding follows the Reese/Campbell reference (sign-magnitude: `x = -x` for negative
//! input), the convention of the protocol notes' test vectors. The ITU-T G.191 code takes
//! negative input in one's complement instead and picks the neighbouring code on 127 exact
//! decision levels; both are legitimate, and the tests check that ours is never the worse
//! quantisation. A-law follows Sun's g711.c and is bit-exact with G.191. Decoding uses 256-entry
//! tables built at compile time; encoding is a handful of integer operations per sample.

/// µ-law code for digital silence (+0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law code for digital silence (+8).
pub const ALAW_SILENCE: u8 = 0xD5;

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Encodes one PCM16 sample to µ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (sign, mag) = if s < 0 { (0x00, -s) } else { (0x80, s) };
    let mag = mag.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment = position of the highest set bit among bits 7..=14.
    let exponent = (31 - (mag as u32 | 0x7F).leading_zeros() - 7) as i32;
    let mantissa = (mag >> (exponent + 3)) & 0x0F;
    !((exponent << 4) | mantissa) as u8 & 0x7F | sign
}

/// Decodes one µ-law code to PCM16.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Encodes one PCM16 sample to A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3;
    let (mask, p) = if s >= 0 { (0xD5, s) } else { (0x55, -s - 1) };
    // Segment: number of significant bits above the 5 low ones.
    let seg = if p <= 0x1F {
        0
    } else {
        (32 - (p as u32).leading_zeros()) as i32 - 5
    };
    let code = if seg >= 8 {
        0x7F
    } else {
        let shift = if seg < 2 { 1 } else { seg };
        (seg << 4) | ((p >> shift) & 0x0F)
    };
    (code ^ mask) as u8
}

/// Decodes one A-law code to PCM16.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

const fn ulaw_decode_calc(code: u8) -> i16 {
    let b = !code;
    let exponent = ((b >> 4) & 0x07) as i32;
    let mantissa = (b & 0x0F) as i32;
    let mag = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if b & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

const fn alaw_decode_calc(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

static ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode_calc(i as u8);
        i += 1;
    }
    table
};

static ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_calc(i as u8);
        i += 1;
    }
    table
};

/// Encodes PCM16 samples to µ-law; `out` must be as long as `pcm`.
pub fn ulaw_encode_slice(pcm: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = ulaw_encode(s);
    }
}

/// Decodes µ-law to PCM16; `out` must be as long as `codes`.
pub fn ulaw_decode_slice(codes: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ulaw_decode(c);
    }
}

/// Encodes PCM16 samples to A-law; `out` must be as long as `pcm`.
pub fn alaw_encode_slice(pcm: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = alaw_encode(s);
    }
}

/// Decodes A-law to PCM16; `out` must be as long as `codes`.
pub fn alaw_decode_slice(codes: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = alaw_decode(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference vectors from the protocol notes (sip-rtp.md §13).
    const VECTORS: [(i16, u8, i16, u8, i16); 8] = [
        (0, 0xFF, 0, 0xD5, 8),
        (-1, 0x7F, 0, 0x55, -8),
        (100, 0xF2, 104, 0xD3, 104),
        (-100, 0x72, -104, 0x53, -104),
        (1000, 0xCE, 988, 0xFA, 1008),
        (8000, 0xA0, 7932, 0x8A, 8064),
        (32767, 0x80, 32124, 0xAA, 32256),
        (-32768, 0x00, -32124, 0x2A, -32256),
    ];

    #[test]
    fn reference_vectors() {
        for (x, mu, mu_dec, a, a_dec) in VECTORS {
            assert_eq!(ulaw_encode(x), mu, "µ-law encode {x}");
            assert_eq!(ulaw_decode(mu), mu_dec, "µ-law decode {mu:#x}");
            assert_eq!(alaw_encode(x), a, "A-law encode {x}");
            assert_eq!(alaw_decode(a), a_dec, "A-law decode {a:#x}");
        }
    }

    #[test]
    fn all_codes_round_trip() {
        for code in 0..=255u8 {
            let mu = ulaw_decode(code);
            // µ-law has two zeros (0xFF and 0x7F): both decode to 0, which encodes as 0xFF.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(ulaw_encode(mu), expected, "µ-law code {code:#x}");
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law code {code:#x}");
        }
    }

    #[test]
    fn matches_reference_crate_on_all_inputs() {
        use audio_codec_algorithms as oracle;
        let mut differences = 0;
        for x in i16::MIN..=i16::MAX {
            assert_eq!(alaw_encode(x), oracle::encode_alaw(x), "A-law encode {x}");
            let (ours, theirs) = (ulaw_encode(x), oracle::encode_ulaw(x));
            if x >= 0 {
                assert_eq!(ours, theirs, "µ-law encode {x}");
            } else {
                // G.191 quantises the magnitude -x-1 where Reese/Campbell quantises -x.
                let expected = if x == -1 { 0x7F } else { ulaw_encode(x + 1) };
                assert_eq!(theirs, expected, "µ-law encode {x}");
                differences += usize::from(ours != theirs);
            }
        }
        // The conventions part only on exact decision levels.
        assert!(
            differences > 0 && differences < 400,
            "{differences} µ-law differences"
        );
        for code in 0..=255u8 {
            assert_eq!(ulaw_decode(code), oracle::decode_ulaw(code));
            assert_eq!(alaw_decode(code), oracle::decode_alaw(code));
        }
    }

    #[test]
    fn decode_is_monotonic_in_magnitude() {
        // Within each sign, larger codes' magnitudes order strictly; a cheap structural check.
        let mut mags: Vec<i32> = (0..128u8).map(|c| i32::from(ulaw_decode(c))).collect();
        mags.dedup();
        assert_eq!(mags.len(), 128);
    }
}
