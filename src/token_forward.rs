//! On a Citus coordinator: the request's token carried to the workers, where row-level security
//! on distributed tables runs, shard by shard.
//!
//! Citus sends a worker only the `SET LOCAL` commands it saw in the transaction block (and only
//! with `citus.propagate_set_commands = 'local'`), never `set_config(..., true)`, and never
//! PostgREST's `request.headers`. So before each statement (`xact::before_each_statement`), if the
//! request's token has changed since it was last carried in this transaction, auth_jwt runs
//! `SET LOCAL auth_jwt.token` with it through Citus's own propagation (`citus`): workers already
//! in the transaction get it at once, and any worker Citus opens later gets it first thing. The
//! workers verify the token themselves, against their own copy of the keys.
//!
//! What is carried: the request's token as `token_source` reads it (`auth_jwt.token`, or the
//! bearer token of `request.headers`), only when it passes the pooler rule. A token set for the
//! session is never carried, so a worker never sees it as set for its transaction. An empty value
//! is carried when the request drops a token carried earlier in the transaction.
//!
//! Citus forgets a `SET LOCAL` made inside a subtransaction when it ends, even when it commits
//! (PL/pgSQL blocks with an EXCEPTION clause, such as `auth_jwt.pre_request()`, run in one); so a
//! token carried inside one is carried again after any subtransaction has ended.
//!
//! The hook is installed only where Citus is loaded; it needs auth_jwt loaded in the backend
//! before the statement, which `shared_preload_libraries = 'citus,auth_jwt'` guarantees (PostgREST's
//! `pre_request` loads it too). Citus-internal backends on the workers carry nothing.

use crate::citus;
use crate::settings;
use crate::token_source::{self, HeadersVersion};
use crate::xact;
use std::cell::RefCell;

/// What was carried last, and the state it was carried in.
struct Carried {
    lxid: u32,
    /// `auth_jwt.token`'s assignments, counted after the carrying SET LOCAL (which is one).
    token_generation: u64,
    /// The `request.headers` value it was read from; None when there was none.
    headers: Option<HeadersVersion>,
    /// Carried at the top level of the transaction, or in a subtransaction that has not ended.
    at_top: bool,
    subxact_ends: u64,
    /// A token (not an empty value) was carried.
    token: bool,
}

thread_local! {
    static CARRIED: RefCell<Option<Carried>> = const { RefCell::new(None) };
    static BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Install the hook where Citus is loaded (from `_PG_init`).
pub fn init() {
    if citus::loaded() {
        xact::before_each_statement(before_statement);
    }
}

/// The headers now, and whether they are the value `version` was taken of.
fn headers_same(version: &Option<HeadersVersion>) -> bool {
    match version {
        None => token_source::request_headers_bytes().is_none(),
        Some(v) => token_source::headers_unchanged(v),
    }
}

/// Still carried: the same transaction, the same token source values, and no subtransaction it
/// was carried in has ended.
fn still_carried(c: &Carried) -> bool {
    c.lxid == xact::local_xid()
        && c.token_generation == settings::token_generation()
        && (c.at_top || c.subxact_ends == xact::subxact_ends())
        && headers_same(&c.headers)
}

fn before_statement() {
    if BUSY.with(|b| b.get()) || xact::is_parallel_worker() || citus::internal_backend() {
        return;
    }
    if CARRIED.with(|c| c.borrow().as_ref().is_some_and(still_carried)) {
        return;
    }
    BUSY.with(|b| b.set(true));
    let _done = scopeguard(|| BUSY.with(|b| b.set(false)));
    let lxid = xact::local_xid();
    let token = token_source::for_this_transaction();
    let carried_before = CARRIED.with(|c| c.borrow().as_ref().is_some_and(|c| c.lxid == lxid && c.token));
    if token.is_some() || carried_before {
        citus::set_local_on_workers(c"auth_jwt.token", token.as_deref().unwrap_or(""));
    }
    let headers = token_source::request_headers_bytes().map(token_source::headers_version);
    CARRIED.with(|c| {
        *c.borrow_mut() = Some(Carried {
            lxid,
            token_generation: settings::token_generation(),
            headers,
            at_top: xact::at_top_level(),
            subxact_ends: xact::subxact_ends(),
            token: token.is_some(),
        })
    });
}

/// Runs `f` when dropped, also while an ERROR unwinds.
fn scopeguard(f: impl FnMut()) -> impl Drop {
    struct Guard<F: FnMut()>(F);
    impl<F: FnMut()> Drop for Guard<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    Guard(f)
}
