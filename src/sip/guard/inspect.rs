//! The decision: [`inspect`] reads one raw datagram once, start line then headers, and
//! returns its [`Verdict`]: passed on with its framing, answered, or dropped.

use super::answer::top_via;
use super::framing::Framing;
use super::lex::{find_crlf, is_token, leading_crlfs, trim_end_sp};
use super::scan::scan_headers;
use super::syntax::{has_tag, host_port, scheme_len};
use super::verdict::{HeaderName, Problem, Rejection, Status, Unanswered, Verdict};

/// Headers a request must carry (Max-Forwards is left out: RFC 2543 requests have none).
const MANDATORY: [HeaderName; 5] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
];

/// The methods rsipstack parses (method names are case-sensitive, RFC 3261 §7.1).
const KNOWN_METHODS: [&[u8]; 14] = [
    b"ACK",
    b"BYE",
    b"CANCEL",
    b"INFO",
    b"INVITE",
    b"MESSAGE",
    b"NOTIFY",
    b"OPTIONS",
    b"PRACK",
    b"PUBLISH",
    b"REFER",
    b"REGISTER",
    b"SUBSCRIBE",
    b"UPDATE",
];

/// Decides what happens to one datagram.
pub fn inspect(data: &[u8]) -> Verdict {
    if data.iter().all(u8::is_ascii_whitespace) {
        // Keep-alives: the stack answers them.
        return Verdict::Pass(Framing {
            start: 0,
            end: data.len(),
            add_length: None,
            tidy: [None; 3],
        });
    }
    let start = leading_crlfs(data);
    let msg = &data[start..];
    let line_end = find_crlf(msg).unwrap_or(msg.len());
    let line = &msg[..line_end];
    let is_response = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/");
    if is_response {
        return inspect_response(msg, line, line_end, start);
    }
    let drop_or_answer = |status: Status, problem: Problem, method: &[u8]| {
        if method == b"ACK" {
            Verdict::Drop {
                problem,
                kind: Unanswered::Ack,
            }
        } else if top_via(msg).is_none() {
            Verdict::Drop {
                problem,
                kind: Unanswered::NoVia,
            }
        } else {
            Verdict::Answer(Rejection { status, problem })
        }
    };
    let bad = |problem: Problem, method: &[u8]| drop_or_answer(Status::BadRequest, problem, method);
    let first_word = line
        .split(|&b| b == b' ' || b == b'\t')
        .next()
        .unwrap_or_default();
    let request = match request_line(line) {
        Ok(request) => request,
        Err(problem) => return bad(problem, first_word),
    };
    let method = request.method;
    if !request.version_2_0 {
        return drop_or_answer(Status::VersionNotSupported, Problem::Version, method);
    }
    let scan = match scan_headers(msg, line_end) {
        Ok(scan) => scan,
        Err(problem) => return bad(problem, method),
    };
    if let Some(missing) = MANDATORY.into_iter().find(|&h| scan.slot(h).count == 0) {
        return bad(Problem::Missing(missing), method);
    }
    if let Err(problem) = scan.check_common() {
        return bad(problem, method);
    }
    let cseq_method = match scan.cseq() {
        Ok((_, cseq_method)) => cseq_method,
        Err(problem) => return bad(problem, method),
    };
    let framing = match scan.framing(msg, start) {
        Ok(framing) => framing,
        Err(problem) => return bad(problem, method),
    };
    if !KNOWN_METHODS.contains(&method) {
        return drop_or_answer(Status::NotImplemented, Problem::UnknownMethod, method);
    }
    if cseq_method != method {
        return bad(Problem::CSeqMethod, method);
    }
    if !has_tag(scan.slot(HeaderName::From).first) {
        return bad(Problem::MissingFromTag, method);
    }
    Verdict::Pass(framing)
}

fn inspect_response(msg: &[u8], line: &[u8], line_end: usize, start: usize) -> Verdict {
    let drop = |problem| Verdict::Drop {
        problem,
        kind: Unanswered::Response,
    };
    if !status_line_ok(line) {
        return drop(Problem::StatusLine);
    }
    let scan = match scan_headers(msg, line_end) {
        Ok(scan) => scan,
        Err(problem) => return drop(problem),
    };
    if let Some(missing) = MANDATORY.into_iter().find(|&h| scan.slot(h).count == 0) {
        return drop(Problem::Missing(missing));
    }
    if let Err(problem) = scan.check_common().and_then(|()| scan.cseq().map(|_| ())) {
        return drop(problem);
    }
    match scan.framing(msg, start) {
        Ok(framing) => Verdict::Pass(framing),
        Err(problem) => drop(problem),
    }
}

/// `SIP/2.0 SP 3DIGIT SP Reason-Phrase`, code 100 to 699; the reason may be empty.
fn status_line_ok(line: &[u8]) -> bool {
    let Some(rest) = line
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/2.0 "))
        .map(|_| &line[8..])
    else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits != 3 || !(b'1'..=b'6').contains(&rest[0]) {
        return false;
    }
    match rest.get(3) {
        None | Some(b' ') => std::str::from_utf8(rest).is_ok(),
        Some(_) => false,
    }
}

struct RequestLine<'a> {
    method: &'a [u8],
    version_2_0: bool,
}

/// `Method SP Request-URI SP SIP-Version` with single spaces; spaces after the version are
/// tolerated (RFC 4475 §3.1.2.10 allows ignoring them).
fn request_line(line: &[u8]) -> Result<RequestLine<'_>, Problem> {
    let line = trim_end_sp(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Problem::RequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err(Problem::RequestLine);
    }
    let Some(numbers) = version
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .map(|_| &version[4..])
    else {
        return Err(Problem::RequestLine);
    };
    let mut halves = numbers.split(|&b| b == b'.');
    let (Some(major), Some(minor), None) = (halves.next(), halves.next(), halves.next()) else {
        return Err(Problem::RequestLine);
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(major) || !digits(minor) {
        return Err(Problem::RequestLine);
    }
    if !request_uri_ok(uri) {
        return Err(Problem::RequestUri);
    }
    Ok(RequestLine {
        method,
        version_2_0: major == b"2" && minor == b"0",
    })
}

fn request_uri_ok(uri: &[u8]) -> bool {
    if !uri
        .iter()
        .all(|&b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"'))
    {
        return false;
    }
    let Some(scheme_len) = scheme_len(uri) else {
        return false;
    };
    let scheme = &uri[..scheme_len];
    if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
        return true;
    }
    // userinfo "@" hostport params ["?" headers]: headers are not allowed in a Request-URI
    // (RFC 3261 §19.1.1); the user part may hold '?' and ';'.
    let rest = &uri[scheme_len + 1..];
    let host_area = match rest.iter().rposition(|&b| b == b'@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    if host_area.contains(&b'?') {
        return false;
    }
    let hostport = host_area.split(|&b| b == b';').next().unwrap_or_default();
    host_port(hostport).is_some()
}
