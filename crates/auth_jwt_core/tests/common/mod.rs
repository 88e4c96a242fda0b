#![allow(dead_code)]
//! Token minting for tests: real signers over hand-written header and payload JSON.

pub mod signers;

use auth_jwt_core::b64;
use auth_jwt_core::{Alg, KeyRow, KeySet, Validation};
use ed25519_dalek::{Signer as _, SigningKey};
pub use signers::Signer;

pub const ISS: &str = "https://app.example.com";
pub const NOW: i64 = 1_800_000_000;

pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn public_jwk(sk: &SigningKey) -> String {
    format!(r#"{{"crv":"Ed25519","x":"{}","kty":"OKP"}}"#, b64::encode(sk.verifying_key().as_bytes()))
}

/// Sign exactly these header and payload bytes.
pub fn sign_raw(sk: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(payload.as_bytes()));
    let sig = sk.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig.to_bytes()))
}

pub fn claims_json(exp: i64) -> String {
    format!(
        r#"{{"iat":{},"uuid":"112e81d8-d62d-49d6-8a62-7e59b4050b0d","sub":"hoWrILCMrtwUfX68Xe2TFVthVhEMjnNc","exp":{exp},"iss":"{ISS}","aud":"{ISS}"}}"#,
        exp - 900
    )
}

/// A Better-Auth-shaped token for key `kid` signed by `sk`.
pub fn token(sk: &SigningKey, kid: &str) -> String {
    sign_raw(sk, &format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#), &claims_json(NOW + 600))
}

pub fn keyset(keys: &[(&str, &SigningKey)]) -> KeySet {
    let jwks: Vec<(String, String)> = keys.iter().map(|(id, sk)| (id.to_string(), public_jwk(sk))).collect();
    KeySet::from_rows(jwks.iter().map(|(id, pk)| KeyRow { id, public_key: pk, expires_at: None, alg: None, crv: None }))
}

/// Sign exactly these header and payload bytes with any signer.
pub fn sign_with(signer: &Signer, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(payload.as_bytes()));
    let sig = signer.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

/// A Better-Auth-shaped token of the signer's algorithm for key `kid`.
pub fn token_with(signer: &Signer, kid: &str) -> String {
    sign_with(signer, &format!(r#"{{"alg":"{}","kid":"{kid}"}}"#, signer.alg()), &claims_json(NOW + 600))
}

/// Key rows as Better Auth 1.7 writes them: the alg and crv columns filled in.
pub fn keyset_of(keys: &[(&str, &Signer)]) -> KeySet {
    let rows: Vec<(String, String, Alg)> =
        keys.iter().map(|(id, s)| (id.to_string(), s.public_jwk(), s.alg())).collect();
    KeySet::from_rows(rows.iter().map(|(id, pk, alg)| KeyRow {
        id,
        public_key: pk,
        expires_at: None,
        alg: Some(alg.name()),
        crv: match alg {
            Alg::EdDSA => Some("Ed25519"),
            Alg::ES256 => Some("P-256"),
            Alg::ES512 => Some("P-521"),
            Alg::RS256 | Alg::PS256 => None,
        },
    }))
}

pub fn validation() -> Validation {
    Validation::for_origin(ISS)
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
