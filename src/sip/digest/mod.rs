//! HTTP Digest authentication as SIP uses it (RFC 3261 §22 with RFC 2617, RFC 7616 and
//! RFC 8760): MD5 and SHA-256 and their `-sess` variants, `qop=auth`, and the legacy form
//! without `qop` (RFC 2069).
//!
//! This module owns the digest computation ([`response`]), the header values a client sends
//! ([`authorization`]) and the errors of reading header values ([`DigestError`]). Parsing of
//! `WWW-Authenticate` / `Authorization` values is in `header.rs`; the server side, which
//! challenges callers with stateless nonces and checks their answers, is in `challenger.rs`.
//!
//! `qop=auth-int` (a digest of the message body) is not supported: challenges that offer only
//! `auth-int` are rejected when parsed, and credentials that use it fail verification.

mod challenger;
mod header;

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256};

pub use challenger::{Challenger, NONCE_LIFETIME_S, Verdict};
pub use header::{Challenge, Credentials};

/// A digest algorithm, as named by the `algorithm` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, the default when a challenge names no algorithm.
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256` (RFC 7616, for SIP RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Every supported algorithm, strongest first.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Md5,
        Algorithm::Md5Sess,
    ];

    /// The algorithm named by an `algorithm` parameter (case-insensitive), if supported.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The name as written in headers: `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether this is a `-sess` variant, whose HA1 also covers the nonce and cnonce.
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// The hash of `data`, in lowercase hexadecimal.
    fn hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => to_hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => to_hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::parse(s).ok_or_else(|| DigestError::UnsupportedAlgorithm(s.to_string()))
    }
}

/// Why a Digest header value could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The value does not follow the `scheme name=value, …` syntax.
    #[error("malformed authentication header: {0}")]
    Malformed(&'static str),
    /// The value holds no `Digest` challenge or credentials.
    #[error("not a Digest authentication header")]
    NotDigest,
    /// The same parameter is given twice.
    #[error("parameter `{0}` is given more than once")]
    DuplicateParam(String),
    /// A required parameter is absent or empty.
    #[error("missing parameter `{0}`")]
    MissingParam(&'static str),
    /// The `algorithm` is not one of MD5, MD5-sess, SHA-256, SHA-256-sess.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The `qop` offered or used is not `auth`.
    #[error("unsupported qop {0:?}: only \"auth\" is supported")]
    UnsupportedQop(String),
    /// A parameter this implementation does not support (`username*`, `userhash=true`).
    #[error("unsupported parameter `{0}`")]
    UnsupportedParam(String),
}

/// The `response` parameter: the digest of the credentials and the request, in lowercase
/// hexadecimal.
///
/// `nc` is the nonce count as written (8 hexadecimal digits) and `qop` is `Some("auth")` or
/// `None` for the legacy computation without `qop` (RFC 2069), where `nc` and `cnonce` are
/// ignored unless the algorithm is a `-sess` variant, which always uses `cnonce`.
// One argument per input of the digest computation, as the RFCs name them.
#[allow(clippy::too_many_arguments)]
pub fn response(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: Option<&str>,
) -> String {
    let mut ha1 = algorithm.hex(&format!("{username}:{realm}:{password}"));
    if algorithm.is_session() {
        ha1 = algorithm.hex(&format!("{ha1}:{nonce}:{cnonce}"));
    }
    let ha2 = algorithm.hex(&format!("{method}:{uri}"));
    match qop {
        Some(qop) => algorithm.hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
        None => algorithm.hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// The `Authorization` (or `Proxy-Authorization`) header value answering `challenge` for one
/// request.
///
/// `uri` is the Request-URI as sent, `method` the SIP method, `cnonce` a fresh client nonce
/// (see [`random_cnonce`]) and `nc` the number of requests sent with this nonce so far,
/// this one included (1 for the first). `qop=auth` is used when the challenge offers it,
/// otherwise the legacy computation; `opaque` is echoed back unchanged.
pub fn authorization(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let qop = challenge.offers_auth().then_some("auth");
    let nc = format!("{nc:08x}");
    let digest = response(
        challenge.algorithm,
        username,
        &challenge.realm,
        password,
        method,
        uri,
        &challenge.nonce,
        &nc,
        cnonce,
        qop,
    );
    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{digest}\", algorithm={}",
        quote(username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(uri),
        challenge.algorithm,
    );
    if qop.is_some() || challenge.algorithm.is_session() {
        out.push_str(&format!(", cnonce={}", quote(cnonce)));
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(&format!(", opaque={}", quote(opaque)));
    }
    if let Some(qop) = qop {
        out.push_str(&format!(", qop={qop}, nc={nc}"));
    }
    out
}

/// A fresh client nonce: 16 random bytes in hexadecimal.
pub fn random_cnonce() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes[..]);
    to_hex(&bytes)
}

/// `s` as a quoted string, with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc2617_section_3_5_vector() {
        let digest = response(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            Some("auth"),
        );
        assert_eq!(digest, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_section_3_9_1_vectors() {
        let compute = |algorithm| {
            response(
                algorithm,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                RFC7616_NONCE,
                "00000001",
                RFC7616_CNONCE,
                Some("auth"),
            )
        };
        assert_eq!(compute(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(
            compute(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn legacy_and_session_computations() {
        // RFC 2069 form: H(HA1:nonce:HA2).
        let ha1 = Algorithm::Md5.hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = Algorithm::Md5.hex("GET:/dir/index.html");
        let legacy = response(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "abc",
            "ignored",
            "ignored",
            None,
        );
        assert_eq!(legacy, Algorithm::Md5.hex(&format!("{ha1}:abc:{ha2}")));

        // -sess: HA1 = H(H(user:realm:password):nonce:cnonce).
        let sess_ha1 =
            Algorithm::Sha256Sess.hex(&format!("{}:n:c", Algorithm::Sha256.hex("u:r:p")));
        let ha2 = Algorithm::Sha256.hex("INVITE:sip:a@b");
        let sess = response(
            Algorithm::Sha256Sess,
            "u",
            "r",
            "p",
            "INVITE",
            "sip:a@b",
            "n",
            "00000001",
            "c",
            Some("auth"),
        );
        assert_eq!(
            sess,
            Algorithm::Sha256.hex(&format!("{sess_ha1}:n:00000001:c:auth:{ha2}"))
        );
    }

    #[test]
    fn algorithm_names() {
        for algorithm in Algorithm::ALL {
            assert_eq!(Algorithm::parse(algorithm.as_str()), Some(algorithm));
        }
        assert_eq!(Algorithm::parse("md5"), Some(Algorithm::Md5));
        assert_eq!(
            Algorithm::parse("sha-256-SESS"),
            Some(Algorithm::Sha256Sess)
        );
        assert_eq!(Algorithm::parse("SHA-512-256"), None);
        assert!("AKAv1-MD5".parse::<Algorithm>().is_err());
    }

    #[test]
    fn authorization_answers_the_rfc7616_challenge() {
        let challenge = Challenge::parse(&format!(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
             algorithm=SHA-256, nonce=\"{RFC7616_NONCE}\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        ))
        .expect("parses");
        let header = authorization(
            &challenge,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            RFC7616_CNONCE,
            1,
        );
        assert!(header.contains(
            "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
        ));
        assert!(header.contains("qop=auth, nc=00000001"));
        assert!(header.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));
        let credentials = Credentials::parse(&header).expect("own header parses");
        assert_eq!(credentials.username, "Mufasa");
        assert_eq!(credentials.algorithm, Algorithm::Sha256);
        assert_eq!(credentials.nc.as_deref(), Some("00000001"));
        assert_eq!(credentials.cnonce.as_deref(), Some(RFC7616_CNONCE));
    }

    #[test]
    fn authorization_escapes_and_omits_qop_when_not_offered() {
        let challenge = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").expect("parses");
        let header = authorization(&challenge, "a\"b\\c", "p", "REFER", "sip:x@y", "cn", 7);
        assert!(header.starts_with("Digest username=\"a\\\"b\\\\c\""));
        assert!(!header.contains("qop"));
        assert!(!header.contains("cnonce"));
        let credentials = Credentials::parse(&header).expect("parses");
        assert_eq!(credentials.username, "a\"b\\c");
        assert_eq!(
            credentials.response,
            response(
                Algorithm::Md5,
                "a\"b\\c",
                "r",
                "p",
                "REFER",
                "sip:x@y",
                "n",
                "",
                "",
                None
            )
        );
    }

    #[test]
    fn cnonces_are_fresh_hex() {
        let a = random_cnonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_cnonce());
    }
}
