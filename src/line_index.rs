//! Line and column numbers in a config file's text, and problems listed one per line, for
//! error messages that name the place (dialplans and the server config file both report
//! `path:line: field: message`).

/// The byte offsets where each line of a text starts.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset; offsets past the end count
    /// as the end.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line.max(1), column + 1)
    }
}

/// Displays a list of problems one per line.
pub(crate) struct OnePerLine<'a, T>(pub &'a [T]);

impl<T: std::fmt::Display> std::fmt::Display for OnePerLine<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let index = LineIndex::new("a = 1\nbé = \"x\"\n\nlast");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(4), (1, 5));
        assert_eq!(index.position(6), (2, 1));
        // `=` after a two-byte character is the fourth character of the line.
        assert_eq!(index.position(10), (2, 4));
        assert_eq!(index.position(16), (3, 1));
        assert_eq!(index.position(17), (4, 1));
        assert_eq!(index.position(1000), (4, 5));
    }
}
