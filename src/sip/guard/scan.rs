//! The strict read of a header section: [`scan_headers`] checks line endings, header lines
//! and the values RFC 4475 names, and records each checked header's first value, from which
//! the CSeq and the message's framing are taken.

use super::framing::{AddLength, Framing, Span, needs_tidy};
use super::lex::{SplitTop, is_lws, is_token, trim, trim_end_sp};
use super::syntax::{address_ok, digits_value, parse_via};
use super::verdict::{HeaderName, Problem};

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

/// One header kind's occurrences.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Slot<'a> {
    pub(super) count: u32,
    /// The first value and its offset in the message.
    pub(super) first: &'a [u8],
    at: usize,
}

/// The header section, read once.
#[derive(Debug, Default)]
pub(super) struct Scan<'a> {
    slots: [Slot<'a>; 9],
    /// The first syntax problem in a Via, From, To, Contact or Call-ID value.
    syntax: Option<Problem>,
    /// Offset of the empty line ending the headers (where a header can be inserted).
    blank_line: usize,
    /// Offset of the body.
    body: usize,
}

impl<'a> Scan<'a> {
    pub(super) fn slot(&self, h: HeaderName) -> &Slot<'a> {
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
    pub(super) fn check_common(&self) -> Result<(), Problem> {
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
    pub(super) fn cseq(&self) -> Result<(u64, &'a [u8]), Problem> {
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
    pub(super) fn framing(&self, msg: &[u8], start: usize) -> Result<Framing, Problem> {
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
pub(super) fn scan_headers(msg: &[u8], line_end: usize) -> Result<Scan<'_>, Problem> {
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
