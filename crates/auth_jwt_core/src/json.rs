//! Strict JSON for JOSE headers and JWT payloads.
//!
//! `serde_json::Value` silently keeps the last of duplicate members, so `{"alg":"EdDSA","alg":"none"}`
//! would mean different things to different parsers. This visitor builds the same `Value` but
//! rejects duplicate member names at any depth, and rejects U+0000 anywhere in a string, which
//! PostgreSQL's `jsonb` cannot store (the claims are handed to `jsonb_in` as signed).
//! Nesting depth is bounded by serde_json's recursion limit (128), so deep input is an error,
//! never a stack overflow. Invalid UTF-8 and lone surrogate escapes are serde_json errors.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Parse `bytes` as one JSON object, strictly. The error is a short human reason.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    parse_object_noting_fractions(bytes).map(|(map, _)| map)
}

/// [`parse_object`], and whether any number was read as a float (a fraction, an exponent, or
/// an integer beyond u64): only those can fail [`check_numeric_scale`].
pub fn parse_object_noting_fractions(bytes: &[u8]) -> Result<(Map<String, Value>, bool), String> {
    let floats = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue(&floats).deserialize(&mut de).map_err(describe)?;
    de.end().map_err(describe)?;
    match value {
        Value::Object(map) => Ok((map, floats.get())),
        other => Err(format!("is {}, not a JSON object", a_type(&other))),
    }
}

/// PostgreSQL's numeric, which jsonb stores numbers as, keeps at most this many digits after the
/// decimal point (NUMERIC_DSCALE_MAX).
const NUMERIC_DSCALE_MAX: i64 = 0x3FFF;

/// numeric_in's bound on an exponent's magnitude (INT_MAX / 2, in set_var_from_str).
const NUMERIC_EXPONENT_LIMIT: i64 = i32::MAX as i64 / 2;

/// Every number in `text`, a valid JSON document, fits PostgreSQL's numeric. serde_json already
/// refuses numbers beyond f64's range, but reads `1e-20000`, a 20000-digit fraction or
/// `0e99999999999` as a float without complaint, and jsonb would then fail to store the claims
/// exactly as signed.
pub fn check_numeric_scale(text: &[u8]) -> Result<(), String> {
    let digits = |i: &mut usize| {
        let mut n = 0i64;
        let mut value = 0i64;
        while let Some(d @ b'0'..=b'9') = text.get(*i) {
            value = value.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            n += 1;
            *i += 1;
        }
        (n, value)
    };
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                i += usize::from(text[i] == b'-');
                digits(&mut i);
                let mut scale = 0;
                if text.get(i) == Some(&b'.') {
                    i += 1;
                    scale = digits(&mut i).0;
                }
                if matches!(text.get(i), Some(b'e' | b'E')) {
                    i += 1;
                    let negative = text.get(i) == Some(&b'-');
                    i += usize::from(matches!(text.get(i), Some(b'-' | b'+')));
                    let exponent = digits(&mut i).1;
                    // numeric_in refuses any exponent this large, even on a zero (0e99999999999).
                    if exponent >= NUMERIC_EXPONENT_LIMIT {
                        return Err(format!(
                            "has a number with an exponent beyond ±{}, which jsonb (PostgreSQL's numeric) cannot read",
                            NUMERIC_EXPONENT_LIMIT - 1
                        ));
                    }
                    scale = if negative { scale.saturating_add(exponent) } else { scale.saturating_sub(exponent) };
                }
                if scale > NUMERIC_DSCALE_MAX {
                    return Err(format!(
                        "has a number with {scale} digits after the decimal point; jsonb (PostgreSQL's numeric) stores at most {NUMERIC_DSCALE_MAX}"
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The type with its article, for messages: "a string", "an array".
pub fn a_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(e: serde_json::Error) -> String {
    // serde_json's messages name a position, never the input text; custom ones are ours.
    format!("is not valid JSON ({e})")
}

/// Set when a number is read as a float.
struct StrictValue<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn check_nul<E: de::Error>(s: &str) -> Result<(), E> {
    if s.contains('\0') {
        Err(E::custom("a string contains U+0000, which jsonb cannot store,"))
    } else {
        Ok(())
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.set(true);
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        check_nul(v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        check_nul(&v)?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            check_nul(&key)?;
            match out.entry(key) {
                serde_json::map::Entry::Occupied(e) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate member \"{}\"",
                        crate::error::printable(e.key(), 64)
                    )));
                }
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(map.next_value_seed(StrictValue(self.0))?);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let m = parse_object(br#"{"a":1,"b":[true,null,"x",{"c":-2.5}]}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["b"][3]["c"], serde_json::json!(-2.5));
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        let e = parse_object(br#"{"alg":"EdDSA","alg":"none"}"#).unwrap_err();
        assert!(e.contains("duplicate member \"alg\""), "{e}");
        let e = parse_object(br#"{"a":{"b":1,"b":2}}"#).unwrap_err();
        assert!(e.contains("duplicate member \"b\""), "{e}");
        // Escapes that decode to the same name are the same member.
        assert!(parse_object(br#"{"alg":1,"\u0061lg":2}"#).is_err());
    }

    #[test]
    fn rejects_non_objects_and_junk() {
        assert!(parse_object(b"[1]").unwrap_err().contains("is an array, not a JSON object"));
        assert!(parse_object(b"\"x\"").is_err());
        assert!(parse_object(b"{} x").is_err());
        assert!(parse_object(b"{\"a\":1,}").is_err());
        assert!(parse_object(b"").is_err());
        assert!(parse_object(b"\xef\xbb\xbf{}").is_err(), "BOM");
    }

    #[test]
    fn rejects_nul_invalid_utf8_and_lone_surrogates() {
        assert!(parse_object(br#"{"a":"x\u0000"}"#).unwrap_err().contains("U+0000"));
        assert!(parse_object(br#"{"\u0000":1}"#).unwrap_err().contains("U+0000"));
        assert!(parse_object(b"{\"a\":\"\xff\"}").is_err());
        assert!(parse_object(br#"{"a":"\ud800"}"#).is_err());
        assert!(parse_object(br#"{"a":"\udc00x"}"#).is_err());
        assert!(parse_object(br#"{"a":"\ud83d\ude00"}"#).is_ok(), "a proper pair is fine");
    }

    #[test]
    fn bounds_nesting_depth() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_object(deep.as_bytes()).unwrap_err().contains("recursion limit"));
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(parse_object(ok.as_bytes()).is_ok());
    }

    #[test]
    fn numbers_must_fit_numeric() {
        for ok in [&b"{}"[..], br#"{"a":1e-16383,"b":-0.5,"c":1E+400,"d":"1e-99999"}"#, br#"{"e\"1e-99999":2}"#] {
            assert_eq!(check_numeric_scale(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [&br#"{"a":1e-20000}"#[..], br#"{"a":0E-16384}"#, br#"{"a":[1, {"b":-1.5e-16383}]}"#] {
            assert!(check_numeric_scale(bad).unwrap_err().contains("digits after the decimal point"));
        }
        // A zero with a huge exponent is a float to serde_json and has no scale, but numeric_in
        // refuses the exponent (found by red-team: jwt_verify raised 22003 for a verified token).
        for bad in [
            &br#"{"a":0e99999999999}"#[..],
            br#"{"a":0.0E+1073741823}"#,
            br#"{"a":[0e1073741824]}"#,
            br#"{"a":1e-99999999999999999999999}"#,
        ] {
            assert!(check_numeric_scale(bad).unwrap_err().contains("exponent"), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(check_numeric_scale(br#"{"a":0e1073741822,"b":1e308}"#), Ok(()));
        let long = format!(r#"{{"a":0.{}1}}"#, "0".repeat(16383));
        assert!(check_numeric_scale(long.as_bytes()).is_err());
        assert!(check_numeric_scale(format!(r#"{{"a":0.{}1}}"#, "0".repeat(16381)).as_bytes()).is_ok());
    }

    #[test]
    fn numbers() {
        let m = parse_object(br#"{"a":18446744073709551615,"b":-1,"c":1e3}"#).unwrap();
        assert!(m["a"].is_u64());
        assert!(m["b"].is_i64());
        assert!(m["c"].is_f64());
        assert!(parse_object(br#"{"a":1e400}"#).is_err(), "out of range");
        assert!(parse_object(br#"{"a":NaN}"#).is_err());
    }
}
