//! The SIP way in: a user agent facing a SIP trunk (or a PBX), bridging calls like Twilio's.
//!
//! Layers, and who does what:
//! - rsipstack (pinned, behind `ua.rs` and `leg/` only): SIP message types and parsing,
//!   UDP/TCP transports, transactions (retransmissions, timers, CANCEL matching), dialogs
//!   (tags, CSeq, route sets, 2xx retransmission until ACK);
//! - `guard.rs`: a check on every UDP datagram before the stack parses it, answering what the
//!   stack's parser would silently drop (unknown methods 501, wrong version 505, malformed
//!   requests 400; RFC 4475);
//! - `ua.rs`: which requests become calls (access list, 503 while draining, 488 without
//!   usable media), answers outside dialogs (OPTIONS, 405, 481, 501), semantic checks the
//!   parser does not make (`message.rs`), routing dialog events to calls;
//! - `leg/`: one call as a caller leg, driven by the call's own task: `machine.rs` decides
//!   (ringing, answering once the model is ready, audio that waits for the answer, hold, REFER
//!   transfers with NOTIFY progress and their deadline, the order of the last messages) on a
//!   virtual clock; `mod.rs` carries it out on the dialog and the RTP media (`crate::rtp`);
//! - `sdp/`: offer/answer (RFC 3264), pure;
//! - `outbound.rs`: placing calls, through a trunk or to a SIP URI;
//! - `register.rs`: keeps trunks registered: REGISTER with digest (ours: the stack's client
//!   rejects the standard `SHA-256` token), refresh, retry with backoff, unregister at shutdown;
//! - `config/`, `digest/`: the server config file (trunks, who may call) and digest auth.

pub mod config;
pub mod digest;
pub mod guard;
mod inspect;
pub mod leg;
mod message;
pub mod outbound;
pub mod register;
pub mod sdp;
pub mod ua;
