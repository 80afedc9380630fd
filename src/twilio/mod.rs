//! Twilio: calls arriving through Programmable Voice and bidirectional Media Streams.
//!
//! A call starts with Twilio's voice webhook ([`routes`]), answered with `<Connect><Stream>`
//! TwiML ([`twiml`]). Twilio then opens the Media Stream WebSocket, whose messages
//! ([`message`]) the leg adapter ([`leg`]) turns into a [`CallerLeg`](crate::call::leg::CallerLeg)
//! for the call driver. Requests are authenticated with `X-Twilio-Signature` ([`signature`]);
//! hangup and transfer go through the REST API ([`rest`]).
//!
//! - [`message`]: Media Streams WebSocket messages (pure serde types).
//! - [`signature`]: signature computation and validation, public-URL rebuilding.
//! - [`twiml`]: the TwiML documents the bridge answers with or sends.
//! - [`rest`]: call updates through Twilio's REST API.
//! - [`framing`]: outbound messages, one `media` per playback segment.
//! - [`leg`]: the Media Stream WebSocket as a caller leg.
//! - [`routes`]: the axum routes (`/twilio/voice`, `/twilio/media`).
//! - [`counters`]: process-wide counters for metrics.

pub mod counters;
pub mod framing;
pub mod leg;
pub mod message;
pub mod rest;
pub mod routes;
pub mod signature;
pub mod twiml;

pub use counters::{TwilioCounters, TwilioCountersSnapshot};
pub use leg::{
    MediaContext, MediaSocket, OnCall, TRANSFER_NEEDS_TOKEN, TwilioLeg, run_media_socket,
};
pub use message::{Inbound, MessageError, Outbound};
pub use rest::{RestError, TwilioRest};
pub use routes::{MEDIA_PATH, TwilioState, VOICE_PATH, router};
