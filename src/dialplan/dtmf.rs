//! Validation of a route's `dtmf` table: which caller keys run which of the route's tools
//! (only tools that need no arguments from the model can be bound), and whether other keys
//! are passed to the model.

use serde_json::Value;

use super::location::field_key;
use super::raw::RawDtmf;
use super::validate::{RouteCx, list};
use super::{Action, DtmfPolicy, Tool, ValueSource};
use crate::audio::tone::dtmf_frequencies;

/// `tools` are the route's valid tools, `declared` the names of all the tools it declares (a
/// binding to a declared tool that has mistakes of its own is not reported again).
pub(super) fn validate_dtmf(
    raw: Option<RawDtmf>,
    tools: &[Tool],
    declared: &[String],
    cx: &mut RouteCx<'_, '_>,
) -> DtmfPolicy {
    let Some(raw) = raw else {
        return DtmfPolicy {
            bindings: Vec::new(),
            to_model: true,
        };
    };
    let mut bindings: Vec<(char, String)> = Vec::new();
    for (key, tool) in raw.bindings {
        let field = format!("dtmf.bindings.{}", field_key(key.get_ref()));
        let mut chars = key.get_ref().chars();
        let digit = match (chars.next(), chars.next()) {
            (Some(c), None) if dtmf_frequencies(c).is_some() => c.to_ascii_uppercase(),
            _ => {
                let message = format!(
                    "{:?} is not a DTMF digit: use one of 0-9, *, #, A-D",
                    key.get_ref()
                );
                cx.error(&key.span(), &field, message);
                continue;
            }
        };
        if bindings.iter().any(|(d, _)| *d == digit) {
            cx.error(&key.span(), &field, format!("digit {digit} is bound twice"));
            continue;
        }
        let Some(bound) = tools.iter().find(|t| t.name == *tool.get_ref()) else {
            if declared.contains(tool.get_ref()) {
                continue;
            }
            let names: Vec<&str> = declared.iter().map(String::as_str).collect();
            let message = if names.is_empty() {
                format!(
                    "{:?} is not a tool of this route (it has none)",
                    tool.get_ref()
                )
            } else {
                format!(
                    "{:?} is not a tool of this route; its tools are {}",
                    tool.get_ref(),
                    list(&names)
                )
            };
            cx.error(&tool.span(), &field, message);
            continue;
        };
        if let Some(reason) = needs_arguments(bound) {
            let message = format!(
                "tool {:?} cannot be bound to a key: {reason}",
                tool.get_ref()
            );
            cx.error(&tool.span(), &field, message);
            continue;
        }
        bindings.push((digit, tool.into_inner()));
    }
    DtmfPolicy {
        bindings,
        to_model: raw.to_model.unwrap_or(true),
    }
}

/// Why a tool cannot run without arguments from the model, if it cannot.
fn needs_arguments(tool: &Tool) -> Option<String> {
    match &tool.action {
        Action::Transfer {
            target: ValueSource::Argument(arg),
        } => return Some(format!("its target comes from the argument {arg:?}")),
        Action::Dtmf {
            digits: ValueSource::Argument(arg),
        } => return Some(format!("its digits come from the argument {arg:?}")),
        _ => {}
    }
    let required = tool
        .parameters
        .get("required")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())?;
    let names: Vec<String> = required.iter().map(Value::to_string).collect();
    Some(format!("it requires the arguments {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::dialplan::Dialplan;

    #[test]
    fn a_bound_key_needs_a_tool_without_required_arguments() {
        let text = r#"
            [[route]]
            name = "a"
            match = { default = true }
            dtmf = { bindings = { "5" = "hook", "a" = "bye" } }

            [[route.tools]]
            name = "hook"
            description = "x"
            parameters = { type = "object", properties = { q = { type = "string" } }, required = ["q"] }
            action = { type = "webhook", url = "https://example.com/" }

            [[route.tools]]
            name = "bye"
            description = "x"
            action = { type = "hangup" }
        "#;
        let err = Dialplan::from_str(Path::new("t.toml"), text).expect_err("invalid");
        let problems = err.problems();
        assert_eq!(problems.len(), 1, "{err}");
        assert_eq!(problems[0].field.as_deref(), Some("dtmf.bindings.5"));
        assert!(
            problems[0].message.contains("requires the arguments \"q\""),
            "{err}"
        );

        let fixed = text.replace(", required = [\"q\"]", "");
        let plan = Dialplan::from_str(Path::new("t.toml"), &fixed).expect("valid");
        let dtmf = &plan.routes[0].dtmf;
        assert_eq!(dtmf.binding('5'), Some("hook"));
        // Letter keys are stored in upper case, as DTMF events report them.
        assert_eq!(dtmf.binding('A'), Some("bye"));
        assert!(dtmf.to_model);
    }
}
