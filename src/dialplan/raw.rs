//! The dialplan TOML as written: serde types for one `[[route]]` table and the tables inside
//! it, with the spans that problems point at. Unknown fields are rejected here; every other
//! rule is checked when a raw route is validated (see `validate.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Spanned<String>,
    #[serde(rename = "match")]
    pub(super) number: Spanned<RawMatch>,
    pub(super) model: Option<Spanned<String>>,
    pub(super) voice: Option<Spanned<String>>,
    pub(super) instructions: Option<Spanned<String>>,
    pub(super) audio_format: Option<Spanned<String>>,
    pub(super) greeting: Option<Spanned<String>>,
    pub(super) turn_detection: Option<Spanned<RawTurnDetection>>,
    pub(super) transcription: Option<Spanned<RawTranscription>>,
    pub(super) limits: Option<RawLimits>,
    pub(super) dtmf: Option<RawDtmf>,
    #[serde(default)]
    pub(super) tools: Vec<RawTool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub(super) exact: Option<Spanned<String>>,
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) pattern: Option<Spanned<String>>,
    pub(super) default: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTurnDetection {
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) threshold: Option<Spanned<f64>>,
    pub(super) prefix_padding_ms: Option<Spanned<u32>>,
    pub(super) silence_duration_ms: Option<Spanned<u32>>,
    pub(super) create_response: Option<Spanned<bool>>,
    pub(super) interrupt_response: Option<Spanned<bool>>,
    pub(super) eagerness: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTranscription {
    pub(super) model: Spanned<String>,
    pub(super) language: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_duration_s: Option<Spanned<u64>>,
    pub(super) caller_silence_s: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDtmf {
    pub(super) to_model: Option<bool>,
    #[serde(default)]
    pub(super) bindings: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTool {
    pub(super) name: Spanned<String>,
    pub(super) description: Spanned<String>,
    pub(super) parameters: Option<Spanned<Value>>,
    pub(super) action: Spanned<RawAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) target: Option<Spanned<String>>,
    pub(super) target_arg: Option<Spanned<String>>,
    pub(super) digits: Option<Spanned<String>>,
    pub(super) digits_arg: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
    pub(super) headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}
