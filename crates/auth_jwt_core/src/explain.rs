//! Step-by-step diagnosis of a token, for operators (`auth_jwt.jwt_explain`). Never fails: each
//! step reports passed, failed, or not checked (because an earlier step it needs failed), with
//! the same safe details as the verifier. Nothing here prints the token, its signature or a key.
//!
//! Claims are examined even when the signature does not verify, since "why is this refused"
//! often has more than one answer; such rows say the payload is unverified.

use crate::claims::{self, Expect, Validation};
use crate::error::{iso8601, Error, Part};
use crate::keys::KeySet;
use crate::token::{self, Header};
use crate::{b64, json, uuid_claim, UuidClaimError};

/// One row of the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    /// None: not checked, because a step it depends on failed.
    pub ok: Option<bool>,
    pub detail: String,
}

fn step(name: &'static str, r: Result<String, String>) -> Step {
    match r {
        Ok(d) => Step { name, ok: Some(true), detail: d },
        Err(d) => Step { name, ok: Some(false), detail: d },
    }
}

fn skipped(name: &'static str, because: &str) -> Step {
    Step { name, ok: None, detail: format!("not checked: {because}") }
}

const CLAIM_STEPS: [&str; 6] = ["payload", "exp", "nbf", "iat", "issuer", "audience"];

/// An explanation: every step, and the verified claims when the token passed them all (so that a
/// caller's further step, the session check, needs no second verification).
pub struct Explanation {
    pub steps: Vec<Step>,
    pub verified: Option<crate::Doc>,
}

/// Explain `token` against `keys` at `now`; `uuid_claim_name` is the claim `jwt_claim_uuid()`
/// reads (its step is advice: a token without it still verifies).
pub fn explain(token: &str, keys: &KeySet, validation: &Validation, now: i64, uuid_claim_name: &str) -> Vec<Step> {
    explanation(token, keys, validation, now, uuid_claim_name).steps
}

/// [`explain`], with the verified claims.
pub fn explanation(
    token: &str,
    keys: &KeySet,
    validation: &Validation,
    now: i64,
    uuid_claim_name: &str,
) -> Explanation {
    let mut out = Vec::new();
    let verified = steps(token, keys, validation, now, uuid_claim_name, &mut out);
    Explanation { steps: out, verified }
}

fn steps(
    token: &str,
    keys: &KeySet,
    validation: &Validation,
    now: i64,
    uuid_claim_name: &str,
    out: &mut Vec<Step>,
) -> Option<crate::Doc> {
    let max = validation.max_token_size;
    out.push(step(
        "size",
        if token.len() <= max {
            Ok(format!("{} bytes (limit {max})", token.len()))
        } else {
            Err(format!("{} bytes, over the limit of {max} (auth_jwt.max_token_size)", token.len()))
        },
    ));
    let rest = [
        "segments",
        "header",
        "algorithm",
        "key",
        "signature",
        "payload",
        "exp",
        "nbf",
        "iat",
        "issuer",
        "audience",
        "uuid claim",
    ];
    if token.len() > max {
        out.extend(rest.iter().map(|n| skipped(n, "the token is too large to decode")));
        return None;
    }

    let segs: Vec<&str> = token.split('.').collect();
    if segs.len() != 3 || segs.iter().any(|s| s.is_empty()) {
        let why = token::parse(token, usize::MAX).err().map(|e| e.detail().to_owned()).unwrap_or_default();
        out.push(step("segments", Err(why)));
        out.extend(rest[1..].iter().map(|n| skipped(n, "not a three-part compact JWS")));
        return None;
    }
    out.push(step("segments", Ok("three base64url segments".into())));

    // Header and algorithm: token::parse checks both (algorithm first); split its verdict.
    let parsed = token::parse(token, max);
    let header: Option<(Option<String>, Option<crate::Alg>)> = match &parsed {
        Ok(c) => Some((c.header.kid.clone(), Some(c.header.alg))),
        Err(e) => header_only(segs[0], e),
    };
    match (&parsed, &header) {
        (Err(e), None) => {
            out.push(step("header", Err(e.detail().to_owned())));
            out.extend(rest[2..5].iter().map(|n| skipped(n, "the header is not usable")));
        }
        (Err(e), Some((kid, None))) => {
            out.push(step("header", Ok(header_summary(kid))));
            out.push(step("algorithm", Err(e.detail().to_owned())));
            out.extend(rest[3..5].iter().map(|n| skipped(n, "the algorithm is not accepted")));
        }
        (Err(e), Some((kid, Some(alg)))) => {
            let h = &Header { alg: *alg, kid: kid.clone() };
            // Header and algorithm fine; the payload or signature segment failed to decode.
            out.push(step("header", Ok(header_summary(&h.kid))));
            out.push(step("algorithm", Ok(h.alg.describe().to_owned())));
            out.push(key_step(keys, h, validation, now).0);
            if e.detail().starts_with("payload") {
                out.push(skipped("signature", "the payload segment is not canonical base64url"));
            } else {
                out.push(step("signature", Err(e.detail().to_owned())));
            }
        }
        (Ok(c), _) => {
            out.push(step("header", Ok(header_summary(&c.header.kid))));
            out.push(step("algorithm", Ok(c.header.alg.describe().to_owned())));
            let (key_row, key) = key_step(keys, &c.header, validation, now);
            out.push(key_row);
            out.push(match key {
                None => skipped("signature", "no usable key"),
                Some(key) => step(
                    "signature",
                    crate::verify_signature(c, key)
                        .map(|_| {
                            let spec = key.alg().spec();
                            match spec.verifier {
                                crate::alg::Verifier::Ed25519 => format!("valid ({})", spec.library),
                                _ => format!("valid ({}, {})", spec.name, spec.library),
                            }
                        })
                        .map_err(|e| e.detail().to_owned()),
                ),
            });
        }
    }
    let verified = out.iter().any(|s| s.name == "signature" && s.ok == Some(true));

    // The payload and its claims, even when unverified (marked so).
    let claims = match payload(segs[1]) {
        Ok(m) => {
            let note =
                if verified { "a JSON object" } else { "a JSON object (unverified: the signature did not pass)" };
            out.push(step("payload", Ok(note.into())));
            Some(m)
        }
        Err(e) => {
            out.push(step("payload", Err(e.detail().to_owned())));
            None
        }
    };
    let Some(claims) = claims else {
        out.extend(CLAIM_STEPS[1..].iter().map(|n| skipped(n, "the payload is not a JSON object")));
        out.push(skipped("uuid claim", "the payload is not a JSON object"));
        return None;
    };
    out.push(step(
        "exp",
        claims::check_exp(claims.root(), validation, now)
            .map(|e| format!("{} (valid for another {}s)", iso8601(e.floor() as i64), (e - now as f64).floor() as i64))
            .map_err(detail),
    ));
    out.push(step(
        "nbf",
        claims::check_nbf(claims.root(), validation, now)
            .map(|n| n.map_or("absent".into(), |n| iso8601(n.floor() as i64)))
            .map_err(detail),
    ));
    out.push(step(
        "iat",
        claims::check_iat(claims.root(), validation, now)
            .map(|i| i.map_or("absent".into(), |i| iso8601(i.floor() as i64)))
            .map_err(detail),
    ));
    out.push(step(
        "issuer",
        claims::check_iss(claims.root(), validation)
            .map(|_| match &validation.issuer {
                Expect::Any => "not checked (auth_jwt.issuer is * or empty)".into(),
                Expect::Exactly(_) => "matches auth_jwt.issuer".into(),
            })
            .map_err(detail),
    ));
    out.push(step(
        "audience",
        claims::check_aud(claims.root(), validation)
            .map(|_| match &validation.audience {
                Expect::Any => "not checked (auth_jwt.audience is * or empty)".into(),
                Expect::Exactly(_) => "contains auth_jwt.audience".into(),
            })
            .map_err(detail),
    ));
    // Everything a verification checks passed (the uuid claim below is advice, not a check).
    let passed = verified && out.iter().all(|s| s.ok != Some(false));
    out.push(step(
        "uuid claim",
        match uuid_claim(claims.root(), uuid_claim_name) {
            Ok(_) => Ok(format!("\"{uuid_claim_name}\" is a canonical UUID")),
            Err(UuidClaimError::Missing) => Err(format!(
                "no \"{uuid_claim_name}\" claim (jwt_claim_uuid() would fail; jwt_verify() does not need it)"
            )),
            Err(UuidClaimError::NotAString(t)) => Err(format!("\"{uuid_claim_name}\" is {t}, not a string")),
            Err(UuidClaimError::NotCanonical) => Err(format!("\"{uuid_claim_name}\" is not a canonical UUID")),
        },
    ));
    passed.then_some(claims)
}

fn detail(e: Error) -> String {
    e.detail().to_owned()
}

fn header_summary(kid: &Option<String>) -> String {
    match kid {
        Some(k) => format!("a JSON object; kid \"{}\"", crate::error::printable(k, 64)),
        None => "a JSON object; no kid".into(),
    }
}

/// The header's kid and algorithm alone, when token::parse failed for a reason that may lie
/// after them (the algorithm is None when it is not one auth_jwt verifies).
fn header_only(seg: &str, e: &Error) -> Option<(Option<String>, Option<crate::Alg>)> {
    if e.kind() == crate::ErrorKind::Malformed && e.detail().starts_with("header") {
        return None;
    }
    let bytes = b64::decode(seg).ok()?;
    let map = json::parse_object(&bytes).ok()?;
    let alg = crate::Alg::from_name(map.get("alg")?.as_str()?);
    let kid = map.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
    Some((kid, alg))
}

fn key_step<'k>(keys: &'k KeySet, h: &Header, v: &Validation, now: i64) -> (Step, Option<&'k crate::PublicKey>) {
    match keys.select(h.kid.as_deref(), h.alg, now, v.key_grace_period) {
        Ok((key, until)) => {
            let d = match until {
                Some(u) => format!("found: {}; usable until {}", key.describe(), iso8601(u)),
                None => format!("found: {}; does not expire", key.describe()),
            };
            (step("key", Ok(d)), Some(key))
        }
        Err(e) => (step("key", Err(e.detail().to_owned())), None),
    }
}

fn payload(seg: &str) -> Result<crate::Doc, Error> {
    let bytes = b64::decode(seg).map_err(|e| Error::malformed(Part::Payload, e))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::malformed(Part::Payload, "is not UTF-8"))?;
    crate::parse_payload(text)
}
