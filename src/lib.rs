//! Dialtone: bridges phone calls into realtime speech-to-speech model sessions.

pub mod audio;
pub mod bridge;
pub mod call;
pub mod dialplan;
pub mod realtime;
