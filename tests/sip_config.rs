//! The server config file as a user meets it: the example at the repository root loads, and
//! broken files are reported with their file, line and field.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dialtone::sip::config::{ConfigError, ServerConfig};

/// The variable `dialtone.example.toml` reads the carrier's password from. No other test of
/// this binary uses it.
const EXAMPLE_PASSWORD_VAR: &str = "DIALTONE_CARRIER_SIP_PASSWORD";

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dialtone.example.toml")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

#[test]
fn the_example_file_loads() {
    // SAFETY: only this test touches this variable, and the other tests of this binary read
    // the environment through the standard library, which serializes access to it.
    unsafe { std::env::set_var(EXAMPLE_PASSWORD_VAR, "example-secret") };
    let config = ServerConfig::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));

    let sip = &config.sip;
    assert_eq!(sip.listen, Some("0.0.0.0:5060".parse().expect("addr")));
    assert_eq!(sip.rtp_ports, Some((20000, 29999)));
    assert_eq!(sip.public_ip, Some(ip("203.0.113.10")));
    assert_eq!(sip.codecs, ["pcmu", "pcma"]);
    assert_eq!(sip.realm, "dialtone");
    assert!(sip.allow.allows(ip("127.0.0.1")) && sip.allow.allows(ip("::1")));
    assert!(!sip.allow.allows(ip("198.51.100.1")));
    assert_eq!(sip.drain, Some(Duration::from_secs(30)));

    assert_eq!(config.trunks.len(), 2);
    let carrier = config.trunk("carrier").expect("carrier trunk");
    assert_eq!(
        carrier.registrar.as_deref(),
        Some("sip:sip.carrier.example.com:5060")
    );
    assert_eq!(carrier.username(), Some("acct"));
    assert_eq!(carrier.auth_username(), Some("acct"));
    assert_eq!(carrier.password(), Some("example-secret"));
    assert_eq!(carrier.expires, 3600);
    assert!(!carrier.challenge);
    assert_eq!(
        carrier.outbound_proxy(),
        Some("sip:sip.carrier.example.com")
    );
    assert_eq!(
        carrier.from.as_deref(),
        Some("sip:+14155550100@sip.carrier.example.com")
    );
    assert!(!format!("{config:?}").contains("example-secret"));

    let pbx = config.trunk("office-pbx").expect("pbx trunk");
    assert_eq!(pbx.credentials, None);
    assert_eq!(pbx.outbound_proxy(), Some("sip:192.0.2.20:5060"));
    assert_eq!(
        config
            .trunk_for_source(ip("192.0.2.20"))
            .map(|t| t.name.as_str()),
        Some("office-pbx")
    );
    assert_eq!(
        config
            .trunk_for_source(ip("198.51.100.77"))
            .map(|t| t.name.as_str()),
        Some("carrier")
    );
    assert!(config.trunk_for_source(ip("192.0.2.21")).is_none());
}

/// The problems of a broken file, as displayed.
fn problems(text: &str) -> Vec<String> {
    match ServerConfig::from_str(Path::new("conf/dialtone.toml"), text) {
        Ok(config) => panic!("accepted {text:?}: {config:?}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn assert_reports(text: &str, expected: &[&str]) {
    let found = problems(text);
    assert_eq!(found.len(), expected.len(), "{text}\n{found:#?}");
    for (problem, expected) in found.iter().zip(expected) {
        assert!(
            problem.starts_with(expected),
            "{text}\n  found    {problem}\n  expected {expected}…"
        );
    }
}

#[test]
fn unknown_and_mistyped_fields() {
    assert_reports(
        "[sip]\nlisten = 5060\nlisen = \"0.0.0.0:5060\"\ndrain_s = \"30\"\n",
        &[
            "conf/dialtone.toml:2: field `sip.listen`: expected a string, found an integer",
            "conf/dialtone.toml:3: field `sip.lisen`: unknown field; expected one of `listen`, ",
            "conf/dialtone.toml:4: field `sip.drain_s`: expected an integer, found a string",
        ],
    );
    assert_reports(
        "[[trunk]]\nname = \"t\"\nallow = [\"::1\"]\npasword = \"x\"\n",
        &["conf/dialtone.toml:4: field `trunk[0].pasword`: unknown field"],
    );
    assert_reports(
        "[media]\nport = 1\n",
        &["conf/dialtone.toml:1: field `media`: unknown section; expected `[sip]` or `[[trunk]]`"],
    );
}

#[test]
fn bad_addresses_and_ranges() {
    assert_reports(
        "[sip]\n\
         listen = \"0.0.0.0\"\n\
         rtp_ports = \"80-90\"\n\
         allow = [\"10.0.0.0/8\", \"10.0.0.0/40\", \"host.example.com\"]\n",
        &[
            "conf/dialtone.toml:2: field `sip.listen`: \"0.0.0.0\" is not an ip:port address",
            "conf/dialtone.toml:3: field `sip.rtp_ports`: ports below 1024 are reserved",
            "conf/dialtone.toml:4: field `sip.allow[1]`: prefix length \"40\" is not a number from 0 to 32",
            "conf/dialtone.toml:4: field `sip.allow[2]`: \"host.example.com\" is not an IP address or CIDR range",
        ],
    );
    assert_reports(
        "[sip]\nrtp_ports = \"30000-20000\"\ncodecs = [\"pcmu\", \"g722\"]\n",
        &[
            "conf/dialtone.toml:2: field `sip.rtp_ports`: the range starts at 30000, after its end 20000",
            "conf/dialtone.toml:3: field `sip.codecs[1]`: unknown codec \"g722\"; expected one of \"pcmu\", \"pcma\", \"opus\"",
        ],
    );
}

#[test]
fn trunk_rules() {
    assert_reports(
        r#"[[trunk]]
name = "carrier"
registrar = "sip.carrier.example.com"
username = "acct"
password = "p"
password_env = "X"
expires = 30

[[trunk]]
name = "carrier"
proxy = "sip:pbx"
"#,
        &[
            "conf/dialtone.toml:3: field `trunk[0].registrar`: \"sip.carrier.example.com\" is not a SIP URI",
            "conf/dialtone.toml:6: field `trunk[0].password_env`: give either `password` or `password_env`, not both",
            "conf/dialtone.toml:7: field `trunk[0].expires`: must be from 60 to 86400 seconds",
            "conf/dialtone.toml:10: field `trunk[1].name`: duplicate trunk name \"carrier\" (first used on line 2)",
        ],
    );
    assert_reports(
        "[[trunk]]\nregistrar = \"sip:r\"\n",
        &[
            "conf/dialtone.toml:1: field `trunk[0].name`: missing: every trunk needs a `name`",
            "conf/dialtone.toml:2: field `trunk[0].registrar`: needs `username` and `password` (or `password_env`)",
        ],
    );
}

#[test]
fn unset_password_variable_is_named() {
    assert_reports(
        "[[trunk]]\nname = \"t\"\nregistrar = \"sip:r\"\nusername = \"u\"\n\
         password_env = \"DIALTONE_TEST_VARIABLE_NEVER_SET_4F2A\"\n",
        &[
            "conf/dialtone.toml:5: field `trunk[0].password_env`: environment variable \
           `DIALTONE_TEST_VARIABLE_NEVER_SET_4F2A` is not set",
        ],
    );
}

#[test]
fn invalid_toml_names_the_line() {
    assert_reports(
        "[sip]\nrealm = \"dialtone\"\nallow = [\"::1\"\n",
        &["conf/dialtone.toml:3: invalid TOML"],
    );
}

#[test]
fn files_on_disk_are_named_in_messages() {
    let dir = std::env::temp_dir().join(format!("dialtone-sip-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("broken.toml");
    std::fs::write(&path, "[sip]\n\nlisten = \"nowhere\"\n").expect("write");
    let error = ServerConfig::load(&path).expect_err("invalid");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}:3: field `sip.listen`: ", path.display())),
        "{message}"
    );
    let problem = &error.problems()[0];
    assert_eq!((problem.line, problem.column), (3, 10));
    assert_eq!(problem.field.as_deref(), Some("sip.listen"));

    std::fs::write(&path, b"[sip]\nrealm = \"\xff\"\n").expect("write");
    let error = ServerConfig::load(&path).expect_err("not UTF-8");
    assert!(
        error
            .to_string()
            .ends_with(":2: the file is not valid UTF-8"),
        "{error}"
    );

    let missing = dir.join("missing.toml");
    let error = ServerConfig::load(&missing).expect_err("missing");
    assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    assert!(error.problems().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_file_means_defaults() {
    let config = ServerConfig::default();
    assert!(config.trunks.is_empty());
    assert!(config.sip.allow.allows(ip("127.0.0.1")));
    assert!(config.sip.allow.allows(ip("::1")));
    assert!(!config.sip.allow.allows(ip("10.0.0.1")));
    assert_eq!(
        ServerConfig::from_str(Path::new("empty.toml"), "").expect("valid"),
        config
    );
}
