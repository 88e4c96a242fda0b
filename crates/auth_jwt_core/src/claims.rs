//! Registered-claim validation (RFC 7519 section 4.1) with an injected clock.
//!
//! `exp` is required; `exp`, `nbf` and `iat` are NumericDates: any finite JSON number of seconds,
//! fractional or with an exponent, as RFC 7519 and Better Auth's own verifier (jose) read them;
//! a string "9999999999" is a type error, not a date. The clock is whole seconds (the real time
//! lies somewhere in [now, now + 1)), so every comparison is made the way that can only shorten
//! validity: a token is valid while the time is before `exp` + leeway (at `exp` exactly it has
//! expired), and `nbf`/`iat` may not be later than now + leeway. `iss` must equal the configured
//! issuer and `aud` (a string or an array of strings) must contain the configured audience,
//! unless the configuration says [`Expect::Any`].

use crate::error::{iso8601, Error, ErrorKind};
use crate::json::{Json, Object};

/// What a string claim must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The check is explicitly off (the setting is `*`).
    Any,
    Exactly(String),
}

/// Everything claim validation and key selection depend on, besides the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub issuer: Expect,
    pub audience: Expect,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: i64,
    /// Seconds a key keeps verifying after its `expiresAt`.
    pub key_grace_period: i64,
    /// Bytes; longer tokens are rejected before any decoding.
    pub max_token_size: usize,
}

impl Validation {
    /// Better Auth's defaults for an app at `origin` (issuer and audience are both the origin).
    pub fn for_origin(origin: &str) -> Validation {
        Validation {
            issuer: Expect::Exactly(origin.to_owned()),
            audience: Expect::Exactly(origin.to_owned()),
            leeway: 30,
            key_grace_period: 30 * 24 * 3600,
            max_token_size: 16 * 1024,
        }
    }
}

/// The time claims, once checked (seconds, as signed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Times {
    pub exp: f64,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
}

pub(crate) fn numeric_date(claims: Object<'_>, name: &str) -> Result<Option<f64>, Error> {
    match claims.get(name) {
        None => Ok(None),
        // The parser holds only finite numbers; i64/u64 convert exactly enough (2^53 seconds is
        // 285 million years).
        Some(Json::Number(n)) => Ok(Some(n.as_f64())),
        Some(other) => Err(Error::claim(name, format!("must be a JSON number (NumericDate), not {}", other.a_type()))),
    }
}

/// The last whole second at which a token with this `exp` is valid: the time must be before
/// `exp` + leeway, and at whole second `now` it may be as late as `now` + 0.999...
pub fn last_valid_second(exp: f64, leeway: i64) -> i64 {
    // `as` saturates, so absurd dates stay absurd rather than wrapping.
    ((exp + leeway as f64).floor() as i64).saturating_sub(1)
}

/// A date for a message: ISO 8601 of its whole second, saturating far outside the calendar.
fn date(t: f64) -> String {
    iso8601(t.floor() as i64)
}

/// `exp`: required, and not reached (with leeway). Returns it.
pub(crate) fn exp_rule(exp: Option<f64>, v: &Validation, now: i64) -> Result<f64, Error> {
    let exp = exp.ok_or_else(|| Error::claim("exp", "is required"))?;
    if now > last_valid_second(exp, v.leeway) {
        return Err(Error::new(
            ErrorKind::Expired,
            format!(
                "the token expired {}s ago (exp {}, now {}, leeway {}s)",
                (now as f64 - exp).floor().max(0.0) as i64,
                date(exp),
                iso8601(now),
                v.leeway
            ),
        ));
    }
    Ok(exp)
}

/// `nbf`: optional; not later than now + leeway.
pub(crate) fn nbf_rule(nbf: Option<f64>, v: &Validation, now: i64) -> Result<Option<f64>, Error> {
    if let Some(nbf) = nbf {
        if nbf > now as f64 + v.leeway as f64 {
            return Err(Error::new(
                ErrorKind::NotYetValid,
                format!(
                    "the token is not valid for another {}s (nbf {}, now {}, leeway {}s)",
                    (nbf - now as f64).ceil() as i64,
                    date(nbf),
                    iso8601(now),
                    v.leeway
                ),
            ));
        }
    }
    Ok(nbf)
}

/// `iat`: optional; not later than now + leeway.
pub(crate) fn iat_rule(iat: Option<f64>, v: &Validation, now: i64) -> Result<Option<f64>, Error> {
    if let Some(iat) = iat {
        if iat > now as f64 + v.leeway as f64 {
            return Err(Error::new(
                ErrorKind::NotYetValid,
                format!(
                    "the token was issued {}s in the future (iat {}, now {}, leeway {}s); check the clocks",
                    (iat - now as f64).ceil() as i64,
                    date(iat),
                    iso8601(now),
                    v.leeway
                ),
            ));
        }
    }
    Ok(iat)
}

/// `iss`: equal to the configured issuer, unless that check is off.
pub fn check_iss(claims: Object<'_>, v: &Validation) -> Result<(), Error> {
    if let Expect::Exactly(want) = &v.issuer {
        match claims.get("iss") {
            Some(Json::String(iss)) if iss == want => {}
            Some(Json::String(_)) => return Err(Error::claim("iss", "does not match auth_jwt.issuer")),
            Some(other) => return Err(Error::claim("iss", format!("must be a string, not {}", other.a_type()))),
            None => return Err(Error::claim("iss", "is required (auth_jwt.issuer is set)")),
        }
    }
    Ok(())
}

/// `aud`: a string, or an array of strings, that contains the configured audience.
pub fn check_aud(claims: Object<'_>, v: &Validation) -> Result<(), Error> {
    if let Expect::Exactly(want) = &v.audience {
        match claims.get("aud") {
            Some(Json::String(aud)) if aud == want => {}
            Some(Json::String(_)) => return Err(Error::claim("aud", "does not contain auth_jwt.audience")),
            Some(Json::Array(auds)) => {
                if let Some(bad) = auds.iter().find(|a| a.as_str().is_none()) {
                    return Err(Error::claim("aud", format!("must hold only strings, not {}", bad.a_type())));
                }
                if !auds.iter().any(|a| a.as_str() == Some(want)) {
                    return Err(Error::claim("aud", "does not contain auth_jwt.audience"));
                }
            }
            Some(other) => {
                return Err(Error::claim(
                    "aud",
                    format!("must be a string or an array of strings, not {}", other.a_type()),
                ))
            }
            None => return Err(Error::claim("aud", "is required (auth_jwt.audience is set)")),
        }
    }
    Ok(())
}

/// `sub`: optional; a string (Better Auth's user id).
pub fn check_sub(claims: Object<'_>) -> Result<(), Error> {
    match claims.get("sub") {
        Some(sub) if sub.as_str().is_none() => {
            Err(Error::claim("sub", format!("must be a string, not {}", sub.a_type())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::validate;
    use crate::Doc;
    use serde_json::{json, Map, Value};

    const NOW: i64 = 1_800_000_000;

    fn v() -> Validation {
        Validation::for_origin("https://app.example.com")
    }

    fn claims(extra: Value) -> Doc {
        let mut m: Map<String, Value> = json!({"iss":"https://app.example.com","aud":"https://app.example.com","exp":NOW + 900,"iat":NOW,"sub":"u1"})
            .as_object()
            .cloned()
            .unwrap();
        for (k, val) in extra.as_object().unwrap() {
            if val.is_null() {
                m.remove(k);
            } else {
                m.insert(k.clone(), val.clone());
            }
        }
        Doc::parse(Value::Object(m).to_string()).unwrap()
    }

    fn check(extra: Value) -> Result<Times, Error> {
        validate(claims(extra).root(), &v(), NOW)
    }

    #[test]
    fn accepts_a_good_token() {
        assert_eq!(check(json!({})).unwrap(), Times { exp: (NOW + 900) as f64, nbf: None, iat: Some(NOW as f64) });
        assert!(check(json!({"aud": ["x", "https://app.example.com"]})).is_ok());
        assert!(check(json!({"nbf": NOW})).is_ok());
    }

    #[test]
    fn exp_is_required_and_checked_with_leeway() {
        assert!(check(json!({"exp": null})).unwrap_err().detail().contains("\"exp\" is required"));
        assert!(check(json!({"exp": NOW - 29})).is_ok(), "within leeway");
        let e = check(json!({"exp": NOW - 30})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Expired, "at exp + leeway exactly the token has expired");
        let mut strict = v();
        strict.leeway = 0;
        assert!(validate(claims(json!({"exp": NOW + 1})).root(), &strict, NOW).is_ok());
        assert_eq!(validate(claims(json!({"exp": NOW})).root(), &strict, NOW).unwrap_err().kind(), ErrorKind::Expired);
    }

    #[test]
    fn numeric_dates_may_be_fractional_or_exponents_without_extending_validity() {
        let mut strict = v();
        strict.leeway = 0;
        let at = |exp: Value| validate(claims(json!({ "exp": exp })).root(), &strict, NOW);
        assert!(at(json!(1.8e9 + 10.0)).is_ok(), "an exponent");
        assert!(at(json!(NOW as f64 + 1.5)).is_ok(), "valid whatever the fraction of the current second");
        // Now is somewhere in [NOW, NOW + 1): an exp of NOW + 0.5 may already have passed.
        assert_eq!(at(json!(NOW as f64 + 0.5)).unwrap_err().kind(), ErrorKind::Expired);
        assert_eq!(at(json!(NOW as f64 + 0.999)).unwrap_err().kind(), ErrorKind::Expired);
        assert_eq!(at(json!(NOW as f64 - 0.5)).unwrap_err().kind(), ErrorKind::Expired);
        assert_eq!(at(json!(-1)).unwrap_err().kind(), ErrorKind::Expired, "negative dates are dates");
        assert_eq!(last_valid_second(NOW as f64 + 1.5, 0), NOW);
        assert_eq!(last_valid_second(NOW as f64 + 1.0, 0), NOW);
        assert_eq!(last_valid_second(NOW as f64 + 1.0, 30), NOW + 30);
        // nbf and iat: the real time is at least NOW, so NOW + leeway is the latest allowed.
        let nbf = |n: Value| validate(claims(json!({ "nbf": n })).root(), &strict, NOW);
        assert!(nbf(json!(NOW)).is_ok());
        assert!(nbf(json!(NOW as f64 - 0.5)).is_ok());
        assert_eq!(nbf(json!(NOW as f64 + 0.001)).unwrap_err().kind(), ErrorKind::NotYetValid);
        assert_eq!(nbf(json!(1.8000000001e9)).unwrap_err().kind(), ErrorKind::NotYetValid);
        let iat = |n: Value| validate(claims(json!({ "iat": n })).root(), &strict, NOW);
        assert!(iat(json!(NOW as f64 - 0.25)).is_ok());
        assert_eq!(iat(json!(NOW as f64 + 0.25)).unwrap_err().kind(), ErrorKind::NotYetValid);
    }

    #[test]
    fn nbf_and_iat_in_the_future() {
        assert!(check(json!({"nbf": NOW + 30})).is_ok());
        assert_eq!(check(json!({"nbf": NOW + 31})).unwrap_err().kind(), ErrorKind::NotYetValid);
        assert!(check(json!({"iat": NOW + 30})).is_ok());
        let e = check(json!({"iat": NOW + 31})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotYetValid);
        assert!(e.detail().contains("iat"));
    }

    #[test]
    fn time_claims_must_be_numbers() {
        for (name, bad, why) in [
            ("exp", json!("9999999999"), "not a string"),
            ("exp", json!(true), "not a boolean"),
            ("exp", json!([NOW + 900]), "not an array"),
            ("nbf", json!("0"), "not a string"),
            ("iat", json!(null), ""),
            ("iat", json!({}), "not an object"),
        ] {
            let r = check(json!({ name: bad.clone() }));
            if bad.is_null() {
                assert!(r.is_ok(), "absent iat is fine");
                continue;
            }
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidClaims, "{name}={bad}");
            assert!(e.detail().contains(why), "{name}={bad}: {e}");
        }
        assert!(check(json!({"exp": u64::MAX})).is_ok(), "a date far in the future is still a date");
    }

    #[test]
    fn huge_exp_does_not_overflow() {
        assert!(check(json!({"exp": i64::MAX})).is_ok());
        assert!(check(json!({"exp": 1e300})).is_ok());
        assert_eq!(check(json!({"exp": -1e300})).unwrap_err().kind(), ErrorKind::Expired);
        let mut lv = v();
        lv.leeway = i64::MAX;
        assert!(validate(claims(json!({"exp": 0})).root(), &lv, i64::MAX - 1).is_ok());
    }

    #[test]
    fn issuer() {
        assert!(check(json!({"iss": "https://evil.example.com"})).unwrap_err().detail().contains("iss"));
        assert!(check(json!({"iss": "https://app.example.com/"})).is_err(), "exact match");
        assert!(check(json!({"iss": null})).unwrap_err().detail().contains("required"));
        assert!(check(json!({"iss": ["https://app.example.com"]})).unwrap_err().detail().contains("string"));
        let mut any = v();
        any.issuer = Expect::Any;
        assert!(validate(claims(json!({"iss": null})).root(), &any, NOW).is_ok());
        assert!(validate(claims(json!({"iss": "x"})).root(), &any, NOW).is_ok());
    }

    #[test]
    fn audience() {
        assert!(check(json!({"aud": "https://other"})).unwrap_err().detail().contains("aud"));
        assert!(check(json!({"aud": []})).is_err());
        assert!(check(json!({"aud": ["https://other"]})).is_err());
        assert!(check(json!({"aud": [["https://app.example.com"]]})).unwrap_err().detail().contains("only strings"));
        assert!(check(json!({"aud": ["https://app.example.com", 1]})).unwrap_err().detail().contains("only strings"));
        assert!(check(json!({"aud": 1})).unwrap_err().detail().contains("string or an array"));
        assert!(check(json!({"aud": null})).unwrap_err().detail().contains("required"));
        let mut any = v();
        any.audience = Expect::Any;
        assert!(validate(claims(json!({"aud": null})).root(), &any, NOW).is_ok());
    }

    #[test]
    fn sub_must_be_a_string() {
        assert!(check(json!({"sub": 5})).unwrap_err().detail().contains("sub"));
        assert!(check(json!({"sub": null})).is_ok());
    }
}
