//! The caller leg: one interface for every way a call comes in (Twilio Media Streams, SIP).
//!
//! A leg adapter runs its own tasks and talks to the call driver over two channels: it sends
//! [`LegEvent`]s (caller audio in the leg's format, DTMF, played marks, hangup) and receives
//! [`LegCommand`]s (audio to play, marks, clear, hangup). Actions that need the leg's own
//! signalling (transfer, out-of-band DTMF) go through [`CallControl`].

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::audio::AudioFormat;
use crate::bridge::{Mark, MarkId};

/// Which kind of leg a call came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    Twilio,
    Sip,
}

impl LegKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Sip => "sip",
        }
    }
}

/// How a leg sends DTMF to the caller's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMode {
    /// As audio tones mixed into playback (the core generates them).
    InBand,
    /// As RFC 4733 telephone events (the leg sends them through [`CallControl`]).
    OutOfBand,
}

/// What the driver knows about a leg when the call starts.
#[derive(Debug, Clone)]
pub struct LegInfo {
    pub kind: LegKind,
    /// Twilio CallSid or SIP Call-ID.
    pub call_id: String,
    /// Calling number or URI.
    pub from: String,
    /// Called number or URI (what routes match on).
    pub to: String,
    /// A dialplan route chosen when the call was placed (outbound calls); otherwise the route
    /// is matched on `to`.
    pub route: Option<String>,
    /// Audio encoding on the leg.
    pub format: AudioFormat,
    pub dtmf: DtmfMode,
}

/// An event from the caller leg.
#[derive(Debug, Clone, PartialEq)]
pub enum LegEvent {
    /// Caller audio in the leg's format (normally one 20 ms frame).
    Audio(Vec<u8>),
    Dtmf(char),
    /// Everything sent before this mark was played (or cleared).
    Played(MarkId),
    Hold(bool),
    /// The caller hung up or the leg closed.
    Gone,
}

/// A command to the caller leg.
#[derive(Debug, Clone, PartialEq)]
pub enum LegCommand {
    /// The model session is ready: a leg that has not answered the call yet may answer now
    /// (SIP answers after ringing; Twilio calls are answered before the stream starts).
    Ready,
    /// Audio in the leg's format, a whole number of 20 ms frames.
    Play(Bytes),
    Mark(Mark),
    Clear,
    Hangup,
}

/// Signalling actions of a leg that take time and may fail.
pub trait CallControl: Send + Sync {
    /// Transfers the call to `target`. `Ok` once the transfer is accepted; the leg then ends.
    fn transfer(&self, target: String) -> BoxFuture<'static, Result<(), String>>;
    /// Sends DTMF out of band. Only called for legs with [`DtmfMode::OutOfBand`].
    fn send_dtmf(&self, digits: String) -> BoxFuture<'static, Result<(), String>>;
}

/// A connected caller leg, as handed to the call driver.
pub struct CallerLeg {
    pub info: LegInfo,
    pub events: mpsc::Receiver<LegEvent>,
    pub commands: mpsc::Sender<LegCommand>,
    pub control: std::sync::Arc<dyn CallControl>,
}
