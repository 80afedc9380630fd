//! Scripted tool calls for the local engine, loaded from a small TOML file:
//!
//! ```toml
//! [[turn]]
//! turn = 2                  # the 2nd committed caller turn (1-based)
//! tool = "end_call"
//! arguments = {}            # any TOML table, sent as a JSON string
//! say_first = true          # echo the caller first, then call the tool (default true)
//! ```
//!
//! Errors name the file, line and column.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value as Json;
use thiserror::Error;
use toml::Spanned;

/// One scripted tool call: the response to caller turn `turn` calls `tool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedCall {
    /// The committed caller turn (1-based) whose response makes the call.
    pub turn: u64,
    /// Name of the function to call.
    pub tool: String,
    /// The call's arguments as a JSON object string.
    pub arguments: String,
    /// Whether the response echoes the caller's audio before calling the tool.
    pub say_first: bool,
}

/// The tool calls the engine makes, keyed by caller turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineScript {
    calls: Vec<ScriptedCall>,
}

/// Why a script could not be loaded.
#[derive(Debug, Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read engine script {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid script.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default)]
    turn: Vec<RawTurn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTurn {
    turn: Spanned<i64>,
    tool: Spanned<String>,
    #[serde(default)]
    arguments: toml::Table,
    #[serde(default = "default_say_first")]
    say_first: bool,
}

fn default_say_first() -> bool {
    true
}

impl EngineScript {
    /// A script with the given calls (later duplicates of a turn are ignored).
    pub fn new(calls: Vec<ScriptedCall>) -> Self {
        Self { calls }
    }

    /// Reads and parses the script at `path`.
    pub fn load(path: &Path) -> Result<Self, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses script `text`; `origin` (usually the file name) prefixes error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScriptError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_column(text, offset);
            ScriptError::Invalid {
                origin: origin.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawScript = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, e.message().trim_end().to_owned())
        })?;
        let mut calls: Vec<ScriptedCall> = Vec::with_capacity(raw.turn.len());
        for entry in raw.turn {
            let turn = match u64::try_from(*entry.turn.get_ref()) {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(invalid(
                        entry.turn.span().start,
                        "`turn` must be 1 or more (caller turns count from 1)".to_owned(),
                    ));
                }
            };
            if calls.iter().any(|c| c.turn == turn) {
                return Err(invalid(
                    entry.turn.span().start,
                    format!("turn {turn} is scripted twice"),
                ));
            }
            let tool = entry.tool.get_ref().trim();
            if tool.is_empty() {
                return Err(invalid(
                    entry.tool.span().start,
                    "`tool` must name a function".to_owned(),
                ));
            }
            calls.push(ScriptedCall {
                turn,
                tool: tool.to_owned(),
                arguments: table_to_json(entry.arguments).to_string(),
                say_first: entry.say_first,
            });
        }
        Ok(Self { calls })
    }

    /// The call scripted for caller turn `turn` (1-based), if any.
    pub fn call_for_turn(&self, turn: u64) -> Option<&ScriptedCall> {
        self.calls.iter().find(|c| c.turn == turn)
    }

    /// Every scripted call, in file order.
    pub fn calls(&self) -> &[ScriptedCall] {
        &self.calls
    }
}

impl FromStr for EngineScript {
    type Err = ScriptError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text, "<script>")
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn table_to_json(table: toml::Table) -> Json {
    Json::Object(table.into_iter().map(|(k, v)| (k, to_json(v))).collect())
}

fn to_json(value: toml::Value) -> Json {
    match value {
        toml::Value::String(s) => Json::String(s),
        toml::Value::Integer(i) => Json::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        toml::Value::Boolean(b) => Json::Bool(b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(a) => Json::Array(a.into_iter().map(to_json).collect()),
        toml::Value::Table(t) => table_to_json(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_turns_with_defaults() {
        let script: EngineScript = r#"
[[turn]]
turn = 2
tool = "end_call"
arguments = {}

[[turn]]
turn = 1
tool = "transfer_call"
arguments = { target = "sales", priority = 2, tags = ["a", "b"], nested = { ok = true } }
say_first = false
"#
        .parse()
        .unwrap();
        let end = script.call_for_turn(2).unwrap();
        assert_eq!(end.tool, "end_call");
        assert_eq!(end.arguments, "{}");
        assert!(end.say_first);
        let transfer = script.call_for_turn(1).unwrap();
        assert!(!transfer.say_first);
        let args: Json = serde_json::from_str(&transfer.arguments).unwrap();
        assert_eq!(
            args,
            serde_json::json!({"target": "sales", "priority": 2, "tags": ["a", "b"], "nested": {"ok": true}})
        );
        assert!(script.call_for_turn(3).is_none());
        assert_eq!(script.calls().len(), 2);
    }

    #[test]
    fn arguments_default_to_an_empty_object() {
        let script =
            EngineScript::parse("[[turn]]\nturn = 1\ntool = \"end_call\"\n", "s.toml").unwrap();
        assert_eq!(script.calls()[0].arguments, "{}");
        assert_eq!(
            EngineScript::parse("", "s.toml").unwrap(),
            EngineScript::default()
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let err =
            EngineScript::parse("[[turn]]\nturn = 0\ntool = \"x\"\n", "calls.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("calls.toml:2:8: "), "{msg}");

        let err = EngineScript::parse(
            "[[turn]]\nturn = 1\ntool = \"x\"\nbogus = 1\n",
            "calls.toml",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("calls.toml:4:"), "{err}");

        let err = EngineScript::parse(
            "[[turn]]\nturn = 1\ntool = \"x\"\narguments = \"no\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("c.toml:4:"), "{err}");

        let text = "[[turn]]\nturn = 1\ntool = \"a\"\n[[turn]]\nturn = 1\ntool = \"b\"\n";
        let err = EngineScript::parse(text, "c.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:5:8: turn 1 is scripted twice"),
            "{err}"
        );

        let err = EngineScript::parse("[[turn]\n", "c.toml").unwrap_err();
        assert!(matches!(err, ScriptError::Invalid { line: 1, .. }), "{err}");

        let err = EngineScript::load(Path::new("does-not-exist.toml")).unwrap_err();
        assert!(matches!(err, ScriptError::Read { .. }));
        assert!(err.to_string().contains("does-not-exist.toml"));
    }
}
