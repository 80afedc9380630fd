//! DTMF as RFC 4733 telephone events: the 4-byte payload, the digit ↔ event mapping, and the
//! two sans-IO state machines built on them.
//!
//! - [`DtmfReceiver`]: turns a stream of event packets into one digit per key press.
//! - [`DtmfSender`]: turns a digit string into the per-packet sequence the pacer sends.
//!
//! Payload layout (RFC 4733 §2.3): `event` (8 bits), `E` end bit, `R` reserved bit, `volume`
//! (6 bits, dB below 0 dBm0), `duration` (16 bits, RTP timestamp units since the event start).

mod receiver;
mod sender;

pub use receiver::{DtmfReceiver, EVENT_TIMEOUT};
pub use sender::{DtmfSender, DtmfTick, DtmfTiming};

/// Length of one telephone-event payload.
pub const PAYLOAD_LEN: usize = 4;

/// The volume we send: −10 dBm0, the usual choice.
pub const DEFAULT_VOLUME: u8 = 10;

/// Errors of DTMF encoding and decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload of {0} bytes is too short")]
    ShortPayload(usize),
    #[error("{0:?} is not a DTMF digit (0-9, *, #, A-D) or a pause (w)")]
    InvalidDigit(char),
}

/// One decoded telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D`, 16 flash.
    pub event: u8,
    /// The end bit: this packet closes the event.
    pub end: bool,
    /// Power in dB below 0 dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

/// Encodes one telephone-event payload. `volume` is clamped to its 6 bits.
pub fn encode(event: u8, end: bool, volume: u8, duration: u16) -> [u8; PAYLOAD_LEN] {
    let [hi, lo] = duration.to_be_bytes();
    let flags = if end { 0x80 } else { 0 } | (volume.min(63));
    [event, flags, hi, lo]
}

/// Decodes a telephone-event payload. Only the first 4 bytes are read; the reserved bit is
/// ignored, as RFC 4733 §2.3 asks of receivers.
pub fn decode(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
    let [event, flags, hi, lo] = match payload {
        [a, b, c, d, ..] => [*a, *b, *c, *d],
        _ => return Err(DtmfError::ShortPayload(payload.len())),
    };
    Ok(TelephoneEvent {
        event,
        end: flags & 0x80 != 0,
        volume: flags & 0x3F,
        duration: u16::from_be_bytes([hi, lo]),
    })
}

/// The event code of a DTMF digit (`0-9`, `*`, `#`, `A-D`, case-insensitive).
pub fn event_for_digit(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The digit of a DTMF event code; `None` for flash and other non-digit events.
pub fn digit_for_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        for event in 0..=16u8 {
            for end in [false, true] {
                for (volume, duration) in [(0u8, 0u16), (10, 160), (63, 65535)] {
                    let bytes = encode(event, end, volume, duration);
                    let decoded = decode(&bytes).unwrap();
                    assert_eq!(
                        decoded,
                        TelephoneEvent {
                            event,
                            end,
                            volume,
                            duration
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn encodes_the_rfc_layout() {
        // Event 11 (#), end, volume 10, duration 800.
        assert_eq!(encode(11, true, 10, 800), [11, 0x8A, 0x03, 0x20]);
        // The reserved bit is ignored on decode; the volume is clamped on encode.
        assert_eq!(decode(&[5, 0x40 | 7, 0, 1]).unwrap().volume, 7);
        assert_eq!(encode(1, false, 200, 0)[1], 63);
    }

    #[test]
    fn short_payloads_are_errors() {
        assert_eq!(decode(&[1, 2, 3]), Err(DtmfError::ShortPayload(3)));
        assert!(decode(&[1, 2, 3, 4, 5]).is_ok());
    }

    #[test]
    fn digits_map_to_events_and_back() {
        for (digit, event) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('D', 15),
        ] {
            assert_eq!(event_for_digit(digit), Some(event));
            assert_eq!(digit_for_event(event), Some(digit));
        }
        assert_eq!(event_for_digit('b'), Some(13));
        assert_eq!(event_for_digit('x'), None);
        assert_eq!(digit_for_event(16), None);
    }
}
