//! The caller leg: one interface for every way a call comes in (Twilio Media Streams, SIP).
//!
//! The call's task reads [`LegEvent`]s (caller audio in the leg's format, DTMF, played marks,
//! hangup) from its [`LegIo`] and hands it [`LegCommand`]s (audio to play, marks, clear,
//! hangup), flushing once per wake-up. A Twilio leg is the Media Stream socket itself and a
//! SIP leg its dialog and RTP sockets, both read and written by the call's task. Actions that
//! need the leg's own signalling (transfer, out-of-band DTMF) go through [`CallControl`].

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::audio::AudioFormat;
use crate::bridge::{Mark, MarkId};
use crate::sip::leg::SipLeg;
use crate::twilio::TwilioLeg;

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
    /// Caller audio in the leg's format (normally one 20 ms frame). Legs hand out slices of a
    /// buffer they reuse once the call has dropped the slice, so steady audio allocates
    /// nothing.
    Audio(Bytes),
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
    pub io: LegIo,
}

/// Called with each new call's leg; returns the call, to run on the task that owns the leg.
pub type OnCall = Arc<dyn Fn(CallerLeg) -> BoxFuture<'static, ()> + Send + Sync>;

/// How the call's task reaches its caller.
pub enum LegIo {
    /// A Twilio Media Stream, read and written by the call's task.
    Twilio(Box<TwilioLeg>),
    /// A SIP dialog and its RTP media, driven by the call's task.
    Sip(Box<SipLeg>),
}

impl LegIo {
    /// The next event from the caller; `None` once the leg has ended and said so. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<LegEvent> {
        match self {
            Self::Twilio(leg) => leg.next_event().await,
            Self::Sip(leg) => leg.next_event().await,
        }
    }

    /// Hands the leg `command`; what it writes leaves with [`flush`](Self::flush).
    pub async fn send(&mut self, command: LegCommand) {
        match self {
            Self::Twilio(leg) => leg.send(command).await,
            Self::Sip(leg) => leg.send(command),
        }
    }

    /// Queues audio in the leg's format (whole 20 ms frames).
    pub fn play(&mut self, audio: &[u8]) {
        match self {
            Self::Twilio(leg) => leg.play(audio),
            Self::Sip(leg) => leg.play(audio),
        }
    }

    /// Writes what the commands since the last flush produced.
    pub async fn flush(&mut self) {
        if let Self::Twilio(leg) = self {
            leg.flush().await;
        }
    }

    /// Ends the leg from our side once the call is over (a channel leg ends when its command
    /// sender is dropped).
    pub async fn close(&mut self) {
        match self {
            Self::Twilio(leg) => leg.close().await,
            Self::Sip(leg) => leg.close().await,
        }
    }

    /// The leg's signalling actions.
    pub fn control(&self) -> Arc<dyn CallControl> {
        match self {
            Self::Twilio(leg) => leg.control(),
            Self::Sip(leg) => leg.control(),
        }
    }
}
