//! The JWS algorithms auth_jwt verifies: exactly the five Better Auth signs with. Anything else
//! (`none`, every HMAC, ES384, RS512, ...) is refused before a key is even looked up.

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

impl Alg {
    pub const ALL: [Alg; 5] = [Alg::EdDSA, Alg::ES256, Alg::ES512, Alg::RS256, Alg::PS256];

    /// The `alg` value of a JWS header or a JWK, exactly (case-sensitive). `Ed25519` is EdDSA's
    /// fully specified name (RFC 9864).
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "EdDSA" | "Ed25519" => Alg::EdDSA,
            "ES256" => Alg::ES256,
            "ES512" => Alg::ES512,
            "RS256" => Alg::RS256,
            "PS256" => Alg::PS256,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::ES512 => "ES512",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
        }
    }

    /// What the algorithm is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA (Ed25519)",
            Alg::ES256 => "ES256 (ECDSA P-256, SHA-256)",
            Alg::ES512 => "ES512 (ECDSA P-521, SHA-512)",
            Alg::RS256 => "RS256 (RSASSA-PKCS1-v1_5, SHA-256)",
            Alg::PS256 => "PS256 (RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32)",
        }
    }

    /// The signature length, where the algorithm fixes it (an RSA signature is as long as the
    /// key's modulus). ECDSA signatures are JWS's raw r || s, never DER.
    pub fn signature_len(self) -> Option<usize> {
        match self {
            Alg::EdDSA | Alg::ES256 => Some(64),
            Alg::ES512 => Some(132),
            Alg::RS256 | Alg::PS256 => None,
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
    fn names_are_exact() {
        for a in Alg::ALL {
            assert_eq!(Alg::from_name(a.name()), Some(a));
        }
        assert_eq!(Alg::from_name("Ed25519"), Some(Alg::EdDSA));
        for other in ["none", "HS256", "ES384", "RS512", "PS512", "es256", "ES256 ", "EdDSA\0", "Ed448", ""] {
            assert_eq!(Alg::from_name(other), None, "{other:?}");
        }
    }
}
