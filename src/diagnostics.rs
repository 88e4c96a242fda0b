//! Diagnostics as SQL: what an operator needs to see why a token is refused, without scripts.
//! Public information only: never a token, a signature or key material.

use crate::keys::{self, Row};
use crate::settings::{self, str_of};
use crate::verify::now;
use auth_jwt_core::{Alg, KeySet, KeyStatus};
use pgrx::prelude::*;

fn ts(unix: Option<f64>) -> Option<TimestampWithTimeZone> {
    // PostgreSQL's epoch is 2000-01-01; TimestampTz counts microseconds from it.
    unix.and_then(|s| TimestampWithTimeZone::try_from(((s - 946_684_800.0) * 1e6).round() as i64).ok())
}

/// One row per row of the key table, with what auth_jwt makes of it right now: for a usable key,
/// the algorithm it verifies, its curve and its type ("OKP Ed25519", "EC P-256", "RSA 2048 bits");
/// for an unusable one, the row's own alg and crv columns and the reason.
#[allow(clippy::type_complexity)] // pgrx needs the named columns written out here
#[pg_extern(schema = "auth_jwt", volatile, parallel_safe)]
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
    ),
> {
    let rows: Vec<Row> = keys::read_current_rows();
    let grace = settings::KEY_GRACE_PERIOD.get() as i64;
    let now = now();
    // Parse as the verifier does (KeySet also marks ids that appear twice).
    let set = KeySet::from_rows(rows.iter().filter_map(Row::key_row));
    let mut parsed = set.keys().iter();
    let out: Vec<_> = rows
        .iter()
        .map(|r| {
            let key = r.id.as_ref().and_then(|_| parsed.next());
            let (status, reason, until) = match key {
                None => ("invalid".to_owned(), Some("id is NULL".to_owned()), None),
                Some(key) => {
                    let st = key.status(now, grace);
                    let reason = match &st {
                        KeyStatus::Invalid(why) => Some(why.clone()),
                        _ => None,
                    };
                    (st.name().to_owned(), reason, key.usable_until(grace).map(|u| u as f64))
                }
            };
            let (alg, crv, key_type) = match key.and_then(|k| k.key.as_ref().ok()) {
                Some(pk) => (Some(pk.alg().name().to_owned()), curve(pk.alg()), Some(pk.describe())),
                None => (r.alg.clone(), r.crv.clone(), None),
            };
            (r.id.clone(), alg, crv, key_type, ts(r.created_at), ts(r.expires_at), ts(until), status, reason)
        })
        .collect();
    TableIterator::new(out)
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
#[pg_extern(schema = "auth_jwt", stable, parallel_safe, strict)]
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
    let keys = crate::keys::current();
    for s in auth_jwt_core::explain(token, &keys, &validation, now(), str_of(&settings::UUID_CLAIM)) {
        rows.push((s.name.to_owned(), s.ok, crate::errors::sentence(&s.detail)));
    }
    let session = if !settings::REQUIRE_SESSION.get() {
        (None, "not checked: auth_jwt.require_session is off".to_owned())
    } else {
        match auth_jwt_core::verify(token, &keys, &validation, now()) {
            Err(_) => (None, "not checked: the token did not pass the steps above".to_owned()),
            Ok(v) => match crate::sessions::explain(&v.claims) {
                Ok(d) => (Some(true), d),
                Err(e) => (Some(false), format!("{}: {}", e.message(), e.detail())),
            },
        }
    };
    rows.push(("session".to_owned(), session.0, crate::errors::sentence(&session.1)));
    TableIterator::new(rows)
}
