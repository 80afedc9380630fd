//! The errors of loading the server config file: [`ConfigError`], and the [`Problem`]s it
//! lists, each with its file, line and field; [`SourceText`] turns byte offsets of the file
//! into those lines and columns.

use crate::line_index::LineIndex;
use crate::line_index::OnePerLine;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One mistake in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as it was given.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted path of the field (`sip.allow[1]`, `trunk[0].password_env`), when the mistake
    /// is in one.
    pub field: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.path.display(), self.line)?;
        if let Some(field) = &self.field {
            write!(f, " field `{field}`:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Why the server config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Mistakes in the file, in line order; displayed one per line.
    #[error("{}", OnePerLine(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The mistakes found in the file (empty when it could not be read).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
            Self::Read { .. } => &[],
        }
    }
}

/// A file's text, for turning byte offsets into lines and columns, and the problems found in
/// it so far.
pub(super) struct SourceText<'a> {
    path: &'a Path,
    lines: LineIndex<'a>,
    problems: Vec<Problem>,
}

impl<'a> SourceText<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            lines: LineIndex::new(text),
            problems: Vec::new(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        self.lines.position(offset)
    }

    /// Records a problem at the start of `span`.
    pub(super) fn report(
        &mut self,
        span: &Range<usize>,
        field: Option<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = self.position(span.start);
        let message = message
            .into()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        self.problems.push(Problem {
            path: self.path.to_path_buf(),
            line,
            column,
            field,
            message,
        });
    }

    /// Records a problem in `field`.
    pub(super) fn report_field(
        &mut self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.report(span, Some(field.into()), message);
    }

    /// The problems found, in line and column order, or `Ok` when there are none.
    pub(super) fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(self.into_error())
    }

    /// The problems found, in line and column order.
    pub(super) fn into_error(self) -> ConfigError {
        let mut problems = self.problems;
        // Stable: problems at one place keep the order they were found in.
        problems.sort_by_key(|p| (p.line, p.column));
        ConfigError::Invalid(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_display_on_one_line_in_line_order() {
        let mut source = SourceText::new(Path::new("dialtone.toml"), "a\nb\nc\n");
        source.report_field(&(4..5), "trunk[0].name", "is\n  required");
        source.report(&(0..1), None, "invalid TOML: x");
        let error = source.finish().expect_err("problems were reported");
        assert_eq!(
            error.to_string(),
            "dialtone.toml:1: invalid TOML: x\n\
             dialtone.toml:3: field `trunk[0].name`: is required"
        );
        assert_eq!(error.problems().len(), 2);
        assert_eq!(error.problems()[1].column, 1);
        assert!(SourceText::new(Path::new("x"), "").finish().is_ok());
    }
}
