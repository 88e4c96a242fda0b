//! Typed verification errors.
//!
//! [`ErrorKind`] is the small, fixed vocabulary users see as the error message (and search for);
//! [`Error`] adds a detail that says which part or claim failed and why. Details are built only
//! from public facts (lengths, claim names, numbers, the `kid`, escaped and truncated): never from
//! the token text, a signature or key material.

use std::fmt;

/// What went wrong, coarsely. The extension maps each kind to SQLSTATE 28000 and a fixed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Not a well-formed compact JWS/JWT (size, segments, base64url, JSON, header fields).
    Malformed,
    /// `alg` is not one auth_jwt verifies.
    UnsupportedAlgorithm,
    /// No usable key for the token's `kid`.
    KeyNotFound,
    /// The signature does not verify under the selected key.
    InvalidSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    NotYetValid,
    /// A claim is missing, of the wrong type, or has the wrong value.
    InvalidClaims,
    /// Sessions are required and the token names none (no session-id claim).
    NoSessionId,
    /// The session the token names no longer exists: signed out, revoked, or the user banned.
    SessionEnded,
    /// The session the token names is past its `expiresAt`.
    SessionExpired,
    /// The session the token names belongs to another user than the token's `sub`.
    SessionMismatch,
}

impl ErrorKind {
    /// The fixed message for this kind, as raised by the extension.
    pub fn message(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed token",
            ErrorKind::UnsupportedAlgorithm => "unsupported algorithm",
            ErrorKind::KeyNotFound => "unable to find matching signing key",
            ErrorKind::InvalidSignature => "invalid token signature",
            ErrorKind::Expired => "token has expired",
            ErrorKind::NotYetValid => "token is not yet valid",
            ErrorKind::InvalidClaims => "invalid token claims",
            ErrorKind::NoSessionId => "token has no session id",
            ErrorKind::SessionEnded => "session has ended",
            ErrorKind::SessionExpired => "session has expired",
            ErrorKind::SessionMismatch => "session belongs to another user",
        }
    }

    /// A short stable name, used for counters and diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::UnsupportedAlgorithm => "unsupported_algorithm",
            ErrorKind::KeyNotFound => "key_not_found",
            ErrorKind::InvalidSignature => "invalid_signature",
            ErrorKind::Expired => "expired",
            ErrorKind::NotYetValid => "not_yet_valid",
            ErrorKind::InvalidClaims => "invalid_claims",
            ErrorKind::NoSessionId => "no_session_id",
            ErrorKind::SessionEnded => "session_ended",
            ErrorKind::SessionExpired => "session_expired",
            ErrorKind::SessionMismatch => "session_mismatch",
        }
    }

    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Malformed,
        ErrorKind::UnsupportedAlgorithm,
        ErrorKind::KeyNotFound,
        ErrorKind::InvalidSignature,
        ErrorKind::Expired,
        ErrorKind::NotYetValid,
        ErrorKind::InvalidClaims,
        ErrorKind::NoSessionId,
        ErrorKind::SessionEnded,
        ErrorKind::SessionExpired,
        ErrorKind::SessionMismatch,
    ];
}

/// The part of a compact JWS a [`ErrorKind::Malformed`] error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Token,
    Header,
    Payload,
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Token => "token",
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// A verification failure: a kind plus a safe, specific detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    detail: String,
}

impl Error {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error { kind, detail: detail.into() }
    }

    pub fn malformed(part: Part, why: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Malformed, format!("{part}: {why}"))
    }

    pub fn claim(claim: &str, why: impl fmt::Display) -> Self {
        Error::new(ErrorKind::InvalidClaims, format!("claim \"{}\" {why}", printable(claim, 64)))
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &'static str {
        self.kind.message()
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.message(), self.detail)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Unix time as ISO 8601 UTC ("2026-11-29T08:00:00Z"), for details people read.
pub fn iso8601(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Civil-from-days (H. Hinnant), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// An attacker-chosen string made safe for a message: control and non-ASCII characters escaped,
/// truncated to `max` characters (a 1 MB `kid` must not become a 1 MB log line).
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable("abc", 10), "abc");
        assert_eq!(printable("a\0b\n", 10), "a\\u{0}b\\n");
        assert_eq!(printable(&"x".repeat(100), 4), "xxxx...");
        assert_eq!(printable("é", 4), "\\u{e9}");
    }

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_795_931_933), "2026-11-29T05:58:53Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn kinds_have_distinct_names_and_messages() {
        let names: std::collections::HashSet<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        let msgs: std::collections::HashSet<_> = ErrorKind::ALL.iter().map(|k| k.message()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(msgs.len(), ErrorKind::ALL.len());
    }
}
