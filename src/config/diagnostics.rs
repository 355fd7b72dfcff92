//! Problems found in configuration files, printed the way compilers do:
//! `FILE:LINE:COL: error: …` and `FILE: warning: …`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub const START: Position = Position { line: 1, column: 1 };

    /// The position of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }
}

/// Positions of many offsets in one text: [`Position::of_offset`] counts the lines from the
/// start each time, which made recording every key and value of an instance file quadratic in
/// its length (a third of loading 10,000 files).
pub struct LineIndex<'t> {
    text: &'t str,
    /// The offset at which each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub fn new(text: &'t str) -> LineIndex<'t> {
        let lines = text.match_indices('\n').map(|(i, _)| i + 1);
        LineIndex {
            text,
            starts: std::iter::once(0).chain(lines).collect(),
        }
    }

    /// The same as `Position::of_offset(text, offset)`.
    pub fn position(&self, offset: usize) -> Position {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        // Line starts at or before the offset: at least the first, at 0.
        let line = self.starts.partition_point(|start| *start <= offset);
        let line_start = line
            .checked_sub(1)
            .and_then(|i| self.starts.get(i))
            .copied()
            .unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        Position { line, column }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// Where in the file; errors without one print `1:1` so every error line has the same shape.
    pub position: Option<Position>,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &Path, position: Option<Position>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            position,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            position: None,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Replaces every occurrence of each secret value in the message with `***`. Values shorter
    /// than 4 characters are placeholders, not secrets, and would shred the message.
    pub fn redact(mut self, secrets: &[String]) -> Self {
        for s in secrets.iter().filter(|s| s.chars().count() >= 4) {
            if self.message.contains(s.as_str()) {
                self.message = self.message.replace(s.as_str(), "***");
            }
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.severity {
            Severity::Error => {
                let p = self.position.unwrap_or(Position::START);
                write!(f, "{file}:{}:{}: error: {}", p.line, p.column, self.message)
            }
            Severity::Warning => write!(f, "{file}: warning: {}", self.message),
        }
    }
}

/// Collects diagnostics while validating one file.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(other);
    }
}

#[cfg(test)]
mod line_index_tests {
    use super::*;

    #[test]
    fn line_index_agrees_with_counting_from_the_start() {
        let texts = [
            "",
            "\n",
            "{\n  \"a\": 1,\r\n  \"é\": \"x\"\n}\n",
            "one line, no newline",
            "\n\nü\n€ b\n\n",
        ];
        for text in texts {
            let lines = LineIndex::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    lines.position(offset),
                    Position::of_offset(text, offset),
                    "offset {offset} of {text:?}"
                );
            }
        }
    }
}
