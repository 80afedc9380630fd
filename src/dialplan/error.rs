//! The errors of loading a dialplan: [`DialplanError`], and the [`Problem`]s it lists when
//! the files have mistakes, each with its file, line and field.

use crate::line_index::OnePerLine;
use std::fmt;
use std::path::PathBuf;

/// One mistake in a dialplan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as it was given (directory joined with the file name).
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Name of the route the mistake is in, when the route and its name could be read.
    pub route: Option<String>,
    /// Dotted path of the field inside the route (`tools[1].action.target_arg`), or inside the
    /// file (`route[2].name`) when the route has no readable name.
    pub field: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.path.display(), self.line)?;
        if let Some(route) = &self.route {
            write!(f, " route {route:?}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field `{field}`")?;
        }
        if self.route.is_some() || self.field.is_some() {
            f.write_str(":")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Why a dialplan could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DialplanError {
    /// The directory could not be listed.
    #[error("cannot read dialplan directory {}: {source}", path.display())]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file of the directory could not be read.
    #[error("cannot read dialplan file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The files are valid but define no route at all.
    #[error("{} defines no route: add a `[[route]]` table to a .toml file", path.display())]
    NoRoutes { path: PathBuf },
    /// Mistakes in the files, in file and line order; displayed one per line.
    #[error("{}", OnePerLine(.0))]
    Invalid(Vec<Problem>),
}

impl DialplanError {
    /// The mistakes found in the files (empty for the other kinds of error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_display_on_one_line() {
        let problem = Problem {
            path: PathBuf::from("dialplans/sales.toml"),
            line: 14,
            column: 3,
            route: Some("sales".into()),
            field: Some("tools[1].action.target_arg".into()),
            message: "\"number\" is not a property of the tool's parameters".into(),
        };
        assert_eq!(
            problem.to_string(),
            "dialplans/sales.toml:14: route \"sales\" field `tools[1].action.target_arg`: \
             \"number\" is not a property of the tool's parameters"
        );
        let bare = Problem {
            route: None,
            field: None,
            message: "invalid TOML: x".into(),
            ..problem.clone()
        };
        assert_eq!(bare.to_string(), "dialplans/sales.toml:14: invalid TOML: x");
        let error = DialplanError::Invalid(vec![problem, bare]);
        assert_eq!(error.to_string().lines().count(), 2);
        assert_eq!(error.problems().len(), 2);
    }
}
