//! What goes into a [`Call`](super::Call) and what comes out of it.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::realtime::event::{ClientEvent, ServerEvent};

/// Identifies one playback mark sent to the caller leg. Ids increase through the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MarkId(pub u64);

/// A playback mark: the leg reports [`Input::Played`] with its id once every frame sent before
/// it has been played to the caller (or discarded by [`CallerCommand::Clear`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub id: MarkId,
    /// Says which audio the mark closes: `<id>:<item id or tone>:<end ms in item>`. Legs that
    /// carry names on the wire (Twilio) use it as the mark's name.
    pub label: String,
}

impl Mark {
    /// Parses the id back out of a label made by the core; `None` for foreign marks.
    pub fn id_from_label(label: &str) -> Option<MarkId> {
        label.split(':').next()?.parse().ok().map(MarkId)
    }
}

/// Identifies one tool run handed to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToolRunId(pub u64);

/// An input to the call. Every input carries the time it happened.
#[derive(Debug, Clone)]
pub enum Input {
    /// One 20 ms frame from the caller, already in the model's audio format.
    CallerAudio { now: Instant, audio: Vec<u8> },
    /// A DTMF digit from the caller.
    CallerDtmf { now: Instant, digit: char },
    /// The caller put the call on hold (`true`) or took it off hold.
    CallerHold { now: Instant, held: bool },
    /// The leg has played (or discarded) everything sent before this mark.
    Played { now: Instant, mark: MarkId },
    /// The caller hung up, or the leg failed.
    CallerGone { now: Instant },
    /// The Realtime connection is open.
    RealtimeConnected { now: Instant },
    /// A Realtime server event.
    Realtime { now: Instant, event: ServerEvent },
    /// The Realtime connection closed or could not be opened.
    RealtimeClosed { now: Instant, reason: String },
    /// A tool run handed out with [`Output::RunTool`] finished.
    ToolDone {
        now: Instant,
        run: ToolRunId,
        outcome: ToolOutcome,
    },
    /// Time passed; fires every timer due at `now`.
    Timeout { now: Instant },
    /// The server is shutting down and the call must end now.
    Shutdown { now: Instant },
}

impl Input {
    /// When the input happened.
    pub fn now(&self) -> Instant {
        match self {
            Self::CallerAudio { now, .. }
            | Self::CallerDtmf { now, .. }
            | Self::CallerHold { now, .. }
            | Self::Played { now, .. }
            | Self::CallerGone { now }
            | Self::RealtimeConnected { now }
            | Self::Realtime { now, .. }
            | Self::RealtimeClosed { now, .. }
            | Self::ToolDone { now, .. }
            | Self::Timeout { now }
            | Self::Shutdown { now } => *now,
        }
    }
}

/// How a tool run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutcome {
    /// Success; the text goes back to the model (a transfer that succeeds ends the call).
    Ok(String),
    /// Failure; the reason goes back to the model.
    Failed(String),
}

/// An output drained from the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A command for the caller leg.
    Caller(CallerCommand),
    /// A client event for the Realtime connection.
    Realtime(ClientEvent),
    /// Work for the host; it answers with [`Input::ToolDone`].
    RunTool(ToolRun),
    /// Something happened that logs and metrics care about.
    Event(CallEvent),
}

/// A command for the caller leg. Audio is in the model's format; the host converts it.
#[derive(Debug, Clone, PartialEq)]
pub enum CallerCommand {
    /// Queue audio for playback: whole 20 ms frames, a slice of what the model sent (no
    /// copy). The audio of one segment may come in several pieces; its mark follows them.
    Play(Bytes),
    /// Queue a mark after the frames queued so far.
    Mark(Mark),
    /// Drop every queued frame at once and report every pending mark.
    Clear,
    /// End the call.
    Hangup,
}

/// A tool action the host carries out.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRun {
    pub id: ToolRunId,
    /// The tool's name in the dialplan.
    pub tool: String,
    pub request: ToolRequest,
}

/// The work a tool run asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolRequest {
    /// Transfer the call to `target` through the leg (SIP REFER, Twilio call update).
    Transfer { target: String },
    /// POST `body` (the model's arguments, JSON) to `url`.
    Webhook {
        url: String,
        body: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
    },
    /// Send DTMF out of band (RFC 4733); legs without it get in-band tones from the core.
    SendDtmf { digits: String },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller hung up.
    CallerHangup,
    /// A `hangup` action ran.
    HangupAction,
    /// A transfer succeeded.
    Transferred,
    /// The route's maximum call duration passed.
    MaxDuration,
    /// The caller said nothing for the route's silence limit.
    CallerSilence,
    /// The Realtime session could not be opened in time, or ended.
    RealtimeUnavailable,
    /// The server is shutting down.
    Shutdown,
}

impl EndReason {
    /// Short name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CallerHangup => "caller_hangup",
            Self::HangupAction => "hangup_action",
            Self::Transferred => "transferred",
            Self::MaxDuration => "max_duration",
            Self::CallerSilence => "caller_silence",
            Self::RealtimeUnavailable => "realtime_unavailable",
            Self::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened on the call, for logs and metrics only.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// The Realtime session is configured; audio flows.
    SessionReady,
    /// The caller talked over the assistant.
    BargeIn,
    /// An assistant item was truncated to what the caller heard.
    Truncated { item_id: String, audio_end_ms: u64 },
    /// A tool call finished (`action` is the dialplan action kind, `outcome` `ok`/`error`/
    /// `timeout`/`unknown_tool`).
    ToolCall {
        tool: String,
        action: &'static str,
        outcome: &'static str,
    },
    /// The Realtime server reported an error.
    RealtimeError {
        code: Option<String>,
        message: String,
    },
    /// Frames were dropped instead of sent (caller audio before the session was ready, late
    /// audio of an interrupted response).
    FramesDropped { count: u64 },
    /// Assistant audio dropped because the call's playback queue was full.
    AssistantAudioDropped { ms: u64 },
    /// A DTMF digit from the caller.
    Dtmf { digit: char },
    /// The call ended; nothing more will be output.
    Ended { reason: EndReason },
}
