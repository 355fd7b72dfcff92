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
    /// `pollerd check` run from a shell has no credentials directory: credential references
    /// are then warned about as unverified instead of failing the file.
    pub unverified_credentials_ok: bool,
}

impl SecretSources {
    pub fn from_env() -> Self {
        SecretSources {
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            unverified_credentials_ok: false,
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
                if !valid_credential_name(name) {
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

/// systemd credential names are plain file names.
fn valid_credential_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    // Files written with `echo` end in a newline that is not part of the secret.
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// What resolving the references of one document gave.
#[derive(Debug, Default)]
pub struct Resolution {
    /// The loaded values, so messages can be redacted.
    pub values: Vec<String>,
    /// (JSON pointer, message)
    pub errors: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// Replaces every string value that is a secret reference by the value it names.
pub fn resolve_references(value: &mut Value, sources: &SecretSources) -> Resolution {
    let mut out = Resolution::default();
    walk(value, "", sources, &mut out);
    out
}

fn walk(value: &mut Value, pointer: &str, sources: &SecretSources, out: &mut Resolution) {
    match value {
        Value::String(s) => {
            let Some(r) = SecretRef::parse(s) else {
                return;
            };
            if let SecretRef::Credential(name) = r {
                if sources.credentials_dir.is_none()
                    && sources.unverified_credentials_ok
                    && valid_credential_name(name)
                {
                    out.warnings.push(format!(
                        "${{credential:{name}}} not verified: $CREDENTIALS_DIRECTORY is unset outside systemd"
                    ));
                    *s = format!("unverified-credential-{name}");
                    return;
                }
            }
            match r.resolve(sources) {
                Ok(v) => {
                    out.values.push(v.clone());
                    *s = v;
                }
                Err(e) => out.errors.push((pointer.to_string(), e)),
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                walk(v, &child_pointer(pointer, k), sources, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                walk(v, &child_pointer(pointer, &i.to_string()), sources, out);
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
            unverified_credentials_ok: false,
        };
        let file = format!("${{file:{}}}", dir.path().join("cw-private").display());
        let mut v = serde_json::json!({"a": "${credential:cw-private}", "b": [file]});
        let r = resolve_references(&mut v, &sources);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(v, serde_json::json!({"a": "s3cr3t", "b": ["s3cr3t"]}));
        assert_eq!(r.values.len(), 2);
    }
}
