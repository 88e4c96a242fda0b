//! The JWS algorithms auth_jwt verifies: exactly the five Better Auth signs with, as one table
//! ([`SPECS`]). Everything else knows an algorithm through its row: names, the key a JWK must be,
//! the signature length, how it is described and what checks it. Anything not in the table
//! (`none`, every HMAC, ES384, RS512, ...) is refused before a key is even looked up. Adding an
//! algorithm is a row here, plus a verifier only for a new family.

use aws_lc_rs::signature::{
    RsaParameters, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ECDSA_P521_SHA512_FIXED, RSA_PKCS1_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA256,
};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// Ed25519 (RFC 8037); Better Auth's default.
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 3.4).
    ES256,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256 and a 32-byte salt.
    PS256,
}

/// How signatures of an algorithm are checked, and what its JWK holds.
#[derive(Clone, Copy)]
pub enum Verifier {
    /// ed25519-dalek's `verify_strict`; the JWK's `x` is the 32-byte point.
    Ed25519,
    /// AWS-LC's ECDSA over raw r || s; the JWK's `x` and `y` are `coordinate` bytes each.
    Ecdsa { coordinate: usize, bits: u32, algorithm: &'static dyn VerificationAlgorithm },
    /// AWS-LC's RSA; the JWK's `n` and `e`.
    Rsa { params: &'static RsaParameters },
}

/// One row of the table.
pub struct Spec {
    pub alg: Alg,
    /// The `alg` value of a JWS header or a JWK (exact, case-sensitive).
    pub name: &'static str,
    /// Other names for it (RFC 9864's fully specified `Ed25519`).
    pub aliases: &'static [&'static str],
    /// The JWK `kty` of its keys, and the `crv` (None: RSA has none).
    pub kty: &'static str,
    pub crv: Option<&'static str>,
    /// The signature length, where the algorithm fixes it (an RSA signature is as long as the
    /// key's modulus). ECDSA signatures are JWS's raw r || s, never DER.
    pub signature_len: Option<usize>,
    /// What the algorithm is, for people.
    pub describe: &'static str,
    /// What checks it, for `jwt_explain`.
    pub library: &'static str,
    pub verifier: Verifier,
}

/// The algorithms, in [`Alg::ALL`]'s order.
pub static SPECS: [Spec; 5] = [
    Spec {
        alg: Alg::EdDSA,
        name: "EdDSA",
        aliases: &["Ed25519"],
        kty: "OKP",
        crv: Some("Ed25519"),
        signature_len: Some(64),
        describe: "EdDSA (Ed25519)",
        library: "ed25519-dalek verify_strict",
        verifier: Verifier::Ed25519,
    },
    Spec {
        alg: Alg::ES256,
        name: "ES256",
        aliases: &[],
        kty: "EC",
        crv: Some("P-256"),
        signature_len: Some(64),
        describe: "ES256 (ECDSA P-256, SHA-256)",
        library: "aws-lc-rs",
        verifier: Verifier::Ecdsa { coordinate: 32, bits: 256, algorithm: &ECDSA_P256_SHA256_FIXED },
    },
    Spec {
        alg: Alg::ES512,
        name: "ES512",
        aliases: &[],
        kty: "EC",
        crv: Some("P-521"),
        signature_len: Some(132),
        describe: "ES512 (ECDSA P-521, SHA-512)",
        library: "aws-lc-rs",
        verifier: Verifier::Ecdsa { coordinate: 66, bits: 521, algorithm: &ECDSA_P521_SHA512_FIXED },
    },
    Spec {
        alg: Alg::RS256,
        name: "RS256",
        aliases: &[],
        kty: "RSA",
        crv: None,
        signature_len: None,
        describe: "RS256 (RSASSA-PKCS1-v1_5, SHA-256)",
        library: "aws-lc-rs",
        verifier: Verifier::Rsa { params: &RSA_PKCS1_2048_8192_SHA256 },
    },
    Spec {
        alg: Alg::PS256,
        name: "PS256",
        aliases: &[],
        kty: "RSA",
        crv: None,
        signature_len: None,
        describe: "PS256 (RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32)",
        library: "aws-lc-rs",
        verifier: Verifier::Rsa { params: &RSA_PSS_2048_8192_SHA256 },
    },
];

impl Alg {
    pub const ALL: [Alg; 5] = [Alg::EdDSA, Alg::ES256, Alg::ES512, Alg::RS256, Alg::PS256];

    /// Its row of [`SPECS`].
    pub fn spec(self) -> &'static Spec {
        &SPECS[self.index()]
    }

    /// Its place in [`Alg::ALL`] and [`SPECS`] (for per-algorithm tables).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `alg` value of a JWS header or a JWK, exactly (case-sensitive), by name or alias.
    pub fn from_name(name: &str) -> Option<Alg> {
        SPECS.iter().find(|s| s.name == name || s.aliases.contains(&name)).map(|s| s.alg)
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// What the algorithm is, for people.
    pub fn describe(self) -> &'static str {
        self.spec().describe
    }

    /// The signature length, where the algorithm fixes it.
    pub fn signature_len(self) -> Option<usize> {
        self.spec().signature_len
    }

    /// The JWK curve of its keys (RSA has none).
    pub fn curve(self) -> Option<&'static str> {
        self.spec().crv
    }

    /// The algorithms a JWK of this `kty` and `crv` can verify (RSA: either RSA algorithm, which
    /// the key must then name).
    pub fn for_jwk<'a>(kty: &'a str, crv: Option<&'a str>) -> impl Iterator<Item = Alg> + 'a {
        SPECS.iter().filter(move |s| s.kty == kty && (s.crv.is_none() || s.crv == crv)).map(|s| s.alg)
    }

    /// "EdDSA, ES256, ES512, RS256 and PS256", for messages.
    pub fn names() -> String {
        let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_alls_order_and_names_are_exact() {
        for (i, a) in Alg::ALL.into_iter().enumerate() {
            assert_eq!(SPECS[i].alg, a);
            assert_eq!(a.index(), i);
            assert_eq!(Alg::from_name(a.name()), Some(a));
        }
        assert_eq!(Alg::from_name("Ed25519"), Some(Alg::EdDSA));
        for other in ["none", "HS256", "ES384", "RS512", "PS512", "es256", "ES256 ", "EdDSA\0", "Ed448", ""] {
            assert_eq!(Alg::from_name(other), None, "{other:?}");
        }
        assert_eq!(Alg::names(), "EdDSA, ES256, ES512, RS256 and PS256");
    }

    #[test]
    fn a_jwk_decides_the_family() {
        let f = |kty, crv| Alg::for_jwk(kty, crv).collect::<Vec<_>>();
        assert_eq!(f("OKP", Some("Ed25519")), [Alg::EdDSA]);
        assert_eq!(f("EC", Some("P-256")), [Alg::ES256]);
        assert_eq!(f("EC", Some("P-521")), [Alg::ES512]);
        assert_eq!(f("RSA", None), [Alg::RS256, Alg::PS256]);
        assert_eq!(f("RSA", Some("P-256")), [Alg::RS256, Alg::PS256], "crv is checked apart for RSA");
        assert!(f("EC", Some("P-384")).is_empty() && f("OKP", Some("X25519")).is_empty() && f("oct", None).is_empty());
    }
}
