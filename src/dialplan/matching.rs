//! Choosing a route for a called number: [`normalize_number`], the order in which
//! [`Dialplan::route_for`] tries exact numbers, prefixes, patterns and the default, and how a
//! [`NumberMatch`] is displayed (as written in a dialplan file).

use std::fmt;

use super::{Dialplan, NumberMatch, Route};

impl Dialplan {
    /// The route for a call to `called`: an exact match, else the longest matching prefix,
    /// else the first matching pattern in load order, else the default route. `called` is
    /// normalised with [`normalize_number`] first. `None` means the call must be rejected.
    pub fn route_for(&self, called: &str) -> Option<&Route> {
        let number = normalize_number(called);
        let routes = &self.routes;
        routes
            .iter()
            .find(|r| matches!(&r.number, NumberMatch::Exact(n) if *n == number))
            .or_else(|| {
                routes
                    .iter()
                    .filter_map(|r| match &r.number {
                        NumberMatch::Prefix(p) if number.starts_with(p.as_str()) => {
                            Some((p.len(), r))
                        }
                        _ => None,
                    })
                    // `max_by_key` keeps the last of equal keys; reversing keeps the first.
                    .rev()
                    .max_by_key(|(len, _)| *len)
                    .map(|(_, r)| r)
            })
            .or_else(|| {
                routes
                    .iter()
                    .find(|r| matches!(&r.number, NumberMatch::Pattern(re) if re.is_match(&number)))
            })
            .or_else(|| {
                routes
                    .iter()
                    .find(|r| matches!(r.number, NumberMatch::Default))
            })
    }

    /// The route with this name.
    pub fn route_named(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// The route taken by numbers nothing else matches, if there is one.
    pub fn default_route(&self) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| matches!(r.number, NumberMatch::Default))
    }
}

/// The number part of a called party, as routes match it: surrounding spaces, a display name
/// and angle brackets, a `sip:`/`sips:`/`tel:` scheme, the `@host` part and any `;params` or
/// `?headers` are removed. When what is left is a phone number (`+`, digits, `*`, `#`), the
/// visual separators `-`, `.`, `(`, `)` and spaces are removed too.
///
/// `sip:+14155550100@trunk.example.com;user=phone` and `tel:+1-415-555-0100` both give
/// `+14155550100`; `sip:sales@pbx.example.com` gives `sales`.
pub fn normalize_number(called: &str) -> String {
    let mut s = called.trim();
    match (s.find('<'), s.rfind('>')) {
        (Some(open), Some(close)) if open < close => s = &s[open + 1..close],
        _ => {}
    }
    for scheme in ["sips:", "sip:", "tel:"] {
        if s.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        {
            s = &s[scheme.len()..];
            break;
        }
    }
    let user = s[..s.find([';', '?', '@']).unwrap_or(s.len())].trim();
    let compact: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    if !digits.is_empty()
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    {
        compact
    } else {
        user.to_string()
    }
}

impl fmt::Display for NumberMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(n) => write!(f, "exact {n:?}"),
            Self::Prefix(p) => write!(f, "prefix {p:?}"),
            Self::Pattern(re) => {
                let source = re.as_str();
                let source = source
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(source);
                // As written in a TOML literal string, so backslashes read as in the file.
                if source.contains('\'') || source.chars().any(char::is_control) {
                    write!(f, "pattern {source:?}")
                } else {
                    write!(f, "pattern '{source}'")
                }
            }
            Self::Default => f.write_str("default"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn normalises_called_numbers() {
        for (called, number) in [
            ("+14155550100", "+14155550100"),
            (" +14155550100 ", "+14155550100"),
            (
                "sip:+14155550100@trunk.example.com;user=phone",
                "+14155550100",
            ),
            ("SIPS:+14155550100@trunk.example.com:5061", "+14155550100"),
            (
                "tel:+1-415-555-0100;phone-context=example.com",
                "+14155550100",
            ),
            ("\"Front desk\" <sip:100@pbx.example.com>", "100"),
            ("sip:alice@example.com", "alice"),
            ("sip:+1415?subject=x", "+1415"),
            ("+1 (415) 555.0100", "+14155550100"),
            ("sip:@example.com", ""),
            ("", ""),
            ("é:ü", "é:ü"),
        ] {
            assert_eq!(normalize_number(called), number, "{called}");
        }
    }

    #[test]
    fn number_matches_display_as_written() {
        let plan = Dialplan::from_str(
            Path::new("t.toml"),
            "[[route]]\nname = \"p\"\nmatch = { pattern = '\\+44\\d+' }\n\
             [[route]]\nname = \"e\"\nmatch = { exact = \"tel:+1-555\" }\n",
        )
        .expect("valid");
        assert_eq!(plan.routes[0].number.to_string(), r"pattern '\+44\d+'");
        // Exact and prefix numbers are normalised like called numbers.
        assert_eq!(plan.routes[1].number.to_string(), r#"exact "+1555""#);
        assert!(plan.route_for("sip:+1555@example.com").is_some());
    }
}
