//! The embedded local engine: a server speaking the OpenAI Realtime GA WebSocket protocol, so
//! that a call works offline when no API key is configured, and so that load tests have a
//! stand-in (`dialtone mock-realtime --listen ADDR`).
//!
//! It is an echo agent: server VAD (timed in audio milliseconds) cuts the caller's speech into
//! turns, and each turn is answered with the caller's own audio in the session's output
//! format, streamed faster than real time like the real service. A response with no new
//! caller audio plays a short chime. An [`EngineScript`] makes chosen turns call a tool.
//!
//! - [`session`]: [`EngineSession`], the sans-IO per-connection state machine.
//! - [`server`]: the async adapter ([`serve`], [`serve_connection`], [`in_process`]).
//! - [`script`]: scripted tool calls loaded from TOML.
//! - [`error`]: [`RequestError`] (answered with an `error` event) and [`EngineError`].

mod conversation;
mod convert;
pub mod error;
mod input;
mod outbox;
mod response;
pub mod script;
pub mod server;
pub mod session;
mod settings;
mod vad;

#[cfg(test)]
mod tests;

pub use error::{EngineError, RequestError};
pub use script::{EngineScript, ScriptError, ScriptedCall};
pub use server::{in_process, serve, serve_connection};
pub use session::{DEFAULT_MODEL, EngineConfig, EngineSession};
