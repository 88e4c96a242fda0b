//! Per-backend counters (`auth_jwt.stats()` shows them; see `diagnostics`). Counting is a
//! thread-local increment, so it is free on the per-row path and shows what the caches really
//! did (tests assert on it instead of on timings).

use auth_jwt_core::{Alg, ErrorKind};
use std::cell::Cell;

/// Every counter, as `stats()` returns them.
#[derive(Clone)]
pub struct Counters {
    pub verifications: i64,
    pub by_algorithm: [i64; Alg::ALL.len()],
    pub cache_hits: i64,
    pub key_loads: i64,
    pub unknown_kid_reloads: i64,
    pub request_token_reads: i64,
    pub session_lookups: i64,
    pub jwks_fetches: i64,
    pub jwks_fetch_failures: i64,
    pub jwks_fetches_interrupted: i64,
    pub jwks_bytes: i64,
    pub rejections: [i64; ErrorKind::ALL.len()],
}

/// The live counters: one cell each, so that counting on the per-row path is one increment.
struct Cells {
    verifications: Cell<i64>,
    by_algorithm: [Cell<i64>; Alg::ALL.len()],
    cache_hits: Cell<i64>,
    key_loads: Cell<i64>,
    unknown_kid_reloads: Cell<i64>,
    request_token_reads: Cell<i64>,
    session_lookups: Cell<i64>,
    jwks_fetches: Cell<i64>,
    jwks_fetch_failures: Cell<i64>,
    jwks_fetches_interrupted: Cell<i64>,
    jwks_bytes: Cell<i64>,
    rejections: [Cell<i64>; ErrorKind::ALL.len()],
}

thread_local! {
    static CELLS: Cells = const {
        Cells {
            verifications: Cell::new(0),
            by_algorithm: [const { Cell::new(0) }; Alg::ALL.len()],
            cache_hits: Cell::new(0),
            key_loads: Cell::new(0),
            unknown_kid_reloads: Cell::new(0),
            request_token_reads: Cell::new(0),
            session_lookups: Cell::new(0),
            jwks_fetches: Cell::new(0),
            jwks_fetch_failures: Cell::new(0),
            jwks_fetches_interrupted: Cell::new(0),
            jwks_bytes: Cell::new(0),
            rejections: [const { Cell::new(0) }; ErrorKind::ALL.len()],
        }
    };
}

fn add(cell: impl FnOnce(&Cells) -> &Cell<i64>, n: i64) {
    CELLS.with(|c| {
        let cell = cell(c);
        cell.set(cell.get().wrapping_add(n));
    })
}

/// This backend's counters since it started (or since `reset`).
pub fn read() -> Counters {
    CELLS.with(|c| Counters {
        verifications: c.verifications.get(),
        by_algorithm: c.by_algorithm.each_ref().map(Cell::get),
        cache_hits: c.cache_hits.get(),
        key_loads: c.key_loads.get(),
        unknown_kid_reloads: c.unknown_kid_reloads.get(),
        request_token_reads: c.request_token_reads.get(),
        session_lookups: c.session_lookups.get(),
        jwks_fetches: c.jwks_fetches.get(),
        jwks_fetch_failures: c.jwks_fetch_failures.get(),
        jwks_fetches_interrupted: c.jwks_fetches_interrupted.get(),
        jwks_bytes: c.jwks_bytes.get(),
        rejections: c.rejections.each_ref().map(Cell::get),
    })
}

pub fn reset() {
    CELLS.with(|c| {
        let all = [
            &c.verifications,
            &c.cache_hits,
            &c.key_loads,
            &c.unknown_kid_reloads,
            &c.request_token_reads,
            &c.session_lookups,
            &c.jwks_fetches,
            &c.jwks_fetch_failures,
            &c.jwks_fetches_interrupted,
            &c.jwks_bytes,
        ];
        all.into_iter().chain(&c.by_algorithm).chain(&c.rejections).for_each(|n| n.set(0));
    })
}

/// A full verification: signature checked and claims validated.
pub fn verified(alg: Alg) {
    add(|c| &c.verifications, 1);
    add(|c| &c.by_algorithm[alg.index()], 1);
}

/// A result served from a cache (the token cache or the per-request memo).
pub fn cache_hit() {
    add(|c| &c.cache_hits, 1);
}

pub fn key_load() {
    add(|c| &c.key_loads, 1);
}

pub fn unknown_kid_reload() {
    add(|c| &c.unknown_kid_reloads, 1);
}

/// The request's token source (`auth_jwt.token` or `request.headers`) was read and parsed: the
/// per-request memo missed.
pub fn request_token_read() {
    add(|c| &c.request_token_reads, 1);
}

/// A session was looked up in `auth_jwt.session_table` (the per-transaction answers missed).
pub fn session_lookup() {
    add(|c| &c.session_lookups, 1);
}

/// A response from `auth_jwt.jwks_url` was received (whatever it held).
pub fn jwks_fetch(bytes: usize) {
    add(|c| &c.jwks_fetches, 1);
    add(|c| &c.jwks_bytes, bytes as i64);
}

/// A fetch of `auth_jwt.jwks_url` gave no usable document (network, status, size, content).
pub fn jwks_fetch_failure() {
    add(|c| &c.jwks_fetch_failures, 1);
}

/// A wait for a fetch of `auth_jwt.jwks_url` was cancelled (the request stays in flight).
pub fn jwks_fetch_interrupted() {
    add(|c| &c.jwks_fetches_interrupted, 1);
}

pub fn rejected(kind: ErrorKind) {
    let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    add(|c| &c.rejections[i], 1);
}
