//! Dialplan files: loading the TOML files of a directory into a validated [`Dialplan`].
//!
//! Every `*.toml` file directly inside the directory is loaded, in file-name order; files in
//! subdirectories and files whose name starts with `.` are ignored. Each file holds
//! `[[route]]` tables. Every mistake is reported with its file, line and field, and all the
//! mistakes of a directory are reported together: a file that is not valid TOML contributes
//! one problem, a route with a misspelt or mistyped field contributes one problem (and is
//! otherwise skipped), and every rule a well-formed route breaks is reported.
//!
//! A directory without a `match = { default = true }` route is valid: calls to numbers that
//! no route matches are then rejected.
//!
//! This module owns reading the directory and its files and parsing each file into its
//! routes. Each route is validated on its own in `validate.rs`, and the routes together in
//! `across.rs`; choosing a route for a called number is in `matching.rs`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::DeTable;

use super::across::{Site, check_across_routes, site_from_tree};
use super::location::{Segment, SourceText, field_at, field_key, format_path, missing_field};
use super::raw::RawRoute;
use super::validate::{RouteCx, validate_route};
use super::{Dialplan, DialplanError, Problem, Route};

impl Dialplan {
    /// Loads every `*.toml` file directly inside `dir` (in file-name order) and validates the
    /// routes of all of them together.
    pub fn load_dir(dir: &Path) -> Result<Dialplan, DialplanError> {
        let files = load_files(dir)?;
        Ok(Dialplan {
            routes: files.into_iter().flat_map(|f| f.routes).collect(),
        })
    }

    /// Loads one file's text; `path_for_messages` is only used in error messages.
    pub fn from_str(path_for_messages: &Path, text: &str) -> Result<Dialplan, DialplanError> {
        let mut problems = Vec::new();
        let sites = parse_file(path_for_messages, text, &mut problems);
        check_across_routes(&sites, &mut problems);
        finish(path_for_messages, problems, &sites)?;
        Ok(Dialplan {
            routes: sites.into_iter().filter_map(|s| s.route).collect(),
        })
    }
}

/// The validated routes of one file.
pub(super) struct LoadedFile {
    pub(super) path: PathBuf,
    pub(super) routes: Vec<Route>,
}

pub(super) fn load_files(dir: &Path) -> Result<Vec<LoadedFile>, DialplanError> {
    let read_dir = |source| DialplanError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        let path = entry.path();
        // Follows symbolic links: a link to a file is loaded, a directory is not.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            paths.push(path);
        }
    }
    paths.sort();

    let mut problems = Vec::new();
    let mut sites = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|source| DialplanError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let text = String::from_utf8_lossy(valid);
                let (line, column) = SourceText::new(path, &text).position(valid.len());
                problems.push(Problem {
                    path: path.clone(),
                    line,
                    column,
                    route: None,
                    field: None,
                    message: "the file is not valid UTF-8".into(),
                });
                continue;
            }
        };
        sites.extend(
            parse_file(path, &text, &mut problems)
                .into_iter()
                .map(|site| Site {
                    file: index,
                    ..site
                }),
        );
    }
    check_across_routes(&sites, &mut problems);
    finish(dir, problems, &sites)?;

    let mut files: Vec<LoadedFile> = paths
        .into_iter()
        .map(|path| LoadedFile {
            path,
            routes: Vec::new(),
        })
        .collect();
    for site in sites {
        if let Some(route) = site.route {
            files[site.file].routes.push(route);
        }
    }
    Ok(files)
}

/// Turns collected problems (or the lack of any route) into the error.
fn finish(path: &Path, mut problems: Vec<Problem>, sites: &[Site]) -> Result<(), DialplanError> {
    if !problems.is_empty() {
        // Files load in path order; the sort is stable, so problems on one line keep the
        // order they were found in.
        problems.sort_by(|a, b| a.path.cmp(&b.path).then(a.line.cmp(&b.line)));
        return Err(DialplanError::Invalid(problems));
    }
    if sites.is_empty() {
        return Err(DialplanError::NoRoutes {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Parses one file and validates each of its routes on its own.
fn parse_file(path: &Path, text: &str, problems: &mut Vec<Problem>) -> Vec<Site> {
    let source = SourceText::new(path, text);
    let document = match DeTable::parse(text) {
        Ok(document) => document,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = format!("invalid TOML: {}", e.message());
            problems.push(source.problem(&span, None, None, message));
            return Vec::new();
        }
    };

    let mut sites = Vec::new();
    for (key, value) in document.get_ref() {
        if key.get_ref() != "route" {
            problems.push(source.problem(
                &key.span(),
                None,
                Some(field_key(key.get_ref())),
                "unknown top-level key: a dialplan file holds only `[[route]]` tables",
            ));
            continue;
        }
        let Some(elements) = value.get_ref().as_array() else {
            problems.push(source.problem(
                &value.span(),
                None,
                Some("route".into()),
                "`route` must be an array of tables: write each route as `[[route]]`",
            ));
            continue;
        };
        for (index, element) in elements.iter().enumerate() {
            let raw = RawRoute::deserialize(toml::de::ValueDeserializer::from(element.clone()));
            match raw {
                Ok(raw) => {
                    let mut cx = RouteCx::new(&source, raw.name.get_ref(), index, problems);
                    sites.push(validate_route(raw, &mut cx));
                }
                Err(e) => {
                    let (name, number) = site_from_tree(element, &source);
                    let span = e.span().unwrap_or_else(|| element.span());
                    let mut field = field_at(element, &span);
                    if let Some(missing) = missing_field(e.message()) {
                        field.push(Segment::Key(missing.to_string()));
                    }
                    if name.is_none() {
                        field.insert(0, Segment::Index(index));
                        field.insert(0, Segment::Key("route".into()));
                    }
                    let field = (!field.is_empty()).then(|| format_path(&field));
                    let label = name.as_ref().map(|(n, _)| n.as_str());
                    problems.push(source.problem(&span, label, field, e.message()));
                    sites.push(Site {
                        file: 0,
                        path: path.to_path_buf(),
                        index,
                        name,
                        number,
                        route: None,
                    });
                }
            }
        }
    }
    sites
}
