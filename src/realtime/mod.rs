//! The model side of a call: Realtime API events, the session configuration built from a
//! dialplan route, and the WebSocket client.

pub mod client;
mod endpoint;
mod error;
pub mod event;
pub mod session;
