//! Errors of the local engine: [`RequestError`] for a client event the engine rejects (sent back
//! as an `error` event, the connection stays open) and [`EngineError`] for a connection that
//! cannot go on (handshake or transport failure).

use thiserror::Error;
use tokio_tungstenite::tungstenite;

use crate::realtime::event::ErrorDetail;

/// A client event the engine rejects. Every variant becomes an `error` event with
/// `type: "invalid_request_error"`; the session carries on.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RequestError {
    /// The frame is not JSON.
    #[error("We could not parse the JSON body of your request. ({0})")]
    InvalidJson(String),
    /// The event has no string `type`.
    #[error("Missing required parameter: 'type'.")]
    MissingType,
    /// The event `type` is not one the engine knows.
    #[error("Invalid value: '{0}'. Unsupported event type.")]
    UnknownEvent(String),
    /// A known event whose fields do not have the expected shape.
    #[error("Invalid '{event}' event: {detail}")]
    InvalidEvent { event: String, detail: String },
    /// A parameter the protocol does not define.
    #[error("Unknown parameter: '{0}'.")]
    UnknownParameter(String),
    /// A parameter with a value the engine does not accept.
    #[error("Invalid value for '{param}': {detail}")]
    InvalidValue { param: String, detail: String },
    /// `input_audio_buffer.append` whose audio is not valid base64.
    #[error("Invalid 'audio'. Expected base64-encoded audio bytes ({0}).")]
    InvalidAudio(String),
    /// `input_audio_buffer.commit` with less than the minimum audio buffered.
    #[error(
        "Error committing input audio buffer: buffer too small. Expected at least {min_ms}ms of \
         audio, but buffer only has {buffered_ms:.2}ms of audio."
    )]
    CommitEmpty { min_ms: u64, buffered_ms: f64 },
    /// `response.create` while another response is in progress.
    #[error(
        "Conversation already has an active response in progress: {0}. Wait until the response \
         is finished before creating a new one."
    )]
    ActiveResponse(String),
    /// `response.cancel` with no response in progress (or another one than named).
    #[error("Cancellation failed: no active response found")]
    CancelNotActive,
    /// An event names an item the conversation does not hold.
    #[error("Item with item_id '{0}' not found in the conversation.")]
    ItemNotFound(String),
    /// `conversation.item.create` with an id the conversation already holds.
    #[error("Item with item_id '{0}' already exists in the conversation.")]
    DuplicateItem(String),
    /// `conversation.item.truncate` on something other than an assistant audio message.
    #[error("Only model output audio messages can be truncated")]
    NotTruncatable,
    /// `conversation.item.truncate` past the end of the generated audio.
    #[error("Audio content of {generated_ms}ms is already shorter than {audio_end_ms}ms")]
    AudioTooShort {
        generated_ms: u64,
        audio_end_ms: u64,
    },
    /// `function_call_output` for a call the engine never made.
    #[error("Tool call ID '{0}' not found in conversation.")]
    UnknownCallId(String),
}

impl RequestError {
    /// The `error.code` sent on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::MissingType => "missing_required_parameter",
            Self::UnknownEvent(_) => "unknown_event",
            Self::InvalidEvent { .. } => "invalid_event",
            Self::UnknownParameter(_) => "unknown_parameter",
            Self::InvalidValue { .. } | Self::InvalidAudio(_) | Self::NotTruncatable => {
                "invalid_value"
            }
            Self::AudioTooShort { .. } => "invalid_value",
            Self::CommitEmpty { .. } => "input_audio_buffer_commit_empty",
            Self::ActiveResponse(_) => "conversation_already_has_active_response",
            Self::CancelNotActive => "response_cancel_not_active",
            Self::ItemNotFound(_) => "item_not_found",
            Self::DuplicateItem(_) => "item_already_exists",
            Self::UnknownCallId(_) => "invalid_tool_call_id",
        }
    }

    /// The `error.param` sent on the wire: the offending field, when there is one.
    pub fn param(&self) -> Option<String> {
        let param = match self {
            Self::MissingType | Self::UnknownEvent(_) => "type",
            Self::UnknownParameter(p) | Self::InvalidValue { param: p, .. } => {
                return Some(p.clone());
            }
            Self::InvalidAudio(_) => "audio",
            Self::ItemNotFound(_) | Self::NotTruncatable => "item_id",
            Self::DuplicateItem(_) => "item.id",
            Self::AudioTooShort { .. } => "audio_end_ms",
            Self::UnknownCallId(_) => "item.call_id",
            Self::InvalidJson(_)
            | Self::InvalidEvent { .. }
            | Self::CommitEmpty { .. }
            | Self::ActiveResponse(_)
            | Self::CancelNotActive => return None,
        };
        Some(param.to_owned())
    }

    /// The `error` object of the `error` event, naming the client event that failed.
    pub fn detail(&self, client_event_id: Option<String>) -> ErrorDetail {
        ErrorDetail {
            kind: "invalid_request_error".to_owned(),
            code: Some(self.code().to_owned()),
            message: self.to_string(),
            param: self.param(),
            event_id: client_event_id,
        }
    }
}

/// Why a connection to the engine ended abnormally.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The WebSocket upgrade did not complete.
    #[error("WebSocket handshake failed: {0}")]
    Handshake(#[source] Box<tungstenite::Error>),
    /// Reading or writing a WebSocket frame failed.
    #[error("WebSocket transport failed: {0}")]
    Transport(#[source] Box<tungstenite::Error>),
}
