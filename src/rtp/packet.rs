//! RTP packets (RFC 3550 §5.1): parsing received datagrams and building the ones we send.
//!
//! A thin layer over `rtp-types`: parsing is zero-copy and accepts only version 2, tolerating
//! padding, a header extension and CSRCs (all skipped); building writes into a caller buffer.
//! [`is_rtcp`] tells RTCP from RTP on a multiplexed port (RFC 5761 §4).

use rtp_types::{RtpPacket, RtpPacketBuilder, RtpParseError, RtpWriteError};

/// Size of the fixed RTP header.
pub const HEADER_LEN: usize = 12;

/// Largest datagram we read or write: comfortably above any audio packet, below the usual MTU.
pub const MAX_PACKET_LEN: usize = 1500;

/// Why a datagram is not a usable RTP packet, or a packet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("malformed RTP packet: {0}")]
    Malformed(#[from] RtpParseError),
    #[error("cannot build RTP packet: {0}")]
    Write(#[from] RtpWriteError),
}

/// The header fields the media engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed RTP packet borrowing the received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    pub header: RtpHeader,
    /// The payload without header extension, CSRCs or padding.
    pub payload: &'a [u8],
}

/// Parses one RTP datagram. Anything that is not a well-formed version 2 packet is an error.
pub fn parse(data: &[u8]) -> Result<RtpView<'_>, PacketError> {
    let packet = RtpPacket::parse(data)?;
    // Parsing checked that header, extension and padding fit, so this range is in bounds.
    let start = packet.payload_offset();
    let payload = data
        .get(start..start + packet.payload_len())
        .unwrap_or_default();
    Ok(RtpView {
        header: RtpHeader {
            payload_type: packet.payload_type(),
            marker: packet.marker_bit(),
            sequence: packet.sequence_number(),
            timestamp: packet.timestamp(),
            ssrc: packet.ssrc(),
        },
        payload,
    })
}

/// Builds one RTP packet (no CSRCs, no extension, no padding), replacing the contents of `out`.
pub fn build(header: &RtpHeader, payload: &[u8], out: &mut Vec<u8>) -> Result<(), PacketError> {
    out.clear();
    RtpPacketBuilder::<&[u8], &[u8]>::new()
        .payload_type(header.payload_type)
        .marker_bit(header.marker)
        .sequence_number(header.sequence)
        .timestamp(header.timestamp)
        .ssrc(header.ssrc)
        .payload(payload)
        .write_into_vec(out)?;
    Ok(())
}

/// Builds one RTP packet into a new buffer.
pub fn build_vec(header: &RtpHeader, payload: &[u8]) -> Result<Vec<u8>, PacketError> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    build(header, payload, &mut out)?;
    Ok(out)
}

/// Whether a datagram on a multiplexed RTP/RTCP port is RTCP: version 2 and a second byte in
/// 200..=204 (SR, RR, SDES, BYE, APP), the range RFC 5761 §4 reserves against RTP payload types.
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 4 && data[0] >> 6 == 2 && (200..=204).contains(&data[1])
}

/// Whether a payload type may be used for RTP on a port that may also carry RTCP: 0..=127 and
/// outside 72..=76, whose marker-bit form would look like RTCP (RFC 5761 §4).
pub const fn is_valid_payload_type(pt: u8) -> bool {
    pt <= 127 && !(pt >= 72 && pt <= 76)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            payload_type: 0,
            marker: true,
            sequence: 65535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x1234_5678,
        }
    }

    #[test]
    fn build_then_parse_round_trips() {
        let payload = [0x55u8; 160];
        let bytes = build_vec(&header(), &payload).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 160);
        let view = parse(&bytes).unwrap();
        assert_eq!(view.header, header());
        assert_eq!(view.payload, &payload[..]);
    }

    #[test]
    fn tolerates_csrcs_extension_and_padding() {
        let payload = [1u8, 2, 3, 4];
        let ext = [9u8; 4];
        let bytes = RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(8)
            .sequence_number(7)
            .timestamp(99)
            .ssrc(5)
            .add_csrc(11)
            .add_csrc(12)
            .extension(0xBEDE, &ext)
            .payload(&payload)
            .padding(4)
            .write_vec()
            .unwrap();
        let view = parse(&bytes).unwrap();
        assert_eq!(view.header.payload_type, 8);
        assert_eq!(view.header.sequence, 7);
        assert_eq!(view.payload, &payload[..]);
    }

    #[test]
    fn rejects_malformed_datagrams() {
        let good = build_vec(&header(), &[0u8; 10]).unwrap();
        // Too short.
        assert!(parse(&good[..11]).is_err());
        // Version 1.
        let mut v1 = good.clone();
        v1[0] = (v1[0] & 0x3F) | 0x40;
        assert!(parse(&v1).is_err());
        // CSRC count beyond the datagram.
        let mut cc = good[..HEADER_LEN].to_vec();
        cc[0] |= 0x0F;
        assert!(parse(&cc).is_err());
        // Padding longer than the packet.
        let mut pad = good.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 200;
        assert!(parse(&pad).is_err());
        // Zero padding length.
        *pad.last_mut().unwrap() = 0;
        assert!(parse(&pad).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of a few byte patterns.
        let mut state = 0x9E37_79B9u32;
        for len in 0..64 {
            for _ in 0..200 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        // Bias the first byte towards version 2 so deeper checks are reached.
                        state as u8
                    })
                    .enumerate()
                    .map(|(i, b)| if i == 0 { 0x80 | (b & 0x3F) } else { b })
                    .collect();
                let _ = parse(&data);
                let _ = is_rtcp(&data);
            }
        }
    }

    #[test]
    fn tells_rtcp_from_rtp() {
        let rtp = build_vec(&header(), &[0u8; 4]).unwrap();
        assert!(!is_rtcp(&rtp));
        let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 1];
        assert!(is_rtcp(&rr));
        let sr = [0x80u8, 200, 0, 6];
        assert!(is_rtcp(&sr));
        assert!(!is_rtcp(&[0x80, 205, 0, 1]));
        assert!(!is_rtcp(&[0x40, 200, 0, 1]));
    }

    #[test]
    fn payload_types_that_collide_with_rtcp_are_invalid() {
        assert!(is_valid_payload_type(0));
        assert!(is_valid_payload_type(101));
        assert!(!is_valid_payload_type(72));
        assert!(!is_valid_payload_type(76));
        assert!(!is_valid_payload_type(128));
    }
}
