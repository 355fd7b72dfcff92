//! `tls.caFile`: a PEM bundle of private CA certificates an instance trusts in addition to the
//! system roots, for its provider requests and its webhook deliveries. It only adds trust:
//! nothing in pollerd turns certificate verification off.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::fields::Ctx;
use super::source::child_pointer;
use super::spec::TlsCa;

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
    match read_ca_bundle(&path) {
        Ok(pem) => Some(Some(TlsCa { path, pem })),
        Err(message) => {
            cx.error(&pointer, format!("{TLS_CA_FILE_KEY}: {message}"));
            None
        }
    }
}

/// Reads a PEM bundle and checks that it holds at least one certificate rustls accepts as a
/// trust anchor. Errors name the path, never the file's content.
pub fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "{shown} is not a PEM certificate bundle: {}",
            crate::http_util::error_chain(&e)
        )
    })?;
    if certificates.is_empty() {
        return Err(format!(
            "{shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    // Building a client is what parses each certificate as a trust anchor.
    let mut builder = reqwest::Client::builder().tls_built_in_root_certs(false);
    for certificate in certificates {
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|e| {
        format!(
            "{shown} holds a certificate that cannot be trusted: {}",
            crate::http_util::error_chain(&e)
        )
    })?;
    Ok(pem)
}
