//! Reading the TOML tree of the config file one field at a time, so that every misspelt or
//! mistyped field is reported (with its line and dotted path) rather than only the first.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::SourceText;

/// A value of the TOML tree, with its span.
pub(super) type Node<'i> = Spanned<DeValue<'i>>;

/// One string of an array, with its field path (`sip.allow[2]`).
pub(super) struct StringItem {
    pub(super) field: String,
    pub(super) value: Spanned<String>,
}

/// A table of the TOML tree whose unknown keys have been reported.
pub(super) struct Table<'t, 'i> {
    entries: &'t DeTable<'i>,
    span: Range<usize>,
    prefix: String,
}

impl<'t, 'i> Table<'t, 'i> {
    /// Reads `node` as the table at field path `prefix`, reporting keys not in `known`.
    /// `None` (reported) when it is not a table.
    pub(super) fn new(
        source: &mut SourceText<'_>,
        node: &'t Node<'i>,
        prefix: String,
        known: &[&str],
    ) -> Option<Self> {
        let Some(entries) = node.get_ref().as_table() else {
            let message = format!("expected a table, found {}", describe(node.get_ref()));
            source.report_field(&node.span(), prefix, message);
            return None;
        };
        for (key, _) in entries {
            let name: &str = key.get_ref();
            if !known.contains(&name) {
                let expected = known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                source.report_field(
                    &key.span(),
                    field_path(&prefix, name),
                    format!("unknown field; expected one of {expected}"),
                );
            }
        }
        Some(Table {
            entries,
            span: node.span(),
            prefix,
        })
    }

    /// Where the table starts: its `[header]`, or the inline table.
    pub(super) fn span(&self) -> &Range<usize> {
        &self.span
    }

    /// The table's own field path (`sip`, `trunk[2]`).
    pub(super) fn path(&self) -> &str {
        &self.prefix
    }

    /// The field path of `key` in this table.
    pub(super) fn field(&self, key: &str) -> String {
        field_path(&self.prefix, key)
    }

    /// Whether `key` is written in the table (whatever its value).
    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn get(&self, key: &str) -> Option<&'t Node<'i>> {
        self.entries
            .iter()
            .find(|(k, _)| {
                let name: &str = k.get_ref();
                name == key
            })
            .map(|(_, value)| value)
    }

    /// A string field; `None` when absent or (reported) of another type.
    pub(super) fn string(&self, source: &mut SourceText<'_>, key: &str) -> Option<Spanned<String>> {
        let node = self.get(key)?;
        as_string(source, node, self.field(key))
    }

    /// An integer field; `None` when absent or (reported) of another type.
    pub(super) fn integer(&self, source: &mut SourceText<'_>, key: &str) -> Option<Spanned<i64>> {
        let node = self.get(key)?;
        let field = self.field(key);
        let Some(integer) = node.get_ref().as_integer() else {
            type_mismatch(source, node, field, "an integer");
            return None;
        };
        match i64::from_str_radix(&integer.as_str().replace('_', ""), integer.radix()) {
            Ok(value) => Some(Spanned::new(node.span(), value)),
            Err(_) => {
                source.report_field(&node.span(), field, "integer out of range");
                None
            }
        }
    }

    /// A boolean field; `None` when absent or (reported) of another type.
    pub(super) fn boolean(&self, source: &mut SourceText<'_>, key: &str) -> Option<Spanned<bool>> {
        let node = self.get(key)?;
        match node.get_ref().as_bool() {
            Some(value) => Some(Spanned::new(node.span(), value)),
            None => {
                type_mismatch(source, node, self.field(key), "true or false");
                None
            }
        }
    }

    /// An array-of-strings field with the field path of each item; items of another type are
    /// reported and left out. `None` when absent or (reported) not an array.
    pub(super) fn strings(
        &self,
        source: &mut SourceText<'_>,
        key: &str,
    ) -> Option<Spanned<Vec<StringItem>>> {
        let node = self.get(key)?;
        let field = self.field(key);
        let Some(items) = node.get_ref().as_array() else {
            type_mismatch(source, node, field, "an array of strings");
            return None;
        };
        let strings = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let item_field = format!("{field}[{i}]");
                as_string(source, item, item_field.clone()).map(|value| StringItem {
                    field: item_field,
                    value,
                })
            })
            .collect();
        Some(Spanned::new(node.span(), strings))
    }
}

fn as_string(
    source: &mut SourceText<'_>,
    node: &Node<'_>,
    field: String,
) -> Option<Spanned<String>> {
    match node.get_ref().as_str() {
        Some(value) => Some(Spanned::new(node.span(), value.to_string())),
        None => {
            type_mismatch(source, node, field, "a string");
            None
        }
    }
}

fn type_mismatch(source: &mut SourceText<'_>, node: &Node<'_>, field: String, expected: &str) {
    let message = format!("expected {expected}, found {}", describe(node.get_ref()));
    source.report_field(&node.span(), field, message);
}

/// A TOML value's type, with its article.
pub(super) fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// `prefix.key`, with the key quoted when TOML would need it quoted.
pub(super) fn field_path(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}
