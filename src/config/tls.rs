//! `tls.caFile`: a PEM bundle of private CA certificates an instance trusts in addition to the
//! system roots, for its provider requests and its webhook deliveries, loaded once here
//! ([`TlsCa`]).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::fields::Ctx;
use super::source::child_pointer;
use crate::tls_roots::TlsCa;

pub const TLS_CA_FILE_KEY: &str = "tls.caFile";

/// `Some(None)`: no `tls.caFile` (valid). `None`: errors were reported.
pub fn tls_ca(cx: &mut Ctx, conf: &Map<String, Value>) -> Option<Option<TlsCa>> {
    let Some(v) = conf.get(TLS_CA_FILE_KEY) else {
        return Some(None);
    };
    let pointer = child_pointer("/configuration", TLS_CA_FILE_KEY);
    let written = cx.required_string(&pointer, TLS_CA_FILE_KEY, v)?;
    // A relative path is read from the instance file's directory, not the daemon's cwd.
    let path = match cx.doc.path.parent() {
        Some(dir) if Path::new(&written).is_relative() => dir.join(&written),
        _ => PathBuf::from(&written),
    };
    match TlsCa::load(&path) {
        Ok(ca) => Some(Some(ca)),
        Err(e) => {
            cx.error(&pointer, format!("{TLS_CA_FILE_KEY}: {e}"));
            None
        }
    }
}
