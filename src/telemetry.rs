//! Logging set-up and redaction of personal data.
//!
//! Phone numbers and SIP URIs name people. Everything logged at info and above goes through
//! [`Pii`], which keeps only what an operator needs to tell calls apart (the scheme, the
//! country prefix and the last two digits) and masks the rest.

use std::fmt;
use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The default log filter. The SIP stack logs every packet, raw (numbers included), at info;
/// it is held to warnings unless `RUST_LOG` asks for more.
pub const DEFAULT_FILTER: &str = "info,rsipstack=warn";

/// Installs the process's log subscriber: human-readable lines on stderr, filtered by
/// `RUST_LOG` (default [`DEFAULT_FILTER`]).
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A phone number or address, redacted when displayed.
#[derive(Clone, Copy)]
pub struct Pii<'a>(pub &'a str);

impl fmt::Display for Pii<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.0))
    }
}

impl fmt::Debug for Pii<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Masks every digit and letter of a number or URI user part except a leading `+` with the
/// next digit and the last two digits; hosts after `@` are replaced by `…`.
pub fn redact(value: &str) -> String {
    let (scheme, rest) = match value.split_once(':') {
        Some((s, r)) if matches!(s, "sip" | "sips" | "tel" | "client") => (Some(s), r),
        _ => (None, value),
    };
    let user = rest.split(['@', ';']).next().unwrap_or("");
    let visible_tail = user
        .chars()
        .rev()
        .filter(char::is_ascii_digit)
        .take(2)
        .count();
    let total_digits = user.chars().filter(char::is_ascii_alphanumeric).count();
    let mut out = String::with_capacity(value.len());
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    let mut seen = 0;
    let mut after_plus = false;
    for c in user.chars() {
        if c.is_ascii_alphanumeric() {
            seen += 1;
            let keep = after_plus || seen > total_digits - visible_tail.min(total_digits);
            after_plus = false;
            out.push(if keep { c } else { '*' });
        } else {
            after_plus = c == '+';
            out.push(c);
        }
    }
    if rest.len() > user.len() && rest[user.len()..].starts_with('@') {
        out.push_str("@…");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn numbers_keep_only_country_digit_and_last_two() {
        assert_eq!(redact("+14155550123"), "+1********23");
        assert_eq!(redact("5550123"), "*****23");
        assert_eq!(
            redact("sip:+14155550123@trunk.example.com"),
            "sip:+1********23@…"
        );
        assert_eq!(redact("sip:alice@example.com"), "sip:*****@…");
        assert_eq!(redact(""), "");
    }

    #[test]
    fn no_run_of_three_digits_survives() {
        for n in [
            "+442079460958",
            "sip:100@127.0.0.1",
            "tel:+33142685300;ext=12",
        ] {
            let r = redact(n);
            let longest = r
                .split(|c: char| !c.is_ascii_digit())
                .map(str::len)
                .max()
                .unwrap_or(0);
            assert!(longest <= 2, "{n} -> {r}");
        }
    }
}
