//! The caller leg of a Twilio call: one bidirectional Media Stream WebSocket.
//!
//! [`run_media_socket`] waits for `start`, hands a [`CallerLeg`] to the host, then pumps in
//! both directions until the stream stops, the socket closes, the driver hangs up or drops its
//! command sender. It is generic over the socket's halves so tests drive it with channels.
//!
//! - Twilio → driver: `media` becomes [`LegEvent::Audio`] (µ-law), `dtmf` [`LegEvent::Dtmf`],
//!   the echo of one of our marks [`LegEvent::Played`]; [`LegEvent::Gone`] is always the last
//!   event, sent once when the leg ends for any reason.
//! - Driver → Twilio: [`LegCommand::Play`] is sent as whole 160-byte frames (see [`framing`]),
//!   a mark is named by its label, `Clear` drops the carried partial frame and sends `clear`,
//!   `Hangup` ends the call through the REST API when configured and closes the socket (the
//!   TwiML has nothing after `<Connect>`, so closing ends the call too).
//!
//! Malformed messages, bad base64 and foreign marks are logged at debug, counted in
//! [`TwilioCounters`], and skipped.
//!
//! [`framing`]: super::framing

use std::fmt::Display;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::future::BoxFuture;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::counters::TwilioCounters;
use super::framing::Framer;
use super::message::{Inbound, Outbound, StartInfo};
use super::rest::TwilioRest;
use crate::audio::AudioFormat;
use crate::bridge::Mark;
use crate::call::leg::{CallControl, CallerLeg, DtmfMode, LegCommand, LegEvent, LegInfo, LegKind};

/// Capacity of the event channel to the driver (about 2.5 s of caller audio).
const EVENT_CHANNEL: usize = 128;
/// Capacity of the command channel from the driver.
const COMMAND_CHANNEL: usize = 128;

/// Normal closure.
const CLOSE_NORMAL: u16 = 1000;
/// Policy violation: the stream did not start properly.
const CLOSE_POLICY: u16 = 1008;

/// The error a transfer reports when no REST credentials are configured.
pub const TRANSFER_NEEDS_TOKEN: &str = "transfer needs TWILIO_AUTH_TOKEN";

/// Called with each new call's leg; the host starts the call driver with it. Must not block.
pub type OnCall = Arc<dyn Fn(CallerLeg) + Send + Sync>;

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

/// Runs one Media Stream connection to its end.
pub async fn run_media_socket<S, R>(sink: S, stream: R, ctx: MediaContext)
where
    S: Sink<Message>,
    S::Error: Display,
    R: Stream<Item = Result<Message, axum::Error>>,
{
    let mut sink = pin!(sink);
    let mut stream = pin!(stream);
    let counters = ctx.counters.clone();

    let start = match await_start(stream.as_mut(), &ctx).await {
        Ok(start) => start,
        Err(reason) => {
            tracing::debug!(reason, "closing media stream before start");
            TwilioCounters::bump(&counters.streams_rejected);
            close(sink.as_mut(), CLOSE_POLICY, "no start").await;
            return;
        }
    };
    TwilioCounters::bump(&counters.streams_started);

    let span = tracing::info_span!("twilio_call", call_sid = %start.call_sid);
    let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL);
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_CHANNEL);
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
    (ctx.on_call)(CallerLeg {
        info,
        events: events_rx,
        commands: commands_tx,
        control: control.clone(),
    });

    async {
        tracing::debug!(stream_sid = %start.stream_sid, "media stream started");
        let end = tokio::select! {
            end = read_inbound(stream.as_mut(), &events_tx, &counters) => end,
            end = write_outbound(sink.as_mut(), commands_rx, &start.stream_sid, &control) => end,
        };
        tracing::debug!(end, "media stream ended");
        close(sink.as_mut(), CLOSE_NORMAL, "").await;
        // The driver may already be gone; then nobody needs to hear it.
        let _ = events_tx.send(LegEvent::Gone).await;
    }
    .instrument(span)
    .await;
}

/// Reads frames until `start`; `Err` says why the stream is given up.
async fn await_start<R>(
    mut stream: Pin<&mut R>,
    ctx: &MediaContext,
) -> Result<StartInfo, &'static str>
where
    R: Stream<Item = Result<Message, axum::Error>>,
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

/// Forwards Twilio's messages to the driver until the stream stops or the socket closes.
async fn read_inbound<R>(
    mut stream: Pin<&mut R>,
    events: &mpsc::Sender<LegEvent>,
    counters: &TwilioCounters,
) -> &'static str
where
    R: Stream<Item = Result<Message, axum::Error>>,
{
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) => return "closed by Twilio",
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Binary(_)) => {
                tracing::debug!("ignoring binary frame");
                TwilioCounters::bump(&counters.malformed_messages);
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "media socket failed");
                return "socket failed";
            }
        };
        let message = match Inbound::parse(&text) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, "ignoring malformed message");
                TwilioCounters::bump(&counters.malformed_messages);
                continue;
            }
        };
        let event = match message {
            Inbound::Media { media, .. } if media.is_inbound() => match media.decode() {
                Ok(audio) if audio.is_empty() => continue,
                Ok(audio) => {
                    TwilioCounters::bump(&counters.frames_in);
                    LegEvent::Audio(audio)
                }
                Err(error) => {
                    tracing::debug!(%error, chunk = ?media.chunk, "dropping media frame");
                    TwilioCounters::bump(&counters.frames_dropped);
                    continue;
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
                    continue;
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
                    continue;
                }
            },
            Inbound::Stop { .. } => return "stopped by Twilio",
            other => {
                tracing::debug!(event = other.event_name(), "ignoring message");
                continue;
            }
        };
        // A dropped receiver means the driver is finishing; keep reading until the socket ends.
        let _ = events.send(event).await;
    }
    "closed by Twilio"
}

/// Sends the driver's commands to Twilio until it hangs up or drops its sender.
async fn write_outbound<S>(
    mut sink: Pin<&mut S>,
    mut commands: mpsc::Receiver<LegCommand>,
    stream_sid: &str,
    control: &TwilioControl,
) -> &'static str
where
    S: Sink<Message>,
    S::Error: Display,
{
    let counters = &control.counters;
    let mut framer = Framer::default();
    while let Some(command) = commands.recv().await {
        let mut out = Vec::new();
        match command {
            // Twilio answered the call before the stream started.
            LegCommand::Ready => {}
            LegCommand::Play(audio) => {
                for frame in framer.push(&audio) {
                    out.push(Outbound::media(stream_sid, &frame));
                }
            }
            LegCommand::Mark(mark) => {
                if let Some(frame) = framer.flush_padded() {
                    out.push(Outbound::media(stream_sid, &frame));
                }
                out.push(Outbound::mark(stream_sid, &mark.label));
            }
            LegCommand::Clear => {
                framer.clear();
                out.push(Outbound::clear(stream_sid));
            }
            LegCommand::Hangup => {
                control.hangup().await;
                return "hung up";
            }
        }
        for message in out {
            let json = match message.to_json() {
                Ok(json) => json,
                Err(error) => {
                    tracing::warn!(%error, "dropping outbound message");
                    continue;
                }
            };
            if let Err(error) = sink.send(Message::Text(json.into())).await {
                tracing::debug!(%error, "media socket write failed");
                return "socket write failed";
            }
            let counter = match message {
                Outbound::Media { .. } => &counters.frames_out,
                Outbound::Mark { .. } => &counters.marks_sent,
                Outbound::Clear { .. } => &counters.clears_sent,
            };
            TwilioCounters::bump(counter);
        }
    }
    "driver finished"
}

/// Sends a close frame and closes the sink; errors mean the socket is already gone.
async fn close<S>(mut sink: Pin<&mut S>, code: u16, reason: &'static str)
where
    S: Sink<Message>,
    S::Error: Display,
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
