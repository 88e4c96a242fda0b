//! On a Citus coordinator: the request's token carried to the workers, where row-level security
//! on distributed tables runs, shard by shard.
//!
//! Citus sends a worker only the `SET LOCAL` commands it saw in the transaction block (and only
//! with `citus.propagate_set_commands = 'local'`), never `set_config(..., true)`, and never
//! PostgREST's `request.headers`. So at each statement boundary
//! (`xact::at_each_statement_boundary`: before the executor starts, runs and after it ends each
//! statement, functions' included, and before COPY, FETCH and CALL), if the request's token has
//! changed since it was last carried in this transaction, auth_jwt runs `SET LOCAL
//! auth_jwt.token` with it through Citus's own propagation (`citus`): workers already in the
//! transaction get it at once, and any worker Citus opens later gets it first thing. The workers
//! verify the token themselves, against their own copy of the keys.
//!
//! On a worker the token then lives until the transaction ends, whatever the coordinator does
//! in between: so a token is carried only if it is the transaction's. A value a function's SET
//! clause gave the token for the call ends with the call, mid-statement, and nothing would carry
//! the caller's token back before the rest of the statement ran on the workers: it is refused.
//! A token a function took and dropped before returning (by a statement, a PL/pgSQL assignment,
//! `SET LOCAL`, its SET clause ending) is carried again before the caller's statement goes on to
//! the workers: at the end of the statement that called it, or before the statement runs when
//! Citus evaluated the call while the executor started (a modification's function calls).
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
//! Workers preload auth_jwt too, so that the `SET LOCAL` that carries the token shows in their
//! `pg_stat_activity` with the token hidden (`settings`): every backend of the role could read it
//! there otherwise, and Citus connects to the workers as the request's role, shared by all users.

use crate::citus;
use crate::errors;
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
        xact::at_each_statement_boundary(carry);
        xact::set_text_sent_on_when(citus::propagates_set);
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

fn carry() {
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
    if token.is_some() && token_source::set_by_function_clause() {
        errors::unauthorized(
            "a token set by a function's SET clause cannot be carried to the Citus workers",
            "The function's SET clause ends with the call, but on the workers the token would stay in force for the rest of the transaction, for statements the caller runs.",
            "Set the token with set_config('auth_jwt.token', ..., true) or SET LOCAL, before the call or in the function's body.",
        );
    }
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
