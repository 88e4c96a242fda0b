//! The SQL functions that verify tokens. They are plain version-1 C functions (declared in
//! `sql/functions.sql`) rather than `#[pg_extern]`, so the per-row path returns cached datums
//! with no conversion layer: a policy evaluating `auth_jwt.jwt_claim_uuid()` on every row pays
//! a few generation compares, a clock read and a 16-byte copy.

use crate::errors;
use crate::key_source;
use crate::keys;
use crate::sessions;
use crate::settings;
use crate::stats;
use crate::token_cache::Entry;
use crate::token_source::{self, HeadersVersion, Source};
use crate::verify::{now, verify};
use auth_jwt_core::UuidClaimError;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

macro_rules! v1_ {
    ($finfo:ident) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}
pub(crate) use v1_ as v1;

/// What the current request's token turned out to be, remembered so that a policy evaluated on
/// every row looks at the token once per statement: a verified token, or none at all (an
/// anonymous request must not re-parse a large `request.headers` on every row either). A hit
/// needs the same transaction, the same token source value (by `auth_jwt.token`'s assign-hook
/// generation, or `request.headers`'s: see `token_source::HeadersVersion`; never by reading the
/// value, whose size the client decides), the same trust settings, and for a token, the same key
/// generation, no pending key invalidation, and an unexpired token.
struct Memo {
    lxid: u32,
    /// `sessions::aborts()`: a savepoint rolled back since makes the memo invalid.
    aborts: u64,
    source: Source,
    token_generation: u64,
    /// For a token from `request.headers`, or none: the value it was read from.
    headers: Option<HeadersVersion>,
    settings_generation: u64,
    keys_generation: u64,
    /// None: the request carries no token.
    entry: Option<Rc<Entry>>,
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

fn memo_hit() -> Option<Option<Rc<Entry>>> {
    MEMO.with(|m| {
        let m = m.borrow();
        let m = m.as_ref()?;
        if m.lxid != keys::local_xid()
            || m.settings_generation != settings::generation()
            || m.aborts != sessions::aborts()
        {
            return None;
        }
        let same = match m.source {
            Source::Setting => {
                m.token_generation == settings::token_generation() && settings::has_value(&settings::TOKEN)
            }
            Source::Headers => {
                !settings::has_value(&settings::TOKEN)
                    && m.headers.as_ref().is_some_and(token_source::headers_unchanged)
            }
        };
        if !same {
            return None;
        }
        match &m.entry {
            None => Some(None),
            Some(e) => {
                (m.keys_generation == key_source::generation() && key_source::is_fresh() && now() <= e.valid_until)
                    .then(|| Some(e.clone()))
            }
        }
    })
}

/// The current request's verified token; None for an anonymous request. Errors for a bad one.
/// `with_jsonb`: the caller returns the claims as jsonb.
pub fn request_entry(with_jsonb: bool) -> Option<Rc<Entry>> {
    if let Some(hit) = memo_hit() {
        if hit.is_some() {
            stats::cache_hit();
        }
        return hit;
    }
    let source = token_source::source()?;
    stats::request_token_read();
    let (source, token, headers) = match source {
        Source::Setting => (Source::Setting, token_source::from_setting().map(str::to_owned), None),
        Source::Headers => {
            let h = token_source::request_headers_bytes()?;
            let version = token_source::headers_version(h);
            let text = std::str::from_utf8(h).unwrap_or_else(|_| token_source::malformed_headers("is not UTF-8"));
            (Source::Headers, token_source::from_headers(text), Some(version))
        }
    };
    let entry = token.map(|t| verify(&t, with_jsonb));
    MEMO.with(|m| {
        *m.borrow_mut() = Some(Memo {
            lxid: keys::local_xid(),
            aborts: sessions::aborts(),
            source,
            token_generation: settings::token_generation(),
            headers,
            settings_generation: settings::generation(),
            keys_generation: key_source::generation(),
            entry: entry.clone(),
        })
    });
    entry
}

unsafe fn text_arg<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> &'a str {
    // SAFETY: the functions are STRICT, so the argument is a non-null text datum.
    unsafe { pgrx::fcinfo::pg_getarg::<&str>(fcinfo, n).unwrap_or("") }
}

fn jsonb_datum(e: &Entry) -> pg_sys::Datum {
    let bytes = e.jsonb_bytes();
    // SAFETY: a palloc'd copy of a complete jsonb varlena, owned by the caller's context.
    unsafe {
        let p = pg_sys::palloc(bytes.len()) as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        pg_sys::Datum::from(p)
    }
}

fn uuid_datum(e: &Entry) -> pg_sys::Datum {
    match e.uuid() {
        Ok(u) => {
            // SAFETY: uuid is a 16-byte pass-by-reference type.
            unsafe {
                let p = pg_sys::palloc(16) as *mut [u8; 16];
                *p = *u;
                pg_sys::Datum::from(p)
            }
        }
        Err(why) => {
            let claim = settings::str_of(&settings::UUID_CLAIM);
            let detail = match why {
                UuidClaimError::Missing => format!("The token has no \"{claim}\" claim."),
                UuidClaimError::NotAString(t) => format!("The \"{claim}\" claim is {t}, not a string."),
                UuidClaimError::NotCanonical => {
                    format!("The \"{claim}\" claim is not a canonical UUID (8-4-4-4-12 hexadecimal digits).")
                }
            };
            errors::unauthorized(
                &format!("token missing UUID ({claim} claim)"),
                &detail,
                "Add the user's uuid to the token in Better Auth's jwt({ jwt: { definePayload } }), or set auth_jwt.uuid_claim to the claim that carries it.",
            )
        }
    }
}

fn text_datum(s: &str) -> pg_sys::Datum {
    s.into_datum().unwrap_or(pg_sys::Datum::from(0usize))
}

v1!(pg_finfo_auth_jwt_verify);
/// `auth_jwt.jwt_verify(token text) RETURNS jsonb`
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_verify(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    jsonb_datum(&verify(unsafe { text_arg(fcinfo, 0) }, true))
}

v1!(pg_finfo_auth_jwt_claims);
/// `auth_jwt.jwt_claims() RETURNS jsonb`: NULL for an anonymous request.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_claims(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match request_entry(true) {
        Some(e) => jsonb_datum(&e),
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}

v1!(pg_finfo_auth_jwt_claim_uuid);
/// `auth_jwt.jwt_claim_uuid() RETURNS uuid`: NULL for an anonymous request.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_claim_uuid(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match request_entry(false) {
        Some(e) => uuid_datum(&e),
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}

v1!(pg_finfo_auth_jwt_claim_uuid_of);
/// `auth_jwt.jwt_claim_uuid(token text) RETURNS uuid`
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_claim_uuid_of(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    uuid_datum(&verify(unsafe { text_arg(fcinfo, 0) }, false))
}

v1!(pg_finfo_auth_jwt_claim_sub);
/// `auth_jwt.jwt_claim_sub() RETURNS text`: Better Auth's user id; NULL for an anonymous request.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_claim_sub(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match request_entry(false).as_deref().and_then(Entry::sub) {
        Some(s) => text_datum(s),
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}

v1!(pg_finfo_auth_jwt_claim_sub_of);
/// `auth_jwt.jwt_claim_sub(token text) RETURNS text`
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_claim_sub_of(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let e = verify(unsafe { text_arg(fcinfo, 0) }, false);
    match e.sub() {
        Some(s) => text_datum(s),
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}
