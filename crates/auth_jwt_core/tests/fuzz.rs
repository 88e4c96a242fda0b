//! Property-based fuzzing of the parser and verifier (proptest: runs on stable Rust, bounded).
//! Seeds: the committed corpus in fuzz/corpus/ plus freshly signed valid tokens; mutations:
//! byte replacements, insertions, deletions, segment swaps and truncations. Properties: no
//! panic on any input; nothing but the exact signed token verifies; jwt_explain agrees with
//! verify; a token that verifies satisfies every claim rule; the jsonb writer's output reads back,
//! as PostgreSQL reads it, to the claims it was given.
//!
//! Cases per property: AUTH_JWT_FUZZ_CASES (default 10000), so scripts/test stays bounded; run
//! longer with e.g. `AUTH_JWT_FUZZ_CASES=200000 cargo test --release -p auth_jwt_core --test fuzz`.
//! A failure prints the minimal input; add it to fuzz/corpus/ once fixed.

mod common;

use auth_jwt_core::{explain, verify, Key, KeyRow};
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

fn cases() -> u32 {
    std::env::var("AUTH_JWT_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() })
}

fn corpus() -> Vec<String> {
    let dir = format!("{}/fuzz/corpus", env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    let sk = signing_key(1);
    seeds.push(token(&sk, "k1"));
    seeds.push(sign_raw(&sk, r#"{"alg":"EdDSA"}"#, &claims_json(NOW + 600)));
    seeds.sort();
    seeds
}

/// Check the invariants for one input.
fn check(input: &str, signed_originals: &[String]) {
    let sk = signing_key(1);
    let keys = keyset(&[("k1", &sk)]);
    let v = validation();
    let result = verify(input, &keys, &v, NOW);
    if result.is_ok() {
        assert!(signed_originals.iter().any(|t| t == input), "a mutation verified: {input}");
    }
    let steps = explain(input, &keys, &v, NOW, "uuid");
    let all_ok = steps.iter().filter(|s| s.name != "uuid claim").all(|s| s.ok == Some(true));
    assert_eq!(all_ok, result.is_ok(), "explain disagrees for {input}");
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    SwapSegments(usize, usize),
    Truncate(usize),
}

fn alphabet_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => proptest::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()),
        1 => proptest::sample::select(b".=+/ \n\t\"{}\\".to_vec()),
        1 => any::<u8>().prop_filter("ascii", |b| b.is_ascii()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), alphabet_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        2 => (any::<usize>(), alphabet_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<usize>().prop_map(Mutation::Delete),
        1 => (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(seed: &str, ms: &[Mutation]) -> String {
    let mut b = seed.as_bytes().to_vec();
    for m in ms {
        let n = b.len().max(1);
        match *m {
            Mutation::Replace(i, c) if !b.is_empty() => b[i % n] = c,
            Mutation::Insert(i, c) => b.insert(i % (b.len() + 1), c),
            Mutation::Delete(i) if !b.is_empty() => {
                b.remove(i % n);
            }
            Mutation::SwapSegments(x, y) => {
                let s = String::from_utf8_lossy(&b).into_owned();
                let mut parts: Vec<&str> = s.split('.').collect();
                if x < parts.len() && y < parts.len() {
                    parts.swap(x, y);
                }
                b = parts.join(".").into_bytes();
            }
            Mutation::Truncate(i) => b.truncate(i % n),
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn corpus_seeds_hold_the_invariants() {
    let seeds = corpus();
    for s in &seeds {
        check(s, &seeds);
    }
}

#[test]
fn mutated_tokens_never_verify_and_never_panic() {
    let seeds = corpus();
    let strategy = (proptest::sample::select(seeds.clone()), proptest::collection::vec(mutation(), 1..4));
    runner()
        .run(&strategy, |(seed, ms)| {
            let input = apply(&seed, &ms);
            check(&input, &seeds);
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_strings_never_panic() {
    let seeds = corpus();
    let strategy = prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=+/-]{0,400}",
        "eyJ[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
    ];
    runner()
        .run(&strategy, |s| {
            check(&s, &seeds);
            Ok(())
        })
        .unwrap();
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[ -~\u{e9}\u{1F600}]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Signed by the real key: the signature always verifies, so everything after it is exercised.
#[test]
fn signed_arbitrary_claims_are_judged_by_the_rules() {
    let sk = signing_key(1);
    let keys = keyset(&[("k1", &sk)]);
    let v = validation();
    let time =
        prop_oneof![Just(json!(NOW + 600)), Just(json!(NOW - 600)), any::<i64>().prop_map(Value::from), json_value(),];
    let strategy = (
        proptest::option::of(time.clone()),
        proptest::option::of(time.clone()),
        proptest::option::of(prop_oneof![Just(json!(ISS)), json_value()]),
        proptest::option::of(prop_oneof![Just(json!(ISS)), Just(json!([ISS, "x"])), json_value()]),
        json_value(),
    );
    runner()
        .run(&strategy, |(exp, nbf, iss, aud, extra)| {
            let mut m = serde_json::Map::new();
            for (k, val) in [("exp", exp), ("nbf", nbf), ("iss", iss), ("aud", aud)] {
                if let Some(val) = val {
                    m.insert(k.into(), val);
                }
            }
            m.insert("extra".into(), extra);
            let t = sign_raw(&sk, r#"{"alg":"EdDSA","kid":"k1"}"#, &Value::Object(m.clone()).to_string());
            let r = verify(&t, &keys, &v, NOW);
            // The real time is somewhere in [NOW, NOW + 1): valid only if valid at its latest.
            let lw = v.leeway as f64;
            let exp_ok = m.get("exp").and_then(Value::as_f64).is_some_and(|e| NOW as f64 + 1.0 <= e + lw);
            let nbf_ok = m.get("nbf").is_none_or(|n| n.as_f64().is_some_and(|n| n <= NOW as f64 + lw));
            let iss_ok = m.get("iss") == Some(&json!(ISS));
            let aud_ok = match m.get("aud") {
                Some(Value::String(a)) => a == ISS,
                Some(Value::Array(a)) => a.iter().all(Value::is_string) && a.contains(&json!(ISS)),
                _ => false,
            };
            prop_assert_eq!(r.is_ok(), exp_ok && nbf_ok && iss_ok && aud_ok, "{}", t);
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_key_rows_never_panic() {
    let strategy = (
        prop_oneof![any::<String>(), json_value().prop_map(|v| v.to_string())],
        proptest::option::of("[A-Za-z0-9]{0,10}"),
        proptest::option::of("[A-Za-z0-9]{0,10}"),
    );
    runner()
        .run(&strategy, |(pk, alg, crv)| {
            let k = Key::from_row(&KeyRow {
                id: "k",
                public_key: &pk,
                expires_at: Some(0),
                alg: alg.as_deref(),
                crv: crv.as_deref(),
            });
            let _ = k.status(NOW, 10);
            Ok(())
        })
        .unwrap();
}

/// A reader of jsonb's binary format, as PostgreSQL reads it (jsonb_util.c: getJsonbOffset and
/// fillJsonbValue): a value's end is its own offset where the JEntry has one, else the previous
/// end plus its length; numerics and containers start at the next 4-byte boundary.
mod jsonb_reader {
    use serde_json::{Map, Value};

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    pub fn read(b: &[u8]) -> Value {
        assert_eq!((u32_at(b, 0) >> 2) as usize, b.len(), "varlena size");
        let (v, end) = container(b, 4);
        assert_eq!(end, b.len(), "the root container fills the datum");
        v
    }

    /// The container whose header is at `at`; returns it and where its data ends.
    fn container(b: &[u8], at: usize) -> (Value, usize) {
        assert_eq!(at % 4, 0, "containers are 4-byte aligned");
        let header = u32_at(b, at);
        let count = (header & 0x0FFF_FFFF) as usize;
        let object = header & 0x2000_0000 != 0;
        assert!(object ^ (header & 0x4000_0000 != 0), "exactly one of object and array");
        let n = if object { 2 * count } else { count };
        let base = at + 4 + 4 * n;
        let mut ends = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            let entry = u32_at(b, at + 4 + 4 * i);
            let start = if i == 0 { 0 } else { ends[i - 1] };
            let end = if entry & 0x8000_0000 != 0 {
                assert_eq!(i % 32, 0, "offsets only at every 32nd entry");
                (entry & 0x0FFF_FFFF) as usize
            } else {
                assert_ne!(i % 32, 0, "every 32nd entry is an offset");
                start + (entry & 0x0FFF_FFFF) as usize
            };
            ends.push(end);
            let data = &b[base + start..base + end];
            let aligned = (base + start).next_multiple_of(4);
            values.push(match entry & 0x7000_0000 {
                0x0000_0000 => Value::String(std::str::from_utf8(data).unwrap().to_owned()),
                0x1000_0000 => numeric(&b[aligned..base + end]),
                0x2000_0000 => Value::Bool(false),
                0x3000_0000 => Value::Bool(true),
                0x4000_0000 => Value::Null,
                0x5000_0000 => {
                    let (v, inner_end) = container(b, aligned);
                    assert_eq!(inner_end, base + end, "a nested container's length");
                    v
                }
                t => panic!("JEntry type {t:#x}"),
            });
        }
        let end = base + ends.last().copied().unwrap_or(0);
        if !object {
            return (Value::Array(values), end);
        }
        let (keys, vals) = values.split_at(count);
        let mut map = Map::new();
        let mut previous: Option<&str> = None;
        for (k, v) in keys.iter().zip(vals) {
            let k = k.as_str().expect("keys are strings");
            if let Some(p) = previous {
                assert!((p.len(), p.as_bytes()) < (k.len(), k.as_bytes()), "keys sorted by length, then bytes");
            }
            previous = Some(k);
            map.insert(k.to_owned(), v.clone());
        }
        (Value::Object(map), end)
    }

    fn numeric(b: &[u8]) -> Value {
        assert_eq!((u32_at(b, 0) >> 2) as usize, b.len(), "numeric varlena size");
        let header = u16::from_ne_bytes([b[4], b[5]]);
        assert_eq!(header & 0xC000, 0x8000, "short numeric");
        assert_eq!(header & 0x1F80, 0, "dscale 0");
        let mut weight = (header & 0x3F) as i32;
        if header & 0x40 != 0 {
            weight -= 64;
        }
        let digits: Vec<i128> = b[6..].chunks(2).map(|c| u16::from_ne_bytes([c[0], c[1]]) as i128).collect();
        assert!(digits.last() != Some(&0), "trailing zero digits stripped");
        let mut v: i128 = 0;
        for (i, d) in digits.iter().enumerate() {
            assert!(*d < 10_000);
            v += d * 10_000i128.pow((weight - i as i32) as u32);
        }
        if header & 0x2000 != 0 {
            v = -v;
        }
        Value::from(i64::try_from(v).unwrap())
    }
}

/// The jsonb writer's output reads back, as PostgreSQL reads it, to the claims it was given;
/// a float anywhere makes it decline (the payload then goes to jsonb_in).
#[test]
fn jsonb_reads_back_as_the_claims() {
    let key = prop_oneof!["[a-z]{1,3}", "[ -~\u{e9}\u{1F600}]{0,40}"];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-20_000i64..20_000).prop_map(|i| Value::from(i * 10_000)),
        "[ -~\u{e9}\u{1F600}]{0,12}".prop_map(Value::from),
    ];
    // Nested containers up to 36 entries (an array past its 32nd element stores an offset too).
    let value = leaf.prop_recursive(3, 40, 36, |inner| {
        prop_oneof![
            3 => proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            1 => proptest::collection::vec(inner.clone(), 30..36).prop_map(Value::from),
            3 => proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    // Up to 40 members: past the 32 JEntries at which the first stored offset is due.
    let claims = (proptest::collection::btree_map(key, value, 0..40), any::<bool>());
    TestRunner::new(Config { cases: cases() / 10, failure_persistence: None, ..Config::default() })
        .run(&claims, |(m, with_float)| {
            let mut m: serde_json::Map<String, Value> = m.into_iter().collect();
            let expected = Value::Object(m.clone());
            let doc = |m: &serde_json::Map<String, Value>| auth_jwt_core::Doc::parse(json!(m).to_string()).unwrap();
            if with_float {
                m.insert("f".into(), json!([1, {"x": 1.5}]));
                prop_assert!(auth_jwt_core::jsonb::encode(doc(&m).root()).is_none());
            } else {
                let bytes = auth_jwt_core::jsonb::encode(doc(&m).root()).unwrap();
                prop_assert_eq!(jsonb_reader::read(&bytes), expected);
            }
            Ok(())
        })
        .unwrap();
}

/// The strict parser before `Doc` (a serde_json `Value` tree, duplicates and U+0000 refused while
/// reading), kept here as the oracle `Doc` must agree with.
mod value_oracle {
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};
    use std::cell::Cell;
    use std::fmt;

    /// The object and whether a number was read as a float, or None if the text is refused.
    pub fn parse(text: &str) -> Option<(Map<String, Value>, bool)> {
        let floats = Cell::new(false);
        let mut de = serde_json::Deserializer::from_str(text);
        let value = Strict(&floats).deserialize(&mut de).ok()?;
        de.end().ok()?;
        match value {
            Value::Object(m) => Some((m, floats.get())),
            _ => None,
        }
    }

    struct Strict<'a>(&'a Cell<bool>);

    impl<'de> DeserializeSeed<'de> for Strict<'_> {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    fn nul<E: de::Error>(s: &str) -> Result<(), E> {
        if s.contains('\0') {
            Err(E::custom("nul"))
        } else {
            Ok(())
        }
    }

    impl<'de> Visitor<'de> for Strict<'_> {
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
            Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("not finite"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            nul(v)?;
            Ok(Value::String(v.to_owned()))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(Strict(self.0))? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                nul(&key)?;
                if out.contains_key(&key) {
                    return Err(de::Error::custom("duplicate"));
                }
                let v = map.next_value_seed(Strict(self.0))?;
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Member names: duplicates, two spellings of one name (a duplicate too), U+0000.
fn json_name() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        2 => Just("\"a\"".to_owned()),
        1 => Just("\"\\u0061\"".to_owned()),
        1 => Just("\"ab\"".to_owned()),
        1 => Just("\"\\u0000\"".to_owned()),
        20 => "\"[a-z\u{e9}]{0,6}\"",
        4 => "\"[ab]{8,10}\"",
        // Same length, same first eight bytes, byte 8 inside a multibyte character.
        2 => "\"1234567[\u{e8}\u{e9}]\"",
        1 => "\"aaaaa[\u{1f600}\u{1f601}]\"",
    ]
}

/// Mostly small objects, some past the 32 members up to which duplicates are caught as read.
fn json_members(value: impl Strategy<Value = String> + Clone) -> impl Strategy<Value = String> {
    let members = prop_oneof![
        9 => proptest::collection::vec((json_name(), value), 0..7),
        // Names from a small set: some of these objects are valid, some repeat a name only
        // after the 32nd member.
        1 => proptest::collection::vec((prop_oneof![3 => "\"[a-z]{2}\"", 1 => "\"[ab]{8,10}\""], any::<i32>().prop_map(|i| i.to_string())), 30..40),
    ];
    members.prop_map(|m| {
        let members: Vec<String> = m.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{ {} }}", members.join(" ,"))
    })
}

/// A JSON object as text that is often valid and often almost valid: the names above, escapes,
/// U+0000, lone surrogates, every number form (beyond i64, beyond u64, beyond f64, exponents).
fn json_object_text() -> impl Strategy<Value = String> {
    let valid = proptest::sample::select(vec![
        "null",
        "true",
        "false",
        "-0",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "0e99999999999",
        "\"x\\ny\\\"\\u00e9\\ud83d\\ude00\"",
    ]);
    let leaf = prop_oneof![
        4 => valid.prop_map(str::to_owned),
        1 => proptest::sample::select(vec!["1e400", "\"\\ud800\"", "\"nul\\u0000\"", "01", "[1,]"]).prop_map(str::to_owned),
        4 => any::<i64>().prop_map(|i| i.to_string()),
        2 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        8 => "\"[ -!#-\\[\\]-~\u{e9}]{0,8}\"",
        // Past the eight bytes the simple path skips at a time.
        2 => "\"[ -!#-\\[\\]-~\u{e9}]{9,40}\"",
    ];
    let value = leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            json_members(inner),
        ]
    });
    json_members(value)
}

/// `Doc` accepts exactly what the `Value` parser it replaced accepts, reads back to the same
/// tree, notes floats the same way, finds every member by name and lists members in jsonb's key
/// order; mutated text included.
#[test]
fn doc_agrees_with_the_value_parser() {
    use auth_jwt_core::{json::jsonb_key_order, Doc};
    // Half of the texts as generated, half mutated.
    let strategy = (json_object_text(), prop_oneof![Just(vec![]), proptest::collection::vec(mutation(), 1..3)]);
    TestRunner::new(Config { cases: cases() / 4, failure_persistence: None, ..Config::default() })
        .run(&strategy, |(text, ms)| {
            let text = if ms.is_empty() { text } else { apply(&text, &ms) };
            let doc = Doc::parse(text.clone());
            let oracle = value_oracle::parse(&text);
            prop_assert_eq!(doc.is_ok(), oracle.is_some(), "{}", text);
            if let (Ok(doc), Some((map, floats))) = (doc, oracle) {
                prop_assert_eq!(doc.text(), text.as_str());
                prop_assert_eq!(doc.has_floats(), floats);
                prop_assert_eq!(&doc.root().to_map(), &map);
                for (k, v) in &map {
                    let found = doc.root().get(k).map(|j| j.to_value());
                    prop_assert_eq!(found.as_ref(), Some(v));
                }
                prop_assert!(doc.root().get("no such member").is_none() || map.contains_key("no such member"));
                let names: Vec<&str> = doc.root().iter().map(|(k, _)| k).collect();
                prop_assert!(names.windows(2).all(|w| jsonb_key_order(w[0], w[1]).is_lt()), "{:?}", names);
            }
            Ok(())
        })
        .unwrap();
}

/// The simple path of `Doc::parse` (objects, arrays, unescaped strings, integers, literals)
/// builds exactly the tree serde_json's path builds, or gives up: on the texts above (escapes,
/// U+0000, lone surrogates, -0, integers past i64 and u64, fractions, exponents, duplicate
/// names, objects past 32 members) and their mutations (control characters, stray bytes,
/// truncation), both paths give the same tree or the same error. Fails if the simple path
/// accepts anything serde_json refuses or reads anything differently, and if it stops deciding
/// the common case.
#[test]
fn simple_path_builds_what_serde_builds() {
    use auth_jwt_core::Doc;
    use std::cell::Cell;
    let (decided, total) = (Cell::new(0u32), Cell::new(0u32));
    let strategy = (json_object_text(), prop_oneof![Just(vec![]), proptest::collection::vec(mutation(), 1..3)]);
    TestRunner::new(Config { cases: cases() / 2, failure_persistence: None, ..Config::default() })
        .run(&strategy, |(text, ms)| {
            let text = if ms.is_empty() { text } else { apply(&text, &ms) };
            let simple = Doc::parse_with(text.clone(), true);
            let serde = Doc::parse_with(text.clone(), false);
            total.set(total.get() + 1);
            match (simple, serde) {
                (Ok((a, used)), Ok((b, false))) => {
                    decided.set(decided.get() + u32::from(used));
                    prop_assert_eq!(a.debug_tree(), b.debug_tree(), "{}", text);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b, "{}", text),
                (a, b) => {
                    prop_assert!(false, "{}: simple path {:?}, serde path {:?}", text, a.map(|d| d.1), b.map(|d| d.1))
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(
        decided.get() * 10 >= total.get(),
        "the simple path decided only {} of {} texts",
        decided.get(),
        total.get()
    );
}

/// base64url: the fast path (base64-simd) accepts exactly the texts the strict scalar engine
/// accepts, and decodes them to the same bytes: encodings of random bytes of every length mod 3,
/// and those mutated with padding, whitespace, the standard alphabet, a changed last character
/// (non-zero trailing bits), non-ASCII and truncation. Lengths reach past the SIMD block sizes.
#[test]
fn base64url_fast_path_agrees_with_the_scalar_engine() {
    use auth_jwt_core::b64;
    let edit = prop_oneof![
        (any::<prop::sample::Index>(), prop::sample::select(b"=+/ \n\t.-_AQgw09zZ\x00".to_vec()))
            .prop_map(|(i, b)| (i, Some(b as char))),
        (any::<prop::sample::Index>(), Just(Some('é'))),
        (any::<prop::sample::Index>(), Just(None)),
    ];
    let strategy =
        (proptest::collection::vec(any::<u8>(), 0..700), proptest::collection::vec(edit, 0..3), any::<bool>());
    TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() })
        .run(&strategy, |(bytes, edits, last)| {
            let mut text: Vec<char> = b64::encode(&bytes).chars().collect();
            if last && !text.is_empty() {
                // Any last character: most set trailing bits and are not canonical.
                let i = text.len() - 1;
                text[i] = char::from(b"AQgwBCDEFabcxyz-_"[bytes.len() % 17]);
            }
            for (at, c) in edits {
                if text.is_empty() {
                    break;
                }
                let i = at.index(text.len());
                match c {
                    Some(c) => text[i] = c,
                    None => text.truncate(i),
                }
            }
            let text: String = text.into_iter().collect();
            let (fast, scalar) = (b64::decode(&text), b64::decode_scalar(&text));
            prop_assert_eq!(&fast, &scalar, "{:?}", text);
            if scalar.is_ok() && text == b64::encode(&bytes) {
                prop_assert_eq!(fast.unwrap(), bytes);
            }
            Ok(())
        })
        .unwrap();
}
