//! auth_jwt_core: verify Better Auth JWTs (compact JWS signed with EdDSA, ES256, ES512, RS256 or
//! PS256) with no database and no global clock. The PostgreSQL extension is a thin layer over
//! [`verify`].
//!
//! Order of checks, as in `jsonwebtoken`: size, structure and header (algorithm first), then the
//! key, then the signature, and only then the payload and its claims. Nothing in the payload is
//! parsed before the signature over it has verified.

pub mod alg;
pub mod b64;
pub mod claims;
pub mod error;
pub mod explain;
pub mod json;
pub mod jsonb;
pub mod jwks;
pub mod keys;
pub mod pipeline;
pub mod role;
pub mod session;
pub mod token;

pub use alg::Alg;
pub use claims::{Expect, Times, Validation};
pub use error::{Error, ErrorKind, Part};
pub use explain::{explain, explanation, Explanation, Step};
pub use keys::{Key, KeyRow, KeySet, KeyStatus, PublicKey};
pub use role::{role_claim, RoleMap};
pub use session::{
    check_session, session_id, session_marker, sub_claim, update_can_end_session, Session, SessionIdError, SessionRow,
};
pub use token::{Compact, Header};

pub use json::{Doc, Json, Object};

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub kid: Option<String>,
    /// The payload, parsed: a JSON object with no duplicate members, no U+0000 and only
    /// numbers jsonb can store; `claims.text()` is the payload exactly as signed.
    pub claims: Doc,
    pub times: Times,
    /// The last whole Unix second at which this result may be reused: before `exp` + leeway, and
    /// not after the key's grace period ends.
    pub valid_until: i64,
}

/// Verify `token` against `keys` at `now` (Unix seconds).
pub fn verify(token: &str, keys: &KeySet, v: &Validation, now: i64) -> Result<Verified, Error> {
    verify_compact(token::parse(token, v.max_token_size)?, keys, v, now)
}

/// The rest of [`verify`] for a token already split by [`token::parse`] (the extension looks at
/// the `kid` in between to decide whether its key cache must be reloaded).
pub fn verify_compact(mut c: Compact<'_>, keys: &KeySet, v: &Validation, now: i64) -> Result<Verified, Error> {
    let payload = std::mem::take(&mut c.payload);
    match pipeline::run(&c, payload, keys, v, now, &mut pipeline::Verify)? {
        Some((claims, times, valid_until)) => Ok(Verified { kid: c.header.kid, claims, times, valid_until }),
        None => unreachable!("a verification stops at the first failure"),
    }
}

/// The signature over the signing input, under the key selected for the token's algorithm
/// (see [`PublicKey::verify`] for what each algorithm checks).
pub fn verify_signature(c: &Compact<'_>, key: &PublicKey) -> Result<(), Error> {
    key.verify(c.signing_input, &c.signature)
}

/// Do once what each process's first verification would: the CPU feature checks of the curve and
/// hash code (CPUID, which a virtual machine traps, tens of µs in all) and AWS-LC's set-up. A
/// server that preloads auth_jwt calls this in the postmaster, and every backend it forks
/// inherits the result. True if the RFC 8032 test vector verified, as it must.
pub fn warm_up() -> bool {
    aws_lc_rs::init();
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0)).collect()
    };
    // RFC 8032, section 7.1, TEST 1: the empty message.
    let key: [u8; 32] =
        hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").try_into().unwrap_or([0; 32]);
    let sig: [u8; 64] = hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        .try_into()
        .unwrap_or([0; 64]);
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .and_then(|k| k.verify_strict(b"", &ed25519_dalek::Signature::from_bytes(&sig)))
        .is_ok()
}

/// The payload as a strict JSON object whose numbers all fit jsonb.
pub fn parse_payload(payload: String) -> Result<Doc, Error> {
    let claims = Doc::parse(payload).map_err(|e| Error::malformed(Part::Payload, e))?;
    if claims.has_floats() {
        json::check_numeric_scale(claims.text().as_bytes()).map_err(|e| Error::malformed(Part::Payload, e))?;
    }
    Ok(claims)
}

/// Why a token's user-id claim cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UuidClaimError {
    Missing,
    NotAString(&'static str),
    NotCanonical,
}

/// The named claim as a UUID, accepting only the canonical hyphenated 8-4-4-4-12 form
/// (either case), as PostgreSQL prints a `uuid` and Better Auth copies it into the token.
pub fn uuid_claim(claims: Object<'_>, name: &str) -> Result<uuid::Uuid, UuidClaimError> {
    let s = match claims.get(name) {
        None | Some(Json::Null) => return Err(UuidClaimError::Missing),
        Some(Json::String(s)) => s,
        Some(other) => return Err(UuidClaimError::NotAString(other.a_type())),
    };
    let b = s.as_bytes();
    let hyphens_ok = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
    let hex_ok = b.iter().enumerate().all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) || c.is_ascii_hexdigit());
    if !(hyphens_ok && hex_ok) {
        return Err(UuidClaimError::NotCanonical);
    }
    uuid::Uuid::try_parse(s).map_err(|_| UuidClaimError::NotCanonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn warm_up_verifies_the_rfc_8032_vector() {
        assert!(warm_up());
    }

    #[test]
    fn uuid_claim_is_strict() {
        let m = |v: Value| Doc::parse(json!({ "uuid": v }).to_string()).unwrap();
        let id = "112e81d8-d62d-49d6-8a62-7e59b4050b0d";
        assert_eq!(uuid_claim(m(json!(id)).root(), "uuid").unwrap().to_string(), id);
        assert!(uuid_claim(m(json!(id.to_uppercase())).root(), "uuid").is_ok());
        assert_eq!(uuid_claim(m(json!(null)).root(), "uuid"), Err(UuidClaimError::Missing));
        assert_eq!(uuid_claim(m(json!(id)).root(), "other"), Err(UuidClaimError::Missing));
        assert_eq!(uuid_claim(m(json!(5)).root(), "uuid"), Err(UuidClaimError::NotAString("a number")));
        for bad in [
            "112e81d8d62d49d68a627e59b4050b0d",
            "{112e81d8-d62d-49d6-8a62-7e59b4050b0d}",
            "urn:uuid:112e81d8-d62d-49d6-8a62-7e59b4050b0d",
            " 112e81d8-d62d-49d6-8a62-7e59b4050b0d",
            "112e81d8-d62d-49d6-8a62-7e59b4050b0g",
            "112e81d8-d62d-49d6-8a627-e59b4050b0d",
            "",
        ] {
            assert_eq!(uuid_claim(m(json!(bad)).root(), "uuid"), Err(UuidClaimError::NotCanonical), "{bad}");
        }
    }

    #[test]
    fn payload_numbers_must_fit_jsonb_whichever_form_they_take() {
        // The scale check runs only when a number was read as a float; every float form is one.
        for bad in [r#"{"a":1e-20000}"#, r#"{"a":[{"b":0E-16384}]}"#] {
            let e = parse_payload(bad.into()).unwrap_err();
            assert!(e.detail().contains("digits after the decimal point"), "{bad}: {e}");
        }
        for bad in [r#"{"a":1e-99999999999999999999999}"#, r#"{"a":0e99999999999}"#] {
            let e = parse_payload(bad.into()).unwrap_err();
            assert!(e.detail().contains("exponent beyond"), "{bad}: {e}");
        }
        let long = format!(r#"{{"a":0.{}1}}"#, "0".repeat(16383));
        assert!(parse_payload(long).is_err());
        for ok in [r#"{"a":1,"b":-0,"c":"1e-20000"}"#, r#"{"a":123456789012345678901234567890}"#, r#"{"a":1.5e-300}"#] {
            assert!(parse_payload(ok.into()).is_ok(), "{ok}");
        }
    }
}
