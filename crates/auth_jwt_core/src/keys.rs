//! Public keys from Better Auth's `jwks` table, parsed once and selected by `kid`.
//!
//! A row becomes a [`Key`] that is either usable (a [`PublicKey`] that passed every check, bound
//! to the one algorithm it verifies) or carries the reason it is not, so diagnostics can show it
//! and selection can say why it failed. The key decides the algorithm, never the token: the JWK's
//! `kty` and `crv`, and the row's `alg` column or the JWK's own `alg` member where present, fix
//! it (an RSA key must name RS256 or PS256 in one of them), and a token whose header says another
//! algorithm finds no matching key. Checks per type, when the keys are loaded:
//! - OKP: `crv` Ed25519; `x` exactly 32 bytes, a canonical, non-small-order point;
//! - EC: `crv` P-256 or P-521; `x` and `y` exactly 32 or 66 bytes, a point on the curve;
//! - RSA: `n` and `e` without leading zero octets, a modulus of 2048 to 8192 bits, odd, and a
//!   public exponent that is odd, at least 3 and at most 2^33 - 1 (what AWS-LC verifies with);
//! - every member base64url as strictly as in tokens, no private key material, `use` sig.

use crate::alg::{Alg, Verifier as Family, SPECS};
use crate::b64;
use crate::error::{printable, Error, ErrorKind};
use crate::json;
use aws_lc_rs::signature::{ParsedPublicKey, RsaParameters, RsaPublicKeyComponents, VerificationAlgorithm};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

/// One row of the key table, as read (Better Auth 1.7 columns; the optional ones may be absent).
#[derive(Debug, Clone, Copy)]
pub struct KeyRow<'a> {
    pub id: &'a str,
    pub public_key: &'a str,
    /// `"expiresAt"` as Unix seconds.
    pub expires_at: Option<i64>,
    pub alg: Option<&'a str>,
    pub crv: Option<&'a str>,
}

/// A parsed key row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kid: String,
    pub expires_at: Option<i64>,
    /// The key, or why the row is unusable.
    pub key: Result<PublicKey, String>,
}

/// A public key that passed every check, and the one algorithm it verifies.
#[derive(Clone)]
pub struct PublicKey {
    alg: Alg,
    /// Curve order or modulus size.
    bits: u32,
    /// The encoded key, for equality (a reload that changed nothing keeps the caches).
    material: Box<[u8]>,
    verifier: Verifier,
}

#[derive(Clone)]
enum Verifier {
    Ed25519(VerifyingKey),
    /// ECDSA and RSA, parsed once.
    AwsLc(ParsedPublicKey),
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.alg == other.alg && self.material == other.material
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.alg, self.describe())
    }
}

impl PublicKey {
    /// An Ed25519 key taken as is, without the key table's checks (canonical encoding, small
    /// order): for the signature step alone, as in the "Taming the many EdDSAs" vectors.
    pub fn from_ed25519(vk: VerifyingKey) -> PublicKey {
        PublicKey { alg: Alg::EdDSA, bits: 256, material: vk.to_bytes().into(), verifier: Verifier::Ed25519(vk) }
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The key type, for people: "OKP Ed25519", "EC P-256", "RSA 2048 bits".
    pub fn describe(&self) -> String {
        let spec = self.alg.spec();
        match spec.crv {
            Some(crv) => format!("{} {crv}", spec.kty),
            None => format!("{} {} bits", spec.kty, self.bits),
        }
    }

    /// Check `signature` over `input` with this key's algorithm (the caller has checked that the
    /// token's header names it). EdDSA uses `verify_strict`: non-canonical S, small-order R and A
    /// refused, one valid encoding per (message, key). ECDSA takes raw r || s with r and s in
    /// [1, n - 1] (high S accepted, as JWS and jose do); RSA needs a signature exactly as long as
    /// the modulus, and PSS a salt of exactly 32 bytes.
    pub fn verify(&self, input: &[u8], signature: &[u8]) -> Result<(), Error> {
        let bad = |why: String| Err(Error::new(ErrorKind::InvalidSignature, why));
        match &self.verifier {
            Verifier::Ed25519(vk) => {
                let Ok(sig) = <[u8; 64]>::try_from(signature) else {
                    return bad(format!("the Ed25519 signature is {} bytes, not 64", signature.len()));
                };
                vk.verify_strict(input, &ed25519_dalek::Signature::from_bytes(&sig))
                    .or_else(|_| bad("the Ed25519 signature does not verify under the selected key".into()))
            }
            Verifier::AwsLc(key) => {
                if matches!(self.alg.spec().verifier, Family::Rsa { .. })
                    && signature.len() != (self.bits as usize).div_ceil(8)
                {
                    return bad(format!(
                        "the RSA signature is {} bytes; the key's modulus is {}",
                        signature.len(),
                        self.bits.div_ceil(8)
                    ));
                }
                key.verify_sig(input, signature).or_else(|_| {
                    bad(format!("the {} signature does not verify under the selected key", self.alg.describe()))
                })
            }
        }
    }
}

/// Where a key stands at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Usable,
    /// Past `expiresAt` but within the grace period: still verifies, until the given time.
    InGrace {
        until: i64,
    },
    /// Past `expiresAt` + grace period.
    Expired {
        since: i64,
    },
    Invalid(String),
}

impl KeyStatus {
    pub fn name(&self) -> &'static str {
        match self {
            KeyStatus::Usable => "usable",
            KeyStatus::InGrace { .. } => "in grace",
            KeyStatus::Expired { .. } => "expired",
            KeyStatus::Invalid(_) => "invalid",
        }
    }

    pub fn verifies(&self) -> bool {
        matches!(self, KeyStatus::Usable | KeyStatus::InGrace { .. })
    }
}

impl Key {
    pub fn from_row(row: &KeyRow<'_>) -> Key {
        Key { kid: row.id.to_owned(), expires_at: row.expires_at, key: parse_row(row) }
    }

    /// The last second at which this key may verify, if it expires.
    pub fn usable_until(&self, grace_seconds: i64) -> Option<i64> {
        self.expires_at.map(|e| e.saturating_add(grace_seconds))
    }

    pub fn status(&self, now: i64, grace_seconds: i64) -> KeyStatus {
        if let Err(why) = &self.key {
            return KeyStatus::Invalid(why.clone());
        }
        match (self.expires_at, self.usable_until(grace_seconds)) {
            (Some(_), Some(until)) if now > until => KeyStatus::Expired { since: until },
            (Some(exp), Some(until)) if now > exp => KeyStatus::InGrace { until },
            _ => KeyStatus::Usable,
        }
    }

    /// The algorithm this row's key verifies, when it is usable.
    pub fn alg(&self) -> Option<Alg> {
        self.key.as_ref().ok().map(PublicKey::alg)
    }
}

/// The JWK members that only a private key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn parse_row(row: &KeyRow<'_>) -> Result<PublicKey, String> {
    let jwk = json::parse_object(row.public_key.as_bytes()).map_err(|e| format!("publicKey {e}"))?;
    let member = |name: &str| -> Result<Option<&str>, String> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("publicKey member \"{name}\" is {}, not a string", json::a_type(other))),
        }
    };
    if let Some(p) = PRIVATE_MEMBERS.iter().find(|p| jwk.contains_key(**p)) {
        // Never echo it; say only that it is there, so the operator can rotate the key.
        return Err(format!("publicKey contains private key material (\"{p}\"); rotate this key"));
    }
    if let Some(usage) = member("use")? {
        if usage != "sig" {
            return Err(format!("publicKey use is \"{}\", not \"sig\"", printable(usage, 16)));
        }
    }
    // What the JWK itself can be: kty and crv decide the family of algorithms.
    let kty = member("kty")?.ok_or("publicKey has no kty")?;
    let crv = member("crv")?;
    let family: Vec<Alg> = Alg::for_jwk(kty, crv).collect();
    if family.is_empty() {
        return Err(match (SPECS.iter().any(|s| s.kty == kty), crv) {
            (true, None) => "publicKey has no crv".into(),
            (true, Some(c)) => format!(
                "publicKey is an {kty} key with crv \"{}\"; auth_jwt verifies {} keys",
                printable(c, 16),
                by_kty(|kty, crvs| (!crvs.is_empty()).then(|| format!("{} ({kty})", crvs.join(" and ")))).join(", ")
            ),
            (false, _) => format!(
                "publicKey kty is \"{}\"; auth_jwt verifies {} keys",
                printable(kty, 16),
                and_list(by_kty(|kty, crvs| Some(if crvs.is_empty() {
                    kty.to_owned()
                } else {
                    format!("{kty} ({})", crvs.join(", "))
                })))
            ),
        });
    }
    let what = if kty == "RSA" { "an RSA key".to_owned() } else { format!("an {kty} {} key", crv.unwrap_or("")) };
    match (row.crv, kty) {
        (Some(c), "RSA") => return Err(format!("crv column is \"{}\", but publicKey is an RSA key", printable(c, 32))),
        (Some(c), _) if Some(c) != crv => {
            return Err(format!("crv column is \"{}\", but publicKey is {what}", printable(c, 32)));
        }
        _ => {}
    }
    // The row's alg column and the JWK's alg member, where present, must name an algorithm of
    // that family, and the same one.
    let named = |source: &str, value: Option<&str>| -> Result<Option<Alg>, String> {
        let Some(v) = value else { return Ok(None) };
        match Alg::from_name(v) {
            Some(a) if family.contains(&a) => Ok(Some(a)),
            Some(a) => Err(format!("{source} is {a}, but publicKey is {what}")),
            None => Err(format!("{source} is \"{}\", not an algorithm auth_jwt verifies", printable(v, 32))),
        }
    };
    let column = named("alg column", row.alg)?;
    let own = named("publicKey alg", member("alg")?)?;
    let alg = match (column, own) {
        (Some(c), Some(o)) if c != o => return Err(format!("publicKey alg is {o}, but the alg column is {c}")),
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) if family.len() == 1 => family[0],
        (None, None) => {
            return Err("an RSA key verifies RS256 or PS256, and neither the alg column nor publicKey says which; auth_jwt never lets the token choose".into())
        }
    };
    match alg.spec().verifier {
        Family::Ed25519 => ed25519(&member),
        Family::Ecdsa { coordinate, bits, algorithm } => {
            ecdsa(&member, alg, coordinate, bits, algorithm, alg.curve().unwrap_or_default())
        }
        Family::Rsa { params } => rsa(&member, alg, params),
    }
}

/// The key types and curves of the algorithm table, in its order, each kty once, worded by `say`
/// (kty, its curves) for messages.
fn by_kty(say: impl Fn(&str, &[&str]) -> Option<String>) -> Vec<String> {
    let mut ktys: Vec<(&str, Vec<&str>)> = Vec::new();
    for s in &SPECS {
        match ktys.iter_mut().find(|(k, _)| *k == s.kty) {
            Some((_, crvs)) => crvs.extend(s.crv.filter(|c| !crvs.contains(c))),
            None => ktys.push((s.kty, s.crv.into_iter().collect())),
        }
    }
    ktys.iter().filter_map(|(k, c)| say(k, c)).collect()
}

/// "a, b and c".
fn and_list(parts: Vec<String>) -> String {
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => parts.join(""),
    }
}

type Member<'m> = dyn Fn(&str) -> Result<Option<&'m str>, String> + 'm;

/// A required base64url member, decoded strictly.
fn bytes(member: &Member<'_>, name: &str) -> Result<Vec<u8>, String> {
    let v = member(name)?.ok_or_else(|| format!("publicKey has no {name}"))?;
    b64::decode(v).map_err(|e| format!("publicKey {name} {e}"))
}

fn ed25519(member: &Member<'_>) -> Result<PublicKey, String> {
    let bytes = bytes(member, "x")?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("publicKey x is {} bytes, not 32", b.len()))?;
    let point = CompressedEdwardsY(bytes).decompress().ok_or("publicKey x is not a point on Ed25519")?;
    if point.compress().to_bytes() != bytes {
        return Err("publicKey x is not canonically encoded".into());
    }
    if point.is_small_order() {
        return Err("publicKey x is a weak (small-order) point".into());
    }
    let vk = VerifyingKey::from_bytes(&bytes).map_err(|_| "publicKey x is not a valid Ed25519 key")?;
    Ok(PublicKey { alg: Alg::EdDSA, bits: 256, material: bytes.into(), verifier: Verifier::Ed25519(vk) })
}

fn ecdsa(
    member: &Member<'_>,
    alg: Alg,
    len: usize,
    bits: u32,
    algorithm: &'static dyn VerificationAlgorithm,
    curve: &str,
) -> Result<PublicKey, String> {
    let x = bytes(member, "x")?;
    let y = bytes(member, "y")?;
    // RFC 7518 6.2.1.2: full-length coordinates. (Concatenated, a short x and a long y would
    // still have the right total length.)
    for (name, c) in [("x", &x), ("y", &y)] {
        if c.len() != len {
            return Err(format!("publicKey {name} is {} bytes, not {len} ({curve})", c.len()));
        }
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4); // SEC1 uncompressed
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // AWS-LC checks that the coordinates are below p and the point is on the curve (the point at
    // infinity has no affine coordinates).
    let key =
        ParsedPublicKey::new(algorithm, &point).map_err(|_| format!("publicKey x, y is not a point on {curve}"))?;
    Ok(PublicKey { alg, bits, material: point.into(), verifier: Verifier::AwsLc(key) })
}

fn rsa(member: &Member<'_>, alg: Alg, params: &'static RsaParameters) -> Result<PublicKey, String> {
    let n = bytes(member, "n")?;
    let e = bytes(member, "e")?;
    // RFC 7518 6.3.1: the minimum number of octets.
    for (name, v) in [("n", &n), ("e", &e)] {
        if v.first().is_none_or(|b| *b == 0) {
            return Err(format!("publicKey {name} is empty or has leading zero octets"));
        }
    }
    let bits = (n.len() as u32 - 1) * 8 + (8 - n[0].leading_zeros());
    if !(2048..=8192).contains(&bits) {
        return Err(format!("publicKey n is a {bits}-bit modulus; 2048 to 8192 bits are accepted"));
    }
    if n[n.len() - 1] & 1 == 0 {
        return Err("publicKey n is even, not an RSA modulus".into());
    }
    let e_value = e.iter().try_fold(0u64, |acc, b| acc.checked_mul(256).map(|a| a | u64::from(*b)));
    match e_value {
        Some(v) if v >= 3 && v % 2 == 1 && v < (1 << 33) => {}
        _ => return Err("publicKey e must be odd, at least 3 and below 2^33".into()),
    }
    let key = RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
        .to_parsed_public_key(params)
        .map_err(|_| "publicKey n, e is not a valid RSA public key")?;
    let mut material = n;
    material.push(0xff);
    material.extend_from_slice(&e);
    Ok(PublicKey { alg, bits, material: material.into(), verifier: Verifier::AwsLc(key) })
}

/// The keys of one load of the key table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    pub fn new(mut keys: Vec<Key>) -> KeySet {
        // An id that appears twice (a careless view) is ambiguous: neither row may verify.
        let mut count: HashMap<&str, usize> = HashMap::new();
        for k in &keys {
            *count.entry(k.kid.as_str()).or_default() += 1;
        }
        let dup: Vec<String> = count.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k.to_owned()).collect();
        for k in keys.iter_mut().filter(|k| dup.contains(&k.kid)) {
            k.key =
                Err("the same kid names more than one key (rows of the key table or entries of the JWKS document)"
                    .into());
        }
        let by_kid = keys.iter().enumerate().map(|(i, k)| (k.kid.clone(), i)).collect();
        KeySet { keys, by_kid }
    }

    pub fn from_rows<'a>(rows: impl IntoIterator<Item = KeyRow<'a>>) -> KeySet {
        KeySet::new(rows.into_iter().map(|r| Key::from_row(&r)).collect())
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The key a token must verify under, and the last second it may be used (if it expires).
    /// `kid` is compared exactly, and the key must be one of the token's algorithm (`alg`, from
    /// the header): a key verifies one algorithm only. A token without `kid` needs exactly one
    /// usable key of its algorithm.
    pub fn select(
        &self,
        kid: Option<&str>,
        alg: Alg,
        now: i64,
        grace: i64,
    ) -> Result<(&PublicKey, Option<i64>), Error> {
        let not_found = |d: String| Error::new(ErrorKind::KeyNotFound, d);
        let key = match kid {
            Some(kid) => {
                let i = *self
                    .by_kid
                    .get(kid)
                    .ok_or_else(|| not_found(format!("no key with id \"{}\" in the key table", printable(kid, 64))))?;
                &self.keys[i]
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.alg() == Some(alg) && k.status(now, grace).verifies());
                match (usable.next(), usable.next()) {
                    (Some(k), None) => k,
                    (None, _) => return Err(not_found(format!("token has no kid and no {alg} key is usable"))),
                    (Some(_), Some(_)) => {
                        return Err(not_found(format!("token has no kid and more than one {alg} key is usable")))
                    }
                }
            }
        };
        // Only for the messages: the usable path must not allocate.
        let who = || printable(&key.kid, 64);
        match key.status(now, grace) {
            KeyStatus::Invalid(why) => Err(not_found(format!("key \"{}\" is unusable: {why}", who()))),
            KeyStatus::Expired { since } => Err(not_found(format!(
                "key \"{}\" expired; its grace period (auth_jwt.key_grace_period) ended at {}",
                who(),
                crate::error::iso8601(since)
            ))),
            KeyStatus::Usable | KeyStatus::InGrace { .. } => match &key.key {
                Ok(pk) if pk.alg() == alg => Ok((pk, key.usable_until(grace))),
                Ok(pk) => Err(not_found(format!(
                    "key \"{}\" verifies {} ({}), not the token's {alg}: a key verifies one algorithm only",
                    who(),
                    pk.alg(),
                    pk.describe()
                ))),
                Err(why) => Err(not_found(format!("key \"{}\" is unusable: {why}", who()))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_supported_key_types_are_worded_from_the_algorithm_table() {
        let curves = super::by_kty(|kty, crvs| (!crvs.is_empty()).then(|| format!("{} ({kty})", crvs.join(" and "))));
        assert_eq!(curves.join(", "), "Ed25519 (OKP), P-256 and P-521 (EC)");
        let ktys = super::by_kty(|kty, crvs| {
            Some(if crvs.is_empty() { kty.to_owned() } else { format!("{kty} ({})", crvs.join(", ")) })
        });
        assert_eq!(super::and_list(ktys), "OKP (Ed25519), EC (P-256, P-521) and RSA");
    }

    use super::*;

    pub const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn row<'a>(id: &'a str, pk: &'a str) -> KeyRow<'a> {
        KeyRow { id, public_key: pk, expires_at: None, alg: None, crv: None }
    }

    fn jwk(x: &str) -> String {
        format!(r#"{{"crv":"Ed25519","x":"{x}","kty":"OKP"}}"#)
    }

    fn reason(pk: &str) -> String {
        Key::from_row(&row("k", pk)).key.unwrap_err()
    }

    #[test]
    fn accepts_better_auth_rows() {
        let pk = jwk(RFC8037_X);
        let k = Key::from_row(&KeyRow {
            id: "k",
            public_key: &pk,
            expires_at: None,
            alg: Some("EdDSA"),
            crv: Some("Ed25519"),
        });
        assert!(k.key.is_ok());
        let with_alg = format!(r#"{{"alg":"EdDSA","crv":"Ed25519","x":"{RFC8037_X}","kty":"OKP"}}"#);
        assert!(Key::from_row(&row("k", &with_alg)).key.is_ok());
    }

    #[test]
    fn rejects_wrong_kind_of_key() {
        assert!(reason(r#"{"kty":"oct","k":"AAAA"}"#).contains("private key material"));
        assert!(reason(r#"{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"}"#).contains("an EC key with crv \"P-384\""));
        assert!(reason(r#"{"kty":"EC","crv":"secp256k1","x":"AAAA","y":"AAAA"}"#).contains("secp256k1"));
        assert!(reason(r#"{"kty":"EC","x":"AAAA","y":"AAAA"}"#).contains("no crv"));
        assert!(reason(r#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#).contains("publicKey x"));
        assert!(reason(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#).contains("neither the alg column nor publicKey"));
        assert!(reason(r#"{"kty":"XYZ"}"#).contains("kty is \"XYZ\""));
        assert!(reason(r#"{"crv":"Ed25519"}"#).contains("no kty"));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"X25519","x":"{RFC8037_X}"}}"#))
            .contains("an OKP key with crv \"X25519\""));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"Ed448","x":"{RFC8037_X}"}}"#)).contains("Ed448"));
        assert!(reason(&format!(r#"{{"kty":"OKP","x":"{RFC8037_X}"}}"#)).contains("no crv"));
        assert!(reason(r#"{"kty":"OKP","crv":"Ed25519"}"#).contains("no x"));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","alg":"ES256"}}"#))
            .contains("publicKey alg is ES256, but publicKey is an OKP Ed25519 key"));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","alg":"HS256"}}"#))
            .contains("not an algorithm auth_jwt verifies"));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","use":"enc"}}"#)).contains("use"));
        assert!(reason("not json").contains("publicKey is not valid JSON"));
        assert!(
            reason(&format!(r#"{{"kty":"OKP","kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#)).contains("duplicate")
        );
        let pk = jwk(RFC8037_X);
        let k = Key::from_row(&KeyRow { id: "k", public_key: &pk, expires_at: None, alg: Some("ES256"), crv: None });
        assert!(k.key.unwrap_err().contains("alg column is ES256, but publicKey is an OKP Ed25519 key"));
        let k = Key::from_row(&KeyRow { id: "k", public_key: &pk, expires_at: None, alg: Some("ES384"), crv: None });
        assert!(k.key.unwrap_err().contains("not an algorithm auth_jwt verifies"));
        let with_alg = format!(r#"{{"alg":"EdDSA","crv":"Ed25519","x":"{RFC8037_X}","kty":"OKP"}}"#);
        let k = Key::from_row(&KeyRow {
            id: "k",
            public_key: &with_alg,
            expires_at: None,
            alg: Some("Ed25519"),
            crv: None,
        });
        assert!(k.key.is_ok(), "EdDSA and Ed25519 name the same algorithm");
        let k = Key::from_row(&KeyRow { id: "k", public_key: &pk, expires_at: None, alg: None, crv: Some("P-256") });
        assert!(k.key.unwrap_err().contains("crv column"));
    }

    #[test]
    fn rejects_private_material_without_echoing_it() {
        let r = reason(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}}"#
        ));
        assert!(r.contains("private key material"));
        assert!(!r.contains("nWGx"));
    }

    #[test]
    fn rejects_bad_x() {
        assert!(reason(&jwk("AAAA")).contains("3 bytes, not 32"));
        assert!(reason(&jwk(&format!("{RFC8037_X}="))).contains("publicKey x"));
        // Identity point (small order): y = 1.
        let mut id = [0u8; 32];
        id[0] = 1;
        assert!(reason(&jwk(&b64::encode(&id))).contains("small-order"));
        // Non-canonical: y = p + 1 encodes the identity again (2^255 - 19 + 1).
        let mut nc = [0xffu8; 32];
        nc[0] = 0xee;
        nc[31] = 0x7f;
        assert!(
            reason(&jwk(&b64::encode(&nc))).contains("not canonically encoded")
                || reason(&jwk(&b64::encode(&nc))).contains("not a point")
        );
        // A y with no x on the curve.
        let mut off = [0u8; 32];
        off[0] = 2;
        assert!(reason(&jwk(&b64::encode(&off))).contains("not a point"));
    }

    #[test]
    fn selection_by_kid_is_exact() {
        let pk = jwk(RFC8037_X);
        let set = KeySet::from_rows([row("AbC", &pk)]);
        assert!(set.select(Some("AbC"), Alg::EdDSA, 0, 0).is_ok());
        for kid in ["abc", "AbC ", " AbC", "AbC\0", "AB", ""] {
            let e = set.select(Some(kid), Alg::EdDSA, 0, 0).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{kid:?}");
        }
        let e = set.select(Some("AbC"), Alg::ES256, 0, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyNotFound);
        assert!(e.detail().contains("verifies EdDSA (OKP Ed25519), not the token's ES256"), "{e}");
        let e = set.select(Some("nope"), Alg::EdDSA, 0, 0).unwrap_err();
        assert!(e.detail().contains("\"nope\""), "detail names the kid");
    }

    #[test]
    fn no_kid_needs_exactly_one_usable_key() {
        let pk = jwk(RFC8037_X);
        let bad = r#"{"kty":"RSA"}"#;
        assert!(KeySet::from_rows([row("a", &pk)]).select(None, Alg::EdDSA, 0, 0).is_ok());
        assert!(KeySet::from_rows([row("a", &pk), row("b", bad)]).select(None, Alg::EdDSA, 0, 0).is_ok());
        assert!(KeySet::from_rows([row("a", &pk)])
            .select(None, Alg::RS256, 0, 0)
            .unwrap_err()
            .detail()
            .contains("no RS256 key"));
        let two = KeySet::from_rows([row("a", &pk), row("b", &pk)]);
        assert!(two.select(None, Alg::EdDSA, 0, 0).unwrap_err().detail().contains("more than one"));
        assert!(KeySet::from_rows([])
            .select(None, Alg::EdDSA, 0, 0)
            .unwrap_err()
            .detail()
            .contains("no EdDSA key is usable"));
    }

    #[test]
    fn expiry_and_grace() {
        let pk = jwk(RFC8037_X);
        let set =
            KeySet::from_rows([KeyRow { id: "a", public_key: &pk, expires_at: Some(1000), alg: None, crv: None }]);
        let k = &set.keys()[0];
        assert_eq!(k.status(999, 100), KeyStatus::Usable);
        assert_eq!(k.status(1050, 100), KeyStatus::InGrace { until: 1100 });
        assert_eq!(k.status(1100, 100), KeyStatus::InGrace { until: 1100 });
        assert_eq!(k.status(1101, 100), KeyStatus::Expired { since: 1100 });
        assert_eq!(set.select(Some("a"), Alg::EdDSA, 1100, 100).unwrap().1, Some(1100));
        let e = set.select(Some("a"), Alg::EdDSA, 1101, 100).unwrap_err();
        assert!(e.detail().contains("grace period"));
        assert!(set.select(None, Alg::EdDSA, 1101, 100).is_err(), "an expired key does not count as usable");
    }

    #[test]
    fn duplicate_ids_are_ambiguous() {
        let pk = jwk(RFC8037_X);
        let set = KeySet::from_rows([row("a", &pk), row("a", &pk)]);
        assert!(set.select(Some("a"), Alg::EdDSA, 0, 0).unwrap_err().detail().contains("more than one key"));
    }
}
