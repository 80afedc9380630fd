//! The rules across the routes of a directory: route names are unique, there is at most one
//! default route, and no two routes match the same exact number or prefix. Every `[[route]]`,
//! valid or not, is a [`Site`] that takes part as far as its name and match could be read.

use std::collections::HashMap;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;

use super::location::SourceText;
use super::{Problem, Route, normalize_number};

/// 1-based line and column.
type Pos = (usize, usize);

/// Something read from a file, with where it was written.
type Located<T> = Option<(T, Pos)>;

/// How a route matches, as far as the rules across routes care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MatchKey {
    Exact(String),
    Prefix(String),
    Pattern,
    Default,
}

/// One `[[route]]` of a file, valid or not: what the rules across routes need to know about
/// it, and the validated route when it has no mistakes.
pub(super) struct Site {
    pub(super) file: usize,
    pub(super) path: PathBuf,
    /// Position of the route in its file's `route` array.
    pub(super) index: usize,
    pub(super) name: Located<String>,
    pub(super) number: Located<MatchKey>,
    pub(super) route: Option<Route>,
}

impl Site {
    fn label(&self) -> Option<&str> {
        self.name.as_ref().map(|(n, _)| n.as_str())
    }

    /// `field` inside this route, prefixed with its place in the file when it has no name.
    fn field(&self, field: &str) -> String {
        match self.name {
            Some(_) => field.to_string(),
            None => format!("route[{}].{field}", self.index),
        }
    }
}

/// Rules that involve more than one route: unique names, one default, unambiguous matches.
/// Routes with mistakes of their own take part as far as their name and match could be read.
pub(super) fn check_across_routes(sites: &[Site], problems: &mut Vec<Problem>) {
    let mut names: HashMap<&str, (&Site, Pos)> = HashMap::new();
    let mut matches: Vec<(&MatchKey, &Site, Pos)> = Vec::new();
    let place = |site: &Site, pos: Pos| format!("{}:{}", site.path.display(), pos.0);

    for site in sites {
        let mut problem = |pos: Pos, field: &str, message: String| {
            problems.push(Problem {
                path: site.path.clone(),
                line: pos.0,
                column: pos.1,
                route: site.label().map(str::to_string),
                field: Some(site.field(field)),
                message,
            });
        };
        if let Some((name, pos)) = &site.name {
            if let Some((first, first_pos)) = names.get(name.as_str()) {
                let message = format!("route name is already used at {}", place(first, *first_pos));
                problem(*pos, "name", message);
            } else {
                names.insert(name, (site, *pos));
            }
        }
        let Some((key, pos)) = &site.number else {
            continue;
        };
        if *key == MatchKey::Pattern {
            continue;
        }
        if let Some((_, first, first_pos)) = matches.iter().find(|(k, _, _)| *k == key) {
            let first_name = first
                .label()
                .map_or_else(|| format!("#{}", first.index), |n| format!("{n:?}"));
            let at = place(first, *first_pos);
            let (field, message) = match key {
                MatchKey::Default => (
                    "match.default",
                    format!(
                        "more than one default route: route {first_name} at {at} is already the default"
                    ),
                ),
                MatchKey::Exact(n) => (
                    "match.exact",
                    format!("exact {n:?} is already matched by route {first_name} at {at}"),
                ),
                MatchKey::Prefix(p) => (
                    "match.prefix",
                    format!("prefix {p:?} is already matched by route {first_name} at {at}"),
                ),
                MatchKey::Pattern => continue,
            };
            problem(*pos, field, message);
        } else {
            matches.push((key, site, *pos));
        }
    }
}

/// The name and match of a route that could not be read as a whole, as far as they are
/// well-formed, for the rules across routes.
pub(super) fn site_from_tree(
    element: &Spanned<DeValue<'_>>,
    source: &SourceText<'_>,
) -> (Located<String>, Located<MatchKey>) {
    let Some(table) = element.get_ref().as_table() else {
        return (None, None);
    };
    let name = table.get("name").and_then(|n| {
        let name = n.get_ref().as_str()?;
        (!name.trim().is_empty()).then(|| (name.to_string(), source.position(n.span().start)))
    });
    let number = table.get("match").and_then(|m| {
        let entries = m.get_ref().as_table()?;
        let mut entries = entries.iter();
        let (key, value) = entries.next()?;
        if entries.next().is_some() {
            return None;
        }
        let key = match (key.get_ref().as_ref(), value.get_ref()) {
            ("exact", DeValue::String(n)) => MatchKey::Exact(normalize_number(n)),
            ("prefix", DeValue::String(p)) => MatchKey::Prefix(normalize_number(p)),
            ("pattern", _) => MatchKey::Pattern,
            ("default", DeValue::Boolean(true)) => MatchKey::Default,
            _ => return None,
        };
        Some((key, source.position(m.span().start)))
    });
    (name, number)
}
