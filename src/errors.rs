//! The one place where failures become PostgreSQL errors: SQLSTATE, message, detail and hint.
//!
//! Every rejected token is SQLSTATE 28000 (invalid_authorization_specification) with the core's
//! fixed message; configuration problems get their own codes, so an operator can tell "this
//! token is bad" from "this database is not set up". Nothing raised here contains a token, a
//! signature or key material: details come from the core, which builds them from public facts.

use crate::settings::{ConfigError, ConfigProblem};
use auth_jwt_core::{Error, ErrorKind};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Expired => "The client must refresh its Better Auth session and send a new token.",
        ErrorKind::NotYetValid => {
            "Check that the database and Better Auth clocks agree; auth_jwt.leeway sets the tolerance."
        }
        ErrorKind::KeyNotFound => {
            "The kid must name a usable row of auth_jwt.jwks_table whose key verifies the token's alg, not past its expiresAt plus auth_jwt.key_grace_period; see SELECT * FROM auth_jwt.jwks_keys()."
        }
        ErrorKind::InvalidSignature => "The token was not signed by the key its kid names: it is forged or corrupted.",
        ErrorKind::Malformed => {
            "Send the compact JWT exactly as Better Auth issued it (header.payload.signature), with no quotes or whitespace."
        }
        ErrorKind::UnsupportedAlgorithm => {
            static HINT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                format!(
                    "auth_jwt verifies the algorithms Better Auth signs with: {} ({} by default); HMAC, none and others are refused.",
                    auth_jwt_core::Alg::names(),
                    auth_jwt_core::Alg::EdDSA
                )
            });
            HINT.as_str()
        }
        ErrorKind::InvalidClaims => {
            "Compare the token's claims with auth_jwt.issuer, auth_jwt.audience and the claims the policy needs."
        }
        ErrorKind::NoSessionId => {
            "auth_jwt.require_session is on: put the session id in the token with Better Auth's jwt({ jwt: { definePayload: ({ user, session }) => ({ ...user, sid: session.id }) } }) (never session.token), or set auth_jwt.session_claim to the claim that carries it."
        }
        ErrorKind::SessionEnded => {
            "The user signed out, or the session was revoked or its user banned: the client must sign in again."
        }
        ErrorKind::SessionExpired => "The Better Auth session has expired: the client must sign in again.",
        ErrorKind::SessionMismatch => {
            "The token names a session of another user: it was not issued by Better Auth for that session. Check jwt.definePayload."
        }
    }
}

/// PostgreSQL style for details: a sentence, capitalized, ending with a period. A sentence that
/// starts with a name (a setting such as `auth_jwt.token`, an identifier) keeps its spelling.
pub fn sentence(s: &str) -> String {
    let first_word = s.split([' ', ':', ',']).next().unwrap_or("");
    let is_name = first_word.contains(['.', '_', '(', '"']);
    let mut out: String = if is_name {
        s.to_owned()
    } else {
        s.chars().take(1).flat_map(char::to_uppercase).chain(s.chars().skip(1)).collect()
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

fn raise(code: PgSqlErrorCode, message: String, detail: String, hint: String) -> ! {
    ErrorReport::new(code, message, "auth_jwt").set_detail(sentence(&detail)).set_hint(hint).report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Advice that is not a failure (a NOTICE or a WARNING), with a detail and a hint.
pub fn advise(level: PgLogLevel, message: String, detail: &str, hint: &str) {
    let code = match level {
        PgLogLevel::WARNING => PgSqlErrorCode::ERRCODE_WARNING,
        _ => PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
    };
    ErrorReport::new(code, message, "auth_jwt").set_detail(sentence(detail)).set_hint(hint.to_owned()).report(level);
}

/// A rejected token.
pub fn rejected(e: &Error) -> ! {
    crate::stats::rejected(e.kind());
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        e.message().to_owned(),
        e.detail().to_owned(),
        hint(e.kind()).to_owned(),
    )
}

/// A rejection that is not about the token's content (where it came from, or a missing claim).
pub fn unauthorized(message: &str, detail: &str, hint: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        message.to_owned(),
        detail.to_owned(),
        hint.to_owned(),
    )
}

/// The message for a configuration problem (also shown by jwt_explain).
pub fn config_message(e: &ConfigError) -> String {
    match e.problem {
        ConfigProblem::NotSet => format!("{} is not set", e.setting),
        ConfigProblem::Displaced => format!("{} was refused for this session", e.setting),
    }
}

/// The session cannot verify anything until its configuration is fixed.
pub fn config(e: &ConfigError) -> ! {
    let code = match e.problem {
        ConfigProblem::NotSet => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        ConfigProblem::Displaced => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
    };
    raise(code, config_message(e), e.detail.clone(), e.hint.clone())
}

/// A relation a setting names (the key table, the session table) cannot be read as configured.
pub fn configured_relation(code: PgSqlErrorCode, message: String, detail: String, hint: &str) -> ! {
    raise(code, message, detail, hint.to_owned())
}

/// `auth_jwt.pre_request()` cannot switch the request's role as configured.
pub fn role_switch(code: PgSqlErrorCode, message: String, detail: String, hint: &str) -> ! {
    raise(code, message, detail, hint.to_owned())
}

/// The database is not UTF-8: claims (UTF-8 by RFC 8259) would reach SQL as mojibake.
pub fn database_not_utf8(encoding: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "auth_jwt needs a UTF-8 database".into(),
        format!("This database's encoding is {encoding}. Token claims are UTF-8, and auth_jwt hands their strings to SQL as they are."),
        "Use a database created with ENCODING 'UTF8' (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0) for the tables auth_jwt protects.".into(),
    )
}

/// No usable keys from `auth_jwt.jwks_url`: the endpoint failed and the last good document (if
/// any) is older than `auth_jwt.jwks_stale_if_error`. Not 28000: the token was not looked at.
pub fn jwks_unavailable(host: &str, detail: String) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        format!("auth_jwt cannot fetch keys from {host}"),
        detail,
        "Check that the database server can reach auth_jwt.jwks_url (Better Auth's /api/auth/jwks) and that it answers 200 with a JWKS document; the last good keys keep verifying for auth_jwt.jwks_stale_if_error.".into(),
    )
}
