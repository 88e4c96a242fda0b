//! Diagnostics as SQL: what an operator needs to see why a token is refused, without scripts.
//! Public information only: never a token, a signature or key material.

use crate::keys::{self, Row};
use crate::settings::{self, str_of};
use crate::verify::now;
use crate::{jwks_url, key_source};
use auth_jwt_core::{Alg, Key, KeySet, KeyStatus};
use pgrx::prelude::*;

fn ts(unix: Option<f64>) -> Option<TimestampWithTimeZone> {
    // PostgreSQL's epoch is 2000-01-01; TimestampTz counts microseconds from it.
    unix.and_then(|s| TimestampWithTimeZone::try_from(((s - 946_684_800.0) * 1e6).round() as i64).ok())
}

type KeyInfo = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    String,
    Option<String>,
    String,
    Option<TimestampWithTimeZone>,
);

/// One row per key auth_jwt reads (a row of the key table, or an entry of the JWKS document when
/// `auth_jwt.jwks_url` is set), with what auth_jwt makes of it right now: for a usable key, the
/// algorithm it verifies, its curve and its type ("OKP Ed25519", "EC P-256", "RSA 2048 bits");
/// for an unusable one, the row's own alg and crv and the reason; where it came from (the
/// relation, or the URL's host) and, for a JWKS document, when it was fetched.
#[allow(clippy::type_complexity)] // pgrx needs the named columns written out here
#[pg_extern(schema = "auth_jwt", volatile, parallel_restricted)]
fn jwks_keys() -> TableIterator<
    'static,
    (
        name!(kid, Option<String>),
        name!(alg, Option<String>),
        name!(crv, Option<String>),
        name!(key_type, Option<String>),
        name!(created_at, Option<TimestampWithTimeZone>),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(usable_until, Option<TimestampWithTimeZone>),
        name!(status, String),
        name!(reason, Option<String>),
        name!(source, String),
        name!(fetched_at, Option<TimestampWithTimeZone>),
    ),
> {
    TableIterator::new(if key_source::remote() { remote_keys() } else { table_keys() })
}

fn table_keys() -> Vec<KeyInfo> {
    let rows: Vec<Row> = keys::read_current_rows();
    let source = str_of(&settings::JWKS_TABLE).to_owned();
    // Parse as the verifier does (KeySet also marks ids that appear twice).
    let set = KeySet::from_rows(rows.iter().filter_map(Row::key_row));
    let mut parsed = set.keys().iter();
    rows.iter()
        .map(|r| {
            let key = r.id.as_ref().and_then(|_| parsed.next());
            describe(
                key,
                "id is NULL",
                r.alg.clone(),
                r.crv.clone(),
                (ts(r.created_at), ts(r.expires_at)),
                &source,
                None,
            )
        })
        .collect()
}

fn remote_keys() -> Vec<KeyInfo> {
    let (entries, at) = jwks_url::current_entries();
    let source = jwks_url::host_of(str_of(&settings::JWKS_URL));
    let fetched = at.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs_f64());
    let set = auth_jwt_core::jwks::key_set(&entries);
    let mut parsed = set.keys().iter();
    entries
        .iter()
        .map(|e| {
            let key = e.kid.as_ref().and_then(|_| parsed.next());
            describe(key, "the entry has no kid", e.alg.clone(), e.crv.clone(), (None, None), &source, ts(fetched))
        })
        .collect()
}

fn describe(
    key: Option<&Key>,
    no_kid: &str,
    alg: Option<String>,
    crv: Option<String>,
    (created_at, expires_at): (Option<TimestampWithTimeZone>, Option<TimestampWithTimeZone>),
    source: &str,
    fetched_at: Option<TimestampWithTimeZone>,
) -> KeyInfo {
    let grace = settings::KEY_GRACE_PERIOD.get() as i64;
    let (status, reason, until) = match key {
        None => ("invalid".to_owned(), Some(no_kid.to_owned()), None),
        Some(key) => {
            let st = key.status(now(), grace);
            let reason = match &st {
                KeyStatus::Invalid(why) => Some(why.clone()),
                _ => None,
            };
            (st.name().to_owned(), reason, key.usable_until(grace).map(|u| u as f64))
        }
    };
    let (alg, crv, key_type) = match key.and_then(|k| k.key.as_ref().ok()) {
        Some(pk) => (Some(pk.alg().name().to_owned()), curve(pk.alg()), Some(pk.describe())),
        None => (alg, crv, None),
    };
    (
        key.map(|k| k.kid.clone()),
        alg,
        crv,
        key_type,
        created_at,
        expires_at,
        ts(until),
        status,
        reason,
        source.to_owned(),
        fetched_at,
    )
}

/// The JWK curve of a key that verifies `alg` (RSA has none).
fn curve(alg: Alg) -> Option<String> {
    match alg {
        Alg::EdDSA => Some("Ed25519".into()),
        Alg::ES256 => Some("P-256".into()),
        Alg::ES512 => Some("P-521".into()),
        Alg::RS256 | Alg::PS256 => None,
    }
}

/// One row per verification step for `token`: whether it passed and why. Never raises for a
/// bad token (a missing key table is still an error); never shows the token, signature or keys.
#[pg_extern(schema = "auth_jwt", stable, parallel_restricted, strict)]
fn jwt_explain(
    token: &str,
) -> TableIterator<'static, (name!(step, String), name!(ok, Option<bool>), name!(detail, String))> {
    let mut rows = Vec::new();
    let (validation, problem) = settings::validation_for_diagnosis();
    if let Some(e) = problem {
        rows.push((
            "configuration".to_owned(),
            Some(false),
            format!("{}: {}", crate::errors::config_message(&e), e.detail),
        ));
    }
    let keys = crate::key_source::current();
    for s in auth_jwt_core::explain(token, &keys, &validation, now(), str_of(&settings::UUID_CLAIM)) {
        rows.push((s.name.to_owned(), s.ok, crate::errors::sentence(&s.detail)));
    }
    let session = if !settings::REQUIRE_SESSION.get() {
        (None, "not checked: auth_jwt.require_session is off".to_owned())
    } else {
        match auth_jwt_core::verify(token, &keys, &validation, now()) {
            Err(_) => (None, "not checked: the token did not pass the steps above".to_owned()),
            Ok(v) => match crate::sessions::explain(v.claims.root()) {
                Ok(d) => (Some(true), d),
                Err(e) => (Some(false), format!("{}: {}", e.message(), e.detail())),
            },
        }
    };
    rows.push(("session".to_owned(), session.0, crate::errors::sentence(&session.1)));
    TableIterator::new(rows)
}
