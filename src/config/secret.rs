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

    /// Loads the value; a relative `${file:…}` path is read from `base_dir` (the instance
    /// file's directory), as `tls.caFile` is. Errors name the reference, never a value.
    pub fn resolve(
        &self,
        sources: &SecretSources,
        base_dir: Option<&Path>,
    ) -> Result<Loaded, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name).map(Loaded::value).map_err(|_| {
                format!("environment variable {name} (from ${{env:{name}}}) is not set")
            }),
            SecretRef::File(written) => self.resolve_file(written, base_dir),
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
                // systemd keeps the credentials directory private: no mode warning.
                read_secret_file(&path)
                    .map(|file| Loaded::value(file.text))
                    .map_err(|e| {
                        format!("cannot read credential {name} at {}: {e}", path.display())
                    })
            }
        }
    }
}

impl SecretRef<'_> {
    /// `${file:written}`, relative to `base_dir`; warns when others may read the file.
    fn resolve_file(&self, written: &str, base_dir: Option<&Path>) -> Result<Loaded, String> {
        let path = match base_dir {
            Some(dir) if Path::new(written).is_relative() => dir.join(written),
            _ => PathBuf::from(written),
        };
        let shown = path.display();
        let file = read_secret_file(&path)
            .map_err(|e| format!("cannot read secret file {shown} (from {self}): {e}"))?;
        let warning = file.readable_by_others.then(|| {
            format!(
                "secret file {shown} (from {self}) is readable by other users: chmod 0600 it \
                 (or chmod o-r), or use ${{credential:NAME}}"
            )
        });
        Ok(Loaded {
            value: file.text,
            warning,
        })
    }
}

impl fmt::Display for SecretRef<'_> {
    /// The reference as written (it names where the secret is, not the secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "${{env:{name}}}"),
            SecretRef::File(path) => write!(f, "${{file:{path}}}"),
            SecretRef::Credential(name) => write!(f, "${{credential:{name}}}"),
        }
    }
}

/// A loaded secret, and what `check` should warn about it.
#[derive(Debug)]
pub struct Loaded {
    pub value: String,
    pub warning: Option<String>,
}

impl Loaded {
    fn value(value: String) -> Loaded {
        Loaded {
            value,
            warning: None,
        }
    }
}

/// systemd credential names are plain file names.
fn valid_credential_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// The most a secret file may hold: a key or a token, not a document. Reading stops there, so a
/// reference to a huge file (or a log) cannot fill memory.
pub const SECRET_FILE_MAX_BYTES: u64 = 64 * 1024;

/// A secret file's text, and whether its mode lets other users read it.
struct SecretFile {
    text: String,
    readable_by_others: bool,
}

/// Why a secret file was not read. The texts name what the file is, never what it holds.
#[derive(Debug, thiserror::Error)]
enum SecretFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than {} KiB, the most a secret file may hold", SECRET_FILE_MAX_BYTES / 1024)]
    TooLarge,
    #[error("it is not UTF-8 text")]
    NotUtf8,
}

/// Reads a regular file of at most [`SECRET_FILE_MAX_BYTES`]. FIFOs, devices, sockets and
/// directories are refused from their metadata before opening, so a FIFO nobody writes to (or
/// `/dev/zero`) is an error, not a hang or an endless read. (Only a FIFO put in the file's place
/// between that check and the open could still block the open; the read stays bounded.)
fn read_secret_file(path: &Path) -> Result<SecretFile, SecretFileError> {
    use std::io::Read as _;
    let before = std::fs::metadata(path)?;
    check_regular(&before)?;
    if before.len() > SECRET_FILE_MAX_BYTES {
        return Err(SecretFileError::TooLarge);
    }
    let file = std::fs::File::open(path)?;
    // The file that was opened, in case it was replaced since.
    let opened = file.metadata()?;
    check_regular(&opened)?;
    let mut bytes = Vec::new();
    file.take(SECRET_FILE_MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > SECRET_FILE_MAX_BYTES {
        return Err(SecretFileError::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotUtf8)?;
    Ok(SecretFile {
        // Files written with `echo` end in a newline that is not part of the secret.
        text: text.trim_end_matches(['\n', '\r']).to_string(),
        readable_by_others: readable_by_others(&opened),
    })
}

fn check_regular(metadata: &std::fs::Metadata) -> Result<(), SecretFileError> {
    let kind = metadata.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(SecretFileError::NotRegular(describe_file_type(&kind)))
}

#[cfg(unix)]
fn describe_file_type(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn describe_file_type(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

#[cfg(unix)]
fn readable_by_others(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o004 != 0
}

#[cfg(not(unix))]
fn readable_by_others(_: &std::fs::Metadata) -> bool {
    false
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

/// Replaces every string value that is a secret reference by the value it names; relative
/// `${file:…}` paths are read from `base_dir` (the instance file's directory).
pub fn resolve_references(
    value: &mut Value,
    sources: &SecretSources,
    base_dir: Option<&Path>,
) -> Resolution {
    let mut out = Resolution::default();
    let mut at = Walk {
        sources,
        base_dir,
        out: &mut out,
    };
    at.walk(value, "");
    out
}

/// What [`resolve_references`] carries down the tree.
struct Walk<'a> {
    sources: &'a SecretSources,
    base_dir: Option<&'a Path>,
    out: &'a mut Resolution,
}

impl Walk<'_> {
    fn walk(&mut self, value: &mut Value, pointer: &str) {
        match value {
            Value::String(s) => self.resolve(s, pointer),
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    self.walk(v, &child_pointer(pointer, k));
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.walk(v, &child_pointer(pointer, &i.to_string()));
                }
            }
            _ => {}
        }
    }

    /// Replaces `s` by the value it refers to, when it is a reference.
    fn resolve(&mut self, s: &mut String, pointer: &str) {
        let Some(r) = SecretRef::parse(s) else {
            return;
        };
        let (sources, out) = (self.sources, &mut *self.out);
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
        match r.resolve(sources, self.base_dir) {
            Ok(loaded) => {
                out.warnings.extend(loaded.warning);
                out.values.push(loaded.value.clone());
                *s = loaded.value;
            }
            Err(e) => out.errors.push((pointer.to_string(), e)),
        }
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
        let r = resolve_references(&mut v, &sources, None);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(v, serde_json::json!({"a": "s3cr3t", "b": ["s3cr3t"]}));
        assert_eq!(r.values.len(), 2);
    }
}
