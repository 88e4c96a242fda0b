//! Verified claims in PostgreSQL's on-disk `jsonb` format, built straight from the parsed [`Doc`](crate::Doc).
//!
//! `jwt_verify` returns the claims as `jsonb`. Building them with PostgreSQL's pushJsonbValue
//! (a palloc per value, a numeric per integer, a qsort of every object's keys) cost more than a
//! third of everything a cold verification does besides the signature check; this writes the
//! same bytes directly. The layout is the one `convertToJsonb` (src/backend/utils/adt/jsonb_util.c)
//! writes, unchanged since PostgreSQL 9.4: a container header, one JEntry per key and value
//! (keys first, sorted by length then bytes), every 32nd JEntry an end offset instead of a
//! length, numerics and nested containers 4-byte aligned with the padding counted in their
//! length. The tests of the extension compare the result with `payload::jsonb` on every major.
//!
//! Only what maps one to one is encoded here: strings, booleans, null, and integers that fit an
//! i64 (written as `int64_to_numeric` writes them). For anything else [`encode`] returns None
//! and the caller hands the payload text to `jsonb_in`, so `1.50` stays `1.50`.

use crate::json::{Json, Object};

const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;
const JB_OFFSET_STRIDE: usize = 32;
const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;
const JENTRY_ISCONTAINER: u32 = 0x5000_0000;

const NUMERIC_SHORT: u16 = 0x8000;
const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;
const NUMERIC_SHORT_WEIGHT_SIGN_MASK: u16 = 0x0040;
const NUMERIC_SHORT_WEIGHT_MASK: u16 = 0x003F;

/// The claims as a complete `jsonb` varlena (4-byte header included, native byte order), or
/// None if a value is not exactly representable here (see the module doc) or the result would
/// exceed jsonb's limits (then `jsonb_in` reports the limit in PostgreSQL's own words). The
/// root container's length limit (256 MB) also keeps the whole datum under varlena's 1 GB.
pub fn encode(claims: Object<'_>) -> Option<Vec<u8>> {
    // Names and strings are copied as they are and numbers are at most 16 bytes, so the text's
    // length plus the JEntries is enough for a typical payload: one allocation.
    let mut buf = Vec::with_capacity(claims.doc().text().len() + 8 * claims.len() + 16);
    buf.extend_from_slice(&[0; 4]);
    object(&mut buf, claims)?;
    let header = varsize(buf.len());
    buf[..4].copy_from_slice(&header);
    Some(buf)
}

/// SET_VARSIZE: a 4-byte varlena header for `len` bytes in all.
fn varsize(len: usize) -> [u8; 4] {
    #[cfg(target_endian = "little")]
    let header = (len as u32) << 2;
    #[cfg(target_endian = "big")]
    let header = len as u32 & 0x3FFF_FFFF;
    header.to_ne_bytes()
}

/// Pad to a multiple of 4 from the start of the varlena (padBufferToInt).
fn pad(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Append a container (header, JEntries, then the children's data) and return its JEntry.
/// `children` yields each child's writer in on-disk order.
fn container<'a>(buf: &mut Vec<u8>, flag: u32, count: usize, children: impl Iterator<Item = Child<'a>>) -> Option<u32> {
    if count > JENTRY_OFFLENMASK as usize {
        return None;
    }
    let base = buf.len();
    pad(buf);
    buf.extend_from_slice(&(count as u32 | flag).to_ne_bytes());
    let mut jentry_at = buf.len();
    let entries = if flag == JB_FOBJECT { count * 2 } else { count };
    buf.resize(buf.len() + 4 * entries, 0);
    let mut total: usize = 0;
    for (i, child) in children.enumerate() {
        let before = buf.len();
        let mut meta = match child {
            Child::Key(k) => string(buf, k),
            Child::Value(v) => value(buf, v)?,
        };
        total += buf.len() - before;
        if total > JENTRY_OFFLENMASK as usize {
            return None;
        }
        if i % JB_OFFSET_STRIDE == 0 {
            meta = (meta & JENTRY_TYPEMASK) | total as u32 | JENTRY_HAS_OFF;
        }
        buf[jentry_at..jentry_at + 4].copy_from_slice(&meta.to_ne_bytes());
        jentry_at += 4;
    }
    let len = buf.len() - base;
    (len <= JENTRY_OFFLENMASK as usize).then_some(JENTRY_ISCONTAINER | len as u32)
}

enum Child<'a> {
    Key(&'a str),
    Value(Json<'a>),
}

fn object(buf: &mut Vec<u8>, o: Object<'_>) -> Option<u32> {
    // The parser keeps each object's members in jsonb's key order (shorter first, then
    // bytewise) and refuses duplicate members: written as they come.
    let keys = o.keys().map(Child::Key);
    let values = o.values().map(Child::Value);
    container(buf, JB_FOBJECT, o.len(), keys.chain(values))
}

fn value(buf: &mut Vec<u8>, v: Json<'_>) -> Option<u32> {
    Some(match v {
        Json::Null => JENTRY_ISNULL,
        Json::Bool(true) => JENTRY_ISBOOL_TRUE,
        Json::Bool(false) => JENTRY_ISBOOL_FALSE,
        Json::String(s) => string(buf, s),
        Json::Number(n) => {
            let start = buf.len();
            pad(buf);
            numeric(buf, n.as_i64()?);
            JENTRY_ISNUMERIC | (buf.len() - start) as u32
        }
        Json::Array(a) => container(buf, JB_FARRAY, a.len(), a.iter().map(Child::Value))?,
        Json::Object(o) => object(buf, o)?,
    })
}

/// A string's bytes as they are (jsonb stores strings unescaped); the container checks the
/// total length.
fn string(buf: &mut Vec<u8>, s: &str) -> u32 {
    buf.extend_from_slice(s.as_bytes());
    JENTRY_ISSTRING | (s.len() as u32 & JENTRY_OFFLENMASK)
}

/// `int64_to_numeric(i)` byte for byte: a short-header numeric varlena, base-10000 digits most
/// significant first, trailing zero digits stripped (the weight keeps the magnitude), dscale 0;
/// zero has no digits, weight 0 and a positive sign.
fn numeric(buf: &mut Vec<u8>, i: i64) {
    let mut u = i.unsigned_abs();
    let mut digits = [0u16; 5]; // u64::MAX has 20 decimal digits: 5 base-10000 digits
    let mut n = 0;
    while u > 0 {
        digits[n] = (u % 10_000) as u16;
        u /= 10_000;
        n += 1;
    }
    let weight = n as i32 - 1; // digits[n - 1] is the most significant
    let mut low = 0;
    while low < n && digits[low] == 0 {
        low += 1;
    }
    let (weight, negative) = if n == 0 { (0, false) } else { (weight, i < 0) };
    let mut header = NUMERIC_SHORT | (weight as u16 & NUMERIC_SHORT_WEIGHT_MASK);
    if weight < 0 {
        header |= NUMERIC_SHORT_WEIGHT_SIGN_MASK;
    }
    if negative {
        header |= NUMERIC_SHORT_SIGN_MASK;
    }
    buf.extend_from_slice(&varsize(4 + 2 + 2 * (n - low)));
    buf.extend_from_slice(&header.to_ne_bytes());
    for d in digits[low..n].iter().rev() {
        buf.extend_from_slice(&d.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Doc;
    use serde_json::{json, Value};

    fn doc(v: Value) -> Doc {
        Doc::parse(v.to_string()).unwrap()
    }

    fn enc(v: Value) -> Vec<u8> {
        encode(doc(v).root()).unwrap()
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn empty_object() {
        // varlena header (8 bytes) and a container header with no entries.
        assert_eq!(enc(json!({})), [&(8u32 << 2).to_ne_bytes()[..], &JB_FOBJECT.to_ne_bytes()].concat());
    }

    #[test]
    fn keys_shorter_first_then_bytewise() {
        let b = enc(json!({"bb": true, "a": null, "ab": false, "c": "x"}));
        // 4 pairs: 8 JEntries after the container header, then the key bytes in order a c ab bb.
        assert_eq!(u32_at(&b, 4), 4 | JB_FOBJECT);
        let data = 4 + 4 + 8 * 4;
        assert_eq!(&b[data..data + 6], b"acabbb");
        // The values follow the keys, in the same order: null, "x", false, true.
        assert_eq!(u32_at(&b, 8 + 4 * 4) & JENTRY_TYPEMASK, JENTRY_ISNULL);
        assert_eq!(u32_at(&b, 8 + 5 * 4), 1, "\"x\": a string of length 1");
        assert_eq!(u32_at(&b, 8 + 6 * 4), JENTRY_ISBOOL_FALSE);
        assert_eq!(u32_at(&b, 8 + 7 * 4), JENTRY_ISBOOL_TRUE);
        assert_eq!(&b[data + 6..], b"x");
        assert_eq!(u32_at(&b, 0) >> 2, b.len() as u32);
    }

    #[test]
    fn every_32nd_entry_is_an_offset() {
        let m: serde_json::Map<String, Value> = (0..40).map(|i| (format!("k{i:02}"), json!(i.to_string()))).collect();
        let b = enc(Value::Object(m));
        let entry = |i: usize| u32_at(&b, 8 + 4 * i);
        assert_eq!(entry(0), JENTRY_HAS_OFF | 3, "first key: end offset 3");
        assert_eq!(entry(1), 3, "second key: its length");
        assert_eq!(entry(32) & JENTRY_HAS_OFF, JENTRY_HAS_OFF);
        assert_eq!(entry(32) & JENTRY_OFFLENMASK, 32 * 3 + 3, "33rd key ends at byte 99");
        assert_eq!(
            entry(64) & JENTRY_OFFLENMASK,
            40 * 3 + 10 + 15 * 2,
            "25th value: after the keys, \"0\"..\"9\", \"10\"..\"24\""
        );
    }

    #[test]
    fn numerics_are_aligned_and_match_int64_to_numeric() {
        // {"n": 1}: header 4, container 4, 2 JEntries 8, key "n" 1 byte, pad 3, numeric 8.
        let b = enc(json!({"n": 1}));
        assert_eq!(b.len(), 4 + 4 + 8 + 1 + 3 + 8);
        assert_eq!(u32_at(&b, 12), JENTRY_ISNUMERIC | (3 + 8), "the padding counts in the length");
        assert_eq!(&b[20..], [&(8u32 << 2).to_ne_bytes()[..], &0x8000u16.to_ne_bytes(), &1u16.to_ne_bytes()].concat());
        let num = |i: i64| {
            let mut v = Vec::new();
            numeric(&mut v, i);
            let header = u16::from_ne_bytes([v[4], v[5]]);
            let digits: Vec<u16> = v[6..].chunks(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect();
            assert_eq!(u32_at(&v, 0) >> 2, v.len() as u32);
            (header, digits)
        };
        assert_eq!(num(0), (0x8000, vec![]), "zero: no digits, weight 0");
        assert_eq!(num(-1), (0x8000 | 0x2000, vec![1]));
        assert_eq!(num(10_000), (0x8000 | 1, vec![1]), "trailing zero digit stripped, weight 1");
        assert_eq!(num(1_700_000_000), (0x8000 | 2, vec![17]), "1700000000 = 17 * 10000^2");
        assert_eq!(num(1_796_132_762), (0x8000 | 2, vec![17, 9613, 2762]));
        assert_eq!(num(i64::MIN), (0x8000 | 0x2000 | 4, vec![922, 3372, 368, 5477, 5808]));
        assert_eq!(num(i64::MAX), (0x8000 | 4, vec![922, 3372, 368, 5477, 5807]));
    }

    #[test]
    fn nested_containers_are_aligned() {
        // {"a": ["x", {"b": 2}]}: the array starts after the key "a" (offset 17), padded to 20.
        let b = enc(json!({"a": ["x", {"b": 2}]}));
        let array = u32_at(&b, 12);
        assert_eq!(array & JENTRY_TYPEMASK, JENTRY_ISCONTAINER);
        assert_eq!(u32_at(&b, 20), 2 | JB_FARRAY);
        assert_eq!(17 + (array & JENTRY_OFFLENMASK) as usize, b.len());
    }

    #[test]
    fn what_is_not_exact_is_left_to_jsonb_in() {
        assert!(encode(doc(json!({"a": 1.5})).root()).is_none());
        assert!(encode(doc(json!({"a": [{"b": u64::MAX}]})).root()).is_none());
        assert!(encode(doc(json!({"a": -9223372036854775808i64})).root()).is_some());
        assert!(encode(doc(json!({"a": 9223372036854775807u64})).root()).is_some());
    }
}
