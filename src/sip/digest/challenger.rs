//! The server side of Digest: challenging callers and checking their answers.
//!
//! Nonces are stateless: `base64(timestamp || HMAC-SHA256(secret, timestamp))`, with the
//! timestamp as 8 big-endian bytes of Unix seconds. A nonce is authentic when its HMAC
//! matches, and fresh for [`NONCE_LIFETIME_S`] seconds (configurable). Nothing is stored per
//! nonce, so nonce counts are not tracked: an answer captured on the wire can be replayed for
//! the same method and URI until its nonce expires. The current time is always passed in.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::digest::Key;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{Algorithm, Credentials, quote, response};

/// How long a nonce is accepted after it was issued, in seconds, unless set otherwise.
pub const NONCE_LIFETIME_S: u64 = 300;

const TIMESTAMP_LEN: usize = 8;
const TAG_LEN: usize = 32;

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are right: the caller is `username`.
    Ok { username: String },
    /// The credentials are right but the nonce has expired: challenge again with
    /// `stale=true`, and the client retries without asking anyone for a password.
    Stale,
    /// Anything else: malformed header, other realm, forged nonce, unknown user, wrong
    /// password, unsupported algorithm or qop. Challenge again.
    Invalid,
}

/// Issues Digest challenges for one realm and verifies the answers.
pub struct Challenger {
    secret: [u8; 32],
    realm: String,
    lifetime_s: u64,
}

impl fmt::Debug for Challenger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenger")
            .field("realm", &self.realm)
            .field("lifetime_s", &self.lifetime_s)
            .finish_non_exhaustive()
    }
}

impl Challenger {
    /// A challenger for `realm` whose nonces are authenticated with `secret`. Control
    /// characters cannot appear in a header and are removed from the realm.
    pub fn new(realm: &str, secret: [u8; 32]) -> Challenger {
        Challenger {
            secret,
            realm: realm.chars().filter(|c| !c.is_control()).collect(),
            lifetime_s: NONCE_LIFETIME_S,
        }
    }

    /// A challenger with a random secret: its nonces are valid until the process ends.
    pub fn with_random_secret(realm: &str) -> Challenger {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret[..]);
        Challenger::new(realm, secret)
    }

    /// Sets how long nonces are accepted, in seconds.
    pub fn with_nonce_lifetime(mut self, seconds: u64) -> Challenger {
        self.lifetime_s = seconds;
        self
    }

    /// The realm challenges name.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A nonce issued at `now_unix` (Unix seconds).
    pub fn nonce(&self, now_unix: u64) -> String {
        let timestamp = now_unix.to_be_bytes();
        let mut bytes = Vec::with_capacity(TIMESTAMP_LEN + TAG_LEN);
        bytes.extend_from_slice(&timestamp);
        bytes.extend_from_slice(&self.mac(&timestamp).finalize().into_bytes());
        BASE64.encode(bytes)
    }

    /// The values of the two `WWW-Authenticate` (or `Proxy-Authenticate`) headers of a 401
    /// (407): SHA-256 first, then MD5 (RFC 8760), with one fresh nonce. `stale` is set when
    /// answering a [`Verdict::Stale`].
    pub fn challenge_headers(&self, stale: bool, now_unix: u64) -> [String; 2] {
        let nonce = self.nonce(now_unix);
        [Algorithm::Sha256, Algorithm::Md5].map(|algorithm| {
            let mut value = format!(
                "Digest realm={}, nonce={}, algorithm={algorithm}, qop=\"auth\"",
                quote(&self.realm),
                quote(&nonce),
            );
            if stale {
                value.push_str(", stale=TRUE");
            }
            value
        })
    }

    /// Checks the `Authorization` (or `Proxy-Authorization`) header value of a request with
    /// method `method`. `password_for` gives the password of a username, if it has one.
    ///
    /// Accepts SHA-256 and MD5 with `qop=auth` or without `qop` (RFC 2069); the `uri`
    /// parameter must be present (comparing it with the Request-URI is the caller's choice).
    /// An expired nonce gives [`Verdict::Stale`] only when the answer is otherwise right.
    pub fn verify(
        &self,
        method: &str,
        header_value: &str,
        password_for: impl Fn(&str) -> Option<String>,
        now_unix: u64,
    ) -> Verdict {
        let Ok(credentials) = Credentials::parse(header_value) else {
            return Verdict::Invalid;
        };
        if credentials.realm != self.realm
            || !matches!(credentials.algorithm, Algorithm::Md5 | Algorithm::Sha256)
            || credentials.uri.is_empty()
        {
            return Verdict::Invalid;
        }
        let Some(issued) = self.issued_at(&credentials.nonce) else {
            return Verdict::Invalid;
        };
        let (nc, cnonce) = match credentials.qop.as_deref() {
            None => ("", ""),
            Some("auth") => {
                let nc = credentials.nc.as_deref().unwrap_or_default();
                let cnonce = credentials.cnonce.as_deref().unwrap_or_default();
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) || cnonce.is_empty()
                {
                    return Verdict::Invalid;
                }
                (nc, cnonce)
            }
            Some(_) => return Verdict::Invalid,
        };
        let Some(password) = password_for(&credentials.username) else {
            return Verdict::Invalid;
        };
        let expected = response(
            credentials.algorithm,
            &credentials.username,
            &self.realm,
            &password,
            method,
            &credentials.uri,
            &credentials.nonce,
            nc,
            cnonce,
            credentials.qop.as_deref(),
        );
        if !constant_time_eq(
            expected.as_bytes(),
            credentials.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Verdict::Invalid;
        }
        // A nonce from the future means the clock went back: ask for a new one too.
        let age = now_unix.abs_diff(issued);
        if age > self.lifetime_s {
            return Verdict::Stale;
        }
        Verdict::Ok {
            username: credentials.username,
        }
    }

    /// When an authentic nonce was issued; `None` for a nonce this challenger did not issue.
    fn issued_at(&self, nonce: &str) -> Option<u64> {
        let bytes = BASE64.decode(nonce).ok()?;
        if bytes.len() != TIMESTAMP_LEN + TAG_LEN {
            return None;
        }
        let (timestamp, tag) = bytes.split_at(TIMESTAMP_LEN);
        self.mac(timestamp).verify_slice(tag).ok()?;
        Some(u64::from_be_bytes(timestamp.try_into().ok()?))
    }

    fn mac(&self, timestamp: &[u8]) -> Hmac<Sha256> {
        // A key shorter than the hash's block is zero-padded to the block by HMAC itself, so
        // padding it here gives the same MAC without a fallible constructor.
        let mut key = Key::<Hmac<Sha256>>::default();
        key[..self.secret.len()].copy_from_slice(&self.secret);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&key);
        mac.update(timestamp);
        mac
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::super::{Challenge, authorization};
    use super::*;

    const NOW: u64 = 1_750_000_000;
    const URI: &str = "sip:+14155550100@bridge.example.com";

    fn challenger() -> Challenger {
        Challenger::new("dialtone", [7; 32])
    }

    fn passwords(username: &str) -> Option<String> {
        (username == "acct").then(|| "s3cret".to_string())
    }

    fn answer(header: &str, password: &str) -> String {
        let challenge = Challenge::parse(header).expect("own challenge parses");
        authorization(&challenge, "acct", password, "INVITE", URI, "c0ffee", 1)
    }

    #[test]
    fn challenges_offer_sha256_then_md5_with_one_nonce() {
        let [sha, md5] = challenger().challenge_headers(false, NOW);
        let sha = Challenge::parse(&sha).expect("parses");
        let md5 = Challenge::parse(&md5).expect("parses");
        assert_eq!(sha.algorithm, Algorithm::Sha256);
        assert_eq!(md5.algorithm, Algorithm::Md5);
        assert_eq!(sha.nonce, md5.nonce);
        assert_eq!(sha.realm, "dialtone");
        assert!(sha.offers_auth() && !sha.stale);
        let [stale, _] = challenger().challenge_headers(true, NOW);
        assert!(Challenge::parse(&stale).expect("parses").stale);
    }

    #[test]
    fn round_trips_for_both_algorithms() {
        let challenger = challenger();
        for header in challenger.challenge_headers(false, NOW) {
            let credentials = answer(&header, "s3cret");
            assert_eq!(
                challenger.verify("INVITE", &credentials, passwords, NOW + 10),
                Verdict::Ok {
                    username: "acct".into()
                },
                "{header}"
            );
        }
    }

    #[test]
    fn legacy_answers_without_qop_are_accepted() {
        let challenger = challenger();
        let nonce = challenger.nonce(NOW);
        let digest = response(
            Algorithm::Md5,
            "acct",
            "dialtone",
            "s3cret",
            "INVITE",
            URI,
            &nonce,
            "",
            "",
            None,
        );
        let header = format!(
            "Digest username=\"acct\", realm=\"dialtone\", nonce=\"{nonce}\", uri=\"{URI}\", \
             response=\"{}\"",
            digest.to_uppercase()
        );
        assert_eq!(
            challenger.verify("INVITE", &header, passwords, NOW),
            Verdict::Ok {
                username: "acct".into()
            }
        );
    }

    #[test]
    fn wrong_password_method_user_or_realm_is_invalid() {
        let challenger = challenger();
        let [sha, md5] = challenger.challenge_headers(false, NOW);
        for header in [sha, md5] {
            let wrong = answer(&header, "guess");
            assert_eq!(
                challenger.verify("INVITE", &wrong, passwords, NOW),
                Verdict::Invalid
            );
            let right = answer(&header, "s3cret");
            assert_eq!(
                challenger.verify("BYE", &right, passwords, NOW),
                Verdict::Invalid
            );
            assert_eq!(
                challenger.verify("INVITE", &right, |_| None, NOW),
                Verdict::Invalid
            );
            let other_realm = Challenger::new("elsewhere", [7; 32]);
            assert_eq!(
                other_realm.verify("INVITE", &right, passwords, NOW),
                Verdict::Invalid
            );
        }
    }

    #[test]
    fn forged_or_tampered_nonces_are_invalid() {
        let challenger = challenger();
        let [header, _] = challenger.challenge_headers(false, NOW);
        let challenge = Challenge::parse(&header).expect("parses");

        // Another secret's nonce.
        let foreign = Challenger::new("dialtone", [8; 32]);
        let [foreign_header, _] = foreign.challenge_headers(false, NOW);
        let credentials = answer(&foreign_header, "s3cret");
        assert_eq!(
            challenger.verify("INVITE", &credentials, passwords, NOW),
            Verdict::Invalid
        );

        // A nonce whose timestamp was moved forward to extend its life.
        let mut bytes = BASE64.decode(&challenge.nonce).expect("base64");
        bytes[7] ^= 1;
        let tampered = Challenge {
            nonce: BASE64.encode(&bytes),
            ..challenge.clone()
        };
        let credentials = authorization(&tampered, "acct", "s3cret", "INVITE", URI, "c", 1);
        assert_eq!(
            challenger.verify("INVITE", &credentials, passwords, NOW),
            Verdict::Invalid
        );

        // Not base64, or too short.
        for nonce in ["!!!", "AAAA", ""] {
            let bad = Challenge {
                nonce: nonce.into(),
                ..challenge.clone()
            };
            let credentials = authorization(&bad, "acct", "s3cret", "INVITE", URI, "c", 1);
            assert_eq!(
                challenger.verify("INVITE", &credentials, passwords, NOW),
                Verdict::Invalid
            );
        }
    }

    #[test]
    fn old_nonces_are_stale_only_with_the_right_password() {
        let challenger = challenger();
        let [header, _] = challenger.challenge_headers(false, NOW);
        let right = answer(&header, "s3cret");
        let later = NOW + NONCE_LIFETIME_S + 1;
        assert_eq!(
            challenger.verify("INVITE", &right, passwords, later),
            Verdict::Stale
        );
        assert_eq!(
            challenger.verify("INVITE", &right, passwords, NOW + NONCE_LIFETIME_S),
            Verdict::Ok {
                username: "acct".into()
            }
        );
        let wrong = answer(&header, "guess");
        assert_eq!(
            challenger.verify("INVITE", &wrong, passwords, later),
            Verdict::Invalid
        );
        // Clock gone back past the lifetime.
        assert_eq!(
            challenger.verify("INVITE", &right, passwords, NOW - NONCE_LIFETIME_S - 1),
            Verdict::Stale
        );
        let short = Challenger::new("dialtone", [7; 32]).with_nonce_lifetime(5);
        assert_eq!(
            short.verify("INVITE", &right, passwords, NOW + 6),
            Verdict::Stale
        );
    }

    #[test]
    fn unsupported_or_incomplete_answers_are_invalid() {
        let challenger = challenger();
        let nonce = challenger.nonce(NOW);
        let valid = answer(&challenger.challenge_headers(false, NOW)[0], "s3cret");
        let edits = [
            valid.replace("qop=auth", "qop=auth-int"),
            valid.replace("nc=00000001", "nc=1"),
            valid.replace("cnonce=\"c0ffee\"", "cnonce=\"\""),
            valid.replace(&format!("uri=\"{URI}\""), "uri=\"\""),
            valid.replace("algorithm=SHA-256", "algorithm=SHA-256-sess"),
            valid.replace("Digest ", "Basic "),
            format!("{valid}, username=\"other\""),
        ];
        for edited in edits {
            assert_ne!(edited, valid);
            assert_eq!(
                challenger.verify("INVITE", &edited, passwords, NOW),
                Verdict::Invalid,
                "{edited}"
            );
        }
        assert!(valid.contains(&nonce));
    }

    #[test]
    fn garbage_headers_are_invalid() {
        let challenger = challenger();
        let valid = answer(&challenger.challenge_headers(false, NOW)[1], "s3cret");
        let mut inputs = vec![
            String::new(),
            "Digest".into(),
            "garbage".into(),
            "Digest username=".into(),
            "Digest \"\"\"".into(),
            "\u{0}\u{1}\u{2}".into(),
            "Digest username=\"acct\", realm=\"dialtone\", nonce=\"☎\", uri=\"x\", response=\"y\""
                .into(),
        ];
        inputs.extend(valid.char_indices().map(|(i, _)| valid[..i].to_string()));
        for input in inputs {
            assert_eq!(
                challenger.verify("INVITE", &input, passwords, NOW),
                Verdict::Invalid,
                "{input:?}"
            );
        }
        assert!(matches!(
            challenger.verify("INVITE", &valid, passwords, NOW),
            Verdict::Ok { .. }
        ));
    }

    #[test]
    fn padded_key_gives_the_standard_hmac() {
        let secret = [0x5a; 32];
        let mut standard =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&secret).expect("any key length");
        standard.update(b"12345678");
        let ours = Challenger::new("r", secret).mac(b"12345678");
        assert_eq!(
            ours.finalize().into_bytes(),
            standard.finalize().into_bytes()
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", Challenger::new("r", [0xAB; 32]));
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("\"r\""));
        assert_eq!(Challenger::new("a\r\nb", [0; 32]).realm(), "ab");
    }
}
