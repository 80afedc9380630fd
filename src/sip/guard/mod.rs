//! The UDP front door of the SIP user agent: a socket wrapper that inspects every datagram
//! before rsipstack's transport sees it.
//!
//! rsipstack's UDP transport silently drops every datagram its parser refuses, and its parser
//! accepts many messages RFC 3261 calls malformed. This module owns the decision in between,
//! made per datagram in one pass over the bytes, without allocating on the way through:
//! - a well-formed message is handed on, only framed: CRLFs before the start line are removed
//!   (RFC 3261 §7.5), octets after the Content-Length are cut off (§18.3), a body that came
//!   without a Content-Length gets one (over UDP it is the rest of the datagram), and spaces
//!   around '=' in the top Via, From and To are taken out (`EQUAL` allows them; the stack
//!   would not see a `tag = x`);
//! - a request with an unknown method gets `501 Not Implemented` with `Allow`, another SIP
//!   version `505`, and a malformed request `400` whose reason phrase names the problem
//!   (RFC 4475), as does a request without a From tag (RFC 2543 syntax: the stack keys its
//!   transactions by that tag and would drop it). These answers are sent here, statelessly,
//!   and the request goes no further;
//! - an invalid response, a malformed ACK and a request without a usable Via are dropped.
//!
//! Answers go where RFC 3261 §18.2.2 and RFC 3581 send them: to the packet's source address
//! (the `received` address), at the source port when the top Via asks for `rport`, else at the
//! Via's sent-by port or the transport's default port. [`GuardCounters`] counts every decision.
//!
//! The parts: [`inspect`] decides (`inspect.rs`, with the strict header read in `scan.rs`
//! and value syntax in `syntax.rs`), [`Verdict`] and its vocabulary say what was decided
//! (`verdict.rs`), [`Framing`] cuts a passed message out of its datagram (`framing.rs`),
//! [`build_answer`] writes the answers (`answer.rs`), and [`guarded_udp`] puts it all on a
//! socket (`socket.rs`); `lex.rs` holds the byte-level helpers they share.

mod answer;
mod framing;
mod inspect;
mod lex;
mod scan;
mod socket;
mod syntax;
#[cfg(test)]
mod tests;
mod verdict;

pub use answer::build_answer;
pub use framing::{AddLength, Framing, Span};
pub use inspect::inspect;
pub use socket::{GuardCounters, GuardError, GuardSnapshot, guarded_udp};
pub use verdict::{HeaderName, Problem, Rejection, Status, Unanswered, Verdict};
