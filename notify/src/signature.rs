//! The webhook receiver's signature: `X-Vigil-Signature: t=<unix seconds>,v1=<hex>`, where the
//! hex is HMAC-SHA256 under the receiver's secret of `"<t>.<body>"`.
//!
//! Signing the time with the body lets a receiver refuse an old request replayed by someone
//! who captured it: it checks that `t` is recent (5 minutes is the suggested tolerance), and
//! drops a repeat of a recent one by its `Idempotency-Key`. [`verify`] is that check, for
//! tests and for receivers written in Rust; the README shows the same in Python.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header the signature travels in.
pub const HEADER: &str = "X-Vigil-Signature";

/// The tolerance the README suggests for `t`.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature is {age_seconds} s away from now, over the tolerance")]
    Stale { age_seconds: i64 },
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest.iter() {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("t={timestamp},v1={hex}")
}

/// Checks `header` (the `X-Vigil-Signature` value) against `body` and the secret, and that its
/// time is within `tolerance` of `now` (unix seconds). Several `v1=` entries are accepted, any
/// one matching, so that a secret can be rotated. The comparison takes constant time.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(value.parse().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", value)) => signatures.push(decode_hex(value)?),
            // Other schemes a later version may add.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let age_seconds = now.saturating_sub(timestamp);
    let tolerance_seconds = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if age_seconds.unsigned_abs() > tolerance_seconds.unsigned_abs() {
        return Err(SignatureError::Stale { age_seconds });
    }
    let expected = mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|signature| expected.clone().verify_slice(signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, SignatureError> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return Err(SignatureError::Malformed);
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| SignatureError::Malformed))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-test";
    const NOW: i64 = 1_796_000_000;

    #[test]
    fn a_fresh_signature_over_the_same_body_verifies() {
        let body = br#"{"type":"vigil.notification"}"#;
        let header = sign(SECRET, NOW, body);
        assert!(header.starts_with(&format!("t={NOW},v1=")), "{header}");
        assert_eq!(header.len(), format!("t={NOW},v1=").len() + 64);
        assert_eq!(
            verify(SECRET, &header, body, NOW + 60, DEFAULT_TOLERANCE),
            Ok(())
        );
        // A second v1 (a rotated secret's) does not hide the matching one.
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(
            verify(SECRET, &rotated, body, NOW, DEFAULT_TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn a_known_vector_matches_an_independent_hmac() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key",b"1.body",hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"key", 1, b"body"),
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
    }

    #[test]
    fn tampered_stale_or_foreign_signatures_are_refused() {
        let body = br#"{"kind":"firing"}"#;
        let header = sign(SECRET, NOW, body);
        assert_eq!(
            verify(
                SECRET,
                &header,
                br#"{"kind":"resolved"}"#,
                NOW,
                DEFAULT_TOLERANCE
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret", &header, body, NOW, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &header, body, NOW + 301, DEFAULT_TOLERANCE),
            Err(SignatureError::Stale { age_seconds: 301 })
        );
        assert!(matches!(
            verify(SECRET, &header, body, NOW - 301, DEFAULT_TOLERANCE),
            Err(SignatureError::Stale { .. })
        ));
        // The time is signed too: moving it forward breaks the signature.
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 100));
        assert_eq!(
            verify(SECRET, &moved, body, NOW + 100, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        for malformed in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=0g", "garbage"] {
            assert_eq!(
                verify(SECRET, malformed, body, NOW, DEFAULT_TOLERANCE),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
    }
}
