//! The `auth_jwt.*` settings.
//!
//! Everything that decides whether a token is trusted is PGC_SUSET: only a superuser (or
//! postgresql.conf, ALTER SYSTEM, ALTER DATABASE/ROLE ... SET by a superuser) can change it, so
//! an application role cannot redirect verification with SET, set_config, ALTER ROLE ... SET or
//! PGOPTIONS. The `auth_jwt` prefix is reserved, so a typo or an invented `auth_jwt.x` is an error
//! rather than a silently ignored placeholder. The one setting any role may write is
//! `auth_jwt.token`, which only carries a token to be verified.
//!
//! Every trust setting has an assign hook that bumps [`generation`], so caches can tell in O(1)
//! whether the settings that decided a cached result are still the same.
//!
//! Values given before the library loads. PostgreSQL keeps them as untyped placeholders and, when
//! we define the variable, re-applies each with the privileges of whoever set it, refusing an
//! application role's with a WARNING. For SET and SET LOCAL that leaves the DBA's value in force.
//! Connection options (PGOPTIONS, the startup packet) are worse: they outrank ALTER DATABASE/ROLE
//! and postgresql.conf, so the placeholder's default value *is* the client's, the DBA's is gone
//! from this session, and after the refusal the variable would silently hold its compiled
//! default. We detect exactly that (the placeholder had a default value, the variable has none
//! after definition) and fail closed: every verification in the session raises an error naming
//! the setting. The verdict lives in an internal setting, `auth_jwt.refused_settings`, so that
//! parallel workers, which receive the leader's settings but load the library without its
//! placeholders, fail closed too. With `shared_preload_libraries`, the variables exist before any
//! connection, and such a connection is refused outright.
//!
//! `auth_jwt.token` is a bearer credential: its show hook keeps SHOW, current_setting() and
//! pg_settings from displaying it, so no client can read (or copy into its own transaction) a
//! token another client left behind. Its assign hook reports the statement that set it to
//! `pg_stat_activity` with the token hidden, and `xact` hides it from the statement text that
//! later utility hooks (`pg_stat_statements`) record.

use auth_jwt_core::{Expect, Validation};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::rc::Rc;
use std::time::Duration;

static JWKS_TABLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"public.jwks"));
static ISSUER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static AUDIENCE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static LEEWAY: GucSetting<i32> = GucSetting::<i32>::new(30);
static KEY_GRACE_PERIOD: GucSetting<i32> = GucSetting::<i32>::new(30 * 24 * 3600);
static MAX_TOKEN_SIZE: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024);
static CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1000);
static UUID_CLAIM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"uuid"));
static TOKEN_HEADER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"authorization"));
static ALLOW_SESSION_TOKEN: GucSetting<bool> = GucSetting::<bool>::new(false);
static REQUIRE_SESSION: GucSetting<bool> = GucSetting::<bool>::new(false);
static SESSION_TABLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"public.session"));
static SESSION_CLAIM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"sid"));
static JWKS_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static JWKS_MAX_AGE: GucSetting<i32> = GucSetting::<i32>::new(300);
static JWKS_COOLDOWN: GucSetting<i32> = GucSetting::<i32>::new(30);
static JWKS_STALE_IF_ERROR: GucSetting<i32> = GucSetting::<i32>::new(900);
static JWKS_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(2000);
static JWKS_MAX_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);
static JWKS_CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static AUTHENTICATED_ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static ROLE_CLAIM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"role"));
static ROLE_CLAIM_MAP: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
/// The request's token; the only setting any role may write (see `token_source`).
static TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
/// Trust settings refused for this session (see the module comment); set by us, superuser-only.
static REFUSED_SETTINGS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

/// What a setting is for: who may set it, and which hooks it gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Decides what is trusted: superuser-only; its assign hook moves [`generation`].
    Trust,
    /// `auth_jwt.token`: any role may set it; counted by [`token_generation`], never displayed.
    Token,
    /// Set by auth_jwt itself (superuser-only, not from files).
    Internal,
}

/// A setting's storage and type, with bounds and unit for integers.
enum Storage {
    Str(&'static GucSetting<Option<CString>>),
    Int(&'static GucSetting<i32>, i32, i32, GucFlags),
    Bool(&'static GucSetting<bool>),
}

/// One setting, as data: what `define` registers, what `TRUST` lists, what the displaced-setting
/// check (`init`) looks at.
struct Spec {
    name: &'static CStr,
    short: &'static CStr,
    long: &'static CStr,
    storage: Storage,
    role: Role,
}

const fn trust(name: &'static CStr, short: &'static CStr, long: &'static CStr, storage: Storage) -> Spec {
    Spec { name, short, long, storage, role: Role::Trust }
}

/// Every `auth_jwt.*` setting.
static SPECS: [Spec; 25] = [
    trust(
        c"auth_jwt.jwks_table",
        c"Schema-qualified table or view holding Better Auth's public keys.",
        c"Columns id, \"publicKey\", and optionally \"expiresAt\", \"alg\", \"crv\". Point it at a view to serve a renamed table or columns.",
        Storage::Str(&JWKS_TABLE),
    ),
    trust(
        c"auth_jwt.issuer",
        c"Required iss claim: the origin of Better Auth's baseURL, or * to skip the check.",
        c"Verification fails while this is empty.",
        Storage::Str(&ISSUER),
    ),
    trust(
        c"auth_jwt.audience",
        c"Value the aud claim must contain: Better Auth's baseURL origin by default, or * to skip the check.",
        c"Verification fails while this is empty.",
        Storage::Str(&AUDIENCE),
    ),
    trust(
        c"auth_jwt.leeway",
        c"Clock skew tolerated on exp, nbf and iat.",
        c"",
        Storage::Int(&LEEWAY, 0, 3600, GucFlags::UNIT_S),
    ),
    trust(
        c"auth_jwt.key_grace_period",
        c"How long a key keeps verifying after its expiresAt (Better Auth's jwks.gracePeriod).",
        c"",
        Storage::Int(&KEY_GRACE_PERIOD, 0, i32::MAX, GucFlags::UNIT_S),
    ),
    trust(
        c"auth_jwt.max_token_size",
        c"Longest token accepted; checked before any decoding.",
        c"",
        Storage::Int(&MAX_TOKEN_SIZE, 256, 1024 * 1024, GucFlags::UNIT_BYTE),
    ),
    trust(
        c"auth_jwt.cache_size",
        c"Verified tokens remembered per backend (0 disables the cache).",
        c"Each entry holds one token and its claims (as jsonb, or the payload text until asked for): about twice the token size.",
        Storage::Int(&CACHE_SIZE, 0, 1_000_000, GucFlags::empty()),
    ),
    trust(c"auth_jwt.uuid_claim", c"Claim that jwt_claim_uuid() returns.", c"", Storage::Str(&UUID_CLAIM)),
    trust(
        c"auth_jwt.token_header",
        c"Header in PostgREST's request.headers that carries the bearer token.",
        c"",
        Storage::Str(&TOKEN_HEADER),
    ),
    trust(
        c"auth_jwt.allow_session_token",
        c"Accept auth_jwt.token set for the whole session (direct connections only; unsafe behind a pooler).",
        c"",
        Storage::Bool(&ALLOW_SESSION_TOKEN),
    ),
    trust(
        c"auth_jwt.require_session",
        c"Accept a token only while the Better Auth session it names (claim auth_jwt.session_claim) is live in auth_jwt.session_table.",
        c"Sign-out, revocation and bans then take effect at the next transaction instead of at the token's exp.",
        Storage::Bool(&REQUIRE_SESSION),
    ),
    trust(
        c"auth_jwt.session_table",
        c"Schema-qualified table or view holding Better Auth's sessions (used when auth_jwt.require_session is on).",
        c"Columns id, \"userId\" and \"expiresAt\"; the session's token column is never read.",
        Storage::Str(&SESSION_TABLE),
    ),
    trust(
        c"auth_jwt.session_claim",
        c"Claim that carries the Better Auth session id (sid: session.id in definePayload).",
        c"",
        Storage::Str(&SESSION_CLAIM),
    ),
    trust(
        c"auth_jwt.jwks_url",
        c"Better Auth's JWKS endpoint (http or https); when set, keys come from it instead of auth_jwt.jwks_table.",
        c"For example https://auth.example.com/api/auth/jwks. With auth_jwt in shared_preload_libraries, fetched once per server (per auth_jwt.jwks_max_age) by the auth_jwt jwks worker; otherwise by each backend.",
        Storage::Str(&JWKS_URL),
    ),
    trust(
        c"auth_jwt.jwks_max_age",
        c"Longest time a fetched JWKS document is used before it is fetched again (a shorter Cache-Control max-age wins).",
        c"",
        Storage::Int(&JWKS_MAX_AGE, 1, 86400, GucFlags::UNIT_S),
    ),
    trust(
        c"auth_jwt.jwks_cooldown",
        c"Least time between two fetches of the JWKS document (unknown kids, failures, Cache-Control: no-store), per server with preload, else per backend.",
        c"",
        Storage::Int(&JWKS_COOLDOWN, 1, 3600, GucFlags::UNIT_S),
    ),
    trust(
        c"auth_jwt.jwks_stale_if_error",
        c"How long the last good JWKS document keeps verifying while the endpoint cannot be fetched (0: fail at once).",
        c"",
        Storage::Int(&JWKS_STALE_IF_ERROR, 0, 7 * 86400, GucFlags::UNIT_S),
    ),
    trust(
        c"auth_jwt.jwks_timeout",
        c"Longest a request waits for the JWKS endpoint (connect, TLS and the whole response).",
        c"",
        Storage::Int(&JWKS_TIMEOUT, 100, 60000, GucFlags::UNIT_MS),
    ),
    trust(
        c"auth_jwt.jwks_max_size",
        c"Largest JWKS response accepted.",
        c"With shared_preload_libraries, its value at server start also sizes the shared cache (four documents).",
        Storage::Int(&JWKS_MAX_SIZE, 1024, 64 * 1024 * 1024, GucFlags::UNIT_BYTE),
    ),
    trust(
        c"auth_jwt.jwks_ca_file",
        c"PEM file of the certificate authorities trusted for an https auth_jwt.jwks_url (empty: the system's).",
        c"",
        Storage::Str(&JWKS_CA_FILE),
    ),
    trust(
        c"auth_jwt.authenticated_role",
        c"Role that auth_jwt.pre_request() switches a request with a verified token to (empty: no switch).",
        c"For PostgREST's db-pre-request: the request then runs as this role instead of db-anon-role. Never a superuser; the login role must be allowed to SET ROLE to it.",
        Storage::Str(&AUTHENTICATED_ROLE),
    ),
    trust(
        c"auth_jwt.role_claim",
        c"Claim whose value auth_jwt.role_claim_map maps to a role (Better Auth's admin plugin: role).",
        c"",
        Storage::Str(&ROLE_CLAIM),
    ),
    trust(
        c"auth_jwt.role_claim_map",
        c"Allow-list of claim value=role pairs: a verified request whose role claim has one of these values switches to that role (empty: the claim is ignored).",
        c"For example 'admin=app_admin'. Any other value, or no claim, gets auth_jwt.authenticated_role.",
        Storage::Str(&ROLE_CLAIM_MAP),
    ),
    Spec {
        name: c"auth_jwt.token",
        short: c"The request's bearer token (a JWT, or \"Bearer <jwt>\"). Set it with SET LOCAL or set_config(..., true).",
        long: c"",
        storage: Storage::Str(&TOKEN),
        role: Role::Token,
    },
    Spec {
        name: c"auth_jwt.refused_settings",
        short: c"Trust settings this session's connection options displaced; verification fails while it is not empty.",
        long: c"Set by auth_jwt when it loads.",
        storage: Storage::Str(&REFUSED_SETTINGS),
        role: Role::Internal,
    },
];

/// The settings that decide what is trusted (all but `auth_jwt.token` and the internal one).
fn trust_settings() -> impl Iterator<Item = &'static CStr> {
    SPECS.iter().filter(|s| s.role == Role::Trust).map(|s| s.name)
}

/// The validation rules, and the settings generation they were built for.
type CachedValidation = (u64, Option<Result<Rc<Validation>, ConfigError>>);

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(1) };
    static TOKEN_GENERATION: Cell<u64> = const { Cell::new(1) };
    static VALIDATION: RefCell<CachedValidation> = const { RefCell::new((0, None)) };
}

/// Changes whenever any trust setting is assigned (SET, RESET, transaction end, function SET).
pub fn generation() -> u64 {
    GENERATION.with(|g| g.get())
}

/// Changes whenever `auth_jwt.token` is assigned.
pub fn token_generation() -> u64 {
    TOKEN_GENERATION.with(|g| g.get())
}

fn bump() {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_string(_new: *const c_char, _extra: *mut c_void) {
    bump();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_int(_new: c_int, _extra: *mut c_void) {
    bump();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_bool(_new: bool, _extra: *mut c_void) {
    bump();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_token(new: *const c_char, _extra: *mut c_void) {
    TOKEN_GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    // SAFETY: guc.c passes the new value, a NUL-terminated string, or NULL.
    // The statement that set it (`SET LOCAL auth_jwt.token TO 'eyJ...'`, `set_config(...)` with a
    // literal, the `SET LOCAL` that carries it to a Citus worker) shows in `pg_stat_activity`.
    if !new.is_null() && unsafe { *new } != 0 {
        show_statement_hidden(Some(unsafe { CStr::from_ptr(new) }.to_bytes()));
    }
}

/// The client's statement shows in `pg_stat_activity` to every backend of the same role, until
/// the next one: report it with `token` and every JWT-shaped string in it hidden, if it has any.
pub fn show_statement_hidden(token: Option<&[u8]>) {
    // SAFETY: debug_query_string is NULL or the NUL-terminated text of the statement running;
    // pgstat_report_activity copies the string, and does nothing outside a regular backend.
    unsafe {
        let q = pg_sys::debug_query_string;
        if q.is_null() {
            return;
        }
        let text = CStr::from_ptr(q).to_bytes();
        let by_value = token.and_then(|t| auth_jwt_core::token::hide(text, t, false));
        let hidden = match by_value {
            Some(t) => Some(auth_jwt_core::token::hide_jwts(&t).unwrap_or(t)),
            None => auth_jwt_core::token::hide_jwts(text),
        };
        if let Some(Ok(text)) = hidden.map(CString::new) {
            pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr());
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn show_token() -> *const c_char {
    if has_value(&TOKEN) {
        c"(set; not displayed)".as_ptr()
    } else {
        c"".as_ptr()
    }
}

/// The GUC record of a setting (or placeholder), by name, case-insensitively as guc.c compares.
pub fn find_guc(name: &'static CStr) -> *mut pg_sys::config_generic {
    GucRecord::find(name).map_or(std::ptr::null_mut(), |r| r.record)
}

/// A GUC record found by name, and how to tell in O(1) that it is still that name's record (a
/// library that defines a variable replaces its placeholder, and guc.c frees the placeholder).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GucRecord {
    pub record: *mut pg_sys::config_generic,
    name: &'static CStr,
    /// Its place in guc.c's sorted array (before PostgreSQL 16, which has a hash table instead).
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    index: usize,
}

/// guc.c lookups that never raise, declared here to be called without pgrx's FFI guard: the guard
/// costs a sigsetjmp per call (about 140 instructions), and `GucRecord::is_current` runs on every
/// row of a policy.
mod unguarded {
    use pgrx::pg_sys::config_generic;
    use std::ffi::c_int;
    extern "C" {
        #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
        pub fn find_option(
            name: *const std::ffi::c_char,
            create: bool,
            skip_errors: bool,
            elevel: c_int,
        ) -> *mut config_generic;
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        pub fn get_guc_variables() -> *mut *mut config_generic;
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        pub fn GetNumConfigOptions() -> c_int;
    }
}

impl GucRecord {
    /// guc.c's own lookup (a hash table), without creating a placeholder or raising.
    #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
    pub fn find(name: &'static CStr) -> Option<GucRecord> {
        // SAFETY: guc.c's lookup; with create_placeholders off and skip_errors on it allocates
        // nothing and never raises (a hash_search with HASH_FIND).
        let record = unsafe { unguarded::find_option(name.as_ptr(), false, true, 0) };
        (!record.is_null()).then_some(GucRecord { record, name })
    }

    /// A binary search of guc.c's array, which it keeps sorted by guc_name_compare.
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    pub fn find(name: &'static CStr) -> Option<GucRecord> {
        // Byte by byte as guc_name_compare does (ASCII letters folded to lower case), in the
        // platform's `char` (signed on x86-64), so names with non-ASCII bytes sort as guc.c sorted them.
        fn fold(s: &CStr) -> impl Iterator<Item = c_char> + '_ {
            s.to_bytes().iter().map(|b| b.to_ascii_lowercase() as c_char)
        }
        let vars = Self::array();
        // SAFETY: live records with NUL-terminated names.
        let index = vars.binary_search_by(|&g| unsafe { fold(CStr::from_ptr((*g).name)) }.cmp(fold(name))).ok()?;
        Some(GucRecord { record: vars[index], name, index })
    }

    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    fn array() -> &'static [*mut pg_sys::config_generic] {
        // SAFETY: guc.c's variable array and its length (two plain reads of guc.c's statics that
        // never raise); read only, and never kept across a call that could add a variable.
        unsafe {
            let vars = unguarded::get_guc_variables();
            if vars.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(vars, unguarded::GetNumConfigOptions() as usize)
        }
    }

    /// Still the record of its name: O(1), no name compared before PostgreSQL 16 (the record is
    /// live while guc.c's array holds it, and a record's name never changes).
    pub fn is_current(&self) -> bool {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        return Self::array().get(self.index) == Some(&self.record);
        #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
        return Self::find(self.name).is_some_and(|r| r.record == self.record);
    }
}

/// Where the variable's default (RESET) value came from, if the variable or a placeholder exists.
fn reset_source(name: &'static CStr) -> Option<pg_sys::GucSource::Type> {
    let g = find_guc(name);
    // SAFETY: a live GUC record, read only.
    (!g.is_null()).then(|| unsafe { (*g).reset_source })
}

pub fn init() {
    let before: Vec<_> = trust_settings().map(reset_source).collect();
    define();
    let displaced: Vec<&str> = trust_settings()
        .zip(before)
        .filter(|(name, was)| {
            was.is_some_and(|w| w != pg_sys::GucSource::PGC_S_DEFAULT)
                && reset_source(name) == Some(pg_sys::GucSource::PGC_S_DEFAULT)
        })
        .filter_map(|(name, _)| name.to_str().ok())
        .collect();
    if !displaced.is_empty() {
        let list = CString::new(displaced.join(",")).unwrap_or_default();
        // SAFETY: an internal variable we defined above; PGC_S_OVERRIDE also makes it the RESET
        // value, so RESET ALL and DISCARD ALL keep it, and parallel workers receive it.
        unsafe {
            pg_sys::set_config_option(
                c"auth_jwt.refused_settings".as_ptr(),
                list.as_ptr(),
                pg_sys::GucContext::PGC_INTERNAL,
                pg_sys::GucSource::PGC_S_OVERRIDE,
                pg_sys::GucAction::GUC_ACTION_SET,
                true,
                0,
                false,
            );
        }
    }
}

/// The first trust setting refused for this session, if any.
fn refused() -> Option<&'static str> {
    let first = str_of(&REFUSED_SETTINGS).split(',').next().filter(|s| !s.is_empty())?;
    // Map back to the static name (and ignore anything that is not one of ours).
    trust_settings().filter_map(|n| n.to_str().ok()).find(|n| *n == first).or(Some("auth_jwt.refused_settings"))
}

fn define() {
    for spec in &SPECS {
        let (context, flags) = match spec.role {
            Role::Trust => (GucContext::Suset, GucFlags::default()),
            Role::Token => (GucContext::Userset, GucFlags::NO_SHOW_ALL),
            // Not PGC_INTERNAL: parallel workers are not sent internal settings.
            Role::Internal => (GucContext::Suset, GucFlags::DISALLOW_IN_FILE),
        };
        // SAFETY: the hooks only touch thread-local counters and cannot panic.
        unsafe {
            match spec.storage {
                Storage::Str(setting) => {
                    let (assign, show): (pg_sys::GucStringAssignHook, pg_sys::GucShowHook) = match spec.role {
                        Role::Token => (Some(assign_token), Some(show_token)),
                        _ => (Some(assign_string), None),
                    };
                    GucRegistry::define_string_guc_with_hooks(
                        spec.name, spec.short, spec.long, setting, context, flags, None, assign, show,
                    );
                }
                Storage::Int(setting, min, max, unit) => GucRegistry::define_int_guc_with_hooks(
                    spec.name,
                    spec.short,
                    spec.long,
                    setting,
                    min,
                    max,
                    context,
                    flags | unit,
                    None,
                    Some(assign_int),
                    None,
                ),
                Storage::Bool(setting) => GucRegistry::define_bool_guc_with_hooks(
                    spec.name,
                    spec.short,
                    spec.long,
                    setting,
                    context,
                    flags,
                    None,
                    Some(assign_bool),
                    None,
                ),
            }
        }
    }
    // SAFETY: marks our prefix after every variable exists.
    unsafe { reserve_prefix() };
}

#[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
unsafe fn reserve_prefix() {
    unsafe { pg_sys::MarkGUCPrefixReserved(c"auth_jwt".as_ptr()) }
}

#[cfg(any(feature = "pg13", feature = "pg14"))]
unsafe fn reserve_prefix() {
    unsafe { pg_sys::EmitWarningsOnPlaceholders(c"auth_jwt".as_ptr()) }
}

// Typed accessors: each setting as what it means. Strings are borrowed from the GUC's own storage
// (no copy: cheap enough for the per-row path), valid until the setting next changes.

pub fn jwks_table() -> &'static str {
    str_of(&JWKS_TABLE)
}

/// Seconds a key keeps verifying after its `"expiresAt"`.
pub fn key_grace_period() -> i64 {
    KEY_GRACE_PERIOD.get() as i64
}

/// Verified tokens the cache may hold.
pub fn cache_capacity() -> usize {
    CACHE_SIZE.get().max(0) as usize
}

pub fn uuid_claim() -> &'static str {
    str_of(&UUID_CLAIM)
}

pub fn token_header() -> &'static str {
    str_of(&TOKEN_HEADER)
}

pub fn allow_session_token() -> bool {
    ALLOW_SESSION_TOKEN.get()
}

pub fn require_session() -> bool {
    REQUIRE_SESSION.get()
}

pub fn session_table() -> &'static str {
    str_of(&SESSION_TABLE)
}

pub fn session_claim() -> &'static str {
    str_of(&SESSION_CLAIM)
}

pub fn jwks_url() -> &'static str {
    str_of(&JWKS_URL)
}

/// Keys come from `auth_jwt.jwks_url` (O(1)).
pub fn keys_from_url() -> bool {
    has_value(&JWKS_URL)
}

fn seconds(setting: &GucSetting<i32>) -> Duration {
    Duration::from_secs(setting.get().max(0) as u64)
}

pub fn jwks_max_age() -> Duration {
    seconds(&JWKS_MAX_AGE)
}

pub fn jwks_cooldown() -> Duration {
    seconds(&JWKS_COOLDOWN)
}

pub fn jwks_stale_if_error() -> Duration {
    seconds(&JWKS_STALE_IF_ERROR)
}

pub fn jwks_timeout() -> Duration {
    Duration::from_millis(JWKS_TIMEOUT.get().max(1) as u64)
}

/// Bytes.
pub fn jwks_max_size() -> u64 {
    JWKS_MAX_SIZE.get().max(0) as u64
}

pub fn jwks_ca_file() -> &'static str {
    str_of(&JWKS_CA_FILE)
}

pub fn authenticated_role() -> &'static str {
    str_of(&AUTHENTICATED_ROLE)
}

pub fn role_claim() -> &'static str {
    str_of(&ROLE_CLAIM)
}

pub fn role_claim_map() -> &'static str {
    str_of(&ROLE_CLAIM_MAP)
}

/// `auth_jwt.role_claim_map` is set (O(1)).
pub fn role_claim_mapped() -> bool {
    has_value(&ROLE_CLAIM_MAP)
}

/// The request's token setting as set (with any `Bearer ` prefix).
pub fn token() -> &'static str {
    str_of(&TOKEN)
}

/// `auth_jwt.token` is set: O(1), no strlen (the per-row path must not scan a 4 KB token).
pub fn token_is_set() -> bool {
    has_value(&TOKEN)
}

/// The current value of a string setting, borrowed from the GUC's own storage: no copy, so this
/// is cheap enough for the per-row path. Valid until the setting next changes.
fn str_of(setting: &'static GucSetting<Option<CString>>) -> &'static str {
    // SAFETY: the pointer is the GUC's current value (or NULL), a NUL-terminated string owned by
    // guc.c; we never hold the result across a statement.
    unsafe {
        let p = *setting.as_ptr();
        if p.is_null() {
            return "";
        }
        CStr::from_ptr(p).to_str().unwrap_or("")
    }
}

/// Whether a string setting is non-empty, in O(1) (no strlen, no UTF-8 check): the per-row
/// path must not scan a 4 KB token.
fn has_value(setting: &'static GucSetting<Option<CString>>) -> bool {
    // SAFETY: as in str_of; only the first byte is read.
    unsafe {
        let p = *setting.as_ptr();
        !p.is_null() && *p != 0
    }
}

/// What is wrong with a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigProblem {
    /// A required setting is empty.
    NotSet,
    /// A connection option refused when the library loaded took the DBA's value with it.
    Displaced,
}

/// A setting that keeps this session from verifying anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: ConfigProblem,
    pub detail: String,
    pub hint: String,
}

fn displaced(name: &'static str) -> ConfigError {
    ConfigError {
        setting: name,
        problem: ConfigProblem::Displaced,
        detail: format!("This connection gave {name} in its connection options (PGOPTIONS or the startup packet) as a role that may not set it. PostgreSQL let that value replace the database's, role's and postgresql.conf's for this session, then refused it when auth_jwt loaded, so the value the administrator chose is unknown here."),
        hint: format!("Remove -c {name}=... from the client's connection options. To refuse such connections outright, add auth_jwt to shared_preload_libraries."),
    }
}

fn expect(name: &'static str, value: &str, claim: &str) -> Result<Expect, ConfigError> {
    if value.is_empty() {
        return Err(ConfigError {
            setting: name,
            problem: ConfigProblem::NotSet,
            detail: format!("Every token's {claim} claim is checked against {name}, which is empty."),
            hint: format!(
                "Set it to the origin of Better Auth's baseURL, e.g. ALTER DATABASE mydb SET {name} = 'https://app.example.com'; (or '*' to skip the {claim} check)."
            ),
        });
    }
    Ok(lenient(value))
}

/// `*` (or, for diagnosis only, an empty setting) turns the check off.
fn lenient(value: &str) -> Expect {
    match value {
        "" | "*" => Expect::Any,
        v => Expect::Exactly(v.to_owned()),
    }
}

fn build(issuer: Expect, audience: Expect) -> Validation {
    Validation {
        issuer,
        audience,
        leeway: LEEWAY.get() as i64,
        key_grace_period: KEY_GRACE_PERIOD.get() as i64,
        max_token_size: MAX_TOKEN_SIZE.get() as usize,
    }
}

/// For jwt_explain: the rules, with an unset issuer or audience check turned off so the other
/// steps can still be shown, and the configuration problem, if any.
pub fn validation_for_diagnosis() -> (Validation, Option<ConfigError>) {
    match validation() {
        Ok(v) => ((*v).clone(), None),
        Err(e) => (build(lenient(str_of(&ISSUER)), lenient(str_of(&AUDIENCE))), Some(e)),
    }
}

/// The validation rules the settings describe, rebuilt only when a setting changed.
pub fn validation() -> Result<Rc<Validation>, ConfigError> {
    let generation = generation();
    VALIDATION.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != generation || cached.1.is_none() {
            let v = match refused() {
                Some(name) => Err(displaced(name)),
                None => expect("auth_jwt.issuer", str_of(&ISSUER), "iss")
                    .and_then(|iss| Ok(Rc::new(build(iss, expect("auth_jwt.audience", str_of(&AUDIENCE), "aud")?)))),
            };
            *cached = (generation, Some(v));
        }
        cached.1.clone().expect("set above") // ok: assigned in the branch above
    })
}
