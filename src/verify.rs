//! Verify one token: settings, fresh keys, the token cache, then the core verifier; then, when
//! sessions are required, the session check. And explain one (`jwt_explain`) with the same keys,
//! looked up the same way (an unknown kid reloads them), and the one verification the core's
//! explanation makes serving the session step.
//!
//! Warm path (a repeated token): a generation compare, a clock read and one hash lookup, no SPI.
//! A new token signed by a cached key: parse and verify_strict, no SPI. SPI runs only to load
//! keys (first use, after a change of the key table, or once for an unknown kid).

use crate::errors;
use crate::key_source;
use crate::sessions;
use crate::settings;
use crate::stats;
use crate::token_cache::{self, VerifiedToken};
use auth_jwt_core::{token, verify_compact, KeySet};
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
/// `with_jsonb`: the caller returns the claims as jsonb (see `VerifiedToken::new`).
pub fn verify(token: &str, with_jsonb: bool) -> Rc<VerifiedToken> {
    let entry = verify_token(token, with_jsonb);
    sessions::check(&entry);
    entry
}

fn verify_token(token: &str, with_jsonb: bool) -> Rc<VerifiedToken> {
    require_utf8();
    let validation = settings::validation().unwrap_or_else(|e| errors::config(&e));
    let now = now();
    let source = key_source::source();
    let fresh = source.fresh();
    if fresh {
        if let Some(hit) = cached(token, now) {
            return hit;
        }
    }
    // Structure and header first: a malformed token costs no key load.
    let compact = HEADER_MEMO
        .with(|m| token::parse_with(token, validation.max_token_size, &mut m.borrow_mut()))
        .unwrap_or_else(|e| errors::rejected(&e));
    let keys = source.current();
    if !fresh {
        // After a (re)load: the cache survives if the keys did not change.
        if let Some(hit) = cached(token, now) {
            return hit;
        }
    }
    let keys = with_kid(keys, compact.header.kid.as_deref());
    let alg = compact.header.alg;
    let verified = verify_compact(compact, &keys, &validation, now).unwrap_or_else(|e| errors::rejected(&e));
    stats::verified(alg);
    let entry = Rc::new(VerifiedToken::new(verified, with_jsonb));
    token_cache::sync(key_source::generation(), settings::generation());
    token_cache::put(token, entry.clone(), now);
    entry
}

/// The keys to look `kid` up in: `keys`, or the source's again if they lack it and it may look
/// (rate-limited by the source).
fn with_kid(keys: Rc<KeySet>, kid: Option<&str>) -> Rc<KeySet> {
    match kid {
        Some(kid) if !keys.contains_kid(kid) => key_source::source().reload_for_unknown_kid(kid).unwrap_or(keys),
        _ => keys,
    }
}

/// For `jwt_explain`: one row per step, (step, passed or not or not checked, why). A
/// configuration problem is a row of its own, and the other steps still run (with an empty issuer
/// or audience check turned off); the session step uses the claims the explanation verified.
pub fn explain(token: &str) -> Vec<(String, Option<bool>, String)> {
    let mut rows = Vec::new();
    let (validation, problem) = settings::validation_for_diagnosis();
    if let Some(e) = problem {
        rows.push(("configuration".to_owned(), Some(false), format!("{}: {}", errors::config_message(&e), e.detail)));
    }
    let keys = key_source::source().current();
    let kid = token::parse(token, validation.max_token_size).ok().and_then(|c| c.header.kid);
    let keys = with_kid(keys, kid.as_deref());
    let explained = auth_jwt_core::explanation(token, &keys, &validation, now(), settings::uuid_claim());
    rows.extend(explained.steps.into_iter().map(|s| (s.name.to_owned(), s.ok, errors::sentence(&s.detail))));
    let session = if !settings::require_session() {
        (None, "not checked: auth_jwt.require_session is off".to_owned())
    } else {
        match explained.verified {
            None => (None, "not checked: the token did not pass the steps above".to_owned()),
            Some(claims) => match sessions::explain(claims.root()) {
                Ok(d) => (Some(true), d),
                Err(e) => (Some(false), format!("{}: {}", e.message(), e.detail())),
            },
        }
    };
    rows.push(("session".to_owned(), session.0, errors::sentence(&session.1)));
    rows
}

/// A cached result, after dropping the cache if keys or settings changed since it was filled.
fn cached(token: &str, now: i64) -> Option<Rc<VerifiedToken>> {
    token_cache::sync(key_source::generation(), settings::generation());
    let hit = token_cache::get(token, now)?;
    stats::cache_hit();
    Some(hit)
}
