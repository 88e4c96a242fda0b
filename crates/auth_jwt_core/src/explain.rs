//! Step-by-step diagnosis of a token, for operators (`auth_jwt.jwt_explain`). Never fails: each
//! step reports passed, failed, or not checked (because an earlier step it needs failed), with
//! the same safe details as the verifier. Nothing here prints the token, its signature or a key.
//!
//! Claims are examined even when the signature does not verify, since "why is this refused"
//! often has more than one answer; such rows say the payload is unverified.

use crate::claims::Validation;
use crate::error::{Error, Part};
use crate::keys::KeySet;
use crate::pipeline::{self, Report};
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

/// The explanation's side of the pipeline: every step recorded.
struct Record<'o>(&'o mut Vec<Step>);

impl Report for Record<'_> {
    const EVERY_STEP: bool = true;

    fn passed(&mut self, name: &'static str, detail: String) {
        self.0.push(Step { name, ok: Some(true), detail });
    }

    fn failed(&mut self, name: &'static str, e: &Error) {
        self.0.push(Step { name, ok: Some(false), detail: e.detail().to_owned() });
    }

    fn skipped(&mut self, name: &'static str, because: &str) {
        self.0.push(skipped(name, because));
    }
}

/// Every step, in the pipeline's order; the claims when the token passed them all. The steps
/// before the key are `token::parse`'s verdict, split per step; from the key on they are the
/// pipeline's own (`pipeline::key`, `signature`, `payload`, `claims`), which a verification runs.
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
    let rest = ["segments", "header", "algorithm", "key", "signature", "payload"];
    let after_payload = pipeline::CLAIM_STEPS.iter().copied().chain(["uuid claim"]);
    if token.len() > max {
        let why = "the token is too large to decode";
        out.extend(rest.iter().copied().chain(after_payload).map(|n| skipped(n, why)));
        return None;
    }

    let segs: Vec<&str> = token.split('.').collect();
    if segs.len() != 3 || segs.iter().any(|s| s.is_empty()) {
        let why = token::parse(token, usize::MAX).err().map(|e| e.detail().to_owned()).unwrap_or_default();
        out.push(step("segments", Err(why)));
        let why = "not a three-part compact JWS";
        out.extend(rest[1..].iter().copied().chain(after_payload).map(|n| skipped(n, why)));
        return None;
    }
    out.push(step("segments", Ok("three base64url segments".into())));

    // Header and algorithm: token::parse checks both (algorithm first); split its verdict.
    let parsed = token::parse(token, max);
    let header: Option<(Option<String>, Option<crate::Alg>)> = match &parsed {
        Ok(c) => Some((c.header.kid.clone(), Some(c.header.alg))),
        Err(e) => header_only(segs[0], e),
    };
    let mut r = Record(out);
    let signed = match (&parsed, &header) {
        (Err(e), None) => {
            r.0.push(step("header", Err(e.detail().to_owned())));
            rest[2..5].iter().for_each(|n| r.skipped(n, "the header is not usable"));
            false
        }
        (Err(e), Some((kid, None))) => {
            r.0.push(step("header", Ok(header_summary(kid))));
            r.0.push(step("algorithm", Err(e.detail().to_owned())));
            rest[3..5].iter().for_each(|n| r.skipped(n, "the algorithm is not accepted"));
            false
        }
        (Err(e), Some((kid, Some(alg)))) => {
            // Header and algorithm fine; the payload or signature segment failed to decode.
            let h = &Header { alg: *alg, kid: kid.clone() };
            r.0.push(step("header", Ok(header_summary(&h.kid))));
            r.0.push(step("algorithm", Ok(h.alg.describe().to_owned())));
            explained(pipeline::key(keys, h, validation, now, &mut r));
            if e.detail().starts_with("payload") {
                r.skipped("signature", "the payload segment is not canonical base64url");
            } else {
                r.failed("signature", e);
            }
            false
        }
        (Ok(c), _) => {
            r.0.push(step("header", Ok(header_summary(&c.header.kid))));
            r.0.push(step("algorithm", Ok(c.header.alg.describe().to_owned())));
            explained(pipeline::signature(c, keys, validation, now, &mut r)).is_some()
        }
    };

    // The payload and its claims, even when unverified (marked so).
    let claims = match b64::decode(segs[1]) {
        Ok(bytes) => explained(pipeline::payload(bytes, signed, &mut r)),
        Err(e) => {
            r.failed("payload", &Error::malformed(Part::Payload, e));
            None
        }
    };
    let Some(claims) = claims else {
        let why = "the payload is not a JSON object";
        after_payload.for_each(|n| r.skipped(n, why));
        return None;
    };
    let times = explained(pipeline::claims(claims.root(), validation, now, &mut r));
    r.0.push(step(
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
    // What a verification checks all passed (the uuid claim is advice, not a check).
    (signed && times.is_some()).then_some(claims)
}

/// A pipeline step run for an explanation, which records failures instead of returning them.
fn explained<T>(r: Result<Option<T>, Error>) -> Option<T> {
    r.unwrap_or_default()
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
