//! Notification signatures against published vectors and an independent verifier (SPEC §5).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use pollerd::signing::{SignError, WebhookSecret, elements_signature, standard_signature};
use sha2::Sha256;

/// The secret used by the Standard Webhooks reference libraries' "sign function works" test.
const REFERENCE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Tolerance the Standard Webhooks libraries use for `webhook-timestamp`.
const TOLERANCE_SECS: i64 = 5 * 60;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A receiver's verifier written from the Standard Webhooks specification text, sharing no code
/// with pollerd: decode the key after `whsec_`, sign `{id}.{timestamp}.{body}`, accept if any
/// space-separated `v1,<base64>` entry matches (compared in constant time by `verify_slice`), and
/// refuse timestamps further than the tolerance from now.
fn receiver_verifies(
    secret: &str,
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let key = STANDARD
        .decode(
            secret
                .strip_prefix("whsec_")
                .ok_or("secret without whsec_")?,
        )
        .map_err(|_| "secret not base64")?;
    let timestamp_secs: i64 = timestamp.parse().map_err(|_| "timestamp not a number")?;
    if (now - timestamp_secs).abs() > TOLERANCE_SECS {
        return Err("timestamp outside tolerance");
    }
    let mut signed_content = format!("{msg_id}.{timestamp}.").into_bytes();
    signed_content.extend_from_slice(body);
    for entry in signature_header.split(' ') {
        let Some(("v1", encoded)) = entry.split_once(',') else {
            continue;
        };
        let Ok(candidate) = STANDARD.decode(encoded) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(&signed_content);
        if mac.verify_slice(&candidate).is_ok() {
            return Ok(());
        }
    }
    Err("no matching v1 signature")
}

#[test]
fn elements_signature_reproduces_the_spec_vector() {
    assert_eq!(
        elements_signature(
            b"MySecretEventSignatureKey",
            b"<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY>"
        ),
        "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ="
    );
}

#[test]
fn elements_signature_changes_with_key_and_with_body() {
    let body = b"<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY>";
    let reference = "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ=";
    assert_ne!(
        elements_signature(b"MySecretEventSignatureKeY", body),
        reference
    );
    assert_ne!(
        elements_signature(
            b"MySecretEventSignatureKey",
            b"<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY> "
        ),
        reference
    );
}

/// From standard-webhooks/standard-webhooks, libraries/javascript/src/webhook.test.ts
/// ("sign function works"); the PHP and other libraries carry the same vector.
#[test]
fn standard_signature_reproduces_the_reference_libraries_vector() {
    let secret = WebhookSecret::parse(REFERENCE_SECRET).expect("reference secret parses");
    assert_eq!(
        standard_signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

/// From standard-webhooks/standard-webhooks, libraries/rust/src/lib.rs (`test_sign`).
#[test]
fn standard_signature_reproduces_the_rust_reference_library_vector() {
    let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("parses");
    assert_eq!(
        standard_signature(
            &secret,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#
        ),
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    );
}

#[test]
fn an_independent_verifier_accepts_our_signatures_and_rejects_tampering() {
    let secret = WebhookSecret::parse(REFERENCE_SECRET).expect("parses");
    let msg_id = "6f1c2a9e-event";
    let body = br#"{"topic":"instance-1234-connectwisecrmrest-events","id":"6f1c2a9e-event"}"#;
    let now = now_unix();
    let signature = standard_signature(&secret, msg_id, now, body);
    let timestamp = now.to_string();

    assert_eq!(
        receiver_verifies(REFERENCE_SECRET, msg_id, &timestamp, &signature, body, now),
        Ok(())
    );
    // Receivers rotating secrets send several space-separated signatures; ours must still match.
    let rotated = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {signature}");
    assert_eq!(
        receiver_verifies(REFERENCE_SECRET, msg_id, &timestamp, &rotated, body, now),
        Ok(())
    );

    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert_eq!(
        receiver_verifies(
            REFERENCE_SECRET,
            msg_id,
            &timestamp,
            &signature,
            &tampered,
            now
        ),
        Err("no matching v1 signature")
    );
    assert_eq!(
        receiver_verifies(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            msg_id,
            &timestamp,
            &signature,
            body,
            now
        ),
        Err("no matching v1 signature")
    );
    assert_eq!(
        receiver_verifies(
            REFERENCE_SECRET,
            "other-id",
            &timestamp,
            &signature,
            body,
            now
        ),
        Err("no matching v1 signature")
    );

    // Signed correctly, but long ago: a replay.
    let stale = now - TOLERANCE_SECS - 1;
    let stale_signature = standard_signature(&secret, msg_id, stale, body);
    assert_eq!(
        receiver_verifies(
            REFERENCE_SECRET,
            msg_id,
            &stale.to_string(),
            &stale_signature,
            body,
            now
        ),
        Err("timestamp outside tolerance")
    );
    // The same signature is fine when checked at the time it was made: only age refused it.
    assert_eq!(
        receiver_verifies(
            REFERENCE_SECRET,
            msg_id,
            &stale.to_string(),
            &stale_signature,
            body,
            stale
        ),
        Ok(())
    );
}

#[test]
fn secret_parsing_tolerates_missing_padding_and_a_trailing_newline() {
    // 32 key bytes encode to 44 characters ending in one `=`.
    let key = [7u8; 32];
    let padded = format!("whsec_{}", STANDARD.encode(key));
    assert!(padded.ends_with('='));
    let unpadded = padded.trim_end_matches('=').to_string();
    let from_file = format!("{padded}\n");

    let expected = {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(b"id.1.{}");
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    };
    for text in [&padded, &unpadded, &from_file] {
        let secret = WebhookSecret::parse(text).expect("parses");
        assert_eq!(secret.key_len(), 32);
        assert_eq!(standard_signature(&secret, "id", 1, b"{}"), expected);
    }
}

#[test]
fn malformed_secrets_are_refused_with_a_reason() {
    assert_eq!(
        WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
        SignError::MissingPrefix
    );
    assert_eq!(
        WebhookSecret::parse("whsec_").unwrap_err(),
        SignError::EmptyKey
    );
    assert_eq!(
        WebhookSecret::parse("whsec_not base64!").unwrap_err(),
        SignError::InvalidBase64
    );
    let parsed: Result<WebhookSecret, _> = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse();
    assert!(parsed.is_ok());
}

#[test]
fn secrets_never_appear_in_debug_display_or_errors() {
    let secret = WebhookSecret::parse(REFERENCE_SECRET).expect("parses");
    assert_eq!(format!("{secret:?}"), "whsec_***");
    assert_eq!(format!("{secret}"), "whsec_***");
    #[derive(Debug)]
    #[allow(dead_code)] // only read through Debug
    struct Settings {
        webhook_secret: WebhookSecret,
    }
    let shown = format!(
        "{:?}",
        Settings {
            webhook_secret: secret
        }
    );
    assert!(!shown.contains("MfKQ9r8G"), "{shown}");
    assert!(shown.contains("whsec_***"), "{shown}");

    for bad in [
        "hunter2-plain-password",
        "whsec_hunter2-plain-password",
        "whsec_Zm9vYmFy$hunter2",
    ] {
        let error = WebhookSecret::parse(bad).unwrap_err();
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("hunter2"), "{bad:?} leaked into {shown:?}");
            assert!(!shown.contains("Zm9v"), "{bad:?} leaked into {shown:?}");
        }
    }
}
