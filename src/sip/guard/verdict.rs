//! The guard's decision about one datagram and its vocabulary: [`Verdict`], the statuses it
//! answers with, the headers it checks and the [`Problem`]s it names in reason phrases.

use std::fmt;

use super::framing::Framing;

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
    pub(super) fn classify(name: &[u8]) -> Option<HeaderName> {
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
