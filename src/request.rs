//! The current request's token, verified, and remembered so that a policy evaluated on every row
//! looks at it once per statement: a verified token, or none at all (an anonymous request must not
//! re-parse a large `request.headers` on every row either).
//!
//! A memo hit needs the same transaction, no savepoint rolled back and the same trust settings
//! (`xact::Stamp`); the same token source value, recognised without reading it (by
//! `auth_jwt.token`'s assign-hook generation, or `request.headers`'s: see
//! `token_source::HeadersVersion`; never by the value, whose size the client decides); and for a
//! token, the same key generation, no pending key invalidation, and an unexpired token.

use crate::key_source;
use crate::settings;
use crate::stats;
use crate::token_cache::VerifiedToken;
use crate::token_source::{self, HeadersVersion, Source};
use crate::verify::{now, verify};
use crate::xact::Stamp;
use std::cell::RefCell;
use std::rc::Rc;

struct RequestMemo {
    stamp: Stamp,
    source: Source,
    token_generation: u64,
    /// For a token from `request.headers`, or none: the value it was read from.
    headers: Option<HeadersVersion>,
    keys_generation: u64,
    /// None: the request carries no token.
    token: Option<Rc<VerifiedToken>>,
}

thread_local! {
    static MEMO: RefCell<Option<RequestMemo>> = const { RefCell::new(None) };
}

fn memo_hit() -> Option<Option<Rc<VerifiedToken>>> {
    MEMO.with(|m| {
        let m = m.borrow();
        let m = m.as_ref()?;
        if !m.stamp.is_current() {
            return None;
        }
        let same = match m.source {
            Source::Setting => m.token_generation == settings::token_generation() && settings::token_is_set(),
            Source::Headers => {
                !settings::token_is_set() && m.headers.as_ref().is_some_and(token_source::headers_unchanged)
            }
        };
        if !same {
            return None;
        }
        match &m.token {
            None => Some(None),
            Some(t) => (m.keys_generation == key_source::generation()
                && key_source::source().untouched()
                && now() <= t.valid_until)
                .then(|| Some(t.clone())),
        }
    })
}

/// The current request's verified token; None for an anonymous request. Errors for a bad one.
/// `with_jsonb`: the caller returns the claims as jsonb.
pub fn token(with_jsonb: bool) -> Option<Rc<VerifiedToken>> {
    if let Some(hit) = memo_hit() {
        if hit.is_some() {
            stats::cache_hit();
        }
        return hit;
    }
    let source = token_source::source()?;
    stats::request_token_read();
    let (source, text, headers) = match source {
        Source::Setting => (Source::Setting, token_source::from_setting().map(str::to_owned), None),
        Source::Headers => {
            let h = token_source::request_headers_bytes()?;
            let version = token_source::headers_version(h);
            let text = std::str::from_utf8(h).unwrap_or_else(|_| token_source::malformed_headers("is not UTF-8"));
            (Source::Headers, token_source::from_headers(text), Some(version))
        }
    };
    let token = text.map(|t| verify(&t, with_jsonb));
    MEMO.with(|m| {
        *m.borrow_mut() = Some(RequestMemo {
            stamp: Stamp::now(),
            source,
            token_generation: settings::token_generation(),
            headers,
            keys_generation: key_source::generation(),
            token: token.clone(),
        })
    });
    token
}
