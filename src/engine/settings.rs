//! The effective configuration of one engine session: defaults, validation and application of
//! a (partial) GA `session.update`, and the full `session` object sent back in
//! `session.created` / `session.updated`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::error::RequestError;
use super::input::VadParams;
use crate::audio::AudioFormat;
use crate::realtime::event::{AudioFormatSpec, TurnDetection};

/// Default `threshold` of server VAD.
pub(crate) const DEFAULT_THRESHOLD: f64 = 0.5;
/// Default `prefix_padding_ms` of server VAD.
pub(crate) const DEFAULT_PREFIX_PADDING_MS: u32 = 300;
/// Default `silence_duration_ms` of server VAD.
pub(crate) const DEFAULT_SILENCE_DURATION_MS: u32 = 500;

/// Effective turn detection, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TurnSettings {
    /// `None` for `server_vad`, the eagerness for `semantic_vad`.
    pub(crate) semantic_eagerness: Option<String>,
    pub(crate) vad: VadParams,
    pub(crate) create_response: bool,
    pub(crate) interrupt_response: bool,
}

impl TurnSettings {
    fn server_vad_defaults() -> Self {
        Self::from_spec(TurnDetection::ServerVad {
            threshold: None,
            prefix_padding_ms: None,
            silence_duration_ms: None,
            create_response: None,
            interrupt_response: None,
        })
    }

    fn from_spec(spec: TurnDetection) -> Self {
        let (create_response, interrupt_response) =
            (spec.creates_response(), spec.interrupts_response());
        match spec {
            TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
                ..
            } => Self {
                semantic_eagerness: None,
                vad: VadParams {
                    threshold: threshold.unwrap_or(DEFAULT_THRESHOLD),
                    prefix_padding_ms: prefix_padding_ms.unwrap_or(DEFAULT_PREFIX_PADDING_MS),
                    silence_duration_ms: silence_duration_ms.unwrap_or(DEFAULT_SILENCE_DURATION_MS),
                },
                create_response,
                interrupt_response,
            },
            // Semantic VAD is approximated by energy VAD with the default parameters.
            TurnDetection::SemanticVad { eagerness, .. } => Self {
                semantic_eagerness: Some(eagerness.unwrap_or_else(|| "auto".to_owned())),
                vad: VadParams {
                    threshold: DEFAULT_THRESHOLD,
                    prefix_padding_ms: DEFAULT_PREFIX_PADDING_MS,
                    silence_duration_ms: DEFAULT_SILENCE_DURATION_MS,
                },
                create_response,
                interrupt_response,
            },
        }
    }

    fn to_json(&self) -> Value {
        match &self.semantic_eagerness {
            None => json!({
                "type": "server_vad",
                "threshold": self.vad.threshold,
                "prefix_padding_ms": self.vad.prefix_padding_ms,
                "silence_duration_ms": self.vad.silence_duration_ms,
                "idle_timeout_ms": null,
                "create_response": self.create_response,
                "interrupt_response": self.interrupt_response,
            }),
            Some(eagerness) => json!({
                "type": "semantic_vad",
                "eagerness": eagerness,
                "create_response": self.create_response,
                "interrupt_response": self.interrupt_response,
            }),
        }
    }
}

/// Everything `session.updated` reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionSettings {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) output_modalities: Vec<String>,
    pub(crate) instructions: String,
    pub(crate) input_format: AudioFormat,
    pub(crate) output_format: AudioFormat,
    pub(crate) turn_detection: Option<TurnSettings>,
    pub(crate) transcription: Value,
    pub(crate) noise_reduction: Value,
    pub(crate) voice: String,
    pub(crate) speed: f64,
    pub(crate) tools: Vec<Value>,
    pub(crate) tool_choice: Value,
    pub(crate) max_output_tokens: Value,
    /// Accepted fields the engine stores and reports but does not act on.
    pub(crate) passthrough: Map<String, Value>,
}

/// Top-level session fields accepted and reported back unchanged.
const PASSTHROUGH: [&str; 5] = ["include", "prompt", "tracing", "truncation", "reasoning"];

impl SessionSettings {
    /// The defaults of a new session.
    pub(crate) fn new(id: String, model: String) -> Self {
        Self {
            id,
            model,
            output_modalities: vec!["audio".to_owned()],
            instructions: String::new(),
            input_format: AudioFormat::Pcm16,
            output_format: AudioFormat::Pcm16,
            turn_detection: Some(TurnSettings::server_vad_defaults()),
            transcription: Value::Null,
            noise_reduction: Value::Null,
            voice: "marin".to_owned(),
            speed: 1.0,
            tools: Vec::new(),
            tool_choice: Value::from("auto"),
            max_output_tokens: Value::from("inf"),
            passthrough: PASSTHROUGH
                .iter()
                .map(|k| ((*k).to_owned(), Value::Null))
                .collect(),
        }
    }

    /// The full GA `session` object.
    pub(crate) fn to_json(&self) -> Value {
        let mut session = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "output_modalities": self.output_modalities,
            "instructions": self.instructions,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "max_output_tokens": self.max_output_tokens,
            "audio": {
                "input": {
                    "format": self.input_format.spec(),
                    "transcription": self.transcription,
                    "noise_reduction": self.noise_reduction,
                    "turn_detection": self.turn_detection.as_ref().map(TurnSettings::to_json),
                },
                "output": {
                    "format": self.output_format.spec(),
                    "voice": self.voice,
                    "speed": self.speed,
                },
            },
        });
        if let Value::Object(map) = &mut session {
            map.extend(self.passthrough.clone());
        }
        session
    }

    /// Applies a `session.update` body. Only the fields present change; on any error nothing
    /// changes.
    pub(crate) fn apply_update(&mut self, update: &Value) -> Result<(), RequestError> {
        let fields = as_object(update, "session")?;
        let mut next = self.clone();
        for (key, value) in fields {
            let param = format!("session.{key}");
            match key.as_str() {
                "type" => {
                    if value.as_str() != Some("realtime") {
                        return Err(invalid(&param, "only 'realtime' sessions are supported"));
                    }
                }
                // The model is fixed when the connection opens.
                "model" | "id" | "object" | "expires_at" => {}
                "output_modalities" => {
                    let modalities: Vec<String> = parse(value, &param)?;
                    let ok = matches!(modalities.as_slice(), [m] if m == "audio" || m == "text");
                    if !ok {
                        return Err(invalid(&param, "expected ['audio'] or ['text']"));
                    }
                    next.output_modalities = modalities;
                }
                "instructions" => next.instructions = parse(value, &param)?,
                "tools" => {
                    let tools: Vec<Value> = parse(value, &param)?;
                    for (i, tool) in tools.iter().enumerate() {
                        if tool.get("name").and_then(Value::as_str).is_none() {
                            return Err(invalid(&format!("{param}[{i}].name"), "missing"));
                        }
                    }
                    next.tools = tools;
                }
                "tool_choice" => next.tool_choice = value.clone(),
                "max_output_tokens" => next.max_output_tokens = value.clone(),
                "audio" => next.apply_audio(value)?,
                k if PASSTHROUGH.contains(&k) => {
                    next.passthrough.insert(key.clone(), value.clone());
                }
                _ => return Err(RequestError::UnknownParameter(param)),
            }
        }
        *self = next;
        Ok(())
    }

    fn apply_audio(&mut self, audio: &Value) -> Result<(), RequestError> {
        for (key, value) in as_object(audio, "session.audio")? {
            let param = format!("session.audio.{key}");
            match key.as_str() {
                "input" => {
                    for (key, value) in as_object(value, &param)? {
                        let param = format!("{param}.{key}");
                        match key.as_str() {
                            "format" => self.input_format = parse_format(value, &param)?,
                            "turn_detection" => {
                                self.turn_detection = if value.is_null() {
                                    None
                                } else {
                                    let spec: TurnDetection = parse(value, &param)?;
                                    let settings = TurnSettings::from_spec(spec);
                                    if !(0.0..=1.0).contains(&settings.vad.threshold) {
                                        return Err(invalid(&param, "threshold must be 0 to 1"));
                                    }
                                    Some(settings)
                                };
                            }
                            "transcription" => self.transcription = value.clone(),
                            "noise_reduction" => self.noise_reduction = value.clone(),
                            _ => return Err(RequestError::UnknownParameter(param)),
                        }
                    }
                }
                "output" => {
                    for (key, value) in as_object(value, &param)? {
                        let param = format!("{param}.{key}");
                        match key.as_str() {
                            "format" => self.output_format = parse_format(value, &param)?,
                            "voice" => self.voice = parse(value, &param)?,
                            "speed" => self.speed = parse(value, &param)?,
                            _ => return Err(RequestError::UnknownParameter(param)),
                        }
                    }
                }
                _ => return Err(RequestError::UnknownParameter(param)),
            }
        }
        Ok(())
    }
}

fn as_object<'a>(value: &'a Value, param: &str) -> Result<&'a Map<String, Value>, RequestError> {
    value
        .as_object()
        .ok_or_else(|| invalid(param, "expected an object"))
}

fn parse<T: DeserializeOwned>(value: &Value, param: &str) -> Result<T, RequestError> {
    T::deserialize(value).map_err(|e| invalid(param, &e.to_string()))
}

/// A GA format object; `audio/pcm` without a rate means 24 kHz.
fn parse_format(value: &Value, param: &str) -> Result<AudioFormat, RequestError> {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        if map.get("type").and_then(Value::as_str) == Some("audio/pcm") {
            map.entry("rate").or_insert(Value::from(24_000));
        }
    }
    let spec: AudioFormatSpec = parse(&value, param)?;
    AudioFormat::from_spec(spec).ok_or_else(|| {
        invalid(
            param,
            "unsupported audio format; expected audio/pcmu, audio/pcma or audio/pcm at 24000 Hz",
        )
    })
}

fn invalid(param: &str, detail: &str) -> RequestError {
    RequestError::InvalidValue {
        param: param.to_owned(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SessionSettings {
        SessionSettings::new("sess_1".into(), "gpt-realtime".into())
    }

    #[test]
    fn defaults_are_pcm24k_and_server_vad() {
        let s = settings().to_json();
        assert_eq!(s["type"], "realtime");
        assert_eq!(
            s["audio"]["input"]["format"],
            json!({"type":"audio/pcm","rate":24000})
        );
        assert_eq!(s["audio"]["output"]["format"]["rate"], 24000);
        let td = &s["audio"]["input"]["turn_detection"];
        assert_eq!(td["type"], "server_vad");
        assert_eq!(td["threshold"], 0.5);
        assert_eq!(td["prefix_padding_ms"], 300);
        assert_eq!(td["silence_duration_ms"], 500);
        assert_eq!(td["create_response"], true);
        assert_eq!(td["interrupt_response"], true);
    }

    #[test]
    fn partial_update_changes_only_given_fields() {
        let mut s = settings();
        s.apply_update(&json!({
            "type": "realtime",
            "instructions": "be brief",
            "audio": {"input": {"format": {"type": "audio/pcmu"},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 200}}}
        }))
        .unwrap();
        assert_eq!(s.input_format, AudioFormat::Pcmu);
        assert_eq!(s.output_format, AudioFormat::Pcm16);
        assert_eq!(s.instructions, "be brief");
        let td = s.turn_detection.clone().unwrap();
        assert_eq!(td.vad.silence_duration_ms, 200);
        assert_eq!(td.vad.prefix_padding_ms, 300);
        s.apply_update(&json!({"audio": {"input": {"turn_detection": null}}}))
            .unwrap();
        assert!(s.turn_detection.is_none());
        assert_eq!(s.to_json()["audio"]["input"]["turn_detection"], Value::Null);
    }

    #[test]
    fn bad_updates_change_nothing() {
        let mut s = settings();
        let before = s.clone();
        let err = s
            .apply_update(&json!({
                "instructions": "x",
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}
            }))
            .unwrap_err();
        assert_eq!(err.param().as_deref(), Some("session.audio.output.format"));
        assert_eq!(s, before);
        let err = s
            .apply_update(&json!({"input_audio_format": "g711_ulaw"}))
            .unwrap_err();
        assert_eq!(err.code(), "unknown_parameter");
        assert!(s.apply_update(&json!("nope")).is_err());
        assert!(s.apply_update(&json!({"type": "transcription"})).is_err());
    }
}
