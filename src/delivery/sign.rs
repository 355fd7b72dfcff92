//! Notification signatures (Elements-Webhook-Signature, Standard Webhooks).
//!
//! Both schemes are HMAC-SHA256 with standard base64 (with padding) output; they differ in the key
//! and in what is signed. See SPEC §5.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix that marks a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";

/// What every error and formatter prints instead of a secret.
const REDACTED_SECRET: &str = "whsec_***";

/// Decodes secrets with or without trailing `=` padding: generators differ, the key bytes do not.
const SECRET_DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a configured webhook secret was refused. No variant carries any part of the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("webhook secret must start with \"whsec_\" followed by the base64-encoded key")]
    MissingPrefix,
    #[error("webhook secret has no key bytes after \"whsec_\"")]
    EmptyKey,
    #[error(
        "webhook secret is not valid base64 after \"whsec_\" (standard alphabet A-Z a-z 0-9 + /)"
    )]
    InvalidBase64,
}

/// `sha256=` + base64(HMAC-SHA256(key, body)) — the `Elements-Webhook-Signature` header value.
pub fn elements_signature(key: &[u8], body: &[u8]) -> String {
    let digest = hmac_sha256(key, &[body]);
    format!("sha256={}", STANDARD.encode(digest))
}

/// A Standard Webhooks secret: `"whsec_"` + base64 key bytes. Debug and Display print
/// `whsec_***`, so the secret can sit in configuration structs that get logged.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`. Surrounding whitespace (a trailing newline from a credentials
    /// file) is ignored; the prefix is required so that a plain password is not silently
    /// base64-decoded into different key bytes than the receiver expects.
    pub fn parse(s: &str) -> Result<WebhookSecret, SignError> {
        let encoded = s
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SignError::MissingPrefix)?;
        if encoded.is_empty() {
            return Err(SignError::EmptyKey);
        }
        let key = SECRET_DECODER
            .decode(encoded)
            .map_err(|_| SignError::InvalidBase64)?;
        if key.is_empty() {
            return Err(SignError::EmptyKey);
        }
        Ok(WebhookSecret { key })
    }

    /// Length of the decoded key in bytes (the spec recommends 24 to 64).
    pub fn key_len(&self) -> usize {
        self.key.len()
    }
}

impl FromStr for WebhookSecret {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WebhookSecret::parse(s)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED_SECRET)
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED_SECRET)
    }
}

/// `v1,` + base64(HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")) — the
/// `webhook-signature` header value.
pub fn standard_signature(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let header = format!("{msg_id}.{timestamp}.");
    let digest = hmac_sha256(&secret.key, &[header.as_bytes(), body]);
    format!("v1,{}", STANDARD.encode(digest))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC hashes over-long keys and pads short ones, so no key length is an error.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}
