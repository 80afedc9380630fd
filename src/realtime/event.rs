//! Typed Realtime API events (GA wire format), both directions.
//!
//! Client events are what the bridge sends; server events are what it reads. Both derive
//! `Serialize` and `Deserialize` so that the embedded engine can speak the same protocol from
//! the other side. Only the fields the bridge uses are typed; unknown server events parse as
//! [`ServerEvent::Unknown`] and unknown fields are ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event the client sends to the Realtime server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    #[serde(rename = "session.update")]
    SessionUpdate { session: Box<SessionConfig> },
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend {
        /// Base64 audio in the session's input format.
        audio: String,
    },
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioBufferCommit {},
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioBufferClear {},
    #[serde(rename = "conversation.item.create")]
    ConversationItemCreate { item: ClientItem },
    #[serde(rename = "conversation.item.truncate")]
    ConversationItemTruncate {
        item_id: String,
        content_index: u32,
        audio_end_ms: u64,
    },
    #[serde(rename = "response.create")]
    ResponseCreate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response: Option<ResponseConfig>,
    },
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_id: Option<String>,
    },
}

impl ClientEvent {
    /// The wire name of this event (its `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SessionUpdate { .. } => "session.update",
            Self::InputAudioBufferAppend { .. } => "input_audio_buffer.append",
            Self::InputAudioBufferCommit {} => "input_audio_buffer.commit",
            Self::InputAudioBufferClear {} => "input_audio_buffer.clear",
            Self::ConversationItemCreate { .. } => "conversation.item.create",
            Self::ConversationItemTruncate { .. } => "conversation.item.truncate",
            Self::ResponseCreate { .. } => "response.create",
            Self::ResponseCancel { .. } => "response.cancel",
        }
    }

    /// Serializes to the JSON text frame sent on the wire.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: every map key is a string.
        serde_json::to_string(self).expect("client events serialize")
    }
}

/// GA `session` object of `session.update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// Always `"realtime"`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<SessionAudio>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<FunctionTool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionAudio {
    pub input: AudioInput,
    pub output: AudioOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInput {
    pub format: AudioFormatSpec,
    /// `null` on the wire disables turn detection.
    #[serde(default)]
    pub turn_detection: Option<TurnDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<Transcription>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioOutput {
    pub format: AudioFormatSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

/// GA audio format object: `{"type":"audio/pcmu"}`, `{"type":"audio/pcma"}` or
/// `{"type":"audio/pcm","rate":24000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AudioFormatSpec {
    #[serde(rename = "audio/pcmu")]
    Pcmu,
    #[serde(rename = "audio/pcma")]
    Pcma,
    #[serde(rename = "audio/pcm")]
    Pcm { rate: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TurnDetection {
    #[serde(rename = "server_vad")]
    ServerVad {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_padding_ms: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        silence_duration_ms: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        create_response: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupt_response: Option<bool>,
    },
    #[serde(rename = "semantic_vad")]
    SemanticVad {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eagerness: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        create_response: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupt_response: Option<bool>,
    },
}

impl TurnDetection {
    /// Whether the server cancels an in-progress response by itself when the caller starts
    /// speaking (`interrupt_response`, default true).
    pub fn interrupts_response(&self) -> bool {
        match self {
            Self::ServerVad {
                interrupt_response, ..
            }
            | Self::SemanticVad {
                interrupt_response, ..
            } => interrupt_response.unwrap_or(true),
        }
    }

    /// Whether the server creates a response by itself at the end of a caller turn
    /// (`create_response`, default true).
    pub fn creates_response(&self) -> bool {
        match self {
            Self::ServerVad {
                create_response, ..
            }
            | Self::SemanticVad {
                create_response, ..
            } => create_response.unwrap_or(true),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcription {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// A function tool declared to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionTool {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// Optional body of `response.create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// An item the client creates with `conversation.item.create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientItem {
    #[serde(rename = "message")]
    Message {
        role: String,
        content: Vec<InputContent>,
    },
    #[serde(rename = "function_call_output")]
    FunctionCallOutput { call_id: String, output: String },
}

impl ClientItem {
    /// A user text message.
    pub fn user_text(text: impl Into<String>) -> Self {
        Self::Message {
            role: "user".into(),
            content: vec![InputContent::InputText { text: text.into() }],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InputContent {
    #[serde(rename = "input_text")]
    InputText { text: String },
    #[serde(rename = "input_audio")]
    InputAudio { audio: String },
}

/// An event the Realtime server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    #[serde(rename = "session.created")]
    SessionCreated {
        #[serde(default)]
        session: Value,
    },
    #[serde(rename = "session.updated")]
    SessionUpdated {
        #[serde(default)]
        session: Value,
    },
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted {
        #[serde(default)]
        audio_start_ms: u64,
        #[serde(default)]
        item_id: String,
    },
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped {
        #[serde(default)]
        audio_end_ms: u64,
        #[serde(default)]
        item_id: String,
    },
    #[serde(rename = "input_audio_buffer.committed")]
    InputCommitted {
        #[serde(default)]
        item_id: String,
        #[serde(default)]
        previous_item_id: Option<String>,
    },
    #[serde(rename = "conversation.item.truncated")]
    ItemTruncated {
        item_id: String,
        #[serde(default)]
        content_index: u32,
        audio_end_ms: u64,
    },
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    InputTranscription {
        #[serde(default)]
        item_id: String,
        #[serde(default)]
        transcript: String,
    },
    #[serde(rename = "response.created")]
    ResponseCreated { response: ResponseInfo },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        response_id: String,
        #[serde(default)]
        output_index: u32,
        item: ServerItem,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        response_id: String,
        #[serde(default)]
        output_index: u32,
        item: ServerItem,
    },
    #[serde(rename = "response.output_audio.delta", alias = "response.audio.delta")]
    AudioDelta {
        response_id: String,
        item_id: String,
        #[serde(default)]
        output_index: u32,
        #[serde(default)]
        content_index: u32,
        /// Base64 audio in the session's output format.
        delta: String,
    },
    #[serde(rename = "response.output_audio.done", alias = "response.audio.done")]
    AudioDone {
        response_id: String,
        item_id: String,
        #[serde(default)]
        output_index: u32,
        #[serde(default)]
        content_index: u32,
    },
    #[serde(
        rename = "response.output_audio_transcript.done",
        alias = "response.audio_transcript.done"
    )]
    AudioTranscriptDone {
        #[serde(default)]
        response_id: String,
        #[serde(default)]
        item_id: String,
        #[serde(default)]
        transcript: String,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        #[serde(default)]
        response_id: String,
        #[serde(default)]
        item_id: String,
        #[serde(default)]
        output_index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
    #[serde(rename = "response.done")]
    ResponseDone { response: ResponseInfo },
    #[serde(rename = "error")]
    Error { error: ErrorDetail },
    /// Any event the bridge does not act on.
    #[serde(other)]
    Unknown,
}

impl ServerEvent {
    /// Parses one text frame. Unknown event types parse as [`ServerEvent::Unknown`].
    ///
    /// Audio deltas, most of what a session receives, take a direct path: serde reads an
    /// internally tagged enum by first buffering the whole object (every string copied once
    /// more, the base64 audio included), so a delta is read field by field instead, borrowing
    /// from the text. Anything that path cannot read (an escaped string, a missing field)
    /// goes through the general parse and its errors.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        if (text.contains("output_audio.delta") || text.contains("response.audio.delta"))
            && let Some(delta) = AudioDeltaRef::parse(text)
        {
            return Ok(delta);
        }
        serde_json::from_str(text)
    }

    /// The `type` field of a raw event, for logging events that parsed as `Unknown`.
    pub fn kind_of(text: &str) -> Option<String> {
        #[derive(Deserialize)]
        struct Kind {
            #[serde(rename = "type")]
            kind: String,
        }
        serde_json::from_str::<Kind>(text).ok().map(|k| k.kind)
    }
}

/// An audio delta borrowed from its text (see [`ServerEvent::parse`]).
#[derive(Deserialize)]
struct AudioDeltaRef<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    response_id: &'a str,
    #[serde(borrow)]
    item_id: &'a str,
    #[serde(default)]
    output_index: u32,
    #[serde(default)]
    content_index: u32,
    #[serde(borrow)]
    delta: &'a str,
}

impl AudioDeltaRef<'_> {
    fn parse(text: &str) -> Option<ServerEvent> {
        let d: AudioDeltaRef<'_> = serde_json::from_str(text).ok()?;
        matches!(
            d.kind,
            "response.output_audio.delta" | "response.audio.delta"
        )
        .then(|| ServerEvent::AudioDelta {
            response_id: d.response_id.to_owned(),
            item_id: d.item_id.to_owned(),
            output_index: d.output_index,
            content_index: d.content_index,
            delta: d.delta.to_owned(),
        })
    }
}

/// The `response` object of `response.created` / `response.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseInfo {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<Value>,
    #[serde(default)]
    pub output: Vec<ServerItem>,
}

/// A conversation item as the server reports it (audio bytes are never included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerItem {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Value>,
}

/// The `error` object of an `error` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_read_directly_equal_the_general_parse() {
        for text in [
            r#"{"type":"response.output_audio.delta","event_id":"e1","response_id":"r1","item_id":"i1","output_index":0,"content_index":0,"delta":"AAEC/w=="}"#,
            r#"{ "delta": "AAEC", "type": "response.audio.delta", "item_id": "i2", "response_id": "r2" }"#,
        ] {
            let fast = AudioDeltaRef::parse(text).expect("read directly");
            let general: ServerEvent = serde_json::from_str(text).expect("general parse");
            assert_eq!(fast, general);
            assert_eq!(ServerEvent::parse(text).expect("parse"), general);
        }
    }

    #[test]
    fn deltas_the_direct_path_cannot_read_take_the_general_one() {
        // An escaped slash cannot be borrowed; a missing field is an error either way.
        let escaped = r#"{"type":"response.output_audio.delta","response_id":"r1","item_id":"i1","delta":"AA\/w=="}"#;
        assert!(AudioDeltaRef::parse(escaped).is_none());
        assert!(matches!(
            ServerEvent::parse(escaped),
            Ok(ServerEvent::AudioDelta { delta, .. }) if delta == "AA/w=="
        ));
        let missing = r#"{"type":"response.output_audio.delta","response_id":"r1","delta":"AA"}"#;
        assert!(ServerEvent::parse(missing).is_err());
        // Other events that mention deltas are not deltas.
        let done = r#"{"type":"response.output_audio.done","response_id":"r1","item_id":"i1"}"#;
        assert!(matches!(
            ServerEvent::parse(done),
            Ok(ServerEvent::AudioDone { .. })
        ));
    }
}
