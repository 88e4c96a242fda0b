//! Test-only signers for every algorithm auth_jwt verifies, shared by the tests and by
//! crates/mint: Ed25519 keys from a one-byte seed; ECDSA and RSA keys from
//! tests/vectors/test-keys.json (generated once with openssl; never used outside tests).

use auth_jwt_core::{b64, Alg};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use ed25519_dalek::{Signer as _, SigningKey};

const KEYS: &str = include_str!("../vectors/test-keys.json");

pub enum Signer {
    Ed25519(SigningKey),
    Ecdsa(Alg, EcdsaKeyPair),
    Rsa(Alg, RsaKeyPair),
}

fn fixture(kind: &str, seed: u8) -> Vec<u8> {
    let all: serde_json::Value = serde_json::from_str(KEYS).expect("test-keys.json");
    let list = all[kind].as_array().expect("a list of keys");
    let der = list[(usize::from(seed).max(1) - 1) % list.len()].as_str().expect("base64url");
    b64::decode(der).expect("PKCS#8 DER")
}

impl Signer {
    /// The key of `seed` for `alg`: Ed25519 from [seed; 32]; ES256/ES512 keys 1-3; RSA keys 1-3
    /// are 2048 bits and key 4 is 4096 (the same RSA keys sign RS256 and PS256).
    pub fn new(alg: Alg, seed: u8) -> Signer {
        match alg {
            Alg::EdDSA => Signer::Ed25519(SigningKey::from_bytes(&[seed; 32])),
            Alg::ES256 => Signer::Ecdsa(
                alg,
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &fixture("ES256", seed)).unwrap(),
            ),
            Alg::ES512 => Signer::Ecdsa(
                alg,
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, &fixture("ES512", seed)).unwrap(),
            ),
            Alg::RS256 | Alg::PS256 => Signer::Rsa(alg, RsaKeyPair::from_pkcs8(&fixture("RSA", seed)).unwrap()),
        }
    }

    pub fn alg(&self) -> Alg {
        match self {
            Signer::Ed25519(_) => Alg::EdDSA,
            Signer::Ecdsa(a, _) | Signer::Rsa(a, _) => *a,
        }
    }

    /// The public JWK exactly as Better Auth stores it: OKP {crv,x,kty}; EC {kty,x,y,crv};
    /// RSA {kty,n,e} (no alg, no kid).
    pub fn public_jwk(&self) -> String {
        match self {
            Signer::Ed25519(sk) => {
                format!(r#"{{"crv":"Ed25519","x":"{}","kty":"OKP"}}"#, b64::encode(sk.verifying_key().as_bytes()))
            }
            Signer::Ecdsa(alg, kp) => {
                let point = kp.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = if *alg == Alg::ES256 { "P-256" } else { "P-521" };
                format!(
                    r#"{{"kty":"EC","x":"{}","y":"{}","crv":"{crv}"}}"#,
                    b64::encode(&point[1..1 + len]),
                    b64::encode(&point[1 + len..])
                )
            }
            Signer::Rsa(_, kp) => {
                let (n, e) = rsa_public(kp.public_key().as_ref());
                format!(r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#, b64::encode(&n), b64::encode(&e))
            }
        }
    }

    /// The JWS signature over `input` (ECDSA as raw r || s).
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Ed25519(sk) => sk.sign(input).to_bytes().to_vec(),
            Signer::Ecdsa(_, kp) => kp.sign(&rng, input).unwrap().as_ref().to_vec(),
            Signer::Rsa(alg, kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                let padding: &'static dyn signature::RsaEncoding =
                    if *alg == Alg::RS256 { &signature::RSA_PKCS1_SHA256 } else { &signature::RSA_PSS_SHA256 };
                kp.sign(padding, &rng, input, &mut sig).unwrap();
                sig
            }
        }
    }
}

/// n and e (minimal big-endian) from a DER RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }.
fn rsa_public(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn tlv(b: &[u8]) -> (&[u8], &[u8]) {
        let (len, at) = match b[1] {
            l if l < 0x80 => (usize::from(l), 2),
            l => {
                let k = usize::from(l & 0x7f);
                (b[2..2 + k].iter().fold(0, |a, x| a << 8 | usize::from(*x)), 2 + k)
            }
        };
        (&b[at..at + len], &b[at + len..])
    }
    let (seq, _) = tlv(der);
    let (n, rest) = tlv(seq);
    let (e, _) = tlv(rest);
    let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
    (strip(n), strip(e))
}
