//! The per-call state machine: everything that decides what happens on a call.
//!
//! A [`Call`] is pure and synchronous. The host feeds it [`Input`]s, each carrying `now`, then
//! drains [`Output`]s with [`Call::poll_output`] until it returns `None`, and sleeps until
//! [`Call::poll_timeout`] unless another input arrives first ("mutate once, drain, wait"). It
//! owns no socket, reads no clock and spawns nothing, so barge-in, truncation, tool round trips
//! and every timer are tested with a virtual clock.
//!
//! Layout:
//! - `io.rs`: the inputs, outputs and events;
//! - `playback.rs`: assistant audio queued, sent and heard, per item;
//! - `turn.rs`: the Realtime session, responses, assistant audio and barge-in;
//! - `actions.rs`: tool calls as dialplan actions, DTMF, hangup and transfer;
//! - `timer.rs`: the named timers.

mod actions;
mod io;
mod playback;
mod timer;
mod turn;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use io::{
    CallEvent, CallerCommand, EndReason, Input, Mark, MarkId, Output, ToolOutcome, ToolRequest,
    ToolRun, ToolRunId,
};

use crate::audio::{AudioFormat, FRAME_MS};
use crate::dialplan::Route;
use crate::realtime::event::{ClientEvent, SessionConfig};
use actions::{LegAction, PendingRun};
use playback::Playback;
use timer::{CallTimer, Timers};

/// How long things may take on a call. The defaults suit production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The Realtime session must be created within this long of the call starting.
    pub realtime_connect: Duration,
    /// At most this much assistant audio is handed to the leg ahead of what was heard; a barge-in
    /// discards at most this much at the leg.
    pub playout_lead: Duration,
    /// A mark closes every segment of at most this much audio.
    pub mark_interval: Duration,
    /// A hangup or transfer waits at most this long for what is playing to finish.
    pub goodbye_grace: Duration,
    /// Deadline of leg actions (transfer, out-of-band DTMF) and of in-band DTMF playback.
    pub leg_action_deadline: Duration,
    /// Added to a webhook's own timeout for its deadline.
    pub webhook_grace: Duration,
    /// DTMF digits for the model are sent this long after the last one (or at `#`).
    pub dtmf_flush: Duration,
    /// Caller audio kept while the Realtime session is being set up.
    pub preconnect_audio: Duration,
    /// Assistant audio queued behind the playout lead, at most; the model's audio beyond it
    /// is dropped and counted (`assistant_audio_dropped_ms_total`). Bounds a call's memory
    /// whatever the model sends: 300 s is 2.4 MB of µ-law or 14.4 MB of PCM16 at 24 kHz.
    pub max_queued_audio: Duration,
    /// Caller audio is appended to the model's input buffer in chunks of this much (at least
    /// one 20 ms frame). Larger chunks mean fewer events to build and send, and that much
    /// later for the model's turn detection. One frame here; `dialtone serve` uses 100 ms
    /// unless told otherwise (`--append-ms`).
    pub append_chunk: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            realtime_connect: Duration::from_secs(10),
            playout_lead: Duration::from_millis(600),
            mark_interval: Duration::from_millis(100),
            goodbye_grace: Duration::from_secs(20),
            leg_action_deadline: Duration::from_secs(30),
            webhook_grace: Duration::from_secs(1),
            dtmf_flush: Duration::from_secs(2),
            preconnect_audio: Duration::from_secs(2),
            max_queued_audio: Duration::from_secs(300),
            append_chunk: Duration::from_millis(FRAME_MS),
        }
    }
}

/// Everything a call needs to start.
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub route: Arc<Route>,
    /// The `session.update` body for this route.
    pub session: SessionConfig,
    /// Whether the leg sends DTMF itself (RFC 4733) rather than as in-band tones.
    pub out_of_band_dtmf: bool,
    pub timing: Timing,
}

/// Where the Realtime session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Waiting for `session.created`.
    Connecting,
    /// Configured; audio flows.
    Live,
}

/// Responses of the model, as far as the call needs to know.
#[derive(Debug, Default)]
struct Responses {
    /// The response in progress (between `response.created` and `response.done`).
    active: Option<String>,
    /// We sent `response.create` and no response has been created since.
    requested: bool,
    /// Responses whose audio is no longer wanted (barge-in).
    interrupted: HashSet<String>,
    /// Something (a tool output, DTMF) is waiting for the model to respond to it.
    wanted: bool,
}

/// One phone call bridged to one Realtime session.
#[derive(Debug)]
pub struct Call {
    route: Arc<Route>,
    session_config: Option<SessionConfig>,
    format: AudioFormat,
    timing: Timing,
    out_of_band_dtmf: bool,
    session: Session,
    /// Caller frames kept until the session is live.
    early_audio: VecDeque<Vec<u8>>,
    /// Caller audio not yet appended to the model's input buffer (less than a chunk).
    append_pending: Vec<u8>,
    held: bool,
    caller_speaking: bool,
    playback: Playback,
    responses: Responses,
    /// Assistant items with audio that has not finished playing, in order of first audio.
    live_items: Vec<String>,
    /// Items already truncated (or discarded): their late audio is dropped.
    cut_items: HashSet<String>,
    runs: HashMap<ToolRunId, PendingRun>,
    next_run: u64,
    leg_action: Option<LegAction>,
    dtmf_digits: String,
    timers: Timers,
    out: VecDeque<Output>,
    ended: Option<EndReason>,
}

impl Call {
    /// Starts a call at `now`: arms the Realtime connect and maximum duration timers.
    pub fn new(config: CallConfig, now: Instant) -> Self {
        let format = config.route.audio_format;
        let mut timers = Timers::default();
        timers.set(
            CallTimer::RealtimeConnect,
            now + config.timing.realtime_connect,
        );
        timers.set(
            CallTimer::MaxDuration,
            now + config.route.limits.max_duration,
        );
        Self {
            playback: Playback::new(
                format,
                config.timing.playout_lead,
                config.timing.mark_interval,
                config.timing.max_queued_audio,
            ),
            format,
            timing: config.timing,
            out_of_band_dtmf: config.out_of_band_dtmf,
            session_config: Some(config.session),
            route: config.route,
            session: Session::Connecting,
            early_audio: VecDeque::new(),
            append_pending: Vec::new(),
            held: false,
            caller_speaking: false,
            responses: Responses::default(),
            live_items: Vec::new(),
            cut_items: HashSet::new(),
            runs: HashMap::new(),
            next_run: 1,
            leg_action: None,
            dtmf_digits: String::new(),
            timers,
            out: VecDeque::new(),
            ended: None,
        }
    }

    /// The route this call runs on.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Why the call ended, once it has.
    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    /// Feeds one input. Drain [`Call::poll_output`] before the next one.
    pub fn handle_input(&mut self, input: Input) {
        if self.ended.is_some() {
            return;
        }
        let now = input.now();
        match input {
            Input::CallerAudio { audio, .. } => self.on_caller_audio(&audio),
            Input::CallerDtmf { digit, .. } => self.on_dtmf(now, digit),
            Input::CallerHold { held, .. } => self.held = held,
            Input::Played { mark, .. } => {
                if self.playback.ack(now, mark) {
                    self.after_playback_progress(now);
                }
            }
            Input::CallerGone { .. } => self.end(EndReason::CallerHangup),
            Input::RealtimeConnected { .. } => {}
            Input::Realtime { event, .. } => self.on_realtime(now, event),
            Input::RealtimeClosed { reason, .. } => {
                self.emit(Output::Event(CallEvent::RealtimeError {
                    code: Some("connection_closed".into()),
                    message: reason,
                }));
                self.hang_up(EndReason::RealtimeUnavailable);
            }
            Input::ToolDone { run, outcome, .. } => self.on_tool_done(now, run, outcome),
            Input::Timeout { .. } => self.on_timeout(now),
            Input::Shutdown { .. } => self.hang_up(EndReason::Shutdown),
        }
        self.settle(now);
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the call next needs [`Input::Timeout`], if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        let runs = self.runs.values().map(|r| r.deadline).min();
        match (self.timers.next(), runs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn emit(&mut self, output: Output) {
        self.out.push_back(output);
    }

    fn send(&mut self, event: ClientEvent) {
        self.emit(Output::Realtime(event));
    }

    /// Feeds one 20 ms frame of caller audio in the model's format: the same as
    /// [`Input::CallerAudio`], without handing over an owned buffer (the host's is reused).
    pub fn handle_caller_audio(&mut self, now: Instant, audio: &[u8]) {
        if self.ended.is_some() {
            return;
        }
        self.on_caller_audio(audio);
        self.settle(now);
    }

    fn on_caller_audio(&mut self, audio: &[u8]) {
        if self.held {
            return;
        }
        if self.session != Session::Live {
            let keep = (self.timing.preconnect_audio.as_millis() as u64 / FRAME_MS).max(1);
            self.early_audio.push_back(audio.to_vec());
            if self.early_audio.len() as u64 > keep {
                self.early_audio.pop_front();
                self.emit(Output::Event(CallEvent::FramesDropped { count: 1 }));
            }
            return;
        }
        self.append_audio(audio);
    }

    /// Collects caller audio and appends it to the model's input buffer in chunks of
    /// `timing.append_chunk`.
    fn append_audio(&mut self, audio: &[u8]) {
        self.append_pending.extend_from_slice(audio);
        let chunk = self.format.bytes_per_ms() * self.timing.append_chunk.as_millis() as usize;
        if self.append_pending.len() >= chunk.max(1) {
            self.flush_append();
        }
    }

    /// Sends the caller audio collected so far.
    fn flush_append(&mut self) {
        use base64::Engine as _;
        if self.append_pending.is_empty() {
            return;
        }
        let audio = base64::engine::general_purpose::STANDARD.encode(&self.append_pending);
        self.append_pending.clear();
        self.send(ClientEvent::InputAudioBufferAppend { audio });
    }

    fn on_timeout(&mut self, now: Instant) {
        for timer in self.timers.expired(now) {
            match timer {
                CallTimer::RealtimeConnect => {
                    self.emit(Output::Event(CallEvent::RealtimeError {
                        code: Some("connect_timeout".into()),
                        message: "the Realtime session was not created in time".into(),
                    }));
                    self.hang_up(EndReason::RealtimeUnavailable);
                }
                CallTimer::MaxDuration => self.hang_up(EndReason::MaxDuration),
                CallTimer::CallerSilence => self.hang_up(EndReason::CallerSilence),
                CallTimer::LegActionGrace => self.force_leg_action(now),
                CallTimer::DtmfFlush => self.flush_dtmf(),
            }
            if self.ended.is_some() {
                return;
            }
        }
        self.expire_runs(now);
    }

    /// Work that follows any input: send what playback has room for, run a leg action that was
    /// waiting for playback, ask for a response that is wanted, keep the silence timer right.
    fn settle(&mut self, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.pump_playback(now);
        self.try_leg_action(now);
        if self.ended.is_some() {
            return;
        }
        self.maybe_request_response();
        self.update_silence_timer(now);
    }

    fn update_silence_timer(&mut self, now: Instant) {
        let Some(limit) = self.route.limits.caller_silence else {
            return;
        };
        let quiet = self.session == Session::Live
            && !self.caller_speaking
            && !self.playback.is_playing()
            && self.responses.active.is_none()
            && !self.responses.requested
            && self.runs.is_empty()
            && self.leg_action.is_none();
        if !quiet {
            self.timers.stop(CallTimer::CallerSilence);
        } else if !self.timers.is_set(CallTimer::CallerSilence) {
            self.timers.set(CallTimer::CallerSilence, now + limit);
        }
    }

    /// Ends the call from our side: the leg is told to hang up.
    fn hang_up(&mut self, reason: EndReason) {
        if self.ended.is_some() {
            return;
        }
        self.emit(Output::Caller(CallerCommand::Hangup));
        self.end(reason);
    }

    /// Marks the call ended; nothing more is output after this.
    fn end(&mut self, reason: EndReason) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(reason);
        self.timers = Timers::default();
        self.runs.clear();
        self.emit(Output::Event(CallEvent::Ended { reason }));
    }
}
