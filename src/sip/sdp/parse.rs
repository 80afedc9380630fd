//! Lenient SDP reader: the few fields offer/answer needs, from untrusted text.
//!
//! Accepts CRLF, LF or bare CR line ends and surrounding whitespace, skips lines it does not
//! understand, and records a value it cannot use (a port above 65535, a host name in `c=`)
//! as unusable instead of failing the whole description.

use std::net::IpAddr;

use super::{Direction, MAX_SDP_LEN, SdpError};

/// Longest token (media type, profile, format) echoed back into our answer.
const MAX_TOKEN_LEN: usize = 32;

/// A parsed session description.
#[derive(Debug, Default)]
pub(super) struct Description<'a> {
    /// The session-level `c=` line.
    pub connection: Option<Connection>,
    /// The session-level direction attribute.
    pub direction: Option<Direction>,
    /// A session-level `a=ptime` (not standard there, but seen).
    pub ptime: Option<u32>,
    /// A session-level `a=maxptime`.
    pub maxptime: Option<u32>,
    /// The media sections, in order.
    pub media: Vec<MediaSection<'a>>,
}

/// A `c=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Connection {
    /// An `IN IP4`/`IN IP6` address (TTL and count suffixes dropped).
    Addr(IpAddr),
    /// Present but unusable: another network type, a host name, or garbage.
    Invalid,
}

/// One `m=` section.
#[derive(Debug, Default)]
pub(super) struct MediaSection<'a> {
    /// Media type token (`audio`, `video`, ...), if well-formed.
    pub media: Option<&'a str>,
    /// Port, if present and in range.
    pub port: Option<u16>,
    /// Transport profile token, if well-formed.
    pub proto: Option<&'a str>,
    /// Format tokens in the order listed (well-formed ones only).
    pub formats: Vec<&'a str>,
    /// The first media-level `c=` line.
    pub connection: Option<Connection>,
    /// The media-level direction attribute.
    pub direction: Option<Direction>,
    /// `a=rtpmap` lines that parsed.
    pub rtpmaps: Vec<RtpMap<'a>>,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
    /// `a=maxptime`, in milliseconds.
    pub maxptime: Option<u32>,
}

impl<'a> MediaSection<'a> {
    /// The payload types listed on the `m=` line that are valid RTP payload types (0..=127),
    /// in order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| payload_type(f))
    }

    /// The first `a=rtpmap` for `pt`.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap<'a>> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }
}

/// An `a=rtpmap:<pt> <name>/<rate>[/<channels>]` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RtpMap<'a> {
    pub payload_type: u8,
    pub name: &'a str,
    pub clock_rate: u32,
    pub channels: Option<u32>,
}

impl RtpMap<'_> {
    /// Whether this maps to `name` at `clock_rate` (name compared case-insensitively).
    pub fn is(&self, name: &str, clock_rate: u32) -> bool {
        self.name.eq_ignore_ascii_case(name) && self.clock_rate == clock_rate
    }
}

/// Parses `text` as SDP. Fails only when it is too large or does not start with `v=0`.
pub(super) fn parse(text: &str) -> Result<Description<'_>, SdpError> {
    if text.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge { len: text.len() });
    }
    let mut lines = text
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|line| !line.is_empty());
    match lines.next().and_then(split_line) {
        Some(('v', "0")) => {}
        _ => return Err(SdpError::NoAudio),
    }

    let mut desc = Description::default();
    for (key, value) in lines.filter_map(split_line) {
        if key == 'm' {
            desc.media.push(media_line(value));
            continue;
        }
        match desc.media.last_mut() {
            Some(media) => media_field(media, key, value),
            None => session_field(&mut desc, key, value),
        }
    }
    Ok(desc)
}

/// Splits `<type>=<value>`; the type is one character.
fn split_line(line: &str) -> Option<(char, &str)> {
    let (key, value) = line.split_once('=')?;
    let mut chars = key.trim().chars();
    let key = chars.next()?;
    chars.next().is_none().then_some((key, value.trim()))
}

fn session_field<'a>(desc: &mut Description<'a>, key: char, value: &'a str) {
    match key {
        'c' => {
            desc.connection.get_or_insert(connection(value));
        }
        'a' => {
            let (name, value) = attribute(value);
            if let Some(dir) = Direction::from_attribute(name) {
                desc.direction.get_or_insert(dir);
            } else if name.eq_ignore_ascii_case("ptime") {
                desc.ptime = desc.ptime.or(value.and_then(millis));
            } else if name.eq_ignore_ascii_case("maxptime") {
                desc.maxptime = desc.maxptime.or(value.and_then(millis));
            }
        }
        _ => {}
    }
}

fn media_field<'a>(media: &mut MediaSection<'a>, key: char, value: &'a str) {
    match key {
        'c' => {
            media.connection.get_or_insert(connection(value));
        }
        'a' => {
            let (name, value) = attribute(value);
            if let Some(dir) = Direction::from_attribute(name) {
                media.direction.get_or_insert(dir);
            } else if name.eq_ignore_ascii_case("rtpmap") {
                if let Some(map) = value.and_then(rtpmap) {
                    media.rtpmaps.push(map);
                }
            } else if name.eq_ignore_ascii_case("ptime") {
                media.ptime = media.ptime.or(value.and_then(millis));
            } else if name.eq_ignore_ascii_case("maxptime") {
                media.maxptime = media.maxptime.or(value.and_then(millis));
            }
        }
        _ => {}
    }
}

/// `<media> <port>[/<count>] <proto> <fmt> ...`
fn media_line(value: &str) -> MediaSection<'_> {
    let mut fields = value.split_ascii_whitespace();
    let media = fields.next().and_then(token);
    let port = fields
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse::<u16>().ok());
    let proto = fields.next().and_then(token);
    let formats = fields.filter_map(token).collect();
    MediaSection {
        media,
        port,
        proto,
        formats,
        ..MediaSection::default()
    }
}

/// `IN IP4|IP6 <address>[/<ttl>[/<count>]]`
fn connection(value: &str) -> Connection {
    let mut fields = value.split_ascii_whitespace();
    let (Some(net), Some(_addrtype), Some(addr), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Connection::Invalid;
    };
    if !net.eq_ignore_ascii_case("IN") {
        return Connection::Invalid;
    }
    let addr = addr.split('/').next().unwrap_or(addr);
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    addr.parse().map_or(Connection::Invalid, Connection::Addr)
}

/// `<name>[:<value>]`
fn attribute(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (value.trim(), None),
    }
}

/// `<pt> <name>/<rate>[/<channels>]`
fn rtpmap(value: &str) -> Option<RtpMap<'_>> {
    let mut fields = value.split_ascii_whitespace();
    let payload_type = payload_type(fields.next()?)?;
    let encoding = fields.next()?;
    let mut parts = encoding.split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    Some(RtpMap {
        payload_type,
        name,
        clock_rate,
        channels,
    })
}

/// An RTP payload type: a decimal number in 0..=127.
pub(super) fn payload_type(format: &str) -> Option<u8> {
    format.parse::<u8>().ok().filter(|pt| *pt <= 127)
}

/// Milliseconds, as an integer or a decimal (`20`, `20.0`); the fraction is dropped.
fn millis(value: &str) -> Option<u32> {
    let whole = value.split('.').next().unwrap_or(value);
    whole.parse().ok()
}

/// A token safe to echo back: RFC 8866 token characters (and `/`, for profiles), not too
/// long.
fn token(field: &str) -> Option<&str> {
    let ok = !field.is_empty()
        && field.len() <= MAX_TOKEN_LEN
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-./^_`{|}~".contains(&b));
    ok.then_some(field)
}
