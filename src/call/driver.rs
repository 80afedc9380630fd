//! The per-call driver: the one place with a `select!`.
//!
//! It owns one [`Call`], one caller leg and one Realtime connection. Its loop is "mutate once,
//! drain, wait": feed one input to the call, dispatch every output it drains, then wait for
//! the next of: a leg event, a Realtime event, a tool result, the call's next deadline, or
//! shutdown. Audio is converted between the leg's and the model's format here, with the
//! call's [`Transcoder`]. The clock is read in exactly one function, `now`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

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
use crate::realtime::client::{
    self, Provider, RealtimeConnection, RealtimeIncoming, RealtimeSettings,
};
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

/// The current time, as the call state machine sees it. Tokio's clock, so tests under a
/// paused runtime stay deterministic.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs one call from its leg's first event to its end.
pub async fn run_call(services: Arc<CallServices>, leg: CallerLeg) {
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
        let _ = leg.commands.send(LegCommand::Hangup).await;
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
        let started = Instant::now();
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
) -> Result<RealtimeConnection, client::RealtimeError> {
    if matches!(settings.provider, Provider::Embedded) && settings.url_override.is_none() {
        client::connect_stream(engine::in_process(engine), &model).await
    } else {
        client::connect(settings, &model).await
    }
}

struct Driver<'a> {
    services: &'a CallServices,
    call: Call,
    leg: CallerLeg,
    transcoder: Transcoder,
    realtime: Option<RealtimeConnection>,
    tools: JoinSet<(ToolRunId, ToolOutcome)>,
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
            tools: JoinSet::new(),
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
        loop {
            self.dispatch().await;
            if let Some(reason) = self.call.ended() {
                return reason.as_str();
            }
            let deadline = self.call.poll_timeout();
            let input = tokio::select! {
                event = self.leg.events.recv() => self.leg_input(event),
                result = &mut connecting, if connect_pending => {
                    connect_pending = false;
                    self.connected(result)
                }
                incoming = recv_realtime(&mut self.realtime) => self.realtime_input(incoming),
                Some(joined) = self.tools.join_next(), if !self.tools.is_empty() => {
                    match joined {
                        Ok((run, outcome)) => Some(Input::ToolDone { now: now(), run, outcome }),
                        Err(e) => {
                            warn!(error = %e, "tool task failed");
                            None
                        }
                    }
                }
                () = sleep_until(deadline) => Some(Input::Timeout { now: now() }),
                () = hang_up_all.cancelled(), if !shutdown_sent => {
                    shutdown_sent = true;
                    Some(Input::Shutdown { now: now() })
                }
            };
            if let Some(input) = input {
                self.call.handle_input(input);
            }
        }
    }

    fn leg_input(&mut self, event: Option<LegEvent>) -> Option<Input> {
        let now = now();
        Some(match event {
            Some(LegEvent::Audio(bytes)) => {
                self.transcoder.to_model(&bytes, &mut self.audio);
                if self.audio.is_empty() {
                    return None;
                }
                Input::CallerAudio {
                    now,
                    audio: self.audio.clone(),
                }
            }
            Some(LegEvent::Dtmf(digit)) => Input::CallerDtmf { now, digit },
            Some(LegEvent::Played(mark)) => Input::Played { now, mark },
            Some(LegEvent::Hold(held)) => Input::CallerHold { now, held },
            Some(LegEvent::Gone) | None => Input::CallerGone { now },
        })
    }

    fn connected(
        &mut self,
        result: Result<RealtimeConnection, client::RealtimeError>,
    ) -> Option<Input> {
        match result {
            Ok(connection) => {
                debug!(endpoint = %self.services.realtime.describe(), "realtime connected");
                self.realtime = Some(connection);
                Some(Input::RealtimeConnected { now: now() })
            }
            Err(e) => {
                warn!(error = %e, endpoint = %self.services.realtime.describe(), "realtime connection failed");
                self.services.metrics.realtime_connect_failure();
                Some(Input::RealtimeClosed {
                    now: now(),
                    reason: e.to_string(),
                })
            }
        }
    }

    fn realtime_input(&mut self, incoming: Option<RealtimeIncoming>) -> Option<Input> {
        match incoming {
            Some(RealtimeIncoming::Event(event)) => Some(Input::Realtime { now: now(), event }),
            Some(RealtimeIncoming::Closed { reason }) => {
                self.realtime = None;
                Some(Input::RealtimeClosed { now: now(), reason })
            }
            None => {
                self.realtime = None;
                Some(Input::RealtimeClosed {
                    now: now(),
                    reason: "connection ended".into(),
                })
            }
        }
    }

    /// Carries out everything the call has output.
    async fn dispatch(&mut self) {
        while let Some(output) = self.call.poll_output() {
            match output {
                Output::Caller(cmd) => self.send_to_leg(cmd).await,
                Output::Realtime(event) => {
                    if let Some(rt) = &self.realtime {
                        // A failed send means the connection is closing; its Closed follows.
                        let _ = rt.sender.send(event).await;
                    }
                }
                Output::RunTool(run) => self.start_tool(run),
                Output::Event(CallEvent::SessionReady) => {
                    self.record(CallEvent::SessionReady);
                    let _ = self.leg.commands.send(LegCommand::Ready).await;
                }
                Output::Event(event) => self.record(event),
            }
        }
    }

    async fn send_to_leg(&mut self, cmd: CallerCommand) {
        let cmd = match cmd {
            CallerCommand::Play(audio) if self.transcoder.is_passthrough() => {
                LegCommand::Play(audio)
            }
            CallerCommand::Play(audio) => {
                self.transcoder.to_leg(&audio, &mut self.audio);
                LegCommand::Play(Bytes::copy_from_slice(&self.audio))
            }
            CallerCommand::Mark(mark) => LegCommand::Mark(mark),
            CallerCommand::Clear => {
                // Drop filter history of the audio that will never play.
                self.transcoder.reset_to_leg();
                LegCommand::Clear
            }
            CallerCommand::Hangup => LegCommand::Hangup,
        };
        // A closed leg reports Gone; nothing to do here.
        let _ = self.leg.commands.send(cmd).await;
    }

    fn start_tool(&mut self, run: ToolRun) {
        info!(tool = %run.tool, run = run.id.0, "running tool action");
        let control: Arc<dyn CallControl> = Arc::clone(&self.leg.control);
        let webhooks = self.services.webhooks.clone();
        let ToolRun { id, request, .. } = run;
        self.tools.spawn(async move {
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
        });
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

async fn recv_realtime(realtime: &mut Option<RealtimeConnection>) -> Option<RealtimeIncoming> {
    match realtime {
        Some(rt) => rt.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
