//! Syntax of header values (RFC 3261 §25): URIs, `host:port`, addresses, parameters, Via
//! values, numbers and tags.

use super::lex::{SplitTop, is_lws, is_token, quoted_end, trim};

/// The length of a URI's scheme when it is followed by ':'.
pub(super) fn scheme_len(uri: &[u8]) -> Option<usize> {
    let colon = uri.iter().position(|&b| b == b':')?;
    let scheme = &uri[..colon];
    let first_alpha = scheme.first().is_some_and(u8::is_ascii_alphabetic);
    let rest_ok = scheme
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (first_alpha && rest_ok).then_some(colon)
}

/// `host [":" port]`, host a name, an IPv4 address or a bracketed IPv6 reference; spaces
/// around the colon are allowed (a Via's `COLON` is `SWS ":" SWS`).
pub(super) fn host_port(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let s = trim(s);
    let host_len = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&b| b == b']')?;
        let inner = &s[1..close];
        let ipv6 = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
        if inner.is_empty() || !inner.iter().all(|&b| ipv6(b)) {
            return None;
        }
        close + 1
    } else {
        let len = s.iter().take_while(|&&b| b != b':' && !is_lws(b)).count();
        let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        if len == 0 || !s[..len].iter().all(|&b| name(b)) {
            return None;
        }
        len
    };
    let port = match trim(&s[host_len..]) {
        [] => None,
        [b':', port @ ..] => Some(parse_port(trim(port))?),
        _ => return None,
    };
    Some((&s[..host_len], port))
}

fn parse_port(p: &[u8]) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(p).ok()?.parse().ok()
}

/// `name-addr` or `addr-spec`, then header parameters (RFC 3261 §20.10, §20.20).
pub(super) fn address_ok(value: &[u8]) -> bool {
    let v = trim(value);
    if v.is_empty() {
        return false;
    }
    let angle = if v[0] == b'"' {
        let Some(end) = quoted_end(v, 0) else {
            return false;
        };
        let lt = end + v[end..].iter().take_while(|&&b| is_lws(b)).count();
        if v.get(lt) != Some(&b'<') {
            return false;
        }
        Some(lt)
    } else {
        // An unquoted display name: tokens and spaces (UTF-8 tolerated) up to '<'.
        let run = v
            .iter()
            .take_while(|&&b| is_token(b) || is_lws(b) || b >= 0x80)
            .count();
        (v.get(run) == Some(&b'<')).then_some(run)
    };
    let params = match angle {
        Some(lt) => {
            let Some(gt) = v[lt..].iter().position(|&b| b == b'>').map(|i| lt + i) else {
                return false;
            };
            if !uri_ok(&v[lt + 1..gt]) {
                return false;
            }
            &v[gt + 1..]
        }
        None => {
            // A URI with ',', '?' or ';' must be inside <> (RFC 3261 §20).
            let semi = v.iter().position(|&b| b == b';').unwrap_or(v.len());
            let uri = trim(&v[..semi]);
            if !uri_ok(uri) || uri.iter().any(|&b| matches!(b, b'?' | b',')) {
                return false;
            }
            &v[semi..]
        }
    };
    params_ok(params)
}

/// A URI in a header: a scheme, no spaces, no brackets or quotes.
fn uri_ok(uri: &[u8]) -> bool {
    !uri.is_empty()
        && uri
            .iter()
            .all(|&b| b > b' ' && b != 0x7f && !matches!(b, b'<' | b'>' | b'"'))
        && scheme_len(uri).is_some()
}

/// `*( SEMI param )` where a param is `token [ EQUAL value ]`, spaces allowed around.
fn params_ok(params: &[u8]) -> bool {
    let p = trim(params);
    if p.is_empty() {
        return true;
    }
    if p[0] != b';' {
        return false;
    }
    SplitTop::new(&p[1..], b';').all(|param| param_ok(param).is_some())
}

/// A parameter's name when it is well-formed.
pub(super) fn param_ok(param: &[u8]) -> Option<&[u8]> {
    let p = trim(param);
    let name_len = p.iter().take_while(|&&b| is_token(b)).count();
    if name_len == 0 {
        return None;
    }
    let rest = trim(&p[name_len..]);
    if rest.is_empty() {
        return Some(&p[..name_len]);
    }
    if rest[0] != b'=' {
        return None;
    }
    let value = trim(&rest[1..]);
    let ok = match value.first() {
        None => false,
        Some(b'"') => quoted_end(value, 0) == Some(value.len()),
        Some(_) => !value.iter().any(|&b| is_lws(b) || b == b'"'),
    };
    ok.then_some(&p[..name_len])
}

/// The parts of one Via value needed to route an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ViaParts<'a> {
    pub(super) transport: &'a [u8],
    pub(super) host: &'a [u8],
    pub(super) port: Option<u16>,
    pub(super) rport: bool,
    /// Offset in the trimmed value where the parameters begin (at a ';'), or its length.
    pub(super) params_at: usize,
    /// Whether every parameter is well-formed (routing does not need them to be).
    pub(super) params_ok: bool,
}

/// `protocol / version / transport LWS sent-by *( SEMI via-param )` (RFC 3261 §20.42).
pub(super) fn parse_via(value: &[u8]) -> Option<ViaParts<'_>> {
    let v = trim(value);
    let mut i = 0;
    let token = |i: &mut usize| {
        let start = *i;
        *i += v[start..].iter().take_while(|&&b| is_token(b)).count();
        (*i > start).then(|| &v[start..*i])
    };
    let spaces = |i: &mut usize| {
        let start = *i;
        *i += v[start..].iter().take_while(|&&b| is_lws(b)).count();
        *i - start
    };
    token(&mut i)?;
    spaces(&mut i);
    (v.get(i) == Some(&b'/')).then_some(())?;
    i += 1;
    spaces(&mut i);
    token(&mut i)?;
    spaces(&mut i);
    (v.get(i) == Some(&b'/')).then_some(())?;
    i += 1;
    spaces(&mut i);
    let transport = token(&mut i)?;
    if spaces(&mut i) == 0 {
        return None;
    }
    let sent_by_len = v[i..].iter().take_while(|&&b| b != b';').count();
    let (host, port) = host_port(&v[i..i + sent_by_len])?;
    i += sent_by_len;
    let params_at = i;
    let (mut rport, mut params_ok) = (false, true);
    match v.get(i) {
        None => {}
        Some(b';') => {
            for param in SplitTop::new(&v[i + 1..], b';') {
                match param_ok(param) {
                    Some(name) => rport |= name.eq_ignore_ascii_case(b"rport"),
                    None => params_ok = false,
                }
            }
        }
        Some(_) => return None,
    }
    Some(ViaParts {
        transport,
        host,
        port,
        rport,
        params_at,
        params_ok,
    })
}

/// The number in a header value of digits only (saturating far beyond any valid value).
pub(super) fn digits_value(value: &[u8]) -> Option<u64> {
    let v = trim(value);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Whether a From/To value carries a `tag` parameter.
pub(super) fn has_tag(value: &[u8]) -> bool {
    let v = trim(value);
    let params = match SplitTop::new(v, b';').next() {
        // With <>, parameters follow '>'; SplitTop keeps <...> together.
        Some(first) => &v[first.len().min(v.len())..],
        None => return false,
    };
    params.strip_prefix(b";").is_some_and(|p| {
        SplitTop::new(p, b';').any(|param| {
            let name = trim(param)
                .split(|&b| b == b'=' || is_lws(b))
                .next()
                .unwrap_or_default();
            name.eq_ignore_ascii_case(b"tag")
        })
    })
}
