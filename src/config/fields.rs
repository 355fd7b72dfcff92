//! Reading loosely typed values the way Cloud Elements accepted them (`"true"`, `"15"`), with
//! every problem reported at its position in the file.

use serde_json::{Map, Value};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::source::{Document, child_pointer};

/// Validation context for one document: positions for errors, and the secret values that must
/// be redacted from every message.
pub struct Ctx<'d> {
    pub doc: &'d Document,
    pub diags: Diagnostics,
    pub secrets: Vec<String>,
}

impl<'d> Ctx<'d> {
    pub fn new(doc: &'d Document) -> Self {
        Ctx {
            doc,
            diags: Diagnostics::default(),
            secrets: Vec::new(),
        }
    }

    /// An error at the value `pointer` refers to.
    pub fn error(&mut self, pointer: &str, message: impl Into<String>) {
        let pos = self.doc.value_position(pointer);
        self.push(Diagnostic::error(&self.doc.path, Some(pos), message));
    }

    /// An error at the key of the member `pointer` refers to.
    pub fn key_error(&mut self, pointer: &str, message: impl Into<String>) {
        let pos = self.doc.key_position(pointer);
        self.push(Diagnostic::error(&self.doc.path, Some(pos), message));
    }

    pub fn warning(&mut self, message: impl Into<String>) {
        self.push(Diagnostic::warning(&self.doc.path, message));
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d.redact(&self.secrets));
    }

    /// Reports every key of `map` not in `known` as an error naming the accepted keys.
    pub fn reject_unknown(
        &mut self,
        pointer: &str,
        what: &str,
        map: &Map<String, Value>,
        known: &[&str],
    ) {
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            self.key_error(
                &child_pointer(pointer, key),
                format!(
                    "unknown key {key:?} in {what}; expected one of: {}",
                    known.join(", ")
                ),
            );
        }
    }

    /// A string (numbers are accepted and written out as text).
    pub fn string(&mut self, pointer: &str, name: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => {
                self.error(pointer, format!("{name} must be a string, not {}", kind(v)));
                None
            }
        }
    }

    /// A non-empty string.
    pub fn required_string(&mut self, pointer: &str, name: &str, v: &Value) -> Option<String> {
        let s = self.string(pointer, name, v)?;
        if s.trim().is_empty() {
            self.error(pointer, format!("{name} must not be empty"));
            return None;
        }
        Some(s)
    }

    /// `true`/`false`, or the strings `"true"`/`"false"` (any case), as Cloud Elements accepted.
    pub fn boolean(&mut self, pointer: &str, name: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => {
                self.error(
                    pointer,
                    format!("{name} must be true or false, not {}", describe(v)),
                );
                None
            }
        }
    }

    /// A number or a numeric string, within `min..=max`.
    pub fn number(
        &mut self,
        pointer: &str,
        name: &str,
        v: &Value,
        min: f64,
        max: f64,
    ) -> Option<f64> {
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() && n >= min && n <= max => Some(n),
            Some(n) if n.is_finite() => {
                self.error(
                    pointer,
                    format!("{name} must be between {min} and {max}, not {n}"),
                );
                None
            }
            _ => {
                self.error(
                    pointer,
                    format!("{name} must be a number, not {}", describe(v)),
                );
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub fn integer(
        &mut self,
        pointer: &str,
        name: &str,
        v: &Value,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let n = self.number(pointer, name, v, min as f64, max as f64)?;
        if n.fract() != 0.0 {
            self.error(pointer, format!("{name} must be a whole number, not {n}"));
            return None;
        }
        Some(n as u64)
    }

    pub fn object<'v>(
        &mut self,
        pointer: &str,
        name: &str,
        v: &'v Value,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.error(
                    pointer,
                    format!("{name} must be an object, not {}", kind(v)),
                );
                None
            }
        }
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short description of a non-secret value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        _ => kind(v).to_string(),
    }
}
