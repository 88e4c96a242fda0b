//! Verify one token: settings, fresh keys, the token cache, then the core verifier; then, when
//! sessions are required, the session check.
//!
//! Warm path (a repeated token): a generation compare, a clock read and one hash lookup, no SPI.
//! A new token signed by a cached key: parse and verify_strict, no SPI. SPI runs only to load
//! keys (first use, after a change of the key table, or once for an unknown kid).

use crate::errors;
use crate::key_source;
use crate::sessions;
use crate::settings;
use crate::stats;
use crate::token_cache::{self, Entry};
use auth_jwt_core::{token, verify_compact};
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// Consecutive tokens from one signing key share their header segment (see HeaderMemo).
    static HEADER_MEMO: RefCell<token::HeaderMemo> = RefCell::default();
    /// The database's encoding is UTF-8 (it cannot change while the backend runs).
    static UTF8: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Claims are UTF-8 and their strings reach SQL unconverted (in jsonb, text and uuid results),
/// so any other database encoding would get mojibake, or different bytes depending on the path
/// (found by red-team). Refuse instead.
fn require_utf8() {
    let utf8 = UTF8.with(|u| {
        u.get().unwrap_or_else(|| {
            // SAFETY: reads the backend's database encoding, set before any function runs.
            let utf8 = unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 };
            u.set(Some(utf8));
            utf8
        })
    });
    if !utf8 {
        // SAFETY: a static, NUL-terminated encoding name.
        let name = unsafe { std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()) };
        errors::database_not_utf8(&name.to_string_lossy())
    }
}

/// Wall-clock Unix seconds at this moment (not the transaction start: a long transaction must
/// not keep an expired token alive).
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The verified entry for `token`, or an ERROR (28000 for a bad token or, when sessions are
/// required, one whose session has ended; a configuration error for a database that is not set
/// up). The token cache spans transactions; the session check never does (see `sessions`).
/// `with_jsonb`: the caller returns the claims as jsonb (see `Entry::new`).
pub fn verify(token: &str, with_jsonb: bool) -> Rc<Entry> {
    let entry = verify_token(token, with_jsonb);
    sessions::check(&entry);
    entry
}

fn verify_token(token: &str, with_jsonb: bool) -> Rc<Entry> {
    require_utf8();
    let validation = settings::validation().unwrap_or_else(|e| errors::config(&e));
    let now = now();
    let fresh = key_source::fresh();
    if fresh {
        if let Some(hit) = cached(token, now) {
            return hit;
        }
    }
    // Structure and header first: a malformed token costs no key load.
    let compact = HEADER_MEMO
        .with(|m| token::parse_with(token, validation.max_token_size, &mut m.borrow_mut()))
        .unwrap_or_else(|e| errors::rejected(&e));
    let mut keys = key_source::current();
    if !fresh {
        // After a (re)load: the cache survives if the keys did not change.
        if let Some(hit) = cached(token, now) {
            return hit;
        }
    }
    if let Some(kid) = compact.header.kid.as_deref() {
        if !keys.contains_kid(kid) {
            if let Some(reloaded) = key_source::reload_for_unknown_kid(kid) {
                keys = reloaded;
            }
        }
    }
    let alg = compact.header.alg;
    let verified = verify_compact(compact, &keys, &validation, now).unwrap_or_else(|e| errors::rejected(&e));
    stats::verified(alg);
    let entry = Rc::new(Entry::new(verified, with_jsonb));
    token_cache::sync(key_source::generation(), settings::generation());
    token_cache::put(token, entry.clone(), now);
    entry
}

/// A cached result, after dropping the cache if keys or settings changed since it was filled.
fn cached(token: &str, now: i64) -> Option<Rc<Entry>> {
    token_cache::sync(key_source::generation(), settings::generation());
    let hit = token_cache::get(token, now)?;
    stats::cache_hit();
    Some(hit)
}
