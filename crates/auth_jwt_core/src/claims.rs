//! Registered-claim validation (RFC 7519 section 4.1) with an injected clock.
//!
//! `exp` is required; `exp`, `nbf` and `iat` must be non-negative integer JSON numbers (a string
//! "9999999999", a float, or a number beyond i64 is a type error, not a date). `iss` must equal
//! the configured issuer and `aud` (a string or an array of strings) must contain the configured
//! audience, unless the configuration says [`Expect::Any`].

use crate::error::{iso8601, Error, ErrorKind};
use crate::json::a_type;
use serde_json::{Map, Value};

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

/// The time claims, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Error> {
    let v = match claims.get(name) {
        None => return Ok(None),
        Some(v) => v,
    };
    let n = match v {
        Value::Number(n) => n,
        other => return Err(Error::claim(name, format!("must be a JSON number (NumericDate), not {}", a_type(other)))),
    };
    if let Some(i) = n.as_i64() {
        if i < 0 {
            return Err(Error::claim(name, "must not be negative"));
        }
        return Ok(Some(i));
    }
    if n.is_u64() {
        return Err(Error::claim(name, "is out of range"));
    }
    Err(Error::claim(name, "must be an integer number of seconds"))
}

/// `exp`: required, and not past (with leeway). Returns it.
pub fn check_exp(claims: &Map<String, Value>, v: &Validation, now: i64) -> Result<i64, Error> {
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| Error::claim("exp", "is required"))?;
    // i128: exp + leeway cannot overflow for any i64 inputs.
    if now as i128 > exp as i128 + v.leeway as i128 {
        return Err(Error::new(
            ErrorKind::Expired,
            format!(
                "the token expired {}s ago (exp {}, now {}, leeway {}s)",
                now - exp,
                iso8601(exp),
                iso8601(now),
                v.leeway
            ),
        ));
    }
    Ok(exp)
}

/// `nbf`: optional; not in the future (with leeway).
pub fn check_nbf(claims: &Map<String, Value>, v: &Validation, now: i64) -> Result<Option<i64>, Error> {
    let nbf = numeric_date(claims, "nbf")?;
    if let Some(nbf) = nbf {
        if nbf as i128 > now as i128 + v.leeway as i128 {
            return Err(Error::new(
                ErrorKind::NotYetValid,
                format!(
                    "the token is not valid for another {}s (nbf {}, now {}, leeway {}s)",
                    nbf - now,
                    iso8601(nbf),
                    iso8601(now),
                    v.leeway
                ),
            ));
        }
    }
    Ok(nbf)
}

/// `iat`: optional; not in the future (with leeway).
pub fn check_iat(claims: &Map<String, Value>, v: &Validation, now: i64) -> Result<Option<i64>, Error> {
    let iat = numeric_date(claims, "iat")?;
    if let Some(iat) = iat {
        if iat as i128 > now as i128 + v.leeway as i128 {
            return Err(Error::new(
                ErrorKind::NotYetValid,
                format!(
                    "the token was issued {}s in the future (iat {}, now {}, leeway {}s); check the clocks",
                    iat - now,
                    iso8601(iat),
                    iso8601(now),
                    v.leeway
                ),
            ));
        }
    }
    Ok(iat)
}

/// `iss`: equal to the configured issuer, unless that check is off.
pub fn check_iss(claims: &Map<String, Value>, v: &Validation) -> Result<(), Error> {
    if let Expect::Exactly(want) = &v.issuer {
        match claims.get("iss") {
            Some(Value::String(iss)) if iss == want => {}
            Some(Value::String(_)) => return Err(Error::claim("iss", "does not match auth_jwt.issuer")),
            Some(other) => return Err(Error::claim("iss", format!("must be a string, not {}", a_type(other)))),
            None => return Err(Error::claim("iss", "is required (auth_jwt.issuer is set)")),
        }
    }
    Ok(())
}

/// `aud`: a string, or an array of strings, that contains the configured audience.
pub fn check_aud(claims: &Map<String, Value>, v: &Validation) -> Result<(), Error> {
    if let Expect::Exactly(want) = &v.audience {
        match claims.get("aud") {
            Some(Value::String(aud)) if aud == want => {}
            Some(Value::String(_)) => return Err(Error::claim("aud", "does not contain auth_jwt.audience")),
            Some(Value::Array(auds)) => {
                if let Some(bad) = auds.iter().find(|a| !a.is_string()) {
                    return Err(Error::claim("aud", format!("must hold only strings, not {}", a_type(bad))));
                }
                if !auds.iter().any(|a| a.as_str() == Some(want)) {
                    return Err(Error::claim("aud", "does not contain auth_jwt.audience"));
                }
            }
            Some(other) => {
                return Err(Error::claim(
                    "aud",
                    format!("must be a string or an array of strings, not {}", a_type(other)),
                ))
            }
            None => return Err(Error::claim("aud", "is required (auth_jwt.audience is set)")),
        }
    }
    Ok(())
}

/// Validate the registered claims of a verified payload at time `now` (Unix seconds).
/// Types first (a string `exp` is a type error even when a date check would also fail).
pub fn validate(claims: &Map<String, Value>, v: &Validation, now: i64) -> Result<Times, Error> {
    for name in ["exp", "nbf", "iat"] {
        numeric_date(claims, name)?;
    }
    let exp = check_exp(claims, v, now)?;
    let nbf = check_nbf(claims, v, now)?;
    let iat = check_iat(claims, v, now)?;
    check_iss(claims, v)?;
    check_aud(claims, v)?;
    if let Some(sub) = claims.get("sub") {
        if !sub.is_string() {
            return Err(Error::claim("sub", format!("must be a string, not {}", a_type(sub))));
        }
    }
    Ok(Times { exp, nbf, iat })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn v() -> Validation {
        Validation::for_origin("https://app.example.com")
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut m = json!({"iss":"https://app.example.com","aud":"https://app.example.com","exp":NOW + 900,"iat":NOW,"sub":"u1"})
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
        m
    }

    fn check(extra: Value) -> Result<Times, Error> {
        validate(&claims(extra), &v(), NOW)
    }

    #[test]
    fn accepts_a_good_token() {
        assert_eq!(check(json!({})).unwrap(), Times { exp: NOW + 900, nbf: None, iat: Some(NOW) });
        assert!(check(json!({"aud": ["x", "https://app.example.com"]})).is_ok());
        assert!(check(json!({"nbf": NOW})).is_ok());
    }

    #[test]
    fn exp_is_required_and_checked_with_leeway() {
        assert!(check(json!({"exp": null})).unwrap_err().detail().contains("\"exp\" is required"));
        assert!(check(json!({"exp": NOW - 30})).is_ok(), "within leeway");
        let e = check(json!({"exp": NOW - 31})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Expired);
        let mut strict = v();
        strict.leeway = 0;
        assert!(validate(&claims(json!({"exp": NOW})), &strict, NOW).is_ok());
        assert_eq!(validate(&claims(json!({"exp": NOW - 1})), &strict, NOW).unwrap_err().kind(), ErrorKind::Expired);
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
    fn time_claims_must_be_integers() {
        for (name, bad, why) in [
            ("exp", json!("9999999999"), "not a string"),
            ("exp", json!(1e10), "integer"),
            ("exp", json!(1_800_000_000.5), "integer"),
            ("exp", json!(-1), "negative"),
            ("exp", json!(u64::MAX), "out of range"),
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
    }

    #[test]
    fn huge_exp_does_not_overflow() {
        assert!(check(json!({"exp": i64::MAX})).is_ok());
        let mut lv = v();
        lv.leeway = i64::MAX;
        assert!(validate(&claims(json!({"exp": 0})), &lv, i64::MAX).is_ok());
    }

    #[test]
    fn issuer() {
        assert!(check(json!({"iss": "https://evil.example.com"})).unwrap_err().detail().contains("iss"));
        assert!(check(json!({"iss": "https://app.example.com/"})).is_err(), "exact match");
        assert!(check(json!({"iss": null})).unwrap_err().detail().contains("required"));
        assert!(check(json!({"iss": ["https://app.example.com"]})).unwrap_err().detail().contains("string"));
        let mut any = v();
        any.issuer = Expect::Any;
        assert!(validate(&claims(json!({"iss": null})), &any, NOW).is_ok());
        assert!(validate(&claims(json!({"iss": "x"})), &any, NOW).is_ok());
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
        assert!(validate(&claims(json!({"aud": null})), &any, NOW).is_ok());
    }

    #[test]
    fn sub_must_be_a_string() {
        assert!(check(json!({"sub": 5})).unwrap_err().detail().contains("sub"));
        assert!(check(json!({"sub": null})).is_ok());
    }
}
