//! jwt_explain's core: one row per step, never a panic, agreeing with verify.

mod common;

use auth_jwt_core::{explain, verify, Step};
use common::*;

fn by_name(steps: &[Step], name: &str) -> Step {
    steps.iter().find(|s| s.name == name).cloned().unwrap_or_else(|| panic!("no step {name}"))
}

const STEPS: [&str; 14] = [
    "size",
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
    "sub",
    "uuid claim",
];

#[test]
fn a_good_token_passes_every_step() {
    let sk = signing_key(1);
    let keys = keyset(&[("k1", &sk)]);
    let steps = explain(&token(&sk, "k1"), &keys, &validation(), NOW, "uuid");
    assert_eq!(steps.iter().map(|s| s.name).collect::<Vec<_>>(), STEPS);
    for s in &steps {
        assert_eq!(s.ok, Some(true), "{s:?}");
    }
}

#[test]
fn each_failure_is_located() {
    let (a, b) = (signing_key(1), signing_key(2));
    let keys = keyset(&[("k1", &a)]);
    let v = validation();
    let forged = explain(&token(&b, "k1"), &keys, &v, NOW, "uuid");
    assert_eq!(by_name(&forged, "signature").ok, Some(false));
    assert_eq!(by_name(&forged, "exp").ok, Some(true), "claims still examined");
    assert!(by_name(&forged, "payload").detail.contains("unverified"));

    let expired =
        explain(&sign_raw(&a, r#"{"alg":"EdDSA","kid":"k1"}"#, &claims_json(NOW - 100)), &keys, &v, NOW, "uuid");
    assert_eq!(by_name(&expired, "exp").ok, Some(false));
    assert_eq!(by_name(&expired, "signature").ok, Some(true));

    let unknown = explain(&token(&a, "nope"), &keys, &v, NOW, "uuid");
    assert_eq!(by_name(&unknown, "key").ok, Some(false));
    assert_eq!(by_name(&unknown, "signature").ok, None);

    let hs = explain(&sign_raw(&a, r#"{"alg":"HS256","kid":"k1"}"#, &claims_json(NOW + 100)), &keys, &v, NOW, "uuid");
    assert_eq!(by_name(&hs, "algorithm").ok, Some(false));
    assert_eq!(by_name(&hs, "key").ok, None);

    let huge = explain(&"a".repeat(20_000), &keys, &v, NOW, "uuid");
    assert_eq!(by_name(&huge, "size").ok, Some(false));
    assert!(huge[1..].iter().all(|s| s.ok.is_none()));

    let no_uuid = explain(
        &sign_raw(
            &a,
            r#"{"alg":"EdDSA","kid":"k1"}"#,
            &format!(r#"{{"exp":{},"iss":"{ISS}","aud":"{ISS}"}}"#, NOW + 10),
        ),
        &keys,
        &v,
        NOW,
        "uuid",
    );
    assert_eq!(by_name(&no_uuid, "uuid claim").ok, Some(false));
}

#[test]
fn explain_and_verify_run_the_same_claim_rules() {
    // Before the pipeline was one, explain had no rule for sub: a signed token whose sub is not a
    // string passed every step of the explanation and failed verification.
    let a = signing_key(1);
    let keys = keyset(&[("k1", &a)]);
    let v = validation();
    for (sub, ok) in [("5", false), ("null", false), (r#"{"id":1}"#, false), (r#""user1""#, true)] {
        let t = sign_raw(
            &a,
            r#"{"alg":"EdDSA","kid":"k1"}"#,
            &format!(r#"{{"exp":{},"iss":"{ISS}","aud":"{ISS}","sub":{sub}}}"#, NOW + 10),
        );
        let steps = explain(&t, &keys, &v, NOW, "uuid");
        assert_eq!(by_name(&steps, "sub").ok, Some(ok), "{sub}");
        let all_ok = steps.iter().filter(|s| s.name != "uuid claim").all(|s| s.ok == Some(true));
        assert_eq!(all_ok, verify(&t, &keys, &v, NOW).is_ok(), "{sub}");
    }
}

#[test]
fn never_panics_and_agrees_with_verify() {
    let sk = signing_key(1);
    let keys = keyset(&[("k1", &sk)]);
    let v = validation();
    let good = token(&sk, "k1");
    let mut inputs = vec![String::new(), ".".into(), "..".into(), "a.b.c".into(), good.clone(), format!("{good}.x")];
    for i in 0..good.len() {
        let mut t = good.clone().into_bytes();
        t[i] = if t[i] == b'A' { b'.' } else { b'A' };
        inputs.push(String::from_utf8(t).unwrap());
        inputs.push(format!("{}{}", &good[..i], &good[i + 1..]));
    }
    for t in &inputs {
        let steps = explain(t, &keys, &v, NOW, "uuid");
        assert_eq!(steps.len(), STEPS.len(), "{t}");
        let all_ok = steps.iter().filter(|s| s.name != "uuid claim").all(|s| s.ok == Some(true));
        assert_eq!(all_ok, verify(t, &keys, &v, NOW).is_ok(), "{t}");
        for s in &steps {
            for part in good.split('.') {
                assert!(!s.detail.contains(&part[..12.min(part.len())]), "{s:?} leaks");
            }
        }
    }
}
