//! The caller leg of a Twilio call: one bidirectional Media Stream WebSocket, read and
//! written by the call's own task.
//!
//! [`run_media_socket`] waits for `start`, then hands a [`CallerLeg`] holding the socket to the
//! host and runs the call it returns on the same task: no channels, no second task. The call
//! reads the caller with [`TwilioLeg::next_event`] in its `select!` and writes with
//! [`TwilioLeg::send`], flushing once per wake-up ([`TwilioLeg::flush`]).
//!
//! - Twilio → call: `media` becomes [`LegEvent::Audio`] (µ-law), `dtmf` [`LegEvent::Dtmf`], the
//!   echo of one of our marks [`LegEvent::Played`]; [`LegEvent::Gone`] comes once when the
//!   stream stops or the socket closes (a close frame is sent first), then `None`.
//! - Call → Twilio: the audio of a segment is sent as one `media` message before its mark (see
//!   [`framing`]), `Clear` drops the segment being built and sends `clear`, `Hangup` ends the
//!   call through the REST API when configured and closes the socket (the TwiML has nothing
//!   after `<Connect>`, so closing ends the call too).
//!
//! Malformed messages, bad base64 and foreign marks are logged at debug, counted in
//! [`TwilioCounters`], and skipped.
//!
//! [`framing`]: super::framing

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{Sink, SinkExt, Stream, StreamExt};

use super::counters::TwilioCounters;
use super::framing::Outbox;
use super::message::{Inbound, MediaRef, StartInfo};
use super::rest::TwilioRest;
use crate::audio::AudioFormat;
use crate::bridge::Mark;
use crate::call::leg::{
    CallControl, CallerLeg, DtmfMode, LegCommand, LegEvent, LegInfo, LegIo, LegKind,
};

/// Normal closure.
const CLOSE_NORMAL: u16 = 1000;
/// Policy violation: the stream did not start properly.
const CLOSE_POLICY: u16 = 1008;
/// How long a closing handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The error a transfer reports when no REST credentials are configured.
pub const TRANSFER_NEEDS_TOKEN: &str = "transfer needs TWILIO_AUTH_TOKEN";

/// A Media Stream socket: axum's WebSocket, or a stand-in in tests.
pub trait MediaSocket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + Unpin
{
}
impl<T> MediaSocket for T where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Send
        + Unpin
{
}

pub use crate::call::leg::OnCall;

/// What a Media Stream socket needs from the host.
#[derive(Clone)]
pub struct MediaContext {
    pub on_call: OnCall,
    /// REST client for hangup and transfer; without it hangup only closes the socket and
    /// transfers fail.
    pub rest: Option<Arc<TwilioRest>>,
    pub counters: Arc<TwilioCounters>,
    /// How long `start` may take to arrive after the socket opens.
    pub start_timeout: Duration,
    /// How many frames may arrive before `start` (Twilio sends exactly one: `connected`).
    pub max_frames_before_start: usize,
}

impl MediaContext {
    /// A context with no REST client and default `start` bounds (10 s, 8 frames).
    pub fn new(on_call: OnCall, counters: Arc<TwilioCounters>) -> Self {
        Self {
            on_call,
            rest: None,
            counters,
            start_timeout: Duration::from_secs(10),
            max_frames_before_start: 8,
        }
    }

    /// Uses `rest` for hangup and transfer.
    pub fn with_rest(mut self, rest: Option<Arc<TwilioRest>>) -> Self {
        self.rest = rest;
        self
    }
}

/// Runs one Media Stream connection: waits for `start`, then runs its call to the end.
pub async fn run_media_socket<S: MediaSocket + 'static>(socket: S, ctx: MediaContext) {
    let mut socket: Pin<Box<dyn MediaSocket>> = Box::pin(socket);
    let counters = ctx.counters.clone();

    let start = match await_start(socket.as_mut(), &ctx).await {
        Ok(start) => start,
        Err(reason) => {
            tracing::debug!(reason, "closing media stream before start");
            TwilioCounters::bump(&counters.streams_rejected);
            close(socket.as_mut(), CLOSE_POLICY, "no start").await;
            return;
        }
    };
    TwilioCounters::bump(&counters.streams_started);
    tracing::debug!(stream_sid = %start.stream_sid, call_sid = %start.call_sid, "media stream started");

    let control = Arc::new(TwilioControl {
        rest: ctx.rest.clone(),
        account_sid: start.account_sid.clone(),
        call_sid: start.call_sid.clone(),
        counters: counters.clone(),
    });
    let param = |name: &str| {
        start
            .custom_parameters
            .get(name)
            .cloned()
            .unwrap_or_default()
    };
    let info = LegInfo {
        kind: LegKind::Twilio,
        call_id: start.call_sid.clone(),
        from: param("From"),
        to: param("To"),
        route: Some(param("Route")).filter(|r| !r.is_empty()),
        format: AudioFormat::Pcmu,
        dtmf: DtmfMode::InBand,
    };
    let leg = TwilioLeg {
        socket,
        outbox: Outbox::new(&start.stream_sid),
        counters,
        control,
        state: State::Open,
        audio_in: BytesMut::new(),
    };
    (ctx.on_call)(CallerLeg {
        info,
        io: LegIo::Twilio(Box::new(leg)),
    })
    .await;
}

/// Where the stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The stream has ended; `Gone` has not been reported yet.
    Ended,
    /// `Gone` has been reported.
    Reported,
}

/// One Twilio Media Stream, as the call's task sees it.
pub struct TwilioLeg {
    socket: Pin<Box<dyn MediaSocket>>,
    outbox: Outbox,
    counters: Arc<TwilioCounters>,
    control: Arc<TwilioControl>,
    state: State,
    /// Decoded caller audio; each frame is a slice of it, reused once the call drops it.
    audio_in: BytesMut,
}

impl TwilioLeg {
    /// The next event from the caller: `Some(Gone)` once when the stream ends, then `None`.
    /// Cancel-safe.
    pub async fn next_event(&mut self) -> Option<LegEvent> {
        match self.state {
            State::Reported => return None,
            State::Ended => {
                self.state = State::Reported;
                return Some(LegEvent::Gone);
            }
            State::Open => {}
        }
        loop {
            let frame = self.socket.next().await;
            match inbound_event(frame, &self.counters, &mut self.audio_in) {
                Step::Event(event) => return Some(event),
                Step::Skip => {}
                Step::End(reason) => {
                    tracing::debug!(end = reason, "media stream ended");
                    self.end().await;
                    self.state = State::Reported;
                    return Some(LegEvent::Gone);
                }
            }
        }
    }

    /// Carries out `command`. Messages are queued on the socket; [`flush`](Self::flush)
    /// writes them.
    pub async fn send(&mut self, command: LegCommand) {
        if self.state != State::Open {
            return;
        }
        match command {
            // Twilio answered the call before the stream started.
            LegCommand::Ready => {}
            LegCommand::Play(audio) => self.play(&audio),
            LegCommand::Mark(mark) => self.mark(&mark).await,
            LegCommand::Clear => {
                let clear = self.outbox.clear();
                self.write(clear, |c| &c.clears_sent).await;
            }
            LegCommand::Hangup => {
                self.control.hangup().await;
                self.end().await;
            }
        }
    }

    /// Adds µ-law audio to the segment being built.
    pub fn play(&mut self, audio: &[u8]) {
        self.outbox.play(audio);
    }

    async fn mark(&mut self, mark: &Mark) {
        let segment = self.outbox.mark(&mark.label);
        if let Some(media) = segment.media {
            self.write(media, |c| &c.media_out).await;
            self.counters
                .frames_out
                .fetch_add(segment.frames as u64, Ordering::Relaxed);
        }
        self.write(segment.mark, |c| &c.marks_sent).await;
    }

    async fn write(&mut self, json: String, counter: fn(&TwilioCounters) -> &AtomicU64) {
        if self.state != State::Open {
            return;
        }
        match self.socket.feed(Message::Text(json.into())).await {
            Ok(()) => TwilioCounters::bump(counter(&self.counters)),
            Err(error) => {
                tracing::debug!(%error, "media socket write failed");
                self.state = State::Ended;
            }
        }
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) {
        if self.state != State::Open {
            return;
        }
        if let Err(error) = self.socket.flush().await {
            tracing::debug!(%error, "media socket write failed");
            self.state = State::Ended;
        }
    }

    /// Closes the socket (a close frame, then the close handshake, bounded in time).
    pub async fn close(&mut self) {
        if self.state == State::Open {
            self.end().await;
        }
    }

    /// The leg's call control (transfer through the REST API).
    pub fn control(&self) -> Arc<dyn CallControl> {
        self.control.clone()
    }

    async fn end(&mut self) {
        if self.state == State::Open {
            self.state = State::Ended;
            let _ =
                tokio::time::timeout(CLOSE_GRACE, close(self.socket.as_mut(), CLOSE_NORMAL, ""))
                    .await;
        }
    }
}

/// What one frame from Twilio means to the call.
enum Step {
    Event(LegEvent),
    Skip,
    End(&'static str),
}

/// Reads one frame from Twilio: an event for the call, nothing, or the end of the stream.
/// Caller audio is decoded into `audio_in`.
fn inbound_event(
    frame: Option<Result<Message, axum::Error>>,
    counters: &TwilioCounters,
    audio_in: &mut BytesMut,
) -> Step {
    let text = match frame {
        None | Some(Ok(Message::Close(_))) => return Step::End("closed by Twilio"),
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Step::Skip,
        Some(Ok(Message::Binary(_))) => {
            tracing::debug!("ignoring binary frame");
            TwilioCounters::bump(&counters.malformed_messages);
            return Step::Skip;
        }
        Some(Err(error)) => {
            tracing::debug!(%error, "media socket failed");
            return Step::End("socket failed");
        }
    };
    if let Some(media) = MediaRef::parse(&text) {
        if !media.is_inbound() {
            return Step::Skip;
        }
        return match decode_audio(media.payload, audio_in) {
            Some(audio) if audio.is_empty() => Step::Skip,
            Some(audio) => {
                TwilioCounters::bump(&counters.frames_in);
                Step::Event(LegEvent::Audio(audio))
            }
            None => {
                tracing::debug!("dropping media frame: bad base64");
                TwilioCounters::bump(&counters.frames_dropped);
                Step::Skip
            }
        };
    }
    let message = match Inbound::parse(&text) {
        Ok(message) => message,
        Err(error) => {
            tracing::debug!(%error, "ignoring malformed message");
            TwilioCounters::bump(&counters.malformed_messages);
            return Step::Skip;
        }
    };
    Step::Event(match message {
        Inbound::Media { media, .. } if media.is_inbound() => match media.decode() {
            Ok(audio) if audio.is_empty() => return Step::Skip,
            Ok(audio) => {
                TwilioCounters::bump(&counters.frames_in);
                LegEvent::Audio(audio.into())
            }
            Err(error) => {
                tracing::debug!(%error, chunk = ?media.chunk, "dropping media frame");
                TwilioCounters::bump(&counters.frames_dropped);
                return Step::Skip;
            }
        },
        Inbound::Dtmf { dtmf, .. } => match dtmf.digit_char() {
            Some(digit) => {
                TwilioCounters::bump(&counters.dtmf_in);
                LegEvent::Dtmf(digit)
            }
            None => {
                tracing::debug!(digit = %dtmf.digit, "ignoring invalid DTMF digit");
                TwilioCounters::bump(&counters.malformed_messages);
                return Step::Skip;
            }
        },
        Inbound::Mark { mark, .. } => match Mark::id_from_label(&mark.name) {
            Some(id) => {
                TwilioCounters::bump(&counters.marks_played);
                LegEvent::Played(id)
            }
            None => {
                tracing::debug!(name = %mark.name, "ignoring foreign mark");
                TwilioCounters::bump(&counters.marks_foreign);
                return Step::Skip;
            }
        },
        Inbound::Stop { .. } => return Step::End("stopped by Twilio"),
        other => {
            tracing::debug!(event = other.event_name(), "ignoring message");
            return Step::Skip;
        }
    })
}

/// Decodes base64 `payload` into `buf` and hands out the audio as a slice of it. The slice
/// shares `buf`'s allocation, which the next decode takes back once the slice is dropped.
fn decode_audio(payload: &str, buf: &mut BytesMut) -> Option<Bytes> {
    use base64::Engine as _;
    let room = payload.len().div_ceil(4) * 3;
    buf.clear();
    buf.resize(room, 0);
    let len = base64::engine::general_purpose::STANDARD
        .decode_slice(payload, &mut buf[..])
        .ok()?;
    buf.truncate(len);
    Some(buf.split().freeze())
}

/// Reads frames until `start`; `Err` says why the stream is given up.
#[allow(clippy::disallowed_methods)] // the socket adapter bounds the wait for `start`
async fn await_start<R>(
    mut stream: Pin<&mut R>,
    ctx: &MediaContext,
) -> Result<StartInfo, &'static str>
where
    R: Stream<Item = Result<Message, axum::Error>> + ?Sized,
{
    let deadline = tokio::time::Instant::now() + ctx.start_timeout;
    for _ in 0..ctx.max_frames_before_start {
        let frame = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Err("start timed out"),
            Ok(None | Some(Ok(Message::Close(_)))) => return Err("socket closed"),
            Ok(Some(Err(error))) => {
                tracing::debug!(%error, "media socket failed before start");
                return Err("socket failed");
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Message::Text(text) = frame else {
            if matches!(frame, Message::Binary(_)) {
                TwilioCounters::bump(&ctx.counters.malformed_messages);
            }
            continue;
        };
        match Inbound::parse(&text) {
            Ok(Inbound::Start { start, .. }) => return Ok(start),
            Ok(Inbound::Stop { .. }) => return Err("stopped before start"),
            Ok(other) => tracing::debug!(event = other.event_name(), "frame before start"),
            Err(error) => {
                tracing::debug!(%error, "ignoring malformed message");
                TwilioCounters::bump(&ctx.counters.malformed_messages);
            }
        }
    }
    Err("too many frames before start")
}

/// Sends a close frame and closes the sink; errors mean the socket is already gone.
async fn close<S>(mut sink: Pin<&mut S>, code: u16, reason: &'static str)
where
    S: Sink<Message> + ?Sized,
    S::Error: std::fmt::Display,
{
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    if let Err(error) = sink.send(Message::Close(Some(frame))).await {
        tracing::debug!(%error, "media socket already closed");
    }
    let _ = sink.close().await;
}

/// Call control of a Twilio leg, through the REST API.
struct TwilioControl {
    rest: Option<Arc<TwilioRest>>,
    account_sid: String,
    call_sid: String,
    counters: Arc<TwilioCounters>,
}

impl TwilioControl {
    /// Ends the call through the REST API when configured; failures are logged (closing the
    /// socket ends the call anyway).
    async fn hangup(&self) {
        let Some(rest) = &self.rest else { return };
        if let Err(error) = rest.hangup(&self.account_sid, &self.call_sid).await {
            tracing::warn!(%error, "REST hangup failed; closing the stream instead");
            TwilioCounters::bump(&self.counters.rest_failures);
        }
    }
}

impl CallControl for TwilioControl {
    fn transfer(&self, target: String) -> BoxFuture<'static, Result<(), String>> {
        let rest = self.rest.clone();
        let account_sid = self.account_sid.clone();
        let call_sid = self.call_sid.clone();
        let counters = self.counters.clone();
        Box::pin(async move {
            let rest = rest.ok_or_else(|| TRANSFER_NEEDS_TOKEN.to_owned())?;
            rest.transfer(&account_sid, &call_sid, &target)
                .await
                .map_err(|error| {
                    TwilioCounters::bump(&counters.rest_failures);
                    error.to_string()
                })
        })
    }

    fn send_dtmf(&self, _digits: String) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Err("Twilio legs send DTMF as in-band tones".to_owned()) })
    }
}

#[cfg(test)]
#[path = "leg_tests.rs"]
mod tests;
