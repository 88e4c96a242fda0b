//! The verification steps after a token is split into its parts, written once. A verification
//! ([`Verify`]) runs them and stops at the first failure; an explanation (`explain`) runs every
//! step it can and records each one, passed, failed or not checked. The order is jsonwebtoken's:
//! the key the header names, then the signature, and nothing of the payload before the signature
//! over it has verified (an explanation goes on to show the claims of a token whose signature
//! failed, and says they are unverified). Claims: the types of `exp`, `nbf` and `iat` before any
//! date rule (a string `exp` is a type error even when a date check would also fail), then the
//! dates, `iss`, `aud`, and `sub`.

use crate::claims::{self, Expect, Times, Validation};
use crate::error::{iso8601, Error, Part};
use crate::json::{Json, Object};
use crate::keys::{KeySet, PublicKey};
use crate::token::{Compact, Header};
use crate::Doc;

/// Where a run of the steps reports.
pub trait Report {
    /// Every step runs (an explanation), or the first failure ends the run (a verification).
    const EVERY_STEP: bool;
    /// A step passed, and how (built only when every step is reported).
    fn passed(&mut self, step: &'static str, detail: String);
    fn failed(&mut self, step: &'static str, e: &Error);
    /// A step that depends on one that failed.
    fn skipped(&mut self, step: &'static str, because: &str);
}

/// A verification: nothing is recorded, and the first failure is the result.
pub struct Verify;

impl Report for Verify {
    const EVERY_STEP: bool = false;
    fn passed(&mut self, _: &'static str, _: String) {}
    fn failed(&mut self, _: &'static str, _: &Error) {}
    fn skipped(&mut self, _: &'static str, _: &str) {}
}

/// One step: its value; or, when it failed, the error (a verification) or None after recording
/// it (an explanation).
fn step<R: Report, T>(
    r: &mut R,
    name: &'static str,
    result: Result<T, Error>,
    detail: impl FnOnce(&T) -> String,
) -> Result<Option<T>, Error> {
    match result {
        Ok(v) => {
            if R::EVERY_STEP {
                r.passed(name, detail(&v));
            }
            Ok(Some(v))
        }
        Err(e) if R::EVERY_STEP => {
            r.failed(name, &e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Every step of a token already split by `token::parse`: the claims and the last second its
/// verification holds, or None when an explanation found a step that failed.
pub fn run<R: Report>(
    c: &Compact<'_>,
    payload: Vec<u8>,
    keys: &KeySet,
    v: &Validation,
    now: i64,
    r: &mut R,
) -> Result<Option<(Doc, Times, i64)>, Error> {
    let signed = signature(c, keys, v, now, r)?;
    let Some(claims) = self::payload(payload, signed.is_some(), r)? else {
        skip_claims(r, "the payload is not a JSON object");
        return Ok(None);
    };
    let times = self::claims(claims.root(), v, now, r)?;
    Ok(match (signed, times) {
        (Some(key_until), Some(times)) => {
            let token_until = claims::last_valid_second(times.exp, v.leeway);
            let until = key_until.map_or(token_until, |k| k.min(token_until));
            Some((claims, times, until))
        }
        _ => None,
    })
}

/// The key the header names, for the token's algorithm: the key, and until when it may be used.
pub fn key<'k, R: Report>(
    keys: &'k KeySet,
    h: &Header,
    v: &Validation,
    now: i64,
    r: &mut R,
) -> Result<Option<(&'k PublicKey, Option<i64>)>, Error> {
    step(r, "key", keys.select(h.kid.as_deref(), h.alg, now, v.key_grace_period), |(key, until)| match until {
        Some(u) => format!("found: {}; usable until {}", key.describe(), iso8601(*u)),
        None => format!("found: {}; does not expire", key.describe()),
    })
}

/// The key, then the signature under it: Some(until when the key may be used) when it verified.
pub fn signature<R: Report>(
    c: &Compact<'_>,
    keys: &KeySet,
    v: &Validation,
    now: i64,
    r: &mut R,
) -> Result<Option<Option<i64>>, Error> {
    let Some((key, until)) = key(keys, &c.header, v, now, r)? else {
        r.skipped("signature", "no usable key");
        return Ok(None);
    };
    let verified = step(r, "signature", crate::verify_signature(c, key), |_| {
        let spec = key.alg().spec();
        match spec.verifier {
            crate::alg::Verifier::Ed25519 => format!("valid ({})", spec.library),
            _ => format!("valid ({}, {})", spec.name, spec.library),
        }
    })?;
    Ok(verified.map(|_| until))
}

/// The payload, decoded: a UTF-8 JSON object whose numbers all fit jsonb.
pub fn payload<R: Report>(bytes: Vec<u8>, signed: bool, r: &mut R) -> Result<Option<Doc>, Error> {
    let parsed = String::from_utf8(bytes)
        .map_err(|e| {
            Error::malformed(Part::Payload, format!("is not UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
        })
        .and_then(crate::parse_payload);
    step(r, "payload", parsed, |_| {
        if signed { "a JSON object" } else { "a JSON object (unverified: the signature did not pass)" }.to_owned()
    })
}

/// The steps after the payload, not checked because of `why`.
pub fn skip_claims<R: Report>(r: &mut R, why: &str) {
    for name in CLAIM_STEPS {
        r.skipped(name, why);
    }
}

/// The claim steps, in order.
pub const CLAIM_STEPS: [&str; 6] = ["exp", "nbf", "iat", "issuer", "audience", "sub"];

/// The registered claims at `now`: their times when every rule passed.
pub fn claims<R: Report>(root: Object<'_>, v: &Validation, now: i64, r: &mut R) -> Result<Option<Times>, Error> {
    let (exp, nbf, iat) =
        (claims::numeric_date(root, "exp"), claims::numeric_date(root, "nbf"), claims::numeric_date(root, "iat"));
    if !R::EVERY_STEP {
        // Types before dates, as the module comment says.
        for t in [&exp, &nbf, &iat] {
            if let Err(e) = t {
                return Err(e.clone());
            }
        }
    }
    let exp = step(r, "exp", exp.and_then(|e| claims::exp_rule(e, v, now)), |e| {
        format!("{} (valid for another {}s)", iso8601(e.floor() as i64), (e - now as f64).floor() as i64)
    })?;
    let nbf = step(r, "nbf", nbf.and_then(|n| claims::nbf_rule(n, v, now)), |n| {
        n.map_or("absent".into(), |n| iso8601(n.floor() as i64))
    })?;
    let iat = step(r, "iat", iat.and_then(|i| claims::iat_rule(i, v, now)), |i| {
        i.map_or("absent".into(), |i| iso8601(i.floor() as i64))
    })?;
    let iss = step(r, "issuer", claims::check_iss(root, v), |_| match &v.issuer {
        Expect::Any => "not checked (auth_jwt.issuer is * or empty)".into(),
        Expect::Exactly(_) => "matches auth_jwt.issuer".into(),
    })?;
    let aud = step(r, "audience", claims::check_aud(root, v), |_| match &v.audience {
        Expect::Any => "not checked (auth_jwt.audience is * or empty)".into(),
        Expect::Exactly(_) => "contains auth_jwt.audience".into(),
    })?;
    let sub = step(r, "sub", claims::check_sub(root), |_| match root.get("sub") {
        Some(Json::String(_)) => "a string".into(),
        _ => "absent".into(),
    })?;
    Ok(match (exp, nbf, iat, iss, aud, sub) {
        (Some(exp), Some(nbf), Some(iat), Some(()), Some(()), Some(())) => Some(Times { exp, nbf, iat }),
        _ => None,
    })
}

/// The claim steps alone, as a verification runs them: the registered claims' times at `now`, or
/// the first rule they break.
pub fn validate(claims: Object<'_>, v: &Validation, now: i64) -> Result<Times, Error> {
    match self::claims(claims, v, now, &mut Verify)? {
        Some(times) => Ok(times),
        None => unreachable!("a verification stops at the first failure"),
    }
}
