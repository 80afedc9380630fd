//! Dialplans: which route a call takes, and what the model may do on it.
//!
//! A [`Dialplan`] is loaded from the TOML files of a directory (see `file.rs`) into these
//! validated types: a route that exists here is complete and consistent (its tools' actions
//! reference arguments the tool declares, its DTMF bindings name tools that exist, and so on).

mod across;
mod check;
mod dtmf;
mod error;
mod file;
mod location;
mod matching;
mod raw;
mod tools;
mod validate;

pub use check::{CheckSummary, FileSummary, RouteSummary, check};
pub use error::{DialplanError, Problem};
pub use matching::normalize_number;
pub use tools::{DEFAULT_WEBHOOK_TIMEOUT, MAX_WEBHOOK_TIMEOUT_MS};
pub use validate::{DEFAULT_INSTRUCTIONS, DEFAULT_MODEL, DEFAULT_VOICE, MAX_LIMIT_S};

use std::time::Duration;

use serde_json::Value;

use crate::audio::AudioFormat;
use crate::realtime::event::{Transcription, TurnDetection};

/// All routes of a dialplan directory.
#[derive(Debug, Clone)]
pub struct Dialplan {
    /// Routes in load order (files by name, then order within the file).
    pub routes: Vec<Route>,
}

/// How a route is chosen from the called number.
#[derive(Debug, Clone)]
pub enum NumberMatch {
    /// The called number equals this string.
    Exact(String),
    /// The called number starts with this string (longest prefix wins).
    Prefix(String),
    /// The called number matches this regular expression (anchored at both ends).
    Pattern(regex_lite::Regex),
    /// Taken when nothing else matches.
    Default,
}

/// One route: the model session and the tools for calls to matching numbers.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub number: NumberMatch,
    /// Realtime model id, e.g. `gpt-realtime`.
    pub model: String,
    pub voice: String,
    pub instructions: String,
    /// Audio format between the bridge and the model, both directions. `Pcmu` passes a µ-law
    /// phone leg through untouched.
    pub audio_format: AudioFormat,
    /// `None` disables server turn detection.
    pub turn_detection: Option<TurnDetection>,
    pub transcription: Option<Transcription>,
    /// When set, the assistant speaks first: it is asked to say this.
    pub greeting: Option<String>,
    pub limits: Limits,
    pub tools: Vec<Tool>,
    pub dtmf: DtmfPolicy,
}

impl Route {
    /// The tool with this name, if the route declares one.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The call is ended after this long.
    pub max_duration: Duration,
    /// The call is ended when the caller has said nothing for this long while the assistant
    /// was not speaking.
    pub caller_silence: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_duration: Duration::from_secs(3600),
            caller_silence: None,
        }
    }
}

/// A function the model may call, and what the bridge does when it does.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments, as declared to the model.
    pub parameters: Value,
    pub action: Action,
}

/// A dialplan action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// End the call once what the assistant is saying has finished playing.
    Hangup,
    /// Transfer the call (SIP REFER, or a Twilio call update with `<Dial>`).
    Transfer { target: ValueSource },
    /// Send DTMF digits to the caller's side.
    Dtmf { digits: ValueSource },
    /// POST the arguments (JSON) to a URL; the response body goes back to the model.
    Webhook {
        url: String,
        timeout: Duration,
        headers: Vec<(String, String)>,
    },
}

impl Action {
    /// Short name for metrics and logs: `hangup`, `transfer`, `dtmf`, `webhook`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Hangup => "hangup",
            Self::Transfer { .. } => "transfer",
            Self::Dtmf { .. } => "dtmf",
            Self::Webhook { .. } => "webhook",
        }
    }
}

/// Where a string parameter of an action comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// Fixed in the dialplan.
    Fixed(String),
    /// Taken from the named argument of the model's function call.
    Argument(String),
}

/// What caller DTMF digits do on a route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DtmfPolicy {
    /// Digits bound to a tool of the route (run without arguments from the model).
    pub bindings: Vec<(char, String)>,
    /// Whether digits without a binding are passed to the model as a user message.
    pub to_model: bool,
}

impl DtmfPolicy {
    /// The tool bound to `digit`, if any.
    pub fn binding(&self, digit: char) -> Option<&str> {
        self.bindings
            .iter()
            .find(|(d, _)| *d == digit)
            .map(|(_, t)| t.as_str())
    }
}
