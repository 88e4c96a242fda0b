//! Where the request's token comes from, and the pooler rule.
//!
//! In order: the setting `auth_jwt.token` (a JWT or `Bearer <jwt>`), then PostgREST's
//! `request.headers` JSON (header `auth_jwt.token_header`, scheme `Bearer`, case-insensitive).
//! Nothing else: never `request.jwt.claims` or any other setting a client can write freely.
//!
//! Pooler rule: a token authenticates only the transaction that set it. The value must have
//! been set with SET LOCAL or set_config(..., true) (or a function's SET clause) in the current
//! transaction: the GUC then has a stack entry that will revert it at transaction end, and its
//! source is an explicit SET. A value that survives the transaction (plain SET, set_config(...,
//! false), ALTER ROLE ... SET, PGOPTIONS, a RESET back to such a default) is refused, because
//! behind PgBouncer in transaction mode the next transaction may belong to another client.
//! `auth_jwt.allow_session_token` (superuser-only) lifts the rule for direct connections.
//!
//! Parallel workers receive GUC values but not the leader's GUC stack, so they cannot apply the
//! rule: the request-token functions are PARALLEL RESTRICTED, and refuse to run in a worker
//! should someone mark them otherwise.
//!
//! Recognising an unchanged `request.headers` in O(1). The per-row memo must not compare the
//! value (a client sends as many header bytes as the HTTP server allows). `auth_jwt.token` is ours
//! and its assign hook counts assignments; `request.headers` is PostgREST's placeholder, which has
//! no hook, so we put a counting hook on its record (`HeadersVersion`). guc.c calls a string
//! setting's assign hook on every change of its value: SET, SET LOCAL, set_config, RESET, a
//! function's SET clause and its exit, and the end of a transaction or savepoint that restores an
//! older value. Defining the variable ourselves would count the same, but would change what
//! `current_setting('request.headers', true)` returns in a session that never set it ('' instead
//! of NULL).

use crate::errors;
use crate::settings::{self, GucRecord};
use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};

/// Which setting carried the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Setting,
    Headers,
}

thread_local! {
    static TOKEN_GUC: Cell<*mut pg_sys::config_generic> = const { Cell::new(std::ptr::null_mut()) };
}

/// `auth_jwt.token`'s GUC record; it never moves once defined.
fn token_guc() -> *mut pg_sys::config_generic {
    TOKEN_GUC.with(|c| {
        if c.get().is_null() {
            c.set(settings::find_guc(c"auth_jwt.token"));
        }
        c.get()
    })
}

/// Was the current value of `guc` set for this transaction only (SET LOCAL, set_config(..., true),
/// a function's SET clause)? Then the GUC has a stack entry that reverts it at transaction end,
/// and its source is an explicit SET.
pub fn set_for_this_transaction(guc: *const pg_sys::config_generic) -> bool {
    if guc.is_null() {
        return false;
    }
    // SAFETY: a live GUC record; fields read only.
    unsafe {
        let g = &*guc;
        if g.source != pg_sys::GucSource::PGC_S_SESSION {
            return false;
        }
        !g.stack.is_null() && (*g.stack).state != pg_sys::GucStackState::GUC_SET
    }
}

/// The current value of `guc` was set with SET LOCAL or set_config(..., true) in this
/// transaction: not by a function's SET clause, whose value lasts only for the call.
pub fn set_locally(guc: *const pg_sys::config_generic) -> bool {
    // SAFETY: as in set_for_this_transaction; the stack entry exists when that is true.
    set_for_this_transaction(guc)
        && unsafe {
            matches!((*(*guc).stack).state, pg_sys::GucStackState::GUC_LOCAL | pg_sys::GucStackState::GUC_SET_LOCAL)
        }
}

/// The current value of `guc` lasts only until a function returns: it was set by a function's
/// SET clause, or inside a call whose SET clause names the same setting (guc.c marks such a
/// level GUC_SAVE and reverts the setting when the call ends, SET LOCALs made in it included).
fn function_scoped(guc: *const pg_sys::config_generic) -> bool {
    if guc.is_null() {
        return false;
    }
    // SAFETY: a live GUC record and its stack, read only.
    unsafe {
        let mut entry = (*guc).stack;
        while !entry.is_null() {
            if (*entry).state == pg_sys::GucStackState::GUC_SAVE {
                return true;
            }
            entry = (*entry).prev;
        }
    }
    false
}

/// The setting the request's token is read from now holds a value that a function's SET clause
/// scoped to the call (see `token_forward`).
pub fn set_by_function_clause() -> bool {
    if settings::token_is_set() {
        function_scoped(token_guc())
    } else {
        request_headers_bytes().is_some() && function_scoped(settings::find_guc(c"request.headers"))
    }
}

/// A token setting passes the pooler rule: set for this transaction, unless the DBA allowed
/// session tokens.
fn transaction_scoped(guc: *const pg_sys::config_generic) -> bool {
    settings::allow_session_token() || set_for_this_transaction(guc)
}

fn session_scoped_error(setting: &str) -> ! {
    errors::unauthorized(
        "token was set for the session, not the transaction",
        &format!("{setting} survives the end of the transaction (SET, set_config(..., false), ALTER ROLE ... SET or PGOPTIONS); behind a connection pooler the next transaction may belong to another client, so auth_jwt refuses it."),
        &format!("Set it per transaction: SET LOCAL {setting} = '...'; or SELECT set_config('{setting}', '...', true);"),
    )
}

/// Split an optional `Bearer ` (any case) prefix off a trimmed value: (had the prefix, rest).
fn split_bearer(v: &str) -> (bool, &str) {
    let t = v.trim_matches(|c| c == ' ' || c == '\t');
    match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => (true, t[7..].trim_start_matches(' ')),
        // "Bearer " with nothing after it (trimmed above): the scheme, and no credential.
        _ if t.eq_ignore_ascii_case("bearer") => (true, ""),
        _ => (false, t),
    }
}

/// The raw `request.headers` bytes, borrowed from guc.c (NULL-safe, no UTF-8 check).
pub fn request_headers_bytes() -> Option<&'static [u8]> {
    // SAFETY: GetConfigOption returns the current value or NULL; we use it before any SET.
    unsafe {
        let p = pg_sys::GetConfigOption(c"request.headers".as_ptr(), true, false);
        if p.is_null() || *p == 0 {
            return None;
        }
        Some(CStr::from_ptr(p).to_bytes())
    }
}

thread_local! {
    /// Assignments of `request.headers` since our hook went on its record.
    static HEADERS_GENERATION: Cell<u64> = const { Cell::new(1) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn count_headers_assignment(_new: *const c_char, _extra: *mut c_void) {
    HEADERS_GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

/// The hook, as the one function pointer we install and compare (one address, whatever the
/// codegen units).
static COUNT_HEADERS_ASSIGNMENT: unsafe extern "C-unwind" fn(*const c_char, *mut c_void) = count_headers_assignment;

/// What the per-row memo keeps to recognise the `request.headers` value it was filled under.
pub enum HeadersVersion {
    /// Our counting hook is on the record: the same (live) record and count mean the same value.
    Counted { record: GucRecord, generation: u64 },
    /// Another library defined `request.headers` with an assign hook of its own, which we leave
    /// alone: compare the bytes (correct, but linear in the value's size).
    Bytes(Vec<u8>),
}

/// Our hook is on this live record.
fn counted(record: *const pg_sys::config_generic) -> bool {
    // SAFETY: a live GUC record; request.headers is a string setting (checked before casting).
    unsafe {
        !record.is_null()
            && (*record).vartype == pg_sys::config_type::PGC_STRING
            && (*(record as *const pg_sys::config_string))
                .assign_hook
                .is_some_and(|h| std::ptr::fn_addr_eq(h, COUNT_HEADERS_ASSIGNMENT))
    }
}

/// The version of the current `request.headers` value (`bytes`, read by the caller), putting our
/// counting hook on its record first if it has none.
pub fn headers_version(bytes: &[u8]) -> HeadersVersion {
    let found = GucRecord::find(c"request.headers");
    if let Some(r) = found {
        // SAFETY: a live GUC record of a string setting; guc.c reads assign_hook before each
        // assignment and nothing else writes it. A placeholder never has one; a variable another
        // library defined without one keeps its record for the life of the backend.
        unsafe {
            if (*r.record).vartype == pg_sys::config_type::PGC_STRING {
                let conf = r.record as *mut pg_sys::config_string;
                if (*conf).assign_hook.is_none() {
                    (*conf).assign_hook = Some(COUNT_HEADERS_ASSIGNMENT);
                }
            }
        }
    }
    match found {
        Some(record) if counted(record.record) => {
            HeadersVersion::Counted { record, generation: HEADERS_GENERATION.with(Cell::get) }
        }
        _ => HeadersVersion::Bytes(bytes.to_vec()),
    }
}

/// `request.headers` still holds the value `version` was taken of: O(1) when counted (the same
/// record, still live and still carrying our hook, and the same count).
#[inline]
pub fn headers_unchanged(version: &HeadersVersion) -> bool {
    match version {
        HeadersVersion::Counted { record, generation } => {
            HEADERS_GENERATION.with(Cell::get) == *generation && record.is_current() && counted(record.record)
        }
        HeadersVersion::Bytes(bytes) => request_headers_bytes() == Some(&bytes[..]),
    }
}

/// A `request.headers` value that cannot carry a token the way PostgREST sends one.
pub fn malformed_headers(why: &str) -> ! {
    errors::rejected(&auth_jwt_core::Error::new(auth_jwt_core::ErrorKind::Malformed, format!("request.headers: {why}")))
}

fn refuse_in_parallel_worker() {
    if crate::xact::is_parallel_worker() {
        errors::unauthorized(
            "the request's token cannot be read in a parallel worker",
            "Parallel workers cannot tell a transaction's token from one left behind by a previous client.",
            "auth_jwt.jwt_claims(), jwt_claim_uuid() and jwt_claim_sub() must stay PARALLEL RESTRICTED.",
        );
    }
}

/// `auth_jwt.token` if set (and checked for scope).
pub fn from_setting() -> Option<&'static str> {
    refuse_in_parallel_worker();
    let v = settings::token();
    if v.is_empty() {
        return None;
    }
    if !transaction_scoped(token_guc()) {
        session_scoped_error("auth_jwt.token");
    }
    Some(split_bearer(v).1)
}

/// The bearer token in a `request.headers` JSON value (checked for scope), or None when the
/// request carries no such header (anonymous).
pub fn from_headers(headers: &str) -> Option<String> {
    refuse_in_parallel_worker();
    if !headers_transaction_scoped() {
        session_scoped_error("request.headers");
    }
    parse_headers(headers).unwrap_or_else(|why| malformed_headers(&why))
}

fn headers_transaction_scoped() -> bool {
    // Looked up each time (not cached): a placeholder is created by the first set_config of
    // any spelling ('Request.Headers' too), and names compare case-insensitively.
    transaction_scoped(settings::find_guc(c"request.headers"))
}

/// The bearer token in a `request.headers` JSON value; Err says why the value is malformed.
fn parse_headers(headers: &str) -> Result<Option<String>, String> {
    let doc = auth_jwt_core::Doc::parse(headers.to_owned())?;
    let name = settings::token_header();
    // HTTP header names are case-insensitive; PostgREST lower-cases them, but be tolerant, and
    // refuse two spellings of the header, as duplicate members are refused: a policy reading
    // `request.headers::json->>'authorization'` must not see a different token than we verify.
    let mut matching = doc.root().iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    let Some(value) = matching.next() else {
        return Ok(None);
    };
    if matching.next().is_some() {
        return Err(format!("more than one member names the {name} header (header names are case-insensitive)"));
    }
    let value = value.as_str().ok_or_else(|| format!("the {name} header is not a string"))?;
    match split_bearer(value) {
        (_, "") => Ok(None),
        (true, t) => Ok(Some(t.to_owned())),
        (false, _) => Err(format!("the {name} header does not use the Bearer scheme")),
    }
}

/// The request's token as this transaction carries it, without verifying it and without raising:
/// None when there is none, when it does not pass the pooler rule, or when `request.headers`
/// is malformed (reading the token refuses those; see `token_forward`).
pub fn for_this_transaction() -> Option<String> {
    if settings::token_is_set() {
        return transaction_scoped(token_guc()).then(|| split_bearer(settings::token()).1.to_owned());
    }
    let h = request_headers_bytes()?;
    if !headers_transaction_scoped() {
        return None;
    }
    parse_headers(std::str::from_utf8(h).ok()?).ok().flatten()
}

/// Where the current request's token is, without verifying it.
pub fn source() -> Option<Source> {
    if settings::token_is_set() {
        Some(Source::Setting)
    } else if request_headers_bytes().is_some() {
        Some(Source::Headers)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::split_bearer;

    #[test]
    fn bearer_prefix() {
        assert_eq!(split_bearer("Bearer abc"), (true, "abc"));
        assert_eq!(split_bearer("bearer  abc"), (true, "abc"));
        assert_eq!(split_bearer("BEARER abc "), (true, "abc"));
        assert_eq!(split_bearer("abc"), (false, "abc"));
        assert_eq!(split_bearer("Bearerabc"), (false, "Bearerabc"));
        assert_eq!(split_bearer("Bearer "), (true, ""));
        assert_eq!(split_bearer(" bearer"), (true, ""));
    }
}
