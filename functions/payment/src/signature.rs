//! Stripe's webhook signature (`Stripe-Signature`), checked before anything else of a request is
//! read.
//!
//! The header is `t=<unix seconds>,v1=<hex>,v1=<hex>,…` (other schemes such as `v0` may appear and
//! are ignored). Each `v1` is HMAC-SHA256 over `"{t}.{raw body}"` keyed with the endpoint's
//! signing secret (`whsec_…`, used as the bytes it is, prefix included, as Stripe does). While a
//! secret is being rolled, Stripe signs with the old and the new one and sends both `v1` values:
//! the request is genuine when any of them matches. A timestamp more than [`TOLERANCE`] away from
//! now is refused as a replay (Stripe's own libraries use 300 s both ways). The comparison is in
//! constant time, so a forger learns nothing from how long a refusal takes.
//!
//! Nothing here reads the body beyond hashing it, and the errors name what was wrong with the
//! header, never the body.

use ring::hmac;
use time::{Duration, OffsetDateTime};

/// How far a signature's timestamp may be from now (either way).
pub const TOLERANCE: Duration = Duration::seconds(300);

/// A webhook endpoint's signing secret (`whsec_…`). Its `Debug` prints `***`; it has no `Display`.
#[derive(Clone)]
pub struct SigningSecret(hmac::Key);

impl SigningSecret {
    /// Wraps a secret, refusing an empty one.
    pub fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Self(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())))
    }

    /// The `v1` signature of `payload` sent at `timestamp`, in lower-case hex (for tests and the
    /// emulator's checks).
    pub fn sign(&self, timestamp: i64, payload: &[u8]) -> String {
        hex(hmac::sign(&self.0, &signed_bytes(timestamp, payload)).as_ref())
    }

    /// A whole `Stripe-Signature` header for `payload` at `timestamp`.
    pub fn header(&self, timestamp: i64, payload: &[u8]) -> String {
        format!("t={timestamp},v1={}", self.sign(timestamp, payload))
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// Why a request is not a genuine, fresh Stripe webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp, or one that is not a number")]
    NoTimestamp,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoSignature,
    #[error("no v1 signature matches the body")]
    Mismatch,
    #[error("the signature's timestamp is more than 300 s from now")]
    Stale,
}

/// Checks `header` against `payload` as received, with any of `secrets` (the current one first;
/// more than one while a secret is rolled on our side).
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[SigningSecret],
    now: OffsetDateTime,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(unhex(value)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::NoTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let signed = signed_bytes(timestamp, payload);
    // `hmac::verify` compares in constant time (no early exit on the first byte that differs).
    let genuine = secrets
        .iter()
        .any(|secret| signatures.iter().any(|candidate| hmac::verify(&secret.0, &signed, candidate).is_ok()));
    if !genuine {
        return Err(SignatureError::Mismatch);
    }
    // Checked after the HMAC, so a forged header cannot tell a stale timestamp from a bad one.
    if now.unix_timestamp().abs_diff(timestamp) > TOLERANCE.whole_seconds().unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

fn signed_bytes(timestamp: i64, payload: &[u8]) -> Vec<u8> {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(payload);
    signed
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A 64-digit hex string as its 32 bytes; anything else is not a signature.
fn unhex(text: &str) -> Option<Vec<u8>> {
    // Hex digits only: `from_str_radix` alone would also take a sign (`+f`).
    if text.len() != 64 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    fn secret(value: &str) -> SigningSecret {
        SigningSecret::new(value).unwrap()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    fn check(header: &str, body: &[u8]) -> Result<(), SignatureError> {
        verify(Some(header), body, &[secret("whsec_current")], at(NOW))
    }

    #[test]
    fn a_body_signed_with_the_secret_is_genuine() {
        let header = secret("whsec_current").header(NOW, BODY);

        assert_eq!(check(&header, BODY), Ok(()));
    }

    #[test]
    fn it_matches_stripes_documented_scheme() {
        // `printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test`
        let header = "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91";

        assert_eq!(verify(Some(header), b"{}", &[secret("whsec_test")], at(1_700_000_000)), Ok(()));
    }

    #[test]
    fn one_matching_v1_among_several_is_enough_for_a_rolled_secret() {
        let old = secret("whsec_old").sign(NOW, BODY);
        let new = secret("whsec_current").sign(NOW, BODY);
        let header = format!("t={NOW},v1={old},v0=ignored,v1={new}");

        assert_eq!(check(&header, BODY), Ok(()));
        assert_eq!(
            verify(Some(&format!("t={NOW},v1={old}")), BODY, &[secret("whsec_current"), secret("whsec_old")], at(NOW)),
            Ok(()),
            "our side may hold two secrets as well"
        );
    }

    #[test]
    fn a_signature_made_with_another_secret_is_forged() {
        let header = secret("whsec_attacker").header(NOW, BODY);

        assert_eq!(check(&header, BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_tampered_body_does_not_match_its_signature() {
        let header = secret("whsec_current").header(NOW, BODY);

        assert_eq!(
            check(&header, br#"{"id":"evt_1","type":"payment_intent.canceled"}"#),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_signature_older_or_newer_than_five_minutes_is_stale() {
        let old = secret("whsec_current").header(NOW - 301, BODY);
        let future = secret("whsec_current").header(NOW + 301, BODY);
        let edge = secret("whsec_current").header(NOW - 300, BODY);

        assert_eq!(check(&old, BODY), Err(SignatureError::Stale));
        assert_eq!(check(&future, BODY), Err(SignatureError::Stale));
        assert_eq!(check(&edge, BODY), Ok(()));
    }

    #[test]
    fn a_missing_or_malformed_header_is_refused() {
        let v1 = secret("whsec_current").sign(NOW, BODY);

        assert_eq!(verify(None, BODY, &[secret("whsec_current")], at(NOW)), Err(SignatureError::Missing));
        assert_eq!(check(&format!("v1={v1}"), BODY), Err(SignatureError::NoTimestamp));
        assert_eq!(check(&format!("t=soon,v1={v1}"), BODY), Err(SignatureError::NoTimestamp));
        assert_eq!(check(&format!("t={NOW}"), BODY), Err(SignatureError::NoSignature));
        assert_eq!(check(&format!("t={NOW},v1=zz{}", &v1[2..]), BODY), Err(SignatureError::NoSignature));
        assert_eq!(check(&format!("t={NOW},v1={}", &v1[..62]), BODY), Err(SignatureError::NoSignature));
        assert_eq!(check("garbage", BODY), Err(SignatureError::NoTimestamp));
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        assert_eq!(format!("{:?}", secret("whsec_do_not_print")), "SigningSecret(***)");
        assert!(SigningSecret::new("  ").is_none());
    }
}
