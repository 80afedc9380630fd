//! Validation of a route's `[[route.tools]]`: tool names and descriptions, the JSON Schema of
//! their parameters, and their actions (hangup, transfer, DTMF, webhook), including action
//! fields that take their value from an argument of the model's function call.

use std::ops::Range;
use std::time::Duration;

use serde_json::Value;
use toml::Spanned;

use super::location::field_key;
use super::raw::{RawAction, RawTool};
use super::validate::RouteCx;
use super::{Action, Tool, ValueSource};
use crate::audio::tone::is_dtmf_string;

/// Timeout of a webhook action that sets none.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_millis(5000);
/// Longest webhook timeout a dialplan may set, in milliseconds.
pub const MAX_WEBHOOK_TIMEOUT_MS: u64 = 60_000;

/// Whether `name` is acceptable as a function name: `^[a-zA-Z0-9_-]{1,64}$`.
fn is_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn validate_tool(index: usize, raw: RawTool, cx: &mut RouteCx<'_, '_>) -> Option<Tool> {
    let at = |field: &str| format!("tools[{index}].{field}");
    let failed_before = cx.failed;
    cx.failed = false;

    let name = raw.name.get_ref();
    if !is_tool_name(name) {
        let message =
            format!("{name:?} is not a tool name: use 1 to 64 of a-z, A-Z, 0-9, `_` and `-`");
        cx.error(&raw.name.span(), &at("name"), message);
    }
    if raw.description.get_ref().trim().is_empty() {
        cx.error(
            &raw.description.span(),
            &at("description"),
            "must not be empty: it tells the model when to use the tool",
        );
    }
    let parameters = match raw.parameters {
        None => serde_json::json!({ "type": "object", "properties": {} }),
        Some(p) => {
            validate_parameters(&p, &at("parameters"), cx);
            p.into_inner()
        }
    };
    let action = validate_action(raw.action, &parameters, &at("action"), cx);

    let ok = !cx.failed;
    cx.failed |= failed_before;
    if !ok {
        return None;
    }
    Some(Tool {
        name: raw.name.into_inner(),
        description: raw.description.into_inner(),
        parameters,
        action: action?,
    })
}

/// `parameters` must be a JSON Schema object schema.
fn validate_parameters(p: &Spanned<Value>, field: &str, cx: &mut RouteCx<'_, '_>) {
    let span = p.span();
    let Some(schema) = p.get_ref().as_object() else {
        cx.error(
            &span,
            field,
            "must be a table holding a JSON Schema with type = \"object\"",
        );
        return;
    };
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        cx.error(
            &span,
            &format!("{field}.type"),
            "must be \"object\": the arguments of a tool are an object",
        );
    }
    let properties = match schema.get("properties") {
        None => None,
        Some(Value::Object(properties)) => Some(properties),
        Some(_) => {
            cx.error(
                &span,
                &format!("{field}.properties"),
                "must be a table of property schemas",
            );
            None
        }
    };
    if let Some(properties) = properties {
        for (name, property) in properties {
            if !property.is_object() {
                let message = "must be a table (the property's JSON Schema)";
                let property_field = format!("{field}.properties.{}", field_key(name));
                cx.error(&span, &property_field, message);
            }
        }
    }
    match schema.get("required") {
        None => {}
        Some(Value::Array(required)) => {
            for name in required {
                let declared = name
                    .as_str()
                    .is_some_and(|n| properties.is_some_and(|p| p.contains_key(n)));
                if !declared {
                    let message = format!("{name} is not a property of the tool's parameters");
                    cx.error(&span, &format!("{field}.required"), message);
                }
            }
        }
        Some(_) => cx.error(
            &span,
            &format!("{field}.required"),
            "must be an array of property names",
        ),
    }
}

fn validate_action(
    raw: Spanned<RawAction>,
    parameters: &Value,
    field: &str,
    cx: &mut RouteCx<'_, '_>,
) -> Option<Action> {
    let span = raw.span();
    let raw = raw.into_inner();
    let kind = raw.kind.get_ref().as_str();
    let allowed: &[&str] = match kind {
        "hangup" => &[],
        "transfer" => &["target", "target_arg"],
        "dtmf" => &["digits", "digits_arg"],
        "webhook" => &["url", "timeout_ms", "headers"],
        _ => {
            let message = format!(
                "{kind:?} is not an action; use \"hangup\", \"transfer\", \"dtmf\" or \"webhook\""
            );
            cx.error(&raw.kind.span(), &format!("{field}.type"), message);
            return None;
        }
    };
    let present = [
        ("target", raw.target.as_ref().map(Spanned::span)),
        ("target_arg", raw.target_arg.as_ref().map(Spanned::span)),
        ("digits", raw.digits.as_ref().map(Spanned::span)),
        ("digits_arg", raw.digits_arg.as_ref().map(Spanned::span)),
        ("url", raw.url.as_ref().map(Spanned::span)),
        ("timeout_ms", raw.timeout_ms.as_ref().map(Spanned::span)),
        ("headers", raw.headers.as_ref().map(|_| span.clone())),
    ];
    for (name, at) in present {
        let Some(at) = at else { continue };
        if !allowed.contains(&name) {
            let message = format!("is not a field of a {kind:?} action");
            cx.error(&at, &format!("{field}.{name}"), message);
        }
    }

    match kind {
        "hangup" => Some(Action::Hangup),
        "transfer" => {
            let target = value_source(
                raw.target,
                raw.target_arg,
                ("target", "target_arg"),
                parameters,
                &span,
                field,
                cx,
                |t| {
                    is_transfer_target(t).then_some(()).ok_or_else(|| {
                        format!(
                            "{t:?} is not a transfer target: use a phone number such as \
                         \"+14155550123\" or a `sip:`, `sips:` or `tel:` URI"
                        )
                    })
                },
            )?;
            Some(Action::Transfer { target })
        }
        "dtmf" => {
            let digits = value_source(
                raw.digits,
                raw.digits_arg,
                ("digits", "digits_arg"),
                parameters,
                &span,
                field,
                cx,
                |d| {
                    is_dtmf_string(d).then_some(()).ok_or_else(|| {
                        format!("{d:?} is not a DTMF string: use 0-9, *, #, A-D, and w for a pause")
                    })
                },
            )?;
            Some(Action::Dtmf { digits })
        }
        _ => validate_webhook(raw, &span, field, cx),
    }
}

/// `fixed` or `from_arg` (exactly one): a value fixed in the dialplan, checked by `check`, or
/// the name of a string property of the tool's parameters.
#[allow(clippy::too_many_arguments)]
fn value_source(
    fixed: Option<Spanned<String>>,
    from_arg: Option<Spanned<String>>,
    (fixed_name, arg_name): (&str, &str),
    parameters: &Value,
    span: &Range<usize>,
    field: &str,
    cx: &mut RouteCx<'_, '_>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Option<ValueSource> {
    match (fixed, from_arg) {
        (Some(_), Some(arg)) => {
            let message = format!("give either `{fixed_name}` or `{arg_name}`, not both");
            cx.error(&arg.span(), &format!("{field}.{arg_name}"), message);
            None
        }
        (None, None) => {
            let message = format!("needs `{fixed_name}` (fixed) or `{arg_name}` (from the model)");
            cx.error(span, field, message);
            None
        }
        (Some(fixed), None) => {
            if let Err(message) = check(fixed.get_ref()) {
                cx.error(&fixed.span(), &format!("{field}.{fixed_name}"), message);
            }
            Some(ValueSource::Fixed(fixed.into_inner()))
        }
        (None, Some(arg)) => {
            let field = format!("{field}.{arg_name}");
            let property = parameters
                .get("properties")
                .and_then(|p| p.get(arg.get_ref().as_str()));
            match property {
                None => {
                    let message = format!(
                        "{:?} is not a property of the tool's parameters",
                        arg.get_ref()
                    );
                    cx.error(&arg.span(), &field, message);
                }
                Some(property) => {
                    let kind = property.get("type").filter(|kind| *kind != "string");
                    if let Some(kind) = kind {
                        let message = format!(
                            "property {:?} must have type = \"string\", not {kind}",
                            arg.get_ref()
                        );
                        cx.error(&arg.span(), &field, message);
                    }
                }
            }
            Some(ValueSource::Argument(arg.into_inner()))
        }
    }
}

/// A phone number (`+` and digits, or digits) or a `sip:`, `sips:` or `tel:` URI.
fn is_transfer_target(target: &str) -> bool {
    if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let lower = target.to_ascii_lowercase();
    for scheme in ["sip:", "sips:", "tel:"] {
        if let Some(rest) = lower.strip_prefix(scheme) {
            return !rest.is_empty();
        }
    }
    let digits = target.strip_prefix('+').unwrap_or(target);
    (1..=32).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

fn validate_webhook(
    raw: RawAction,
    span: &Range<usize>,
    field: &str,
    cx: &mut RouteCx<'_, '_>,
) -> Option<Action> {
    let url = match raw.url {
        None => {
            cx.error(span, &format!("{field}.url"), "missing field `url`");
            None
        }
        Some(url) => {
            let problem = match reqwest::Url::parse(url.get_ref()) {
                Err(e) => Some(format!("{:?} is not a URL: {e}", url.get_ref())),
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    Some(format!("{:?} is not an http or https URL", url.get_ref()))
                }
                Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                    Some(format!("{:?} has no host", url.get_ref()))
                }
                Ok(_) => None,
            };
            if let Some(message) = problem {
                cx.error(&url.span(), &format!("{field}.url"), message);
            }
            Some(url.into_inner())
        }
    };
    let timeout = match raw.timeout_ms {
        None => DEFAULT_WEBHOOK_TIMEOUT,
        Some(ms) => {
            let value = *ms.get_ref();
            if !(1..=MAX_WEBHOOK_TIMEOUT_MS).contains(&value) {
                let message =
                    format!("{value} is not between 1 and {MAX_WEBHOOK_TIMEOUT_MS} milliseconds");
                cx.error(&ms.span(), &format!("{field}.timeout_ms"), message);
            }
            Duration::from_millis(value)
        }
    };
    let mut headers = Vec::new();
    for (name, value) in raw.headers.unwrap_or_default() {
        let header_field = format!("{field}.headers.{}", field_key(name.get_ref()));
        if reqwest::header::HeaderName::from_bytes(name.get_ref().as_bytes()).is_err() {
            let message = format!("{:?} is not an HTTP header name", name.get_ref());
            cx.error(&name.span(), &header_field, message);
        }
        if reqwest::header::HeaderValue::from_str(value.get_ref()).is_err() {
            cx.error(
                &value.span(),
                &header_field,
                "is not a valid HTTP header value (no line breaks or control characters)",
            );
        }
        headers.push((name.into_inner(), value.into_inner()));
    }
    Some(Action::Webhook {
        url: url?,
        timeout,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_targets() {
        assert!(is_tool_name("end_call"));
        assert!(is_tool_name("Transfer-2"));
        assert!(is_tool_name(&"a".repeat(64)));
        assert!(!is_tool_name(&"a".repeat(65)));
        assert!(!is_tool_name(""));
        assert!(!is_tool_name("end call"));
        assert!(!is_tool_name("appel_terminé"));

        assert!(is_transfer_target("+14155550123"));
        assert!(is_transfer_target("1001"));
        assert!(is_transfer_target("sip:sales@pbx.example.com"));
        assert!(is_transfer_target("SIPS:sales@pbx.example.com"));
        assert!(is_transfer_target("tel:+14155550123"));
        assert!(!is_transfer_target("sip:"));
        assert!(!is_transfer_target("sales"));
        assert!(!is_transfer_target("+1 415"));
        assert!(!is_transfer_target("http://example.com"));
    }
}
