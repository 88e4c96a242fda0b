//! Keys from Better Auth's JWKS endpoint (`auth_jwt.jwks_url`), for deployments whose Better Auth
//! keeps its keys elsewhere than this database. A key source beside the key table (`keys`): the
//! document's entries become key rows and every rule for key rows applies (see
//! `auth_jwt_core::jwks`).
//!
//! Mechanism: each backend fetches for itself, on first use and then at most once per max age,
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
//! Safety of the fetch: http or https only, no credentials (the URL may not carry any, no cookies,
//! no proxy from the environment), no redirects, responses over `auth_jwt.jwks_max_size` refused
//! while reading, the whole exchange bounded by `auth_jwt.jwks_timeout` (2 s), TLS verified by
//! rustls against the system's roots or `auth_jwt.jwks_ca_file`. The request runs on a helper
//! thread that calls nothing in PostgreSQL and blocks every signal, while the backend waits in
//! short steps and handles interrupts: statement_timeout or pg_cancel_backend cancels the wait at
//! once (the request goes on; see above). Nothing is written, and no lock is taken beyond those the
//! query already holds.

use crate::errors;
use crate::keyring::{self, KeySource, Listed, Listing};
use crate::settings;
use crate::stats;
use crate::xact;
use auth_jwt_core::jwks::{self, Entry};
use auth_jwt_core::KeySet;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

/// The document fetched last (successfully) for a URL.
struct Fetched {
    url: String,
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
    /// The backend never waits past this, whatever the helper thread is stuck on.
    deadline: Instant,
    timeout: Duration,
    rx: mpsc::Receiver<Answer>,
}

/// What the helper thread sends back, stamped when it arrived: a statement may pick it up much
/// later (after a cancelled wait), and the document is as old as its answer, not as its pickup.
struct Answer {
    result: Result<Response, String>,
    arrived: Instant,
    at: SystemTime,
}

impl Answer {
    fn now(result: Result<Response, String>) -> Answer {
        Answer { result, arrived: Instant::now(), at: SystemTime::now() }
    }
}

thread_local! {
    static FETCHED: RefCell<Option<Fetched>> = const { RefCell::new(None) };
    static ATTEMPT: RefCell<Option<Attempt>> = const { RefCell::new(None) };
    static IN_FLIGHT: RefCell<Option<InFlight>> = const { RefCell::new(None) };
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
    }

    /// Nothing but time ends a document: the same as `fresh`.
    fn untouched(&self) -> bool {
        self.fresh()
    }

    /// The keys to verify with: fetched first if they are not fresh (waiting for a request already
    /// in flight, or starting one if the cooldown allows); the last good document only while the
    /// endpoint fails, for `auth_jwt.jwks_stale_if_error`; then an error.
    fn current(&self) -> Rc<KeySet> {
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
        let set = jwks::key_set(&entries);
        let keys = keyring::listed(
            &entries,
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
fn cooldown() -> Duration {
    settings::jwks_cooldown().min(settings::jwks_max_age())
}

fn cooldown_passed() -> bool {
    let cooldown = cooldown();
    ATTEMPT.with(|a| a.borrow().as_ref().is_none_or(|a| a.url != url() || a.started.elapsed() >= cooldown))
}

/// No usable keys: say why, naming the endpoint's host and the last failure.
fn failed() -> ! {
    let why = ATTEMPT
        .with(|a| a.borrow().as_ref().filter(|a| a.url == url()).and_then(|a| a.failure.clone()))
        .unwrap_or_else(|| "no successful fetch yet".into());
    let stale = FETCHED.with(|f| f.borrow().as_ref().filter(|f| f.url == url()).map(|f| f.fetched.elapsed().as_secs()));
    let detail = match stale {
        Some(age) => format!(
            "The last good document was fetched {age} s ago, longer than auth_jwt.jwks_stale_if_error allows; fetching again fails: {why}."
        ),
        None => format!("Fetching it failed: {why}."),
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
            "Parallel workers do not fetch keys: auth_jwt's verifying functions must stay PARALLEL RESTRICTED while auth_jwt.jwks_url is set.".into(),
        );
    }
    ATTEMPT.with(|a| {
        let mut a = a.borrow_mut();
        let failure = a.take().filter(|a| a.url == url).and_then(|a| a.failure);
        *a = Some(Attempt { url: url.clone(), started, failure });
    });
    match spawn_request(&url) {
        Ok(flight) => IN_FLIGHT.with(|f| *f.borrow_mut() = Some(flight)),
        Err(e) => complete(&url, started, Answer::now(Err(e))),
    }
}

/// Apply the answer of the request in flight if it has arrived, without waiting.
fn collect_arrived() {
    let arrived = IN_FLIGHT.with(|f| {
        let mut f = f.borrow_mut();
        let answer = match f.as_ref()?.rx.try_recv() {
            Ok(a) => a,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => Answer::now(Err("the HTTP client failed".into())),
        };
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
            match flight.rx.recv_timeout(Duration::from_millis(10)) {
                Ok(a) => break a,
                Err(mpsc::RecvTimeoutError::Disconnected) => break Answer::now(Err("the HTTP client failed".into())),
                // statement_timeout, pg_cancel_backend, a terminate: raise now, keep the request.
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    pgrx::check_for_interrupts!();
                    if Instant::now() > flight.deadline {
                        break Answer::now(Err(timed_out(flight.timeout)));
                    }
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
                    store(url, entries, r.max_age, answer.arrived, answer.at);
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

fn store(url: &str, entries: Vec<Entry>, max_age: Option<u64>, fetched: Instant, at: SystemTime) {
    let keys = jwks::key_set(&entries);
    let max = settings::jwks_max_age();
    let age = max_age.map_or(max, |a| Duration::from_secs(a).clamp(cooldown(), max));
    FETCHED.with(|f| {
        let mut f = f.borrow_mut();
        let keys = keyring::serve(f.as_ref().filter(|old| old.url == url).map(|old| &old.keys), keys);
        *f = Some(Fetched {
            url: url.to_owned(),
            entries: Rc::new(entries),
            keys,
            at,
            fetched,
            fresh_until: fetched + age,
            stale_logged: false,
        });
    });
}

/// `https://host:port/...` -> `host:port`, for messages (the path may carry anything).
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    auth_jwt_core::error::printable(host, 128)
}

/// A successful response.
struct Response {
    body: Vec<u8>,
    max_age: Option<u64>,
}

/// What the fetch thread needs, copied out of the settings.
struct Request {
    url: String,
    /// Plain HTTP trusts no certificate: the CA file is read only for https.
    https: bool,
    timeout: Duration,
    max_size: u64,
    ca_file: String,
}

/// Start the GET on a helper thread; the caller waits for the answer (see `wait_in_flight`).
fn spawn_request(url: &str) -> Result<InFlight, String> {
    let lower = url.to_ascii_lowercase();
    let https = lower.starts_with("https://");
    if !(https || lower.starts_with("http://")) {
        return Err("auth_jwt.jwks_url must start with https:// or http://".into());
    }
    if url.split_once("://").is_some_and(|(_, r)| r.split(['/', '?', '#']).next().unwrap_or("").contains('@')) {
        return Err("auth_jwt.jwks_url must not carry credentials".into());
    }
    let req = Request {
        url: url.to_owned(),
        https,
        timeout: settings::jwks_timeout(),
        max_size: settings::jwks_max_size(),
        ca_file: settings::jwks_ca_file().to_owned(),
    };
    let started = Instant::now();
    // The thread's own timeout covers the exchange; the backend never waits much longer, whatever
    // the thread is stuck on.
    let (timeout, deadline) = (req.timeout, started + req.timeout + Duration::from_secs(1));
    let (tx, rx) = mpsc::channel();
    spawn_without_signals(move || {
        let r = std::panic::catch_unwind(|| get(&req)).unwrap_or_else(|_| Err("the HTTP client failed".into()));
        let _ = tx.send(Answer::now(r));
    })?;
    Ok(InFlight { url: url.to_owned(), started, deadline, timeout, rx })
}

/// Start `f` on a thread that blocks every signal, so PostgreSQL's handlers keep running on the
/// backend's own thread.
fn spawn_without_signals(f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    // SAFETY: pthread_sigmask on the calling thread, restored right after the spawn; the new
    // thread inherits the blocked mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let spawned = std::thread::Builder::new().name("auth_jwt jwks".into()).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        spawned.map(drop).map_err(|e| format!("could not start the HTTP client thread: {e}"))
    }
}

/// The request itself (on the helper thread: no PostgreSQL calls here).
fn get(req: &Request) -> Result<Response, String> {
    use ureq::tls::{TlsConfig, TlsProvider};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = if req.https { roots(&req.ca_file)? } else { ureq::tls::RootCerts::new_with_certs(&[]) };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .unversioned_rustls_crypto_provider(provider)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(req.timeout))
        .user_agent(concat!("auth_jwt/", env!("CARGO_PKG_VERSION")))
        .accept("application/json")
        .build()
        .into();
    let mut resp = agent.get(&req.url).call().map_err(|e| describe(&e, req))?;
    let status = resp.status().as_u16();
    if (300..400).contains(&status) {
        return Err(format!("HTTP {status}: redirects are not followed (set auth_jwt.jwks_url to the final URL)"));
    }
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    let max_age = resp.headers().get("cache-control").and_then(|v| v.to_str().ok()).and_then(jwks::cache_max_age);
    let body = resp.body_mut().with_config().limit(req.max_size).read_to_vec().map_err(|e| describe(&e, req))?;
    Ok(Response { body, max_age })
}

fn timed_out(timeout: Duration) -> String {
    format!("no complete response within auth_jwt.jwks_timeout ({} ms)", timeout.as_millis())
}

fn describe(e: &ureq::Error, req: &Request) -> String {
    match e {
        ureq::Error::Timeout(_) => timed_out(req.timeout),
        ureq::Error::BodyExceedsLimit(_) => {
            format!("the response is larger than auth_jwt.jwks_max_size ({} bytes)", req.max_size)
        }
        // rustls reports certificate and handshake failures as InvalidData with the cause inside.
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => format!("TLS or protocol error: {io}"),
        ureq::Error::Io(io) => format!("network error: {}", io.kind()),
        ureq::Error::Rustls(tls) => format!("TLS error: {tls}"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => format!("HTTP client error: {other}"),
    }
}

/// The trusted roots: `auth_jwt.jwks_ca_file`, or the system's bundle.
fn roots(ca_file: &str) -> Result<ureq::tls::RootCerts, String> {
    const SYSTEM: [&str; 4] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let path = if ca_file.is_empty() {
        SYSTEM.iter().find(|p| std::path::Path::new(p).exists()).copied().ok_or("no system CA bundle found")?
    } else {
        ca_file
    };
    let pem = read_ca_file(path)?;
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("no certificate in CA file {path}"));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// A CA bundle is a regular file of at most 16 MiB (Debian's has about 200 kB). Opened without
/// blocking and checked before reading, so a FIFO, a device or a huge file named by mistake fails
/// at once with a reason instead of hanging or filling memory.
fn read_ca_file(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const MAX: u64 = 16 << 20;
    let cannot = |e: std::io::Error| format!("cannot read CA file {path}: {}", e.kind());
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("CA file {path} is not a regular file"));
    }
    if meta.len() > MAX {
        return Err(format!("CA file {path} is larger than {MAX} bytes"));
    }
    let mut pem = Vec::with_capacity(meta.len() as usize);
    file.take(MAX + 1).read_to_end(&mut pem).map_err(cannot)?;
    if pem.len() as u64 > MAX {
        return Err(format!("CA file {path} is larger than {MAX} bytes"));
    }
    Ok(pem)
}
