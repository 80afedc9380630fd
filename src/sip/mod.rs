//! The SIP way in: a user agent facing a SIP trunk (or a PBX).
//!
//! - `sdp/`: offer/answer (RFC 3264), pure;
//! - `config/`, `digest/`: the server config file (trunks, who may call) and digest auth.

pub mod config;
pub mod digest;
pub mod sdp;
