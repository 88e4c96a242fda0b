//! Where keys come from: Better Auth's `jwks` table (`keys`, the default) or its JWKS endpoint
//! (`jwks_url`, when `auth_jwt.jwks_url` is set). The verifier and the per-request memo ask here;
//! each source keeps its own freshness rules, and both bump one generation whenever the key set
//! they serve changes, which is what the token cache and the memo compare.

use crate::jwks_url;
use crate::keys;
use crate::settings;
use auth_jwt_core::KeySet;
use std::cell::Cell;
use std::rc::Rc;

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(1) };
}

/// Keys come from the JWKS URL.
pub fn remote() -> bool {
    settings::has_value(&settings::JWKS_URL)
}

/// The key-set generation: differs after any load that changed which keys exist or how.
pub fn generation() -> u64 {
    GENERATION.with(Cell::get)
}

/// A source loaded a key set that differs from the one it served before.
pub fn changed() {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

/// The cached keys may be used without asking the source (no SPI, no network).
pub fn fresh() -> bool {
    if remote() {
        jwks_url::fresh()
    } else {
        keys::fresh()
    }
}

/// For the per-row memo: nothing has invalidated the keys it was filled under (cheap).
pub fn is_fresh() -> bool {
    if remote() {
        jwks_url::fresh()
    } else {
        keys::is_fresh()
    }
}

/// The current keys, loaded or fetched first if they are not fresh.
pub fn current() -> Rc<KeySet> {
    if remote() {
        jwks_url::current()
    } else {
        keys::current()
    }
}

/// A token names `kid`, which the current keys lack: look again (rate-limited by each source).
pub fn reload_for_unknown_kid(kid: &str) -> Option<Rc<KeySet>> {
    if remote() {
        jwks_url::reload_for_unknown_kid(kid)
    } else {
        keys::reload_for_unknown_kid(kid)
    }
}
