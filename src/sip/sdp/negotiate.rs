//! Offer/answer decisions (RFC 3264) and the descriptions we write.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use super::parse::{self, Connection, Description, MediaSection};
use super::{
    Codec, DEFAULT_PTIME_MS, DEFAULT_TELEPHONE_EVENT_PT, Direction, LocalMedia, Negotiated,
    OPUS_PAYLOAD_TYPE, SdpError, SdpOrigin,
};

/// Every codec we know, for identifying payload types.
const ALL_CODECS: [Codec; 3] = [Codec::Pcmu, Codec::Pcma, Codec::Opus];

const TELEPHONE_EVENT: &str = "telephone-event";
const TELEPHONE_EVENT_RATE: u32 = 8000;
const TELEPHONE_EVENT_RTPMAP: &str = "telephone-event/8000";
/// DTMF 0-9, *, #, A-D and flash (RFC 4733 §3.2).
const TELEPHONE_EVENT_FMTP: &str = "0-16";

/// Answers a remote offer.
///
/// The first audio stream that is usable (RTP/AVP or RTP/AVPF, a port other than 0, a
/// unicast connection address) and lists one of `prefs` is accepted with the first codec in
/// `prefs` order the offer contains, under the offerer's payload type numbers; every other
/// `m=` line is rejected with port 0. `local` is where we receive RTP; `origin` is stamped
/// with the answer (see [`SdpOrigin`]). An empty `prefs` means `[Codec::Pcmu]`.
///
/// # Errors
///
/// [`SdpError::TooLarge`] over [`MAX_SDP_LEN`](super::MAX_SDP_LEN) bytes,
/// [`SdpError::NoAudio`] when the body is not SDP or has no usable audio stream, and
/// [`SdpError::NoCommonCodec`] when the usable audio streams list none of `prefs`.
pub fn answer(
    offer: &str,
    prefs: &[Codec],
    local: &LocalMedia,
    origin: &mut SdpOrigin,
) -> Result<(Negotiated, String), SdpError> {
    let desc = parse::parse(offer)?;
    let prefs = normalize(prefs);

    let mut any_usable = false;
    let mut chosen = None;
    for (index, media) in desc.media.iter().enumerate() {
        let Some(remote) = usable_stream(&desc, media) else {
            continue;
        };
        any_usable = true;
        if let Some(codec) = choose_by_preference(media, &prefs) {
            chosen = Some((index, media, remote, codec));
            break;
        }
    }
    let Some((index, media, remote, (codec, payload_type))) = chosen else {
        return Err(if any_usable {
            SdpError::NoCommonCodec
        } else {
            SdpError::NoAudio
        });
    };

    let telephone_event = media
        .payload_types()
        .find(|&pt| is_telephone_event(media, pt, None));
    let direction = media.direction.or(desc.direction).unwrap_or_default();
    let negotiated = Negotiated {
        remote,
        codec,
        payload_type,
        telephone_event,
        ptime_ms: ptime(&desc, media),
        direction,
        held: is_held(direction, remote),
    };

    let mut formats = vec![Format::codec(codec, payload_type)];
    formats.extend(telephone_event.map(Format::telephone_event));
    let accepted = Stream {
        port: local.port,
        proto: canonical_profile(media.proto),
        formats: &formats,
        ptime_ms: negotiated.ptime_ms,
        direction: negotiated.local_direction(),
    };

    let mut body = session_lines(local);
    for (i, other) in desc.media.iter().enumerate() {
        if i == index {
            accepted.write(&mut body);
        } else {
            write_rejected(&mut body, other);
        }
    }
    Ok((negotiated, finish(origin, local, &body)))
}

/// Our offer: one audio stream listing `prefs` in order (PCMU 0, PCMA 8, Opus 111), then
/// telephone-event/8000 on `telephone_event_pt`, ptime 20 and `direction`.
///
/// `telephone_event_pt` must be a dynamic payload type (96..=127) other than 111; anything
/// else is replaced with [`DEFAULT_TELEPHONE_EVENT_PT`], and [`parse_answer`] applies the same
/// rule. An empty `prefs` means `[Codec::Pcmu]`. `origin` is stamped with the offer.
pub fn offer(
    prefs: &[Codec],
    telephone_event_pt: u8,
    local: &LocalMedia,
    origin: &mut SdpOrigin,
    direction: Direction,
) -> String {
    let mut formats: Vec<Format> = normalize(prefs)
        .into_iter()
        .map(|codec| Format::codec(codec, codec.offer_payload_type()))
        .collect();
    formats.push(Format::telephone_event(telephone_event_payload_type(
        telephone_event_pt,
    )));
    let stream = Stream {
        port: local.port,
        proto: "RTP/AVP",
        formats: &formats,
        ptime_ms: DEFAULT_PTIME_MS,
        direction,
    };
    let mut body = session_lines(local);
    stream.write(&mut body);
    finish(origin, local, &body)
}

/// Reads the remote answer to an offer made with [`offer`] from `offered` and
/// `telephone_event_pt`.
///
/// The codec is the first one the answer lists that we offered (payload types without an
/// `a=rtpmap` are read as the numbers we offered); the telephone-event payload type is the
/// answer's telephone-event/8000 `a=rtpmap`, or our number if the answer lists it without one.
///
/// # Errors
///
/// [`SdpError::TooLarge`], [`SdpError::NoAudio`] when the body is not SDP or the audio stream
/// was rejected (port 0) or is unusable, [`SdpError::NoCommonCodec`] when the answer lists none
/// of the offered codecs.
pub fn parse_answer(
    answer: &str,
    offered: &[Codec],
    telephone_event_pt: u8,
) -> Result<Negotiated, SdpError> {
    let desc = parse::parse(answer)?;
    let offered = normalize(offered);
    let te_pt = telephone_event_payload_type(telephone_event_pt);
    let known: Vec<(u8, Codec)> = offered
        .iter()
        .map(|&codec| (codec.offer_payload_type(), codec))
        .collect();

    let (media, remote) = desc
        .media
        .iter()
        .find_map(|m| usable_stream(&desc, m).map(|remote| (m, remote)))
        .ok_or(SdpError::NoAudio)?;
    let (codec, payload_type) = media
        .payload_types()
        .find_map(|pt| {
            codec_of(media, pt, &known)
                .filter(|codec| offered.contains(codec))
                .map(|codec| (codec, pt))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let telephone_event = media
        .payload_types()
        .find(|&pt| is_telephone_event(media, pt, Some(te_pt)));
    let direction = media.direction.or(desc.direction).unwrap_or_default();
    Ok(Negotiated {
        remote,
        codec,
        payload_type,
        telephone_event,
        ptime_ms: ptime(&desc, media),
        direction,
        held: is_held(direction, remote),
    })
}

/// Deduplicates `prefs`, keeping the first occurrence; empty means PCMU only.
fn normalize(prefs: &[Codec]) -> Vec<Codec> {
    let mut out: Vec<Codec> = Vec::with_capacity(ALL_CODECS.len());
    for &codec in prefs {
        if !out.contains(&codec) {
            out.push(codec);
        }
    }
    if out.is_empty() {
        out.push(Codec::Pcmu);
    }
    out
}

/// `pt` if it is a dynamic payload type we can use for telephone-event, else the default.
fn telephone_event_payload_type(pt: u8) -> u8 {
    if (96..=127).contains(&pt) && pt != OPUS_PAYLOAD_TYPE {
        pt
    } else {
        DEFAULT_TELEPHONE_EVENT_PT
    }
}

/// Where to send RTP for `media`, if it is an audio stream we can carry.
fn usable_stream(desc: &Description<'_>, media: &MediaSection<'_>) -> Option<SocketAddr> {
    media.media.filter(|m| m.eq_ignore_ascii_case("audio"))?;
    let port = media.port.filter(|&port| port != 0)?;
    media.proto.filter(|p| is_rtp_profile(p))?;
    // A media-level c= wins over the session-level one, even when it is unusable.
    match media.connection.or(desc.connection)? {
        Connection::Addr(ip) if !ip.is_multicast() => Some(SocketAddr::new(ip, port)),
        Connection::Addr(_) | Connection::Invalid => None,
    }
}

fn is_rtp_profile(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// The profile for our accepted stream: the offer's, spelled canonically.
fn canonical_profile(proto: Option<&str>) -> &'static str {
    match proto {
        Some(p) if p.eq_ignore_ascii_case("RTP/AVPF") => "RTP/AVPF",
        _ => "RTP/AVP",
    }
}

/// The first codec in `prefs` order that `media` lists, with its payload type there.
fn choose_by_preference(media: &MediaSection<'_>, prefs: &[Codec]) -> Option<(Codec, u8)> {
    prefs.iter().find_map(|&codec| {
        media
            .payload_types()
            .find(|&pt| codec_of(media, pt, &[]) == Some(codec))
            .map(|pt| (codec, pt))
    })
}

/// The codec payload type `pt` carries on `media`: its `a=rtpmap` if present, otherwise the
/// static assignment, otherwise `known` (the numbers we offered).
fn codec_of(media: &MediaSection<'_>, pt: u8, known: &[(u8, Codec)]) -> Option<Codec> {
    match media.rtpmap(pt) {
        Some(map) => ALL_CODECS.into_iter().find(|codec| {
            map.is(codec.encoding_name(), codec.clock_rate())
                && match codec {
                    Codec::Pcmu | Codec::Pcma => matches!(map.channels, None | Some(1)),
                    Codec::Opus => true,
                }
        }),
        None => ALL_CODECS
            .into_iter()
            .find(|codec| codec.static_payload_type() == Some(pt))
            .or_else(|| {
                known
                    .iter()
                    .find(|(known_pt, _)| *known_pt == pt)
                    .map(|&(_, codec)| codec)
            }),
    }
}

/// Whether `pt` is telephone-event/8000 on `media`; without an `a=rtpmap`, whether it is
/// the number we offered.
fn is_telephone_event(media: &MediaSection<'_>, pt: u8, offered: Option<u8>) -> bool {
    match media.rtpmap(pt) {
        Some(map) => map.is(TELEPHONE_EVENT, TELEPHONE_EVENT_RATE),
        None => offered == Some(pt),
    }
}

/// The packetization time: the requested `a=ptime` if it is 10..=60 ms in steps of 10,
/// otherwise 20, then lowered to fit `a=maxptime`.
fn ptime(desc: &Description<'_>, media: &MediaSection<'_>) -> u32 {
    let requested = media
        .ptime
        .or(desc.ptime)
        .filter(|ms| (10..=60).contains(ms) && ms % 10 == 0)
        .unwrap_or(DEFAULT_PTIME_MS);
    match media.maxptime.or(desc.maxptime) {
        Some(max) if max >= 10 && requested > max => max / 10 * 10,
        _ => requested,
    }
}

/// The remote side holds the call: it does not want our media.
fn is_held(direction: Direction, remote: SocketAddr) -> bool {
    matches!(direction, Direction::SendOnly | Direction::Inactive) || remote.ip().is_unspecified()
}

/// One payload format of a stream we write.
struct Format {
    payload_type: u8,
    rtpmap: &'static str,
    fmtp: Option<&'static str>,
}

impl Format {
    const fn codec(codec: Codec, payload_type: u8) -> Self {
        Self {
            payload_type,
            rtpmap: codec.rtpmap(),
            fmtp: codec.fmtp(),
        }
    }

    const fn telephone_event(payload_type: u8) -> Self {
        Self {
            payload_type,
            rtpmap: TELEPHONE_EVENT_RTPMAP,
            fmtp: Some(TELEPHONE_EVENT_FMTP),
        }
    }
}

/// The audio stream we offer or accept.
struct Stream<'a> {
    port: u16,
    proto: &'static str,
    formats: &'a [Format],
    ptime_ms: u32,
    direction: Direction,
}

impl Stream<'_> {
    fn write(&self, out: &mut String) {
        let mut m_line = format!("m=audio {} {}", self.port, self.proto);
        for format in self.formats {
            push(&mut m_line, format_args!(" {}", format.payload_type));
        }
        line(out, format_args!("{m_line}"));
        for format in self.formats {
            line(
                out,
                format_args!("a=rtpmap:{} {}", format.payload_type, format.rtpmap),
            );
            if let Some(fmtp) = format.fmtp {
                line(out, format_args!("a=fmtp:{} {fmtp}", format.payload_type));
            }
        }
        line(out, format_args!("a=ptime:{}", self.ptime_ms));
        line(out, format_args!("a={}", self.direction));
    }
}

/// A rejected stream: port 0, keeping the offer's media type, profile and one format.
fn write_rejected(out: &mut String, media: &MediaSection<'_>) {
    line(
        out,
        format_args!(
            "m={} 0 {} {}",
            media.media.unwrap_or("audio"),
            media.proto.unwrap_or("RTP/AVP"),
            media.formats.first().copied().unwrap_or("0"),
        ),
    );
}

/// The lines between `o=` and the first `m=`.
fn session_lines(local: &LocalMedia) -> String {
    let mut out = String::with_capacity(256);
    line(&mut out, format_args!("s=-"));
    line(
        &mut out,
        format_args!("c=IN {} {}", addr_type(local.ip), local.ip),
    );
    line(&mut out, format_args!("t=0 0"));
    out
}

/// Stamps `body` on `origin` and prepends `v=` and `o=`.
fn finish(origin: &mut SdpOrigin, local: &LocalMedia, body: &str) -> String {
    origin.stamp(body);
    let mut out = String::with_capacity(body.len() + 64);
    line(&mut out, format_args!("v=0"));
    line(
        &mut out,
        format_args!(
            "o=- {} {} IN {} {}",
            origin.session_id(),
            origin.version(),
            addr_type(local.ip),
            local.ip
        ),
    );
    out.push_str(body);
    out
}

const fn addr_type(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// Appends one CRLF-terminated line.
fn line(out: &mut String, args: fmt::Arguments<'_>) {
    push(out, args);
    out.push_str("\r\n");
}

fn push(out: &mut String, args: fmt::Arguments<'_>) {
    // Formatting into a String cannot fail.
    let _ = out.write_fmt(args);
}
