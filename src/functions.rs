//! The SQL functions that verify tokens. They are plain version-1 C functions (declared in
//! `sql/functions.sql`) rather than `#[pg_extern]`, so the per-row path returns cached datums
//! with no conversion layer: a policy evaluating `auth_jwt.jwt_claim_uuid()` on every row pays
//! a few generation compares, a clock read and a 16-byte copy.

use crate::errors;
use crate::fmgr::{text_arg, v1};
use crate::request;
use crate::settings;
use crate::token_cache::VerifiedToken;
use crate::verify::verify;
use auth_jwt_core::UuidClaimError;
use pgrx::pg_sys;
use pgrx::prelude::*;

fn jsonb_datum(e: &VerifiedToken) -> pg_sys::Datum {
    let bytes = e.jsonb_bytes();
    // SAFETY: a palloc'd copy of a complete jsonb varlena, owned by the caller's context.
    unsafe {
        let p = pg_sys::palloc(bytes.len()) as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        pg_sys::Datum::from(p)
    }
}

fn uuid_datum(e: &VerifiedToken) -> pg_sys::Datum {
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
            let claim = settings::uuid_claim();
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
    match request::token(true) {
        Some(e) => jsonb_datum(&e),
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}

v1!(pg_finfo_auth_jwt_claim_uuid);
/// `auth_jwt.jwt_claim_uuid() RETURNS uuid`: NULL for an anonymous request.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_claim_uuid(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match request::token(false) {
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
    match request::token(false).as_deref().and_then(VerifiedToken::sub) {
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
