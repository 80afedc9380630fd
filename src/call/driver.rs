//! The per-call driver: one task per call, the one place with a `select!`.
//!
//! It owns everything the call touches: one [`Call`], the caller leg's I/O (a Twilio Media
//! Stream socket, or a SIP dialog with its RTP sockets), the Realtime socket, and the futures of tool
//! actions in flight. Its loop is "mutate once, drain, flush, wait": feed one input to the
//! call, carry out every output it drains (messages are queued on the sockets), flush each
//! socket once, then wait for the next of: a leg event, a Realtime event, a finished tool, the
//! call's next deadline, or shutdown. The clock is read once per wake-up (`call::clock`). Audio is
//! converted between the leg's and the model's format here, with the call's [`Transcoder`],
//! into buffers that are reused.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::clock::{now, sleep_until};
use super::leg::{CallControl, CallerLeg, LegCommand, LegEvent};
use super::registry::CallRegistry;
use crate::audio::transcode::Transcoder;
use crate::bridge::{
    Call, CallConfig, CallEvent, CallerCommand, Input, Output, Timing, ToolOutcome, ToolRequest,
    ToolRun, ToolRunId,
};
use crate::dialplan::Dialplan;
use crate::engine::{self, EngineConfig};
use crate::metrics::Metrics;
use crate::realtime::client::{self, Provider, RealtimeIncoming, RealtimeSettings, RealtimeSocket};
use crate::realtime::session::session_config;
use crate::telemetry::Pii;
use crate::tools::WebhookRunner;

/// What every call shares.
pub struct CallServices {
    pub dialplan: Arc<Dialplan>,
    pub realtime: RealtimeSettings,
    /// The embedded engine's settings, used when `realtime` names no server.
    pub engine: Arc<EngineConfig>,
    pub webhooks: WebhookRunner,
    pub metrics: Arc<Metrics>,
    pub registry: CallRegistry,
    pub timing: Timing,
    /// Cancelled when live calls must end (after the shutdown drain period).
    pub hang_up_all: CancellationToken,
}

/// Runs one call from its leg's first event to its end.
pub async fn run_call(services: Arc<CallServices>, mut leg: CallerLeg) {
    let info = leg.info.clone();
    let route = match &info.route {
        Some(name) => services.dialplan.route_named(name),
        None => services.dialplan.route_for(&info.to),
    };
    let Some(route) = route.cloned() else {
        warn!(
            leg = info.kind.as_str(),
            call_id = %info.call_id,
            to = %Pii(&info.to),
            "no dialplan route for the called number; rejecting the call"
        );
        services
            .metrics
            .inc("calls_rejected_total", &[("reason", "no_route")]);
        leg.io.send(LegCommand::Hangup).await;
        leg.io.close().await;
        return;
    };
    let span = info_span!(
        "call",
        leg = info.kind.as_str(),
        call_id = %info.call_id,
        route = %route.name,
    );
    async move {
        info!(from = %Pii(&info.from), to = %Pii(&info.to), "call started");
        services.metrics.call_started(info.kind);
        let started = now();
        let guard = services.registry.register(&info, &route.name);
        let config = CallConfig {
            session: session_config(&route),
            out_of_band_dtmf: info.dtmf == super::leg::DtmfMode::OutOfBand,
            timing: services.timing,
            route: Arc::new(route),
        };
        let reason = Driver::new(&services, leg, config).run().await;
        drop(guard);
        services.metrics.call_ended(info.kind, reason);
        info!(
            reason,
            duration_s = started.elapsed().as_secs(),
            "call ended"
        );
    }
    .instrument(span)
    .await;
}

/// Opens the Realtime connection for `model`: the configured server, or the embedded engine
/// in process.
async fn open_realtime(
    settings: &RealtimeSettings,
    engine: Arc<EngineConfig>,
    model: String,
) -> Result<Box<RealtimeSocket>, client::RealtimeError> {
    let socket =
        if matches!(settings.provider, Provider::Embedded) && settings.url_override.is_none() {
            RealtimeSocket::connect_stream(engine::in_process(engine), &model).await
        } else {
            RealtimeSocket::connect(settings, &model).await
        };
    socket.map(Box::new)
}

/// A tool action in flight: a future owned by the call's task.
type ToolFuture = BoxFuture<'static, (ToolRunId, ToolOutcome)>;

/// What woke the call's loop.
enum Wake {
    Leg(Option<LegEvent>),
    Connected(Result<Box<RealtimeSocket>, client::RealtimeError>),
    Realtime(RealtimeIncoming),
    Tool((ToolRunId, ToolOutcome)),
    Deadline,
    Shutdown,
}

struct Driver<'a> {
    services: &'a CallServices,
    call: Call,
    leg: CallerLeg,
    transcoder: Transcoder,
    realtime: Option<Box<RealtimeSocket>>,
    tools: FuturesUnordered<ToolFuture>,
    /// Reused conversion buffer.
    audio: Vec<u8>,
}

impl<'a> Driver<'a> {
    fn new(services: &'a CallServices, leg: CallerLeg, config: CallConfig) -> Self {
        let transcoder = Transcoder::new(leg.info.format, config.route.audio_format);
        Self {
            services,
            call: Call::new(config, now()),
            leg,
            transcoder,
            realtime: None,
            tools: FuturesUnordered::new(),
            audio: Vec::new(),
        }
    }

    /// Runs until the call ends; returns why it ended.
    async fn run(mut self) -> &'static str {
        let model = self.call.route().model.clone();
        let connecting = open_realtime(
            &self.services.realtime,
            Arc::clone(&self.services.engine),
            model,
        );
        tokio::pin!(connecting);
        let mut connect_pending = true;
        let mut shutdown_sent = false;
        let hang_up_all = self.services.hang_up_all.clone();
        let reason = loop {
            self.dispatch().await;
            self.leg.io.flush().await;
            if let Some(rt) = &mut self.realtime {
                rt.flush().await;
            }
            if let Some(reason) = self.call.ended() {
                break reason.as_str();
            }
            let deadline = self.call.poll_timeout();
            let wake = tokio::select! {
                event = self.leg.io.next_event() => Wake::Leg(event),
                result = &mut connecting, if connect_pending => {
                    connect_pending = false;
                    Wake::Connected(result)
                }
                incoming = recv_realtime(&mut self.realtime) => Wake::Realtime(incoming),
                Some(done) = self.tools.next(), if !self.tools.is_empty() => Wake::Tool(done),
                () = sleep_until(deadline) => Wake::Deadline,
                () = hang_up_all.cancelled(), if !shutdown_sent => {
                    shutdown_sent = true;
                    Wake::Shutdown
                }
            };
            self.wake(wake, now());
        };
        self.leg.io.close().await;
        if let Some(rt) = self.realtime.take() {
            // The close handshake needs nothing from the call: let the task end now.
            tokio::spawn(rt.close().in_current_span());
        }
        reason
    }

    /// Feeds what woke the loop to the call, at `now`.
    fn wake(&mut self, wake: Wake, now: Instant) {
        let input = match wake {
            Wake::Leg(Some(LegEvent::Audio(bytes))) => {
                self.transcoder.to_model(&bytes, &mut self.audio);
                if !self.audio.is_empty() {
                    self.call.handle_caller_audio(now, &self.audio);
                }
                return;
            }
            Wake::Leg(Some(LegEvent::Dtmf(digit))) => Input::CallerDtmf { now, digit },
            Wake::Leg(Some(LegEvent::Played(mark))) => Input::Played { now, mark },
            Wake::Leg(Some(LegEvent::Hold(held))) => Input::CallerHold { now, held },
            Wake::Leg(Some(LegEvent::Gone) | None) => Input::CallerGone { now },
            Wake::Connected(Ok(socket)) => {
                debug!(endpoint = %self.services.realtime.describe(), "realtime connected");
                self.realtime = Some(socket);
                Input::RealtimeConnected { now }
            }
            Wake::Connected(Err(e)) => {
                warn!(error = %e, endpoint = %self.services.realtime.describe(), "realtime connection failed");
                self.services.metrics.realtime_connect_failure();
                Input::RealtimeClosed {
                    now,
                    reason: e.to_string(),
                }
            }
            Wake::Realtime(RealtimeIncoming::Event(event)) => Input::Realtime { now, event },
            Wake::Realtime(RealtimeIncoming::Closed { reason }) => {
                self.realtime = None;
                Input::RealtimeClosed { now, reason }
            }
            Wake::Tool((run, outcome)) => Input::ToolDone { now, run, outcome },
            Wake::Deadline => Input::Timeout { now },
            Wake::Shutdown => Input::Shutdown { now },
        };
        self.call.handle_input(input);
    }

    /// Carries out everything the call has output.
    async fn dispatch(&mut self) {
        while let Some(output) = self.call.poll_output() {
            match output {
                Output::Caller(cmd) => self.send_to_leg(cmd).await,
                Output::Realtime(event) => {
                    if let Some(rt) = &mut self.realtime {
                        rt.feed(&event).await;
                    }
                }
                Output::RunTool(run) => self.start_tool(run),
                Output::Event(CallEvent::SessionReady) => {
                    self.record(CallEvent::SessionReady);
                    self.leg.io.send(LegCommand::Ready).await;
                }
                Output::Event(event) => self.record(event),
            }
        }
    }

    async fn send_to_leg(&mut self, cmd: CallerCommand) {
        let cmd = match cmd {
            CallerCommand::Play(audio) if self.transcoder.is_passthrough() => {
                self.leg.io.play(&audio);
                return;
            }
            CallerCommand::Play(audio) => {
                self.transcoder.to_leg(&audio, &mut self.audio);
                self.leg.io.play(&self.audio);
                return;
            }
            CallerCommand::Mark(mark) => LegCommand::Mark(mark),
            CallerCommand::Clear => {
                // Drop filter history of the audio that will never play.
                self.transcoder.reset_to_leg();
                LegCommand::Clear
            }
            CallerCommand::Hangup => LegCommand::Hangup,
        };
        self.leg.io.send(cmd).await;
    }

    fn start_tool(&mut self, run: ToolRun) {
        info!(tool = %run.tool, run = run.id.0, "running tool action");
        let control: Arc<dyn CallControl> = self.leg.io.control();
        let webhooks = self.services.webhooks.clone();
        let ToolRun { id, request, .. } = run;
        self.tools.push(Box::pin(async move {
            let outcome = match request {
                ToolRequest::Transfer { target } => match control.transfer(target).await {
                    Ok(()) => ToolOutcome::Ok(r#"{"ok":true,"transferred":true}"#.into()),
                    Err(e) => ToolOutcome::Failed(e),
                },
                ToolRequest::SendDtmf { digits } => match control.send_dtmf(digits).await {
                    Ok(()) => ToolOutcome::Ok(r#"{"ok":true}"#.into()),
                    Err(e) => ToolOutcome::Failed(e),
                },
                ToolRequest::Webhook {
                    url,
                    body,
                    headers,
                    timeout,
                } => webhooks.run(&url, body, &headers, timeout).await,
            };
            (id, outcome)
        }));
    }

    /// Logs and counts what happened.
    fn record(&self, event: CallEvent) {
        let metrics = &self.services.metrics;
        match event {
            CallEvent::SessionReady => {
                info!("realtime session ready");
            }
            CallEvent::BargeIn => {
                metrics.barge_in();
                info!("caller barged in; playback cleared");
            }
            CallEvent::Truncated {
                item_id,
                audio_end_ms,
            } => {
                metrics.truncate();
                info!(%item_id, audio_end_ms, "assistant item truncated to what the caller heard");
            }
            CallEvent::ToolCall {
                tool,
                action,
                outcome,
            } => {
                metrics.tool_call(action, outcome);
                info!(%tool, action, outcome, "tool call");
            }
            CallEvent::RealtimeError { code, message } => {
                metrics.realtime_error(code.as_deref());
                warn!(code = code.as_deref().unwrap_or("none"), %message, "realtime error");
            }
            CallEvent::FramesDropped { count } => metrics.frames_dropped("bridge", count),
            CallEvent::AssistantAudioDropped { ms } => {
                metrics.assistant_audio_dropped(ms);
                warn!(
                    ms,
                    "assistant audio dropped: the call's playback queue is full"
                );
            }
            CallEvent::Dtmf { digit } => {
                metrics.dtmf_digit();
                debug!(%digit, "caller dtmf");
            }
            CallEvent::Ended { .. } => {}
        }
    }
}

async fn recv_realtime(realtime: &mut Option<Box<RealtimeSocket>>) -> RealtimeIncoming {
    match realtime {
        Some(rt) => rt.recv().await,
        None => std::future::pending().await,
    }
}
