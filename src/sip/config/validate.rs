//! The rules of the server config file: reading the `[sip]` table and each `[[trunk]]` table
//! of the TOML tree into [`SipSettings`] and [`Trunk`], reporting every rule a field breaks,
//! and the rules across trunks (unique names, unambiguous challenge usernames).

use std::collections::HashMap;
use std::env::VarError;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeTable;

use super::error::SourceText;
use super::fields::{Node, StringItem, Table, describe, field_path};
use super::{
    AccessList, CODEC_NAMES, Cidr, DEFAULT_EXPIRES, EXPIRES_RANGE, MAX_DRAIN_S, ServerConfig,
    SipSettings, Trunk, TrunkCredentials,
};

/// Looks up an environment variable.
pub(super) type Env<'e> = &'e dyn Fn(&str) -> Result<String, VarError>;

const SIP_FIELDS: &[&str] = &[
    "listen",
    "rtp_ports",
    "public_ip",
    "codecs",
    "realm",
    "allow",
    "drain_s",
];

const TRUNK_FIELDS: &[&str] = &[
    "name",
    "registrar",
    "username",
    "password",
    "password_env",
    "auth_username",
    "expires",
    "allow",
    "challenge",
    "proxy",
    "from",
];

/// Reads a whole file; problems are recorded in `source` and defaults stand in for what could
/// not be read.
pub(super) fn read_document(source: &mut SourceText<'_>, text: &str, env: Env<'_>) -> ServerConfig {
    let document = match DeTable::parse(text) {
        Ok(document) => document,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            source.report(&span, None, format!("invalid TOML: {}", e.message()));
            return ServerConfig::default();
        }
    };
    let mut config = ServerConfig::default();
    for (key, value) in document.get_ref() {
        let name: &str = key.get_ref();
        match name {
            "sip" => {
                if let Some(table) = Table::new(source, value, "sip".into(), SIP_FIELDS) {
                    config.sip = read_sip(source, &table);
                }
            }
            "trunk" => config.trunks = read_trunks(source, value, env),
            _ => source.report_field(
                &key.span(),
                field_path("", name),
                "unknown section; expected `[sip]` or `[[trunk]]`",
            ),
        }
    }
    config
}

fn read_sip(source: &mut SourceText<'_>, table: &Table<'_, '_>) -> SipSettings {
    let mut sip = SipSettings::default();
    if let Some(listen) = table.string(source, "listen") {
        match listen.get_ref().trim().parse::<SocketAddr>() {
            Ok(address) => sip.listen = Some(address),
            Err(_) => source.report_field(
                &listen.span(),
                table.field("listen"),
                format!(
                    "{:?} is not an ip:port address, e.g. \"0.0.0.0:5060\"",
                    listen.get_ref()
                ),
            ),
        }
    }
    if let Some(ports) = table.string(source, "rtp_ports") {
        match port_range(ports.get_ref()) {
            Ok(range) => sip.rtp_ports = Some(range),
            Err(message) => source.report_field(&ports.span(), table.field("rtp_ports"), message),
        }
    }
    if let Some(public_ip) = table.string(source, "public_ip") {
        match public_ip.get_ref().trim().parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => source.report_field(
                &public_ip.span(),
                table.field("public_ip"),
                format!("{ip} is not an address peers can send to"),
            ),
            Ok(ip) => sip.public_ip = Some(ip),
            Err(_) => source.report_field(
                &public_ip.span(),
                table.field("public_ip"),
                format!("{:?} is not an IP address", public_ip.get_ref()),
            ),
        }
    }
    if let Some(codecs) = table.strings(source, "codecs") {
        sip.codecs = read_codecs(source, table, &codecs);
    }
    if let Some(realm) = table.string(source, "realm") {
        if realm.get_ref().is_empty() || realm.get_ref().chars().any(char::is_control) {
            source.report_field(
                &realm.span(),
                table.field("realm"),
                "must be a non-empty string without control characters",
            );
        } else {
            sip.realm = realm.into_inner();
        }
    }
    if let Some(allow) = read_access_list(source, table) {
        sip.allow = allow;
    }
    if let Some(drain) = table.integer(source, "drain_s") {
        match u64::try_from(*drain.get_ref()) {
            Ok(seconds) if seconds <= MAX_DRAIN_S => {
                sip.drain = Some(Duration::from_secs(seconds));
            }
            _ => source.report_field(
                &drain.span(),
                table.field("drain_s"),
                format!("must be from 0 to {MAX_DRAIN_S} seconds"),
            ),
        }
    }
    sip
}

/// `"start-end"`, both ports from 1024, start not above end.
fn port_range(text: &str) -> Result<(u16, u16), String> {
    let invalid = || format!("{text:?} is not a port range \"start-end\", e.g. \"20000-29999\"");
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let port = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    let (Some(start), Some(end)) = (port(start), port(end)) else {
        return Err(invalid());
    };
    if start < 1024 {
        return Err(format!(
            "ports below 1024 are reserved: start at 1024 or above, not {start}"
        ));
    }
    if start > end {
        return Err(format!("the range starts at {start}, after its end {end}"));
    }
    Ok((start, end))
}

fn read_codecs(
    source: &mut SourceText<'_>,
    table: &Table<'_, '_>,
    codecs: &Spanned<Vec<StringItem>>,
) -> Vec<String> {
    if codecs.get_ref().is_empty() {
        source.report_field(
            &codecs.span(),
            table.field("codecs"),
            "needs at least one codec",
        );
    }
    let mut names: Vec<String> = Vec::new();
    for StringItem {
        field,
        value: codec,
    } in codecs.get_ref()
    {
        let name = codec.get_ref().trim().to_ascii_lowercase();
        if !CODEC_NAMES.contains(&name.as_str()) {
            let known = CODEC_NAMES.map(|c| format!("{c:?}")).join(", ");
            let message = format!(
                "unknown codec {:?}; expected one of {known}",
                codec.get_ref()
            );
            source.report_field(&codec.span(), field.as_str(), message);
        } else if names.contains(&name) {
            source.report_field(
                &codec.span(),
                field.as_str(),
                format!("{name:?} is listed twice"),
            );
        } else {
            names.push(name);
        }
    }
    names
}

fn read_access_list(source: &mut SourceText<'_>, table: &Table<'_, '_>) -> Option<AccessList> {
    let items = table.strings(source, "allow")?;
    let mut list = Vec::new();
    for StringItem { field, value: item } in items.into_inner() {
        match Cidr::parse(item.get_ref()) {
            Ok(cidr) => list.push(cidr),
            Err(e) => source.report_field(&item.span(), field, e.to_string()),
        }
    }
    Some(AccessList(list))
}

/// A trunk as read, with the spans the rules across trunks point at.
struct TrunkSite {
    trunk: Trunk,
    name_span: Range<usize>,
    username_span: Option<Range<usize>>,
}

fn read_trunks(source: &mut SourceText<'_>, node: &Node<'_>, env: Env<'_>) -> Vec<Trunk> {
    let Some(items) = node.get_ref().as_array() else {
        let message = format!(
            "expected an array of tables, found {}: write each trunk as `[[trunk]]`",
            describe(node.get_ref())
        );
        source.report_field(&node.span(), "trunk", message);
        return Vec::new();
    };
    let sites: Vec<TrunkSite> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let table = Table::new(source, item, format!("trunk[{i}]"), TRUNK_FIELDS)?;
            read_trunk(source, &table, env)
        })
        .collect();

    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut challenge_users: HashMap<&str, &str> = HashMap::new();
    for (i, site) in sites.iter().enumerate() {
        let trunk = &site.trunk;
        if let Some(&first) = names.get(trunk.name.as_str()) {
            let (line, _) = source.position(sites[first].name_span.start);
            source.report_field(
                &site.name_span,
                format!("trunk[{i}].name"),
                format!(
                    "duplicate trunk name {:?} (first used on line {line})",
                    trunk.name
                ),
            );
        } else {
            names.insert(&trunk.name, i);
        }
        if let (true, Some(username), Some(span)) =
            (trunk.challenge, trunk.username(), &site.username_span)
        {
            if let Some(other) = challenge_users.insert(username, &trunk.name) {
                source.report_field(
                    span,
                    format!("trunk[{i}].username"),
                    format!(
                        "{username:?} is also the username of trunk {other:?}, which also \
                         challenges callers: a caller's username must name one trunk"
                    ),
                );
            }
        }
    }
    sites.into_iter().map(|site| site.trunk).collect()
}

fn read_trunk(
    source: &mut SourceText<'_>,
    table: &Table<'_, '_>,
    env: Env<'_>,
) -> Option<TrunkSite> {
    let name = table.string(source, "name");
    let registrar = sip_uri(source, table, "registrar");
    let username = non_empty(source, table, "username");
    let auth_username = non_empty(source, table, "auth_username");
    let password = non_empty(source, table, "password");
    let password_env = table.string(source, "password_env");
    let expires = table.integer(source, "expires");
    let allow = read_access_list(source, table).unwrap_or_default();
    let challenge = table.boolean(source, "challenge");
    let proxy = sip_uri(source, table, "proxy");
    let from = sip_uri(source, table, "from");

    let name = match name {
        Some(name)
            if name.get_ref().trim().is_empty() || name.get_ref().chars().any(char::is_control) =>
        {
            source.report_field(
                &name.span(),
                table.field("name"),
                "must be a non-empty string without control characters",
            );
            None
        }
        Some(name) => Some(name),
        None => {
            source.report_field(
                table.span(),
                table.field("name"),
                "missing: every trunk needs a `name`",
            );
            None
        }
    };

    // A stand-in for a wrong value: the trunk still takes part in the rules across trunks.
    let expires = match expires {
        None => DEFAULT_EXPIRES,
        Some(value) => {
            let seconds = u32::try_from(*value.get_ref())
                .ok()
                .filter(|s| EXPIRES_RANGE.contains(s));
            if seconds.is_none() {
                let message = format!(
                    "must be from {} to {} seconds",
                    EXPIRES_RANGE.start(),
                    EXPIRES_RANGE.end()
                );
                source.report_field(&value.span(), table.field("expires"), message);
            } else if !table.has("registrar") {
                source.report_field(
                    &value.span(),
                    table.field("expires"),
                    "only applies with `registrar`",
                );
            }
            seconds.unwrap_or(DEFAULT_EXPIRES)
        }
    };

    // Where the password comes from; `Err(())` when that was reported.
    let secret = match (&password, &password_env) {
        (Some(_), Some(env_name)) => {
            source.report_field(
                &env_name.span(),
                table.field("password_env"),
                "give either `password` or `password_env`, not both",
            );
            Err(())
        }
        (Some(password), None) => Ok(Some((password.span(), password.get_ref().clone()))),
        (None, Some(env_name)) => password_from_env(source, table, env_name, env)
            .map(|p| Some((env_name.span(), p)))
            .ok_or(()),
        (None, None) => Ok(None),
    };

    // Each rule below is judged on what is written, so that a field that is there but wrong
    // is not also reported as missing.
    let written = |key| table.has(key);
    let credentials = match (&username, secret) {
        (Some(username), Ok(Some((_, password)))) => Some(TrunkCredentials::new(
            username.get_ref(),
            auth_username
                .as_ref()
                .map_or(username.get_ref(), |a| a.get_ref()),
            &password,
        )),
        (Some(username), Ok(None)) if !written("password") => {
            source.report_field(
                &username.span(),
                table.field("username"),
                "needs `password` or `password_env`",
            );
            None
        }
        (None, Ok(Some((span, _)))) if !written("username") => {
            source.report_field(
                &span,
                table.field("username"),
                "missing: a password needs a `username`",
            );
            None
        }
        _ => None,
    };
    if let (Some(auth_username), false) = (&auth_username, written("username")) {
        source.report_field(
            &auth_username.span(),
            table.field("auth_username"),
            "needs `username`",
        );
    }

    let challenge_span = challenge
        .as_ref()
        .filter(|c| *c.get_ref())
        .map(Spanned::span);
    if !written("username") {
        let needed_by = registrar
            .as_ref()
            .map(|r| (r.span(), "registrar"))
            .or(challenge_span.map(|span| (span, "challenge")));
        if let Some((span, key)) = needed_by {
            source.report_field(
                &span,
                table.field(key),
                "needs `username` and `password` (or `password_env`)",
            );
        }
    }

    let challenge = challenge.is_some_and(|c| *c.get_ref());
    if !written("registrar") && !written("proxy") && !written("allow") && !challenge {
        source.report_field(
            table.span(),
            table.path(),
            "this trunk does nothing: give `registrar` or `proxy` to place calls through it, \
             `allow` or `challenge = true` to take calls from it",
        );
    }

    let name = name?;
    let username_span = username.as_ref().map(Spanned::span);
    Some(TrunkSite {
        trunk: Trunk {
            name: name.get_ref().clone(),
            registrar: registrar.map(Spanned::into_inner),
            credentials,
            expires,
            allow,
            challenge,
            proxy: proxy.map(Spanned::into_inner),
            from: from.map(Spanned::into_inner),
        },
        name_span: name.span(),
        username_span,
    })
}

/// The password named by `password_env`, read now; `None` when reported.
fn password_from_env(
    source: &mut SourceText<'_>,
    table: &Table<'_, '_>,
    name: &Spanned<String>,
    env: Env<'_>,
) -> Option<String> {
    let var = name.get_ref();
    let valid_name = !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let problem = if !valid_name {
        format!("{var:?} is not an environment variable name (letters, digits and `_`)")
    } else {
        match env(var) {
            Ok(value) if !value.is_empty() => return Some(value),
            Ok(_) => format!("environment variable `{var}` is empty"),
            Err(VarError::NotPresent) => format!("environment variable `{var}` is not set"),
            Err(VarError::NotUnicode(_)) => {
                format!("environment variable `{var}` is not valid UTF-8")
            }
        }
    };
    source.report_field(&name.span(), table.field("password_env"), problem);
    None
}

/// A string field that must not be empty; `None` when absent or reported.
fn non_empty(
    source: &mut SourceText<'_>,
    table: &Table<'_, '_>,
    key: &str,
) -> Option<Spanned<String>> {
    let value = table.string(source, key)?;
    if value.get_ref().is_empty() {
        source.report_field(&value.span(), table.field(key), "must not be empty");
        return None;
    }
    Some(value)
}

/// A SIP URI field (`sip:` or `sips:`); `None` when absent or reported.
fn sip_uri(
    source: &mut SourceText<'_>,
    table: &Table<'_, '_>,
    key: &str,
) -> Option<Spanned<String>> {
    let value = table.string(source, key)?;
    let uri = value.get_ref();
    let rest = ["sip:", "sips:"].iter().find_map(|scheme| {
        uri.get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| &uri[scheme.len()..])
    });
    let host = rest.map(|rest| rest.rsplit('@').next().unwrap_or(rest));
    let valid = host.is_some_and(|host| !host.is_empty())
        && !uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'));
    if !valid {
        source.report_field(
            &value.span(),
            table.field(key),
            format!(
                "{uri:?} is not a SIP URI: expected `sip:` or `sips:` and a host, \
                 e.g. \"sip:sip.carrier.example.com\""
            ),
        );
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("20000-29999"), Ok((20000, 29999)));
        assert_eq!(port_range(" 1024 - 1024 "), Ok((1024, 1024)));
        assert_eq!(port_range("10000-65535"), Ok((10000, 65535)));
        for bad in [
            "",
            "20000",
            "-",
            "a-b",
            "20000-70000",
            "+2000-3000",
            "1-2-3",
            "2000--3000",
        ] {
            assert!(port_range(bad).is_err(), "{bad}");
        }
        assert!(port_range("1000-2000").expect_err("low").contains("1024"));
        assert!(
            port_range("3000-2000")
                .expect_err("reversed")
                .contains("after its end")
        );
    }
}
