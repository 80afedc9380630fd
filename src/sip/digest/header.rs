//! Reading Digest header values: the challenges of `WWW-Authenticate` /
//! `Proxy-Authenticate` ([`Challenge`]) and the answers of `Authorization` /
//! `Proxy-Authorization` ([`Credentials`]).
//!
//! The syntax is `scheme name=value, name="quoted \"value\"", …` (RFC 7235 §2.1), with
//! case-insensitive scheme and parameter names, optional whitespace around `=` and `,`, empty
//! list elements tolerated, and several challenges allowed in one value. Any input is read
//! without panicking; what cannot be read is a [`DigestError`].

use super::{Algorithm, DigestError};

/// One Digest challenge from a `WWW-Authenticate` or `Proxy-Authenticate` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// The `qop` options offered, lowercase (empty: the legacy computation without `qop`).
    pub qop: Vec<String>,
    /// `opaque`, to echo back unchanged.
    pub opaque: Option<String>,
    /// `stale=true`: the previous answer was right but its nonce expired; retry with this one.
    pub stale: bool,
}

impl Challenge {
    /// The first supported Digest challenge in a header value (a value may hold several,
    /// separated by commas). When none is supported, the reason the first Digest challenge
    /// was not.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let mut first_error = None;
        for auth in parse_list(value)? {
            if !auth.scheme.eq_ignore_ascii_case("digest") {
                continue;
            }
            match Challenge::from_params(&auth.params) {
                Ok(challenge) => return Ok(challenge),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(DigestError::NotDigest))
    }

    /// The first supported Digest challenge among the values of the challenge headers of one
    /// response, in order (RFC 8760: the server lists the algorithm it prefers first).
    pub fn select<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        values.into_iter().find_map(|v| Challenge::parse(v).ok())
    }

    /// Whether `qop=auth` is offered (otherwise the legacy computation is used).
    pub fn offers_auth(&self) -> bool {
        self.qop.iter().any(|q| q == "auth")
    }

    fn from_params(params: &[(String, String)]) -> Result<Challenge, DigestError> {
        let algorithm = match param(params, "algorithm") {
            Some(name) => name.parse()?,
            None => Algorithm::Md5,
        };
        let qop: Vec<String> = param(params, "qop")
            .map(|list| {
                list.split(',')
                    .map(|q| q.trim().to_ascii_lowercase())
                    .filter(|q| !q.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !qop.is_empty() && !qop.iter().any(|q| q == "auth") {
            return Err(DigestError::UnsupportedQop(qop.join(",")));
        }
        Ok(Challenge {
            realm: required(params, "realm")?,
            nonce: required(params, "nonce")?,
            algorithm,
            qop,
            opaque: param(params, "opaque").map(str::to_string),
            stale: param(params, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// The Digest credentials of an `Authorization` or `Proxy-Authorization` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`, as issued by the server.
    pub nonce: String,
    /// `uri`: the Request-URI the client computed the digest with.
    pub uri: String,
    /// `response`: the digest itself, in hexadecimal.
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `cnonce`.
    pub cnonce: Option<String>,
    /// `nc`, as written (8 hexadecimal digits).
    pub nc: Option<String>,
    /// `qop`, lowercase (absent in the legacy form).
    pub qop: Option<String>,
    /// `opaque`.
    pub opaque: Option<String>,
}

impl Credentials {
    /// Reads a header value holding exactly one set of Digest credentials.
    pub fn parse(value: &str) -> Result<Credentials, DigestError> {
        let mut list = parse_list(value)?.into_iter();
        let (Some(auth), None) = (list.next(), list.next()) else {
            return Err(DigestError::Malformed(
                "expected exactly one set of credentials",
            ));
        };
        if !auth.scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestError::NotDigest);
        }
        let params = &auth.params;
        if param(params, "username*").is_some() {
            return Err(DigestError::UnsupportedParam("username*".into()));
        }
        if param(params, "userhash").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(DigestError::UnsupportedParam("userhash".into()));
        }
        let algorithm = match param(params, "algorithm") {
            Some(name) => name.parse()?,
            None => Algorithm::Md5,
        };
        let optional = |name| param(params, name).map(str::to_string);
        Ok(Credentials {
            username: required(params, "username")?,
            realm: required(params, "realm")?,
            nonce: required(params, "nonce")?,
            uri: required(params, "uri")?,
            response: required(params, "response")?,
            algorithm,
            cnonce: optional("cnonce"),
            nc: optional("nc"),
            qop: param(params, "qop").map(str::to_ascii_lowercase),
            opaque: optional("opaque"),
        })
    }
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn required(params: &[(String, String)], name: &'static str) -> Result<String, DigestError> {
    match param(params, name) {
        Some(value) if !value.is_empty() => Ok(value.to_string()),
        _ => Err(DigestError::MissingParam(name)),
    }
}

/// One challenge or set of credentials: a scheme and its parameters (names lowercase).
#[derive(Debug)]
struct AuthValue {
    scheme: String,
    params: Vec<(String, String)>,
}

/// Reads a comma-separated list of challenges or credentials.
fn parse_list(value: &str) -> Result<Vec<AuthValue>, DigestError> {
    let mut cursor = Cursor { s: value, pos: 0 };
    let mut out = Vec::new();
    loop {
        cursor.skip_separators();
        if cursor.at_end() {
            return Ok(out);
        }
        let scheme = cursor
            .token()
            .ok_or(DigestError::Malformed("expected an authentication scheme"))?;
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            cursor.skip_separators();
            if cursor.at_end() {
                break;
            }
            let start = cursor.pos;
            let name = cursor
                .token()
                .ok_or(DigestError::Malformed("expected a parameter name"))?;
            cursor.skip_whitespace();
            if cursor.peek() != Some(b'=') {
                // A token without `=` starts the next challenge.
                cursor.pos = start;
                break;
            }
            cursor.pos += 1;
            cursor.skip_whitespace();
            let value = if cursor.peek() == Some(b'"') {
                cursor.quoted()?
            } else {
                cursor
                    .bare()
                    .ok_or(DigestError::Malformed("expected a parameter value"))?
                    .to_string()
            };
            let name = name.to_ascii_lowercase();
            if params.iter().any(|(key, _)| *key == name) {
                return Err(DigestError::DuplicateParam(name));
            }
            params.push((name, value));
            cursor.skip_whitespace();
            match cursor.peek() {
                None | Some(b',') => {}
                Some(_) => {
                    return Err(DigestError::Malformed("expected `,` between parameters"));
                }
            }
        }
        out.push(AuthValue {
            scheme: scheme.to_string(),
            params,
        });
    }
}

/// A position in a header value. Delimiters are ASCII, so every position the cursor stops at
/// is a character boundary.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n' | b',')) {
            self.pos += 1;
        }
    }

    /// A token (RFC 7230 `tchar`s), if one starts here.
    fn token(&mut self) -> Option<&'a str> {
        self.take_while(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }

    /// An unquoted value: visible ASCII, tolerant of the `/`, `=`, `:` and `@` some servers
    /// leave unquoted.
    fn bare(&mut self) -> Option<&'a str> {
        self.take_while(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
    }

    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.pos += 1;
        }
        // `accept` only takes ASCII bytes, so `pos` stops at a character boundary.
        (self.pos > start)
            .then(|| self.s.get(start..self.pos))
            .flatten()
    }

    /// A quoted string starting at the opening quote, with its escapes resolved.
    fn quoted(&mut self) -> Result<String, DigestError> {
        let rest = self.s.get(self.pos + 1..).unwrap_or_default();
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            let c = match c {
                '"' => {
                    self.pos += 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => escaped,
                    None => break,
                },
                c => c,
            };
            if c.is_control() && c != '\t' {
                return Err(DigestError::Malformed(
                    "control character in a quoted string",
                ));
            }
            out.push(c);
        }
        Err(DigestError::Malformed("unterminated quoted string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_with_every_parameter() {
        let challenge = Challenge::parse(
            "Digest realm=\"atlanta.com\",\r\n domain=\"sip:ss1.carrier.com\", qop=\"auth,auth-int\",\
             nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=FALSE, algorithm=MD5",
        )
        .expect("parses");
        assert_eq!(
            challenge,
            Challenge {
                realm: "atlanta.com".into(),
                nonce: "f84f1cec41e6cbe5aea9c8e88d359".into(),
                algorithm: Algorithm::Md5,
                qop: vec!["auth".into(), "auth-int".into()],
                opaque: Some(String::new()),
                stale: false,
            }
        );
        assert!(challenge.offers_auth());
    }

    #[test]
    fn case_whitespace_escapes_and_tokens() {
        let challenge = Challenge::parse(
            "  dIgEsT   REALM = \"a \\\"quoted\\\" realm\" ,, NONCE=abc/def== ,\tStale=true,\
             ALGORITHM=sha-256",
        )
        .expect("parses");
        assert_eq!(challenge.realm, "a \"quoted\" realm");
        assert_eq!(challenge.nonce, "abc/def==");
        assert!(challenge.stale);
        assert_eq!(challenge.algorithm, Algorithm::Sha256);
        assert!(challenge.qop.is_empty());
        assert!(!challenge.offers_auth());
    }

    #[test]
    fn several_challenges_in_one_value_and_across_values() {
        let joined = "Basic realm=\"x\", Digest realm=\"r\", nonce=\"1\", algorithm=SHA-512-256, \
                      Digest realm=\"r\", nonce=\"2\", algorithm=SHA-256";
        let challenge = Challenge::parse(joined).expect("a supported one");
        assert_eq!(challenge.nonce, "2");

        let values = [
            "Digest realm=\"r\", nonce=\"a\", algorithm=AKAv1-MD5",
            "Digest realm=\"r\", nonce=\"b\", algorithm=SHA-256, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"c\", algorithm=MD5, qop=\"auth\"",
        ];
        let chosen = Challenge::select(values).expect("one is supported");
        assert_eq!(chosen.nonce, "b");
        assert_eq!(Challenge::select(["Basic realm=\"x\""]), None);
    }

    #[test]
    fn unsupported_challenges() {
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
            Err(DigestError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=AKAv1-MD5"),
            Err(DigestError::UnsupportedAlgorithm("AKAv1-MD5".into()))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\""),
            Err(DigestError::MissingParam("nonce"))
        );
        assert_eq!(
            Challenge::parse("Basic realm=\"r\""),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", realm=\"s\", nonce=\"n\""),
            Err(DigestError::DuplicateParam("realm".into()))
        );
    }

    #[test]
    fn credentials() {
        let credentials = Credentials::parse(
            "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b\", \
             uri=\"sip:bob@biloxi.com\", qop=AUTH, nc=00000001, cnonce=\"0a4f113b\", \
             response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc\"",
        )
        .expect("parses");
        assert_eq!(credentials.username, "bob");
        assert_eq!(credentials.uri, "sip:bob@biloxi.com");
        assert_eq!(credentials.qop.as_deref(), Some("auth"));
        assert_eq!(credentials.algorithm, Algorithm::Md5);
        assert_eq!(credentials.opaque.as_deref(), Some("5ccc"));

        assert_eq!(
            Credentials::parse("Digest username=\"bob\", realm=\"r\", nonce=\"n\", uri=\"u\""),
            Err(DigestError::MissingParam("response"))
        );
        assert_eq!(
            Credentials::parse(
                "Digest username*=UTF-8''b%C3%B6b, realm=\"r\", nonce=\"n\", uri=\"u\", \
                 response=\"x\""
            ),
            Err(DigestError::UnsupportedParam("username*".into()))
        );
        assert!(Credentials::parse("Digest username=\"a\", Digest username=\"b\"").is_err());
    }

    #[test]
    fn non_ascii_in_quoted_strings() {
        let challenge = Challenge::parse("Digest realm=\"réalm ☎\", nonce=\"n\"").expect("parses");
        assert_eq!(challenge.realm, "réalm ☎");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let inputs = [
            "",
            "Digest",
            "Digest ",
            "Digest realm",
            "Digest realm=",
            "Digest realm=\"",
            "Digest realm=\"abc\\",
            "Digest realm=\"a\" nonce=\"b\"",
            "Digest realm=\"a\"x, nonce=\"b\"",
            "Digest =\"a\"",
            "=",
            ",,,",
            "\"\"",
            "Digest realm=\"\u{7}\"",
            "Digest réalm=\"x\"",
            "☎☎☎",
            "Digest realm=é, nonce=☎",
            "Digest realm=\"a\"\"b\", nonce=c",
            "Digest \u{0}",
        ];
        for input in inputs {
            assert!(Challenge::parse(input).is_err(), "challenge {input:?}");
            assert!(Credentials::parse(input).is_err(), "credentials {input:?}");
        }
        // Every prefix of a valid value, cut at any character boundary.
        let valid = "Digest username=\"b\\\"ob\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", \
                     response=\"abc\", qop=auth, nc=00000001, cnonce=\"é\"";
        for (i, _) in valid.char_indices() {
            let _ = Credentials::parse(&valid[..i]);
            let _ = Challenge::parse(&valid[i..]);
        }
        assert!(Credentials::parse(valid).is_ok());
    }
}
