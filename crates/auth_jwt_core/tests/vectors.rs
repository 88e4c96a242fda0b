//! Published vectors: RFC 8037, a real Better Auth token, Wycheproof Ed25519, and the twelve
//! cases of "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko; SSR 2020).

mod common;

use auth_jwt_core::{
    b64, verify, verify_signature, Alg, Compact, ErrorKind, Expect, Header, Key, KeyRow, KeySet, PublicKey, Validation,
};
use common::hex;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;

fn vectors(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A Compact over arbitrary message bytes, to run the JWT verifier's signature step on raw vectors.
fn raw<'a>(msg: &'a [u8], sig: &[u8]) -> Option<Compact<'a>> {
    Some(Compact {
        header: Header { alg: Alg::EdDSA, kid: None },
        signing_input: msg,
        payload: Vec::new(),
        signature: <[u8; 64]>::try_from(sig).ok()?.to_vec(),
    })
}

#[test]
fn rfc8037_a4_signature_verifies_but_is_not_a_jwt() {
    let v = vectors("rfc8037.json");
    let jwk = v["A2_public_jwk"].to_string();
    let keys = KeySet::from_rows([KeyRow { id: "k", public_key: &jwk, expires_at: None, alg: None, crv: None }]);
    let jws = v["A4_jws"].as_str().unwrap();

    let c = auth_jwt_core::token::parse(jws, 16384).unwrap();
    let (key, _) = keys.select(None, Alg::EdDSA, 0, 0).unwrap();
    verify_signature(&c, key).expect("A.4 is a valid Ed25519 JWS");

    let mut any = Validation::for_origin("x");
    any.issuer = Expect::Any;
    any.audience = Expect::Any;
    let e = verify(jws, &keys, &any, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Malformed);
    assert!(e.detail().starts_with("payload"), "{e}");
}

#[test]
fn real_better_auth_token() {
    let v = vectors("better-auth-sample.json");
    let row = &v["jwks_row"];
    let keys = KeySet::from_rows([KeyRow {
        id: row["id"].as_str().unwrap(),
        public_key: row["publicKey"].as_str().unwrap(),
        expires_at: None,
        alg: row["alg"].as_str(),
        crv: row["crv"].as_str(),
    }]);
    let token = v["token"].as_str().unwrap();
    let claims = v["claims"].as_object().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    let val = Validation::for_origin(v["issuer"].as_str().unwrap());

    let ok = verify(token, &keys, &val, iat + 60).unwrap();
    assert_eq!(&ok.claims.root().to_map(), claims, "the claims exactly as Better Auth signed them");
    assert_eq!(ok.kid.as_deref(), row["id"].as_str());
    assert_eq!(ok.valid_until, exp + 29, "valid while now < exp + leeway");
    let parsed: Value = serde_json::from_str(ok.claims.text()).unwrap();
    assert_eq!(parsed.as_object().unwrap(), claims);

    assert!(verify(token, &keys, &val, exp + 29).is_ok());
    assert_eq!(verify(token, &keys, &val, exp + 30).unwrap_err().kind(), ErrorKind::Expired);
    assert_eq!(verify(token, &keys, &val, iat - 31).unwrap_err().kind(), ErrorKind::NotYetValid);
    let other = Validation::for_origin("https://app.example.com");
    assert_eq!(verify(token, &keys, &other, iat).unwrap_err().kind(), ErrorKind::InvalidClaims);
}

/// The twelve cases, in the paper's order (0-11): hex message, public key, signature.
const TAMING: [(&str, &str, &str); 12] = [
    ("8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a0000000000000000000000000000000000000000000000000000000000000000"),
    ("9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04"),
    ("aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab", "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e"),
    ("9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79", "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d", "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009"),
    ("e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c", "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d", "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09"),
    ("e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c", "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d", "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405"),
    ("85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40", "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623", "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514"),
    ("85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40", "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623", "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22"),
    ("9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41", "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f"),
    ("9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41", "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908"),
    ("e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04"),
    ("39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04"),
];

/// The raw signature step accepts exactly case 3 (mixed-order A and R with the cofactorless
/// equation), as the paper's "Dalek strict" row; plain `verify` would also accept 0, 1, 2 and 11.
#[test]
fn taming_the_many_eddsas_signature_step() {
    let mut accepted = vec![];
    for (i, (msg, pk, sig)) in TAMING.iter().enumerate() {
        let (msg, pk, sig) = (hex(msg), hex(pk), hex(sig));
        let Ok(vk) = VerifyingKey::from_bytes(&pk.clone().try_into().unwrap()) else { continue };
        if verify_signature(&raw(&msg, &sig).unwrap(), &PublicKey::from_ed25519(vk)).is_ok() {
            accepted.push(i);
        }
    }
    assert_eq!(accepted, vec![3]);

    // Guard the guard: the same loop with plain verify accepts more, so this test can fail.
    let lax: Vec<usize> = TAMING
        .iter()
        .enumerate()
        .filter(|(_, (m, p, s))| {
            VerifyingKey::from_bytes(&hex(p).try_into().unwrap())
                .map(|vk| {
                    vk.verify_strict(&hex(m), &Signature::from_slice(&hex(s)).unwrap()).is_ok() || {
                        use ed25519_dalek::Verifier;
                        vk.verify(&hex(m), &Signature::from_slice(&hex(s)).unwrap()).is_ok()
                    }
                })
                .unwrap_or(false)
        })
        .map(|(i, _)| i)
        .collect();
    assert!(lax.len() > 1, "plain verify accepts {lax:?}");
}

/// Through the key table as well: a key row must also pass the weak/canonical checks, so the
/// small-order keys of cases 0-2 and the non-canonical key of 10-11 are unusable rows.
#[test]
fn taming_the_many_eddsas_through_key_rows() {
    for (i, (msg, pk, sig)) in TAMING.iter().enumerate() {
        let jwk = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, b64::encode(&hex(pk)));
        let key = Key::from_row(&KeyRow { id: "k", public_key: &jwk, expires_at: None, alg: None, crv: None });
        let (msg, sig) = (hex(msg), hex(sig));
        let ok = key.key.as_ref().map(|vk| verify_signature(&raw(&msg, &sig).unwrap(), vk).is_ok()).unwrap_or(false);
        assert_eq!(ok, i == 3, "case {i}: {:?}", key.key.as_ref().err());
        if matches!(i, 0 | 1 | 10 | 11) {
            assert!(key.key.is_err(), "case {i}: weak or non-canonical key must be unusable");
        }
    }
}

#[test]
fn wycheproof_ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    use wycheproof::TestResult;
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut n = 0;
    for group in &set.test_groups {
        let jwk = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, b64::encode(&group.key.pk));
        let key = Key::from_row(&KeyRow { id: "k", public_key: &jwk, expires_at: None, alg: None, crv: None });
        for t in &group.tests {
            n += 1;
            let ok = match (&key.key, raw(&t.msg, &t.sig)) {
                (Ok(vk), Some(c)) => verify_signature(&c, vk).is_ok(),
                _ => false,
            };
            match t.result {
                TestResult::Valid => assert!(ok, "tcId {} ({}) must verify", t.tc_id, t.comment),
                TestResult::Invalid => assert!(!ok, "tcId {} ({}) must not verify", t.tc_id, t.comment),
                TestResult::Acceptable => {}
            }
        }
    }
    assert!(n > 100, "ran {n} Wycheproof cases");
}
