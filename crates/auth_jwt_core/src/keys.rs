//! Public keys from Better Auth's `jwks` table, parsed once and selected by `kid`.
//!
//! A row becomes a [`Key`] that is either usable (an Ed25519 point that passed every check) or
//! carries the reason it is not, so diagnostics can show it and selection can say why it failed.
//! Only Ed25519 is accepted: `kty` "OKP", `crv` "Ed25519", and `x` exactly 32 bytes that decode
//! to a canonical, non-small-order curve point (weak keys make `verify_strict` meaningless).

use crate::b64;
use crate::error::{printable, Error, ErrorKind};
use crate::json;
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use std::collections::HashMap;

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
    pub key: Result<VerifyingKey, String>,
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

/// `EdDSA` (RFC 8037) or its fully-specified successor `Ed25519` (RFC 9864). Exact, case-sensitive.
pub fn is_ed25519_alg(alg: &str) -> bool {
    alg == "EdDSA" || alg == "Ed25519"
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
}

fn parse_row(row: &KeyRow<'_>) -> Result<VerifyingKey, String> {
    if let Some(alg) = row.alg {
        if !is_ed25519_alg(alg) {
            return Err(format!("alg column is \"{}\"; only EdDSA keys are supported", printable(alg, 32)));
        }
    }
    if let Some(crv) = row.crv {
        if crv != "Ed25519" {
            return Err(format!("crv column is \"{}\", not \"Ed25519\"", printable(crv, 32)));
        }
    }
    let jwk = json::parse_object(row.public_key.as_bytes()).map_err(|e| format!("publicKey {e}"))?;
    let member = |name: &str| -> Result<Option<&str>, String> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("publicKey member \"{name}\" is {}, not a string", json::a_type(other))),
        }
    };
    match member("kty")? {
        Some("OKP") => {}
        Some(kty) => return Err(format!("publicKey kty is \"{}\", not \"OKP\"", printable(kty, 16))),
        None => return Err("publicKey has no kty".into()),
    }
    match member("crv")? {
        Some("Ed25519") => {}
        Some(crv) => return Err(format!("publicKey crv is \"{}\", not \"Ed25519\"", printable(crv, 16))),
        None => return Err("publicKey has no crv".into()),
    }
    if let Some(alg) = member("alg")? {
        if !is_ed25519_alg(alg) {
            return Err(format!("publicKey alg is \"{}\"", printable(alg, 16)));
        }
    }
    if let Some(usage) = member("use")? {
        if usage != "sig" {
            return Err(format!("publicKey use is \"{}\", not \"sig\"", printable(usage, 16)));
        }
    }
    if jwk.contains_key("d") {
        // Never echo it; say only that it is there, so the operator can rotate the key.
        return Err("publicKey contains private key material (\"d\"); rotate this key".into());
    }
    let x = member("x")?.ok_or("publicKey has no x")?;
    let bytes = b64::decode(x).map_err(|e| format!("publicKey x {e}"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("publicKey x is {} bytes, not 32", b.len()))?;
    let point = CompressedEdwardsY(bytes).decompress().ok_or("publicKey x is not a point on Ed25519")?;
    if point.compress().to_bytes() != bytes {
        return Err("publicKey x is not canonically encoded".into());
    }
    if point.is_small_order() {
        return Err("publicKey x is a weak (small-order) point".into());
    }
    VerifyingKey::from_bytes(&bytes).map_err(|_| "publicKey x is not a valid Ed25519 key".into())
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
            k.key = Err("id appears in more than one row of the key table".into());
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
    /// `kid` is compared exactly; a token without `kid` needs exactly one usable key.
    pub fn select(&self, kid: Option<&str>, now: i64, grace: i64) -> Result<(&VerifyingKey, Option<i64>), Error> {
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
                let mut usable = self.keys.iter().filter(|k| k.status(now, grace).verifies());
                match (usable.next(), usable.next()) {
                    (Some(k), None) => k,
                    (None, _) => return Err(not_found("token has no kid and no key is usable".into())),
                    (Some(_), Some(_)) => {
                        return Err(not_found("token has no kid and more than one key is usable".into()))
                    }
                }
            }
        };
        let who = printable(&key.kid, 64);
        match key.status(now, grace) {
            KeyStatus::Invalid(why) => Err(not_found(format!("key \"{who}\" is unusable: {why}"))),
            KeyStatus::Expired { since } => Err(not_found(format!(
                "key \"{who}\" expired; its grace period (auth_jwt.key_grace_period) ended at {}",
                crate::error::iso8601(since)
            ))),
            KeyStatus::Usable | KeyStatus::InGrace { .. } => match &key.key {
                Ok(vk) => Ok((vk, key.usable_until(grace))),
                Err(why) => Err(not_found(format!("key \"{who}\" is unusable: {why}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert!(reason(r#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#).contains("kty is \"EC\""));
        assert!(reason(r#"{"kty":"RSA","n":"a","e":"AQAB"}"#).contains("kty is \"RSA\""));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"X25519","x":"{RFC8037_X}"}}"#)).contains("crv is \"X25519\""));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"Ed448","x":"{RFC8037_X}"}}"#)).contains("Ed448"));
        assert!(reason(&format!(r#"{{"kty":"OKP","x":"{RFC8037_X}"}}"#)).contains("no crv"));
        assert!(reason(r#"{"kty":"OKP","crv":"Ed25519"}"#).contains("no x"));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","alg":"ES256"}}"#)).contains("alg"));
        assert!(reason(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","use":"enc"}}"#)).contains("use"));
        assert!(reason("not json").contains("publicKey is not valid JSON"));
        assert!(
            reason(&format!(r#"{{"kty":"OKP","kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#)).contains("duplicate")
        );
        let pk = jwk(RFC8037_X);
        let k = Key::from_row(&KeyRow { id: "k", public_key: &pk, expires_at: None, alg: Some("ES256"), crv: None });
        assert!(k.key.unwrap_err().contains("alg column"));
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
        assert!(set.select(Some("AbC"), 0, 0).is_ok());
        for kid in ["abc", "AbC ", " AbC", "AbC\0", "AB", ""] {
            let e = set.select(Some(kid), 0, 0).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{kid:?}");
        }
        let e = set.select(Some("nope"), 0, 0).unwrap_err();
        assert!(e.detail().contains("\"nope\""), "detail names the kid");
    }

    #[test]
    fn no_kid_needs_exactly_one_usable_key() {
        let pk = jwk(RFC8037_X);
        let bad = r#"{"kty":"RSA"}"#;
        assert!(KeySet::from_rows([row("a", &pk)]).select(None, 0, 0).is_ok());
        assert!(KeySet::from_rows([row("a", &pk), row("b", bad)]).select(None, 0, 0).is_ok());
        let two = KeySet::from_rows([row("a", &pk), row("b", &pk)]);
        assert!(two.select(None, 0, 0).unwrap_err().detail().contains("more than one"));
        assert!(KeySet::from_rows([]).select(None, 0, 0).unwrap_err().detail().contains("no key is usable"));
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
        assert_eq!(set.select(Some("a"), 1100, 100).unwrap().1, Some(1100));
        let e = set.select(Some("a"), 1101, 100).unwrap_err();
        assert!(e.detail().contains("grace period"));
        assert!(set.select(None, 1101, 100).is_err(), "an expired key does not count as usable");
    }

    #[test]
    fn duplicate_ids_are_ambiguous() {
        let pk = jwk(RFC8037_X);
        let set = KeySet::from_rows([row("a", &pk), row("a", &pk)]);
        assert!(set.select(Some("a"), 0, 0).unwrap_err().detail().contains("more than one row"));
    }
}
