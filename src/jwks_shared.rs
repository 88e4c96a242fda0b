//! Keys from `auth_jwt.jwks_url`, shared by the whole server: the source in force when auth_jwt
//! is in `shared_preload_libraries` (without it, `jwks_url` fetches per backend).
//!
//! Mechanism: a few slots in shared memory (`SLOTS`, one per URL and CA file in use, the least
//! recently used given to a new URL), each holding the last good document's bytes, a generation,
//! when it was fetched and the outcome of the last fetch. One background worker, "auth_jwt jwks",
//! is the only process that fetches. Backends copy a slot's bytes when its generation moved and
//! parse them once; a new connection finds the document there and makes no request.
//!
//! When the worker fetches: a document still in use is refreshed ahead of its max age (by the
//! request's timeout, at most a quarter of the age), so no backend waits for it while the endpoint
//! answers; a backend that finds no fresh document, or a token whose kid it lacks, asks for a
//! fetch (at most once per cooldown, counted from the last fetch started, whoever asked) and waits
//! for that one request, in short interruptible naps. Per server: one request per max age per URL
//! in use, plus at most one per cooldown for unknown kids and retries after failures. A slot
//! nobody used for a max age is not refreshed.
//!
//! Freshness and outages follow `jwks_url`'s rules, with the document's age counted from its
//! arrival at the worker: a backend uses a document within its own `auth_jwt.jwks_max_age` (or a
//! shorter Cache-Control max-age); past that, only when the worker's last completed fetch failed,
//! within `auth_jwt.jwks_stale_if_error` of the document's arrival. A cancelled wait is only a
//! cancelled wait: the fetch goes on in the worker, so no backend can extend a removed key's life
//! or buy a request by cancelling, and new connections get the last good document during an outage.
//!
//! Bounds: shared memory is fixed at server start, `SLOTS` documents of at most
//! `auth_jwt.jwks_max_size` as set then; each backend keeps one parsed document. Parallel workers
//! read the shared document like any backend (a fetch they need is the worker's).

use crate::errors;
use crate::jwks_fetch::{host_of, Answer, Flight, Refused, Request};
use crate::jwks_url::{self, JwksUrl};
use crate::keyring::{self, KeySource, Listing};
use crate::settings;
use crate::shmem;
use crate::stats;
use auth_jwt_core::jwks::{self, Entry};
use auth_jwt_core::KeySet;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// URLs (with their CA file) served at once; a new one takes the least recently used slot.
const SLOTS: usize = 4;
const URL_MAX: usize = 2048;
const CA_MAX: usize = 1024;
const WHY_MAX: usize = 512;
/// `cache_max_age` when the response had none.
const NO_MAX_AGE: u64 = u64::MAX;

/// Bytes of one slot's document: `auth_jwt.jwks_max_size` when the server started.
static CAPACITY: AtomicUsize = AtomicUsize::new(0);

#[repr(C)]
struct Text<const N: usize> {
    len: u32,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    fn get(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(N)]
    }

    /// `s`, cut to fit at a character boundary.
    fn set(&mut self, s: &str) {
        let mut n = s.len().min(N);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.len = n as u32;
    }
}

/// The start of the area (all zeros at server start: no worker, empty slots).
#[repr(C)]
struct Header {
    /// The worker's latch (in its PGPROC, in shared memory) as an address; 0 while it is not up.
    worker_latch: AtomicUsize,
    /// The last document generation given out (under the lock); generations are never 0.
    last_gen: u64,
    slots: [Slot; SLOTS],
}

/// One URL's document and fetch state. The atomics are read without the lock; everything else,
/// and every write, is under it.
#[repr(C)]
struct Slot {
    /// The document's generation (0: none yet). A backend's parsed copy is current while equal.
    gen: AtomicU64,
    /// Moves when the slot is given to another URL; a fetch for an old epoch is dropped.
    epoch: AtomicU64,
    /// Fetches completed, successful or not: what waiting backends watch.
    completed: AtomicU64,
    /// Monotonic ms of the last use by a backend (at most a second old while in use).
    last_used_ms: AtomicU64,
    url: Text<URL_MAX>,
    ca: Text<CA_MAX>,
    /// Why the last completed fetch failed (when `failed`).
    why: Text<WHY_MAX>,
    /// The bounds its fetches run under: part of the key, with the URL and CA file.
    timeout_ms: u64,
    max_size: u64,
    /// The schedule of the backend that used the slot last (superuser settings).
    max_age_ms: u64,
    cooldown_ms: u64,
    /// A backend asked for a fetch.
    wanted: bool,
    /// The worker's request is running.
    fetching: bool,
    /// The last completed fetch failed.
    failed: bool,
    /// Monotonic ms when the last fetch started (0: never); the cooldown counts from it.
    attempt_ms: u64,
    doc_len: u64,
    /// Monotonic ms of the document's arrival, and its wall-clock time (µs since 1970).
    fetched_ms: u64,
    fetched_unix_us: u64,
    cache_max_age: u64,
}

/// Ask for the shared memory and register the worker; from `_PG_init`, only while preloading.
pub fn init() {
    if !shmem::preloading() {
        return;
    }
    let capacity = settings::jwks_max_size() as usize;
    CAPACITY.store(capacity, Ordering::Relaxed);
    shmem::request(size_of::<Header>() + SLOTS * capacity);
    BackgroundWorkerBuilder::new("auth_jwt jwks")
        .set_type("auth_jwt jwks")
        .set_library("auth_jwt")
        .set_function("auth_jwt_jwks_worker")
        // Connected to no database, so that pg_stat_activity shows it; started once the server
        // accepts reads, so that a hot standby has its own.
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// The server shares one document per URL (auth_jwt was preloaded).
pub fn active() -> bool {
    shmem::area().is_some()
}

fn header() -> *mut Header {
    shmem::area().expect("auth_jwt's shared memory is attached").cast() // ok: only called when active()
}

fn slot(i: usize) -> *mut Slot {
    // SAFETY: i < SLOTS, inside the area requested for the header.
    unsafe { &raw mut (*header()).slots[i] }
}

/// The slot's document bytes (`CAPACITY` of them, after the header).
fn doc_area(i: usize) -> *mut u8 {
    // SAFETY: the area holds the header and then SLOTS documents of CAPACITY bytes.
    unsafe { header().cast::<u8>().add(size_of::<Header>() + i * CAPACITY.load(Ordering::Relaxed)) }
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: CLOCK_MONOTONIC is system-wide on Linux: the same clock in every process.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// How long a document is used, by this backend's settings.
fn age_ms(cache_max_age: u64) -> u64 {
    ms(jwks_url::age((cache_max_age != NO_MAX_AGE).then_some(cache_max_age)))
}

/// This backend's parsed copy of one slot's document.
struct Local {
    slot: usize,
    gen: u64,
    url: String,
    ca: String,
    entries: Rc<Vec<Entry>>,
    keys: Rc<KeySet>,
    fetched_ms: u64,
    at: SystemTime,
    cache_max_age: u64,
    /// Serving it past max age was logged.
    stale_logged: bool,
    /// When this backend last marked the slot used.
    touched_ms: u64,
}

/// URLs (with their CA file) whose newest document this backend remembers.
const NEWEST_MAX: usize = 256;

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
    /// The arrival of the newest document of each (url, ca) this backend used, from any slot or
    /// its own fetch: an older one is never served stale (red-team, round 19: switching
    /// `jwks_timeout`, hence slots, served an older slot's document, with a removed key, after a
    /// newer one was seen; round 20: the same after the backend's own fetch).
    static NEWEST: RefCell<Vec<(String, String, u64)>> = const { RefCell::new(Vec::new()) };
}

/// The shared JWKS document as a key source.
pub struct SharedJwksUrl;

impl KeySource for SharedJwksUrl {
    /// This backend's own document of the configured URL is fresh (it fetches that URL itself,
    /// for want of a slot), or its copy of the slot's current document is, within max age.
    fn fresh(&self) -> bool {
        if JwksUrl.fresh() {
            return true;
        }
        LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let Some(l) = l.as_mut() else { return false };
            // SAFETY: atomics of a slot, read without the lock.
            let gen = unsafe { (*slot(l.slot)).gen.load(Ordering::Acquire) };
            let now = now_ms();
            let fresh = l.gen == gen
                && now < l.fetched_ms.saturating_add(age_ms(l.cache_max_age))
                && l.url == settings::jwks_url()
                && l.ca == settings::jwks_ca_file();
            if fresh && now >= l.touched_ms + 1000 {
                l.touched_ms = now;
                // SAFETY: as above; the worker refreshes ahead only documents in use.
                unsafe { (*slot(l.slot)).last_used_ms.store(now, Ordering::Relaxed) };
            }
            fresh
        })
    }

    fn untouched(&self) -> bool {
        self.fresh()
    }

    fn current(&self) -> Rc<KeySet> {
        if self.fresh() {
            if JwksUrl.fresh() {
                return JwksUrl.current();
            }
            if let Some(keys) = local_keys() {
                return keys;
            }
        }
        match look(None) {
            Looked::Keys(keys) => keys,
            Looked::NoSlot => JwksUrl.current(),
            Looked::Nothing(seen) => failed(&seen),
        }
    }

    fn reload_for_unknown_kid(&self, kid: &str) -> Option<Rc<KeySet>> {
        if JwksUrl.fresh() {
            return JwksUrl.reload_for_unknown_kid(kid);
        }
        match look(Some(kid)) {
            Looked::Keys(keys) => Some(keys),
            Looked::NoSlot => JwksUrl.reload_for_unknown_kid(kid),
            Looked::Nothing(_) => None,
        }
    }

    /// The document `current` served: this backend's own if it fetches the URL itself, else its
    /// copy of the slot's (red-team, round 18: a stale own document listed the copy of another
    /// URL's slot).
    fn listing(&self) -> Listing {
        self.current();
        if jwks_url::knows() {
            return JwksUrl.listing();
        }
        let (url, ca) = (settings::jwks_url(), settings::jwks_ca_file());
        LOCAL.with(|l| {
            let l = l.borrow();
            match l.as_ref().filter(|l| l.url == url && l.ca == ca) {
                Some(l) => jwks_url::listing_of(&l.entries, l.at),
                None => errors::jwks_unavailable(&host_of(url), "This backend holds no document of it.".into()),
            }
        })
    }
}

/// For want of a slot, this backend fetches a URL itself (`jwks_url`, which holds state only for
/// such URLs here) until its own document is past max age, then looks for a slot again. While it
/// does, it keeps no copy of the server's document of that URL, and when it gets a slot it
/// forgets its own.
fn local_keys() -> Option<Rc<KeySet>> {
    LOCAL.with(|l| l.borrow().as_ref().map(|l| l.keys.clone()))
}

/// What a backend saw of its slot, under the lock.
struct Seen {
    slot: usize,
    epoch: u64,
    /// A document newer than this backend's copy: (generation, bytes, fetched ms, wall µs, max-age).
    newer: Option<(u64, Vec<u8>, u64, u64, u64)>,
    /// The slot's document (0: none) and its arrival.
    gen: u64,
    fetched_ms: u64,
    busy: bool,
    failed: bool,
    why: String,
    completed: u64,
}

enum Looked {
    Keys(Rc<KeySet>),
    /// Every slot is held by a URL in use.
    NoSlot,
    /// No usable keys (or not the kid asked for): what the slot held when this backend gave up.
    Nothing(Seen),
}

/// The keys: the slot's document if it is fresh (and has `kid`, when one is asked for); else a
/// fetch is joined or asked for (cooldown allowing) and waited for, once; else, for `current`,
/// the slot's last good document while the endpoint fails and within stale-if-error.
fn look(kid: Option<&str>) -> Looked {
    let (url, ca) = (settings::jwks_url(), settings::jwks_ca_file());
    if url.len() > URL_MAX || ca.len() > CA_MAX {
        errors::jwks_unavailable(
            &host_of(url),
            format!("With shared_preload_libraries, auth_jwt.jwks_url may have at most {URL_MAX} bytes and auth_jwt.jwks_ca_file {CA_MAX}."),
        );
    }
    let mut waited = false;
    let seen = loop {
        // A URL switching between the server's document and this backend's own fetches forgets
        // the other store's state for it and drops what was verified under it (red-team, round
        // 15: a store's own swap-if-changed rule kept a token verified under the other one, and
        // an outage served an own document older than the server's). Only that URL's, and only
        // when it switches: a switch to another URL forgets nothing (round 16: that reset the
        // cooldown, a request per call of a function that SETs the URL).
        let Some(seen) = see(url, ca) else {
            if !jwks_url::knows() {
                LOCAL.with(|l| {
                    let mut l = l.borrow_mut();
                    if l.as_ref().is_some_and(|l| l.url == url && l.ca == ca) {
                        *l = None;
                    }
                });
                keyring::invalidate();
            }
            return Looked::NoSlot;
        };
        if jwks_url::knows() {
            // Its own document, if newer than the slot's, still bars the slot's from being served
            // stale (red-team, round 20: an older slot document served after a newer own one).
            if let Some(age) = jwks_url::forget() {
                seen_arrival(url, ca, now_ms().saturating_sub(ms(age)));
            }
            keyring::invalidate();
        }
        adopt(&seen, url, ca);
        let current = |l: &Local| seen.gen != 0 && l.gen == seen.gen;
        let fresh = LOCAL.with(|l| {
            l.borrow()
                .as_ref()
                .is_some_and(|l| current(l) && now_ms() < l.fetched_ms.saturating_add(age_ms(l.cache_max_age)))
        });
        let has_kid =
            |kid: &str| LOCAL.with(|l| l.borrow().as_ref().is_some_and(|l| current(l) && l.keys.contains_kid(kid)));
        match kid {
            None if fresh => return local_keys().map_or(Looked::Nothing(seen), Looked::Keys),
            Some(k) if has_kid(k) => return local_keys().map_or(Looked::Nothing(seen), Looked::Keys),
            _ if waited => break seen,
            _ => {}
        }
        let Some(completed) = (if seen.busy { Some(seen.completed) } else { ask(&seen) }) else { break seen };
        if kid.is_some() {
            stats::unknown_kid_reload();
        }
        wait(&seen, completed);
        waited = true;
    };
    if kid.is_none() {
        if let Some(keys) = stale(&seen) {
            return Looked::Keys(keys);
        }
    }
    Looked::Nothing(seen)
}

/// Lock, find the slot of `url` (or take a free one), record this backend's bounds and use, and
/// copy a document newer than this backend's. None: every slot is held by another URL in use.
fn see(url: &str, ca: &str) -> Option<Seen> {
    let local_gen = LOCAL.with(|l| l.borrow().as_ref().filter(|l| l.url == url && l.ca == ca).map_or(0, |l| l.gen));
    let now = now_ms();
    let _held = shmem::lock(true);
    // SAFETY: the exclusive lock is held for every non-atomic access below.
    unsafe {
        let i = find_or_take(url, ca, ms(settings::jwks_timeout()), settings::jwks_max_size(), now)?;
        let s = &mut *slot(i);
        s.max_age_ms = ms(settings::jwks_max_age());
        s.cooldown_ms = ms(jwks_url::cooldown());
        s.last_used_ms.store(now, Ordering::Relaxed);
        let gen = s.gen.load(Ordering::Relaxed);
        let newer = (gen != 0 && gen != local_gen).then(|| {
            let bytes = std::slice::from_raw_parts(doc_area(i), s.doc_len as usize).to_vec();
            (gen, bytes, s.fetched_ms, s.fetched_unix_us, s.cache_max_age)
        });
        Some(Seen {
            slot: i,
            epoch: s.epoch.load(Ordering::Relaxed),
            newer,
            gen,
            fetched_ms: s.fetched_ms,
            busy: s.fetching || s.wanted,
            failed: s.failed,
            why: String::from_utf8_lossy(s.why.get()).into_owned(),
            completed: s.completed.load(Ordering::Relaxed),
        })
    }
}

/// The slot of `url` fetched under `ca`, `timeout_ms` and `max_size`, or a free one emptied for
/// them: never used, or idle (unused for its max age: the worker no longer refreshes it, and no
/// backend's copy of it is fresh). Never a slot in use, so that more URLs than slots cannot make
/// them evict each other in turn. The bounds a fetch runs under are part of the key, so that a
/// failure is only ever one under the backend's own bounds (red-team, round 18: another
/// database's shorter timeout made the worker's refresh fail, and a backend then served a
/// removed key as stale).
///
/// # Safety
/// The exclusive lock is held.
unsafe fn find_or_take(url: &str, ca: &str, timeout_ms: u64, max_size: u64, now: u64) -> Option<usize> {
    // SAFETY: the caller holds the exclusive lock.
    unsafe {
        let holds = |i: usize| {
            let s = &*slot(i);
            s.url.get() == url.as_bytes()
                && s.ca.get() == ca.as_bytes()
                && s.timeout_ms == timeout_ms
                && s.max_size == max_size
        };
        if let Some(i) = (0..SLOTS).find(|&i| (*slot(i)).url.len > 0 && holds(i)) {
            return Some(i);
        }
        let idle = |i: usize| {
            let s = &*slot(i);
            s.url.len == 0
                || (!s.fetching && now >= s.last_used_ms.load(Ordering::Relaxed).saturating_add(s.max_age_ms))
        };
        let i = (0..SLOTS)
            .filter(|&i| idle(i))
            .min_by_key(|&i| ((*slot(i)).url.len > 0, (*slot(i)).last_used_ms.load(Ordering::Relaxed)))?;
        let s = &mut *slot(i);
        s.epoch.fetch_add(1, Ordering::Relaxed);
        s.gen.store(0, Ordering::Release);
        s.url.set(url);
        s.ca.set(ca);
        s.timeout_ms = timeout_ms;
        s.max_size = max_size;
        s.why.set("");
        s.wanted = false;
        s.fetching = false;
        s.failed = false;
        s.attempt_ms = 0;
        s.doc_len = 0;
        s.last_used_ms.store(now, Ordering::Relaxed);
        Some(i)
    }
}

/// A document of `url` and `ca` that arrived at `fetched_ms` was in force in this backend.
fn seen_arrival(url: &str, ca: &str, fetched_ms: u64) {
    NEWEST.with(|n| {
        let mut n = n.borrow_mut();
        let newest = match n.iter().position(|(u, c, _)| u == url && c == ca) {
            Some(i) => n.remove(i).2.max(fetched_ms),
            None => fetched_ms,
        };
        n.insert(0, (url.to_owned(), ca.to_owned(), newest));
        n.truncate(NEWEST_MAX);
    });
}

/// Parse a newer document into this backend's copy (the key set kept if its keys are the same).
fn adopt(seen: &Seen, url: &str, ca: &str) {
    let Some((gen, bytes, fetched_ms, unix_us, cache_max_age)) = &seen.newer else { return };
    // The worker stored it only after parsing it: an error here would be a bug, and fails closed.
    let Ok(entries) = jwks::parse(bytes) else { return };
    let set = jwks::key_set(&entries);
    seen_arrival(url, ca, *fetched_ms);
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let old = l.as_ref().filter(|o| o.url == url && o.ca == ca).map(|o| &o.keys);
        let keys = keyring::serve(old, set);
        *l = Some(Local {
            slot: seen.slot,
            gen: *gen,
            url: url.to_owned(),
            ca: ca.to_owned(),
            entries: Rc::new(entries),
            keys,
            fetched_ms: *fetched_ms,
            at: UNIX_EPOCH + Duration::from_micros(*unix_us),
            cache_max_age: *cache_max_age,
            stale_logged: false,
            touched_ms: now_ms(),
        });
    });
}

/// Ask the worker for a fetch if the cooldown allows: the count of completed fetches to wait past.
fn ask(seen: &Seen) -> Option<u64> {
    let cooldown = ms(jwks_url::cooldown());
    let now = now_ms();
    let completed = {
        let _held = shmem::lock(true);
        // SAFETY: under the exclusive lock.
        unsafe {
            let s = &mut *slot(seen.slot);
            if s.epoch.load(Ordering::Relaxed) != seen.epoch {
                return None;
            }
            if !(s.fetching || s.wanted) {
                if s.attempt_ms != 0 && now < s.attempt_ms.saturating_add(cooldown) {
                    return None;
                }
                s.wanted = true;
            }
            s.completed.load(Ordering::Relaxed)
        }
    };
    wake_worker();
    Some(completed)
}

fn wake_worker() {
    // SAFETY: the worker's latch lives in its PGPROC, in shared memory; SetLatch is safe to call
    // on any process's latch.
    unsafe {
        let latch = (*header()).worker_latch.load(Ordering::Acquire);
        if latch != 0 {
            pg_sys::SetLatch(latch as *mut pg_sys::Latch);
        }
    }
}

/// Wait until the worker completes a fetch past `completed` (or the slot changes hands), in
/// naps that handle interrupts; never longer than the request's own bound and two seconds.
fn wait(seen: &Seen, completed: u64) {
    let start = now_ms();
    let deadline = start + ms(settings::jwks_timeout()) + 2000;
    // SAFETY: atomics of the header and a slot, read without the lock.
    let (h, s) = unsafe { (&*header(), &*slot(seen.slot)) };
    // Without a worker, no longer than its restart takes (it is restarted a second after it exits).
    let mut worker_seen = start;
    while s.completed.load(Ordering::Acquire) == completed && s.epoch.load(Ordering::Acquire) == seen.epoch {
        let now = now_ms();
        if h.worker_latch.load(Ordering::Acquire) != 0 {
            worker_seen = now;
        }
        if now >= deadline || now >= worker_seen + 1500 {
            return;
        }
        shmem::nap(2);
    }
}

/// Past max age: the slot's last good document (this backend's copy of it, never an older one)
/// only while the worker's last completed fetch failed, within stale-if-error of its arrival.
fn stale(seen: &Seen) -> Option<Rc<KeySet>> {
    let limit = ms(settings::jwks_stale_if_error());
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let l = l.as_mut().filter(|l| seen.gen != 0 && l.gen == seen.gen)?;
        let age = now_ms().saturating_sub(l.fetched_ms);
        let newest = NEWEST.with(|n| n.borrow().iter().find(|(u, c, _)| *u == l.url && *c == l.ca).map(|x| x.2));
        if !seen.failed || age >= limit || newest.is_some_and(|newest| l.fetched_ms < newest) {
            return None;
        }
        if !l.stale_logged {
            l.stale_logged = true;
            pgrx::log!(
                "auth_jwt: keys from {} are past auth_jwt.jwks_max_age (fetched {} s ago); using them under auth_jwt.jwks_stale_if_error while fetching fails: {}",
                host_of(&l.url),
                age / 1000,
                seen.why
            );
        }
        Some(l.keys.clone())
    })
}

/// No usable keys: say why, naming the endpoint's host and the worker's last failure.
fn failed(seen: &Seen) -> ! {
    // SAFETY: an atomic of the header.
    let worker_up = unsafe { (*header()).worker_latch.load(Ordering::Acquire) != 0 };
    let detail = match (seen.failed, seen.gen != 0, worker_up) {
        (true, true, _) => format!(
            "The last good document was fetched {} s ago, longer than auth_jwt.jwks_stale_if_error allows; fetching again fails: {}.",
            now_ms().saturating_sub(seen.fetched_ms) / 1000,
            seen.why
        ),
        (true, false, _) => format!("Fetching it failed: {}.", seen.why),
        (false, _, false) => "The auth_jwt jwks background worker, which fetches for the whole server, is not running: the server log says why (max_worker_processes must leave it a slot).".into(),
        (false, _, true) => "No fetch by the auth_jwt jwks background worker completed within auth_jwt.jwks_timeout.".into(),
    };
    errors::jwks_unavailable(&host_of(settings::jwks_url()), detail)
}

/// The worker's request for one slot.
struct Running {
    epoch: u64,
    url: String,
    flight: Flight,
}

/// The background worker: fetches what backends asked for and refreshes documents in use ahead
/// of their max age, one request per slot at a time, each on its own helper thread.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn auth_jwt_jwks_worker(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    {
        let _held = shmem::lock(true);
        // SAFETY: under the exclusive lock; a previous worker's requests died with it.
        unsafe {
            for i in 0..SLOTS {
                let s = &mut *slot(i);
                if s.fetching {
                    s.fetching = false;
                    s.wanted = true;
                }
            }
        }
    }
    // SAFETY: MyProc is this process's PGPROC, in shared memory, for the process's life.
    unsafe { (*header()).worker_latch.store(&raw mut (*pg_sys::MyProc).procLatch as usize, Ordering::Release) };
    let mut running: [Option<Running>; SLOTS] = Default::default();
    let mut nap = Duration::ZERO;
    while BackgroundWorker::wait_latch(Some(nap)) {
        for (i, r) in running.iter_mut().enumerate() {
            if let Some(answer) = r.as_ref().and_then(|r| r.flight.arrived()) {
                let r = r.take().expect("checked above"); // ok: Some just now
                complete(i, r.epoch, &r.url, answer);
            }
        }
        let (starts, next) = due(now_ms());
        for (i, epoch, url, request) in starts {
            match request.map_err(Refused::Failed).and_then(Flight::start) {
                Ok(flight) => running[i] = Some(Running { epoch, url, flight }),
                Err(Refused::Failed(e)) => complete(i, epoch, &url, Answer::now(Err(e))),
                // Requests this worker stopped waiting for (slots given to other URLs) still run:
                // ask again at the next turn, with nothing recorded.
                Err(Refused::Busy) => retry(i, epoch),
            }
        }
        nap = if running.iter().any(Option::is_some) {
            Duration::from_millis(2)
        } else {
            Duration::from_millis(next.saturating_sub(now_ms()).clamp(1, 1000))
        };
    }
    // SAFETY: as above; then exit 1, so that the postmaster restarts the worker a second later
    // if it was terminated while the server runs (exit 0 would end it for good).
    unsafe {
        (*header()).worker_latch.store(0, Ordering::Release);
        pg_sys::proc_exit(1);
    }
}

/// Under the lock: the fetches to start now (marked running), and when the next one is due.
#[allow(clippy::type_complexity)]
fn due(now: u64) -> (Vec<(usize, u64, String, Result<Request, String>)>, u64) {
    let capacity = CAPACITY.load(Ordering::Relaxed) as u64;
    let mut starts = Vec::new();
    let mut next = u64::MAX;
    let _held = shmem::lock(true);
    for i in 0..SLOTS {
        // SAFETY: under the exclusive lock.
        let s = unsafe { &mut *slot(i) };
        if s.url.len == 0 || s.fetching {
            continue;
        }
        let age = if s.cache_max_age == NO_MAX_AGE {
            s.max_age_ms
        } else {
            s.cache_max_age.saturating_mul(1000).clamp(s.cooldown_ms.min(s.max_age_ms), s.max_age_ms)
        };
        let in_use = now < s.last_used_ms.load(Ordering::Relaxed).saturating_add(s.max_age_ms);
        let when = if s.wanted {
            now
        } else if !in_use || (s.doc_len == 0 && !s.failed) {
            u64::MAX
        } else if s.failed {
            s.attempt_ms.saturating_add(s.cooldown_ms)
        } else {
            let lead = (s.timeout_ms + 1000).min(age / 4);
            (s.fetched_ms + age - lead).max(s.attempt_ms.saturating_add(s.cooldown_ms.min(s.max_age_ms)))
        };
        if when > now {
            next = next.min(when);
            continue;
        }
        s.wanted = false;
        s.fetching = true;
        s.attempt_ms = now;
        let url = String::from_utf8_lossy(s.url.get()).into_owned();
        let ca = String::from_utf8_lossy(s.ca.get()).into_owned();
        let request = Request::new(&url, Duration::from_millis(s.timeout_ms), s.max_size, &ca).map(|r| {
            r.capped(
                capacity,
                "the shared cache's room for one document (auth_jwt.jwks_max_size when the server started)",
            )
        });
        starts.push((i, s.epoch.load(Ordering::Relaxed), url, request));
    }
    (starts, next)
}

/// A fetch that could not start yet: wanted again, not running.
fn retry(i: usize, epoch: u64) {
    let _held = shmem::lock(true);
    // SAFETY: under the exclusive lock.
    let s = unsafe { &mut *slot(i) };
    if s.epoch.load(Ordering::Relaxed) == epoch {
        s.fetching = false;
        s.wanted = true;
    }
}

/// A fetch completed: store a valid document (a new generation), or record the failure.
fn complete(i: usize, epoch: u64, url: &str, answer: Answer) {
    let capacity = CAPACITY.load(Ordering::Relaxed);
    let arrived_ms = now_ms().saturating_sub(ms(answer.arrived.elapsed()));
    let unix_us = answer.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    let outcome = answer.result.and_then(|r| {
        if r.body.len() > capacity {
            return Err(format!(
                "the response is larger than the shared cache holds ({capacity} bytes: auth_jwt.jwks_max_size when the server started)"
            ));
        }
        jwks::parse(&r.body).map_err(|e| format!("the response {e}"))?;
        Ok((r.body, r.max_age))
    });
    if let Err(e) = &outcome {
        pgrx::log!("auth_jwt: fetching keys from {} failed: {e}", host_of(url));
    }
    let _held = shmem::lock(true);
    // SAFETY: under the exclusive lock; the document fits (checked above).
    unsafe {
        let s = &mut *slot(i);
        if s.epoch.load(Ordering::Relaxed) != epoch {
            return;
        }
        s.fetching = false;
        match outcome {
            Ok((body, max_age)) => {
                std::ptr::copy_nonoverlapping(body.as_ptr(), doc_area(i), body.len());
                s.doc_len = body.len() as u64;
                s.fetched_ms = arrived_ms;
                s.fetched_unix_us = unix_us;
                s.cache_max_age = max_age.unwrap_or(NO_MAX_AGE);
                s.failed = false;
                s.why.set("");
                let h = &mut *header();
                h.last_gen += 1;
                s.gen.store(h.last_gen, Ordering::Release);
            }
            Err(e) => {
                s.failed = true;
                s.why.set(&e);
            }
        }
        s.completed.fetch_add(1, Ordering::Release);
    }
}
