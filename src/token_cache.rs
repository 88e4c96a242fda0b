//! Verified tokens, remembered per backend and keyed by the exact token text.
//!
//! An entry is served only while `now <= valid_until` (the token's `exp` plus leeway, capped by
//! its key's grace period), and the whole cache is dropped when the key set or any trust
//! setting changes (both are O(1) generation compares). Size is bounded by
//! `auth_jwt.cache_size`: when full, expired entries go first, then the least recently used half.
//! Keys are hashed with FxHash rather than SipHash: only tokens that verified (signed by the
//! issuer) are ever inserted, so an attacker cannot choose colliding keys, and hashing a 4 KB
//! token must not cost microseconds.

use crate::settings;
use auth_jwt_core::{uuid_claim, UuidClaimError, Verified};
use pgrx::pg_sys;
use rustc_hash::FxHashMap;
use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

/// A verified token and what the SQL functions derive from it, computed at most once.
pub struct Entry {
    pub verified: Verified,
    pub valid_until: i64,
    jsonb: OnceCell<Box<[u8]>>,
    uuid: OnceCell<Result<[u8; 16], UuidClaimError>>,
    last_used: Cell<u64>,
}

impl Entry {
    pub fn new(verified: Verified) -> Entry {
        Entry {
            valid_until: verified.valid_until,
            verified,
            jsonb: OnceCell::new(),
            uuid: OnceCell::new(),
            last_used: Cell::new(0),
        }
    }

    /// The claims as a `jsonb` varlena, built once (see `jsonb`) and copied out of the memory
    /// context it was built in.
    pub fn jsonb_bytes(&self) -> &[u8] {
        self.jsonb.get_or_init(|| {
            let p = crate::jsonb::from_claims(&self.verified.claims, &self.verified.payload);
            // SAFETY: a complete palloc'd varlena; copied, then freed.
            unsafe {
                let len = pgrx::varlena::varsize_any(p);
                let bytes = std::slice::from_raw_parts(p as *const u8, len).to_vec().into_boxed_slice();
                pg_sys::pfree(p.cast());
                bytes
            }
        })
    }

    /// The user-id claim (name from `auth_jwt.uuid_claim`; any change of it empties the cache).
    pub fn uuid(&self) -> &Result<[u8; 16], UuidClaimError> {
        self.uuid.get_or_init(|| {
            uuid_claim(&self.verified.claims, settings::str_of(&settings::UUID_CLAIM)).map(|u| *u.as_bytes())
        })
    }
}

struct Cache {
    map: FxHashMap<Rc<str>, Rc<Entry>>,
    /// The last token served: a repeated token skips hashing (a memcmp instead).
    last: Option<(Rc<str>, Rc<Entry>)>,
    keys_generation: u64,
    settings_generation: u64,
    tick: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        map: FxHashMap::default(),
        last: None,
        keys_generation: 0,
        settings_generation: 0,
        tick: 0,
    });
}

/// Drop everything if the keys or the trust settings changed since the entries were verified.
pub fn sync(keys_generation: u64, settings_generation: u64) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.keys_generation != keys_generation || c.settings_generation != settings_generation {
            c.map.clear();
            c.last = None;
            c.keys_generation = keys_generation;
            c.settings_generation = settings_generation;
        }
    })
}

pub fn get(token: &str, now: i64) -> Option<Rc<Entry>> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.tick += 1;
        let tick = c.tick;
        if let Some((t, e)) = &c.last {
            if **t == *token && now <= e.valid_until {
                e.last_used.set(tick);
                return Some(e.clone());
            }
        }
        let hit = match c.map.get_key_value(token) {
            Some((k, e)) if now <= e.valid_until => {
                e.last_used.set(tick);
                Some((k.clone(), e.clone()))
            }
            Some(_) => {
                c.map.remove(token);
                None
            }
            None => None,
        };
        let (k, e) = hit?;
        c.last = Some((k, e.clone()));
        Some(e)
    })
}

pub fn put(token: &str, entry: Rc<Entry>, now: i64) {
    let cap = settings::CACHE_SIZE.get().max(0) as usize;
    if cap == 0 {
        return;
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.map.len() >= cap {
            c.map.retain(|_, e| now <= e.valid_until);
        }
        if c.map.len() >= cap {
            let mut ticks: Vec<u64> = c.map.values().map(|e| e.last_used.get()).collect();
            let mid = ticks.len() / 2;
            let (_, median, _) = ticks.select_nth_unstable(mid);
            let median = *median;
            c.map.retain(|_, e| e.last_used.get() > median);
        }
        c.tick += 1;
        entry.last_used.set(c.tick);
        let key: Rc<str> = token.into();
        c.last = Some((key.clone(), entry.clone()));
        c.map.insert(key, entry);
    })
}

pub fn len() -> usize {
    CACHE.with(|c| c.borrow().map.len())
}
