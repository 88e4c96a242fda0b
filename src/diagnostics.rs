//! Diagnostics as SQL, for operators (none is executable by PUBLIC): what auth_jwt makes of each
//! key (`jwks_keys`), how a token fares step by step (`jwt_explain`), and this backend's counters
//! (`stats`, `stats_reset`). Public information only: never a token, a signature or key material.

use crate::key_source;
use crate::keyring::Listed;
use crate::settings;
use crate::stats;
use crate::token_cache;
use crate::verify::{self, now};
use auth_jwt_core::{Alg, ErrorKind, KeyStatus};
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
    let listing = key_source::source().listing();
    let fetched_at =
        ts(listing.fetched_at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()));
    TableIterator::new(
        listing.keys.into_iter().map(move |k| describe(k, &listing.source, fetched_at)).collect::<Vec<_>>(),
    )
}

fn describe(listed: Listed, source: &str, fetched_at: Option<TimestampWithTimeZone>) -> KeyInfo {
    let grace = settings::key_grace_period();
    let key = listed.key.as_ref();
    let (status, reason, until) = match key {
        None => ("invalid".to_owned(), Some(listed.no_kid.to_owned()), None),
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
        Some(pk) => (Some(pk.alg().name().to_owned()), pk.alg().curve().map(str::to_owned), Some(pk.describe())),
        None => (listed.alg, listed.crv, None),
    };
    (
        key.map(|k| k.kid.clone()),
        alg,
        crv,
        key_type,
        ts(listed.created_at),
        ts(listed.expires_at),
        ts(until),
        status,
        reason,
        source.to_owned(),
        fetched_at,
    )
}

/// One row per verification step for `token`: whether it passed and why. Never raises for a
/// bad token (a missing key table is still an error); never shows the token, signature or keys.
#[pg_extern(schema = "auth_jwt", stable, parallel_restricted, strict)]
fn jwt_explain(
    token: &str,
) -> TableIterator<'static, (name!(step, String), name!(ok, Option<bool>), name!(detail, String))> {
    TableIterator::new(verify::explain(token))
}

/// This backend's counters since it started (or since `auth_jwt.stats_reset()`).
#[allow(clippy::type_complexity)] // pgrx needs the named columns written out here
#[pg_extern(schema = "auth_jwt", volatile, parallel_safe)]
fn stats() -> TableIterator<
    'static,
    (
        name!(verifications, i64),
        name!(verifications_by_algorithm, pgrx::JsonB),
        name!(cache_hits, i64),
        name!(key_loads, i64),
        name!(unknown_kid_reloads, i64),
        name!(request_token_reads, i64),
        name!(session_lookups, i64),
        name!(jwks_fetches, i64),
        name!(jwks_fetch_failures, i64),
        name!(jwks_fetches_interrupted, i64),
        name!(jwks_bytes, i64),
        name!(rejections, i64),
        name!(rejections_by_reason, pgrx::JsonB),
        name!(cached_tokens, i64),
    ),
> {
    let n = stats::read();
    let by_reason: serde_json::Map<String, serde_json::Value> =
        ErrorKind::ALL.iter().zip(n.rejections).map(|(k, n)| (k.name().to_owned(), n.into())).collect();
    let by_alg: serde_json::Map<String, serde_json::Value> =
        Alg::ALL.iter().zip(n.by_algorithm).map(|(a, n)| (a.name().to_owned(), n.into())).collect();
    TableIterator::once((
        n.verifications,
        pgrx::JsonB(serde_json::Value::Object(by_alg)),
        n.cache_hits,
        n.key_loads,
        n.unknown_kid_reloads,
        n.request_token_reads,
        n.session_lookups,
        n.jwks_fetches,
        n.jwks_fetch_failures,
        n.jwks_fetches_interrupted,
        n.jwks_bytes,
        n.rejections.iter().sum(),
        pgrx::JsonB(serde_json::Value::Object(by_reason)),
        token_cache::len() as i64,
    ))
}

/// Zero this backend's counters.
#[pg_extern(schema = "auth_jwt", volatile, parallel_safe)]
fn stats_reset() {
    stats::reset();
}
