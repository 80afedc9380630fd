//! The server config file (`dialtone.toml`, given with `--config`): where SIP listens, the
//! RTP ports and codecs, who may call in, and the SIP trunks, loaded into a validated
//! [`ServerConfig`].
//!
//! ```toml
//! [sip]
//! listen = "0.0.0.0:5060"        # command-line --sip / DIALTONE_SIP take precedence
//! rtp_ports = "20000-29999"      # command-line --rtp-ports takes precedence
//! public_ip = "203.0.113.10"     # address put in Contact and SDP c=
//! codecs = ["pcmu", "pcma"]      # preference order; also "opus"
//! realm = "dialtone"             # digest realm for challenging callers
//! allow = ["127.0.0.0/8", "::1"] # who may call without a trunk (default: loopback)
//! drain_s = 30
//!
//! [[trunk]]
//! name = "carrier"
//! registrar = "sip:sip.carrier.example.com:5060"
//! username = "acct"
//! password_env = "CARRIER_SIP_PASSWORD"
//! allow = ["198.51.100.0/24"]
//! ```
//!
//! Every section and field is optional except a trunk's `name`; a missing file section means
//! its defaults. Every mistake is reported with its file, line and field, all of them at
//! once. Passwords named by `password_env` are read from the environment when the file is
//! loaded. This module owns the types and the entry points; the rules are in `validate.rs`,
//! the field-by-field reading of the TOML tree in `fields.rs`, address ranges in `cidr.rs`
//! and the error types in `error.rs`.

mod cidr;
mod error;
mod fields;
mod validate;

use std::env::VarError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

pub use cidr::{AccessList, Cidr, CidrError};
pub use error::{ConfigError, Problem};

use error::SourceText;

/// Where SIP listens when neither the file nor the command line says.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060);

/// The RTP port range when neither the file nor the command line says.
pub const DEFAULT_RTP_PORTS: (u16, u16) = (20000, 29999);

/// The codec names `codecs` accepts, lowercase. Whether `opus` can be used depends on how
/// the binary was built, which is checked at start-up, not here.
pub const CODEC_NAMES: [&str; 3] = ["pcmu", "pcma", "opus"];

/// The codecs offered and accepted when the file does not say, in preference order.
pub const DEFAULT_CODECS: [&str; 2] = ["pcmu", "pcma"];

/// The digest realm when the file does not say.
pub const DEFAULT_REALM: &str = "dialtone";

/// A trunk registration's requested lifetime when the file does not say, in seconds.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// The registration lifetimes a trunk may request, in seconds.
pub const EXPIRES_RANGE: RangeInclusive<u32> = 60..=86400;

/// The longest `drain_s` accepted, in seconds.
pub const MAX_DRAIN_S: u64 = 3600;

/// The whole server config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// The `[sip]` section.
    pub sip: SipSettings,
    /// The `[[trunk]]` tables, in file order; names are unique.
    pub trunks: Vec<Trunk>,
}

/// The `[sip]` section. Settings the command line can also give are `None` when the file
/// leaves them out, so that the caller can apply command line, then file, then default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSettings {
    /// `listen`: the SIP socket address (default [`DEFAULT_LISTEN`]).
    pub listen: Option<SocketAddr>,
    /// `rtp_ports`: first and last RTP port, both from 1024, first not above last (default
    /// [`DEFAULT_RTP_PORTS`]).
    pub rtp_ports: Option<(u16, u16)>,
    /// `public_ip`: the address put in Contact and SDP `c=`. When `None`: the listen address,
    /// or, when listening on an unspecified address, the local address used to reach the peer.
    pub public_ip: Option<IpAddr>,
    /// `codecs`: lowercase names from [`CODEC_NAMES`], in preference order, without
    /// duplicates, never empty.
    pub codecs: Vec<String>,
    /// `realm`: the digest realm callers are challenged with.
    pub realm: String,
    /// `allow`: addresses that may call without matching a trunk. Written in the file, it
    /// replaces the default (loopback only): list the loopback ranges to keep them.
    pub allow: AccessList,
    /// `drain_s`: how long calls in progress may go on at shutdown; `None` when the file
    /// leaves it to the server's own setting.
    pub drain: Option<Duration>,
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            listen: None,
            rtp_ports: None,
            public_ip: None,
            codecs: DEFAULT_CODECS.map(String::from).to_vec(),
            realm: DEFAULT_REALM.to_string(),
            allow: AccessList::loopback(),
            drain: None,
        }
    }
}

/// One `[[trunk]]` table: a SIP provider or PBX that calls come from and go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// `name`: unique among the trunks.
    pub name: String,
    /// `registrar`: the SIP URI to register at, if the trunk registers.
    pub registrar: Option<String>,
    /// `username`, `auth_username` and the password; always present with `registrar` or
    /// `challenge = true`.
    pub credentials: Option<TrunkCredentials>,
    /// `expires`: the registration lifetime requested, in seconds, within [`EXPIRES_RANGE`].
    pub expires: u32,
    /// `allow`: source addresses this trunk's INVITEs come from.
    pub allow: AccessList,
    /// `challenge`: INVITEs not from `allow` must pass digest authentication with this
    /// trunk's `username` and password.
    pub challenge: bool,
    /// `proxy`: the SIP URI outbound calls are sent to (see [`Trunk::outbound_proxy`]).
    pub proxy: Option<String>,
    /// `from`: the SIP URI outbound calls are made from (caller id).
    pub from: Option<String>,
}

impl Trunk {
    /// The username the trunk registers and answers challenges as (its address-of-record
    /// user part).
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.username.as_str())
    }

    /// The username put in digest answers: `auth_username`, or `username`.
    pub fn auth_username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.auth_username.as_str())
    }

    /// The password, as given in the file or read from `password_env` at load time.
    pub fn password(&self) -> Option<&str> {
        self.credentials.as_ref().map(TrunkCredentials::password)
    }

    /// Where outbound calls go: `proxy`, or else `registrar`.
    pub fn outbound_proxy(&self) -> Option<&str> {
        self.proxy.as_deref().or(self.registrar.as_deref())
    }
}

/// A trunk's credentials. The password is left out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkCredentials {
    /// `username`.
    pub username: String,
    /// `auth_username`, or `username` when not given.
    pub auth_username: String,
    password: String,
}

impl TrunkCredentials {
    /// Credentials from their parts.
    pub fn new(username: &str, auth_username: &str, password: &str) -> TrunkCredentials {
        TrunkCredentials {
            username: username.to_string(),
            auth_username: auth_username.to_string(),
            password: password.to_string(),
        }
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for TrunkCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrunkCredentials")
            .field("username", &self.username)
            .field("auth_username", &self.auth_username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ServerConfig {
    /// Loads and validates the file at `path`, reading `password_env` variables from the
    /// environment.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => ServerConfig::from_str(path, &text),
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let text = String::from_utf8_lossy(valid);
                let mut source = SourceText::new(path, &text);
                let end = text.len();
                source.report(&(end..end), None, "the file is not valid UTF-8");
                Err(source.into_error())
            }
        }
    }

    /// Validates a file's text, reading `password_env` variables from the environment;
    /// `path_for_messages` is only used in error messages.
    pub fn from_str(path_for_messages: &Path, text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_str_with_env(path_for_messages, text, |name| std::env::var(name))
    }

    /// Validates a file's text, looking `password_env` variables up with `env`.
    pub fn from_str_with_env(
        path_for_messages: &Path,
        text: &str,
        env: impl Fn(&str) -> Result<String, VarError>,
    ) -> Result<ServerConfig, ConfigError> {
        let mut source = SourceText::new(path_for_messages, text);
        let config = validate::read_document(&mut source, text, &env);
        source.finish()?;
        Ok(config)
    }

    /// The trunk named `name`.
    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// The first trunk (in file order) whose `allow` holds `source`.
    pub fn trunk_for_source(&self, source: IpAddr) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.allow.allows(source))
    }

    /// The trunk with `challenge = true` whose `username` is `username`: the one a caller
    /// answering a challenge with that username authenticates as.
    pub fn challenge_trunk(&self, username: &str) -> Option<&Trunk> {
        self.trunks
            .iter()
            .find(|t| t.challenge && t.username() == Some(username))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Result<String, VarError> {
        Err(VarError::NotPresent)
    }

    fn load(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_str_with_env(Path::new("dialtone.toml"), text, |name| {
            (name == "PW")
                .then(|| "from-env".to_string())
                .ok_or(VarError::NotPresent)
        })
    }

    fn problems(text: &str) -> Vec<String> {
        load(text)
            .expect_err("invalid")
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn empty_file_is_the_default() {
        let config = ServerConfig::from_str_with_env(Path::new("x"), "", no_env).expect("valid");
        assert_eq!(config, ServerConfig::default());
        assert!(config.sip.allow.allows("127.0.0.1".parse().expect("ip")));
        assert!(!config.sip.allow.allows("192.0.2.1".parse().expect("ip")));
        assert_eq!(config.sip.codecs, ["pcmu", "pcma"]);
        assert_eq!(config.sip.realm, "dialtone");
        assert!(config.trunks.is_empty());
    }

    #[test]
    fn full_file() {
        let config = load(
            r#"
[sip]
listen = "127.0.0.1:5080"
rtp_ports = "30000-30999"
public_ip = "2001:db8::10"
codecs = ["PCMA", "opus"]
realm = "bridge"
allow = []
drain_s = 0

[[trunk]]
name = "carrier"
registrar = "sips:reg.example.com"
username = "acct"
auth_username = "auth"
password_env = "PW"
expires = 60
proxy = "sip:edge.example.com;lr"
from = "sip:+14155550100@example.com"

[[trunk]]
name = "pbx"
allow = ["192.0.2.0/24"]

[[trunk]]
name = "softphones"
challenge = true
username = "desk"
password = "literal"
"#,
        )
        .expect("valid");
        let sip = &config.sip;
        assert_eq!(sip.listen, Some("127.0.0.1:5080".parse().expect("addr")));
        assert_eq!(sip.rtp_ports, Some((30000, 30999)));
        assert_eq!(sip.public_ip, Some("2001:db8::10".parse().expect("ip")));
        assert_eq!(sip.codecs, ["pcma", "opus"]);
        assert_eq!(sip.realm, "bridge");
        assert!(sip.allow.is_empty());
        assert_eq!(sip.drain, Some(Duration::ZERO));

        let carrier = config.trunk("carrier").expect("carrier");
        assert_eq!(carrier.username(), Some("acct"));
        assert_eq!(carrier.auth_username(), Some("auth"));
        assert_eq!(carrier.password(), Some("from-env"));
        assert_eq!(carrier.expires, 60);
        assert_eq!(carrier.outbound_proxy(), Some("sip:edge.example.com;lr"));
        assert!(!carrier.challenge);

        let pbx = config.trunk("pbx").expect("pbx");
        assert_eq!(pbx.credentials, None);
        assert_eq!(pbx.expires, DEFAULT_EXPIRES);
        assert_eq!(pbx.outbound_proxy(), None);
        let from_pbx = "192.0.2.7".parse().expect("ip");
        assert_eq!(
            config.trunk_for_source(from_pbx).map(|t| t.name.as_str()),
            Some("pbx")
        );

        let softphones = config.challenge_trunk("desk").expect("challenging trunk");
        assert_eq!(softphones.password(), Some("literal"));
        assert_eq!(softphones.auth_username(), Some("desk"));
        assert!(config.challenge_trunk("acct").is_none());
    }

    #[test]
    fn debug_output_hides_passwords() {
        let config = load(
            "[[trunk]]\nname = \"t\"\nregistrar = \"sip:r\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
        let env = load("[[trunk]]\nname = \"t\"\nregistrar = \"sip:r\"\nusername = \"u\"\npassword_env = \"PW\"\n")
            .expect("valid");
        assert!(!format!("{env:?}").contains("from-env"));
    }

    #[test]
    fn every_problem_is_collected() {
        let found = problems(
            r#"[sip]
listen = "localhost"
rtp_ports = "30000-20000"
public_ip = "0.0.0.0"
codecs = ["pcmu", "g729", "pcmu", 8]
realm = ""
allow = ["10.0.0.0/33", "nonsense"]
drain_s = -1
colour = "blue"

[[trunk]]
name = "a"
registrar = "carrier.example.com"
expires = 10

[[trunk]]
name = "a"
username = "u"
password = "p"
password_env = "PW"
allow = ["192.0.2.1"]

[[trunk]]
registrar = "sip:r"
password_env = "NOT_SET_ANYWHERE"
"#,
        );
        let expected = [
            "dialtone.toml:2: field `sip.listen`: \"localhost\" is not an ip:port address",
            "dialtone.toml:3: field `sip.rtp_ports`: the range starts at 30000, after its end 20000",
            "dialtone.toml:4: field `sip.public_ip`: 0.0.0.0 is not an address peers can send to",
            "dialtone.toml:5: field `sip.codecs[1]`: unknown codec \"g729\"",
            "dialtone.toml:5: field `sip.codecs[2]`: \"pcmu\" is listed twice",
            "dialtone.toml:5: field `sip.codecs[3]`: expected a string, found an integer",
            "dialtone.toml:6: field `sip.realm`: must be a non-empty string",
            "dialtone.toml:7: field `sip.allow[0]`: prefix length \"33\"",
            "dialtone.toml:7: field `sip.allow[1]`: \"nonsense\" is not an IP address",
            "dialtone.toml:8: field `sip.drain_s`: must be from 0 to 3600 seconds",
            "dialtone.toml:9: field `sip.colour`: unknown field; expected one of `listen`",
            "dialtone.toml:13: field `trunk[0].registrar`: \"carrier.example.com\" is not a SIP URI",
            "dialtone.toml:14: field `trunk[0].expires`: must be from 60 to 86400 seconds",
            "dialtone.toml:17: field `trunk[1].name`: duplicate trunk name \"a\" (first used on line 12)",
            "dialtone.toml:20: field `trunk[1].password_env`: give either `password` or `password_env`, not both",
            "dialtone.toml:23: field `trunk[2].name`: missing: every trunk needs a `name`",
            "dialtone.toml:24: field `trunk[2].registrar`: needs `username` and `password`",
            "dialtone.toml:25: field `trunk[2].password_env`: environment variable `NOT_SET_ANYWHERE` is not set",
        ];
        for (problem, expected) in found.iter().zip(expected) {
            assert!(
                problem.starts_with(expected),
                "{problem}\n  expected {expected}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn credential_rules() {
        let cases = [
            (
                "[[trunk]]\nname = \"t\"\nchallenge = true\n",
                "dialtone.toml:3: field `trunk[0].challenge`: needs `username`",
            ),
            (
                "[[trunk]]\nname = \"t\"\nallow = [\"::1\"]\nusername = \"u\"\n",
                "dialtone.toml:4: field `trunk[0].username`: needs `password` or `password_env`",
            ),
            (
                "[[trunk]]\nname = \"t\"\nallow = [\"::1\"]\nauth_username = \"a\"\n",
                "dialtone.toml:4: field `trunk[0].auth_username`: needs `username`",
            ),
            (
                "[[trunk]]\nname = \"t\"\nregistrar = \"sip:r\"\nusername = \"u\"\npassword = \"\"\n",
                "dialtone.toml:5: field `trunk[0].password`: must not be empty",
            ),
            (
                "[[trunk]]\nname = \"t\"\nproxy = \"sip:r\"\nusername = \"u\"\npassword_env = \"1X\"\n",
                "dialtone.toml:5: field `trunk[0].password_env`: \"1X\" is not an environment variable name",
            ),
            (
                "[[trunk]]\nname = \"t\"\nregistrar = \"sip:r\"\nusername = \"\"\npassword = \"p\"\n",
                "dialtone.toml:4: field `trunk[0].username`: must not be empty",
            ),
            (
                "[[trunk]]\nname = \"t\"\n",
                "dialtone.toml:1: field `trunk[0]`: this trunk does nothing",
            ),
            (
                "[[trunk]]\nname = \"a\"\nchallenge = true\nusername = \"u\"\npassword = \"p\"\n\
                 [[trunk]]\nname = \"b\"\nchallenge = true\nusername = \"u\"\npassword = \"q\"\n",
                "dialtone.toml:9: field `trunk[1].username`: \"u\" is also the username of trunk \"a\"",
            ),
        ];
        for (text, expected) in cases {
            let found = problems(text);
            assert_eq!(found.len(), 1, "{text}\n{found:#?}");
            assert!(
                found[0].starts_with(expected),
                "{text}\n{found:#?}\n  expected {expected}"
            );
        }
    }

    #[test]
    fn structure_mistakes() {
        let cases = [
            (
                "sip = 5\n",
                "dialtone.toml:1: field `sip`: expected a table, found an integer",
            ),
            (
                "[trunk]\nname = \"t\"\n",
                "dialtone.toml:1: field `trunk`: expected an array of tables",
            ),
            ("[sips]\n", "dialtone.toml:1: field `sips`: unknown section"),
            ("[sip]\nlisten = \n", "dialtone.toml:2: invalid TOML"),
            (
                "[sip]\ndrain_s = 99999999999999999999\n",
                "dialtone.toml:2: ",
            ),
            (
                "[sip]\nallow = \"127.0.0.1\"\n",
                "dialtone.toml:2: field `sip.allow`: expected an array of strings, found a string",
            ),
            (
                "[sip]\ncodecs = []\n",
                "dialtone.toml:2: field `sip.codecs`: needs at least one codec",
            ),
            (
                "[[trunk]]\nname = \"t\"\nallow = [\"::1\"]\nchallenge = \"yes\"\n",
                "dialtone.toml:4: field `trunk[0].challenge`: expected true or false, found a string",
            ),
            (
                "[[trunk]]\n\"odd key\" = 1\nname = \"t\"\nallow = [\"::1\"]\n",
                "dialtone.toml:2: field `trunk[0].\"odd key\"`: unknown field",
            ),
        ];
        for (text, expected) in cases {
            let found = problems(text);
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{text}\n{found:#?}\n  expected {expected}"
            );
        }
    }
}
