//! A parsed configuration document (JSON or TOML) that remembers where every key and value
//! stands in its file, so validation errors can say `FILE:LINE:COL`.
//!
//! Values are held as `serde_json::Value` whatever the file format; positions are kept beside
//! them, keyed by JSON pointer (RFC 6901), and looked up by the nearest ancestor when a value has
//! none of its own (e.g. inside an embedded JSON string).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::diagnostics::{Diagnostic, LineIndex, Position};

/// File formats an instance or settings file may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
}

impl Format {
    /// `.toml` (also behind a trailing `.example`) is TOML; everything else is JSON.
    pub fn of_path(path: &Path) -> Format {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let name = name.strip_suffix(".example").unwrap_or(name);
        if name.ends_with(".toml") {
            Format::Toml
        } else {
            Format::Json
        }
    }
}

/// A document with its value tree and the positions of its keys and values.
#[derive(Debug, Clone)]
pub struct Document {
    pub path: PathBuf,
    pub value: Value,
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Document {
    pub fn parse(path: &Path, text: &str, format: Format) -> Result<Document, Diagnostic> {
        match format {
            Format::Json => Self::parse_json(path, text),
            Format::Toml => Self::parse_toml(path, text),
        }
    }

    pub fn parse_json(path: &Path, text: &str) -> Result<Document, Diagnostic> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            let pos = Position {
                line: e.line().max(1),
                column: e.column().max(1),
            };
            Diagnostic::error(
                path,
                Some(pos),
                format!("invalid JSON: {}", strip_serde_position(&e.to_string())),
            )
        })?;
        let mut doc = Document::new(path, value);
        // serde_json accepted the text, so this stricter-than-needed parser only adds positions.
        let options = jsonc_parser::ParseOptions {
            allow_comments: false,
            allow_loose_object_property_names: false,
            allow_trailing_commas: false,
        };
        if let Ok(ast) = jsonc_parser::parse_to_ast(text, &Default::default(), &options) {
            if let Some(root) = ast.value {
                doc.record_json(&LineIndex::new(text), "", &root);
            }
        }
        Ok(doc)
    }

    pub fn parse_toml(path: &Path, text: &str) -> Result<Document, Diagnostic> {
        let spanned =
            toml::de::DeTable::parse(text).map_err(|e| toml_diagnostic(path, text, &e))?;
        let value: Value = toml::from_str(text).map_err(|e| toml_diagnostic(path, text, &e))?;
        let mut doc = Document::new(path, value);
        doc.values.insert(String::new(), Position::START);
        doc.record_toml_table(&LineIndex::new(text), "", spanned.get_ref());
        Ok(doc)
    }

    /// A document for a value that has no file positions (e.g. built in code).
    pub fn new(path: &Path, value: Value) -> Document {
        Document {
            path: path.to_path_buf(),
            value,
            values: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// Where the value at `pointer` starts (or its nearest ancestor's, or 1:1).
    pub fn value_position(&self, pointer: &str) -> Position {
        self.lookup(&self.values, pointer)
    }

    /// Where the key of the member at `pointer` stands, falling back to its value.
    pub fn key_position(&self, pointer: &str) -> Position {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value_position(pointer))
    }

    fn lookup(&self, map: &HashMap<String, Position>, pointer: &str) -> Position {
        let mut p = pointer;
        loop {
            if let Some(pos) = map.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Position::START,
            }
        }
    }

    fn record_json(&mut self, lines: &LineIndex, pointer: &str, value: &jsonc_parser::ast::Value) {
        use jsonc_parser::ast::Value as J;
        use jsonc_parser::common::Ranged;
        self.values
            .insert(pointer.to_string(), lines.position(value.start()));
        match value {
            J::Object(obj) => {
                for prop in &obj.properties {
                    let child = child_pointer(pointer, prop.name.as_str());
                    self.keys
                        .insert(child.clone(), lines.position(prop.range.start));
                    self.record_json(lines, &child, &prop.value);
                }
            }
            J::Array(arr) => {
                for (i, el) in arr.elements.iter().enumerate() {
                    self.record_json(lines, &child_pointer(pointer, &i.to_string()), el);
                }
            }
            _ => {}
        }
    }

    fn record_toml_table(
        &mut self,
        lines: &LineIndex,
        pointer: &str,
        table: &toml::de::DeTable<'_>,
    ) {
        for (key, value) in table {
            let child = child_pointer(pointer, key.get_ref());
            self.keys
                .insert(child.clone(), lines.position(key.span().start));
            self.record_toml_value(lines, &child, value);
        }
    }

    fn record_toml_value(
        &mut self,
        lines: &LineIndex,
        pointer: &str,
        value: &toml::Spanned<toml::de::DeValue<'_>>,
    ) {
        self.values
            .insert(pointer.to_string(), lines.position(value.span().start));
        match value.get_ref() {
            toml::de::DeValue::Table(t) => self.record_toml_table(lines, pointer, t),
            toml::de::DeValue::Array(items) => {
                for (i, el) in items.iter().enumerate() {
                    self.record_toml_value(lines, &child_pointer(pointer, &i.to_string()), el);
                }
            }
            _ => {}
        }
    }
}

/// Appends one reference token to a JSON pointer, escaping `~` and `/`.
pub fn child_pointer(parent: &str, key: &str) -> String {
    format!("{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn toml_diagnostic(path: &Path, text: &str, e: &toml::de::Error) -> Diagnostic {
    let pos = e
        .span()
        .map(|s| Position::of_offset(text, s.start))
        .unwrap_or(Position::START);
    Diagnostic::error(
        path,
        Some(pos),
        format!("invalid TOML: {}", e.message().trim()),
    )
}

/// serde_json appends " at line L column C" to its messages; the position is printed separately.
fn strip_serde_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_json_keys_and_values() {
        let text = "{\n  \"a\": {\n    \"b/c\": [1, \"x\"]\n  }\n}\n";
        let doc = Document::parse_json(Path::new("f.json"), text).unwrap();
        assert_eq!(doc.key_position("/a"), Position { line: 2, column: 3 });
        assert_eq!(doc.key_position("/a/b~1c"), Position { line: 3, column: 5 });
        assert_eq!(
            doc.value_position("/a/b~1c/1"),
            Position {
                line: 3,
                column: 16
            }
        );
        // Unknown children fall back to the nearest ancestor.
        assert_eq!(
            doc.value_position("/a/b~1c/1/zz"),
            Position {
                line: 3,
                column: 16
            }
        );
    }

    #[test]
    fn positions_of_toml_keys_and_values() {
        let text = "name = \"x\"\n[configuration]\n\"event.poller.refresh_interval\" = \"15\"\n";
        let doc = Document::parse_toml(Path::new("f.toml"), text).unwrap();
        assert_eq!(
            doc.value["configuration"]["event.poller.refresh_interval"],
            "15"
        );
        assert_eq!(
            doc.key_position("/configuration/event.poller.refresh_interval"),
            Position { line: 3, column: 1 }
        );
        assert_eq!(
            doc.value_position("/configuration/event.poller.refresh_interval"),
            Position {
                line: 3,
                column: 35
            }
        );
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(
            Position::of_offset("é\"x", 3),
            Position { line: 1, column: 3 }
        );
    }
}
