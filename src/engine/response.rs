//! One model response of the engine, from `response.created` to `response.done`: an optional
//! assistant audio message streamed as `response.output_audio.delta` events faster than real
//! time, then an optional function call, each announced and closed with the GA item and
//! content-part events. Cancellation and truncation end the audio early.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::conversation::{Conversation, ItemKind, wire_item};
use super::outbox::Outbox;
use super::script::ScriptedCall;
use super::settings::SessionSettings;
use crate::audio::AudioFormat;
use crate::realtime::event::{ResponseInfo, ServerEvent, ServerItem};

/// Milliseconds of audio carried by one `response.output_audio.delta`.
pub(crate) const DELTA_MS: u64 = 100;

/// What a response will produce.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResponsePlan {
    /// Audio in the session's output format and its transcript; `None` for a bare tool call.
    pub(crate) audio: Option<(Vec<u8>, String)>,
    /// A function call made after the audio.
    pub(crate) call: Option<ScriptedCall>,
    /// Caller audio the response answers, for the usage estimate.
    pub(crate) input_audio_ms: u64,
}

/// Whether a response is still producing events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    Active,
    Done,
}

#[derive(Debug)]
struct AudioStream {
    item: ServerItem,
    previous_item_id: Option<String>,
    output_index: u32,
    audio: Vec<u8>,
    sent: usize,
    transcript: String,
}

/// The response in progress.
#[derive(Debug)]
pub(crate) struct ActiveResponse {
    id: String,
    format: AudioFormat,
    /// The fields of the `response` object that do not change while it runs.
    template: Value,
    output: Vec<ServerItem>,
    stream: Option<AudioStream>,
    call: Option<ScriptedCall>,
    /// Wall-clock spacing of deltas; `None` sends them all at once.
    pacing: Option<Duration>,
    next_at: Instant,
    input_audio_ms: u64,
    output_audio_ms: u64,
}

impl ActiveResponse {
    /// Starts a response: emits `response.created` and opens the audio message, if any. The
    /// first delta is due at `now`; call [`ActiveResponse::advance`] to send it.
    pub(crate) fn start(
        now: Instant,
        plan: ResponsePlan,
        settings: &SessionSettings,
        conversation_id: &str,
        pacing: Option<Duration>,
        out: &mut Outbox,
        conv: &mut Conversation,
    ) -> Self {
        let id = out.id("resp");
        let template = json!({
            "id": id,
            "object": "realtime.response",
            "conversation_id": conversation_id,
            "output_modalities": settings.output_modalities,
            "max_output_tokens": settings.max_output_tokens,
            "audio": {"output": {"format": settings.output_format.spec(), "voice": settings.voice}},
            "metadata": null,
        });
        let mut response = Self {
            id,
            format: settings.output_format,
            template,
            output: Vec::new(),
            stream: None,
            call: plan.call,
            pacing,
            next_at: now,
            input_audio_ms: plan.input_audio_ms,
            output_audio_ms: 0,
        };
        let created = response.object("in_progress", None);
        out.emit("response.created", json!({ "response": created }));
        if let Some((audio, transcript)) = plan.audio {
            response.open_audio(audio, transcript, out, conv);
        }
        response
    }

    /// The response id (`resp_…`).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// When the next delta is due, while audio remains to be paced.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match (&self.stream, self.pacing) {
            (Some(_), Some(_)) => Some(self.next_at),
            _ => None,
        }
    }

    /// The assistant message whose audio is still streaming.
    pub(crate) fn streaming_item(&self) -> Option<&str> {
        self.stream.as_ref().map(|s| s.item.id.as_str())
    }

    /// Sends every delta due by `now`; once the audio is out, makes the scripted call and
    /// emits `response.done`.
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        out: &mut Outbox,
        conv: &mut Conversation,
    ) -> Progress {
        while let Some(stream) = &mut self.stream {
            if stream.sent >= stream.audio.len() {
                self.close_audio("completed", None, out, conv);
                continue;
            }
            if let Some(interval) = self.pacing {
                if self.next_at > now {
                    return Progress::Active;
                }
                self.next_at += interval;
            }
            let chunk = self.format.bytes_per_ms() * DELTA_MS as usize;
            let end = (stream.sent + chunk).min(stream.audio.len());
            out.emit_event(&ServerEvent::AudioDelta {
                response_id: self.id.clone(),
                item_id: stream.item.id.clone(),
                output_index: stream.output_index,
                content_index: 0,
                delta: BASE64.encode(&stream.audio[stream.sent..end]),
            });
            stream.sent = end;
            conv.set_generated(&stream.item.id, self.format.ms_of(end));
        }
        if let Some(call) = self.call.take() {
            self.make_call(&call, out, conv);
        }
        let done = self.object("completed", None);
        out.emit("response.done", json!({ "response": done }));
        Progress::Done
    }

    /// Cancels the response (`reason`: `client_cancelled` or `turn_detected`): closes the audio
    /// message as incomplete, drops the pending call and emits `response.done` (cancelled).
    pub(crate) fn cancel(mut self, reason: &str, out: &mut Outbox, conv: &mut Conversation) {
        if self.stream.is_some() {
            self.close_audio("incomplete", None, out, conv);
        }
        let details = json!({"type": "cancelled", "reason": reason});
        let done = self.object("cancelled", Some(details));
        out.emit("response.done", json!({ "response": done }));
    }

    /// Stops streaming the audio message after the client truncated it; its transcript is
    /// gone, as on the real service. The rest of the response carries on.
    pub(crate) fn stop_truncated(&mut self, out: &mut Outbox, conv: &mut Conversation) {
        if self.stream.is_some() {
            self.close_audio("incomplete", Some(String::new()), out, conv);
        }
    }

    fn open_audio(
        &mut self,
        audio: Vec<u8>,
        transcript: String,
        out: &mut Outbox,
        conv: &mut Conversation,
    ) {
        let item = ServerItem {
            id: out.id("item"),
            kind: "message".to_owned(),
            role: Some("assistant".to_owned()),
            status: Some("in_progress".to_owned()),
            ..ServerItem::default()
        };
        let output_index = self.output.len() as u32;
        out.emit(
            "response.output_item.added",
            json!({"response_id": self.id, "output_index": output_index, "item": wire_item(&item)}),
        );
        let previous_item_id =
            conv.push(item.clone(), ItemKind::AssistantAudio { generated_ms: 0 });
        out.emit(
            "conversation.item.added",
            json!({"previous_item_id": previous_item_id, "item": wire_item(&item)}),
        );
        out.emit(
            "response.content_part.added",
            json!({
                "response_id": self.id, "item_id": item.id, "output_index": output_index,
                "content_index": 0, "part": {"type": "output_audio", "transcript": ""},
            }),
        );
        self.stream = Some(AudioStream {
            item,
            previous_item_id,
            output_index,
            audio,
            sent: 0,
            transcript,
        });
    }

    /// Emits the closing events of the audio message, with `transcript` overriding the
    /// planned one.
    fn close_audio(
        &mut self,
        status: &str,
        transcript: Option<String>,
        out: &mut Outbox,
        conv: &mut Conversation,
    ) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let AudioStream {
            mut item,
            previous_item_id,
            output_index,
            sent,
            transcript: planned,
            ..
        } = stream;
        let transcript = transcript.unwrap_or(planned);
        self.output_audio_ms += self.format.ms_of(sent);
        let (response_id, item_id) = (self.id.clone(), item.id.clone());
        out.emit_event(&ServerEvent::AudioDone {
            response_id: response_id.clone(),
            item_id: item_id.clone(),
            output_index,
            content_index: 0,
        });
        let part = json!({"type": "output_audio", "transcript": transcript});
        out.emit(
            "response.output_audio_transcript.done",
            json!({
                "response_id": response_id, "item_id": item_id, "output_index": output_index,
                "content_index": 0, "transcript": transcript,
            }),
        );
        out.emit(
            "response.content_part.done",
            json!({
                "response_id": response_id, "item_id": item_id, "output_index": output_index,
                "content_index": 0, "part": part,
            }),
        );
        item.status = Some(status.to_owned());
        item.content = vec![part];
        self.finish_item(item, output_index, previous_item_id, out, conv);
    }

    fn make_call(&mut self, call: &ScriptedCall, out: &mut Outbox, conv: &mut Conversation) {
        let mut item = ServerItem {
            id: out.id("item"),
            kind: "function_call".to_owned(),
            status: Some("in_progress".to_owned()),
            name: Some(call.tool.clone()),
            call_id: Some(out.id("call")),
            arguments: Some(String::new()),
            ..ServerItem::default()
        };
        let output_index = self.output.len() as u32;
        let call_id = item.call_id.clone().unwrap_or_default();
        out.emit(
            "response.output_item.added",
            json!({"response_id": self.id, "output_index": output_index, "item": wire_item(&item)}),
        );
        let previous_item_id = conv.push(item.clone(), ItemKind::FunctionCall);
        out.emit(
            "conversation.item.added",
            json!({"previous_item_id": previous_item_id, "item": wire_item(&item)}),
        );
        out.emit(
            "response.function_call_arguments.delta",
            json!({
                "response_id": self.id, "item_id": item.id, "output_index": output_index,
                "call_id": call_id, "delta": call.arguments,
            }),
        );
        out.emit_event(&ServerEvent::FunctionCallArgumentsDone {
            response_id: self.id.clone(),
            item_id: item.id.clone(),
            output_index,
            call_id,
            name: call.tool.clone(),
            arguments: call.arguments.clone(),
        });
        item.status = Some("completed".to_owned());
        item.arguments = Some(call.arguments.clone());
        self.finish_item(item, output_index, previous_item_id, out, conv);
    }

    /// `response.output_item.done` and `conversation.item.done` for a finished item.
    fn finish_item(
        &mut self,
        item: ServerItem,
        output_index: u32,
        previous_item_id: Option<String>,
        out: &mut Outbox,
        conv: &mut Conversation,
    ) {
        let wire = wire_item(&item);
        out.emit(
            "response.output_item.done",
            json!({"response_id": self.id, "output_index": output_index, "item": wire}),
        );
        out.emit(
            "conversation.item.done",
            json!({"previous_item_id": previous_item_id, "item": wire}),
        );
        conv.update(&item);
        self.output.push(item);
    }

    /// The `response` object with the given status.
    fn object(&self, status: &str, status_details: Option<Value>) -> Value {
        let info = ResponseInfo {
            id: self.id.clone(),
            status: status.to_owned(),
            status_details,
            output: self.output.clone(),
        };
        let mut value = serde_json::to_value(&info).unwrap_or_else(|_| json!({}));
        if let (Value::Object(map), Value::Object(template)) = (&mut value, &self.template) {
            for (k, v) in template {
                map.insert(k.clone(), v.clone());
            }
            map.insert(
                "output".to_owned(),
                Value::Array(self.output.iter().map(wire_item).collect()),
            );
            map.entry("status_details").or_insert(Value::Null);
            let usage = if status == "in_progress" {
                Value::Null
            } else {
                self.usage()
            };
            map.insert("usage".to_owned(), usage);
        }
        value
    }

    /// An estimate in the real service's shape: about 10 tokens per second of caller audio
    /// and 20 per second of generated audio.
    fn usage(&self) -> Value {
        let input_audio = self.input_audio_ms / 100;
        let output_audio = self.output_audio_ms / 50;
        json!({
            "total_tokens": input_audio + output_audio,
            "input_tokens": input_audio,
            "output_tokens": output_audio,
            "input_token_details": {
                "text_tokens": 0, "audio_tokens": input_audio, "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": 0, "audio_tokens": output_audio},
        })
    }
}
