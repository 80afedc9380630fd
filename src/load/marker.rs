//! The latency marker the load model puts at the start of the first audio delta of every
//! response: 8 magic bytes, then the send time as little-endian microseconds since the UNIX
//! epoch. µ-law audio passes through the bridge byte for byte, so the simulated caller finds the
//! marker in what it is sent and knows how long the audio took from the model to the caller.
//! PCM16 audio is resampled by the bridge, which destroys the marker; PCM16 runs carry none.

use std::time::{SystemTime, UNIX_EPOCH};

/// The first 8 bytes of a marker.
pub const MAGIC: [u8; 8] = *b"DTLATNCY";

/// Bytes in a marker: the magic and the time.
pub const LEN: usize = 16;

/// The wall clock in microseconds since the UNIX epoch (0 for a clock set before 1970).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A marker carrying `micros`.
pub fn encode(micros: u64) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..].copy_from_slice(&micros.to_le_bytes());
    out
}

/// The time carried by a marker at the start of `bytes`, if there is one.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    let marker = bytes.get(..LEN)?;
    if marker[..8] != MAGIC {
        return None;
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&marker[8..]);
    Some(u64::from_le_bytes(time))
}

/// The time carried by the first marker anywhere in `bytes`. A marker split across two
/// payloads is not found; with `--delta-ms` a multiple of 20 it never is (the bridge sends
/// Twilio whole 20 ms frames, and a response's first delta starts a frame).
pub fn find(bytes: &[u8]) -> Option<u64> {
    let last = bytes.len().checked_sub(LEN)?;
    (0..=last)
        .filter(|&i| bytes[i] == MAGIC[0])
        .find_map(|i| decode(&bytes[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = 1_767_225_600_123_456;
        let marker = encode(t);
        assert_eq!(&marker[..8], b"DTLATNCY");
        assert_eq!(decode(&marker), Some(t));
        assert_eq!(u64::from_le_bytes(marker[8..].try_into().unwrap()), t);
    }

    #[test]
    fn short_or_foreign_bytes_are_not_markers() {
        assert_eq!(decode(&encode(7)[..LEN - 1]), None);
        assert_eq!(decode(&[0x55; 160]), None);
        let mut bent = encode(7);
        bent[3] ^= 1;
        assert_eq!(decode(&bent), None);
    }

    #[test]
    fn found_anywhere_in_a_payload() {
        let mut frame = vec![0x55u8; 160];
        assert_eq!(find(&frame), None);
        frame[40..56].copy_from_slice(&encode(42));
        assert_eq!(find(&frame), Some(42));
        // At the very end, and cut short by the end.
        let mut tail = vec![0x44u8; 20];
        tail.extend_from_slice(&encode(9));
        assert_eq!(find(&tail), Some(9));
        assert_eq!(find(&tail[..tail.len() - 1]), None);
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(now_micros() > 1_577_836_800_000_000);
    }
}
