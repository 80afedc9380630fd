//! Where a mistake is written: [`SourceText`] turns byte offsets of a file into the 1-based
//! lines and columns of a [`Problem`], and the field paths (`tools[1].action.url`) are found
//! from spans of the TOML tree and written here.

use crate::line_index::LineIndex;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::DeValue;

use super::Problem;

/// A file's text, for turning byte offsets into lines and columns.
pub(super) struct SourceText<'a> {
    pub(super) path: &'a Path,
    lines: LineIndex<'a>,
}

impl<'a> SourceText<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            lines: LineIndex::new(text),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        self.lines.position(offset)
    }

    pub(super) fn problem(
        &self,
        span: &Range<usize>,
        route: Option<&str>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = self.position(span.start);
        Problem {
            path: self.path.to_path_buf(),
            line,
            column,
            route: route.map(str::to_string),
            field,
            message: one_line(&message.into()),
        }
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The field a serde "missing field `x`" message names.
pub(super) fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split('`')
        .next()
        .filter(|f| !f.is_empty())
}

/// One step of a field path: a table key or an array index.
#[derive(Debug, Clone)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

/// Writes a field path as in problems: `tools[1].action.url`.
pub(super) fn format_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&field_key(key));
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A key as written in a field path: bare when TOML allows it, quoted otherwise.
pub(super) fn field_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The path, inside `root`, of the smallest key or value whose span holds `span`.
pub(super) fn field_at(root: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Vec<Segment> {
    fn holds(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        outer.start <= inner.start && inner.end <= outer.end
    }
    struct Best {
        size: usize,
        path: Vec<Segment>,
    }
    fn consider(best: &mut Option<Best>, outer: &Range<usize>, path: &[Segment]) {
        let size = outer.end.saturating_sub(outer.start);
        let better = best
            .as_ref()
            .is_none_or(|b| size < b.size || (size == b.size && path.len() > b.path.len()));
        if better {
            *best = Some(Best {
                size,
                path: path.to_vec(),
            });
        }
    }
    fn visit(
        node: &Spanned<DeValue<'_>>,
        span: &Range<usize>,
        path: &mut Vec<Segment>,
        best: &mut Option<Best>,
    ) {
        if holds(&node.span(), span) {
            consider(best, &node.span(), path);
        }
        match node.get_ref() {
            DeValue::Table(table) => {
                for (key, value) in table {
                    path.push(Segment::Key(key.get_ref().to_string()));
                    if holds(&key.span(), span) {
                        consider(best, &key.span(), path);
                    }
                    visit(value, span, path, best);
                    path.pop();
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Segment::Index(i));
                    visit(item, span, path, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    visit(root, span, &mut Vec::new(), &mut best);
    best.map(|b| b.path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use toml::de::DeTable;

    use super::*;

    #[test]
    fn field_paths_come_from_spans() {
        let text = "[[route]]\nname = \"a\"\n[[route.tools]]\nname = \"x\"\naction = { type = \"hangup\", bad = 1 }\n";
        let document = DeTable::parse(text).expect("parses");
        let route = document.get_ref().get("route").expect("route");
        let element = &route.get_ref().as_array().expect("array")[0];
        let offset = text.find("bad").expect("bad");
        let path = field_at(element, &(offset..offset + 3));
        assert_eq!(format_path(&path), "tools[0].action.bad");
        assert_eq!(
            format_path(&[
                Segment::Key("dtmf".into()),
                Segment::Key("bindings".into()),
                Segment::Key("#".into())
            ]),
            "dtmf.bindings.\"#\""
        );
        assert_eq!(missing_field("missing field `name`"), Some("name"));
        assert_eq!(missing_field("unknown field `x`"), None);
    }
}
