//! `tls.caFile` loaded once: the PEM bundle read and split into DER certificates, each checked
//! as a trust anchor. `config` loads it when it reads an instance file; the provider client and
//! the webhook client add its certificates to their roots without parsing PEM again. A leaf
//! module: it imports neither side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// The private CA certificates an instance trusts on top of the system roots. Only adds trust:
/// nothing in pollerd turns certificate verification off.
#[derive(Clone)]
pub struct TlsCa {
    /// Where the bundle was read from (errors name it, never its content).
    pub path: PathBuf,
    certificates: Arc<[CertificateDer<'static>]>,
    /// SHA-256 over the certificates: bundles with the same certificates are the same trust,
    /// whatever their path, so they share one client.
    identity: [u8; 32],
}

/// Why a CA bundle cannot be trusted. The texts name the path, never the file's content; they
/// are what `pollerd check` prints after `tls.caFile: `.
#[derive(Debug, thiserror::Error)]
pub enum TlsCaError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not a PEM certificate bundle: builder error: invalid certificate encoding",
        path.display()
    )]
    NotPem { path: PathBuf },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{} holds a certificate that cannot be trusted: builder error: {source}",
        path.display()
    )]
    Untrusted {
        path: PathBuf,
        source: rustls::Error,
    },
}

impl TlsCa {
    /// Reads and checks the bundle at `path`.
    pub fn load(path: &Path) -> Result<TlsCa, TlsCaError> {
        let pem = std::fs::read(path).map_err(|source| TlsCaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        TlsCa::from_pem(path.to_path_buf(), &pem)
    }

    /// Checks a bundle read from `path`: at least one certificate, every one a trust anchor
    /// rustls accepts.
    pub fn from_pem(path: PathBuf, pem: &[u8]) -> Result<TlsCa, TlsCaError> {
        let certificates: Vec<CertificateDer<'static>> =
            match CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>() {
                Ok(certificates) => certificates,
                Err(_) => return Err(TlsCaError::NotPem { path }),
            };
        if certificates.is_empty() {
            return Err(TlsCaError::NoCertificate { path });
        }
        let mut anchors = RootCertStore::empty();
        let mut identity = Sha256::new();
        for certificate in &certificates {
            if let Err(source) = anchors.add(certificate.clone()) {
                return Err(TlsCaError::Untrusted { path, source });
            }
            identity.update(certificate.len().to_be_bytes());
            identity.update(certificate);
        }
        Ok(TlsCa {
            path,
            certificates: certificates.into(),
            identity: identity.finalize().into(),
        })
    }

    /// The bundle's certificates, in file order.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// Equal for bundles holding the same certificates.
    pub fn identity(&self) -> [u8; 32] {
        self.identity
    }
}

impl PartialEq for TlsCa {
    fn eq(&self, other: &TlsCa) -> bool {
        self.path == other.path && self.identity == other.identity
    }
}

impl Eq for TlsCa {}

impl std::fmt::Debug for TlsCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCa")
            .field("path", &self.path)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_bundle_that_is_not_pem_certificates_is_refused() {
        let garbage = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        let error = TlsCa::from_pem("/etc/pollerd/ca.pem".into(), garbage).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/etc/pollerd/ca.pem is not a PEM certificate bundle: builder error: invalid certificate encoding"
        );
    }
}
