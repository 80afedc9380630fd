//! What `dialtone check` prints: [`check`] loads a directory as
//! [`Dialplan::load_dir`](super::Dialplan::load_dir) does and summarises each file's routes in
//! a [`CheckSummary`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::file::load_files;
use super::{DialplanError, Route};
use crate::audio::AudioFormat;

/// What `dialtone check` reports about a valid dialplan directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    /// The directory that was checked.
    pub dir: PathBuf,
    /// The files loaded, in load order.
    pub files: Vec<FileSummary>,
}

/// The routes of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub path: PathBuf,
    pub routes: Vec<RouteSummary>,
}

/// One route, in brief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    pub name: String,
    /// How the route matches, as [`NumberMatch`](super::NumberMatch) displays it:
    /// `exact "+1415…"`, `default`, …
    pub number: String,
    pub model: String,
    pub audio_format: AudioFormat,
    /// Tool names with their action kinds (`hangup`, `transfer`, `dtmf`, `webhook`).
    pub tools: Vec<(String, &'static str)>,
    /// DTMF digits bound to tools.
    pub dtmf_bindings: Vec<(char, String)>,
}

impl CheckSummary {
    /// Number of routes across all files.
    pub fn route_count(&self) -> usize {
        self.files.iter().map(|f| f.routes.len()).sum()
    }

    /// The name of the default route, if there is one.
    pub fn default_route(&self) -> Option<&str> {
        self.files
            .iter()
            .flat_map(|f| &f.routes)
            .find(|r| r.number == "default")
            .map(|r| r.name.as_str())
    }
}

impl fmt::Display for CheckSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.files.len();
        let routes = self.route_count();
        writeln!(
            f,
            "{}: {files} file{}, {routes} route{}",
            self.dir.display(),
            plural(files),
            plural(routes)
        )?;
        for file in &self.files {
            let name = file.path.file_name().unwrap_or(file.path.as_os_str());
            writeln!(f, "  {}", name.to_string_lossy())?;
            for route in &file.routes {
                write!(
                    f,
                    "    route {:?}: {}, {} {}",
                    route.name,
                    route.number,
                    route.model,
                    route.audio_format.name()
                )?;
                if !route.tools.is_empty() {
                    f.write_str("; tools:")?;
                    for (i, (tool, kind)) in route.tools.iter().enumerate() {
                        let sep = if i == 0 { " " } else { ", " };
                        write!(f, "{sep}{tool} ({kind})")?;
                    }
                }
                if !route.dtmf_bindings.is_empty() {
                    f.write_str("; keys:")?;
                    for (i, (digit, tool)) in route.dtmf_bindings.iter().enumerate() {
                        let sep = if i == 0 { " " } else { ", " };
                        write!(f, "{sep}{digit}={tool}")?;
                    }
                }
                writeln!(f)?;
            }
        }
        match self.default_route() {
            Some(name) => write!(f, "default route: {name:?}"),
            None => write!(
                f,
                "no default route: calls to numbers no route matches are rejected"
            ),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Loads and validates `dir` as [`Dialplan::load_dir`](super::Dialplan::load_dir) does, and
/// summarises it.
pub fn check(dir: &Path) -> Result<CheckSummary, DialplanError> {
    let files = load_files(dir)?;
    Ok(CheckSummary {
        dir: dir.to_path_buf(),
        files: files
            .into_iter()
            .map(|file| FileSummary {
                path: file.path,
                routes: file.routes.iter().map(summarise).collect(),
            })
            .collect(),
    })
}

fn summarise(route: &Route) -> RouteSummary {
    RouteSummary {
        name: route.name.clone(),
        number: route.number.to_string(),
        model: route.model.clone(),
        audio_format: route.audio_format,
        tools: route
            .tools
            .iter()
            .map(|t| (t.name.clone(), t.action.kind()))
            .collect(),
        dtmf_bindings: route.dtmf.bindings.clone(),
    }
}
