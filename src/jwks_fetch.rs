//! One GET of a JWKS document, for both key sources that read `auth_jwt.jwks_url` (each
//! backend's own cache, `jwks_url`, and the server's shared one, `jwks_shared`).
//!
//! Safety of the fetch: http or https only, no credentials (the URL may not carry any, no cookies,
//! no proxy from the environment), no redirects, responses over `auth_jwt.jwks_max_size` refused
//! while reading, the whole exchange bounded by `auth_jwt.jwks_timeout` (2 s), TLS verified by
//! rustls against the system's roots or `auth_jwt.jwks_ca_file`. The request runs on a helper
//! thread that calls nothing in PostgreSQL and blocks every signal, while the caller waits in
//! short steps and handles interrupts.

use crate::settings;
use auth_jwt_core::jwks;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

/// `https://host:port/...` -> `host:port`, for messages (the path may carry anything).
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    auth_jwt_core::error::printable(host, 128)
}

/// A successful response.
pub struct Response {
    pub body: Vec<u8>,
    /// `Cache-Control: max-age`, in seconds.
    pub max_age: Option<u64>,
}

/// What the helper thread sends back, stamped when it arrived: a caller may pick it up much
/// later (after a cancelled wait), and the document is as old as its answer, not as its pickup.
pub struct Answer {
    pub result: Result<Response, String>,
    pub arrived: Instant,
    pub at: SystemTime,
}

impl Answer {
    pub fn now(result: Result<Response, String>) -> Answer {
        Answer { result, arrived: Instant::now(), at: SystemTime::now() }
    }
}

/// One GET: what the helper thread needs, copied out of the settings (or out of shared memory).
pub struct Request {
    url: String,
    /// Plain HTTP trusts no certificate: the CA file is read only for https.
    https: bool,
    timeout: Duration,
    max_size: u64,
    /// What `max_size` is, for the message when a response exceeds it.
    max_size_is: &'static str,
    ca_file: String,
}

impl Request {
    /// A request for `url` with these bounds; refused at once if the URL is not http(s) or
    /// carries credentials.
    pub fn new(url: &str, timeout: Duration, max_size: u64, ca_file: &str) -> Result<Request, String> {
        let lower = url.to_ascii_lowercase();
        let https = lower.starts_with("https://");
        if !(https || lower.starts_with("http://")) {
            return Err("auth_jwt.jwks_url must start with https:// or http://".into());
        }
        if url.split_once("://").is_some_and(|(_, r)| r.split(['/', '?', '#']).next().unwrap_or("").contains('@')) {
            return Err("auth_jwt.jwks_url must not carry credentials".into());
        }
        Ok(Request {
            url: url.to_owned(),
            https,
            timeout,
            max_size,
            max_size_is: "auth_jwt.jwks_max_size",
            ca_file: ca_file.to_owned(),
        })
    }

    /// At most `capacity` bytes of response, named `what` when it is the lower bound.
    pub fn capped(mut self, capacity: u64, what: &'static str) -> Request {
        if capacity < self.max_size {
            (self.max_size, self.max_size_is) = (capacity, what);
        }
        self
    }

    /// A request for `url` under this backend's settings.
    pub fn from_settings(url: &str) -> Result<Request, String> {
        Request::new(url, settings::jwks_timeout(), settings::jwks_max_size(), settings::jwks_ca_file())
    }
}

/// Requests running in this process at most (each on a thread of its own, with a socket).
pub const MAX_RUNNING: usize = 8;
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Why a request did not start.
pub enum Refused {
    /// `MAX_RUNNING` requests are running in this process: nothing was asked of the endpoint.
    Busy,
    /// The request could not be made (a bad URL, no thread): a failure of the fetch.
    Failed(String),
}

impl From<String> for Refused {
    fn from(e: String) -> Refused {
        Refused::Failed(e)
    }
}

/// A request running on its helper thread.
pub struct Flight {
    /// The caller never waits past this, whatever the helper thread is stuck on.
    deadline: Instant,
    timeout: Duration,
    rx: mpsc::Receiver<Answer>,
}

impl Flight {
    /// Start the GET on a helper thread that calls nothing in PostgreSQL; its own timeout covers
    /// the exchange. `Busy` when this process already runs `MAX_RUNNING` of them: a request whose
    /// caller stopped waiting (a URL switched away from, a cancelled statement) runs on until its
    /// timeout, and a hanging endpoint must not pile threads and sockets up in one backend
    /// (red-team, round 17: a thousand threads, then no file descriptors left).
    pub fn start(req: Request) -> Result<Flight, Refused> {
        if RUNNING.fetch_add(1, Ordering::AcqRel) >= MAX_RUNNING {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Busy);
        }
        let (timeout, deadline) = (req.timeout, Instant::now() + req.timeout + Duration::from_secs(1));
        let (tx, rx) = mpsc::channel();
        spawn_without_signals(move || {
            let r = std::panic::catch_unwind(|| get(&req)).unwrap_or_else(|_| Err("the HTTP client failed".into()));
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(Answer::now(r));
        })
        .map_err(|e| {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            Refused::Failed(e)
        })?;
        Ok(Flight { deadline, timeout, rx })
    }

    /// The answer, if it has arrived (without waiting).
    pub fn arrived(&self) -> Option<Answer> {
        match self.rx.try_recv() {
            Ok(a) => Some(a),
            Err(mpsc::TryRecvError::Empty) => self.past_deadline(),
            Err(mpsc::TryRecvError::Disconnected) => Some(Answer::now(Err("the HTTP client failed".into()))),
        }
    }

    /// The answer, waiting for it at most `step` (the caller handles interrupts between steps).
    pub fn wait(&self, step: Duration) -> Option<Answer> {
        match self.rx.recv_timeout(step) {
            Ok(a) => Some(a),
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Answer::now(Err("the HTTP client failed".into()))),
            Err(mpsc::RecvTimeoutError::Timeout) => self.past_deadline(),
        }
    }

    fn past_deadline(&self) -> Option<Answer> {
        (Instant::now() > self.deadline).then(|| Answer::now(Err(timed_out(self.timeout))))
    }
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
            format!("the response is larger than {} ({} bytes)", req.max_size_is, req.max_size)
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
