//! Verified tokens, remembered per backend and keyed by the exact token text.
//!
//! An entry is served only while `now <= valid_until` (the token's `exp` plus leeway, capped by
//! its key's grace period), and the whole cache is dropped when the key set or any trust
//! setting changes (both are O(1) generation compares). Size is bounded by
//! `auth_jwt.cache_size`: when full, each insert evicts one entry, chosen by the CLOCK
//! approximation of least-recently-used (an entry used since the hand last passed gets a second
//! chance; an expired one never does). One at a time, not in batches: dropping hundreds of
//! entries at once (each a few dozen small allocations) overflowed malloc's per-size caches and
//! cost every cold verification ~10% in allocator slow paths (bench/FINDINGS.md).
//! Keys are hashed with FxHash rather than SipHash, and only their last 32 bytes and length
//! (`TokenHasher`): only tokens that verified (signed by the issuer) are ever inserted, so an
//! attacker cannot choose colliding keys, and those bytes lie in the signature, which differs
//! between any two signed tokens. A cold verification hashes its token twice (lookup, insert);
//! hashing all of a 1 KB token cost each time more than the lookup itself.

use crate::settings;
use auth_jwt_core::{
    parse_payload, role_claim, session_id, sub_claim, uuid_claim, SessionIdError, UuidClaimError, Verified,
};
use rustc_hash::FxHasher;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// A verified token, reduced to what the SQL functions use. The parsed claims are dropped as
/// soon as the entry is built; an entry is then a handful of allocations, cheap to evict.
/// Every derived value depends on settings (uuid_claim, session_claim) whose change empties the
/// cache, so computing them once here is exact.
pub struct VerifiedToken {
    pub valid_until: i64,
    /// The payload exactly as signed, kept only while the jsonb has not been built from it.
    payload: RefCell<Option<String>>,
    jsonb: OnceCell<Box<[u8]>>,
    uuid: Result<[u8; 16], UuidClaimError>,
    sub: Option<Box<str>>,
    /// The session id (`auth_jwt.session_claim`), or why the token names none.
    sid: Result<Box<str>, SessionIdError>,
    /// The role claim (`auth_jwt.role_claim`) if it is a string, read only while
    /// `auth_jwt.role_claim_map` is set (otherwise nothing looks at it).
    role: Option<Box<str>>,
    /// Served since the clock hand last passed it.
    referenced: Cell<bool>,
}

impl VerifiedToken {
    /// `with_jsonb`: build the claims' jsonb now, from the parsed claims in hand (jwt_verify and
    /// jwt_claims want it; the uuid and sub functions do not).
    pub fn new(verified: Verified, with_jsonb: bool) -> VerifiedToken {
        let Verified { claims, valid_until, .. } = verified;
        let root = claims.root();
        let uuid = uuid_claim(root, settings::uuid_claim()).map(|u| *u.as_bytes());
        let sub = sub_claim(root).map(Into::into);
        let sid = session_id(root, settings::session_claim()).map(Into::into);
        let role =
            settings::role_claim_mapped().then(|| role_claim(root, settings::role_claim()).map(Into::into)).flatten();
        let (jsonb, payload) = if with_jsonb {
            (OnceCell::from(crate::jsonb::from_claims(&claims)), None)
        } else {
            (OnceCell::new(), Some(claims.into_text()))
        };
        VerifiedToken {
            valid_until,
            uuid,
            sub,
            sid,
            role,
            payload: RefCell::new(payload),
            jsonb,
            referenced: Cell::new(false),
        }
    }

    /// The claims as a `jsonb` varlena (see `jsonb`). Built at most once; for an entry made
    /// without it, from the payload parsed again, which is dropped only once the jsonb exists:
    /// jsonb_in can raise (a cancel, the stack depth limit), and the entry must stay whole.
    pub fn jsonb_bytes(&self) -> &[u8] {
        let bytes = self.jsonb.get_or_init(|| {
            let payload = self.payload.borrow().clone().unwrap_or_default();
            let claims = parse_payload(payload).unwrap_or_else(|e| crate::errors::rejected(&e));
            crate::jsonb::from_claims(&claims)
        });
        self.payload.borrow_mut().take();
        bytes
    }

    /// The user-id claim (name from `auth_jwt.uuid_claim`).
    pub fn uuid(&self) -> &Result<[u8; 16], UuidClaimError> {
        &self.uuid
    }

    /// The `sub` claim if it is a string (Better Auth's user id).
    pub fn sub(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    /// The session id the token names, or why it names none.
    pub fn sid(&self) -> Result<&str, SessionIdError> {
        self.sid.as_deref().map_err(|e| *e)
    }

    /// The role claim, if `auth_jwt.role_claim_map` is set and the claim is a string.
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }
}

/// FxHash of the last 32 bytes and the length of what it is given: `str` and `Rc<str>` keys
/// both hash through `write` (see the module doc for why the tail is enough).
#[derive(Default)]
struct TokenHasher(FxHasher);

const HASHED_TAIL: usize = 32;

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
        self.0.write_usize(bytes.len());
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

type TokenMap = HashMap<Rc<str>, Rc<VerifiedToken>, BuildHasherDefault<TokenHasher>>;

struct Cache {
    map: TokenMap,
    /// The clock: keys in insertion order, the hand at the front. It may also hold keys that
    /// left the map (expired on lookup); those are skipped, and compacted away (`compact_clock`).
    clock: VecDeque<Rc<str>>,
    /// The last token served: a repeated token skips hashing (a memcmp instead).
    last: Option<(Rc<str>, Rc<VerifiedToken>)>,
    keys_generation: u64,
    settings_generation: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        map: TokenMap::default(),
        clock: VecDeque::new(),
        last: None,
        keys_generation: 0,
        settings_generation: 0,
    });
}

/// Drop everything if the keys or the trust settings changed since the entries were verified.
pub fn sync(keys_generation: u64, settings_generation: u64) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.keys_generation != keys_generation || c.settings_generation != settings_generation {
            c.map.clear();
            c.clock.clear();
            c.last = None;
            c.keys_generation = keys_generation;
            c.settings_generation = settings_generation;
        }
    })
}

pub fn get(token: &str, now: i64) -> Option<Rc<VerifiedToken>> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((t, e)) = &c.last {
            if **t == *token && now <= e.valid_until {
                e.referenced.set(true);
                return Some(e.clone());
            }
        }
        let hit = match c.map.get_key_value(token) {
            Some((k, e)) if now <= e.valid_until => {
                e.referenced.set(true);
                Some((k.clone(), e.clone()))
            }
            Some(_) => {
                c.map.remove(token);
                c.compact_clock();
                None
            }
            None => None,
        };
        let (k, e) = hit?;
        c.last = Some((k, e.clone()));
        Some(e)
    })
}

pub fn put(token: &str, entry: Rc<VerifiedToken>, now: i64) {
    let cap = settings::cache_capacity();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        // Normally one eviction; a lowered cache_size takes effect in full at the next insert.
        while c.map.len() >= cap.max(1) {
            if !c.evict_one(now) {
                break;
            }
        }
        if cap == 0 {
            c.last = None;
            return;
        }
        c.compact_clock();
        let key: Rc<str> = token.into();
        c.last = Some((key.clone(), entry.clone()));
        c.clock.push_back(key.clone());
        c.map.insert(key, entry);
    })
}

impl Cache {
    /// Drop the clock's keys of entries that already left the map (expired on lookup) once they
    /// outnumber the live ones, so they never hold more memory than the entries themselves.
    /// Each pass at least halves the clock: amortised O(1) per insert.
    fn compact_clock(&mut self) {
        if self.clock.len() > 2 * self.map.len() + 64 {
            let Cache { clock, map, .. } = self;
            clock.retain(|k| map.contains_key(k));
        }
    }

    /// Advance the hand until one entry is evicted; false if the map is empty.
    fn evict_one(&mut self, now: i64) -> bool {
        while let Some(key) = self.clock.pop_front() {
            let Some(e) = self.map.get(&key) else { continue };
            if e.referenced.get() && now <= e.valid_until {
                e.referenced.set(false);
                self.clock.push_back(key);
                continue;
            }
            self.map.remove(&key);
            if self.last.as_ref().is_some_and(|(k, _)| Rc::ptr_eq(k, &key)) {
                self.last = None;
            }
            return true;
        }
        // Only reachable if the clock lost track of a key; start over rather than grow.
        let had = !self.map.is_empty();
        self.map.clear();
        self.last = None;
        had
    }
}

pub fn len() -> usize {
    CACHE.with(|c| c.borrow().map.len())
}
