//! Notification signatures (Elements-Webhook-Signature, Standard Webhooks).
//!
//! Both schemes are HMAC-SHA256 with standard base64 (with padding) output; they differ in the key
//! and in what is signed. See SPEC §5.
//!
//! A leaf module: `config` parses `webhook.secret` with it and `delivery` signs with it, so it
//! imports neither.

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
    SigningKey::new(key).elements_signature(body)
}

/// An HMAC-SHA256 key made ready once: HMAC hashes the padded key before any message, so a
/// delivery that keeps one of these per target hashes only the notification itself. Debug prints
/// no key material.
#[derive(Clone)]
pub struct SigningKey {
    keyed: HmacSha256,
}

impl SigningKey {
    pub fn new(key: &[u8]) -> SigningKey {
        // HMAC hashes over-long keys and pads short ones, so no key length is an error.
        SigningKey {
            keyed: HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length"),
        }
    }

    /// The `Elements-Webhook-Signature` value: `sha256=` + base64(HMAC-SHA256(key, body)).
    pub fn elements_signature(&self, body: &[u8]) -> String {
        format!("sha256={}", STANDARD.encode(self.digest(&[body])))
    }

    /// The `webhook-signature` value: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
    pub fn standard_signature(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let header = format!("{msg_id}.{timestamp}.");
        let digest = self.digest(&[header.as_bytes(), body]);
        format!("v1,{}", STANDARD.encode(digest))
    }

    fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
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

    /// The decoded key, ready to sign with.
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::new(&self.key)
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
    secret
        .signing_key()
        .standard_signature(msg_id, timestamp, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HMAC-SHA256 straight from the hmac crate, sharing nothing with [`SigningKey`].
    fn reference(key: &[u8], message: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(message);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_reused_key_signs_each_message_on_its_own() {
        let key = SigningKey::new(b"the signature key");
        let first = key.elements_signature(b"{\"n\":1}");
        let second = key.elements_signature(b"{\"n\":2}");
        assert_eq!(
            first,
            format!("sha256={}", reference(b"the signature key", b"{\"n\":1}"))
        );
        assert_eq!(
            second,
            format!("sha256={}", reference(b"the signature key", b"{\"n\":2}"))
        );
        assert_eq!(
            key.standard_signature("msg_1", 1_700_000_000, b"{}"),
            format!(
                "v1,{}",
                reference(b"the signature key", b"msg_1.1700000000.{}")
            )
        );
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(
            format!("{:?}", SigningKey::new(b"hunter2")),
            "SigningKey(***)"
        );
    }
}
