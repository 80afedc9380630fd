//! Validation of one `[[route]]` on its own: a [`RawRoute`] as written becomes a [`Route`],
//! or problems that say what is wrong with it. This module checks the route's own fields
//! (match, model, voice, audio, turn detection, transcription, limits) and leaves its tools
//! to `tools.rs` and its DTMF keys to `dtmf.rs`; [`RouteCx`] collects the problems of all.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::across::{MatchKey, Site};
use super::dtmf::validate_dtmf;
use super::location::SourceText;
use super::raw::{RawLimits, RawMatch, RawRoute, RawTranscription, RawTurnDetection};
use super::tools::validate_tool;
use super::{Limits, NumberMatch, Problem, Route, Tool, normalize_number};
use crate::audio::AudioFormat;
use crate::realtime::event::{Transcription, TurnDetection};

/// Realtime model of a route that names none.
pub const DEFAULT_MODEL: &str = "gpt-realtime";
/// Voice of a route that names none.
pub const DEFAULT_VOICE: &str = "marin";
/// Instructions of a route that gives none.
pub const DEFAULT_INSTRUCTIONS: &str = "You are a friendly assistant answering a phone call. \
Keep your answers short and conversational: the caller hears you over the phone and cannot \
see any formatting. If you did not understand the caller, ask them to repeat.";
/// Longest call (and caller silence) limit a dialplan may set, in seconds: one day.
pub const MAX_LIMIT_S: u64 = 86_400;

const AUDIO_FORMATS: [(&str, AudioFormat); 3] = [
    ("pcmu", AudioFormat::Pcmu),
    ("pcma", AudioFormat::Pcma),
    ("pcm16", AudioFormat::Pcm16),
];
const EAGERNESS: [&str; 4] = ["low", "medium", "high", "auto"];

/// Validation state of one route: where it is, and the problems found so far.
pub(super) struct RouteCx<'a, 'p> {
    source: &'a SourceText<'a>,
    /// The route's name, when it has a usable one.
    route: Option<String>,
    /// Position of the route in its file's `route` array.
    index: usize,
    problems: &'p mut Vec<Problem>,
    /// Whether a problem was found. `validate_tool` clears it while it checks one tool, to
    /// tell that tool's own problems, and then restores it.
    pub(super) failed: bool,
}

impl<'a, 'p> RouteCx<'a, 'p> {
    /// Starts validating the route at `index` of its file's `route` array. `name` is the
    /// route's name as written: problems name the route only when it is not blank.
    pub(super) fn new(
        source: &'a SourceText<'a>,
        name: &str,
        index: usize,
        problems: &'p mut Vec<Problem>,
    ) -> Self {
        Self {
            source,
            route: (!name.trim().is_empty()).then(|| name.to_string()),
            index,
            problems,
            failed: false,
        }
    }

    pub(super) fn error(&mut self, span: &Range<usize>, field: &str, message: impl Into<String>) {
        self.failed = true;
        let field = match self.route {
            Some(_) => field.to_string(),
            None => format!("route[{}].{field}", self.index),
        };
        let problem = self
            .source
            .problem(span, self.route.as_deref(), Some(field), message);
        self.problems.push(problem);
    }
}

/// Validates one route; the returned site holds the route when it has no mistakes.
pub(super) fn validate_route(raw: RawRoute, cx: &mut RouteCx<'_, '_>) -> Site {
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if name.trim().is_empty() {
        cx.error(&name_span, "name", "must not be empty");
    } else if name.chars().any(char::is_control) {
        cx.error(&name_span, "name", "must not contain control characters");
    }
    let match_span = raw.number.span();
    let number = validate_match(raw.number, cx);

    let model = text_or(raw.model, "model", DEFAULT_MODEL, cx);
    let voice = text_or(raw.voice, "voice", DEFAULT_VOICE, cx);
    let instructions = text_or(raw.instructions, "instructions", DEFAULT_INSTRUCTIONS, cx);
    let greeting = raw.greeting.map(|g| {
        if g.get_ref().trim().is_empty() {
            cx.error(
                &g.span(),
                "greeting",
                "must not be empty (leave it out to let the caller speak first)",
            );
        }
        g.into_inner()
    });
    let audio_format = match raw.audio_format {
        None => AudioFormat::Pcmu,
        Some(f) => match AUDIO_FORMATS.iter().find(|(n, _)| n == f.get_ref()) {
            Some((_, format)) => *format,
            None => {
                let message = format!(
                    "{:?} is not an audio format; use one of {}",
                    f.get_ref(),
                    list(AUDIO_FORMATS.iter().map(|(n, _)| n))
                );
                cx.error(&f.span(), "audio_format", message);
                AudioFormat::Pcmu
            }
        },
    };
    let turn_detection = validate_turn_detection(raw.turn_detection, cx);
    let transcription = raw.transcription.map(|t| validate_transcription(t, cx));
    let limits = raw
        .limits
        .map(|l| validate_limits(l, cx))
        .unwrap_or_default();

    let declared: Vec<String> = raw.tools.iter().map(|t| t.name.get_ref().clone()).collect();
    let mut tools: Vec<Tool> = Vec::with_capacity(raw.tools.len());
    for (index, tool) in raw.tools.into_iter().enumerate() {
        let name_span = tool.name.span();
        let field = format!("tools[{index}].name");
        if let Some(tool) = validate_tool(index, tool, cx) {
            if tools.iter().any(|t| t.name == tool.name) {
                let message = format!("{:?} is already the name of another tool", tool.name);
                cx.error(&name_span, &field, message);
            } else {
                tools.push(tool);
            }
        }
    }
    let dtmf = validate_dtmf(raw.dtmf, &tools, &declared, cx);

    let key = number.as_ref().map(|n| match n {
        NumberMatch::Exact(n) => MatchKey::Exact(n.clone()),
        NumberMatch::Prefix(p) => MatchKey::Prefix(p.clone()),
        NumberMatch::Pattern(_) => MatchKey::Pattern,
        NumberMatch::Default => MatchKey::Default,
    });
    let mut site = Site {
        file: 0,
        path: cx.source.path.to_path_buf(),
        index: cx.index,
        name: cx
            .route
            .as_ref()
            .map(|_| (name.clone(), cx.source.position(name_span.start))),
        number: key.map(|k| (k, cx.source.position(match_span.start))),
        route: None,
    };
    if let (false, Some(number)) = (cx.failed, number) {
        site.route = Some(Route {
            name,
            number,
            model,
            voice,
            instructions,
            audio_format,
            turn_detection,
            transcription,
            greeting,
            limits,
            tools,
            dtmf,
        });
    }
    site
}

/// A text field that must not be empty when present, with its default.
fn text_or(
    value: Option<Spanned<String>>,
    field: &str,
    default: &str,
    cx: &mut RouteCx<'_, '_>,
) -> String {
    match value {
        None => default.to_string(),
        Some(v) => {
            if v.get_ref().trim().is_empty() {
                cx.error(
                    &v.span(),
                    field,
                    "must not be empty (leave it out for the default)",
                );
            }
            v.into_inner()
        }
    }
}

/// The items quoted and separated by commas, for messages.
pub(super) fn list<'a>(items: impl IntoIterator<Item = &'a &'a str>) -> String {
    items
        .into_iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The route's match; `None` (with the mistake reported) when it is not valid.
fn validate_match(raw: Spanned<RawMatch>, cx: &mut RouteCx<'_, '_>) -> Option<NumberMatch> {
    let span = raw.span();
    let raw = raw.into_inner();
    let given = [
        raw.exact.is_some(),
        raw.prefix.is_some(),
        raw.pattern.is_some(),
        raw.default.is_some(),
    ]
    .into_iter()
    .filter(|&g| g)
    .count();
    if given != 1 {
        cx.error(
            &span,
            "match",
            "must have exactly one of `exact`, `prefix`, `pattern` or `default = true`",
        );
        return None;
    }
    let number = |value: Spanned<String>, field: &str, cx: &mut RouteCx<'_, '_>| {
        let normalized = normalize_number(value.get_ref());
        if normalized.is_empty() {
            cx.error(&value.span(), field, "must not be empty");
            None
        } else if normalized
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            let message = format!("{:?} is not a number or SIP user", value.get_ref());
            cx.error(&value.span(), field, message);
            None
        } else {
            Some(normalized)
        }
    };
    if let Some(exact) = raw.exact {
        number(exact, "match.exact", cx).map(NumberMatch::Exact)
    } else if let Some(prefix) = raw.prefix {
        number(prefix, "match.prefix", cx).map(NumberMatch::Prefix)
    } else if let Some(pattern) = raw.pattern {
        let anchored = format!("^(?:{})$", pattern.get_ref());
        match regex_lite::Regex::new(&anchored) {
            Ok(re) => Some(NumberMatch::Pattern(re)),
            Err(e) => {
                let message = format!("invalid regular expression: {e}");
                cx.error(&pattern.span(), "match.pattern", message);
                None
            }
        }
    } else if let Some(default) = raw.default.filter(|d| !*d.get_ref()) {
        cx.error(
            &default.span(),
            "match.default",
            "must be `true`; use `exact`, `prefix` or `pattern` for other routes",
        );
        None
    } else {
        Some(NumberMatch::Default)
    }
}

fn validate_turn_detection(
    raw: Option<Spanned<RawTurnDetection>>,
    cx: &mut RouteCx<'_, '_>,
) -> Option<TurnDetection> {
    let Some(raw) = raw else {
        return Some(server_vad_defaults());
    };
    let raw = raw.into_inner();
    let kind = raw.kind.get_ref().as_str();
    const SERVER: &[&str] = &["server_vad"];
    const BOTH: &[&str] = &["server_vad", "semantic_vad"];
    const SEMANTIC: &[&str] = &["semantic_vad"];
    // Each optional field, where it is written, and the types it applies to.
    type FieldRule = (&'static str, Option<Range<usize>>, &'static [&'static str]);
    let fields: [FieldRule; 6] = [
        (
            "threshold",
            raw.threshold.as_ref().map(Spanned::span),
            SERVER,
        ),
        (
            "prefix_padding_ms",
            raw.prefix_padding_ms.as_ref().map(Spanned::span),
            SERVER,
        ),
        (
            "silence_duration_ms",
            raw.silence_duration_ms.as_ref().map(Spanned::span),
            SERVER,
        ),
        (
            "create_response",
            raw.create_response.as_ref().map(Spanned::span),
            BOTH,
        ),
        (
            "interrupt_response",
            raw.interrupt_response.as_ref().map(Spanned::span),
            BOTH,
        ),
        (
            "eagerness",
            raw.eagerness.as_ref().map(Spanned::span),
            SEMANTIC,
        ),
    ];
    if !["server_vad", "semantic_vad", "none"].contains(&kind) {
        let message = format!(
            "{kind:?} is not a turn detection type; use \"server_vad\", \"semantic_vad\" or \"none\""
        );
        cx.error(&raw.kind.span(), "turn_detection.type", message);
        return None;
    }
    for (field, span, types) in fields {
        let Some(span) = span else { continue };
        if !types.contains(&kind) {
            let message = format!("does not apply to type = {kind:?}");
            cx.error(&span, &format!("turn_detection.{field}"), message);
        }
    }
    let create_response = Some(raw.create_response.is_none_or(Spanned::into_inner));
    let interrupt_response = Some(raw.interrupt_response.is_none_or(Spanned::into_inner));
    match kind {
        "server_vad" => {
            let threshold = raw.threshold.map_or(0.5, |t| {
                if !(0.0..=1.0).contains(t.get_ref()) {
                    cx.error(
                        &t.span(),
                        "turn_detection.threshold",
                        format!("{} is not between 0 and 1", t.get_ref()),
                    );
                }
                t.into_inner()
            });
            Some(TurnDetection::ServerVad {
                threshold: Some(threshold),
                prefix_padding_ms: Some(raw.prefix_padding_ms.map_or(300, Spanned::into_inner)),
                silence_duration_ms: Some(raw.silence_duration_ms.map_or(500, Spanned::into_inner)),
                create_response,
                interrupt_response,
            })
        }
        "semantic_vad" => {
            let eagerness = raw.eagerness.map_or_else(
                || "auto".to_string(),
                |e| {
                    if !EAGERNESS.contains(&e.get_ref().as_str()) {
                        let message = format!(
                            "{:?} is not an eagerness; use one of {}",
                            e.get_ref(),
                            list(&EAGERNESS)
                        );
                        cx.error(&e.span(), "turn_detection.eagerness", message);
                    }
                    e.into_inner()
                },
            );
            Some(TurnDetection::SemanticVad {
                eagerness: Some(eagerness),
                create_response,
                interrupt_response,
            })
        }
        _ => None,
    }
}

/// Server VAD with the Realtime API's documented defaults, spelled out.
fn server_vad_defaults() -> TurnDetection {
    TurnDetection::ServerVad {
        threshold: Some(0.5),
        prefix_padding_ms: Some(300),
        silence_duration_ms: Some(500),
        create_response: Some(true),
        interrupt_response: Some(true),
    }
}

fn validate_transcription(
    raw: Spanned<RawTranscription>,
    cx: &mut RouteCx<'_, '_>,
) -> Transcription {
    let raw = raw.into_inner();
    if raw.model.get_ref().trim().is_empty() {
        cx.error(
            &raw.model.span(),
            "transcription.model",
            "must not be empty",
        );
    }
    let bad_language = raw.language.as_ref().filter(|language| {
        language.get_ref().is_empty()
            || !language
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if let Some(language) = bad_language {
        let message = format!(
            "{:?} is not a language code such as \"en\"",
            language.get_ref()
        );
        cx.error(&language.span(), "transcription.language", message);
    }
    Transcription {
        model: raw.model.into_inner(),
        language: raw.language.map(Spanned::into_inner),
    }
}

fn validate_limits(raw: RawLimits, cx: &mut RouteCx<'_, '_>) -> Limits {
    let mut seconds = |value: Spanned<u64>, field: &str| {
        let s = *value.get_ref();
        if s == 0 || s > MAX_LIMIT_S {
            let message = format!("{s} is not between 1 and {MAX_LIMIT_S} seconds");
            cx.error(&value.span(), field, message);
        }
        Duration::from_secs(s.min(MAX_LIMIT_S))
    };
    let defaults = Limits::default();
    Limits {
        max_duration: raw.max_duration_s.map_or(defaults.max_duration, |v| {
            seconds(v, "limits.max_duration_s")
        }),
        caller_silence: raw
            .caller_silence_s
            .map(|v| seconds(v, "limits.caller_silence_s")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::dialplan::Dialplan;

    #[test]
    fn limits_are_bounded() {
        let text = |limits: &str| {
            format!(
                "[[route]]\nname = \"a\"\nmatch = {{ default = true }}\nlimits = {{ {limits} }}\n"
            )
        };
        let ok = Dialplan::from_str(
            Path::new("t.toml"),
            &text("max_duration_s = 86400, caller_silence_s = 20"),
        )
        .expect("valid");
        assert_eq!(
            ok.routes[0].limits.max_duration,
            Duration::from_secs(86_400)
        );
        assert_eq!(
            ok.routes[0].limits.caller_silence,
            Some(Duration::from_secs(20))
        );
        for bad in [
            "max_duration_s = 86401",
            "caller_silence_s = 0",
            "max_duration_s = -5",
        ] {
            let err = Dialplan::from_str(Path::new("t.toml"), &text(bad)).expect_err(bad);
            assert_eq!(err.problems()[0].line, 4, "{err}");
        }
    }
}
