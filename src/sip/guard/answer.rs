//! Building answers: [`build_answer`] writes the stateless response to a rejected request
//! from its headers, read leniently, and says where it goes (RFC 3261 §18.2.2, RFC 3581).

use std::io::Write;
use std::net::SocketAddr;

use super::lex::{SplitTop, leading_crlfs, trim, trim_end_sp};
use super::syntax::{ViaParts, has_tag, param_ok, parse_via};
use super::verdict::{HeaderName, Rejection, Status};

/// The raw headers an answer copies.
struct Copied<'a> {
    vias: [&'a [u8]; MAX_VIAS],
    via_count: usize,
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    call_id: Option<&'a [u8]>,
    cseq: Option<&'a [u8]>,
}

/// Via headers copied into an answer at most (the rest are cut: the answer still reaches the
/// previous hop, which is all a stateless answer can promise).
const MAX_VIAS: usize = 70;

/// Reads the headers an answer needs, tolerating anything malformed (lines without a colon
/// are skipped, LF alone ends a line, the end of the datagram ends the headers).
fn copy_headers(data: &[u8]) -> Copied<'_> {
    let mut copied = Copied {
        vias: [&[]; MAX_VIAS],
        via_count: 0,
        from: None,
        to: None,
        call_id: None,
        cseq: None,
    };
    for raw in LenientHeaders::new(data) {
        let Some(colon) = raw.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = &raw[colon + 1..];
        match HeaderName::classify(trim_end_sp(&raw[..colon])) {
            Some(HeaderName::Via) if copied.via_count < MAX_VIAS => {
                copied.vias[copied.via_count] = value;
                copied.via_count += 1;
            }
            Some(HeaderName::From) => {
                copied.from.get_or_insert(value);
            }
            Some(HeaderName::To) => {
                copied.to.get_or_insert(value);
            }
            Some(HeaderName::CallId) => {
                copied.call_id.get_or_insert(value);
            }
            Some(HeaderName::CSeq) => {
                copied.cseq.get_or_insert(value);
            }
            _ => {}
        }
    }
    copied
}

/// The first value of the first Via header, found leniently.
pub(super) fn top_via(data: &[u8]) -> Option<&[u8]> {
    let copied = copy_headers(&data[leading_crlfs(data)..]);
    let first = *copied.vias.first().filter(|_| copied.via_count > 0)?;
    let top = trim(SplitTop::new(first, b',').next().unwrap_or_default());
    (!top.is_empty()).then_some(top)
}

/// Logical header lines after the start line, leniently.
struct LenientHeaders<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> LenientHeaders<'a> {
    fn new(data: &'a [u8]) -> Self {
        let pos = data
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |lf| lf + 1);
        LenientHeaders { data, pos }
    }

    /// The physical line at `pos` without its line end, and where the next one starts.
    fn line_at(&self, pos: usize) -> (&'a [u8], usize) {
        let rest = &self.data[pos..];
        let lf = rest.iter().position(|&b| b == b'\n');
        let (mut line, next) = match lf {
            Some(lf) => (&rest[..lf], pos + lf + 1),
            None => (rest, self.data.len()),
        };
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        (line, next)
    }
}

impl<'a> Iterator for LenientHeaders<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        let (line, mut next) = self.line_at(start);
        if line.is_empty() {
            self.pos = self.data.len();
            return None;
        }
        let mut end = start + line.len();
        while next < self.data.len() && matches!(self.data[next], b' ' | b'\t') {
            let (fold, after) = self.line_at(next);
            end = next + fold.len();
            next = after;
        }
        self.pos = next;
        Some(&self.data[start..end])
    }
}

/// The answer to a rejected request and where it goes; `None` without a Via to route it by.
pub fn build_answer(
    data: &[u8],
    rejection: Rejection,
    source: SocketAddr,
) -> Option<(Vec<u8>, SocketAddr)> {
    let msg = &data[leading_crlfs(data)..];
    let copied = copy_headers(msg);
    let first_via = *copied.vias.first().filter(|_| copied.via_count > 0)?;
    let mut values = SplitTop::new(first_via, b',');
    let top = trim(values.next().unwrap_or_default());
    if top.is_empty() {
        return None;
    }
    let rest_of_first = trim(values.rest());
    let via = parse_via(top);
    let destination = reply_destination(via, source);

    let mut out = Vec::with_capacity(msg.len().min(4096) + 256);
    let _ = write!(
        out,
        "SIP/2.0 {} {}\r\n",
        rejection.status.code(),
        rejection.problem
    );
    out.extend_from_slice(b"Via: ");
    match via {
        Some(parts) => {
            // The top Via as received: `received` when the source is not the sent-by address,
            // `rport` filled in when asked for (RFC 3261 §18.2.1, RFC 3581 §4).
            push_unfolded(&mut out, trim(&top[..parts.params_at]));
            if let Some(params) = top[parts.params_at..].strip_prefix(b";") {
                for param in SplitTop::new(params, b';') {
                    let name = param_ok(param).unwrap_or_default();
                    if trim(param).is_empty()
                        || name.eq_ignore_ascii_case(b"received")
                        || name.eq_ignore_ascii_case(b"rport")
                    {
                        continue;
                    }
                    out.push(b';');
                    push_unfolded(&mut out, trim(param));
                }
            }
            if parts.rport || !same_host(parts.host, source.ip()) {
                let _ = write!(out, ";received={}", source.ip());
            }
            if parts.rport {
                let _ = write!(out, ";rport={}", source.port());
            }
        }
        None => push_unfolded(&mut out, top),
    }
    out.extend_from_slice(b"\r\n");
    // The other Via values, in order; values no hop could route by are left out.
    let others = copied.vias[1..copied.via_count].iter().copied();
    for via in std::iter::once(rest_of_first).chain(others) {
        for value in SplitTop::new(via, b',').filter(|v| parse_via(v).is_some()) {
            push_header(&mut out, "Via", value);
        }
    }
    if let Some(from) = copied.from {
        push_header(&mut out, "From", from);
    }
    if let Some(to) = copied.to {
        out.extend_from_slice(b"To: ");
        push_unfolded(&mut out, trim(to));
        if !has_tag(to) {
            // Stateless: a retransmission gets the same tag (RFC 3261 §8.2.6.2).
            let seed = [top, to, copied.call_id.unwrap_or_default()];
            let _ = write!(out, ";tag={:016x}", tag_hash(&seed));
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(call_id) = copied.call_id {
        push_header(&mut out, "Call-ID", call_id);
    }
    if let Some(cseq) = copied.cseq {
        push_header(&mut out, "CSeq", cseq);
    }
    if rejection.status == Status::NotImplemented {
        let _ = write!(out, "Allow: {}\r\n", crate::sip::ua::ALLOW);
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some((out, destination))
}

/// Where an answer goes: the source address, at the source port when the top Via asks for
/// `rport`, else at its sent-by port or the transport's default port (RFC 3261 §18.2.2);
/// the source port when there is no usable Via.
fn reply_destination(via: Option<ViaParts<'_>>, source: SocketAddr) -> SocketAddr {
    let Some(via) = via else {
        return source;
    };
    let port = if via.rport {
        source.port()
    } else {
        via.port
            .unwrap_or(if via.transport.eq_ignore_ascii_case(b"TLS") {
                5061
            } else {
                5060
            })
    };
    SocketAddr::new(source.ip(), port)
}

/// Whether a Via sent-by host is the address `ip`.
fn same_host(host: &[u8], ip: std::net::IpAddr) -> bool {
    let host = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    std::str::from_utf8(host)
        .ok()
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        == Some(ip)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    push_unfolded(out, trim(value));
    out.extend_from_slice(b"\r\n");
}

/// Copies a header value with its folds undone (a fold becomes the whitespace after it).
fn push_unfolded(out: &mut Vec<u8>, value: &[u8]) {
    out.extend(value.iter().copied().filter(|&b| b != b'\r' && b != b'\n'));
}

/// FNV-1a over the parts, for tags that do not change between retransmissions.
fn tag_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
