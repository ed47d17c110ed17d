//! Signatures of webhook posts, and the secrets they are made with.
//!
//! A post carries `X-Seatflow-Timestamp` (Unix seconds when it was signed) and
//! `X-Seatflow-Signature`: the lowercase hex HMAC-SHA256, keyed with the webhook's secret, of
//! the timestamp's decimal text followed directly by the body's bytes. A receiver recomputes it
//! and compares in constant time, and rejects a timestamp too far from its clock (a replay).

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Header names of a signed post.
pub const SIGNATURE_HEADER: &str = "X-Seatflow-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Seatflow-Timestamp";
pub const DELIVERY_HEADER: &str = "X-Seatflow-Delivery";
pub const TOPIC_HEADER: &str = "X-Seatflow-Event";

/// The signature of `body` posted at `timestamp` (Unix seconds) with `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(body);
    hex(context.sign().as_ref())
}

/// Whether `signature` (hex) is the one of `body` at `timestamp`, compared in constant time.
pub fn verify(secret: &str, timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(tag) = unhex(signature) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = timestamp.to_string().into_bytes();
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &tag).is_ok()
}

/// A new secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source works");
    format!("whsec_{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hmac_of_timestamp_then_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let signed = signature("Jefe", 0, b"what do ya want for nothing?");
        // The timestamp's text comes first: "0" + data.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let expected = hex(hmac::sign(&key, b"0what do ya want for nothing?").as_ref());
        assert_eq!(signed, expected);
        assert_eq!(
            signature("Jefe", 0, b"").len(),
            64,
            "32 bytes of lowercase hex"
        );
    }

    #[test]
    fn a_changed_body_timestamp_or_key_does_not_verify() {
        let body = br#"{"type":"reservation.held"}"#;
        let signed = signature("secret-1", 1_700_000_000, body);
        assert!(verify("secret-1", 1_700_000_000, body, &signed));
        assert!(!verify("secret-1", 1_700_000_001, body, &signed));
        assert!(!verify("secret-2", 1_700_000_000, body, &signed));
        assert!(!verify(
            "secret-1",
            1_700_000_000,
            br#"{"type":"x"}"#,
            &signed
        ));
        assert!(!verify("secret-1", 1_700_000_000, body, "zz"));
    }

    #[test]
    fn secrets_are_long_and_new_each_time() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), "whsec_".len() + 64);
    }
}
