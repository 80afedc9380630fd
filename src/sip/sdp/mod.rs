//! SDP offer/answer (RFC 3264) for a trunk-facing user agent that carries one audio stream.
//!
//! This module owns everything the SIP layer needs to know about session descriptions:
//! choosing the codec, the RFC 4733 telephone-event payload type, the packetization time and
//! the media direction, detecting hold, and writing our own offers and answers. It is pure:
//! text in, typed values and text out, no I/O and no clock.
//!
//! - [`answer`]: answer a remote offer (an inbound INVITE or re-INVITE with SDP).
//! - [`offer`]: our offer (an INVITE without SDP answered in our 200, or an outbound call).
//! - [`parse_answer`]: read the remote answer to an offer made with [`offer`].
//!
//! Parsing is hand-written rather than done with `sdp-types`: that parser rejects a whole
//! description for one bad line (a port above 65535, an extra space), whereas a trunk-facing
//! UA must answer everything it can use and reject only the unusable streams. Only the lines
//! offer/answer needs are read (`v=`, `c=`, `m=`, `a=rtpmap`, `a=ptime`, `a=maxptime` and the
//! direction attributes); everything else is skipped. Input is untrusted and never panics;
//! descriptions over [`MAX_SDP_LEN`] bytes are refused.
//!
//! Decisions worth knowing:
//! - An empty codec preference list means `[Codec::Pcmu]`.
//! - The answer echoes the offer's profile (`RTP/AVP` or `RTP/AVPF`) on the accepted stream,
//!   and never includes `a=rtcp-mux`, so RTCP stays on port + 1.
//! - `c=IN IP4 0.0.0.0` (RFC 2543 hold) counts as hold and is answered `inactive`.
//! - [`SdpOrigin`] bumps the session version by itself whenever the SDP it stamps differs
//!   from the previous one, so re-sending an unchanged description keeps the version.

mod negotiate;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::audio::AudioFormat;

pub use negotiate::{answer, offer, parse_answer};

/// Largest SDP body accepted, in bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;

/// The telephone-event payload type used in our offers unless configured otherwise.
pub const DEFAULT_TELEPHONE_EVENT_PT: u8 = 101;

/// The payload type used for Opus in our offers.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

/// Packetization time used when the other side asks for nothing (or nothing sensible).
pub const DEFAULT_PTIME_MS: u32 = 20;

/// An audio codec a SIP leg can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// Opus, RTP clock 48 kHz, two-channel signalling (RFC 7587). Only negotiated when the
    /// preference list passed in contains it.
    Opus,
}

impl Codec {
    /// The static RTP payload type (RFC 3551 Table 4), if the codec has one.
    pub const fn static_payload_type(self) -> Option<u8> {
        match self {
            Self::Pcmu => Some(0),
            Self::Pcma => Some(8),
            Self::Opus => None,
        }
    }

    /// The payload type we use for this codec in our own offers.
    pub const fn offer_payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
            Self::Opus => OPUS_PAYLOAD_TYPE,
        }
    }

    /// The encoding name as written in `a=rtpmap` (compared case-insensitively).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::Opus => "opus",
        }
    }

    /// The RTP clock rate in Hz.
    pub const fn clock_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8000,
            Self::Opus => 48_000,
        }
    }

    /// The `a=rtpmap` value after the payload type, e.g. `PCMU/8000` or `opus/48000/2`.
    pub const fn rtpmap(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU/8000",
            Self::Pcma => "PCMA/8000",
            Self::Opus => "opus/48000/2",
        }
    }

    /// The `a=fmtp` parameters we send for this codec, if any.
    pub const fn fmtp(self) -> Option<&'static str> {
        match self {
            Self::Pcmu | Self::Pcma => None,
            Self::Opus => Some("useinbandfec=1"),
        }
    }

    /// The format the leg's audio has once decoded: G.711 passes through, Opus decodes to
    /// 24 kHz PCM16.
    pub const fn leg_format(self) -> AudioFormat {
        match self {
            Self::Pcmu => AudioFormat::Pcmu,
            Self::Pcma => AudioFormat::Pcma,
            Self::Opus => AudioFormat::Pcm16,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// A media direction attribute (RFC 3264 §6.1). Absent means [`Direction::SendRecv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv`.
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The direction to answer with when the offer has `self`.
    pub const fn answer_to(self) -> Self {
        match self {
            Self::SendRecv => Self::SendRecv,
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            Self::Inactive => Self::Inactive,
        }
    }

    /// With `self` as our own direction: whether we send media.
    pub const fn we_send(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// With `self` as our own direction: whether we expect to receive media.
    pub const fn we_receive(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// The attribute name, e.g. `sendrecv`.
    pub const fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// The direction named by an attribute (case-insensitive), if it is one.
    pub fn from_attribute(name: &str) -> Option<Self> {
        [
            Self::SendRecv,
            Self::SendOnly,
            Self::RecvOnly,
            Self::Inactive,
        ]
        .into_iter()
        .find(|d| d.attribute().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}

/// Where we receive RTP: the address for our `c=`/`o=` lines and the port for our `m=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalMedia {
    /// Address the remote side sends RTP to.
    pub ip: IpAddr,
    /// RTP port (RTCP is on port + 1). Must not be 0, which would reject the stream.
    pub port: u16,
}

impl From<SocketAddr> for LocalMedia {
    fn from(addr: SocketAddr) -> Self {
        Self {
            ip: addr.ip(),
            port: addr.port(),
        }
    }
}

/// Session id and version of our `o=` line, kept for the life of one dialog.
///
/// [`answer`] and [`offer`] stamp every description they write: the version goes up by one
/// when the description differs from the previous one and stays put when it is the same
/// (RFC 3264 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpOrigin {
    session_id: u64,
    version: u64,
    /// The previous description, without its `o=` line.
    last: Option<String>,
}

impl SdpOrigin {
    /// A new origin. `seed` should be random; it is cut to 62 bits so that peers parsing the
    /// numbers as signed 64-bit integers still read them.
    pub const fn new(seed: u64) -> Self {
        let session_id = seed & ((1 << 62) - 1);
        Self {
            session_id,
            version: session_id,
            last: None,
        }
    }

    /// The session id (`o=` sess-id).
    pub const fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The current session version (`o=` sess-version).
    pub const fn version(&self) -> u64 {
        self.version
    }

    /// Increments the session version.
    pub const fn bump(&mut self) {
        self.version = self.version.saturating_add(1);
    }

    /// Records `body` (a description without its `o=` line) as sent, bumping the version if
    /// it differs from the previous one.
    fn stamp(&mut self, body: &str) {
        match &self.last {
            Some(last) if last == body => {}
            Some(_) => {
                self.bump();
                self.last = Some(body.to_owned());
            }
            None => self.last = Some(body.to_owned()),
        }
    }
}

/// The outcome of an offer/answer exchange for the audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Negotiated {
    /// Where to send RTP: the remote `c=` address (media level wins) and `m=` port.
    pub remote: SocketAddr,
    /// The codec both sides use.
    pub codec: Codec,
    /// The codec's payload type on this stream.
    pub payload_type: u8,
    /// The telephone-event/8000 payload type, if both sides use RFC 4733.
    pub telephone_event: Option<u8>,
    /// Packetization time in milliseconds.
    pub ptime_ms: u32,
    /// The remote side's direction attribute (media level wins over session level).
    pub direction: Direction,
    /// The remote side put the call on hold: `sendonly`, `inactive`, or a `0.0.0.0`
    /// connection address.
    pub held: bool,
}

impl Negotiated {
    /// Our own effective direction: the answer to the remote direction, or inactive when
    /// the remote address is unspecified (legacy hold).
    pub const fn local_direction(&self) -> Direction {
        if self.remote.ip().is_unspecified() {
            Direction::Inactive
        } else {
            self.direction.answer_to()
        }
    }

    /// Whether we should send RTP.
    pub const fn we_send(&self) -> bool {
        self.local_direction().we_send()
    }

    /// Whether we should expect RTP.
    pub const fn we_receive(&self) -> bool {
        self.local_direction().we_receive()
    }
}

/// Why a session description could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is larger than [`MAX_SDP_LEN`].
    #[error("SDP body of {len} bytes is over the {MAX_SDP_LEN}-byte limit")]
    TooLarge {
        /// Size of the refused body in bytes.
        len: usize,
    },
    /// The body is not SDP, or has no audio stream we can use (RTP/AVP or RTP/AVPF, a port
    /// other than 0, a unicast IP connection address).
    #[error("no usable audio stream in SDP")]
    NoAudio,
    /// The usable audio streams offer none of our codecs.
    #[error("no audio codec in common")]
    NoCommonCodec,
}

impl SdpError {
    /// The SIP status to reject the offer with: 488 Not Acceptable Here.
    pub const fn status_code(&self) -> u16 {
        488
    }

    /// The warn-code for a `Warning` header (RFC 3261 §20.43).
    pub const fn warn_code(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 399,
            Self::NoAudio => 304,
            Self::NoCommonCodec => 305,
        }
    }

    /// A short warn-text for a `Warning` header.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "SDP too large",
            Self::NoAudio => "Media type not available",
            Self::NoCommonCodec => "Incompatible media format",
        }
    }
}
