//! On a Citus coordinator: the request's token carried to the workers, where row-level security
//! on distributed tables runs, shard by shard.
//!
//! Citus sends a worker only the `SET LOCAL` commands it saw in the transaction block (and only
//! with `citus.propagate_set_commands = 'local'`), never `set_config(..., true)`, and never
//! PostgREST's `request.headers`. So at each boundary of a statement the client sent
//! (`xact::Boundary::Statement`: before it is planned, started or run, or, a utility statement,
//! processed), if the request's token has changed
//! since it was last carried in this transaction, auth_jwt runs `SET LOCAL auth_jwt.token` with
//! it through Citus's own propagation (`citus`): workers already in the transaction get it at
//! once, and any worker Citus opens later gets it first thing. The workers verify the token
//! themselves, against their own copy of the keys. On this node the variable keeps its value: a
//! token read from `request.headers` stays one, and goes when the headers change.
//!
//! Within a statement the token on the workers does not change. Citus sends a statement's work
//! whenever its plan gets there, and a function or procedure the statement calls can take a
//! token and give it back with nothing in between that auth_jwt could carry at (a PL/pgSQL
//! assignment, a `SET`, the end of its SET clause, the planner running a STABLE function). Three
//! reviews read and changed another user's rows through each way this was tried before. So:
//! - any statement but the client's own (`xact` tells them apart by their text: a function's,
//!   a procedure's, a DO block's, a trigger's at COMMIT, a domain CHECK's while a statement is
//!   parsed or bound, each has a text of its own, whoever calls it) that finds the token changed
//!   since the client statement's boundary fails (28000), instead of running with either token;
//! - a `SET LOCAL` of the token or the headers that Citus would send on by itself (the caller
//!   may set `citus.propagate_set_commands`) fails there too;
//! - a value a function's SET clause gave the token is refused at a boundary as well: it ends
//!   with the call.
//!
//! The workers run a statement's work with the token the transaction had when it began, never one
//! only a function held.
//!
//! What is carried: the request's token as `token_source` reads it (`auth_jwt.token`, or the
//! bearer token of `request.headers`), only when it passes the pooler rule. A token set for the
//! session is never carried, so a worker never sees it as set for its transaction. An empty value
//! is carried when the request drops a token carried earlier in the transaction.
//!
//! Citus shows the client every command it sends when `citus.log_remote_commands` is on, and what
//! the workers log (a worker prints the carrying statement's parse tree under `debug_print_parse`,
//! which Citus sends on too) when `citus.worker_min_messages` is below `notice`; and it begins each
//! worker connection it opens later in the transaction with the transaction's `SET LOCAL`s: once
//! a token was carried in the transaction, every statement boundary, nested or not, refuses while
//! either is so (28000), and check hooks on both refuse to set them so (22023; a RESET to a
//! connection's own value skips check hooks, the boundaries do not).
//!
//! Before the client's statement has reached its own boundary (while it is parsed or its
//! parameters bound, when a domain's CHECK may run a function), a nested point carries as a
//! boundary does if the token is as the client's previous statement left it (a change since the
//! last carry is then the client's own); if it changed since, something run while parsing
//! changed it, and the point is checked as any nested one. In a backend that loaded auth_jwt
//! during the statement, such points neither carry nor refuse. Nested runs (a function's FETCH)
//! are checked as nested starts are. The extended protocol binds and executes a portal under
//! copies of the client's text (`xact::Boundary::SameText`): carried there as at a boundary is
//! only what the client's previous statements changed. A client's `ROLLBACK TO SAVEPOINT` is such a
//! statement, though it changes the token after it has returned, as its transaction command ends
//! (`xact` notes its end once the savepoint has begun again).
//!
//! The carrying `SET LOCAL` goes straight to ProcessUtility (`citus`), not through SPI, whose
//! parse analysis prints the statement, token included, under `debug_print_parse`.
//!
//! Citus forgets a `SET LOCAL` made inside a subtransaction when that subtransaction ends, even
//! when it commits (a savepoint released), for the connections it opens later; those already in
//! the transaction keep it. So once the subtransaction of the last carry has ended, the next
//! statement boundary carries again, the token or an empty value, whatever the token is now.
//!
//! The hooks are installed only where Citus is loaded; they need auth_jwt loaded in the backend
//! before the statement, which `shared_preload_libraries = 'citus,auth_jwt'` guarantees
//! (PostgREST's `pre_request` loads it too). Citus-internal backends on the workers carry
//! nothing on (their token came from the coordinator), and are checked like any other: any role
//! can claim to be one through `application_name`. Workers preload auth_jwt too, so that the
//! `SET LOCAL` that carries the token shows in their `pg_stat_activity` with the token hidden
//! (`settings`, `xact`): every backend of the role could read it there otherwise, and Citus
//! connects to the workers as the request's role, shared by all users.

use crate::citus;
use crate::errors;
use crate::settings;
use crate::token_source::{self, HeadersVersion};
use crate::xact::{self, Boundary};
use pgrx::pg_sys;
use std::cell::RefCell;

/// What was carried last, and the state it was carried in.
struct Carried {
    /// The token's sources when it was carried (after the carrying SET LOCAL, which assigns it).
    sources: Versions,
    /// The (sub)transaction it was carried in: Citus keeps it for new connections while that
    /// has not ended.
    subxact: u32,
    /// The token carried; None when nothing (or an empty value) was.
    token: Option<String>,
}

thread_local! {
    static CARRIED: RefCell<Option<Carried>> = const { RefCell::new(None) };
    static TOKEN_CARRIED_IN: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
    /// The client statement (`client_statement`) whose boundary was passed last.
    static PASSED: std::cell::Cell<Option<(usize, i64)>> = const { std::cell::Cell::new(None) };
    /// The client statement during which the hooks went in (auth_jwt loaded then, not preloaded).
    static HOOKED_IN: std::cell::Cell<Option<(usize, i64)>> = const { std::cell::Cell::new(None) };
    /// The token's sources as the client's last statement (or step of one) left them.
    static LEFT: RefCell<Option<Versions>> = const { RefCell::new(None) };
    static BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Install the hooks where Citus is loaded (from `_PG_init`).
pub fn init() {
    if citus::loaded() {
        HOOKED_IN.with(|h| h.set(Some(client_statement())));
        xact::at_each_statement_boundary(at_boundary, after_client_statement);
        xact::on_token_set(token_set);
        guard_what_the_client_is_shown();
    }
}

/// A `SET`/`RESET` of the token or the headers: Citus sends a `SET LOCAL` on to the workers at
/// once (with `citus.propagate_set_commands = 'local'`, which any role may set). At a statement
/// boundary that is a carry of the client's own; inside a statement it would change the workers'
/// token mid-statement, as a function that sets and gives back a token would: refused.
fn token_set(kind: pg_sys::VariableSetKind::Type, is_local: bool, b: Boundary) -> bool {
    let ours = BUSY.with(|b| b.get());
    if !ours && b == Boundary::Nested && citus::propagates_set(kind, is_local) {
        changed_within_statement();
    }
    // Only the carry's own text goes on as it is; any other is hidden before Citus (or anything
    // else) sees it: a client's own propagated SET LOCAL then reaches the workers hidden, and the
    // next statement boundary carries the token itself.
    ours
}

/// The local transaction id in which a token (not an empty value) was last carried: Citus
/// replays every `SET LOCAL` of the transaction to each worker it opens later.
fn carried_a_token_in_this_transaction() -> bool {
    TOKEN_CARRIED_IN.with(|t| t.get() == Some(xact::local_xid()))
}

/// Nothing of what the workers get shown to the client while a token has been carried in the
/// transaction (see `citus::shows_client_what_workers_get`): each connection Citus opens later
/// begins with the transaction's `SET LOCAL`s, tokens included. Check hooks on
/// `citus.log_remote_commands` and `citus.worker_min_messages` (which have none of their own)
/// refuse to set them so then, however they are set.
fn guard_what_the_client_is_shown() {
    if let Some(r) = settings::GucRecord::find(c"citus.log_remote_commands") {
        // SAFETY: a live GUC record of a bool setting (checked); guc.c reads check_hook before
        // each assignment and nothing else writes it; Citus defines it without a check hook.
        unsafe {
            if (*r.record).vartype == pg_sys::config_type::PGC_BOOL {
                let conf = r.record as *mut pg_sys::config_bool;
                if (*conf).check_hook.is_none() {
                    (*conf).check_hook = Some(check_remote_command_log);
                }
            }
        }
    }
    if let Some(r) = settings::GucRecord::find(c"citus.worker_min_messages") {
        // SAFETY: as above, for an enum setting.
        unsafe {
            if (*r.record).vartype == pg_sys::config_type::PGC_ENUM {
                let conf = r.record as *mut pg_sys::config_enum;
                if (*conf).check_hook.is_none() {
                    (*conf).check_hook = Some(check_worker_min_messages);
                }
            }
        }
    }
}

/// Citus's `CITUS_LOG_LEVEL_OFF`: no worker message is passed on.
const CITUS_LOG_LEVEL_OFF: i32 = 0;

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_worker_min_messages(
    newval: *mut i32,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: guc.c passes the proposed value.
    let relays_logs = unsafe { *newval != CITUS_LOG_LEVEL_OFF && *newval < pg_sys::NOTICE as i32 };
    allowed_after_carry(
        relays_logs,
        c"auth_jwt carried the request's token to the Citus workers in this transaction; Citus would pass on to the client what the workers log of it.",
    )
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_remote_command_log(
    newval: *mut bool,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: guc.c passes the proposed value.
    let logs = unsafe { *newval };
    allowed_after_carry(
        logs,
        c"auth_jwt carried the request's token to the Citus workers in this transaction; Citus would show it to the client.",
    )
}

/// For the check hooks above: a value that would show the client what the workers get is refused
/// once a token was carried in the transaction, with `why` as the detail.
fn allowed_after_carry(shows: bool, why: &std::ffi::CStr) -> bool {
    if shows && carried_a_token_in_this_transaction() {
        // SAFETY: the detail string is palloc'd, as guc.c frees it.
        unsafe { pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(why.as_ptr()) };
        return false;
    }
    true
}

/// The token's sources at one point of a transaction: equal versions mean the same values.
struct Versions {
    lxid: u32,
    token_generation: u64,
    headers: Option<HeadersVersion>,
}

impl Versions {
    fn now() -> Versions {
        Versions {
            lxid: xact::local_xid(),
            token_generation: settings::token_generation(),
            headers: token_source::request_headers_bytes().map(token_source::headers_version),
        }
    }

    fn current(&self) -> bool {
        self.lxid == xact::local_xid()
            && self.token_generation == settings::token_generation()
            && headers_same(&self.headers)
    }
}

/// The client's statement (or a step of it) returned: what comes next, until the next boundary,
/// is before the next statement's boundary (a query string's statements share its text and start
/// time), and a change since is not the client's.
fn after_client_statement() {
    LEFT.with(|l| *l.borrow_mut() = Some(Versions::now()));
    PASSED.with(|p| p.set(None));
}

/// The headers now, and whether they are the value `version` was taken of.
fn headers_same(version: &Option<HeadersVersion>) -> bool {
    match version {
        None => token_source::request_headers_bytes().is_none(),
        Some(v) => token_source::headers_unchanged(v),
    }
}

/// The carried state holds for this transaction: its subtransaction has not ended.
fn current(c: &Carried) -> bool {
    c.sources.lxid == xact::local_xid() && xact::subxact_active(c.subxact)
}

/// Still carried, in O(1): the same transaction, no subtransaction it was carried in has ended,
/// and the token's sources have not been assigned since.
fn still_carried(c: &Carried) -> bool {
    current(c) && c.sources.current()
}

/// The client statement now running (its text and start time: a multi-statement string's
/// statements share both), for telling whether it has passed a statement boundary yet.
fn client_statement() -> (usize, i64) {
    // SAFETY: plain reads of the traffic cop's globals.
    unsafe { (pg_sys::debug_query_string as usize, pg_sys::GetCurrentStatementStartTimestamp()) }
}

fn at_boundary(b: Boundary) {
    // A nested point before the client's statement has passed its own boundary (while it is
    // parsed, or planned before auth_jwt was loaded into the backend): what runs there runs before
    // any of the statement's work, and its boundary, still to come, carries what the token is
    // then. So it carries as a boundary does, instead of refusing a change the client made in
    // its previous statement.
    let unchanged_since_client = || LEFT.with(|l| l.borrow().as_ref().is_some_and(Versions::current));
    // The client's text at another address (the extended protocol's Bind and Execute): carried
    // as at a boundary only what the client's previous statements changed.
    let b = if b == Boundary::SameText {
        if unchanged_since_client() {
            Boundary::Statement
        } else {
            Boundary::Nested
        }
    } else if b == Boundary::Nested && PASSED.with(|p| p.get()) != Some(client_statement()) {
        if HOOKED_IN.with(|h| h.get()) == Some(client_statement()) {
            // Loaded during this statement: what changed before cannot be told apart; nothing is
            // carried or refused until its boundary (what runs here runs with the token the
            // workers already hold, one the transaction had).
            return;
        }
        if unchanged_since_client() {
            // The token is as the client's previous statement left it: a change since the last
            // carry is the client's own, carried here as at a boundary.
            Boundary::Statement
        } else {
            // Changed since, before this statement's boundary: by a function run while it was
            // parsed or bound. Checked as any nested point.
            Boundary::Nested
        }
    } else {
        b
    };
    if b == Boundary::Statement {
        PASSED.with(|p| p.set(Some(client_statement())));
    }
    if BUSY.with(|b| b.get()) || xact::is_parallel_worker() || !xact::in_progress() {
        return;
    }
    // A backend running what Citus sent it (on a worker) is given its token by the coordinator:
    // it carries nothing on, and checks all the same (any role may claim to be one).
    let internal = citus::internal_backend();
    // Before anything that may open a worker connection: the client would be shown the
    // transaction's SET LOCALs, however that was turned on (a RESET to a connection option skips
    // the check hooks).
    if carried_a_token_in_this_transaction() {
        if let Some(setting) = citus::shows_client_what_workers_get() {
            shown_to_the_client(setting);
        }
    }
    if CARRIED.with(|c| c.borrow().as_ref().is_some_and(still_carried)) {
        return;
    }
    BUSY.with(|b| b.set(true));
    let _done = scopeguard(|| BUSY.with(|b| b.set(false)));
    let token = token_source::for_this_transaction();
    // What the workers hold, as far as this node knows: the last carry while its subtransaction
    // lasts. Once that has ended, workers already in the transaction may still hold a token
    // carried in it (a released savepoint keeps their SET LOCAL; only Citus's replay list for
    // new connections forgets it), so "nothing known" is not "nothing held".
    let before: Option<Option<String>> =
        CARRIED.with(|c| c.borrow().as_ref().filter(|c| current(c)).map(|c| c.token.clone()));
    let maybe_held = carried_a_token_in_this_transaction();
    match b {
        Boundary::Nested | Boundary::SameText => {
            // Never carried mid-statement: the workers must already hold this token.
            if before.as_ref().map_or(token.is_some() || maybe_held, |held| *held != token) {
                changed_within_statement();
            }
            // The same value assigned again: note its sources' versions, for O(1) next time (the
            // carry's transaction and subtransaction stay those it was made in).
            let sources = Versions::now();
            CARRIED.with(|c| {
                if let Some(c) = c.borrow_mut().as_mut().filter(|c| current(c)) {
                    c.sources = sources;
                }
            });
        }
        Boundary::Statement => {
            let held = before.flatten();
            if token.is_some() && token_source::set_by_function_clause() {
                errors::unauthorized(
                    "a token set by a function's SET clause cannot be carried to the Citus workers",
                    "The function's SET clause ends with the call, but on the workers the token would stay in force for the rest of the transaction, for statements the caller runs.",
                    "Set the token with set_config('auth_jwt.token', ..., true) or SET LOCAL, before the call.",
                );
            }
            if let (true, Some(setting)) = (token.is_some(), citus::shows_client_what_workers_get()) {
                shown_to_the_client(setting);
            }
            if !internal && (token.is_some() || held.is_some() || maybe_held) {
                citus::set_local_on_workers(c"auth_jwt.token", token.as_deref().unwrap_or(""));
            }
            if !internal && token.is_some() {
                TOKEN_CARRIED_IN.with(|t| t.set(Some(xact::local_xid())));
            }
            remember(token);
        }
    }
}

fn remember(token: Option<String>) {
    let carried = Carried { sources: Versions::now(), subxact: xact::subxact(), token };
    CARRIED.with(|c| *c.borrow_mut() = Some(carried));
}

fn shown_to_the_client(setting: &str) -> ! {
    if setting == "citus.log_remote_commands" {
        errors::unauthorized(
            "the request's token cannot be carried to the Citus workers while citus.log_remote_commands is on",
            "Citus would show the client every command it sends to the workers, the token's SET LOCAL included, and replays it to each worker it opens later in the transaction.",
            "Turn citus.log_remote_commands off for requests that carry a token.",
        )
    }
    errors::unauthorized(
        "the request's token cannot be carried to the Citus workers while citus.worker_min_messages is below notice",
        "Citus would pass on to the client what the workers log, and a worker logs the statement that carries the token (its parse tree, under debug_print_parse, which Citus sends on).",
        "Set citus.worker_min_messages to notice, its default, for requests that carry a token.",
    )
}

fn changed_within_statement() -> ! {
    errors::unauthorized(
        "the request's token changed within a statement, on Citus",
        "A function this statement called set, cleared or restored the token, then ran a statement of its own. The workers run a statement's work with the token the transaction had when the statement began, and a nested statement with another would see other rows on the coordinator than on the workers.",
        "Set the token in a statement of its own (SELECT set_config('auth_jwt.token', ..., true);) before the statements that use it.",
    )
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
