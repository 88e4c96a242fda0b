//! Session binding: a verified token passes only while the Better Auth session it names is live.
//!
//! A JWT outlives sign-out: it stays valid until its `exp`. Better Auth deletes the session row on
//! sign-out, revocation and ban, so a verifier next to the session table can refuse such tokens.
//! The token names its session by id (`sid: session.id` in `definePayload`), never by the
//! session's `token`, which is a bearer credential: the lookup is by id alone.
//!
//! This module is the decision; the extension does the lookup and passes in what it found.

use crate::error::{iso8601, printable, Error, ErrorKind};
use crate::json::{Json, Object};

/// What a lookup of the session table by id found: only the columns the check needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// `"userId"` as text (NULL in a view that does not have it).
    pub user_id: Option<String>,
    /// `"expiresAt"` in Unix seconds, fractional.
    pub expires_at: Option<f64>,
}

/// Why a token names no session. Small and `Copy`: a verified token without the claim (Better
/// Auth's default payload has none) is cached with this, and the message is written only when
/// `auth_jwt.require_session` refuses it (`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionIdError {
    Missing,
    Empty,
    NotAString(&'static str),
}

impl SessionIdError {
    /// The refusal, naming `claim` (the `auth_jwt.session_claim` the id was looked for under).
    pub fn error(self, claim: &str) -> Error {
        let name = printable(claim, 64);
        let detail = match self {
            SessionIdError::Missing => format!("the token has no \"{name}\" claim, and auth_jwt.require_session is on"),
            SessionIdError::Empty => format!("the \"{name}\" claim is empty"),
            SessionIdError::NotAString(t) => format!("the \"{name}\" claim is {t}, not a string"),
        };
        Error::new(ErrorKind::NoSessionId, detail)
    }
}

/// The session id the token names: claim `claim`, a non-empty string.
pub fn session_id<'a>(claims: Object<'a>, claim: &str) -> Result<&'a str, SessionIdError> {
    match claims.get(claim) {
        Some(Json::String(s)) if !s.is_empty() => Ok(s),
        Some(Json::String(_)) => Err(SessionIdError::Empty),
        None | Some(Json::Null) => Err(SessionIdError::Missing),
        Some(other) => Err(SessionIdError::NotAString(other.a_type())),
    }
}

/// The token's `sub` claim if it is a string (Better Auth's user id), which a session must match.
pub fn sub_claim<'a>(claims: Object<'a>) -> Option<&'a str> {
    claims.get("sub").and_then(Json::as_str)
}

/// Whether the session a lookup found (None: no row with that id) lets the token through at
/// `now` (Unix seconds, fractional): it exists, belongs to the token's `sub` (the claim if it is
/// a string), and has not expired (as Better Auth decides: live while `now` is before `expiresAt`).
pub fn check_session(sub: Option<&str>, found: Option<&Session>, now: f64) -> Result<(), Error> {
    let Some(session) = found else {
        return Err(Error::new(
            ErrorKind::SessionEnded,
            "no session has the id the token names: the user signed out, or the session was revoked or deleted",
        ));
    };
    match (sub, session.user_id.as_deref()) {
        (Some(sub), Some(user)) if sub == user => {}
        (None, _) => return Err(Error::new(ErrorKind::SessionMismatch, "the token has no sub claim to compare")),
        (Some(_), None) => {
            return Err(Error::new(ErrorKind::SessionMismatch, "the session's \"userId\" is NULL"));
        }
        (Some(_), Some(_)) => {
            return Err(Error::new(
                ErrorKind::SessionMismatch,
                "the token's sub is not the \"userId\" of the session it names",
            ))
        }
    }
    match session.expires_at {
        Some(at) if now < at => Ok(()),
        Some(at) => Err(Error::new(
            ErrorKind::SessionExpired,
            format!("the session expired at {}", iso8601(at.clamp(-1e15, 1e15).floor() as i64)),
        )),
        None => Err(Error::new(ErrorKind::SessionExpired, "the session's \"expiresAt\" is NULL")),
    }
}

/// A session row as its table's trigger sees it before or after an UPDATE: the columns the check
/// reads. Ids and users are compared as stored (equal bytes, or both NULL); `expires_at` is
/// `"expiresAt"` in its type's own order (microseconds for a timestamp, days for a date), None
/// when NULL or of a type without one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionRow<'a> {
    pub id: Option<&'a [u8]>,
    pub user_id: Option<&'a [u8]>,
    pub expires_at: Option<i64>,
}

/// Whether an UPDATE from `old` to `new` can end a session that a cache holds as live, and must
/// invalidate it. Better Auth's refresh (same id, same user, `"expiresAt"` moved later) cannot: a
/// cache that still holds the earlier end only refuses sooner, and looks the session up again
/// when that end has passed. Anything else can: an earlier or NULL end, another user, another id.
/// (A DELETE or TRUNCATE always can; an INSERT never can, since only live sessions are cached
/// and an id names one session.)
pub fn update_can_end_session(old: &SessionRow<'_>, new: &SessionRow<'_>) -> bool {
    let later = matches!((old.expires_at, new.expires_at), (Some(o), Some(n)) if n >= o);
    !(old.id == new.id && old.user_id == new.user_id && later)
}

/// The number that stands for session `id` in the relation-oid space, for the invalidation that
/// ends it in every backend's cache (`FNV-1a`, 64 bits, folded into 16384..2^32, past the oids of
/// built-in relations). Fixed forever: a hot standby or a Citus node running another build must
/// compute the same one. Two ids may share one; that only drops both.
pub fn session_marker(id: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const FIRST: u64 = 16_384;
    (FIRST + h % (u64::from(u32::MAX) - FIRST + 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Doc;
    use serde_json::{json, Value};

    fn claims(v: Value) -> Doc {
        Doc::parse(v.to_string()).unwrap()
    }

    fn live(user: &str) -> Session {
        Session { user_id: Some(user.into()), expires_at: Some(2_000_000_000.0) }
    }

    #[test]
    fn session_markers_are_fixed_and_past_the_built_in_relations() {
        // Known FNV-1a 64 values, folded: a change here strands every standby on another build.
        assert_eq!(session_marker(b""), (16_384 + 0xcbf2_9ce4_8422_2325u64 % (u32::MAX as u64 - 16_383)) as u32);
        assert_eq!(session_marker(b"a"), (16_384 + 0xaf63_dc4c_8601_ec8cu64 % (u32::MAX as u64 - 16_383)) as u32);
        for id in [&b"s1"[..], b"1b6c1a8e-4d3f-4a5b-9c7d-1e2f3a4b5c6d", b"42", &[0xff; 300]] {
            assert!(session_marker(id) >= 16_384);
        }
        assert_ne!(session_marker(b"s1"), session_marker(b"s2"));
    }

    #[test]
    fn only_a_refresh_leaves_cached_sessions_alone() {
        let row = |id: &'static str, user: &'static str, at: Option<i64>| SessionRow {
            id: Some(id.as_bytes()),
            user_id: Some(user.as_bytes()),
            expires_at: at,
        };
        let old = row("s1", "u1", Some(100));
        assert!(!update_can_end_session(&old, &row("s1", "u1", Some(200))), "refreshed");
        assert!(!update_can_end_session(&old, &old), "untouched columns (updatedAt, ipAddress)");
        assert!(update_can_end_session(&old, &row("s1", "u1", Some(99))), "ended sooner");
        assert!(update_can_end_session(&old, &row("s1", "u1", None)), "expiresAt NULL");
        assert!(update_can_end_session(&row("s1", "u1", None), &row("s1", "u1", Some(200))), "type without order");
        assert!(update_can_end_session(&old, &row("s1", "u2", Some(200))), "another user");
        assert!(update_can_end_session(&old, &row("s2", "u1", Some(200))), "another id");
        let no_user = SessionRow { user_id: None, ..old };
        assert!(update_can_end_session(&old, &no_user), "userId NULL");
        assert!(!update_can_end_session(&no_user, &no_user), "NULL stays NULL");
    }

    #[test]
    fn session_id_is_a_non_empty_string_claim() {
        let c = claims(json!({ "sid": "s1", "other": 5, "empty": "", "null": null }));
        assert_eq!(session_id(c.root(), "sid").unwrap(), "s1");
        let why = |claim| session_id(c.root(), claim).unwrap_err();
        assert_eq!(why("missing"), SessionIdError::Missing);
        assert_eq!(why("null"), SessionIdError::Missing);
        assert_eq!(why("empty"), SessionIdError::Empty);
        assert_eq!(why("other"), SessionIdError::NotAString("a number"));
        for claim in ["missing", "other", "empty", "null"] {
            let e = why(claim).error(claim);
            assert_eq!(e.kind(), ErrorKind::NoSessionId, "{claim}");
            assert!(e.detail().contains(&format!("\"{claim}\"")), "{claim}: {}", e.detail());
        }
        assert!(why("other").error("other").detail().contains("a number, not a string"));
        assert!(why("missing").error("missing").detail().contains("require_session is on"));
        assert!(why("empty").error("empty").detail().contains("is empty"));
        // A claim name is shown printable and bounded, as everywhere else.
        assert!(!why("missing").error("a\nb").detail().contains('\n'));
    }

    #[test]
    fn a_live_session_of_the_same_user_passes() {
        let c = claims(json!({ "sub": "u1", "sid": "s1" }));
        assert_eq!(check_session(sub_claim(c.root()), Some(&live("u1")), 1_900_000_000.0), Ok(()));
    }

    #[test]
    fn ended_expired_and_foreign_sessions_are_refused() {
        let c = claims(json!({ "sub": "u1", "sid": "s1" }));
        let kind = |s: Option<&Session>, now: f64| check_session(sub_claim(c.root()), s, now).unwrap_err().kind();
        assert_eq!(kind(None, 0.0), ErrorKind::SessionEnded);
        assert_eq!(kind(Some(&live("u2")), 0.0), ErrorKind::SessionMismatch);
        assert_eq!(kind(Some(&Session { user_id: None, ..live("u1") }), 0.0), ErrorKind::SessionMismatch);
        assert_eq!(
            check_session(sub_claim(claims(json!({ "sid": "s1" })).root()), Some(&live("u1")), 0.0).unwrap_err().kind(),
            ErrorKind::SessionMismatch
        );
        // Expiry is exact, with no leeway: the same clock wrote and reads it.
        assert_eq!(kind(Some(&live("u1")), 2_000_000_000.0), ErrorKind::SessionExpired);
        assert_eq!(check_session(sub_claim(c.root()), Some(&live("u1")), 1_999_999_999.999), Ok(()));
        assert_eq!(kind(Some(&Session { expires_at: None, ..live("u1") }), 0.0), ErrorKind::SessionExpired);
        assert_eq!(
            check_session(sub_claim(c.root()), Some(&live("u1")), 2_000_000_001.0).unwrap_err().detail(),
            "the session expired at 2033-05-18T03:33:20Z"
        );
    }

    #[test]
    fn a_foreign_user_is_refused_before_expiry_is_looked_at() {
        let c = claims(json!({ "sub": "u1", "sid": "s1" }));
        let expired_foreign = Session { user_id: Some("u2".into()), expires_at: Some(1.0) };
        assert_eq!(
            check_session(sub_claim(c.root()), Some(&expired_foreign), 5.0).unwrap_err().kind(),
            ErrorKind::SessionMismatch
        );
    }
}
