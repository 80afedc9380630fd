//! Byte-level helpers shared by the guard: splitting outside quotes and `<...>`, quoted
//! strings, line ends, tokens and whitespace.

/// Splits at `sep` outside quoted strings and `<...>`.
pub(super) struct SplitTop<'a> {
    s: &'a [u8],
    pos: usize,
    sep: u8,
    done: bool,
}

impl<'a> SplitTop<'a> {
    pub(super) fn new(s: &'a [u8], sep: u8) -> Self {
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
    pub(super) fn rest(&self) -> &'a [u8] {
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
pub(super) fn quoted_end(s: &[u8], open: usize) -> Option<usize> {
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
pub(super) fn leading_crlfs(data: &[u8]) -> usize {
    data.chunks_exact(2).take_while(|c| c == b"\r\n").count() * 2
}

pub(super) fn find_crlf(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(cr) = s[from..].iter().position(|&b| b == b'\r') {
        if s.get(from + cr + 1) == Some(&b'\n') {
            return Some(from + cr);
        }
        from += cr + 1;
    }
    None
}

pub(super) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Whitespace inside a header value; CR and LF appear there only in folds.
pub(super) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(super) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().take_while(|&&b| is_lws(b)).count();
    let end = s.len() - s[start..].iter().rev().take_while(|&&b| is_lws(b)).count();
    &s[start..end]
}

pub(super) fn trim_end_sp(s: &[u8]) -> &[u8] {
    let end = s.len()
        - s.iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
    &s[..end]
}
