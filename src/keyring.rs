//! What a key source is and serves, whichever it is: the interface every source implements, its
//! key set, the one generation that tells caches the set changed, and the listing `jwks_keys()`
//! shows. The rule that keeps caches across a reload that changed nothing lives here once, for
//! every source. (`key_source` chooses the source; the sources sit between the two.)

use auth_jwt_core::{Key, KeySet};
use std::cell::Cell;
use std::rc::Rc;
use std::time::SystemTime;

/// A place keys come from: the key table (`key_table`) or a JWKS URL (`jwks_url`). Each keeps its
/// own freshness rule; a new source is one module implementing this, plus one arm in
/// `key_source::source()`.
pub trait KeySource {
    /// The keys may be used without asking the source (no SPI, no network).
    fn fresh(&self) -> bool;
    /// Nothing has invalidated the keys since they were loaded: the cheapest part of `fresh`,
    /// for the per-row memo, which checks the transaction and settings itself.
    fn untouched(&self) -> bool;
    /// The current keys, loaded or fetched first if they are not fresh.
    fn current(&self) -> Rc<KeySet>;
    /// A token names `kid`, which the current keys lack: look again (rate-limited by the source),
    /// and return the keys if they have it now.
    fn reload_for_unknown_kid(&self, kid: &str) -> Option<Rc<KeySet>>;
    /// Every key the source reads, for `jwks_keys()`.
    fn listing(&self) -> Listing;
}

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(1) };
}

/// The key-set generation: it moves after any load that changed which keys exist or how. The
/// token cache and the per-request memo compare it.
pub fn generation() -> u64 {
    GENERATION.with(Cell::get)
}

/// The keys in force changed other than through `serve` (a source switched between two stores of
/// its own): caches filled under the old ones are dropped.
pub fn invalidate() {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

/// The set to serve after a load: `old` itself if `new` holds the same keys (caches filled under
/// it stay valid), otherwise `new`, and the generation moves.
pub fn serve(old: Option<&Rc<KeySet>>, new: KeySet) -> Rc<KeySet> {
    match old {
        Some(old) if **old == new => old.clone(),
        _ => {
            GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
            Rc::new(new)
        }
    }
}

/// Every key a source reads, as `auth_jwt.jwks_keys()` shows them.
pub struct Listing {
    /// Where they came from: the key relation's name, or the JWKS URL's host.
    pub source: String,
    /// When a JWKS document was fetched.
    pub fetched_at: Option<SystemTime>,
    pub keys: Vec<Listed>,
}

/// One key row or JWKS entry, and what auth_jwt made of it.
pub struct Listed {
    /// As parsed (None: the row or entry has no kid, which `no_kid` explains).
    pub key: Option<Key>,
    pub no_kid: &'static str,
    /// The row's or entry's own alg and crv (shown when the key is unusable).
    pub alg: Option<String>,
    pub crv: Option<String>,
    /// Unix seconds, when the source has them.
    pub created_at: Option<f64>,
    pub expires_at: Option<f64>,
}

/// Pair each of `rows` (in order; `has_kid` says which carry one) with the key `set` parsed from
/// it: `KeySet` keeps one key per row that has a kid, in order.
pub fn listed<R>(
    rows: &[R],
    set: &KeySet,
    has_kid: impl Fn(&R) -> bool,
    describe: impl Fn(&R, Option<Key>) -> Listed,
) -> Vec<Listed> {
    let mut parsed = set.keys().iter();
    rows.iter().map(|r| describe(r, if has_kid(r) { parsed.next().cloned() } else { None })).collect()
}
