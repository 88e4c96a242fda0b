//! Keys from Better Auth's JWKS endpoint (`auth_jwt.jwks_url`), for deployments whose Better Auth
//! keeps its keys elsewhere than this database. A key source beside the key table (`keys`): the
//! document's entries become key rows and every rule for key rows applies (see
//! `auth_jwt_core::jwks`).
//!
//! Mechanism (without `shared_preload_libraries`): each backend fetches for itself, on first use and then at most once per max age,
//! and keeps the document in its memory. Chosen over a shared cache filled by a background worker
//! because it needs no `shared_preload_libraries`, no shared memory and no locks, works the same
//! on a hot standby, and fails per backend rather than per cluster; its cost is bounded and
//! counted. Per backend: one fetch per `auth_jwt.jwks_max_age` (300 s, or a shorter
//! `Cache-Control: max-age`, never shorter than the cooldown), plus at most one per
//! `auth_jwt.jwks_cooldown` (30 s) for unknown kids and retries after failures. Per cluster: the
//! number of backends that verify times that. A pooler keeps that number small; 50 busy backends
//! make about 10 requests a minute, and `tests/integration/test_jwks_url.py` counts them.
//!
//! Freshness, like jose's `createRemoteJWKSet` and then some: a key removed from the document
//! stops verifying at the next refresh (within max age); a new kid is fetched at once (once per
//! cooldown); while the endpoint fails, the last good document keeps verifying for
//! `auth_jwt.jwks_stale_if_error` (15 min) after it was fetched, then every verification fails
//! with a configuration error that names the host and the HTTP status or network error. A failed
//! fetch is retried at most once per cooldown, so an outage never makes every request wait.
//!
//! Only a fetch that completed and failed (an HTTP error status, a network error, an invalid
//! document, the timeout) counts as the endpoint failing. A request whose wait was cancelled
//! (statement_timeout, pg_cancel_backend) stays in flight: the next statement that needs keys
//! waits for the same request, or takes its answer if it has come, dated from its arrival (a
//! parked answer is as old as it is, whenever it is picked up). Until then a document past max age
//! is not used. So cancelling can neither buy a request per statement nor keep a removed key
//! alive past max age.
//!
//! The fetch itself and its bounds (size, timeout, TLS, no redirects): `jwks_fetch`. The request
//! runs on a helper thread while the backend waits in short steps and handles interrupts:
//! statement_timeout or pg_cancel_backend cancels the wait at once (the request goes on; see
//! above). Nothing is written, and no lock is taken beyond those the query already holds.
//!
//! With `shared_preload_libraries`, `jwks_shared` serves the whole server from one document
//! instead; this is the fallback without it.

use crate::errors;
use crate::jwks_fetch::{host_of, Answer, Flight, Refused, Request, MAX_RUNNING};
use crate::keyring::{self, KeySource, Listed, Listing};
use crate::settings;
use crate::stats;
use crate::xact;
use auth_jwt_core::jwks::{self, Entry};
use auth_jwt_core::KeySet;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// The document fetched last (successfully) for a URL.
struct Fetched {
    url: String,
    /// The response's size, for the budget of parked documents.
    bytes: usize,
    entries: Rc<Vec<Entry>>,
    keys: Rc<KeySet>,
    /// Wall-clock time of the fetch, for jwks_keys().
    at: SystemTime,
    fetched: Instant,
    /// Until when it is used without asking again.
    fresh_until: Instant,
    /// Serving it past max age was logged (once per document).
    stale_logged: bool,
}

/// The last fetch started, and the outcome of the last one that completed. The cooldown counts
/// from `started`; only a completed failure (`failure`) lets a document past max age verify.
struct Attempt {
    url: String,
    started: Instant,
    /// The last completed fetch for `url` failed, and why (None: it succeeded, or none completed).
    failure: Option<String>,
}

/// A request in flight. Its result is applied when it arrives, whoever waits for it: a statement
/// cancelled while it waits leaves it here, and the next one that needs keys waits for the same
/// request instead of starting another or falling back to an old document.
struct InFlight {
    url: String,
    started: Instant,
    flight: Flight,
}

thread_local! {
    static FETCHED: RefCell<Option<Fetched>> = const { RefCell::new(None) };
    static ATTEMPT: RefCell<Option<Attempt>> = const { RefCell::new(None) };
    static IN_FLIGHT: RefCell<Option<InFlight>> = const { RefCell::new(None) };
    /// The URL and CA file whose state the three above hold, and the state of others.
    static HELD_FOR: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    static PARKED: RefCell<Vec<Parked>> = const { RefCell::new(Vec::new()) };
}

/// Other URLs' state kept besides the configured one's, so that a backend switching URLs (a
/// function's `SET auth_jwt.jwks_url`, per-role settings behind a pooler) finds each URL's
/// document and cooldown as it left them instead of a fetch per switch (red-team, round 17: with
/// five URLs in turn, a request per call): the state of the last `PARKED_MAX` URLs, with their
/// documents while these add up to at most `PARKED_BYTES` (Better Auth's are a few kB each), and
/// at least their attempt, so that a URL whose document was dropped is still fetched at most
/// once per cooldown.
const PARKED_MAX: usize = 256;
const PARKED_BYTES: usize = 4 << 20;
/// Requests in flight are kept for this many parked URLs (a process runs at most
/// `jwks_fetch::MAX_RUNNING` at once anyway).
const PARKED_IN_FLIGHT: usize = 32;

/// A URL and its CA file: a document fetched under one CA file is never served under another.
type Held = (String, String);

struct Parked {
    held: Held,
    fetched: Option<Fetched>,
    attempt: Option<Attempt>,
    in_flight: Option<InFlight>,
}

/// This backend holds some state of the configured URL and CA file: a document, an attempt or a
/// request (with preload, only for URLs it fetches itself for want of a shared slot).
pub fn knows() -> bool {
    if held_is_configured() {
        return FETCHED.with(|f| f.borrow().is_some())
            || ATTEMPT.with(|a| a.borrow().is_some())
            || IN_FLIGHT.with(|f| f.borrow().is_some());
    }
    let (url, ca) = (settings::jwks_url(), settings::jwks_ca_file());
    PARKED.with(|p| {
        p.borrow().iter().any(|x| {
            x.held.0 == url && x.held.1 == ca && (x.fetched.is_some() || x.attempt.is_some() || x.in_flight.is_some())
        })
    })
}

/// This backend's state is for the configured URL and CA file (O(1) when it is).
fn held_is_configured() -> bool {
    HELD_FOR.with(|h| {
        let h = h.borrow();
        h.0 == settings::jwks_url() && h.1 == settings::jwks_ca_file()
    })
}

/// Make the state above that of the configured URL and CA file: park the one held, take the
/// configured one's out of the parked ones.
fn hold() {
    if held_is_configured() {
        return;
    }
    let now: Held = (settings::jwks_url().to_owned(), settings::jwks_ca_file().to_owned());
    let held = Parked {
        held: HELD_FOR.with(|h| h.replace(now.clone())),
        fetched: FETCHED.with(|f| f.take()),
        attempt: ATTEMPT.with(|a| a.take()),
        in_flight: IN_FLIGHT.with(|f| f.take()),
    };
    PARKED.with(|p| {
        let mut p = p.borrow_mut();
        if let Some(i) = p.iter().position(|x| x.held == now) {
            let x = p.remove(i);
            FETCHED.with(|f| *f.borrow_mut() = x.fetched);
            ATTEMPT.with(|a| *a.borrow_mut() = x.attempt);
            IN_FLIGHT.with(|f| *f.borrow_mut() = x.in_flight);
        }
        // Only what holds some state: an emptied one (after `forget`) would count as known.
        if !held.held.0.is_empty() && (held.fetched.is_some() || held.attempt.is_some() || held.in_flight.is_some()) {
            p.insert(0, held);
            p.truncate(PARKED_MAX);
            let mut bytes = 0;
            for (i, x) in p.iter_mut().enumerate() {
                bytes += x.fetched.as_ref().map_or(0, |f| f.bytes);
                if bytes > PARKED_BYTES {
                    x.fetched = None;
                }
                if i >= PARKED_IN_FLIGHT {
                    x.in_flight = None;
                }
            }
        }
    });
    // Another document is in force now (the settings' generation moved too, with the URL).
    keyring::invalidate();
}

fn url() -> &'static str {
    settings::jwks_url()
}

/// Better Auth's JWKS endpoint as a key source.
pub struct JwksUrl;

impl KeySource for JwksUrl {
    /// The fetched document is for the configured URL and within its max age.
    fn fresh(&self) -> bool {
        let now = Instant::now();
        FETCHED.with(|f| f.borrow().as_ref().is_some_and(|f| now < f.fresh_until && f.url == url()))
            && held_is_configured()
    }

    /// Nothing but time ends a document: the same as `fresh`.
    fn untouched(&self) -> bool {
        self.fresh()
    }

    /// The keys to verify with: fetched first if they are not fresh (waiting for a request already
    /// in flight, or starting one if the cooldown allows); the last good document only while the
    /// endpoint fails, for `auth_jwt.jwks_stale_if_error`; then an error.
    fn current(&self) -> Rc<KeySet> {
        hold();
        collect_arrived();
        if !self.fresh() {
            if !in_flight() && cooldown_passed() {
                start_fetch();
            }
            wait_in_flight();
        }
        usable().unwrap_or_else(|| failed())
    }

    /// A token names `kid`, which the document lacks: fetch again if the cooldown allows (or wait
    /// for the request in flight).
    fn reload_for_unknown_kid(&self, kid: &str) -> Option<Rc<KeySet>> {
        hold();
        collect_arrived();
        if !in_flight() {
            if !cooldown_passed() {
                return None;
            }
            stats::unknown_kid_reload();
            start_fetch();
        }
        wait_in_flight();
        usable().filter(|k| k.contains_kid(kid))
    }

    /// The entries of the current document (fetched first if needed), and when it was fetched.
    fn listing(&self) -> Listing {
        self.current();
        let (entries, at) = FETCHED.with(|f| {
            let f = f.borrow();
            let f = f.as_ref().expect("current() returned keys"); // ok: current() raises otherwise
            (f.entries.clone(), f.at)
        });
        listing_of(&entries, at)
    }
}

/// A JWKS document's entries as `jwks_keys()` lists them.
pub fn listing_of(entries: &[Entry], at: SystemTime) -> Listing {
    let set = jwks::key_set(entries);
    let keys = keyring::listed(
        entries,
        &set,
        |e| e.kid.is_some(),
        |e, key| Listed {
            key,
            no_kid: "the entry has no kid",
            alg: e.alg.clone(),
            crv: e.crv.clone(),
            created_at: None,
            expires_at: None,
        },
    );
    Listing { source: host_of(url()), fetched_at: Some(at), keys }
}

/// Drop the document, attempt and request this backend holds for the configured URL, for
/// `jwks_shared` switching that URL between this backend's own fetches and the server's
/// document: a document fetched here is then never served (fresh or stale) after one the server
/// fetched later.
/// Returns how long ago the forgotten document arrived, if there was one: the server's document
/// older than it must not be served stale after it (`jwks_shared` records it).
pub fn forget() -> Option<Duration> {
    hold();
    ATTEMPT.with(|a| *a.borrow_mut() = None);
    IN_FLIGHT.with(|f| *f.borrow_mut() = None);
    FETCHED.with(|f| f.borrow_mut().take()).map(|f| f.fetched.elapsed())
}

/// The keys for the configured URL: the document within its max age, or past it only while the
/// endpoint fails (the last fetch completed with a failure) and within the stale-if-error window.
/// A fetch that was started but never completed is no failure: a role that cancels its statements
/// cannot keep a removed key alive.
fn usable() -> Option<Rc<KeySet>> {
    let url = url();
    let stale_limit = settings::jwks_stale_if_error();
    let failure = ATTEMPT.with(|a| a.borrow().as_ref().filter(|a| a.url == url).and_then(|a| a.failure.clone()));
    FETCHED.with(|f| {
        let mut f = f.borrow_mut();
        let f = f.as_mut().filter(|f| f.url == url)?;
        if Instant::now() < f.fresh_until {
            return Some(f.keys.clone());
        }
        let why = failure.filter(|_| f.fetched.elapsed() < stale_limit)?;
        if !f.stale_logged {
            f.stale_logged = true;
            pgrx::log!(
                "auth_jwt: keys from {} are past auth_jwt.jwks_max_age (fetched {} s ago); using them under auth_jwt.jwks_stale_if_error while fetching fails: {why}",
                host_of(url),
                f.fetched.elapsed().as_secs()
            );
        }
        Some(f.keys.clone())
    })
}

/// The least time between two fetches, never longer than max age: a document is due for its
/// refresh at max age whatever the cooldown says, or a removed key would outlive max age.
pub fn cooldown() -> Duration {
    settings::jwks_cooldown().min(settings::jwks_max_age())
}

fn cooldown_passed() -> bool {
    let cooldown = cooldown();
    ATTEMPT.with(|a| a.borrow().as_ref().is_none_or(|a| a.url != url() || a.started.elapsed() >= cooldown))
}

/// No usable keys: say why, naming the endpoint's host and the last failure.
fn failed() -> ! {
    let attempt = ATTEMPT.with(|a| a.borrow().as_ref().filter(|a| a.url == url()).map(|a| a.failure.clone()));
    let stale = FETCHED.with(|f| f.borrow().as_ref().filter(|f| f.url == url()).map(|f| f.fetched.elapsed().as_secs()));
    let detail = match (stale, attempt) {
        (Some(age), why) => format!(
            "The last good document was fetched {age} s ago, longer than auth_jwt.jwks_stale_if_error allows; fetching again fails: {}.",
            why.flatten().unwrap_or_else(|| "no successful fetch yet".into())
        ),
        (None, Some(Some(why))) => format!("Fetching it failed: {why}."),
        // A document this backend dropped, switching among more URLs than it keeps documents of.
        (None, Some(None)) => format!(
            "It was fetched less than auth_jwt.jwks_cooldown ago, and this backend no longer holds it: it switched among JWKS URLs whose documents add up to more than {} MB since.",
            PARKED_BYTES >> 20
        ),
        (None, None) => "Fetching it failed: no successful fetch yet.".into(),
    };
    errors::jwks_unavailable(&host_of(url()), detail)
}

/// A request for the configured URL is in flight (one for another URL is dropped: its answer
/// would be for a setting no longer in force).
fn in_flight() -> bool {
    IN_FLIGHT.with(|f| {
        let mut f = f.borrow_mut();
        if f.as_ref().is_some_and(|f| f.url != url()) {
            *f = None;
        }
        f.is_some()
    })
}

/// Start a request for the configured URL; the cooldown counts from now. A URL that cannot be
/// fetched at all is a completed failure at once.
fn start_fetch() {
    let url = url().to_owned();
    let started = Instant::now();
    // Parallel workers start with empty caches on every query: fetching there would multiply the
    // requests by the workers of every parallel query. The functions that verify are PARALLEL
    // RESTRICTED; this holds if one is re-marked SAFE.
    if xact::is_parallel_worker() {
        errors::jwks_unavailable(
            &host_of(&url),
            "Parallel workers do not fetch keys: auth_jwt's verifying functions must stay PARALLEL RESTRICTED while auth_jwt.jwks_url is set, unless auth_jwt is in shared_preload_libraries (then workers read the server's shared document).".into(),
        );
    }
    let flight = Request::from_settings(&url).map_err(Refused::Failed).and_then(Flight::start);
    if let Err(Refused::Busy) = flight {
        // Nothing was asked of the endpoint: no attempt, no failure (stale-if-error stays shut).
        errors::jwks_unavailable(
            &host_of(&url),
            format!("This backend already waits for {MAX_RUNNING} requests to JWKS endpoints (each ends within auth_jwt.jwks_timeout)."),
        );
    }
    ATTEMPT.with(|a| {
        let mut a = a.borrow_mut();
        let failure = a.take().filter(|a| a.url == url).and_then(|a| a.failure);
        *a = Some(Attempt { url: url.clone(), started, failure });
    });
    match flight {
        Ok(flight) => IN_FLIGHT.with(|f| *f.borrow_mut() = Some(InFlight { url, started, flight })),
        Err(Refused::Failed(e)) => complete(&url, started, Answer::now(Err(e))),
        Err(Refused::Busy) => unreachable!("raised above"),
    }
}

/// Apply the answer of the request in flight if it has arrived, without waiting.
fn collect_arrived() {
    let arrived = IN_FLIGHT.with(|f| {
        let mut f = f.borrow_mut();
        let answer = f.as_ref()?.flight.arrived()?;
        f.take().map(|flight| (flight, answer))
    });
    if let Some((flight, answer)) = arrived {
        complete(&flight.url, flight.started, answer);
    }
}

/// Puts a request back in flight if the wait for it ends in an ERROR (a cancel, statement_timeout),
/// which unwinds through here as a Rust panic; the interruption is counted.
struct Waiting(Option<InFlight>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(flight) = self.0.take() {
            stats::jwks_fetch_interrupted();
            IN_FLIGHT.with(|f| *f.borrow_mut() = Some(flight));
        }
    }
}

/// Wait for the request in flight, in short steps that handle interrupts, and apply its answer.
fn wait_in_flight() {
    if !in_flight() {
        return;
    }
    let mut waiting = Waiting(IN_FLIGHT.with(|f| f.borrow_mut().take()));
    let answer = {
        let flight = waiting.0.as_ref().expect("taken above"); // ok: in_flight() said so
        loop {
            match flight.flight.wait(Duration::from_millis(10)) {
                Some(a) => break a,
                // statement_timeout, pg_cancel_backend, a terminate: raise now, keep the request.
                None => {
                    pgrx::check_for_interrupts!();
                }
            }
        }
    };
    let flight = waiting.0.take().expect("still held"); // ok: only Drop takes it otherwise
    complete(&flight.url, flight.started, answer);
}

/// A request completed: store a valid document, or record the failure (logged, counted).
fn complete(url: &str, started: Instant, answer: Answer) {
    let failure = match answer.result {
        Ok(r) => {
            stats::jwks_fetch(r.body.len());
            match jwks::parse(&r.body) {
                Ok(entries) => {
                    // Max age counts from the answer's arrival (as jose's createRemoteJWKSet
                    // counts it), never from when a statement picked it up.
                    store(url, r.body.len(), entries, r.max_age, answer.arrived, answer.at);
                    None
                }
                Err(e) => Some(format!("the response {e}")),
            }
        }
        Err(e) => Some(e),
    };
    if let Some(e) = &failure {
        stats::jwks_fetch_failure();
        pgrx::log!("auth_jwt: fetching keys from {} failed: {e}", host_of(url));
    }
    ATTEMPT.with(|a| {
        let mut a = a.borrow_mut();
        match a.as_mut() {
            // A later request may have started since (after the URL changed back and forth).
            Some(a) if a.url == url => a.failure = failure,
            _ => *a = Some(Attempt { url: url.to_owned(), started, failure }),
        }
    });
}

/// How long a document is used without asking again: max age, or a shorter `Cache-Control:
/// max-age` (never shorter than the cooldown).
pub fn age(cache_max_age: Option<u64>) -> Duration {
    let max = settings::jwks_max_age();
    cache_max_age.map_or(max, |a| Duration::from_secs(a).clamp(cooldown(), max))
}

fn store(url: &str, bytes: usize, entries: Vec<Entry>, max_age: Option<u64>, fetched: Instant, at: SystemTime) {
    let keys = jwks::key_set(&entries);
    let age = age(max_age);
    FETCHED.with(|f| {
        let mut f = f.borrow_mut();
        let keys = keyring::serve(f.as_ref().filter(|old| old.url == url).map(|old| &old.keys), keys);
        *f = Some(Fetched {
            url: url.to_owned(),
            bytes,
            entries: Rc::new(entries),
            keys,
            at,
            fetched,
            fresh_until: fetched + age,
            stale_logged: false,
        });
    });
}
