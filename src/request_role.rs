//! The role a PostgREST request runs as once its token has verified (`auth_jwt.pre_request()`,
//! PostgREST's `db-pre-request`). PostgREST cannot verify Better Auth's EdDSA tokens, so with the
//! token in a header of its own it runs every request as `db-anon-role`; this switches a request
//! with a verified token to `auth_jwt.authenticated_role` (or a role its claim picks from the
//! DBA's allow-list, `auth_jwt.role_claim_map`), for the rest of its transaction.
//!
//! Limits, each enforced here or by PostgreSQL's own `SET ROLE` rules:
//! - only for a verified token: the pooler rule and `require_session` apply first (an anonymous
//!   request stays as it is, a bad token is an error);
//! - only from the role PostgREST set for this request (`set_config('role', ..., true)`; not a
//!   function's `SET role` clause), and only for this transaction (`SET LOCAL`);
//! - never inside a SECURITY DEFINER function or a security-restricted operation;
//! - never to a superuser, and only to a role the session user (PostgREST's `authenticator`)
//!   could `SET ROLE` to itself: PostgreSQL checks membership (with the SET option on 16+).

use crate::errors;
use crate::request;
use crate::settings;
use crate::token_source;
use auth_jwt_core::RoleMap;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::ffi::CString;

/// Switch the transaction to the role the request's verified token earns; the role, or None when
/// there is no switch (`auth_jwt.authenticated_role` empty, or an anonymous request).
pub fn switch() -> Option<String> {
    let default = settings::authenticated_role();
    if default.is_empty() {
        return None;
    }
    let token = request::token(false)?;
    let map = RoleMap::parse(settings::role_claim_map()).unwrap_or_else(|why| {
        errors::role_switch(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "auth_jwt.role_claim_map is not a list of claim value=role pairs".into(),
            why,
            "Set it to something like 'admin=app_admin, user=authenticated', or empty to ignore the claim.",
        )
    });
    let role = map.role_for(token.role()).unwrap_or(default).to_owned();
    // SAFETY: plain reads of the backend's security context.
    if unsafe { pg_sys::InLocalUserIdChange() || pg_sys::InSecurityRestrictedOperation() } {
        errors::role_switch(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "auth_jwt cannot switch roles inside a SECURITY DEFINER function or a security-restricted operation".into(),
            format!("The request's token verified, and auth_jwt.authenticated_role asks for a switch to {role}."),
            "Call auth_jwt.pre_request() directly, as PostgREST's db-pre-request does.",
        );
    }
    if !token_source::set_locally(settings::find_guc(c"role")) {
        errors::role_switch(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            "auth_jwt switches roles only from the role set for this request".into(),
            "The role in force was not set for this transaction as PostgREST sets it (set_config('role', ..., true) or SET LOCAL ROLE), and auth_jwt.authenticated_role asks for a switch.".into(),
            "Use auth_jwt.pre_request() as PostgREST's db-pre-request; elsewhere, SET LOCAL ROLE yourself.",
        );
    }
    let name = CString::new(role.as_str()).unwrap_or_default();
    // SAFETY: a catalog lookup by name (no error when missing), then a superuser flag read.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    if oid == pg_sys::InvalidOid {
        errors::role_switch(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("auth_jwt cannot switch to role \"{role}\": it does not exist"),
            "auth_jwt.authenticated_role (or auth_jwt.role_claim_map) names it for requests with a verified token."
                .into(),
            "Create the role, or set auth_jwt.authenticated_role to the role your policies grant to signed-in users.",
        );
    }
    // SAFETY: see above.
    if unsafe { pg_sys::superuser_arg(oid) } {
        errors::role_switch(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("auth_jwt will not switch to role \"{role}\": it is a superuser"),
            "A request's token must never make it a superuser, whatever auth_jwt.authenticated_role or auth_jwt.role_claim_map say.".into(),
            "Name a role without SUPERUSER that holds the privileges signed-in users need.",
        );
    }
    // SAFETY: guc.c's SET LOCAL; the role's check hook applies PostgreSQL's SET ROLE rules (the
    // session user must be allowed to become the role) and raises if they are not met.
    unsafe {
        let context = if pg_sys::superuser() { pg_sys::GucContext::PGC_SUSET } else { pg_sys::GucContext::PGC_USERSET };
        pg_sys::set_config_option(
            c"role".as_ptr(),
            name.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
    Some(role)
}

crate::fmgr::v1!(pg_finfo_auth_jwt_set_request_role);
/// `auth_jwt.set_request_role() RETURNS text`: the role switched to, or NULL.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_set_request_role(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match switch() {
        Some(role) => role.as_str().into_datum().unwrap_or(pg_sys::Datum::from(0usize)),
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}
