//! The RTP media engine of SIP legs: audio and DTMF between UDP sockets and a call.
//!
//! A SIP leg binds a port pair ([`ports`]), negotiates a codec in SDP, and hands the sockets
//! to [`start`], which runs one task per leg and returns a [`MediaHandle`]: [`MediaCommand`]s
//! (audio to play, marks, clear, DTMF to send, hold, a new remote address, stop) go in,
//! [`MediaEvent`]s (caller audio every 20 ms, caller DTMF, played marks, final stats) come out.
//!
//! The pieces, each a pure sans-IO state machine with time passed in, except the last two:
//!
//! - [`packet`]: RTP parse/build over `rtp-types` (version 2; padding, extensions and CSRCs
//!   tolerated; malformed datagrams are errors, never panics).
//! - [`codec`]: the leg's codec ([`MediaCodec`]): G.711 pass-through, Opus behind the `opus`
//!   feature.
//! - [`jitter`]: the inbound jitter buffer: reordering, duplicates, late packets, concealment,
//!   wrap-around, resync, re-framing of 10/30 ms packets into 20 ms frames.
//! - [`pacer`]: the outbound pacer and playout clock: one packet per 20 ms slot on a
//!   drift-free grid, silence when idle, marks reported when their audio has been sent, clear,
//!   hold, and RFC 4733 DTMF in the same stream.
//! - [`dtmf`]: RFC 4733 telephone events: payload coding, receiver (one digit per key press),
//!   sender (the packet schedule of a digit string).
//! - [`latch`]: symmetric RTP latching to the source address of incoming media.
//! - [`rtcp`]: minimal RTCP: validation of incoming packets, periodic SR/RR, BYE.
//! - [`stats`]: [`MediaStats`] counters and RFC 3550 reception statistics (jitter, loss).
//! - [`session`]: [`MediaSession`], all of the above for one leg.
//! - [`io`]: [`MediaIo`], a session with its sockets, driven by the task that owns it (a SIP
//!   call's own task).
//! - [`socket`]: a media task of its own behind channels, for owners that do not drive media.
//! - [`ports`]: media port ranges and RTP/RTCP port pair binding.
//!
//! The pacer is the playout clock of a SIP leg: a frame counts as played when its packet is
//! sent, so [`MediaEvent::Played`] means what a Twilio mark echo means.

pub mod codec;
pub mod dtmf;
pub mod io;
pub mod jitter;
pub mod latch;
pub mod pacer;
pub mod packet;
pub mod ports;
pub mod rtcp;
pub mod session;
pub mod socket;
pub mod stats;

pub use codec::MediaCodec;
pub use io::{MediaIo, MediaWake};
pub use ports::{PortError, PortRange, PortRangeError, bind_pair};
pub use session::{MediaError, MediaSession, SessionConfig};
pub use socket::{MediaCommand, MediaConfig, MediaEvent, MediaHandle, start, try_start};
pub use stats::MediaStats;
