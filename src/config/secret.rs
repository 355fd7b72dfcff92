//! Secrets: values that must never reach a log line, status output, error or panic, and the
//! `${env:NAME}`, `${file:/path}`, `${credential:NAME}` references that load them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::source::child_pointer;

/// A secret string. `Debug` and `Display` print `***`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must use it (an HTTP header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where secret references are looked up.
#[derive(Clone, Debug, Default)]
pub struct SecretSources {
    /// systemd's `$CREDENTIALS_DIRECTORY` (from `LoadCredential=`).
    pub credentials_dir: Option<PathBuf>,
}

impl SecretSources {
    pub fn from_env() -> Self {
        SecretSources {
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        }
    }
}

/// A string that is exactly one secret reference.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretRef<'a> {
    Env(&'a str),
    File(&'a str),
    Credential(&'a str),
}

impl<'a> SecretRef<'a> {
    pub fn parse(s: &'a str) -> Option<SecretRef<'a>> {
        let inner = s.strip_prefix("${")?.strip_suffix('}')?;
        let (kind, arg) = inner.split_once(':')?;
        match kind {
            "env" => Some(SecretRef::Env(arg)),
            "file" => Some(SecretRef::File(arg)),
            "credential" => Some(SecretRef::Credential(arg)),
            _ => None,
        }
    }

    /// Loads the value. Errors name the reference, never a value.
    pub fn resolve(&self, sources: &SecretSources) -> Result<String, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| {
                format!("environment variable {name} (from ${{env:{name}}}) is not set")
            }),
            SecretRef::File(path) => read_secret_file(Path::new(path))
                .map_err(|e| format!("cannot read secret file {path}: {e}")),
            SecretRef::Credential(name) => {
                if name.is_empty() || name.contains('/') {
                    return Err(format!("invalid credential name {name:?}"));
                }
                let dir = sources.credentials_dir.as_ref().ok_or_else(|| {
                    format!(
                        "${{credential:{name}}} needs $CREDENTIALS_DIRECTORY, which is set by systemd's LoadCredential="
                    )
                })?;
                let path = dir.join(name);
                read_secret_file(&path).map_err(|e| {
                    format!("cannot read credential {name} at {}: {e}", path.display())
                })
            }
        }
    }
}

fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    // Files written with `echo` end in a newline that is not part of the secret.
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Replaces every string value that is a secret reference by the value it names.
/// Returns the resolved values (for redaction) and the errors as (pointer, message).
pub fn resolve_references(
    value: &mut Value,
    sources: &SecretSources,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut resolved = Vec::new();
    let mut errors = Vec::new();
    walk(value, "", sources, &mut resolved, &mut errors);
    (resolved, errors)
}

fn walk(
    value: &mut Value,
    pointer: &str,
    sources: &SecretSources,
    resolved: &mut Vec<String>,
    errors: &mut Vec<(String, String)>,
) {
    match value {
        Value::String(s) => {
            if let Some(r) = SecretRef::parse(s) {
                match r.resolve(sources) {
                    Ok(v) => {
                        resolved.push(v.clone());
                        *s = v;
                    }
                    Err(e) => errors.push((pointer.to_string(), e)),
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                walk(v, &child_pointer(pointer, k), sources, resolved, errors);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                walk(
                    v,
                    &child_pointer(pointer, &i.to_string()),
                    sources,
                    resolved,
                    errors,
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn references_parse_only_when_whole() {
        assert_eq!(SecretRef::parse("${env:A}"), Some(SecretRef::Env("A")));
        assert_eq!(
            SecretRef::parse("${file:/x/y}"),
            Some(SecretRef::File("/x/y"))
        );
        assert_eq!(
            SecretRef::parse("${credential:k}"),
            Some(SecretRef::Credential("k"))
        );
        assert_eq!(SecretRef::parse("x${env:A}"), None);
        assert_eq!(SecretRef::parse("${gmtDate:yyyy}"), None);
    }

    #[test]
    fn credential_and_file_references_load_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cw-private"), "s3cr3t\n").unwrap();
        let sources = SecretSources {
            credentials_dir: Some(dir.path().to_path_buf()),
        };
        let file = format!("${{file:{}}}", dir.path().join("cw-private").display());
        let mut v = serde_json::json!({"a": "${credential:cw-private}", "b": [file]});
        let (resolved, errors) = resolve_references(&mut v, &sources);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(v, serde_json::json!({"a": "s3cr3t", "b": ["s3cr3t"]}));
        assert_eq!(resolved.len(), 2);
    }
}
