//! Framing a passed datagram: [`Framing`] describes how it is cut down, in place, to the one
//! message it carries (leading CRLFs removed, octets after the Content-Length cut off, a
//! missing Content-Length added, spaces around '=' in the top Via, From and To removed).

use std::io::Write;

use super::lex::is_lws;

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
pub(super) fn needs_tidy(value: &[u8]) -> bool {
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
pub(super) fn tidy_equals(value: &mut [u8]) -> usize {
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
