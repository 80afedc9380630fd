//! Unit tests of [`EngineSession`] driven with a virtual clock: one `Instant::now()` at the
//! start, then the deadlines the session asks for.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::script::{EngineScript, ScriptedCall};
use super::session::{EngineConfig, EngineSession};
use crate::audio::AudioFormat;
use crate::audio::tone::tone;

struct Harness {
    session: EngineSession,
    now: Instant,
    event_ids: HashSet<String>,
}

impl Harness {
    fn new(config: EngineConfig) -> (Self, Value) {
        let mut h = Self {
            session: EngineSession::new(Arc::new(config), "gpt-realtime"),
            now: Instant::now(),
            event_ids: HashSet::new(),
        };
        let mut events = h.drain();
        assert_eq!(events.len(), 1);
        (h, events.remove(0))
    }

    fn echo() -> Self {
        Self::new(EngineConfig::default()).0
    }

    fn with_script(calls: Vec<ScriptedCall>) -> Self {
        let config = EngineConfig {
            script: Some(EngineScript::new(calls)),
            ..EngineConfig::default()
        };
        Self::new(config).0
    }

    /// Events queued so far; checks every event id is unique.
    fn drain(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(text) = self.session.poll_event() {
            let event: Value = serde_json::from_str(&text).unwrap();
            let id = event["event_id"].as_str().unwrap().to_owned();
            assert!(id.starts_with("event_"));
            assert!(self.event_ids.insert(id), "duplicate event id");
            events.push(event);
        }
        events
    }

    fn send(&mut self, event: Value) -> Vec<Value> {
        self.session.handle_client(self.now, &event.to_string());
        self.drain()
    }

    /// Appends `audio` in 20 ms frames of `format`.
    fn append(&mut self, audio: &[u8], format: AudioFormat) -> Vec<Value> {
        let mut events = Vec::new();
        for frame in audio.chunks(format.frame_bytes()) {
            let event = json!({"type": "input_audio_buffer.append", "audio": BASE64.encode(frame)});
            events.extend(self.send(event));
        }
        events
    }

    /// Advances the virtual clock deadline by deadline until the session asks for none;
    /// returns the events with the instant each was produced at.
    fn run(&mut self) -> Vec<(Instant, Value)> {
        let mut events = Vec::new();
        while let Some(at) = self.session.poll_timeout() {
            assert!(at >= self.now, "deadline in the past");
            self.now = at;
            self.session.handle_timeout(at);
            events.extend(self.drain().into_iter().map(|e| (at, e)));
        }
        events
    }

    /// Sets µ-law both ways, optionally with turn detection overrides.
    fn use_pcmu(&mut self, turn_detection: Value) {
        let events = self.send(json!({"type": "session.update", "session": {
            "type": "realtime",
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}, "turn_detection": turn_detection},
                "output": {"format": {"type": "audio/pcmu"}},
            }
        }}));
        assert_eq!(types(&events), ["session.updated"], "{events:?}");
    }
}

fn server_vad() -> Value {
    json!({"type": "server_vad"})
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn silence(format: AudioFormat, ms: usize) -> Vec<u8> {
    format.silence_frame().repeat(ms / 20)
}

/// 1 s of silence, `ms` of a 440 Hz tone, 1 s of silence.
fn utterance(format: AudioFormat, ms: u64) -> Vec<u8> {
    let mut audio = silence(format, 1000);
    audio.extend(tone(&[440.0], ms, 0.3, format));
    audio.extend(silence(format, 1000));
    audio
}

fn delta_bytes(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .flat_map(|e| BASE64.decode(e["delta"].as_str().unwrap()).unwrap())
        .collect()
}

fn only<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = events.iter().filter(|e| e["type"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in {:?}", types(events));
    found[0]
}

fn error_of(events: &[Value]) -> &Value {
    assert_eq!(types(events), ["error"], "{events:?}");
    &events[0]["error"]
}

/// Runs one caller turn of `ms` of tone in µ-law and returns every event through
/// `response.done`.
fn pcmu_turn(h: &mut Harness, ms: u64) -> Vec<Value> {
    let mut events = h.append(&utterance(AudioFormat::Pcmu, ms), AudioFormat::Pcmu);
    events.extend(h.run().into_iter().map(|(_, e)| e));
    events
}

#[test]
fn session_created_reports_the_defaults() {
    let (_, created) = Harness::new(EngineConfig::default());
    assert_eq!(created["type"], "session.created");
    let s = &created["session"];
    assert!(s["id"].as_str().unwrap().starts_with("sess_"));
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["model"], "gpt-realtime");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    assert_eq!(
        s["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert_eq!(
        s["audio"]["output"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    let td = &s["audio"]["input"]["turn_detection"];
    assert_eq!(td["type"], "server_vad");
    assert_eq!(td["threshold"], 0.5);
    assert_eq!(td["prefix_padding_ms"], 300);
    assert_eq!(td["silence_duration_ms"], 500);
    assert_eq!(td["create_response"], true);
    assert_eq!(td["interrupt_response"], true);
}

#[test]
fn a_caller_turn_is_detected_committed_and_echoed() {
    let mut h = Harness::echo();
    h.use_pcmu(server_vad());
    let audio = utterance(AudioFormat::Pcmu, 800);
    let events = h.append(&audio, AudioFormat::Pcmu);
    assert_eq!(
        types(&events),
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
            "response.output_audio.delta",
        ]
    );
    // Speech from 1000 to 1800 ms: onset minus 300 ms padding, end plus 500 ms hangover.
    let item_id = events[0]["item_id"].as_str().unwrap();
    assert!(item_id.starts_with("item_"));
    assert_eq!(events[0]["audio_start_ms"], 700);
    assert_eq!(events[1]["audio_end_ms"], 2300);
    assert_eq!(events[1]["item_id"], item_id);
    assert_eq!(events[2]["item_id"], item_id);
    assert_eq!(events[2]["previous_item_id"], Value::Null);
    let user = &events[3]["item"];
    assert_eq!(
        (user["id"].as_str(), &user["role"]),
        (Some(item_id), &json!("user"))
    );
    assert_eq!(user["object"], "realtime.item");

    let response = &events[5]["response"];
    let response_id = response["id"].as_str().unwrap();
    assert!(response_id.starts_with("resp_"));
    assert_eq!(response["status"], "in_progress");
    let added = &events[6];
    assert_eq!(added["response_id"], response_id);
    assert_eq!(added["output_index"], 0);
    let assistant = &added["item"];
    let assistant_id = assistant["id"].as_str().unwrap();
    assert!(assistant_id.starts_with("item_"));
    assert_eq!(
        (&assistant["type"], &assistant["role"], &assistant["status"]),
        (
            &json!("message"),
            &json!("assistant"),
            &json!("in_progress")
        )
    );
    assert_eq!(events[7]["previous_item_id"], item_id);

    let rest: Vec<Value> = h.run().into_iter().map(|(_, e)| e).collect();
    let tail: Vec<&str> = types(&rest)
        .into_iter()
        .filter(|t| *t != "response.output_audio.delta")
        .collect();
    assert_eq!(
        tail,
        [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    assert_eq!(
        only(&rest, "response.output_audio_transcript.done")["transcript"],
        "(echo)"
    );
    let done = &only(&rest, "response.done")["response"];
    assert_eq!(done["id"], response_id);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"].as_array().unwrap().len(), 1);
    assert_eq!(done["output"][0]["id"], assistant_id);
    assert_eq!(done["output"][0]["status"], "completed");
    assert!(done["output"][0]["content"][0].get("audio").is_none());

    // The echo is exactly the caller's turn: 700..2300 ms of what was appended.
    let echo = delta_bytes(&[events, rest].concat());
    assert_eq!(echo.len(), 1600 * 8);
    assert_eq!(echo, audio[700 * 8..2300 * 8]);
}

#[test]
fn deltas_are_paced_four_times_faster_than_real_time() {
    let mut h = Harness::echo();
    h.use_pcmu(server_vad());
    let start = h.now;
    let first = h.append(&utterance(AudioFormat::Pcmu, 1500), AudioFormat::Pcmu);
    assert_eq!(delta_bytes(&first).len(), 800, "first delta carries 100 ms");
    let rest = h.run();
    let deltas: Vec<_> = rest
        .iter()
        .filter(|(_, e)| e["type"] == "response.output_audio.delta")
        .collect();
    // 2300 ms of echo: 23 deltas of 100 ms, 25 ms apart on the virtual clock.
    assert_eq!(deltas.len(), 22);
    for (i, (at, event)) in deltas.iter().enumerate() {
        assert_eq!(*at - start, Duration::from_millis(25) * (i as u32 + 1));
        assert_eq!(
            BASE64
                .decode(event["delta"].as_str().unwrap())
                .unwrap()
                .len(),
            800
        );
    }
    let (done_at, _) = rest.last().unwrap();
    let audio_ms = 2300;
    assert!(Duration::from_millis(audio_ms) >= (*done_at - start) * 4);
}

#[test]
fn unpaced_engine_sends_all_audio_at_once() {
    let config = EngineConfig {
        realtime_factor: 0,
        ..EngineConfig::default()
    };
    let (mut h, _) = Harness::new(config);
    h.use_pcmu(server_vad());
    let events = h.append(&utterance(AudioFormat::Pcmu, 500), AudioFormat::Pcmu);
    assert_eq!(delta_bytes(&events).len(), 1300 * 8);
    assert_eq!(types(&events).last(), Some(&"response.done"));
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn pcm16_sessions_echo_at_24khz() {
    let mut h = Harness::echo();
    let f = AudioFormat::Pcm16;
    let mut events = h.append(&utterance(f, 600), f);
    events.extend(h.run().into_iter().map(|(_, e)| e));
    assert_eq!(
        only(&events, "input_audio_buffer.speech_started")["audio_start_ms"],
        700
    );
    assert_eq!(
        only(&events, "input_audio_buffer.speech_stopped")["audio_end_ms"],
        2100
    );
    assert_eq!(delta_bytes(&events).len(), 1400 * 48);
}

#[test]
fn pcmu_input_is_echoed_as_pcm16_output() {
    let mut h = Harness::echo();
    let events = h.send(json!({"type": "session.update", "session": {
        "type": "realtime",
        "audio": {"input": {"format": {"type": "audio/pcmu"}}}
    }}));
    assert_eq!(
        events[0]["session"]["audio"]["output"]["format"]["type"],
        "audio/pcm"
    );
    let events = pcmu_turn(&mut h, 400);
    assert_eq!(delta_bytes(&events).len(), 1200 * 48);
}

#[test]
fn truncate_is_checked_like_the_real_service() {
    let mut h = Harness::echo();
    h.use_pcmu(server_vad());
    let events = pcmu_turn(&mut h, 800);
    let user_id = only(&events, "input_audio_buffer.committed")["item_id"].clone();
    let assistant_id = only(&events, "response.output_item.added")["item"]["id"].clone();

    let truncate = |item_id: &Value, audio_end_ms: u64| {
        json!({"type": "conversation.item.truncate", "event_id": "evt_client_1",
               "item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms})
    };
    let events = h.send(truncate(&json!("item_nope"), 10));
    assert_eq!(error_of(&events)["type"], "invalid_request_error");

    let events = h.send(truncate(&user_id, 10));
    assert_eq!(
        error_of(&events)["message"],
        "Only model output audio messages can be truncated"
    );

    let events = h.send(truncate(&assistant_id, 1700));
    let error = error_of(&events);
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(
        error["message"],
        "Audio content of 1600ms is already shorter than 1700ms"
    );
    assert_eq!(error["event_id"], "evt_client_1");

    let events = h.send(truncate(&assistant_id, 1000));
    assert_eq!(types(&events), ["conversation.item.truncated"]);
    assert_eq!(events[0]["item_id"], assistant_id);
    assert_eq!(events[0]["content_index"], 0);
    assert_eq!(events[0]["audio_end_ms"], 1000);

    let events = h.send(truncate(&assistant_id, 1200));
    assert_eq!(
        error_of(&events)["message"],
        "Audio content of 1000ms is already shorter than 1200ms"
    );
}

#[test]
fn truncating_the_streaming_item_stops_its_audio() {
    let mut h = Harness::echo();
    h.use_pcmu(server_vad());
    let events = h.append(&utterance(AudioFormat::Pcmu, 800), AudioFormat::Pcmu);
    let item_id = only(&events, "response.output_item.added")["item"]["id"].clone();
    // One more delta: 200 ms generated.
    let at = h.session.poll_timeout().unwrap();
    h.session.handle_timeout(at);
    assert_eq!(types(&h.drain()), ["response.output_audio.delta"]);

    let events = h.send(
        json!({"type": "conversation.item.truncate", "item_id": item_id,
                               "content_index": 0, "audio_end_ms": 200}),
    );
    assert_eq!(
        types(&events),
        [
            "conversation.item.truncated",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    assert_eq!(events[2]["transcript"], "");
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn cancel_and_one_response_at_a_time() {
    let mut h = Harness::echo();
    let events = h.send(json!({"type": "response.cancel", "event_id": "c1"}));
    let error = error_of(&events);
    assert_eq!(error["code"], "response_cancel_not_active");
    assert_eq!(error["event_id"], "c1");

    let events = h.send(json!({"type": "response.create"}));
    let response_id = only(&events, "response.created")["response"]["id"].clone();
    assert_eq!(delta_bytes(&events).len(), 100 * 48);

    let events = h.send(json!({"type": "response.create"}));
    assert_eq!(
        error_of(&events)["code"],
        "conversation_already_has_active_response"
    );

    let events = h.send(json!({"type": "response.cancel", "response_id": "resp_other"}));
    assert_eq!(error_of(&events)["code"], "response_cancel_not_active");

    let events = h.send(json!({"type": "response.cancel"}));
    assert_eq!(
        types(&events),
        [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    assert_eq!(events[3]["item"]["status"], "incomplete");
    let done = &events[5]["response"];
    assert_eq!(done["id"], response_id);
    assert_eq!(done["status"], "cancelled");
    assert_eq!(
        done["status_details"],
        json!({"type": "cancelled", "reason": "client_cancelled"})
    );
    assert_eq!(h.session.poll_timeout(), None);
    assert_eq!(
        types(&h.send(json!({"type": "response.create"})))[0],
        "response.created"
    );
}

#[test]
fn a_response_without_caller_audio_is_a_chime() {
    let mut h = Harness::echo();
    h.use_pcmu(server_vad());
    let mut events = h.send(json!({"type": "response.create"}));
    events.extend(h.run().into_iter().map(|(_, e)| e));
    assert_eq!(delta_bytes(&events).len(), 600 * 8);
    assert_eq!(
        only(&events, "response.output_audio_transcript.done")["transcript"],
        "(chime)"
    );
}

#[test]
fn barge_in_cancels_the_response_with_turn_detected() {
    let mut h = Harness::echo();
    h.use_pcmu(server_vad());
    let events = h.append(&utterance(AudioFormat::Pcmu, 800), AudioFormat::Pcmu);
    let item_id = only(&events, "response.output_item.added")["item"]["id"].clone();
    let at = h.session.poll_timeout().unwrap();
    h.session.handle_timeout(at);
    h.drain();

    let events = h.append(
        &tone(&[300.0], 200, 0.3, AudioFormat::Pcmu),
        AudioFormat::Pcmu,
    );
    assert_eq!(types(&events)[0], "input_audio_buffer.speech_started");
    let done = &only(&events, "response.done")["response"];
    assert_eq!(done["status"], "cancelled");
    assert_eq!(done["status_details"]["reason"], "turn_detected");
    assert_eq!(h.session.poll_timeout(), None);

    // The bridge then tells what was played; 200 ms were generated.
    let events = h.send(
        json!({"type": "conversation.item.truncate", "item_id": item_id,
                               "content_index": 0, "audio_end_ms": 150}),
    );
    assert_eq!(types(&events), ["conversation.item.truncated"]);
}

#[test]
fn without_interrupt_response_the_response_keeps_playing() {
    let mut h = Harness::echo();
    h.use_pcmu(json!({"type": "server_vad", "interrupt_response": false}));
    h.append(&utterance(AudioFormat::Pcmu, 800), AudioFormat::Pcmu);
    let events = h.append(
        &tone(&[300.0], 200, 0.3, AudioFormat::Pcmu),
        AudioFormat::Pcmu,
    );
    assert_eq!(types(&events), ["input_audio_buffer.speech_started"]);
    assert!(h.session.poll_timeout().is_some());
}

#[test]
fn scripted_call_after_the_echo() {
    let mut h = Harness::with_script(vec![ScriptedCall {
        turn: 1,
        tool: "end_call".into(),
        arguments: r#"{"reason":"goodbye"}"#.into(),
        say_first: true,
    }]);
    h.use_pcmu(server_vad());
    let events = pcmu_turn(&mut h, 400);
    assert_eq!(delta_bytes(&events).len(), 1200 * 8);
    let from_call: Vec<&str> = types(&events)
        .into_iter()
        .skip_while(|t| *t != "response.output_audio.done")
        .collect();
    assert_eq!(
        from_call,
        [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.output_item.added",
            "conversation.item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    let response_id = only(&events, "response.created")["response"]["id"].clone();
    let added = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.added")
        .nth(1)
        .unwrap();
    let call = &added["item"];
    assert_eq!(added["output_index"], 1);
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "end_call");
    assert_eq!(call["arguments"], "");
    assert_eq!(call["status"], "in_progress");
    let call_id = call["call_id"].as_str().unwrap();
    assert!(call_id.starts_with("call_"));
    let args_done = only(&events, "response.function_call_arguments.done");
    assert_eq!(args_done["response_id"], response_id);
    assert_eq!(args_done["item_id"], call["id"]);
    assert_eq!(args_done["output_index"], 1);
    assert_eq!(args_done["call_id"], call_id);
    assert_eq!(args_done["name"], "end_call");
    assert_eq!(args_done["arguments"], r#"{"reason":"goodbye"}"#);
    let output = &only(&events, "response.done")["response"]["output"];
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(output[1]["arguments"], r#"{"reason":"goodbye"}"#);
    assert_eq!(output[1]["status"], "completed");

    let events = h.send(json!({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_unknown", "output": "{}"}}));
    assert_eq!(error_of(&events)["type"], "invalid_request_error");
    let events = h.send(json!({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call_id, "output": "{\"ok\":true}"}}));
    assert_eq!(
        types(&events),
        ["conversation.item.added", "conversation.item.done"]
    );
    assert_eq!(events[0]["item"]["output"], "{\"ok\":true}");
    assert_eq!(events[0]["previous_item_id"], call["id"]);

    let mut events = h.send(json!({"type": "response.create"}));
    events.extend(h.run().into_iter().map(|(_, e)| e));
    assert_eq!(
        only(&events, "response.output_audio_transcript.done")["transcript"],
        "(chime)"
    );
    assert!(
        events
            .iter()
            .all(|e| e["type"] != "response.function_call_arguments.done")
    );
}

#[test]
fn scripted_call_without_speech_on_the_second_turn() {
    let mut h = Harness::with_script(vec![ScriptedCall {
        turn: 2,
        tool: "transfer_call".into(),
        arguments: r#"{"target":"sales"}"#.into(),
        say_first: false,
    }]);
    h.use_pcmu(server_vad());
    let first = pcmu_turn(&mut h, 400);
    assert!(
        first
            .iter()
            .all(|e| e["type"] != "response.function_call_arguments.done")
    );
    let events = h.append(&utterance(AudioFormat::Pcmu, 400), AudioFormat::Pcmu);
    let from_response: Vec<&str> = types(&events)
        .into_iter()
        .skip_while(|t| *t != "response.created")
        .collect();
    assert_eq!(
        from_response,
        [
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    assert_eq!(
        only(&events, "response.function_call_arguments.done")["name"],
        "transfer_call"
    );
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn manual_turns_without_vad() {
    let mut h = Harness::echo();
    h.use_pcmu(Value::Null);
    let events = h.send(json!({"type": "input_audio_buffer.commit", "event_id": "e1"}));
    let error = error_of(&events);
    assert_eq!(error["code"], "input_audio_buffer_commit_empty");
    assert_eq!(error["event_id"], "e1");

    let events = h.append(&utterance(AudioFormat::Pcmu, 500), AudioFormat::Pcmu);
    assert!(events.is_empty(), "no VAD events: {events:?}");
    let events = h.send(json!({"type": "input_audio_buffer.commit"}));
    assert_eq!(
        types(&events),
        [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done"
        ]
    );
    let mut events = h.send(json!({"type": "response.create"}));
    events.extend(h.run().into_iter().map(|(_, e)| e));
    assert_eq!(delta_bytes(&events).len(), 2500 * 8);

    h.append(&silence(AudioFormat::Pcmu, 200), AudioFormat::Pcmu);
    assert_eq!(
        types(&h.send(json!({"type": "input_audio_buffer.clear"}))),
        ["input_audio_buffer.cleared"]
    );
    let events = h.send(json!({"type": "input_audio_buffer.commit"}));
    assert_eq!(error_of(&events)["code"], "input_audio_buffer_commit_empty");
}

#[test]
fn bad_input_is_answered_with_errors_and_the_session_goes_on() {
    let mut h = Harness::echo();
    let cases = [
        ("{not json", "invalid_json"),
        ("[1,2]", "missing_required_parameter"),
        (
            r#"{"type":"response.explode","event_id":"x"}"#,
            "unknown_event",
        ),
        (
            r#"{"type":"input_audio_buffer.append","audio":"***"}"#,
            "invalid_value",
        ),
        (r#"{"type":"input_audio_buffer.append"}"#, "invalid_event"),
        (
            r#"{"type":"conversation.item.truncate","item_id":"a"}"#,
            "invalid_event",
        ),
        (
            r#"{"type":"conversation.item.create","item":{"type":"bogus"}}"#,
            "invalid_event",
        ),
        (r#"{"type":"session.update"}"#, "invalid_event"),
        (
            r#"{"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcm","rate":16000}}}}}"#,
            "invalid_value",
        ),
        (
            r#"{"type":"session.update","session":{"modalities":["audio"]}}"#,
            "unknown_parameter",
        ),
        (
            r#"{"type":"conversation.item.delete","item_id":"item_x"}"#,
            "item_not_found",
        ),
    ];
    for (text, code) in cases {
        h.session.handle_client(h.now, text);
        let events = h.drain();
        let error = error_of(&events);
        assert_eq!(error["type"], "invalid_request_error", "{text}");
        assert_eq!(error["code"], code, "{text}");
    }
    h.session
        .handle_client(h.now, r#"{"type":"response.explode","event_id":"evt_9"}"#);
    assert_eq!(error_of(&h.drain())["event_id"], "evt_9");

    // Still the default format, and still working.
    let events = h.send(json!({"type": "session.update", "session": {"type": "realtime"}}));
    assert_eq!(
        events[0]["session"]["audio"]["input"]["format"]["type"],
        "audio/pcm"
    );
    let events = h.send(json!({"type": "response.create"}));
    assert_eq!(types(&events)[0], "response.created");
}

#[test]
fn text_items_are_accepted_without_a_response() {
    let mut h = Harness::echo();
    let events = h.send(json!({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "Caller pressed 5"}]}}));
    assert_eq!(
        types(&events),
        ["conversation.item.added", "conversation.item.done"]
    );
    let item = &events[0]["item"];
    assert_eq!(item["role"], "user");
    assert_eq!(item["content"][0]["text"], "Caller pressed 5");
    assert_eq!(h.session.poll_timeout(), None);

    let id = item["id"].clone();
    let events = h.send(json!({"type": "conversation.item.retrieve", "item_id": id}));
    assert_eq!(events[0]["item"]["id"], id);
    let events = h.send(json!({"type": "conversation.item.delete", "item_id": id}));
    assert_eq!(types(&events), ["conversation.item.deleted"]);

    let events = h.send(json!({"type": "conversation.item.create", "item": {
        "id": "item_mine", "type": "message", "role": "robot", "content": []}}));
    assert_eq!(error_of(&events)["param"], "item.role");
}

#[test]
fn user_audio_items_are_echoed() {
    let mut h = Harness::echo();
    h.use_pcmu(Value::Null);
    let audio = tone(&[440.0], 300, 0.3, AudioFormat::Pcmu);
    let events = h.send(json!({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_audio", "audio": BASE64.encode(&audio)}]}}));
    assert_eq!(
        types(&events),
        ["conversation.item.added", "conversation.item.done"]
    );
    let mut events = h.send(json!({"type": "response.create"}));
    events.extend(h.run().into_iter().map(|(_, e)| e));
    assert_eq!(delta_bytes(&events), audio);
}

/// `ms` of white noise at about `dbfs` RMS, in µ-law.
fn noise_pcmu(ms: usize, dbfs: f64) -> Vec<u8> {
    let peak = 32768.0 * 10f64.powf(dbfs / 20.0) * 3f64.sqrt();
    let mut state: u32 = 0x1234_5678;
    (0..ms * 8)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let uniform = f64::from(state >> 8) / f64::from(1u32 << 24) * 2.0 - 1.0;
            crate::audio::g711::ulaw_encode((uniform * peak) as i16)
        })
        .collect()
}

#[test]
fn the_threshold_sets_the_speech_level() {
    let mut h = Harness::echo();
    h.use_pcmu(server_vad());
    let events = h.append(&noise_pcmu(2000, -50.0), AudioFormat::Pcmu);
    assert!(
        events.is_empty(),
        "-50 dBFS is below 0.5's -40 dBFS: {events:?}"
    );

    h.use_pcmu(json!({"type": "server_vad", "threshold": 0.1, "create_response": false}));
    let mut audio = noise_pcmu(1000, -50.0);
    audio.extend(silence(AudioFormat::Pcmu, 1000));
    let events = h.append(&audio, AudioFormat::Pcmu);
    assert_eq!(
        types(&events),
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
        ],
        "-50 dBFS is above 0.1's -56 dBFS"
    );
    // The audio clock counts every millisecond appended this session.
    assert_eq!(events[0]["audio_start_ms"], 2000 - 300);
    assert_eq!(events[1]["audio_end_ms"], 3000 + 500);
}
