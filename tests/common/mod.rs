//! Test harness for the per-call state machine: a virtual clock, a simulated caller leg that
//! plays audio in (virtual) real time, and builders for Realtime server events.
//!
//! The simulated leg behaves like Twilio's player: frames play one after another, 20 ms each;
//! a mark is reported when every frame queued before it has played; `clear` drops the queue and
//! reports every pending mark at once. It counts, per assistant item, how much audio the caller
//! actually heard, which is what truncation must match.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use dialtone::audio::AudioFormat;
use dialtone::bridge::{
    Call, CallConfig, CallEvent, CallerCommand, Input, MarkId, Output, Timing, ToolOutcome,
    ToolRun, ToolRunId,
};
use dialtone::dialplan::{Action, DtmfPolicy, Limits, NumberMatch, Route, Tool, ValueSource};
use dialtone::realtime::event::{
    ClientEvent, ErrorDetail, ResponseInfo, ServerEvent, ServerItem, SessionConfig, TurnDetection,
};
use serde_json::json;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A route with one tool of every action kind and DTMF `0` bound to `operator`.
pub fn test_route() -> Route {
    let string_arg = |name: &str| json!({"type":"object","properties":{name:{"type":"string"}},"required":[name]});
    Route {
        name: "test".into(),
        number: NumberMatch::Default,
        model: "gpt-realtime".into(),
        voice: "marin".into(),
        instructions: "Be brief.".into(),
        audio_format: AudioFormat::Pcmu,
        turn_detection: Some(TurnDetection::ServerVad {
            threshold: None,
            prefix_padding_ms: None,
            silence_duration_ms: None,
            create_response: Some(true),
            interrupt_response: Some(true),
        }),
        transcription: None,
        greeting: None,
        limits: Limits::default(),
        tools: vec![
            Tool {
                name: "end_call".into(),
                description: "Hang up".into(),
                parameters: json!({"type":"object","properties":{}}),
                action: Action::Hangup,
            },
            Tool {
                name: "transfer_call".into(),
                description: "Transfer".into(),
                parameters: string_arg("target"),
                action: Action::Transfer {
                    target: ValueSource::Argument("target".into()),
                },
            },
            Tool {
                name: "operator".into(),
                description: "Transfer to the operator".into(),
                parameters: json!({"type":"object","properties":{}}),
                action: Action::Transfer {
                    target: ValueSource::Fixed("+15550000".into()),
                },
            },
            Tool {
                name: "press".into(),
                description: "Send DTMF".into(),
                parameters: string_arg("digits"),
                action: Action::Dtmf {
                    digits: ValueSource::Argument("digits".into()),
                },
            },
            Tool {
                name: "lookup".into(),
                description: "Look something up".into(),
                parameters: string_arg("q"),
                action: Action::Webhook {
                    url: "http://127.0.0.1:9/hook".into(),
                    timeout: Duration::from_secs(5),
                    headers: vec![],
                },
            },
        ],
        dtmf: DtmfPolicy {
            bindings: vec![('0', "operator".into())],
            to_model: true,
        },
    }
}

pub fn session_config() -> SessionConfig {
    SessionConfig {
        kind: "realtime".into(),
        model: Some("gpt-realtime".into()),
        output_modalities: None,
        instructions: None,
        audio: None,
        tools: None,
        tool_choice: None,
    }
}

/// One entry of the simulated leg's queue.
#[derive(Debug)]
enum Queued {
    Frame { source: Option<String> },
    Mark(MarkId),
}

/// A caller leg that plays in virtual real time.
#[derive(Debug, Default)]
pub struct SimLeg {
    queue: VecDeque<Queued>,
    /// When the frame now playing ends.
    playing_until: Option<Instant>,
    playing_source: Option<String>,
    /// Milliseconds heard per source label (item id or `toneN`).
    pub heard: HashMap<String, u64>,
    pub clears: usize,
    pub hung_up: bool,
    pub frames_received: usize,
}

impl SimLeg {
    fn accept(&mut self, cmd: &CallerCommand) -> Vec<MarkId> {
        match cmd {
            CallerCommand::Play(audio) => {
                // Audio comes in pieces of whole 20 ms frames (µ-law here).
                for _ in 0..audio.len() / AudioFormat::Pcmu.frame_bytes() {
                    self.frames_received += 1;
                    self.queue.push_back(Queued::Frame { source: None });
                }
                vec![]
            }
            CallerCommand::Mark(mark) => {
                let source = mark.label.split(':').nth(1).map(str::to_owned);
                for q in self.queue.iter_mut().rev() {
                    match q {
                        Queued::Frame { source: s @ None } => *s = source.clone(),
                        _ => break,
                    }
                }
                self.queue.push_back(Queued::Mark(mark.id));
                vec![]
            }
            CallerCommand::Clear => {
                self.clears += 1;
                // The frame being played stops at once: count what was heard of it.
                self.playing_until = None;
                self.playing_source = None;
                self.queue
                    .drain(..)
                    .filter_map(|q| match q {
                        Queued::Mark(id) => Some(id),
                        Queued::Frame { .. } => None,
                    })
                    .collect()
            }
            CallerCommand::Hangup => {
                self.hung_up = true;
                vec![]
            }
        }
    }

    /// The next time the leg has something to do, if any.
    fn next_event(&self, now: Instant) -> Option<Instant> {
        match self.playing_until {
            Some(t) => Some(t),
            None if !self.queue.is_empty() => Some(now),
            None => None,
        }
    }

    /// Plays up to `now`; returns marks reached.
    fn step(&mut self, now: Instant) -> Vec<MarkId> {
        let mut marks = Vec::new();
        if let Some(t) = self.playing_until {
            if t > now {
                return marks;
            }
            if let Some(src) = self.playing_source.take() {
                *self.heard.entry(src).or_default() += 20;
            }
            self.playing_until = None;
        }
        while self.playing_until.is_none() {
            match self.queue.pop_front() {
                Some(Queued::Mark(id)) => marks.push(id),
                Some(Queued::Frame { source }) => {
                    self.playing_source = source;
                    self.playing_until = Some(now + ms(20));
                }
                None => break,
            }
        }
        marks
    }

    /// Milliseconds heard of the frame playing now, for exact mid-frame comparisons.
    pub fn heard_now(&self, now: Instant, item: &str) -> u64 {
        let base = self.heard.get(item).copied().unwrap_or(0);
        match (&self.playing_source, self.playing_until) {
            (Some(src), Some(until)) if src == item => {
                base + 20 - until.saturating_duration_since(now).as_millis() as u64
            }
            _ => base,
        }
    }
}

/// A call under test with its virtual clock and simulated leg.
pub struct TestCall {
    pub call: Call,
    pub t0: Instant,
    pub now: Instant,
    pub leg: SimLeg,
    /// Every output, with the time it came out.
    pub log: Vec<(Duration, Output)>,
    /// Index into `log` of the first output not yet taken by [`TestCall::take`].
    cursor: usize,
}

impl TestCall {
    pub fn new(route: Route) -> Self {
        Self::with(route, false, Timing::default())
    }

    pub fn with(route: Route, out_of_band_dtmf: bool, timing: Timing) -> Self {
        let t0 = Instant::now();
        let call = Call::new(
            CallConfig {
                route: Arc::new(route),
                session: session_config(),
                out_of_band_dtmf,
                timing,
            },
            t0,
        );
        let mut tc = Self {
            call,
            t0,
            now: t0,
            leg: SimLeg::default(),
            log: Vec::new(),
            cursor: 0,
        };
        tc.drain();
        tc
    }

    /// A call whose Realtime session is already up.
    pub fn live(route: Route) -> Self {
        let mut tc = Self::new(route);
        tc.realtime(ServerEvent::SessionCreated { session: json!({}) });
        tc.realtime(ServerEvent::SessionUpdated { session: json!({}) });
        // Tests of a live call look only at what happens after set-up.
        tc.log.clear();
        tc.cursor = 0;
        tc
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn drain(&mut self) {
        let mut acks = Vec::new();
        while let Some(out) = self.call.poll_output() {
            if let Output::Caller(cmd) = &out {
                acks.extend(self.leg.accept(cmd));
            }
            self.log.push((self.now - self.t0, out));
        }
        // Marks released by a clear come back at once, after the clear.
        for mark in acks {
            self.input(Input::Played {
                now: self.now,
                mark,
            });
        }
    }

    pub fn input(&mut self, input: Input) {
        self.call.handle_input(input);
        self.drain();
    }

    pub fn realtime(&mut self, event: ServerEvent) {
        let now = self.now;
        self.input(Input::Realtime { now, event });
    }

    /// Advances the virtual clock, playing audio and firing timers on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let leg = self.leg.next_event(self.now);
            let timer = self.call.poll_timeout();
            let next = [leg, timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let marks = self.leg.step(self.now);
                    for mark in marks {
                        let now = self.now;
                        self.input(Input::Played { now, mark });
                    }
                    if self.call.poll_timeout().is_some_and(|t| t <= self.now) {
                        let now = self.now;
                        self.input(Input::Timeout { now });
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        // Account for a frame playing across `end`.
        let _ = self.leg.step(self.now);
    }

    /// Outputs since the last call to `take`.
    pub fn take(&mut self) -> Vec<Output> {
        let new = self.log[self.cursor..]
            .iter()
            .map(|(_, o)| o.clone())
            .collect();
        self.cursor = self.log.len();
        new
    }

    /// Realtime client events since the last `take`.
    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        self.take()
            .into_iter()
            .filter_map(|o| match o {
                Output::Realtime(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    pub fn all_events(&self) -> Vec<ClientEvent> {
        self.log
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Realtime(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn truncates(&self) -> Vec<(String, u64)> {
        self.all_events()
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::ConversationItemTruncate {
                    item_id,
                    audio_end_ms,
                    ..
                } => Some((item_id, audio_end_ms)),
                _ => None,
            })
            .collect()
    }

    pub fn tool_runs(&self) -> Vec<ToolRun> {
        self.log
            .iter()
            .filter_map(|(_, o)| match o {
                Output::RunTool(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn events(&self) -> Vec<CallEvent> {
        self.log
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn hangups(&self) -> usize {
        self.log
            .iter()
            .filter(|(_, o)| matches!(o, Output::Caller(CallerCommand::Hangup)))
            .count()
    }

    pub fn tool_done(&mut self, run: ToolRunId, outcome: ToolOutcome) {
        let now = self.now;
        self.input(Input::ToolDone { now, run, outcome });
    }

    // ---- the model's side ----

    pub fn response_created(&mut self, id: &str) {
        self.realtime(ServerEvent::ResponseCreated {
            response: info(id, "in_progress", &[]),
        });
    }

    /// `ms` of assistant audio for `item` in one delta.
    pub fn audio(&mut self, response: &str, item: &str, ms: u64) {
        let bytes = vec![0x55u8; (ms * 8) as usize];
        self.realtime(ServerEvent::AudioDelta {
            response_id: response.into(),
            item_id: item.into(),
            output_index: 0,
            content_index: 0,
            delta: base64::engine::general_purpose::STANDARD.encode(bytes),
        });
    }

    pub fn audio_done(&mut self, response: &str, item: &str) {
        self.realtime(ServerEvent::AudioDone {
            response_id: response.into(),
            item_id: item.into(),
            output_index: 0,
            content_index: 0,
        });
    }

    pub fn response_done(&mut self, id: &str, status: &str, items: &[&str]) {
        self.realtime(ServerEvent::ResponseDone {
            response: info(id, status, items),
        });
    }

    /// A whole response: created, `ms` of audio for `item` at once, done.
    pub fn spoken_response(&mut self, id: &str, item: &str, ms: u64) {
        self.response_created(id);
        self.audio(id, item, ms);
        self.audio_done(id, item);
        self.response_done(id, "completed", &[item]);
    }

    pub fn function_call(&mut self, response: &str, call_id: &str, name: &str, args: &str) {
        self.realtime(ServerEvent::FunctionCallArgumentsDone {
            response_id: response.into(),
            item_id: format!("fc_{call_id}"),
            output_index: 0,
            call_id: call_id.into(),
            name: name.into(),
            arguments: args.into(),
        });
    }

    pub fn speech_started(&mut self) {
        self.realtime(ServerEvent::SpeechStarted {
            audio_start_ms: 0,
            item_id: "item_user".into(),
        });
    }

    pub fn speech_stopped(&mut self) {
        self.realtime(ServerEvent::SpeechStopped {
            audio_end_ms: 0,
            item_id: "item_user".into(),
        });
    }

    pub fn error(&mut self, code: &str) {
        self.realtime(ServerEvent::Error {
            error: ErrorDetail {
                kind: "invalid_request_error".into(),
                code: Some(code.into()),
                message: code.into(),
                param: None,
                event_id: None,
            },
        });
    }
}

pub fn info(id: &str, status: &str, items: &[&str]) -> ResponseInfo {
    ResponseInfo {
        id: id.into(),
        status: status.into(),
        status_details: None,
        output: items
            .iter()
            .map(|i| ServerItem {
                id: (*i).into(),
                kind: "message".into(),
                role: Some("assistant".into()),
                ..ServerItem::default()
            })
            .collect(),
    }
}

pub fn is_response_create(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::ResponseCreate { .. })
}

pub fn function_outputs(events: &[ClientEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ConversationItemCreate {
                item: dialtone::realtime::event::ClientItem::FunctionCallOutput { call_id, output },
            } => Some((call_id.clone(), output.clone())),
            _ => None,
        })
        .collect()
}
