//! End-to-end verification of minted tokens: every rule of the verifier, through `verify`.

mod common;

use auth_jwt_core::{b64, verify, ErrorKind, KeyRow, KeySet};
use common::*;

#[test]
fn accepts_a_better_auth_shaped_token() {
    let sk = signing_key(1);
    let keys = keyset(&[("kid1", &sk)]);
    let v = verify(&token(&sk, "kid1"), &keys, &validation(), NOW).unwrap();
    assert_eq!(v.claims.root().get("uuid").and_then(|u| u.as_str()), Some("112e81d8-d62d-49d6-8a62-7e59b4050b0d"));
    assert_eq!(v.times.exp, (NOW + 600) as f64);
    assert_eq!(v.valid_until, NOW + 629, "valid while now < exp + leeway");
}

#[test]
fn payload_is_returned_exactly_as_signed() {
    let sk = signing_key(1);
    let keys = keyset(&[("k", &sk)]);
    let payload = format!(
        r#"{{ "exp" : {}, "iss":"{ISS}", "aud":["{ISS}"], "big": 123456789012345678901234567890, "z":1.50 }}"#,
        NOW + 10
    );
    let t = sign_raw(&sk, r#"{"alg":"EdDSA","kid":"k"}"#, &payload);
    assert_eq!(verify(&t, &keys, &validation(), NOW).unwrap().claims.text(), payload);
}

#[test]
fn every_flipped_character_is_rejected() {
    let sk = signing_key(1);
    let keys = keyset(&[("kid1", &sk)]);
    let t = token(&sk, "kid1");
    for i in 0..t.len() {
        let mut bytes = t.clone().into_bytes();
        // Swap to another base64url character (or from '.' to 'A').
        bytes[i] = match bytes[i] {
            b'A' => b'B',
            b'.' => b'A',
            _ => b'A',
        };
        let forged = String::from_utf8(bytes).unwrap();
        let e = verify(&forged, &keys, &validation(), NOW).unwrap_err();
        assert_ne!(e.kind(), ErrorKind::Expired, "position {i}");
    }
}

#[test]
fn every_flipped_bit_in_every_segment_is_rejected() {
    let sk = signing_key(1);
    let keys = keyset(&[("kid1", &sk)]);
    let t = token(&sk, "kid1");
    let segs: Vec<Vec<u8>> = t.split('.').map(|s| b64::decode(s).unwrap()).collect();
    for seg in 0..3 {
        for byte in 0..segs[seg].len() {
            for bit in 0..8 {
                let mut s = segs.clone();
                s[seg][byte] ^= 1 << bit;
                let forged = s.iter().map(|p| b64::encode(p)).collect::<Vec<_>>().join(".");
                assert!(verify(&forged, &keys, &validation(), NOW).is_err(), "segment {seg} byte {byte} bit {bit}");
            }
        }
    }
}

#[test]
fn non_canonical_s_is_rejected() {
    // L, the order of the base point, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let sk = signing_key(1);
    let keys = keyset(&[("kid1", &sk)]);
    let t = token(&sk, "kid1");
    let (input, sig) = t.rsplit_once('.').unwrap();
    let mut sig = b64::decode(sig).unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let s = sig[32 + i] as u16 + L[i] as u16 + carry;
        sig[32 + i] = s as u8;
        carry = s >> 8;
    }
    assert_eq!(carry, 0);
    let forged = format!("{input}.{}", b64::encode(&sig));
    assert_eq!(verify(&forged, &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::InvalidSignature);
}

#[test]
fn key_selection() {
    let (a, b) = (signing_key(1), signing_key(2));
    let keys = keyset(&[("a", &a), ("b", &b)]);
    assert!(verify(&token(&a, "a"), &keys, &validation(), NOW).is_ok());
    assert!(verify(&token(&b, "b"), &keys, &validation(), NOW).is_ok());
    // Signed by b but claiming a's kid.
    assert_eq!(verify(&token(&b, "a"), &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::InvalidSignature);
    // Unknown kid, including one that differs only in case.
    let e = verify(&token(&a, "A"), &keys, &validation(), NOW).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound);
    assert!(e.detail().contains("\"A\""));
    // No kid: only with exactly one usable key.
    let nokid = sign_raw(&a, r#"{"alg":"EdDSA"}"#, &claims_json(NOW + 600));
    assert_eq!(verify(&nokid, &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::KeyNotFound);
    assert!(verify(&nokid, &keyset(&[("a", &a)]), &validation(), NOW).is_ok());
    assert_eq!(
        verify(&nokid, &keyset(&[("b", &b)]), &validation(), NOW).unwrap_err().kind(),
        ErrorKind::InvalidSignature
    );
}

#[test]
fn key_grace_caps_the_validity_of_a_result() {
    let sk = signing_key(1);
    let pk = public_jwk(&sk);
    let keys =
        KeySet::from_rows([KeyRow { id: "k", public_key: &pk, expires_at: Some(NOW - 100), alg: None, crv: None }]);
    let mut v = validation();
    v.key_grace_period = 200;
    let ok = verify(&token(&sk, "k"), &keys, &v, NOW).unwrap();
    assert_eq!(ok.valid_until, NOW + 100, "grace ends before exp");
    v.key_grace_period = 50;
    assert_eq!(verify(&token(&sk, "k"), &keys, &v, NOW).unwrap_err().kind(), ErrorKind::KeyNotFound);
}

#[test]
fn algorithm_is_checked_before_the_key() {
    let sk = signing_key(1);
    let keys = keyset(&[("k", &sk)]);
    let t = sign_raw(&sk, r#"{"alg":"HS256","kid":"nope"}"#, &claims_json(NOW + 600));
    assert_eq!(verify(&t, &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::UnsupportedAlgorithm);
    let t = sign_raw(&sk, r#"{"alg":"Ed25519","kid":"k"}"#, &claims_json(NOW + 600));
    assert!(verify(&t, &keys, &validation(), NOW).is_ok(), "RFC 9864 name");
}

#[test]
fn signature_is_checked_before_the_claims() {
    let (a, b) = (signing_key(1), signing_key(2));
    let keys = keyset(&[("a", &a)]);
    // Expired and forged: the forgery is what gets reported.
    let t = sign_raw(&b, r#"{"alg":"EdDSA","kid":"a"}"#, &claims_json(NOW - 10_000));
    assert_eq!(verify(&t, &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::InvalidSignature);
    // Forged with a payload that is not even JSON.
    let t = sign_raw(&b, r#"{"alg":"EdDSA","kid":"a"}"#, "not json");
    assert_eq!(verify(&t, &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::InvalidSignature);
}

#[test]
fn signed_but_malformed_payloads() {
    let sk = signing_key(1);
    let keys = keyset(&[("k", &sk)]);
    let h = r#"{"alg":"EdDSA","kid":"k"}"#;
    for (payload, why) in [
        (format!(r#"{{"exp":{},"exp":{}}}"#, NOW + 10, NOW + 99999), "duplicate"),
        ("[1,2]".to_string(), "not a JSON object"),
        (format!(r#"{{"exp":{},"x":"a\u0000"}}"#, NOW + 10), "U+0000"),
        ("{\"exp\":1,\"x\":\"\\ud800\"}".to_string(), "JSON"),
    ] {
        let e = verify(&sign_raw(&sk, h, &payload), &keys, &validation(), NOW).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed, "{payload}");
        assert!(e.detail().contains(why), "{payload}: {e}");
    }
    // Invalid UTF-8 in the payload, signed.
    let input = format!("{}.{}", b64::encode(h.as_bytes()), b64::encode(b"{\"exp\":1,\"a\":\"\xff\"}"));
    use ed25519_dalek::Signer;
    let t = format!("{input}.{}", b64::encode(&sk.sign(input.as_bytes()).to_bytes()));
    let e = verify(&t, &keys, &validation(), NOW).unwrap_err();
    assert!(e.detail().contains("UTF-8"), "{e}");
}

#[test]
fn no_detail_contains_token_or_key_material() {
    let sk = signing_key(1);
    let keys = keyset(&[("k", &sk)]);
    let t = token(&sk, "k");
    let (h, rest) = t.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let x = b64::encode(sk.verifying_key().as_bytes());
    let mut v = validation();
    let cases = [
        format!("{h}.{p}.{s}x"),
        format!("{h}.{p}"),
        format!("{h}.{p}.{}", &s[..40]),
        token(&signing_key(2), "k"),
        t.clone(),
    ];
    v.issuer = auth_jwt_core::Expect::Exactly("other".into());
    for c in &cases {
        let e = verify(c, &keys, &v, NOW + 10_000).unwrap_err();
        let d = format!("{e}");
        for secret in [h, p, s, &s[..20], &p[..20], &x[..20]] {
            assert!(!d.contains(secret), "{d}");
        }
    }
}
