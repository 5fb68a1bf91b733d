//! Stripe's webhook signatures (`Stripe-Signature`), checked before a pushed event is trusted.
//!
//! Stripe signs each delivery with the endpoint's signing secret (`whsec_…`): the header holds the
//! time it signed (`t=`) and one or more `v1=` signatures, each the hex HMAC-SHA256 of `"{t}.{body}"`
//! (more than one while a secret is being rolled). A delivery is accepted when any `v1` matches one of
//! the secrets configured and `t` is within [`TOLERANCE_SECS`] of now, so a captured delivery cannot
//! be replayed later. The comparison is ring's, in constant time.

use ring::hmac;

/// How far the signing time may be from now, either way (Stripe's libraries use the same 300 s).
pub const TOLERANCE_SECS: i64 = 300;

/// Why a delivery's signature was refused. The texts name the problem, never the secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header: only Stripe's signed deliveries are accepted")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp (t=) or no v1 signature")]
    Malformed,
    #[error("the delivery was signed {age} s from now, past the {TOLERANCE_SECS} s tolerance: a replay, or a clock that is wrong")]
    Stale { age: i64 },
    #[error("no v1 signature matches the configured signing secret: check that the secret is the endpoint's (whsec_…)")]
    Mismatch,
}

/// The signing secrets of a setting: comma-separated (several while one is being rolled), blanks
/// ignored. Each must be a signing secret (`whsec_…`); the error shows no more than its first six
/// characters.
pub fn parse_secrets(setting: &str) -> Result<Vec<String>, String> {
    let secrets: Vec<String> = setting
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if secrets.is_empty() {
        return Err("no signing secret is set: use the webhook endpoint's secret (whsec_…) from Stripe's Dashboard (several, comma-separated, while one is rolled)".into());
    }
    if let Some(bad) = secrets.iter().find(|s| !s.starts_with("whsec_")) {
        let shown: String = bad.chars().take(6).collect();
        return Err(format!("a value starting '{shown}…' is not a signing secret: use the endpoint's secret, which starts with whsec_"));
    }
    Ok(secrets)
}

/// Checks `header` (the `Stripe-Signature` value; `None` when absent) over the raw `body` against each
/// of `secrets`; returns the signing time.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[&str],
    now: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => {
                if let Some(bytes) = decode_hex(sig) {
                    candidates.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let signed = signed_payload(t, body);
    let matches = secrets.iter().any(|secret| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        candidates
            .iter()
            .any(|candidate| hmac::verify(&key, &signed, candidate).is_ok())
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    // After the signature: an unsigned header learns nothing of the tolerance.
    let age = now - t;
    if age.abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale { age });
    }
    Ok(t)
}

/// What Stripe signs: the time, a dot, the body as sent.
fn signed_payload(t: i64, body: &[u8]) -> Vec<u8> {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    signed
}

/// Lower- or upper-case hex to bytes; `None` for anything else (a malformed candidate matches nothing).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
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

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;

    #[test]
    fn secrets_are_read_from_a_comma_separated_setting() {
        assert_eq!(
            parse_secrets(" whsec_a, ,whsec_b ").unwrap(),
            ["whsec_a", "whsec_b"]
        );
        assert!(parse_secrets(" , ")
            .unwrap_err()
            .contains("no signing secret"));
        let e = parse_secrets("whsec_a,sk_live_notasecretforyou").unwrap_err();
        assert!(e.contains("'sk_liv…'") && !e.contains("notasecret"), "{e}");
    }

    /// The header Stripe would send, computed here independently of `verify`.
    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let tag = hmac::sign(&key, &signed_payload(t, body));
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},v1={hex}")
    }

    #[test]
    fn a_signature_by_the_secret_within_the_tolerance_is_accepted() {
        let h = header(SECRET, 1_000, BODY);
        assert_eq!(verify(Some(&h), BODY, &[SECRET], 1_000), Ok(1_000));
        assert_eq!(verify(Some(&h), BODY, &[SECRET], 1_300), Ok(1_000));
        assert_eq!(verify(Some(&h), BODY, &[SECRET], 700), Ok(1_000));
        // Upper-case hex, spaces after commas, a v0 and an unknown scheme beside it.
        let loud = h.replace("v1=", "v0=abcd, v9=x, v1=").to_uppercase();
        let loud = loud
            .replace("T=", "t=")
            .replace("V1=", "v1=")
            .replace("V0=", "v0=");
        assert_eq!(verify(Some(&loud), BODY, &[SECRET], 1_000), Ok(1_000));
    }

    #[test]
    fn while_a_secret_rolls_any_v1_with_any_secret_matches() {
        let old = header("whsec_old", 50, BODY);
        let new = header("whsec_new", 50, BODY);
        let both = format!("{},{}", old, new.split_once(',').unwrap().1);
        assert_eq!(verify(Some(&both), BODY, &["whsec_new"], 60), Ok(50));
        assert_eq!(verify(Some(&both), BODY, &["whsec_old"], 60), Ok(50));
        assert_eq!(
            verify(Some(&new), BODY, &["whsec_old", "whsec_new"], 60),
            Ok(50)
        );
    }

    #[test]
    fn every_kind_of_bad_delivery_is_refused() {
        let good = header(SECRET, 1_000, BODY);
        let cases: Vec<(&str, Option<String>, &[u8], SignatureError)> = vec![
            ("no header", None, BODY, SignatureError::Missing),
            (
                "empty header",
                Some(String::new()),
                BODY,
                SignatureError::Malformed,
            ),
            (
                "no timestamp",
                Some(good.split_once(',').unwrap().1.to_string()),
                BODY,
                SignatureError::Malformed,
            ),
            (
                "no v1",
                Some("t=1000,v0=00".into()),
                BODY,
                SignatureError::Malformed,
            ),
            (
                "timestamp not a number",
                Some(good.replace("t=1000", "t=soon")),
                BODY,
                SignatureError::Malformed,
            ),
            (
                "v1 not hex",
                Some("t=1000,v1=zz".into()),
                BODY,
                SignatureError::Malformed,
            ),
            (
                "another secret",
                Some(header("whsec_other", 1_000, BODY)),
                BODY,
                SignatureError::Mismatch,
            ),
            (
                "body changed",
                Some(good.clone()),
                br#"{"id":"evt_2","object":"event"}"#,
                SignatureError::Mismatch,
            ),
            (
                "timestamp changed",
                Some(good.replace("t=1000", "t=1001")),
                BODY,
                SignatureError::Mismatch,
            ),
            (
                "signature cut short",
                Some(good[..good.len() - 2].to_string()),
                BODY,
                SignatureError::Mismatch,
            ),
            (
                "too old",
                Some(header(SECRET, 699, BODY)),
                BODY,
                SignatureError::Stale { age: 301 },
            ),
            (
                "from the future",
                Some(header(SECRET, 1_301, BODY)),
                BODY,
                SignatureError::Stale { age: -301 },
            ),
        ];
        for (what, h, body, want) in cases {
            assert_eq!(
                verify(h.as_deref(), body, &[SECRET], 1_000),
                Err(want),
                "{what}"
            );
        }
    }

    #[test]
    fn refusals_never_show_the_secret_or_the_body() {
        let h = header("whsec_other", 1_000, BODY);
        let e = verify(Some(&h), BODY, &[SECRET], 1_000).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains(SECRET) && !text.contains("evt_1"), "{text}");
    }
}
