//! Dialtone: bridges phone calls into realtime speech-to-speech model sessions.

pub mod audio;
pub mod bridge;
pub mod call;
pub mod dialplan;
pub mod engine;
mod line_index;
pub mod load;
pub mod metrics;
pub mod realtime;
pub mod rtp;
pub mod server;
pub mod sip;
pub mod telemetry;
pub mod tools;
pub mod twilio;
