//! [`EngineSession`]: the sans-IO state machine of one engine connection. It reads client
//! events (JSON text frames), produces server events of the Realtime GA protocol and asks to
//! be woken at a given instant to pace its audio; it never reads a clock or touches a socket.
//!
//! The engine is an echo agent: each committed caller turn is answered with the caller's own
//! audio, and a response with no new caller audio (a greeting, the answer to a tool result)
//! plays a short chime. An [`EngineScript`] can make chosen turns call a tool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::conversation::{Conversation, ItemKind};
use super::convert::{decode, sample_rate, to_format};
use super::error::RequestError;
use super::input::{InputBuffer, InputEvent, TurnAudio};
use super::outbox::Outbox;
use super::response::{ActiveResponse, DELTA_MS, Progress, ResponsePlan};
use super::script::EngineScript;
use super::settings::SessionSettings;
use crate::audio::AudioFormat;
use crate::audio::tone::tone;
use crate::realtime::event::{ClientEvent, ClientItem, InputContent, ServerEvent, ServerItem};

/// Model name reported when the client does not name one.
pub const DEFAULT_MODEL: &str = "gpt-realtime";

/// Transcript of an echo response.
pub const ECHO_TRANSCRIPT: &str = "(echo)";
/// Transcript of a chime response.
pub const CHIME_TRANSCRIPT: &str = "(chime)";

/// Configuration shared by every connection of one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Tool calls to make on chosen caller turns.
    pub script: Option<EngineScript>,
    /// How much faster than real time response audio is sent: each delta carries 100 ms of
    /// audio and they are `100 / realtime_factor` ms apart (default 4). 0 sends a response's
    /// audio all at once.
    pub realtime_factor: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            script: None,
            realtime_factor: 4,
        }
    }
}

/// Caller audio not yet answered, and the committed turn it came from (`None` for audio
/// given in a `conversation.item.create`).
#[derive(Debug)]
struct FreshAudio {
    turn: Option<u64>,
    audio: TurnAudio,
}

/// The state of one engine connection.
#[derive(Debug)]
pub struct EngineSession {
    config: Arc<EngineConfig>,
    out: Outbox,
    settings: SessionSettings,
    input: InputBuffer,
    conv: Conversation,
    conversation_id: String,
    pacing: Option<Duration>,
    committed_turns: u64,
    fresh: Option<FreshAudio>,
    /// The user item announced by `speech_started`, committed at `speech_stopped`.
    speech_item: Option<String>,
    active: Option<ActiveResponse>,
}

impl EngineSession {
    /// A new session for `model` (empty: [`DEFAULT_MODEL`]); `session.created` is queued.
    pub fn new(config: Arc<EngineConfig>, model: &str) -> Self {
        let mut out = Outbox::new();
        let model = if model.is_empty() {
            DEFAULT_MODEL
        } else {
            model
        };
        let settings = SessionSettings::new(out.id("sess"), model.to_owned());
        let conversation_id = out.id("conv");
        let input = InputBuffer::new(
            settings.input_format,
            settings.turn_detection.as_ref().map(|t| t.vad),
        );
        let pacing = match config.realtime_factor {
            0 => None,
            factor => Some(Duration::from_millis(DELTA_MS) / factor),
        };
        out.emit("session.created", json!({ "session": settings.to_json() }));
        Self {
            config,
            out,
            settings,
            input,
            conv: Conversation::default(),
            conversation_id,
            pacing,
            committed_turns: 0,
            fresh: None,
            speech_item: None,
            active: None,
        }
    }

    /// The session id (`sess_…`).
    pub fn session_id(&self) -> &str {
        &self.settings.id
    }

    /// Handles one client text frame received at `now`. Anything wrong with it is answered
    /// with an `error` event; the session always carries on.
    pub fn handle_client(&mut self, now: Instant, text: &str) {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                self.out
                    .error(&RequestError::InvalidJson(e.to_string()), None);
                return;
            }
        };
        let event_id = value
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Err(err) = self.dispatch(now, &value) {
            self.out.error(&err, event_id);
        }
    }

    /// Handles the deadline of [`EngineSession::poll_timeout`] having passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// The next server event to send, as a JSON text frame.
    pub fn poll_event(&mut self) -> Option<String> {
        self.out.pop()
    }

    /// When [`EngineSession::handle_timeout`] should next be called, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active.as_ref().and_then(ActiveResponse::deadline)
    }

    fn dispatch(&mut self, now: Instant, value: &Value) -> Result<(), RequestError> {
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or(RequestError::MissingType)?;
        match kind {
            "session.update" => {
                let session = value
                    .get("session")
                    .ok_or_else(|| invalid_event(kind, "missing field `session`"))?;
                self.update_session(session)
            }
            "conversation.item.delete" => {
                let item_id = item_id_field(kind, value)?;
                self.conv.delete(item_id)?;
                self.out
                    .emit("conversation.item.deleted", json!({ "item_id": item_id }));
                Ok(())
            }
            "conversation.item.retrieve" => {
                let item = self.conv.get(item_id_field(kind, value)?)?;
                self.out
                    .emit("conversation.item.retrieved", json!({ "item": item }));
                Ok(())
            }
            "input_audio_buffer.append"
            | "input_audio_buffer.commit"
            | "input_audio_buffer.clear"
            | "conversation.item.create"
            | "conversation.item.truncate"
            | "response.create"
            | "response.cancel" => {
                let event = ClientEvent::deserialize(value)
                    .map_err(|e| invalid_event(kind, &e.to_string()))?;
                let client_item_id = value.pointer("/item/id").and_then(Value::as_str);
                self.handle_event(now, event, client_item_id)
            }
            other => Err(RequestError::UnknownEvent(other.to_owned())),
        }
    }

    fn handle_event(
        &mut self,
        now: Instant,
        event: ClientEvent,
        client_item_id: Option<&str>,
    ) -> Result<(), RequestError> {
        match event {
            ClientEvent::SessionUpdate { session } => {
                let session = serde_json::to_value(session)
                    .map_err(|e| invalid_event("session.update", &e.to_string()))?;
                self.update_session(&session)
            }
            ClientEvent::InputAudioBufferAppend { audio } => self.append(now, &audio),
            ClientEvent::InputAudioBufferCommit {} => {
                let turn = self.input.commit()?;
                let item_id = self
                    .speech_item
                    .take()
                    .unwrap_or_else(|| self.out.id("item"));
                self.commit_turn(item_id, turn);
                Ok(())
            }
            ClientEvent::InputAudioBufferClear {} => {
                self.input.clear();
                self.speech_item = None;
                self.out.emit("input_audio_buffer.cleared", json!({}));
                Ok(())
            }
            ClientEvent::ConversationItemCreate { item } => self.create_item(item, client_item_id),
            ClientEvent::ConversationItemTruncate {
                item_id,
                content_index,
                audio_end_ms,
            } => {
                self.conv.truncate(&item_id, content_index, audio_end_ms)?;
                self.out.emit_event(&ServerEvent::ItemTruncated {
                    item_id: item_id.clone(),
                    content_index,
                    audio_end_ms,
                });
                if let Some(active) = &mut self.active {
                    if active.streaming_item() == Some(item_id.as_str()) {
                        active.stop_truncated(&mut self.out, &mut self.conv);
                        self.advance(now);
                    }
                }
                Ok(())
            }
            ClientEvent::ResponseCreate { .. } => {
                if let Some(active) = &self.active {
                    return Err(RequestError::ActiveResponse(active.id().to_owned()));
                }
                self.start_response(now);
                Ok(())
            }
            ClientEvent::ResponseCancel { response_id } => match self.active.take() {
                Some(active) if response_id.as_deref().is_none_or(|id| id == active.id()) => {
                    active.cancel("client_cancelled", &mut self.out, &mut self.conv);
                    Ok(())
                }
                other => {
                    self.active = other;
                    Err(RequestError::CancelNotActive)
                }
            },
        }
    }

    fn update_session(&mut self, session: &Value) -> Result<(), RequestError> {
        self.settings.apply_update(session)?;
        self.input.set_format(self.settings.input_format);
        self.input
            .set_vad(self.settings.turn_detection.as_ref().map(|t| t.vad));
        if !self.input.is_speaking() {
            self.speech_item = None;
        }
        self.out.emit(
            "session.updated",
            json!({ "session": self.settings.to_json() }),
        );
        Ok(())
    }

    fn append(&mut self, now: Instant, audio: &str) -> Result<(), RequestError> {
        let bytes = BASE64
            .decode(audio)
            .map_err(|e| RequestError::InvalidAudio(e.to_string()))?;
        let (create, interrupt) = self
            .settings
            .turn_detection
            .as_ref()
            .map_or((false, false), |t| {
                (t.create_response, t.interrupt_response)
            });
        for event in self.input.append(&bytes) {
            match event {
                InputEvent::SpeechStarted { audio_start_ms } => {
                    let item_id = self.out.id("item");
                    self.out.emit_event(&ServerEvent::SpeechStarted {
                        audio_start_ms,
                        item_id: item_id.clone(),
                    });
                    self.speech_item = Some(item_id);
                    if interrupt {
                        if let Some(active) = self.active.take() {
                            active.cancel("turn_detected", &mut self.out, &mut self.conv);
                        }
                    }
                }
                InputEvent::SpeechStopped { audio_end_ms, turn } => {
                    let item_id = self
                        .speech_item
                        .take()
                        .unwrap_or_else(|| self.out.id("item"));
                    self.out.emit_event(&ServerEvent::SpeechStopped {
                        audio_end_ms,
                        item_id: item_id.clone(),
                    });
                    self.commit_turn(item_id, turn);
                    if create && self.active.is_none() {
                        self.start_response(now);
                    }
                }
            }
        }
        Ok(())
    }

    /// `input_audio_buffer.committed` and the user audio item for a caller turn.
    fn commit_turn(&mut self, item_id: String, turn: TurnAudio) {
        let item = ServerItem {
            id: item_id.clone(),
            kind: "message".to_owned(),
            role: Some("user".to_owned()),
            status: Some("completed".to_owned()),
            content: vec![json!({"type": "input_audio", "transcript": null})],
            ..ServerItem::default()
        };
        let previous_item_id = self.conv.push(item, ItemKind::Message);
        self.out.emit_event(&ServerEvent::InputCommitted {
            item_id: item_id.clone(),
            previous_item_id: previous_item_id.clone(),
        });
        self.announce_item(&item_id, previous_item_id);
        self.committed_turns += 1;
        self.fresh = Some(FreshAudio {
            turn: Some(self.committed_turns),
            audio: turn,
        });
    }

    fn create_item(
        &mut self,
        item: ClientItem,
        client_id: Option<&str>,
    ) -> Result<(), RequestError> {
        if let Some(id) = client_id {
            if self.conv.contains(id) {
                return Err(RequestError::DuplicateItem(id.to_owned()));
            }
        }
        let id = client_id.map_or_else(|| self.out.id("item"), str::to_owned);
        let (item, kind, audio) = match item {
            ClientItem::Message { role, content } => {
                if !matches!(role.as_str(), "user" | "system" | "assistant") {
                    return Err(RequestError::InvalidValue {
                        param: "item.role".to_owned(),
                        detail: "expected 'user', 'system' or 'assistant'".to_owned(),
                    });
                }
                let mut parts = Vec::with_capacity(content.len());
                let mut pcm = Vec::new();
                for part in content {
                    match part {
                        InputContent::InputText { text } => {
                            parts.push(json!({"type": "input_text", "text": text}));
                        }
                        InputContent::InputAudio { audio } if role == "user" => {
                            let bytes = BASE64
                                .decode(audio)
                                .map_err(|e| RequestError::InvalidAudio(e.to_string()))?;
                            decode(self.settings.input_format, &bytes, &mut pcm);
                            parts.push(json!({"type": "input_audio", "transcript": null}));
                        }
                        InputContent::InputAudio { .. } => {
                            return Err(RequestError::InvalidValue {
                                param: "item.content".to_owned(),
                                detail: "only user messages can carry input audio".to_owned(),
                            });
                        }
                    }
                }
                let item = ServerItem {
                    id: id.clone(),
                    kind: "message".to_owned(),
                    role: Some(role),
                    status: Some("completed".to_owned()),
                    content: parts,
                    ..ServerItem::default()
                };
                (item, ItemKind::Message, pcm)
            }
            ClientItem::FunctionCallOutput { call_id, output } => {
                if !self.conv.has_call(&call_id) {
                    return Err(RequestError::UnknownCallId(call_id));
                }
                let item = ServerItem {
                    id: id.clone(),
                    kind: "function_call_output".to_owned(),
                    status: Some("completed".to_owned()),
                    call_id: Some(call_id),
                    ..ServerItem::default()
                };
                (item, ItemKind::FunctionCallOutput { output }, Vec::new())
            }
        };
        let previous_item_id = self.conv.push(item, kind);
        self.announce_item(&id, previous_item_id);
        if !audio.is_empty() {
            let format = self.settings.input_format;
            let end_ms = audio.len() as u64 * 1000 / u64::from(sample_rate(format));
            self.fresh = Some(FreshAudio {
                turn: None,
                audio: TurnAudio {
                    pcm: audio,
                    format,
                    start_ms: 0,
                    end_ms,
                },
            });
        }
        Ok(())
    }

    /// `conversation.item.added` and `conversation.item.done` for a complete item.
    fn announce_item(&mut self, item_id: &str, previous_item_id: Option<String>) {
        let item = self.conv.wire_item(item_id).unwrap_or(Value::Null);
        let body = json!({"previous_item_id": previous_item_id, "item": item});
        self.out.emit("conversation.item.added", body.clone());
        self.out.emit("conversation.item.done", body);
    }

    /// Starts a response answering the unanswered caller audio (or a chime if there is none).
    fn start_response(&mut self, now: Instant) {
        let fresh = self.fresh.take();
        let call = fresh
            .as_ref()
            .and_then(|f| f.turn)
            .and_then(|n| self.config.script.as_ref()?.call_for_turn(n))
            .cloned();
        let format = self.settings.output_format;
        let (audio, transcript, input_audio_ms) = match fresh {
            Some(FreshAudio { audio, .. }) if !audio.pcm.is_empty() => (
                to_format(&audio.pcm, audio.format, format),
                ECHO_TRANSCRIPT,
                audio.end_ms.saturating_sub(audio.start_ms),
            ),
            _ => (chime(format), CHIME_TRANSCRIPT, 0),
        };
        let speak = call.as_ref().is_none_or(|c| c.say_first);
        let plan = ResponsePlan {
            audio: speak.then(|| (audio, transcript.to_owned())),
            call,
            input_audio_ms,
        };
        self.active = Some(ActiveResponse::start(
            now,
            plan,
            &self.settings,
            &self.conversation_id,
            self.pacing,
            &mut self.out,
            &mut self.conv,
        ));
        self.advance(now);
    }

    fn advance(&mut self, now: Instant) {
        if let Some(active) = &mut self.active {
            if active.advance(now, &mut self.out, &mut self.conv) == Progress::Done {
                self.active = None;
            }
        }
    }
}

/// About 600 ms: two rising tones, so the caller hears that the engine answered.
fn chime(format: AudioFormat) -> Vec<u8> {
    let mut audio = tone(&[660.0], 300, 0.25, format);
    audio.extend(tone(&[880.0], 300, 0.25, format));
    audio
}

fn invalid_event(kind: &str, detail: &str) -> RequestError {
    RequestError::InvalidEvent {
        event: kind.to_owned(),
        detail: detail.to_owned(),
    }
}

fn item_id_field<'a>(kind: &str, value: &'a Value) -> Result<&'a str, RequestError> {
    value
        .get("item_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_event(kind, "missing field `item_id`"))
}
