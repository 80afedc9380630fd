//! The UDP front door of the SIP user agent: a socket wrapper that inspects every datagram
//! before rsipstack's transport sees it.
//!
//! rsipstack's UDP transport silently drops every datagram its parser refuses, and its parser
//! accepts many messages RFC 3261 calls malformed. This module owns the decision in between,
//! made per datagram in one pass over the bytes, without allocating on the way through:
//! - a well-formed message is handed on, only framed: CRLFs before the start line are removed
//!   (RFC 3261 §7.5), octets after the Content-Length are cut off (§18.3), a body that came
//!   without a Content-Length gets one (over UDP it is the rest of the datagram), and spaces
//!   around '=' in the top Via, From and To are taken out (`EQUAL` allows them; the stack
//!   would not see a `tag = x`);
//! - a request with an unknown method gets `501 Not Implemented` with `Allow`, another SIP
//!   version `505`, and a malformed request `400` whose reason phrase names the problem
//!   (RFC 4475), as does a request without a From tag (RFC 2543 syntax: the stack keys its
//!   transactions by that tag and would drop it). These answers are sent here, statelessly,
//!   and the request goes no further;
//! - an invalid response, a malformed ACK and a request without a usable Via are dropped.
//!
//! Answers go where RFC 3261 §18.2.2 and RFC 3581 send them: to the packet's source address
//! (the `received` address), at the source port when the top Via asks for `rport`, else at the
//! Via's sent-by port or the transport's default port. [`GuardCounters`] counts every decision.

use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rsipstack::platform::net::UdpSocket as PlatformUdpSocket;
use rsipstack::transport::udp::UdpConnection;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Why the guarded UDP transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot hand the UDP socket to the SIP stack: {0}")]
    Attach(#[source] rsipstack::Error),
}

/// Binds `addr` and returns rsipstack's UDP transport reading through the guard.
pub async fn guarded_udp(
    addr: SocketAddr,
    cancel: CancellationToken,
    counters: Arc<GuardCounters>,
) -> Result<UdpConnection, GuardError> {
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|source| GuardError::Bind { addr, source })?;
    let guarded: Arc<dyn PlatformUdpSocket> = Arc::new(GuardedSocket { socket, counters });
    UdpConnection::from_socket(guarded, None, Some(cancel))
        .await
        .map_err(GuardError::Attach)
}

/// What the guard did with the datagrams it received, for metrics.
#[derive(Debug, Default)]
pub struct GuardCounters {
    passed: AtomicU64,
    answered_400: AtomicU64,
    answered_501: AtomicU64,
    answered_505: AtomicU64,
    dropped: AtomicU64,
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardSnapshot {
    /// Datagrams handed on to the SIP stack.
    pub passed: u64,
    /// Requests answered `400 Bad Request` here.
    pub answered_400: u64,
    /// Requests answered `501 Not Implemented` here.
    pub answered_501: u64,
    /// Requests answered `505 Version Not Supported` here.
    pub answered_505: u64,
    /// Datagrams neither handed on nor answered.
    pub dropped: u64,
}

impl GuardCounters {
    /// The current values, for a metrics scrape.
    pub fn snapshot(&self) -> GuardSnapshot {
        GuardSnapshot {
            passed: self.passed.load(Ordering::Relaxed),
            answered_400: self.answered_400.load(Ordering::Relaxed),
            answered_501: self.answered_501.load(Ordering::Relaxed),
            answered_505: self.answered_505.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn answered(&self, status: Status) {
        let counter = match status {
            Status::BadRequest => &self.answered_400,
            Status::NotImplemented => &self.answered_501,
            Status::VersionNotSupported => &self.answered_505,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A UDP socket that answers or drops what the SIP stack must not see, and hands it the rest.
struct GuardedSocket {
    socket: tokio::net::UdpSocket,
    counters: Arc<GuardCounters>,
}

impl GuardedSocket {
    /// The next datagram for the SIP stack, framed in place in `buf`.
    async fn receive(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (len, source) = self.socket.recv_from(buf).await?;
            let len = len.min(buf.len());
            match inspect(&buf[..len]) {
                Verdict::Pass(framing) => {
                    self.counters.passed.fetch_add(1, Ordering::Relaxed);
                    return Ok((framing.apply(buf, len), source));
                }
                Verdict::Answer(rejection) => {
                    let Some((answer, destination)) = build_answer(&buf[..len], rejection, source)
                    else {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    debug!(
                        %source,
                        %destination,
                        status = rejection.status.code(),
                        problem = %rejection.problem,
                        "SIP request answered by the guard"
                    );
                    match self.socket.send_to(&answer, destination).await {
                        Ok(_) => self.counters.answered(rejection.status),
                        Err(e) => {
                            debug!(error = %e, %destination, "guard answer not sent");
                            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Verdict::Drop { problem, kind } => {
                    debug!(%source, %problem, ?kind, "SIP datagram dropped by the guard");
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// The trait is declared with `async_trait`; these are the signatures it expands to.
impl PlatformUdpSocket for GuardedSocket {
    fn recv_from<'life0, 'life1, 'async_trait>(
        &'life0 self,
        buf: &'life1 mut [u8],
    ) -> BoxFuture<'async_trait, rsipstack::Result<(usize, SocketAddr)>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { Ok(self.receive(buf).await?) })
    }

    fn send_to<'life0, 'life1, 'async_trait>(
        &'life0 self,
        buf: &'life1 [u8],
        addr: SocketAddr,
    ) -> BoxFuture<'async_trait, rsipstack::Result<usize>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { Ok(self.socket.send_to(buf, addr).await?) })
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions (pure)

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handed to the SIP stack, framed as described.
    Pass(Framing),
    /// A request answered here and not handed on.
    Answer(Rejection),
    /// Neither handed on nor answered.
    Drop { problem: Problem, kind: Unanswered },
}

/// How a passed datagram is cut down to the one message it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Where the start line begins (CRLFs before it are removed).
    pub start: usize,
    /// Where the message ends; later octets are not part of it.
    pub end: usize,
    /// A `Content-Length: value` header to insert at offset `at`, for a body sent without one.
    pub add_length: Option<AddLength>,
    /// Header values (the first Via, From and To) whose spaces around '=' are removed, so
    /// that the stack reads `tag = x` as the tag `x` (RFC 3261 §25.1: `EQUAL = SWS "=" SWS`).
    pub tidy: [Option<Span>; 3],
}

/// A range of the datagram: `len` octets from offset `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub at: usize,
    pub len: usize,
}

/// A Content-Length header the guard adds: `Content-Length: value`, inserted at offset `at`
/// of the datagram (the empty line after the headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddLength {
    pub at: usize,
    pub value: usize,
}

/// The answer to a request the stack must not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: Status,
    pub problem: Problem,
}

/// Why a datagram that was not handed on got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// Responses are never answered; invalid ones are discarded (RFC 4475 §3.1.2.5, §3.1.2.19).
    Response,
    /// ACKs are never answered (RFC 3261 §17.2.1).
    Ack,
    /// No Via to route an answer by.
    NoVia,
}

/// The statuses the guard answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    /// The status code on the wire.
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }
}

/// The headers the guard checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
}

impl HeaderName {
    fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Contact => "Contact",
        }
    }

    /// The header a name stands for, long or compact form, any case.
    fn classify(name: &[u8]) -> Option<HeaderName> {
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'v' => Some(HeaderName::Via),
                b'f' => Some(HeaderName::From),
                b't' => Some(HeaderName::To),
                b'i' => Some(HeaderName::CallId),
                b'l' => Some(HeaderName::ContentLength),
                b'c' => Some(HeaderName::ContentType),
                b'm' => Some(HeaderName::Contact),
                _ => None,
            };
        }
        ALL_HEADERS
            .into_iter()
            .find(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
    }
}

const ALL_HEADERS: [HeaderName; 9] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Contact,
];

/// Headers a request must carry (Max-Forwards is left out: RFC 2543 requests have none).
const MANDATORY: [HeaderName; 5] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
];

/// Headers that may appear only once.
const SINGLE: [HeaderName; 7] = [
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::ContentType,
];

/// What is wrong with a message; its `Display` is the reason phrase of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The start line is not `Method SP Request-URI SP SIP-Version`.
    RequestLine,
    /// The Request-URI has no scheme, holds spaces or brackets, has no host or has headers.
    RequestUri,
    /// A SIP version other than 2.0.
    Version,
    /// A method the stack does not know.
    UnknownMethod,
    /// The status line of a response is malformed or its code is not 100-699.
    StatusLine,
    /// A header line without a colon, with an invalid name, or a fold with nothing before it.
    HeaderLine,
    /// A header that is not UTF-8.
    NotUtf8,
    /// A CR or LF that is not part of a CRLF in the header section.
    LineEnding,
    /// The header section does not end with an empty line.
    NoEmptyLine,
    Missing(HeaderName),
    Duplicate(HeaderName),
    Malformed(HeaderName),
    /// A CSeq number that does not fit 32 bits.
    CSeqTooLarge,
    /// The CSeq method differs from the request method.
    CSeqMethod,
    /// A Content-Length larger than the body received.
    ContentLengthTooLarge,
    /// A request without a From tag: an RFC 2543 transaction, which the stack cannot keep.
    MissingFromTag,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::RequestLine => f.write_str("Malformed Request-Line"),
            Problem::RequestUri => f.write_str("Malformed Request-URI"),
            Problem::Version => f.write_str("Version Not Supported"),
            Problem::UnknownMethod => f.write_str("Not Implemented"),
            Problem::StatusLine => f.write_str("Malformed Status-Line"),
            Problem::HeaderLine => f.write_str("Malformed Header Line"),
            Problem::NotUtf8 => f.write_str("Header Not UTF-8"),
            Problem::LineEnding => f.write_str("Bare CR or LF in Headers"),
            Problem::NoEmptyLine => f.write_str("Missing Empty Line After Headers"),
            Problem::Missing(h) => write!(f, "Missing {} Header", h.as_str()),
            Problem::Duplicate(h) => write!(f, "Duplicate {} Header", h.as_str()),
            Problem::Malformed(h) => write!(f, "Malformed {} Header", h.as_str()),
            Problem::CSeqTooLarge => f.write_str("CSeq Number Too Large"),
            Problem::CSeqMethod => f.write_str("CSeq Method Mismatch"),
            Problem::ContentLengthTooLarge => f.write_str("Content-Length Larger Than Body"),
            Problem::MissingFromTag => f.write_str("Missing From Tag"),
        }
    }
}

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

/// The length of a URI's scheme when it is followed by ':'.
fn scheme_len(uri: &[u8]) -> Option<usize> {
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
fn host_port(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
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

/// One header kind's occurrences.
#[derive(Debug, Clone, Copy, Default)]
struct Slot<'a> {
    count: u32,
    /// The first value and its offset in the message.
    first: &'a [u8],
    at: usize,
}

/// The header section, read once.
#[derive(Debug, Default)]
struct Scan<'a> {
    slots: [Slot<'a>; 9],
    /// The first syntax problem in a Via, From, To, Contact or Call-ID value.
    syntax: Option<Problem>,
    /// Offset of the empty line ending the headers (where a header can be inserted).
    blank_line: usize,
    /// Offset of the body.
    body: usize,
}

impl<'a> Scan<'a> {
    fn slot(&self, h: HeaderName) -> &Slot<'a> {
        &self.slots[h as usize]
    }

    fn record(&mut self, h: HeaderName, value: &'a [u8], at: usize) {
        let slot = &mut self.slots[h as usize];
        slot.count = slot.count.saturating_add(1);
        if slot.count == 1 {
            slot.first = value;
            slot.at = at;
        }
        if self.syntax.is_none() && !value_ok(h, value) {
            self.syntax = Some(Problem::Malformed(h));
        }
    }

    /// Checks shared by requests and responses, after the mandatory headers.
    fn check_common(&self) -> Result<(), Problem> {
        if let Some(h) = SINGLE.into_iter().find(|&h| self.slot(h).count > 1) {
            return Err(Problem::Duplicate(h));
        }
        if let Some(problem) = self.syntax {
            return Err(problem);
        }
        let max_forwards = self.slot(HeaderName::MaxForwards);
        if max_forwards.count == 1 && digits_value(max_forwards.first).is_none() {
            return Err(Problem::Malformed(HeaderName::MaxForwards));
        }
        Ok(())
    }

    /// The CSeq number and method.
    fn cseq(&self) -> Result<(u64, &'a [u8]), Problem> {
        let value = trim(self.slot(HeaderName::CSeq).first);
        let malformed = Problem::Malformed(HeaderName::CSeq);
        let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
        let spaces = value[digits..].iter().take_while(|&&b| is_lws(b)).count();
        let method = &value[digits + spaces..];
        if digits == 0 || spaces == 0 || method.is_empty() || !method.iter().all(|&b| is_token(b)) {
            return Err(malformed);
        }
        let number = digits_value(&value[..digits]).ok_or(malformed)?;
        if number > u64::from(u32::MAX) {
            return Err(Problem::CSeqTooLarge);
        }
        Ok((number, method))
    }

    /// Where the message ends: Content-Length octets after the empty line, or the end of
    /// the datagram (then a Content-Length is added for a non-empty body).
    fn framing(&self, msg: &[u8], start: usize) -> Result<Framing, Problem> {
        let available = msg.len().saturating_sub(self.body);
        let tidy = [HeaderName::Via, HeaderName::From, HeaderName::To].map(|h| {
            let slot = self.slot(h);
            needs_tidy(slot.first).then_some(Span {
                at: start + slot.at,
                len: slot.first.len(),
            })
        });
        let slot = self.slot(HeaderName::ContentLength);
        if slot.count == 0 {
            return Ok(Framing {
                start,
                end: start + msg.len(),
                add_length: (available > 0).then_some(AddLength {
                    at: start + self.blank_line,
                    value: available,
                }),
                tidy,
            });
        }
        let length =
            digits_value(slot.first).ok_or(Problem::Malformed(HeaderName::ContentLength))?;
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if length > available {
            return Err(Problem::ContentLengthTooLarge);
        }
        Ok(Framing {
            start,
            end: start + self.body + length,
            add_length: None,
            tidy,
        })
    }
}

/// Reads the header section that follows the start line (`line_end` is the start line's CR).
fn scan_headers(msg: &[u8], line_end: usize) -> Result<Scan<'_>, Problem> {
    if std::str::from_utf8(&msg[..line_end]).is_err() {
        return Err(Problem::NotUtf8);
    }
    let mut scan = Scan::default();
    let mut pos = line_end;
    // The start line must end with CRLF.
    if msg.get(pos..pos + 2) != Some(b"\r\n".as_slice()) {
        return Err(Problem::NoEmptyLine);
    }
    pos += 2;
    let mut current: Option<(usize, usize)> = None;
    loop {
        let Some(lf) = msg[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i) else {
            return Err(if pos < msg.len() && msg[pos..].contains(&b'\r') {
                Problem::LineEnding
            } else {
                Problem::NoEmptyLine
            });
        };
        if lf == pos || msg[lf - 1] != b'\r' {
            return Err(Problem::LineEnding);
        }
        let line = &msg[pos..lf - 1];
        if line.contains(&b'\r') {
            return Err(Problem::LineEnding);
        }
        if line.is_empty() {
            if let Some((s, e)) = current.take() {
                header(&mut scan, msg, s, e)?;
            }
            if std::str::from_utf8(&msg[line_end..pos]).is_err() {
                return Err(Problem::NotUtf8);
            }
            scan.blank_line = pos;
            scan.body = lf + 1;
            return Ok(scan);
        }
        if matches!(line[0], b' ' | b'\t') {
            match current.as_mut() {
                Some((_, end)) => *end = lf - 1,
                None => return Err(Problem::HeaderLine),
            }
        } else {
            if let Some((s, e)) = current.take() {
                header(&mut scan, msg, s, e)?;
            }
            current = Some((pos, lf - 1));
        }
        pos = lf + 1;
    }
}

/// One logical header, `msg[start..end]` (folds included).
fn header<'a>(scan: &mut Scan<'a>, msg: &'a [u8], start: usize, end: usize) -> Result<(), Problem> {
    let raw = &msg[start..end];
    let colon = raw
        .iter()
        .position(|&b| b == b':')
        .ok_or(Problem::HeaderLine)?;
    let name = trim_end_sp(&raw[..colon]);
    if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
        return Err(Problem::HeaderLine);
    }
    if let Some(h) = HeaderName::classify(name) {
        scan.record(h, &raw[colon + 1..], start + colon + 1);
    }
    Ok(())
}

/// Syntax checks of the values whose mistakes RFC 4475 names.
fn value_ok(h: HeaderName, value: &[u8]) -> bool {
    match h {
        HeaderName::Via => {
            let mut any = false;
            for parm in SplitTop::new(value, b',') {
                if !parse_via(parm).is_some_and(|via| via.params_ok) {
                    return false;
                }
                any = true;
            }
            any
        }
        HeaderName::From | HeaderName::To => address_ok(value),
        HeaderName::Contact => {
            if trim(value) == b"*" {
                return true;
            }
            let mut any = false;
            for element in SplitTop::new(value, b',') {
                if !address_ok(element) {
                    return false;
                }
                any = true;
            }
            any
        }
        HeaderName::CallId => {
            let v = trim(value);
            !v.is_empty() && v.iter().all(u8::is_ascii_graphic)
        }
        HeaderName::CSeq
        | HeaderName::MaxForwards
        | HeaderName::ContentLength
        | HeaderName::ContentType => true,
    }
}

/// `name-addr` or `addr-spec`, then header parameters (RFC 3261 §20.10, §20.20).
fn address_ok(value: &[u8]) -> bool {
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
fn param_ok(param: &[u8]) -> Option<&[u8]> {
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
struct ViaParts<'a> {
    transport: &'a [u8],
    host: &'a [u8],
    port: Option<u16>,
    rport: bool,
    /// Offset in the trimmed value where the parameters begin (at a ';'), or its length.
    params_at: usize,
    /// Whether every parameter is well-formed (routing does not need them to be).
    params_ok: bool,
}

/// `protocol / version / transport LWS sent-by *( SEMI via-param )` (RFC 3261 §20.42).
fn parse_via(value: &[u8]) -> Option<ViaParts<'_>> {
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
fn digits_value(value: &[u8]) -> Option<u64> {
    let v = trim(value);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

// ---------------------------------------------------------------------------------------------
// Answers (pure)

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
fn top_via(data: &[u8]) -> Option<&[u8]> {
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
        let _ = write!(out, "Allow: {}\r\n", super::ua::ALLOW);
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

/// Whether a From/To value carries a `tag` parameter.
fn has_tag(value: &[u8]) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Framing and bytes

impl Framing {
    /// Cuts the message out of `buf[..len]` in place and returns its new length.
    pub fn apply(&self, buf: &mut [u8], len: usize) -> usize {
        let len = len.min(buf.len());
        let end = self.end.min(len);
        let start = self.start.min(end);
        buf.copy_within(start..end, 0);
        let mut n = end - start;
        // Tidy from the last span back, so that earlier offsets stay valid.
        let mut spans = self.tidy;
        spans.sort_by_key(|s| std::cmp::Reverse(s.map(|s| s.at)));
        let mut removed = 0;
        for span in spans.into_iter().flatten() {
            let at = span.at.saturating_sub(start).min(n);
            let span_end = (at + span.len).min(n);
            let kept = tidy_equals(&mut buf[at..span_end]);
            buf.copy_within(span_end..n, at + kept);
            removed += span_end - at - kept;
            n -= span_end - at - kept;
        }
        if let Some(add) = self.add_length {
            let mut header = [0u8; 48];
            let room = header.len();
            let mut cursor = &mut header[..];
            if write!(cursor, "Content-Length: {}\r\n", add.value).is_ok() {
                let h = room - cursor.len();
                let at = add.at.saturating_sub(start + removed);
                if at <= n && n + h <= buf.len() {
                    buf.copy_within(at..n, at + h);
                    buf[at..at + h].copy_from_slice(&header[..h]);
                    n += h;
                }
            }
        }
        n
    }
}

/// Whether a header value has spaces next to an '=' outside quoted strings.
fn needs_tidy(value: &[u8]) -> bool {
    let mut quoted = false;
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'=' if !quoted => {
                let before = i > 0 && is_lws(value[i - 1]);
                let after = value.get(i + 1).is_some_and(|&b| is_lws(b));
                if before || after {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// Removes the spaces (folds included) next to each '=' outside quoted strings, in place;
/// returns the new length.
fn tidy_equals(value: &mut [u8]) -> usize {
    let (mut read, mut write, mut quoted) = (0, 0, false);
    while read < value.len() {
        let b = value[read];
        if !quoted && is_lws(b) {
            let run = value[read..].iter().take_while(|&&c| is_lws(c)).count();
            let next_is_equals = value.get(read + run) == Some(&b'=');
            let after_equals = write > 0 && value[write - 1] == b'=';
            if !(next_is_equals || after_equals) {
                value.copy_within(read..read + run, write);
                write += run;
            }
            read += run;
            continue;
        }
        let escaped = quoted && b == b'\\';
        if b == b'"' {
            quoted = !quoted;
        }
        let take = if escaped {
            2.min(value.len() - read)
        } else {
            1
        };
        value.copy_within(read..read + take, write);
        write += take;
        read += take;
    }
    write
}

/// Splits at `sep` outside quoted strings and `<...>`.
struct SplitTop<'a> {
    s: &'a [u8],
    pos: usize,
    sep: u8,
    done: bool,
}

impl<'a> SplitTop<'a> {
    fn new(s: &'a [u8], sep: u8) -> Self {
        SplitTop {
            s,
            pos: 0,
            sep,
            done: false,
        }
    }
}

impl<'a> SplitTop<'a> {
    /// What follows the items returned so far.
    fn rest(&self) -> &'a [u8] {
        if self.done { &[] } else { &self.s[self.pos..] }
    }
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let (mut quoted, mut angle, mut i) = (false, false, start);
        while i < self.s.len() {
            let b = self.s[i];
            if quoted {
                match b {
                    b'\\' => i += 1,
                    b'"' => quoted = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => quoted = true,
                    b'<' => angle = true,
                    b'>' => angle = false,
                    _ if b == self.sep && !angle => {
                        self.pos = i + 1;
                        return Some(&self.s[start..i]);
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.done = true;
        Some(&self.s[start..])
    }
}

/// The index after the quoted string that starts at `s[open]`.
fn quoted_end(s: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// CRLFs before the start line.
fn leading_crlfs(data: &[u8]) -> usize {
    data.chunks_exact(2).take_while(|c| c == b"\r\n").count() * 2
}

fn find_crlf(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(cr) = s[from..].iter().position(|&b| b == b'\r') {
        if s.get(from + cr + 1) == Some(&b'\n') {
            return Some(from + cr);
        }
        from += cr + 1;
    }
    None
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Whitespace inside a header value; CR and LF appear there only in folds.
fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().take_while(|&&b| is_lws(b)).count();
    let end = s.len() - s[start..].iter().rev().take_while(|&&b| is_lws(b)).count();
    &s[start..end]
}

fn trim_end_sp(s: &[u8]) -> &[u8] {
    let end = s.len()
        - s.iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
    &s[..end]
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use rsipstack::sip::{HeadersExt, SipMessage};
    use rsipstack::transaction::key::{TransactionKey, TransactionRole};
    use rsipstack::transport::{SipConnection, TransportEvent};

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Pass,
        Answer(u16, Problem),
        Drop(Unanswered),
    }

    use Expect::{Answer, Drop, Pass};
    use HeaderName as H;

    /// Every file of the RFC 4475 archive and the guard's decision. Where the RFC allows a
    /// liberal element to accept (`trws`, `baddate`) or leaves the choice open (`badbranch`),
    /// the message is passed on; everything else the RFC calls invalid is answered or dropped.
    /// `inv2543` is valid RFC 2543 that RFC 3261 elements "that want to maintain backwards
    /// compatibility" accept (RFC 4475 §3.4.1): the stack keys transactions by From tag and
    /// cannot, so it is answered 400 rather than silently dropped.
    const TORTURE: [(&str, Expect); 50] = [
        ("wsinv.dat", Pass),
        ("intmeth.dat", Answer(501, Problem::UnknownMethod)),
        ("esc01.dat", Pass),
        ("escnull.dat", Pass),
        ("esc02.dat", Answer(501, Problem::UnknownMethod)),
        ("lwsdisp.dat", Pass),
        ("longreq.dat", Pass),
        ("dblreq.dat", Pass),
        ("semiuri.dat", Pass),
        ("transports.dat", Pass),
        ("mpart01.dat", Pass),
        ("unreason.dat", Pass),
        ("noreason.dat", Pass),
        ("badinv01.dat", Answer(400, Problem::Malformed(H::Via))),
        ("clerr.dat", Answer(400, Problem::ContentLengthTooLarge)),
        ("ncl.dat", Answer(400, Problem::Malformed(H::ContentLength))),
        ("scalar02.dat", Answer(400, Problem::CSeqTooLarge)),
        ("scalarlg.dat", Drop(Unanswered::Response)),
        ("quotbal.dat", Answer(400, Problem::Malformed(H::To))),
        ("ltgtruri.dat", Answer(400, Problem::RequestUri)),
        ("lwsruri.dat", Answer(400, Problem::RequestLine)),
        ("lwsstart.dat", Answer(400, Problem::RequestLine)),
        ("trws.dat", Pass),
        ("escruri.dat", Answer(400, Problem::RequestUri)),
        ("baddate.dat", Pass),
        ("regbadct.dat", Answer(400, Problem::Malformed(H::Contact))),
        ("badaspec.dat", Answer(400, Problem::Malformed(H::To))),
        ("baddn.dat", Answer(400, Problem::NoEmptyLine)),
        ("badvers.dat", Answer(505, Problem::Version)),
        ("mismatch01.dat", Answer(400, Problem::CSeqMethod)),
        ("mismatch02.dat", Answer(501, Problem::UnknownMethod)),
        ("bigcode.dat", Drop(Unanswered::Response)),
        ("badbranch.dat", Pass),
        ("insuf.dat", Answer(400, Problem::Missing(H::From))),
        ("unkscm.dat", Pass),
        ("novelsc.dat", Pass),
        ("unksm2.dat", Pass),
        ("bext01.dat", Pass),
        ("invut.dat", Pass),
        ("regaut01.dat", Pass),
        ("multi01.dat", Answer(400, Problem::Duplicate(H::From))),
        (
            "mcl01.dat",
            Answer(400, Problem::Duplicate(H::ContentLength)),
        ),
        ("bcast.dat", Pass),
        ("zeromf.dat", Pass),
        ("cparam01.dat", Pass),
        ("cparam02.dat", Pass),
        ("regescrt.dat", Pass),
        ("sdp01.dat", Pass),
        ("inv2543.dat", Answer(400, Problem::MissingFromTag)),
        ("test.dat", Drop(Unanswered::NoVia)),
    ];

    fn torture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip-torture")
    }

    fn torture(name: &str) -> Vec<u8> {
        let path = torture_dir().join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn expect(data: &[u8]) -> Expect {
        match inspect(data) {
            Verdict::Pass(_) => Pass,
            Verdict::Answer(r) => Answer(r.status.code(), r.problem),
            Verdict::Drop { kind, .. } => Drop(kind),
        }
    }

    fn source() -> SocketAddr {
        "127.0.0.1:5060".parse().unwrap()
    }

    /// The message a passed datagram becomes, as the stack would receive it.
    fn framed(data: &[u8]) -> Vec<u8> {
        let Verdict::Pass(framing) = inspect(data) else {
            panic!("not passed: {:?}", inspect(data));
        };
        let mut buf = data.to_vec();
        buf.resize(8192.max(data.len() + 64), 0);
        let n = framing.apply(&mut buf, data.len());
        buf.truncate(n);
        buf
    }

    fn answer(data: &[u8], from: SocketAddr) -> (String, SocketAddr) {
        let Verdict::Answer(rejection) = inspect(data) else {
            panic!("not answered: {:?}", inspect(data));
        };
        let (bytes, to) = build_answer(data, rejection, from).expect("an answer");
        (String::from_utf8_lossy(&bytes).into_owned(), to)
    }

    #[test]
    fn every_torture_file_gets_its_decision() {
        for (name, expected) in TORTURE {
            assert_eq!(expect(&torture(name)), expected, "{name}");
        }
    }

    #[test]
    fn the_decisions_cover_the_index_and_agree_with_its_verdicts() {
        let index = std::fs::read_to_string(torture_dir().join("index.tsv")).unwrap();
        let rows: Vec<Vec<&str>> = index
            .lines()
            .skip(1)
            .map(|l| l.split('\t').collect())
            .collect();
        assert_eq!(rows.len(), TORTURE.len());
        for row in rows {
            let (file, verdict, liberal, bytes) = (row[0], row[3], row[4], row[5]);
            let decision = TORTURE
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, e)| *e)
                .unwrap_or_else(|| panic!("{file} has no decision"));
            assert_eq!(
                torture(file).len().to_string(),
                bytes,
                "{file} is the archived file"
            );
            let fits = match (verdict, liberal, decision) {
                // Accepted: handed on, or answered 501 because the method is unknown.
                ("accept", _, Pass) => true,
                ("accept", _, Answer(501, Problem::UnknownMethod)) => {
                    matches!(file, "intmeth.dat" | "esc02.dat")
                }
                ("accept", _, Answer(400, Problem::MissingFromTag)) => file == "inv2543.dat",
                ("either", _, Pass | Answer(400, _)) => true,
                ("reject", "yes" | "partly", Pass | Answer(400, _)) => true,
                ("reject", _, Answer(400, _)) => file != "badvers.dat",
                ("reject", _, Answer(505, _)) => file == "badvers.dat",
                ("reject", _, Answer(501, _)) => file == "mismatch02.dat",
                ("reject", _, Drop(Unanswered::Response)) => {
                    matches!(file, "scalarlg.dat" | "bigcode.dat")
                }
                // Not one of the RFC's tests: no Via to answer by.
                ("reject", _, Drop(Unanswered::NoVia)) => file == "test.dat",
                _ => false,
            };
            assert!(fits, "{file}: {verdict}/{liberal} but {decision:?}");
        }
    }

    #[test]
    fn what_is_passed_on_parses_in_the_stack() {
        for (name, expected) in TORTURE {
            if expected != Pass {
                continue;
            }
            let message = framed(&torture(name));
            let parsed = SipMessage::try_from(message.as_slice())
                .unwrap_or_else(|e| panic!("{name}: the stack refuses it: {e}"));
            if matches!(parsed, SipMessage::Request(_)) {
                let received = SipConnection::update_msg_received(
                    parsed,
                    source(),
                    rsipstack::sip::transport::Transport::Udp,
                )
                .unwrap_or_else(|e| panic!("{name}: the stack cannot read its Via: {e}"));
                let SipMessage::Request(request) = received else {
                    panic!("{name}: no longer a request");
                };
                // What the endpoint needs before it creates a transaction.
                TransactionKey::from_request(&request, TransactionRole::Server)
                    .unwrap_or_else(|e| panic!("{name}: no transaction key: {e}"));
            }
        }
    }

    #[test]
    fn only_the_first_message_of_a_datagram_is_passed() {
        let message = framed(&torture("dblreq.dat"));
        assert!(message.starts_with(b"REGISTER sip:example.com SIP/2.0\r\n"));
        assert!(message.ends_with(b"Content-Length: 0\r\n\r\n"));
        assert!(!message.windows(6).any(|w| w == b"INVITE"));
    }

    #[test]
    fn spaces_around_equals_are_removed_where_the_stack_reads_tags() {
        let message = framed(&torture("wsinv.dat"));
        let Ok(SipMessage::Request(request)) = SipMessage::try_from(message.as_slice()) else {
            panic!("wsinv does not parse once framed");
        };
        let from = request
            .from_header()
            .unwrap()
            .tag()
            .unwrap()
            .map(|t| t.to_string());
        let to = request
            .to_header()
            .unwrap()
            .tag()
            .unwrap()
            .map(|t| t.to_string());
        assert_eq!(from.as_deref(), Some("98asjd8"));
        assert_eq!(to.as_deref(), Some("1918181833n"));
        assert_eq!(request.body.len(), 150, "the body is untouched");
        assert!(message.ends_with(b"a=rtpmap:31 LPC\r\n"));
        // Quoted strings keep their spaces; only spaces next to '=' go.
        let mut value = *b"\"a = b\" <sip:x@y> ; tag =\r\n  1 ;q= 0.5";
        let n = tidy_equals(&mut value);
        assert_eq!(&value[..n], b"\"a = b\" <sip:x@y> ; tag=1 ;q=0.5");
        assert!(!needs_tidy(&value[..n]));
    }

    #[test]
    fn a_body_without_content_length_is_the_rest_of_the_datagram() {
        let data = inv2543_with_from_tag();
        let message = framed(&data);
        let Ok(SipMessage::Request(request)) = SipMessage::try_from(message.as_slice()) else {
            panic!("inv2543 does not parse once framed");
        };
        assert!(request.body.starts_with(b"v=0\r\n"));
        assert!(data.ends_with(&request.body));
        assert_eq!(request.body.len(), 105);
        let Ok(SipMessage::Request(request)) = SipMessage::try_from(framed(&data).as_slice())
        else {
            panic!("not a request");
        };
        TransactionKey::from_request(&request, TransactionRole::Server).expect("a key");
    }

    #[test]
    fn answers_copy_the_request_and_parse() {
        for (name, expected) in TORTURE {
            let Answer(code, problem) = expected else {
                continue;
            };
            let data = torture(name);
            let (text, to) = answer(&data, source());
            let expected_port = if name == "quotbal.dat" { 5050 } else { 5060 };
            assert_eq!(
                to,
                SocketAddr::from(([127, 0, 0, 1], expected_port)),
                "{name}"
            );
            assert!(
                text.starts_with(&format!("SIP/2.0 {code} {problem}\r\n")),
                "{name}: {text}"
            );
            let Ok(SipMessage::Response(response)) = SipMessage::try_from(text.as_bytes()) else {
                panic!("{name}: the answer does not parse:\n{text}");
            };
            assert_eq!(u16::from(response.status_code.clone()), code, "{name}");
            assert!(response.via_header().is_ok(), "{name}: {text}");
            assert!(text.contains("received=127.0.0.1"), "{name}: {text}");
            assert_eq!(text.contains("\r\nAllow: "), code == 501, "{name}: {text}");
            assert!(
                text.ends_with("Content-Length: 0\r\n\r\n"),
                "{name}: {text}"
            );
            if name != "insuf.dat" {
                let to_line = text.lines().find(|l| l.starts_with("To: ")).unwrap();
                assert!(to_line.contains(";tag="), "{name}: {to_line}");
                assert!(text.contains("\r\nCall-ID: "), "{name}");
            }
            assert!(text.contains("\r\nCSeq: "), "{name}");
        }
    }

    #[test]
    fn answers_go_where_rfc_3261_sends_them() {
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let request = |via: &str| {
            format!(
                "FOO sip:a@b.example SIP/2.0\r\n{via}From: <sip:c@d.example>;tag=1\r\n\
                 To: <sip:a@b.example>\r\nCall-ID: x\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let cases = [
            ("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n", 5060),
            ("Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1\r\n", 5070),
            (
                "v: SIP / 2.0 / UDP\r\n 192.0.2.1 : 5070 ;branch=z9hG4bK1\r\n",
                5070,
            ),
            (
                "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport\r\n",
                40000,
            ),
            ("Via: SIP/2.0/TLS example.com;branch=z9hG4bK1\r\n", 5061),
            ("Via: garbage\r\n", 40000),
        ];
        for (via, port) in cases {
            let (text, to) = answer(request(via).as_bytes(), from);
            assert_eq!(
                to,
                SocketAddr::from(([127, 0, 0, 1], port)),
                "{via}: {text}"
            );
        }
        let (text, _) = answer(
            request("Via: SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bK1;received=1.2.3.4\r\n")
                .as_bytes(),
            from,
        );
        assert!(
            text.contains(
                "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;received=127.0.0.1;rport=40000\r\n"
            ),
            "{text}"
        );
        let (text, to) = answer(
            request("Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n").as_bytes(),
            from,
        );
        assert_eq!(to.port(), 5062);
        assert!(!text.contains("received="), "{text}");
        let v6: SocketAddr = "[::1]:40000".parse().unwrap();
        let (text, to) = answer(
            request("Via: SIP/2.0/UDP [::1]:5062;branch=z9hG4bK1\r\n").as_bytes(),
            v6,
        );
        assert_eq!(to, "[::1]:5062".parse::<SocketAddr>().unwrap());
        assert!(!text.contains("received="), "{text}");
        // Without any Via there is nowhere to answer.
        let no_via = "FOO sip:a@b.example SIP/2.0\r\nCSeq: 1 FOO\r\n\r\n";
        assert_eq!(expect(no_via.as_bytes()), Drop(Unanswered::NoVia));
    }

    #[test]
    fn a_to_tag_is_kept_and_a_new_one_is_stable() {
        let data = torture("mismatch01.dat");
        let (first, _) = answer(&data, source());
        let (second, _) = answer(&data, source());
        assert_eq!(first, second, "a retransmission gets the same answer");
        let data = torture("lwsruri.dat");
        let (text, _) = answer(&data, source());
        assert!(
            text.contains("\r\nTo: sip:user@example.com;tag=3xfe-9921883-z9f\r\n"),
            "{text}"
        );
    }

    #[test]
    fn folded_headers_are_unfolded_in_answers() {
        let data =
            b"FOO sip:a@b.example SIP/2.0\r\nVia: SIP/2.0/UDP\r\n 192.0.2.1;branch=z9hG4bK1\r\n\
            From: <sip:c@d.example>\r\n ;tag=1\r\nTo: <sip:a@b.example>\r\nCall-ID: x\r\n\
            CSeq: 1\r\n\tFOO\r\n\r\n";
        let (text, _) = answer(data, source());
        assert!(
            text.contains("\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;received"),
            "{text}"
        );
        assert!(
            text.contains("\r\nFrom: <sip:c@d.example> ;tag=1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nCSeq: 1\tFOO\r\n"), "{text}");
    }

    #[test]
    fn keepalives_pass_and_leading_crlfs_are_removed() {
        assert_eq!(expect(b"\r\n\r\n"), Pass);
        assert_eq!(expect(b""), Pass);
        let mut data = b"\r\n\r\n".to_vec();
        data.extend_from_slice(&torture("zeromf.dat"));
        let message = framed(&data);
        assert_eq!(message, torture("zeromf.dat"));
    }

    const OPTIONS: &str = "OPTIONS sip:a@b.example SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
        From: <sip:c@d.example>;tag=1\r\nTo: <sip:a@b.example>\r\nCall-ID: x@y\r\n\
        CSeq: 1 OPTIONS\r\nContact: <sip:c@192.0.2.1>\r\nContent-Length: 0\r\n\r\n";

    /// Edits of [`OPTIONS`] (first occurrence of the first string replaced by the second) and
    /// the decision each gets.
    #[rustfmt::skip]
    const MISTAKES: &[(&str, &str, Expect)] = &[
        ("OPTIONS sip:a@b.example SIP/2.0", "options sip:a@b.example SIP/2.0", Answer(501, Problem::UnknownMethod)),
        ("SIP/2.0\r\n", "SIP/3.0\r\n", Answer(505, Problem::Version)),
        ("SIP/2.0\r\n", "SIP/2\r\n", Answer(400, Problem::RequestLine)),
        ("SIP/2.0\r\n", "SIP/2.0.1\r\n", Answer(400, Problem::RequestLine)),
        ("SIP/2.0\r\n", "SIP/2.0 \t \r\n", Pass),
        ("OPTIONS sip", "OPTIONS\tsip", Answer(400, Problem::RequestLine)),
        ("sip:a@b.example SIP", "sip: SIP", Answer(400, Problem::RequestUri)),
        ("sip:a@b.example SIP", "sip:a@b.example:99999 SIP", Answer(400, Problem::RequestUri)),
        ("sip:a@b.example SIP", "sip:a@[::1 SIP", Answer(400, Problem::RequestUri)),
        ("sip:a@b.example SIP", "a@b.example SIP", Answer(400, Problem::RequestUri)),
        ("sip:a@b.example SIP", "tel:+15551230000 SIP", Pass),
        ("sip:a@b.example SIP", "sip:a?b@[::1]:5060;x=y SIP", Pass),
        ("Max-Forwards: 70\r\n", "Max-Forwards: seventy\r\n", Answer(400, Problem::Malformed(H::MaxForwards))),
        ("Max-Forwards: 70\r\n", "", Pass),
        ("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n", Answer(400, Problem::HeaderLine)),
        ("Max-Forwards: 70\r\n", "Max Forwards: 70\r\n", Answer(400, Problem::HeaderLine)),
        ("Max-Forwards: 70\r\n", "Max-Forwards: 70\n", Answer(400, Problem::LineEnding)),
        ("Max-Forwards: 70\r\n", "Max-Forwards: 7\r0\r\n", Answer(400, Problem::LineEnding)),
        ("Call-ID: x@y\r\n", "Call-ID: x y\r\n", Answer(400, Problem::Malformed(H::CallId))),
        ("Call-ID: x@y\r\n", "i: x@y\r\n", Pass),
        ("Call-ID: x@y\r\n", "Call-ID:\r\n  x@y\r\n", Pass),
        ("Call-ID: x@y\r\n", "", Answer(400, Problem::Missing(H::CallId))),
        ("CSeq: 1 OPTIONS\r\n", "CSeq: OPTIONS\r\n", Answer(400, Problem::Malformed(H::CSeq))),
        ("CSeq: 1 OPTIONS\r\n", "CSeq: 1OPTIONS\r\n", Answer(400, Problem::Malformed(H::CSeq))),
        ("CSeq: 1 OPTIONS\r\n", "CSeq: 4294967295 OPTIONS\r\n", Pass),
        ("CSeq: 1 OPTIONS\r\n", "CSeq: 4294967296 OPTIONS\r\n", Answer(400, Problem::CSeqTooLarge)),
        ("CSeq: 1 OPTIONS\r\n", "CSeq: 1 INVITE\r\n", Answer(400, Problem::CSeqMethod)),
        ("<sip:c@d.example>;tag=1", "<sip:c@d.example>", Answer(400, Problem::MissingFromTag)),
        ("<sip:c@d.example>;tag=1", "<sip:c@d.example> ; TAG = 1", Pass),
        ("Via: SIP/2.0/UDP 192.0.2.1;", "Via: SIP/2.0/UDP192.0.2.1;", Answer(400, Problem::Malformed(H::Via))),
        ("Via: SIP/2.0/UDP 192.0.2.1;", "Via: SIP/2.0 192.0.2.1;", Answer(400, Problem::Malformed(H::Via))),
        ("branch=z9hG4bK1\r\n", "branch=z9hG4bK1, SIP/2.0/TCP [2001:db8::1]:5061;rport\r\n", Pass),
        ("branch=z9hG4bK1\r\n", "branch=z9hG4bK1,\r\n", Answer(400, Problem::Malformed(H::Via))),
        ("branch=z9hG4bK1\r\n", "branch=\r\n", Answer(400, Problem::Malformed(H::Via))),
        ("\r\nMax-Forwards", "\r\n Max-Forwards", Answer(400, Problem::Malformed(H::Via))),
        ("<sip:c@d.example>;tag=1", "\"C D\" <sip:c@d.example>;tag=1", Pass),
        ("<sip:c@d.example>;tag=1", "C D <sip:c@d.example>;tag=1", Pass),
        ("<sip:c@d.example>;tag=1", "Jos\u{e9} <sip:c@d.example>;tag=1", Pass),
        ("<sip:c@d.example>;tag=1", "C;D <sip:c@d.example>;tag=1", Answer(400, Problem::Malformed(H::From))),
        ("<sip:c@d.example>;tag=1", "<sip:c@d.example>;;tag=1", Answer(400, Problem::Malformed(H::From))),
        ("<sip:c@d.example>;tag=1", "<sip:c@d.example>;tag=\"1", Answer(400, Problem::Malformed(H::From))),
        ("<sip:c@d.example>;tag=1", "<sip:c@d.example>tag=1", Answer(400, Problem::Malformed(H::From))),
        ("<sip:c@d.example>;tag=1", "<sip:c@d.example;tag=1", Answer(400, Problem::Malformed(H::From))),
        ("<sip:c@d.example>;tag=1", "sip:c@d.example;tag=1", Pass),
        ("<sip:c@d.example>;tag=1", "sip:c@d.example?x=y;tag=1", Answer(400, Problem::Malformed(H::From))),
        ("<sip:c@192.0.2.1>", "*", Pass),
        ("<sip:c@192.0.2.1>", "<sip:c@192.0.2.1>;expires=60, \"x, y\" <sip:e@f.example>", Pass),
        ("<sip:c@192.0.2.1>", "<sip:c@192.0.2.1>;+sip.instance=\"<urn:uuid:1>\"", Pass),
        ("<sip:c@192.0.2.1>", "<sip:c@192.0.2.1>,", Answer(400, Problem::Malformed(H::Contact))),
        ("Content-Length: 0\r\n\r\n", "Content-Length: 0\r\nContent-Length: 0\r\n\r\n", Answer(400, Problem::Duplicate(H::ContentLength))),
        ("Content-Length: 0\r\n\r\n", "Content-Length: 0\r\n", Answer(400, Problem::NoEmptyLine)),
        ("Content-Length: 0\r\n\r\n", "Content-Length: 1\r\n\r\n", Answer(400, Problem::ContentLengthTooLarge)),
        ("Content-Length: 0\r\n\r\n", "Content-Length: 0 0\r\n\r\n", Answer(400, Problem::Malformed(H::ContentLength))),
        ("Content-Length: 0\r\n\r\n", "Content-Length: 99999999999999999999999\r\n\r\n", Answer(400, Problem::ContentLengthTooLarge)),
        ("Content-Length: 0\r\n\r\n", "Content-Length: 0\r\n\r\nleftover", Pass),
        ("Content-Length: 0\r\n\r\n", "\r\n", Pass),
        ("Content-Length: 0\r\n\r\n", "\r\n body", Pass),
        ("OPTIONS sip:a@b.example SIP/2.0\r\n", "OPTIONS sip:a@b.example SIP/2.0\r\n folded\r\n", Answer(400, Problem::HeaderLine)),
    ];

    #[test]
    fn single_mistakes_are_named() {
        assert_eq!(expect(OPTIONS.as_bytes()), Pass);
        for (from, to, expected) in MISTAKES {
            assert!(OPTIONS.contains(from), "{from:?}");
            let data = OPTIONS.replacen(from, to, 1);
            assert_eq!(expect(data.as_bytes()), *expected, "{from:?} -> {to:?}");
        }
        // Bytes that are not UTF-8 in a header (built by hand: a str cannot hold them).
        let mut data = OPTIONS.as_bytes().to_vec();
        let at = OPTIONS.find("Max-Forwards: 70").unwrap() + "Max-Forwards: 7".len();
        data[at] = 0xff;
        assert_eq!(expect(&data), Answer(400, Problem::NotUtf8));
    }

    #[test]
    fn acks_are_never_answered() {
        let ack = OPTIONS.replace("OPTIONS", "ACK");
        assert_eq!(expect(ack.as_bytes()), Pass);
        let broken = ack.replace("Call-ID: x@y\r\n", "");
        assert_eq!(expect(broken.as_bytes()), Drop(Unanswered::Ack));
        let broken = ack.replace("ACK sip", "ACK  sip");
        assert_eq!(expect(broken.as_bytes()), Drop(Unanswered::Ack));
        let broken = ack.replace("ACK sip", "ACK\tsip");
        assert_eq!(expect(broken.as_bytes()), Drop(Unanswered::Ack));
    }

    #[test]
    fn invalid_responses_are_dropped() {
        let ok = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
            From: <sip:c@d.example>;tag=1\r\nTo: <sip:a@b.example>;tag=2\r\nCall-ID: x@y\r\n\
            CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(expect(ok.as_bytes()), Pass);
        let dropped = Drop(Unanswered::Response);
        for (from, to) in [
            ("180 Ringing", "099 Early"),
            ("180 Ringing", "700 Late"),
            ("180 Ringing", "1800 Ringing"),
            ("180 Ringing", "18 Ringing"),
            ("180 Ringing", "180Ringing"),
            ("SIP/2.0 180", "SIP/3.0 180"),
            ("CSeq: 1 INVITE\r\n", ""),
            ("CSeq: 1 INVITE\r\n", "CSeq: 99999999999 INVITE\r\n"),
            ("Call-ID: x@y\r\n", "Call-ID: x@y\r\nCall-ID: z\r\n"),
            ("Content-Length: 0", "Content-Length: 10"),
        ] {
            let data = ok.replacen(from, to, 1);
            assert_eq!(expect(data.as_bytes()), dropped, "{from:?} -> {to:?}");
        }
        assert_eq!(expect(ok.replace("180 Ringing", "180 ").as_bytes()), Pass);
        assert_eq!(expect(ok.replace("180 Ringing", "180").as_bytes()), Pass);
    }

    /// `inv2543.dat` with a From tag, to exercise its missing Content-Length alone.
    fn inv2543_with_from_tag() -> Vec<u8> {
        let data = torture("inv2543.dat");
        let text = String::from_utf8(data).unwrap();
        let tagged = text.replace("user=phone>\r\n", "user=phone>;tag=1\r\n");
        assert_ne!(tagged, text);
        tagged.into_bytes()
    }

    #[test]
    fn a_length_that_does_not_fit_the_buffer_is_not_added() {
        let data = inv2543_with_from_tag();
        let Verdict::Pass(framing) = inspect(&data) else {
            panic!("inv2543 not passed");
        };
        let mut buf = data.clone();
        let n = framing.apply(&mut buf, data.len());
        assert_eq!(&buf[..n], data.as_slice(), "handed on as it came");
    }

    /// Every prefix of every file, and thousands of one- and two-byte corruptions of each:
    /// the guard decides without panicking and everything it builds is sound.
    #[test]
    fn no_input_makes_the_guard_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const INTERESTING: &[u8] = b"\r\n \t:;,<>\"\\/@?=0-9aZ\x00\xff\x80";
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let check = |data: &[u8]| match inspect(data) {
            Verdict::Pass(framing) => {
                let mut buf = data.to_vec();
                buf.resize(data.len() + 32, 0);
                let n = framing.apply(&mut buf, data.len());
                assert!(n <= buf.len());
            }
            Verdict::Answer(rejection) => {
                if let Some((bytes, to)) = build_answer(data, rejection, from) {
                    assert_eq!(to.ip(), from.ip(), "answers go to the source address");
                    assert!(bytes.ends_with(b"\r\n\r\n"));
                }
            }
            Verdict::Drop { .. } => {}
        };
        for (name, _) in TORTURE {
            let data = torture(name);
            for end in 0..=data.len() {
                check(&data[..end]);
            }
            for _ in 0..1500 {
                let mut mutated = data.clone();
                for _ in 0..1 + next() % 2 {
                    let at = (next() % mutated.len() as u64) as usize;
                    let r = next();
                    mutated[at] = if r % 3 == 0 {
                        r.to_le_bytes()[1]
                    } else {
                        INTERESTING[(r % INTERESTING.len() as u64) as usize]
                    };
                }
                check(&mutated);
            }
        }
    }

    async fn recv_with_deadline(socket: &tokio::net::UdpSocket) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_transport_answers_what_the_stack_would_drop_and_hands_on_the_rest() {
        let cancel = CancellationToken::new();
        let counters = Arc::new(GuardCounters::default());
        let udp = guarded_udp(
            "127.0.0.1:0".parse().unwrap(),
            cancel.clone(),
            counters.clone(),
        )
        .await
        .expect("binds");
        let server = udp.get_addr().get_socketaddr().expect("bound address");
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let serving = tokio::spawn({
            let udp = udp.clone();
            async move { udp.serve_loop(events_tx).await }
        });
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = client.local_addr().unwrap().port();
        let message = |method: &str, cseq_method: &str, extra: &str| {
            format!(
                "{method} sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:c@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\n\
                 Call-ID: {method}@127.0.0.1\r\nCSeq: 7 {cseq_method}\r\nContent-Length: 0\r\n\r\n{extra}"
            )
        };

        // An unknown method: 501 with Allow, from the guard.
        client
            .send_to(message("FOO", "FOO", "").as_bytes(), server)
            .await
            .unwrap();
        let answer = recv_with_deadline(&client).await.expect("a 501");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("SIP/2.0 501 Not Implemented\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: INVITE,"), "{text}");
        assert!(text.contains("\r\nCall-ID: FOO@127.0.0.1\r\n"), "{text}");

        // A CSeq mismatch: 400 naming it.
        client
            .send_to(message("OPTIONS", "INVITE", "").as_bytes(), server)
            .await
            .unwrap();
        let answer = recv_with_deadline(&client).await.expect("a 400");
        assert!(answer.starts_with(b"SIP/2.0 400 CSeq Method Mismatch\r\n"));

        // An invalid response: nothing comes back, nothing reaches the stack.
        client
            .send_to(&torture("bigcode.dat"), server)
            .await
            .unwrap();

        // A good request with trailing junk: the stack gets the request alone.
        let good = message("OPTIONS", "OPTIONS", "INVITE sip:junk SIP/2.0\r\n\r\n");
        client.send_to(good.as_bytes(), server).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("the stack receives the OPTIONS")
            .expect("an event");
        let TransportEvent::Incoming(SipMessage::Request(request), _, from) = event else {
            panic!("not an incoming request");
        };
        assert_eq!(request.method, rsipstack::sip::Method::Options);
        assert_eq!(from.get_socketaddr().unwrap().port(), port);
        assert!(
            events.try_recv().is_err(),
            "the junk is not a second message"
        );

        // Sends go out through the guarded socket unchanged.
        udp.send_raw(b"hello", &from).await.unwrap();
        assert_eq!(
            recv_with_deadline(&client).await.as_deref(),
            Some(b"hello".as_slice())
        );

        assert_eq!(
            counters.snapshot(),
            GuardSnapshot {
                passed: 1,
                answered_400: 1,
                answered_501: 1,
                answered_505: 0,
                dropped: 1,
            }
        );
        cancel.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(2), serving).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "the serve loop ends when cancelled"
        );
    }

    #[tokio::test]
    async fn binding_a_taken_address_is_a_typed_error() {
        let taken = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let result = guarded_udp(addr, CancellationToken::new(), Arc::default()).await;
        assert!(matches!(result, Err(GuardError::Bind { addr: a, .. }) if a == addr));
    }
}
