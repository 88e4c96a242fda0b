//! Per-backend counters, exposed by `auth_jwt.stats()`. Counting is a thread-local increment,
//! so it is free on the per-row path and shows what the caches really did (tests assert on it
//! instead of on timings).

use auth_jwt_core::{Alg, ErrorKind};
use pgrx::prelude::*;
use std::cell::Cell;

const N: usize = ErrorKind::ALL.len();

thread_local! {
    static VERIFICATIONS: Cell<i64> = const { Cell::new(0) };
    static CACHE_HITS: Cell<i64> = const { Cell::new(0) };
    static KEY_LOADS: Cell<i64> = const { Cell::new(0) };
    static UNKNOWN_KID_RELOADS: Cell<i64> = const { Cell::new(0) };
    static REQUEST_TOKEN_READS: Cell<i64> = const { Cell::new(0) };
    static SESSION_LOOKUPS: Cell<i64> = const { Cell::new(0) };
    static JWKS_FETCHES: Cell<i64> = const { Cell::new(0) };
    static JWKS_FETCH_FAILURES: Cell<i64> = const { Cell::new(0) };
    static JWKS_FETCHES_INTERRUPTED: Cell<i64> = const { Cell::new(0) };
    static JWKS_BYTES: Cell<i64> = const { Cell::new(0) };
    static REJECTIONS: [Cell<i64>; N] = const { [const { Cell::new(0) }; N] };
    static BY_ALGORITHM: [Cell<i64>; 5] = const { [const { Cell::new(0) }; 5] };
}

fn inc(c: &'static std::thread::LocalKey<Cell<i64>>) {
    c.with(|c| c.set(c.get() + 1));
}

/// A full verification: signature checked and claims validated.
pub fn verified(alg: Alg) {
    inc(&VERIFICATIONS);
    let i = Alg::ALL.iter().position(|a| *a == alg).unwrap_or(0);
    BY_ALGORITHM.with(|c| c[i].set(c[i].get() + 1));
}

/// A result served from a cache (the token cache or the per-request memo).
pub fn cache_hit() {
    inc(&CACHE_HITS);
}

pub fn key_load() {
    inc(&KEY_LOADS);
}

pub fn unknown_kid_reload() {
    inc(&UNKNOWN_KID_RELOADS);
}

/// The request's token source (`auth_jwt.token` or `request.headers`) was read and parsed: the
/// per-request memo missed.
pub fn request_token_read() {
    inc(&REQUEST_TOKEN_READS);
}

/// A session was looked up in `auth_jwt.session_table` (the per-transaction memo missed).
pub fn session_lookup() {
    inc(&SESSION_LOOKUPS);
}

/// A response from `auth_jwt.jwks_url` was received (whatever it held).
pub fn jwks_fetch(bytes: usize) {
    inc(&JWKS_FETCHES);
    JWKS_BYTES.with(|b| b.set(b.get().saturating_add(bytes as i64)));
}

/// A fetch of `auth_jwt.jwks_url` gave no usable document (network, status, size, content).
pub fn jwks_fetch_failure() {
    inc(&JWKS_FETCH_FAILURES);
}

/// A wait for a fetch of `auth_jwt.jwks_url` was cancelled (the request stays in flight).
pub fn jwks_fetch_interrupted() {
    inc(&JWKS_FETCHES_INTERRUPTED);
}

pub fn rejected(kind: ErrorKind) {
    let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    REJECTIONS.with(|r| r[i].set(r[i].get() + 1));
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
    let rejections: Vec<i64> = REJECTIONS.with(|r| r.iter().map(Cell::get).collect());
    let by_reason: serde_json::Map<String, serde_json::Value> =
        ErrorKind::ALL.iter().zip(&rejections).map(|(k, n)| (k.name().to_owned(), (*n).into())).collect();
    let by_alg: serde_json::Map<String, serde_json::Value> =
        BY_ALGORITHM.with(|c| Alg::ALL.iter().zip(c).map(|(a, n)| (a.name().to_owned(), n.get().into())).collect());
    TableIterator::once((
        VERIFICATIONS.with(Cell::get),
        pgrx::JsonB(serde_json::Value::Object(by_alg)),
        CACHE_HITS.with(Cell::get),
        KEY_LOADS.with(Cell::get),
        UNKNOWN_KID_RELOADS.with(Cell::get),
        REQUEST_TOKEN_READS.with(Cell::get),
        SESSION_LOOKUPS.with(Cell::get),
        JWKS_FETCHES.with(Cell::get),
        JWKS_FETCH_FAILURES.with(Cell::get),
        JWKS_FETCHES_INTERRUPTED.with(Cell::get),
        JWKS_BYTES.with(Cell::get),
        rejections.iter().sum(),
        pgrx::JsonB(serde_json::Value::Object(by_reason)),
        crate::token_cache::len() as i64,
    ))
}

/// Zero this backend's counters.
#[pg_extern(schema = "auth_jwt", volatile, parallel_safe)]
fn stats_reset() {
    for c in [
        &VERIFICATIONS,
        &CACHE_HITS,
        &KEY_LOADS,
        &UNKNOWN_KID_RELOADS,
        &REQUEST_TOKEN_READS,
        &SESSION_LOOKUPS,
        &JWKS_FETCHES,
        &JWKS_FETCH_FAILURES,
        &JWKS_FETCHES_INTERRUPTED,
        &JWKS_BYTES,
    ] {
        c.with(|c| c.set(0));
    }
    REJECTIONS.with(|r| r.iter().for_each(|c| c.set(0)));
    BY_ALGORITHM.with(|r| r.iter().for_each(|c| c.set(0)));
}
