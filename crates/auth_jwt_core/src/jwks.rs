//! JWKS documents (RFC 7517 §5), as Better Auth serves them at `GET {baseURL}/api/auth/jwks`:
//! `{"keys":[{"kty":..., "crv":..., "x":..., "alg":..., "kid":...}, ...]}`.
//!
//! The document is parsed strictly (no duplicate members at any depth); each entry becomes a key
//! row exactly like a row of Better Auth's `jwks` table (`id` = `kid`, `"publicKey"` = the entry,
//! `alg` and `crv` from the entry), so every rule for key rows holds for JWKS entries: the key type
//! decides the algorithm, invalid or weak keys are unusable with a reason, and duplicate kids are
//! unusable. A malformed document is refused as a whole (the caller keeps its last good set); a
//! malformed entry is one unusable key.

use crate::json;
use crate::keys::{KeyRow, KeySet};
use serde_json::Value;

/// One entry of a JWKS document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's `kid`; None when absent or not a string (the entry is then unusable).
    pub kid: Option<String>,
    /// The entry as JSON text, as a key row's `"publicKey"` holds it.
    pub jwk: String,
    pub alg: Option<String>,
    pub crv: Option<String>,
}

impl Entry {
    pub fn key_row(&self) -> Option<KeyRow<'_>> {
        Some(KeyRow {
            id: self.kid.as_deref()?,
            public_key: &self.jwk,
            expires_at: None,
            alg: self.alg.as_deref(),
            crv: self.crv.as_deref(),
        })
    }
}

/// The most entries a document may hold: Better Auth serves a handful (current keys and those in
/// their grace period); a document with thousands is not a key set.
pub const MAX_ENTRIES: usize = 100;

/// Parse a JWKS document. The error is a short reason for an operator ("is not JSON: ...").
pub fn parse(doc: &[u8]) -> Result<Vec<Entry>, String> {
    let map = json::parse_object(doc).map_err(|e| format!("is not a JSON object: {e}"))?;
    let keys = match map.get("keys") {
        Some(Value::Array(keys)) => keys,
        Some(other) => return Err(format!("has \"keys\" as {}, not an array", json::a_type(other))),
        None => return Err("has no \"keys\" member".into()),
    };
    if keys.len() > MAX_ENTRIES {
        return Err(format!("has {} keys, more than {MAX_ENTRIES}", keys.len()));
    }
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let Value::Object(m) = k else {
                return Err(format!("has keys[{i}] as {}, not an object", json::a_type(k)));
            };
            let text = |name: &str| m.get(name).and_then(Value::as_str).map(str::to_owned);
            Ok(Entry { kid: text("kid"), jwk: k.to_string(), alg: text("alg"), crv: text("crv") })
        })
        .collect()
}

/// The key set a parsed document describes (entries without a kid are left out: no token can
/// name them).
pub fn key_set(entries: &[Entry]) -> KeySet {
    KeySet::from_rows(entries.iter().filter_map(Entry::key_row))
}

/// The `max-age` of a `Cache-Control` header value, in seconds, unless the response must not be
/// reused as is (`no-store`, `no-cache`: then 0).
pub fn cache_max_age(cache_control: &str) -> Option<u64> {
    let mut max_age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return Some(0),
            "max-age" => max_age = value.trim().trim_matches('"').parse::<u64>().ok().or(max_age),
            _ => {}
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn better_auths_document_becomes_key_rows() {
        let doc = format!(
            r#"{{"keys":[{{"crv":"Ed25519","x":"{X}","kty":"OKP","alg":"EdDSA","kid":"k1"}},{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"k2"}}]}}"#
        );
        let entries = parse(doc.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].kid.as_deref(), Some("k1"));
        assert_eq!(entries[0].alg.as_deref(), Some("EdDSA"));
        assert_eq!(entries[1].alg, None);
        let set = key_set(&entries);
        assert!(set.contains_kid("k1") && set.contains_kid("k2"));
        assert!(set.keys().iter().all(|k| k.key.is_ok()), "{:?}", set.keys());
    }

    #[test]
    fn malformed_documents_are_refused_whole() {
        for (doc, why) in [
            ("<html>", "not a JSON object"),
            ("[]", "not a JSON object"),
            (r#"{"keys":{}}"#, "not an array"),
            (r#"{"key":[]}"#, "no \"keys\""),
            (r#"{"keys":[1]}"#, "keys[0] as a number"),
            (r#"{"keys":[],"keys":[]}"#, "duplicate"),
        ] {
            let e = parse(doc.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{doc}: {e}");
        }
        let many = format!(r#"{{"keys":[{}]}}"#, vec!["{}"; MAX_ENTRIES + 1].join(","));
        assert!(parse(many.as_bytes()).unwrap_err().contains("more than"));
    }

    #[test]
    fn bad_entries_are_unusable_keys_not_a_bad_document() {
        let doc = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"dup"}},{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"dup"}},{{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},{{"kty":"OKP","crv":"Ed25519","x":"{X}"}}]}}"#
        );
        let entries = parse(doc.as_bytes()).unwrap();
        assert_eq!(entries[3].kid, None);
        let set = key_set(&entries);
        assert_eq!(set.len(), 3, "the entry without a kid is left out");
        assert!(set.keys().iter().all(|k| k.key.is_err()), "duplicates and a secret key are unusable");
    }

    #[test]
    fn cache_control() {
        assert_eq!(cache_max_age("public, max-age=300"), Some(300));
        assert_eq!(cache_max_age("max-age=\"60\", must-revalidate"), Some(60));
        assert_eq!(cache_max_age("no-store"), Some(0));
        assert_eq!(cache_max_age("max-age=600, no-cache"), Some(0));
        assert_eq!(cache_max_age("public"), None);
        assert_eq!(cache_max_age("max-age=-1"), None);
    }
}
