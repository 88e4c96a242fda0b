//! Every algorithm Better Auth signs with (EdDSA, ES256, ES512, RS256, PS256), equally strict:
//! the key decides the algorithm, keys are validated when loaded, signatures have exactly the
//! form JWS defines. Published vectors: RFC 7515 A.2-A.4 and Wycheproof ECDSA (P1363), RSA
//! PKCS#1 v1.5 and RSA-PSS. Each rule here has a case that fails if the check is removed.

mod common;

use auth_jwt_core::{b64, verify, verify_signature, Alg, ErrorKind, Expect, Key, KeyRow, KeySet, Validation};
use common::*;
use serde_json::{json, Value};

fn key_row<'a>(id: &'a str, jwk: &'a str, alg: Option<&'a str>, crv: Option<&'a str>) -> KeyRow<'a> {
    KeyRow { id, public_key: jwk, expires_at: None, alg, crv }
}

fn reason(jwk: &str, alg: Option<&str>, crv: Option<&str>) -> String {
    Key::from_row(&key_row("k", jwk, alg, crv)).key.expect_err("must be unusable")
}

#[test]
fn every_algorithm_verifies_and_refuses_a_flipped_bit() {
    for alg in Alg::ALL {
        for seed in [1, 2] {
            let s = Signer::new(alg, seed);
            let keys = keyset_of(&[("k1", &s)]);
            let t = token_with(&s, "k1");
            let v = verify(&t, &keys, &validation(), NOW).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(
                v.claims.root().get("uuid").and_then(|u| u.as_str()),
                Some("112e81d8-d62d-49d6-8a62-7e59b4050b0d")
            );
            let (input, sig) = t.rsplit_once('.').unwrap();
            let mut bad = b64::decode(sig).unwrap();
            let last = bad.len() - 1;
            bad[last / 2] ^= 0x01;
            let forged = format!("{input}.{}", b64::encode(&bad));
            assert_eq!(
                verify(&forged, &keys, &validation(), NOW).unwrap_err().kind(),
                ErrorKind::InvalidSignature,
                "{alg}"
            );
            // Another key of the same algorithm under the same kid: refused.
            let other = Signer::new(alg, seed + 1);
            let t = token_with(&other, "k1");
            assert_eq!(verify(&t, &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::InvalidSignature, "{alg}");
        }
    }
}

#[test]
fn rsa_4096_verifies() {
    for alg in [Alg::RS256, Alg::PS256] {
        let s = Signer::new(alg, 4);
        let keys = keyset_of(&[("k", &s)]);
        assert_eq!(keys.keys()[0].key.as_ref().unwrap().describe(), "RSA 4096 bits");
        assert!(verify(&token_with(&s, "k"), &keys, &validation(), NOW).is_ok(), "{alg}");
    }
}

/// The key decides, never the token: a header naming another algorithm than the key's finds no
/// key, even when the signature itself would check out under that other algorithm.
#[test]
fn the_key_decides_the_algorithm() {
    let ed = Signer::new(Alg::EdDSA, 1);
    let p256 = Signer::new(Alg::ES256, 1);
    let p521 = Signer::new(Alg::ES512, 1);
    let rs = Signer::new(Alg::RS256, 1);
    let ps = Signer::new(Alg::PS256, 1); // the same RSA key material as `rs`
    let keys = keyset_of(&[("ed", &ed), ("p256", &p256), ("p521", &p521), ("rs", &rs), ("ps", &ps)]);
    for (kid, key_alg) in
        [("ed", Alg::EdDSA), ("p256", Alg::ES256), ("p521", Alg::ES512), ("rs", Alg::RS256), ("ps", Alg::PS256)]
    {
        for header_alg in Alg::ALL.into_iter().filter(|a| *a != key_alg) {
            // Signed correctly for the header's algorithm where the key material allows it (RS256
            // and PS256 share the RSA key): the refusal is about the algorithm, not the signature.
            let signer = match header_alg {
                Alg::RS256 => &rs,
                Alg::PS256 => &ps,
                Alg::EdDSA => &ed,
                Alg::ES256 => &p256,
                Alg::ES512 => &p521,
            };
            let t = sign_with(signer, &format!(r#"{{"alg":"{header_alg}","kid":"{kid}"}}"#), &claims_json(NOW + 600));
            let e = verify(&t, &keys, &validation(), NOW).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{header_alg} against {key_alg}: {e}");
            assert!(e.detail().contains(&format!("verifies {key_alg}")), "{e}");
        }
    }
    // Every HMAC and "none", against every key: refused before any key is looked up.
    for alg in ["HS256", "HS384", "HS512", "none"] {
        for kid in ["ed", "p256", "p521", "rs", "ps"] {
            let t = format!(
                "{}.{}.{}",
                b64::encode(format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#).as_bytes()),
                b64::encode(claims_json(NOW + 600).as_bytes()),
                b64::encode(&[7u8; 32])
            );
            assert_eq!(verify(&t, &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::UnsupportedAlgorithm);
        }
    }
}

#[test]
fn rows_and_their_jwks_must_agree() {
    let p256 = Signer::new(Alg::ES256, 1).public_jwk();
    let p521 = Signer::new(Alg::ES512, 1).public_jwk();
    let rsa = Signer::new(Alg::RS256, 1).public_jwk();
    // NULL alg and crv (older Better Auth rows): the JWK alone decides, where it can.
    assert_eq!(Key::from_row(&key_row("k", &p256, None, None)).alg(), Some(Alg::ES256));
    assert_eq!(Key::from_row(&key_row("k", &p521, None, None)).alg(), Some(Alg::ES512));
    assert!(reason(&rsa, None, None).contains("neither the alg column nor publicKey says which"));
    // The JWK's own alg decides an RSA key, and must agree with the row's.
    let rsa_ps = rsa.replacen('{', r#"{"alg":"PS256","#, 1);
    assert_eq!(Key::from_row(&key_row("k", &rsa_ps, None, None)).alg(), Some(Alg::PS256));
    assert_eq!(Key::from_row(&key_row("k", &rsa_ps, Some("PS256"), None)).alg(), Some(Alg::PS256));
    assert!(reason(&rsa_ps, Some("RS256"), None).contains("publicKey alg is PS256, but the alg column is RS256"));
    // Columns that contradict the JWK.
    assert!(
        reason(&p256, Some("ES512"), Some("P-256")).contains("alg column is ES512, but publicKey is an EC P-256 key")
    );
    assert!(reason(&p256, Some("ES256"), Some("P-521")).contains("crv column is \"P-521\""));
    assert!(reason(&rsa, Some("RS256"), Some("P-256")).contains("but publicKey is an RSA key"));
    assert!(reason(&rsa, Some("ES256"), None).contains("alg column is ES256, but publicKey is an RSA key"));
    assert!(reason(&p256, Some("ES384"), None).contains("not an algorithm auth_jwt verifies"));
    assert!(reason(&rsa, Some("RS512"), None).contains("not an algorithm auth_jwt verifies"));
}

fn with(jwk: &str, member: &str, value: Value) -> String {
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(jwk).unwrap();
    v.insert(member.into(), value);
    Value::Object(v).to_string()
}

fn member_bytes(jwk: &str, member: &str) -> Vec<u8> {
    let v: Value = serde_json::from_str(jwk).unwrap();
    b64::decode(v[member].as_str().unwrap()).unwrap()
}

#[test]
fn ec_keys_are_validated_when_loaded() {
    for (alg, len, curve) in [(Alg::ES256, 32, "P-256"), (Alg::ES512, 66, "P-521")] {
        let jwk = Signer::new(alg, 1).public_jwk();
        let alg_name = Some(alg.name());
        let (x, y) = (member_bytes(&jwk, "x"), member_bytes(&jwk, "y"));
        // Not on the curve.
        let mut off = y.clone();
        off[len - 1] ^= 1;
        assert!(reason(&with(&jwk, "y", json!(b64::encode(&off))), alg_name, None)
            .contains(&format!("not a point on {curve}")));
        // Coordinates must each be exactly the curve's length, even when the total is right.
        let short_x =
            with(&with(&jwk, "x", json!(b64::encode(&x[1..]))), "y", json!(b64::encode(&[&y[..], &[0]].concat())));
        assert!(reason(&short_x, alg_name, None).contains(&format!("x is {} bytes, not {len}", len - 1)));
        let long_y = with(&jwk, "y", json!(b64::encode(&[&[0u8][..], &y[..]].concat())));
        assert!(reason(&long_y, alg_name, None).contains(&format!("y is {} bytes, not {len}", len + 1)));
        // All zero (no affine point is the identity), and a coordinate of p or more.
        let zero = with(&with(&jwk, "x", json!(b64::encode(&vec![0; len]))), "y", json!(b64::encode(&vec![0; len])));
        assert!(reason(&zero, alg_name, None).contains("not a point"));
        let big = with(&jwk, "x", json!(b64::encode(&vec![0xff; len])));
        assert!(reason(&big, alg_name, None).contains("not a point"));
        // base64url as strictly as in tokens.
        let padded = with(&jwk, "x", json!(format!("{}=", b64::encode(&x))));
        assert!(reason(&padded, alg_name, None).contains("publicKey x"));
        assert!(reason(&with(&jwk, "d", json!("AAAA")), alg_name, None).contains("private key material"));
    }
}

/// An RSA JWK for arbitrary n and e (for keys no one can sign with: the loader must refuse them).
fn rsa_jwk(n: &[u8], e: &[u8]) -> String {
    format!(r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#, b64::encode(n), b64::encode(e))
}

#[test]
fn rsa_keys_are_validated_when_loaded() {
    let jwk = Signer::new(Alg::RS256, 1).public_jwk();
    let n = member_bytes(&jwk, "n");
    let rs = Some("RS256");
    assert!(Key::from_row(&key_row("k", &jwk, rs, None)).key.is_ok());
    // Modulus sizes: 2048 to 8192 bits, counted exactly (2047 bits in 256 bytes is too short).
    let mut n2047 = n.clone();
    n2047[0] = 0x7f;
    assert!(reason(&rsa_jwk(&n2047, &[1, 0, 1]), rs, None).contains("2047-bit modulus"));
    assert!(reason(&rsa_jwk(&n[..128], &[1, 0, 1]), rs, None).contains("1024-bit modulus"));
    let mut n8200 = vec![0xc5; 1025];
    n8200[1024] |= 1;
    assert!(reason(&rsa_jwk(&n8200, &[1, 0, 1]), rs, None).contains("8200-bit modulus"));
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    assert!(reason(&rsa_jwk(&even, &[1, 0, 1]), rs, None).contains("even"));
    // Exponent: odd, at least 3, below 2^33; minimal encodings only.
    for e in [&[1u8][..], &[2], &[1, 0, 0], &[2, 0, 0, 0, 1], &[0xff; 9]] {
        assert!(reason(&rsa_jwk(&n, e), rs, None).contains("publicKey e must be odd"), "{e:?}");
    }
    assert!(reason(&rsa_jwk(&[&[0u8][..], &n[..]].concat(), &[1, 0, 1]), rs, None).contains("leading zero"));
    assert!(reason(&rsa_jwk(&n, &[0, 1, 0, 1]), rs, None).contains("leading zero"));
    assert!(Key::from_row(&key_row("k", &rsa_jwk(&n, &[3]), rs, None)).key.is_ok(), "e = 3 is a valid exponent");
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(reason(&with(&jwk, private, json!("AQAB")), rs, None).contains("private key material"));
    }
    // An unknown kty or crv makes that row unusable, not the others.
    let good = Signer::new(Alg::ES256, 1);
    let good_jwk = good.public_jwk();
    let keys = KeySet::from_rows([
        key_row("weird", r#"{"kty":"oct","x":"AAAA"}"#, None, None),
        key_row("ec384", r#"{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"}"#, None, None),
        key_row("good", &good_jwk, Some("ES256"), Some("P-256")),
    ]);
    assert!(verify(&token_with(&good, "good"), &keys, &validation(), NOW).is_ok());
    assert_eq!(keys.keys().iter().filter(|k| k.key.is_err()).count(), 2);
}

/// n - s for a big-endian s below n: the other valid ECDSA signature (high S).
fn negate(n: &[u8], s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; n.len()];
    let mut borrow = 0i16;
    for i in (0..n.len()).rev() {
        let d = i16::from(n[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + if d < 0 { 256 } else { 0 }) as u8;
    }
    out
}

const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

#[test]
fn ecdsa_signatures_as_jws_defines_them() {
    let s = Signer::new(Alg::ES256, 1);
    let keys = keyset_of(&[("k", &s)]);
    let t = token_with(&s, "k");
    let (input, sig) = t.rsplit_once('.').unwrap();
    let sig = b64::decode(sig).unwrap();
    let (r, s_) = sig.split_at(32);
    let with_sig = |bytes: &[u8]| format!("{input}.{}", b64::encode(bytes));
    let n = hex(P256_N);
    // The high-S twin is a valid JWS signature (jose accepts it; JWS does not require low S).
    assert!(verify(&with_sig(&[r, &negate(&n, s_)[..]].concat()), &keys, &validation(), NOW).is_ok());
    // r and s in [1, n - 1].
    for bad in
        [[&[0u8; 32][..], s_].concat(), [r, &[0u8; 32][..]].concat(), [&n[..], s_].concat(), [r, &n[..]].concat()]
    {
        assert_eq!(verify(&with_sig(&bad), &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::InvalidSignature);
    }
    // DER is not JWS: the same signature DER-encoded is refused for its length.
    let der = {
        let int = |v: &[u8]| {
            let v: Vec<u8> = v.iter().skip_while(|b| **b == 0).copied().collect();
            let v = if v[0] & 0x80 != 0 { [&[0u8][..], &v[..]].concat() } else { v };
            [&[2u8, v.len() as u8][..], &v[..]].concat()
        };
        let body = [int(r), int(s_)].concat();
        [&[0x30u8, body.len() as u8][..], &body[..]].concat()
    };
    let e = verify(&with_sig(&der), &keys, &validation(), NOW).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Malformed);
    assert!(e.detail().contains("never DER"), "{e}");
}

#[test]
fn rsa_signatures_are_exactly_as_long_as_the_modulus() {
    for alg in [Alg::RS256, Alg::PS256] {
        let s = Signer::new(alg, 1);
        let keys = keyset_of(&[("k", &s)]);
        let t = token_with(&s, "k");
        let (input, sig) = t.rsplit_once('.').unwrap();
        let sig = b64::decode(sig).unwrap();
        for bad in [[&[0u8][..], &sig[..]].concat(), sig[1..].to_vec(), [&sig[..], &sig[..]].concat()] {
            let e = verify(&format!("{input}.{}", b64::encode(&bad)), &keys, &validation(), NOW).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidSignature, "{alg}");
            assert!(e.detail().contains("modulus is 256"), "{e}");
        }
    }
}

/// Better Auth's cookie-cache JWTs use the same keys but are session state, not bearer tokens:
/// typ "better-auth.session-cache+jwt", aud "better-auth:session-cache", sid = the session's
/// secret token. Refused under every algorithm, even with the audience check off.
#[test]
fn cookie_cache_tokens_are_never_bearer_tokens() {
    let mut any = validation();
    any.audience = Expect::Any;
    for alg in Alg::ALL {
        let s = Signer::new(alg, 1);
        let keys = keyset_of(&[("k", &s)]);
        let payload = format!(
            r#"{{"session":{{"id":"s1","token":"secret"}},"sid":"secret","aud":"better-auth:session-cache","iss":"{ISS}","exp":{}}}"#,
            NOW + 300
        );
        let header = format!(r#"{{"alg":"{alg}","kid":"k","typ":"better-auth.session-cache+jwt"}}"#);
        let e = verify(&sign_with(&s, &header, &payload), &keys, &any, NOW).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed, "{alg}");
        assert!(e.detail().contains("typ"), "{e}");
        // And without the typ, the audience still refuses it where it is checked.
        let bare = sign_with(&s, &format!(r#"{{"alg":"{alg}","kid":"k"}}"#), &payload);
        assert_eq!(verify(&bare, &keys, &validation(), NOW).unwrap_err().kind(), ErrorKind::InvalidClaims);
    }
}

fn vectors(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn rfc7515_examples_verify() {
    let v = vectors("rfc7515.json");
    let mut any = Validation::for_origin("x");
    any.issuer = Expect::Any;
    any.audience = Expect::Any;
    for (name, alg) in [("A2_RS256", Alg::RS256), ("A3_ES256", Alg::ES256), ("A4_ES512", Alg::ES512)] {
        let jwk = v[name]["jwk"].to_string();
        let keys = KeySet::from_rows([key_row("k", &jwk, Some(alg.name()), None)]);
        let jws = v[name]["jws"].as_str().unwrap();
        let c = auth_jwt_core::token::parse(jws, 16384).unwrap();
        let (key, _) = keys.select(None, c.header.alg, 0, 0).unwrap();
        verify_signature(&c, key).unwrap_or_else(|e| panic!("{name}: {e}"));
        // A flipped byte of the payload breaks it.
        let mut tampered = c.clone();
        let input = format!("{}x", std::str::from_utf8(c.signing_input).unwrap());
        tampered.signing_input = input.as_bytes();
        assert!(verify_signature(&tampered, key).is_err(), "{name}");
        // Through the whole verifier: A.2 and A.3 carry a JWT payload ({"iss":"joe", "exp":...}),
        // valid at the RFC's time when iss and aud are not required; A.4's payload is not JSON.
        let at = 1_300_819_000;
        if name == "A4_ES512" {
            assert_eq!(verify(jws, &keys, &any, at).unwrap_err().kind(), ErrorKind::Malformed);
        } else {
            assert_eq!(
                verify(jws, &keys, &any, at).unwrap().claims.root().get("iss").and_then(|i| i.as_str()),
                Some("joe"),
                "{name}"
            );
            assert_eq!(verify(jws, &keys, &validation(), at).unwrap_err().kind(), ErrorKind::InvalidClaims);
        }
    }
}

fn check(tc: u64, comment: &str, expected: &wycheproof::TestResult, ok: bool, acceptable_ok: bool) {
    match expected {
        wycheproof::TestResult::Valid => assert!(ok, "tcId {tc} ({comment}) must verify"),
        wycheproof::TestResult::Invalid => assert!(!ok, "tcId {tc} ({comment}) must not verify"),
        wycheproof::TestResult::Acceptable => assert_eq!(ok, acceptable_ok, "tcId {tc} ({comment})"),
    }
}

fn raw_verify(key: &Key, msg: &[u8], sig: &[u8]) -> bool {
    key.key.as_ref().is_ok_and(|k| k.verify(msg, sig).is_ok())
}

#[test]
fn wycheproof_ecdsa_p1363() {
    use wycheproof::ecdsa::{TestName, TestSet};
    for (name, alg) in
        [(TestName::EcdsaSecp256r1Sha256P1363, Alg::ES256), (TestName::EcdsaSecp521r1Sha512P1363, Alg::ES512)]
    {
        let set = TestSet::load(name).unwrap();
        let mut n = 0;
        for group in &set.test_groups {
            let jwk = group.jwk.as_ref().expect("P1363 groups carry a JWK");
            let crv = if alg == Alg::ES256 { "P-256" } else { "P-521" };
            let row = format!(
                r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}"}}"#,
                b64::encode(&jwk.affine_x),
                b64::encode(&jwk.affine_y)
            );
            let key = Key::from_row(&key_row("k", &row, Some(alg.name()), None));
            for t in &group.tests {
                n += 1;
                // Through the token path's length rule too: JWS signatures are exactly 2 x field bytes.
                let fixed = Some(t.sig.len()) == alg.signature_len();
                check(t.tc_id as u64, &t.comment, &t.result, fixed && raw_verify(&key, &t.msg, &t.sig), false);
            }
        }
        assert!(n > 200, "{n} cases for {alg}");
    }
}

#[test]
fn wycheproof_rsa_pkcs1_sha256() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut n = 0;
    for name in [TestName::Rsa2048Sha256, TestName::Rsa3072Sha256, TestName::Rsa4096Sha256, TestName::Rsa8192Sha256] {
        for group in &TestSet::load(name).unwrap().test_groups {
            let jwk = group.jwk.as_ref().expect("a JWK");
            let key = Key::from_row(&key_row("k", &rsa_jwk(&jwk.n, &jwk.e), Some("RS256"), None));
            assert!(key.key.is_ok(), "{:?}", key.key.as_ref().err());
            for t in &group.tests {
                n += 1;
                // "Acceptable" here is a DigestInfo without NULL: refused, as the strict encoding requires.
                check(t.tc_id as u64, &t.comment, &t.result, raw_verify(&key, &t.msg, &t.sig), false);
            }
        }
    }
    assert!(n > 900, "{n} cases");
}

#[test]
fn wycheproof_rsa_pss_sha256_salt_32_only() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let mut n = 0;
    for name in [
        TestName::RsaPss2048Sha256Mgf1SaltLen32,
        TestName::RsaPss3072Sha256Mgf1SaltLen32,
        TestName::RsaPss4096Sha256Mgf1SaltLen32,
    ] {
        for group in &TestSet::load(name).unwrap().test_groups {
            let jwk = group.jwk.as_ref().expect("a JWK");
            let key = Key::from_row(&key_row("k", &rsa_jwk(&jwk.n, &jwk.e), Some("PS256"), None));
            for t in &group.tests {
                n += 1;
                check(t.tc_id as u64, &t.comment, &t.result, raw_verify(&key, &t.msg, &t.sig), false);
            }
        }
    }
    // PS256 means salt 32, SHA-256 and MGF1-SHA-256: signatures valid under any other parameters
    // are refused (the one vector re-signed with salt 32 aside).
    let minimal = |v: &[u8]| v.iter().copied().skip_while(|b| *b == 0).collect::<Vec<u8>>();
    for name in [TestName::RsaPss2048Sha256Mgf1SaltLen0, TestName::RsaPssmisc] {
        for group in &TestSet::load(name).unwrap().test_groups {
            let (n_, e_) = (minimal(&group.key.n), minimal(&group.key.e));
            let key = Key::from_row(&key_row("k", &rsa_jwk(&n_, &e_), Some("PS256"), None));
            let ps256 = group.salt_size == 32
                && format!("{:?}", group.hash).contains("256")
                && group.mgf_hash.as_ref().is_some_and(|h| format!("{h:?}").contains("256"));
            for t in &group.tests {
                n += 1;
                // Marked invalid for salt 0, this one is a genuine salt-32 signature.
                let resigned = t.comment.contains("s_len changed to 32");
                let expect = resigned || (ps256 && matches!(t.result, wycheproof::TestResult::Valid));
                let ok = raw_verify(&key, &t.msg, &t.sig);
                assert_eq!(ok, expect, "tcId {} ({}), salt {}", t.tc_id, t.comment, group.salt_size);
            }
        }
    }
    assert!(n > 500, "{n} cases");
}
