//! `X-Twilio-Signature`: base64 HMAC-SHA1, keyed with the account's auth token, over the full
//! URL Twilio requested followed by every form parameter as `name` + `value`, sorted by name
//! (then value); a repeated identical pair counts once, as in Twilio's own validators.
//!
//! Twilio is not consistent about default ports when it signs, so [`validate`] accepts the URL
//! as given, with the scheme's default port added and with the port removed, like Twilio's own
//! validators. WebSocket upgrades are signed over `wss://host/path` with no parameters.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// The signature Twilio sends for a request to `url` with form `params`.
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    mac(auth_token, url, params)
        .map(|m| BASE64.encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `signature` is valid for a request to `url` with form `params`. Compares in
/// constant time.
pub fn validate(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(expected) = BASE64.decode(signature.trim().as_bytes()) else {
        return false;
    };
    url_variants(url).iter().any(|candidate| {
        mac(auth_token, candidate, params).is_some_and(|m| m.verify_slice(&expected).is_ok())
    })
}

/// The URL of a request as the public saw it: `base` (`scheme://host[:port]`, optionally with a
/// path prefix; a trailing `/` is ignored) followed by the request's path and query.
pub fn public_url(base: &str, path_and_query: &str) -> String {
    let base = base.trim_end_matches('/');
    if path_and_query.starts_with('/') {
        format!("{base}{path_and_query}")
    } else {
        format!("{base}/{path_and_query}")
    }
}

/// The WebSocket form of an HTTP URL: `https` becomes `wss`, `http` becomes `ws`; `wss`/`ws`
/// stay; a URL without a scheme gets `wss://`.
pub fn websocket_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => format!("wss://{rest}"),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => format!("ws://{rest}"),
        Some(_) => url.to_owned(),
        None => format!("wss://{url}"),
    }
}

/// The MAC over `url` and the sorted parameters; `None` only if the key were refused, which
/// HMAC never does (keys of any length are hashed or padded).
fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Option<HmacSha1> {
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).ok()?;
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Some(mac)
}

/// `url` as given, with the default port added and with the port removed (deduplicated).
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    if let Some(parts) = UrlParts::split(url) {
        if parts.port.is_none() {
            if let Some(port) = default_port(parts.scheme) {
                variants.push(parts.join(Some(port)));
            }
        } else {
            variants.push(parts.join(None));
        }
    }
    variants.dedup();
    variants
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => Some("443"),
        "http" | "ws" => Some("80"),
        _ => None,
    }
}

/// `scheme://[userinfo@]host[:port]rest`, split just enough to add or remove the port.
struct UrlParts<'a> {
    scheme: &'a str,
    /// Including the trailing `@`, or empty.
    userinfo: &'a str,
    host: &'a str,
    port: Option<&'a str>,
    /// Path, query and fragment.
    rest: &'a str,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Option<Self> {
        let (scheme, after) = url.split_once("://")?;
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        // An IPv6 literal keeps its colons inside the brackets.
        let port_sep = match hostport.rfind(']') {
            Some(close) => hostport[close..].find(':').map(|i| close + i),
            None => hostport.rfind(':'),
        };
        let (host, port) = match port_sep {
            Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
            None => (hostport, None),
        };
        if host.is_empty() {
            return None;
        }
        Some(Self {
            scheme,
            userinfo,
            host,
            port: port.filter(|p| !p.is_empty()),
            rest,
        })
    }

    fn join(&self, port: Option<&str>) -> String {
        let Self {
            scheme,
            userinfo,
            host,
            rest,
            ..
        } = self;
        match port {
            Some(port) => format!("{scheme}://{userinfo}{host}:{port}{rest}"),
            None => format!("{scheme}://{userinfo}{host}{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const EXPECTED: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

    /// The example of Twilio's request-validation docs and its SDKs' tests.
    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn published_vector() {
        assert_eq!(compute(TOKEN, URL, &params()), EXPECTED);
        assert!(validate(TOKEN, URL, &params(), EXPECTED));
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let mut reversed = params();
        reversed.reverse();
        assert_eq!(compute(TOKEN, URL, &reversed), EXPECTED);
    }

    #[test]
    fn repeated_identical_pairs_count_once() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let url = "https://h/p";
        assert_eq!(
            compute(
                TOKEN,
                url,
                &[pair("x", "2"), pair("x", "1"), pair("x", "1")]
            ),
            compute(TOKEN, url, &[pair("x", "1"), pair("x", "2")])
        );
        assert_ne!(
            compute(TOKEN, url, &[pair("x", "2"), pair("x", "1")]),
            compute(TOKEN, url, &[pair("x", "1")])
        );
    }

    #[test]
    fn rejects_wrong_inputs() {
        assert!(!validate("54321", URL, &params(), EXPECTED));
        assert!(!validate(
            TOKEN,
            "https://mycompany.com/myapp.php",
            &params(),
            EXPECTED
        ));
        let mut tampered = params();
        tampered[2].1 = "9999".into();
        assert!(!validate(TOKEN, URL, &tampered, EXPECTED));
        assert!(!validate(TOKEN, URL, &params(), "not base64!"));
        assert!(!validate(TOKEN, URL, &params(), ""));
    }

    #[test]
    fn default_port_is_optional() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let signed_with_port = compute(TOKEN, with_port, &params());
        assert!(validate(TOKEN, URL, &params(), &signed_with_port));
        assert!(validate(TOKEN, with_port, &params(), EXPECTED));

        let ws = "wss://bridge.example.com/twilio/media";
        let signed = compute(TOKEN, "wss://bridge.example.com:443/twilio/media", &[]);
        assert!(validate(TOKEN, ws, &[], &signed));
    }

    #[test]
    fn url_variants_cover_ports() {
        assert_eq!(
            url_variants("http://h/p"),
            vec!["http://h/p".to_owned(), "http://h:80/p".to_owned()]
        );
        assert_eq!(
            url_variants("https://u:pw@h:8443?q=1"),
            vec![
                "https://u:pw@h:8443?q=1".to_owned(),
                "https://u:pw@h?q=1".to_owned()
            ]
        );
        assert_eq!(
            url_variants("wss://[::1]:443/m"),
            vec!["wss://[::1]:443/m".to_owned(), "wss://[::1]/m".to_owned()]
        );
        assert_eq!(url_variants("no-scheme"), vec!["no-scheme".to_owned()]);
    }

    #[test]
    fn public_and_websocket_urls() {
        assert_eq!(
            public_url("https://bridge.example.com/", "/twilio/voice?x=1"),
            "https://bridge.example.com/twilio/voice?x=1"
        );
        assert_eq!(
            public_url("https://bridge.example.com", "twilio/voice"),
            "https://bridge.example.com/twilio/voice"
        );
        assert_eq!(
            websocket_url("https://bridge.example.com"),
            "wss://bridge.example.com"
        );
        assert_eq!(
            websocket_url("http://localhost:8080"),
            "ws://localhost:8080"
        );
        assert_eq!(websocket_url("wss://h"), "wss://h");
        assert_eq!(websocket_url("h.example"), "wss://h.example");
    }
}
