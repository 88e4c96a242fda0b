//! Whether what a cache holds is still valid: the one home of every PostgreSQL callback auth_jwt
//! registers, and of the counters the caches compare.
//!
//! - Relations a cache is filled from (`Watched`): a relcache invalidation of one of them, or of
//!   anything while it is being read, or of everything (a sinval overflow), moves its count. So
//!   does any schema change (pg_namespace): it can make the configured name mean another relation.
//!   Key loads that read this transaction's own uncommitted rows are also invalidated when the
//!   transaction or a subtransaction aborts. A cache is valid while the count it read *before* its
//!   load is unchanged.
//! - Answers remembered within a transaction (`Stamp`): valid in the same transaction (local xid),
//!   with no subtransaction rolled back since (what it saw may be gone), under the same settings.
//!
//! - Statement boundaries (`Boundary`), for the modules above that act on them (`token_forward`
//!   on Citus): the executor hooks count how deep in executor calls a statement is.
//! - Statement texts: tokens hidden from what `pg_stat_activity` and later hooks see.
//!
//! The cache callbacks only touch thread-local counters; the caches that compare them live above.

use crate::settings;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

/// The relations a cache is filled from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Every relation a key load reads under `auth_jwt.jwks_table` (see `key_watch`).
    KeyTable = 0,
    /// The session relation (`auth_jwt.session_table`).
    SessionTable = 1,
}

const ALL: [Watched; 2] = [Watched::KeyTable, Watched::SessionTable];

thread_local! {
    static INVALIDATIONS: [Cell<u64>; 2] = const { [Cell::new(0), Cell::new(0)] };
    static RELIDS: [RefCell<Vec<pg_sys::Oid>>; 2] = const { [RefCell::new(Vec::new()), RefCell::new(Vec::new())] };
    /// A load is running: every relcache invalidation counts, since the relations it reads are
    /// not known until it has read them.
    static READING: [Cell<bool>; 2] = const { [Cell::new(false), Cell::new(false)] };
    static NAMESPACE_CHANGES: Cell<u64> = const { Cell::new(0) };
    /// Subtransactions rolled back in this backend.
    static ABORTS: Cell<u64> = const { Cell::new(0) };
    /// This transaction read a watched relation after it had written: what it read may include
    /// its own uncommitted rows, which an abort (of it or a subtransaction) takes back.
    static READ_OWN_WRITES: [Cell<bool>; 2] = const { [Cell::new(false), Cell::new(false)] };
    /// The transaction (local id) whose client has just sent a `ROLLBACK TO SAVEPOINT` that
    /// returned: its transaction command, ending, rolls the settings back and begins the
    /// savepoint again.
    static ROLLED_BACK_TO: Cell<Option<u32>> = const { Cell::new(None) };
}

pub fn init() {
    // SAFETY: registering callbacks during _PG_init; they only touch thread-locals.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(on_namespace_change),
            pg_sys::Datum::from(0),
        );
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_POST_PARSE_ANALYZE = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(post_parse_analyze);
    }
}

fn bump(w: Watched) {
    INVALIDATIONS.with(|n| n[w as usize].set(n[w as usize].get().wrapping_add(1)));
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    for w in ALL {
        // InvalidOid means "everything" (e.g. after a sinval queue overflow).
        let hit = relid == pg_sys::InvalidOid
            || READING.with(|r| r[w as usize].get())
            || RELIDS.with(|r| r[w as usize].try_borrow().map_or(true, |ids| ids.contains(&relid)));
        if hit {
            bump(w);
        }
    }
    if let Some(f) = ON_MARKER.get() {
        f(relid);
    }
}

static ON_MARKER: std::sync::OnceLock<fn(pg_sys::Oid)> = std::sync::OnceLock::new();

/// `f(relid)` runs for every relcache invalidation this backend processes, after the counts have
/// moved: the receiving side of `send_marker`. It must not raise.
pub fn on_marker(f: fn(pg_sys::Oid)) {
    let _ = ON_MARKER.set(f);
}

/// Tell every backend of this database, when this transaction commits (a hot standby when it
/// replays the commit; this backend at its next command), that `marker` changed: a relcache
/// invalidation of a number in the relation-oid space, which names one entry of a cache rather
/// than a relation (see `on_marker`). For PostgreSQL it is the invalidation of a relation that
/// does not exist, or, if a relation has that oid, one more rebuild of its cache entry. Built
/// from a copy of `template`'s pg_class row, whose oid is all `CacheInvalidateRelcacheByTuple`
/// reads (with `relisshared`, cleared).
pub fn send_marker(template: pg_sys::Oid, marker: u32) {
    // SAFETY: a palloc'd copy of a pg_class row from the syscache, checked non-NULL; GETSTRUCT of
    // a pg_class row is a FormData_pg_class at t_hoff; the copy is freed after the call, which
    // only reads it.
    unsafe {
        let key = pg_sys::Datum::from(template);
        let zero = pg_sys::Datum::from(0usize);
        let row = pg_sys::SearchSysCacheCopy(pg_sys::SysCacheIdentifier::RELOID as i32, key, zero, zero, zero);
        if row.is_null() {
            pgrx::error!("cache lookup failed for relation {template:?}");
        }
        let header = (*row).t_data;
        let class = (header as *mut u8).add(usize::from((*header).t_hoff)) as *mut pg_sys::FormData_pg_class;
        (*class).oid = pg_sys::Oid::from(marker);
        (*class).relisshared = false;
        pg_sys::CacheInvalidateRelcacheByTuple(row);
        pg_sys::heap_freetuple(row);
    }
}

/// A schema was renamed, dropped or created: a configured name may now mean another relation.
#[pg_guard]
unsafe extern "C-unwind" fn on_namespace_change(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    NAMESPACE_CHANGES.with(|n| n.set(n.get().wrapping_add(1)));
    ALL.into_iter().for_each(bump);
}

/// What was read after this transaction's own writes is dropped when they are rolled back.
/// (Only then: an abort after a load that read committed rows only must not force a reload, or a
/// flood of failing requests with unknown kids would reload every time.)
fn drop_reads_of_own_writes() {
    for w in ALL {
        if READ_OWN_WRITES.with(|r| r[w as usize].get()) {
            bump(w);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    // A prepared transaction may yet be rolled back, by another backend, and that sends no
    // invalidation: what it read of its own writes goes now.
    if matches!(event, XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE) {
        drop_reads_of_own_writes();
    }
    ROLLED_BACK_TO.with(|r| r.set(None));
    if matches!(
        event,
        XACT_EVENT_ABORT
            | XACT_EVENT_PARALLEL_ABORT
            | XACT_EVENT_COMMIT
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PREPARE
    ) {
        READ_OWN_WRITES.with(|r| r.iter().for_each(|f| f.set(false)));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        ABORTS.with(|a| a.set(a.get().wrapping_add(1)));
        drop_reads_of_own_writes();
    }
    // The savepoint a client's ROLLBACK TO named begins again, its settings rolled back to what
    // they were when it began (the client's, as its earlier statements left them): that is where
    // the client's step ends. Nothing runs between the statement's return and this.
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_START_SUB
        && ROLLED_BACK_TO.with(Cell::take) == Some(local_xid())
        && DEPTH.with(Cell::get) == 0
    {
        after_statement();
    }
}

/// Invalidations of `w` processed by this backend; a cache loaded from `w` is valid while this
/// still has the value it had before the load.
pub fn invalidations(w: Watched) -> u64 {
    INVALIDATIONS.with(|n| n[w as usize].get())
}

/// The relations a load of `w` read: an invalidation of any of them makes it stale.
pub fn watch(w: Watched, relids: Vec<pg_sys::Oid>) {
    RELIDS.with(|r| *r[w as usize].borrow_mut() = relids);
}

/// While it lives, every relcache invalidation counts for `w` (see `READING`). Reset however the
/// read ends (an ERROR unwinds through here as a Rust panic), to what it was: readings nest.
pub struct Reading(Watched, bool);

impl Reading {
    pub fn start(w: Watched) -> Reading {
        Reading(w, READING.with(|r| r[w as usize].replace(true)))
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        READING.with(|r| r[self.0 as usize].set(self.1));
    }
}

/// A read of `w` happened in a transaction that has written: an abort must drop what it read.
pub fn note_read(w: Watched) {
    // SAFETY: a plain read of the transaction state.
    if unsafe { pg_sys::GetTopTransactionIdIfAny() } != pg_sys::InvalidTransactionId {
        READ_OWN_WRITES.with(|r| r[w as usize].set(true));
    }
}

/// Schema changes this backend has processed (any pg_namespace row).
pub fn namespace_changes() -> u64 {
    NAMESPACE_CHANGES.with(Cell::get)
}

/// This transaction's local id; increments for every transaction of the backend.
pub fn local_xid() -> u32 {
    // SAFETY: MyProc is set for any backend that can run SQL.
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
        return (*pg_sys::MyProc).lxid;
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        return (*pg_sys::MyProc).vxid.lxid;
    }
}

/// When an answer was obtained, for answers kept only within a transaction: it is still valid in
/// the same transaction, with no subtransaction rolled back since, under the same settings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    lxid: u32,
    aborts: u64,
    settings: u64,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp { lxid: local_xid(), aborts: ABORTS.with(Cell::get), settings: settings::generation() }
    }

    /// Compared field by field, cheapest first: this runs on every row of a policy.
    pub fn is_current(&self) -> bool {
        self.lxid == local_xid() && self.settings == settings::generation() && self.aborts == ABORTS.with(Cell::get)
    }
}

/// Process the invalidation messages other backends have sent, now (as taking a lock would).
pub fn accept_invalidations() {
    // SAFETY: what LockRelationOid does after acquiring a lock; callbacks only bump counters.
    unsafe { pg_sys::AcceptInvalidationMessages() }
}

/// A transaction is in progress and can run statements (not aborted, not committing).
pub fn in_progress() -> bool {
    // SAFETY: plain reads of the transaction state.
    unsafe { pg_sys::IsTransactionState() && !pg_sys::IsAbortedTransactionBlockState() }
}

/// The (sub)transaction the current statement runs in: 1 at the top level of a transaction.
pub fn subxact() -> u32 {
    // SAFETY: a plain read of the transaction state.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

/// That (sub)transaction of the current transaction has not ended (a savepoint released or
/// rolled back, a PL/pgSQL block with an EXCEPTION clause left).
pub fn subxact_active(id: u32) -> bool {
    // SAFETY: a plain read of the transaction state.
    unsafe { pg_sys::SubTransactionIsActive(id) }
}

/// Where a statement boundary is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Boundary {
    /// A statement the client sent, before it is planned, started, run, or (a utility statement)
    /// processed: no planning, execution, utility statement or trigger encloses it.
    Statement,
    /// Anything inside one: a function's statement, a procedure's or DO block's, a trigger's
    /// (deferred ones fire at COMMIT, outside any statement), Citus's subplans.
    Nested,
    /// Outside any planning, execution or utility statement, with the client's text at another
    /// address (see `boundary`).
    SameText,
}

static AT_BOUNDARY: std::sync::OnceLock<fn(Boundary)> = std::sync::OnceLock::new();
static AFTER_STATEMENT: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();
static mut PREV_PLANNER: pg_sys::planner_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_RUN: pg_sys::ExecutorRun_hook_type = None;
static mut PREV_EXECUTOR_FINISH: pg_sys::ExecutorFinish_hook_type = None;
static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;
static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_POST_PARSE_ANALYZE: pg_sys::post_parse_analyze_hook_type = None;

thread_local! {
    /// Planner and executor calls (plan, start, run, finish, end) and CALLs in progress.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Call `f` at every statement boundary: before the planner plans a statement and the executor
/// starts it, before the executor runs one that no other call encloses (a portal's FETCH or
/// Execute), and before each utility statement but transaction control and SET/SHOW; saying
/// whether the statement is the client's (`Boundary::Statement`) or nested in another's planning,
/// execution or utility processing, or in a trigger. The planner, executor and utility hooks
/// count the nesting (an ERROR inside restores the count). Ahead of the hooks of libraries loaded
/// before this one: Citus, which must be loaded first, opens its connections to the workers from
/// its own planner, ExecutorStart, executor nodes and ProcessUtility, and evaluates a
/// modification's function calls on the coordinator while the executor starts.
pub fn at_each_statement_boundary(f: fn(Boundary), after: fn()) {
    let _ = AFTER_STATEMENT.set(after);
    if AT_BOUNDARY.set(f).is_ok() {
        // SAFETY: hooks are chained once per process, while the library loads.
        unsafe {
            PREV_PLANNER = pg_sys::planner_hook;
            pg_sys::planner_hook = Some(planner);
            PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
            pg_sys::ExecutorStart_hook = Some(executor_start);
            PREV_EXECUTOR_RUN = pg_sys::ExecutorRun_hook;
            pg_sys::ExecutorRun_hook = Some(executor_run);
            PREV_EXECUTOR_FINISH = pg_sys::ExecutorFinish_hook;
            pg_sys::ExecutorFinish_hook = Some(executor_finish);
            PREV_EXECUTOR_END = pg_sys::ExecutorEnd_hook;
            pg_sys::ExecutorEnd_hook = Some(executor_end);
        }
    }
}

/// A boundary of the client's own statement: no planning, execution or utility statement encloses
/// this point, and the statement's text is the one the client sent (`debug_query_string`, the
/// same pointer: a function's statements, a domain CHECK's while a statement is parsed or bound,
/// a trigger's at COMMIT, each carry a text of their own, whoever calls them).
///
/// The extended protocol's Execute runs a portal under a copy of its text (PostgreSQL 17 and 18),
/// and Bind starts it under the prepared statement's: the portal being started or run with the
/// client's text, at another address, is `Boundary::SameText`, the client's by every sign but one
/// that a function could also show (a cursor it opens with the running statement's text).
fn boundary(text: *const std::ffi::c_char) -> Boundary {
    if text.is_null() || DEPTH.with(Cell::get) != 0 {
        return Boundary::Nested;
    }
    // SAFETY: the global the traffic cop sets for each client statement: NULL or a NUL-terminated
    // string, as `text` is.
    unsafe {
        let client = pg_sys::debug_query_string;
        let portal = pg_sys::ActivePortal;
        if std::ptr::eq(text, client) {
            Boundary::Statement
        } else if !client.is_null()
            && !portal.is_null()
            && std::ptr::eq(text, (*portal).sourceText)
            && std::ffi::CStr::from_ptr(text) == std::ffi::CStr::from_ptr(client)
        {
            Boundary::SameText
        } else {
            Boundary::Nested
        }
    }
}

/// A boundary only where no planning, execution or procedure encloses this point (planning a
/// client's statement, running a portal).
fn at_statement_boundary(text: *const std::ffi::c_char) {
    let b = boundary(text);
    if b != Boundary::Nested {
        at_boundary(b);
    }
}

/// The client's statement (or a step of it: a portal's run, its end) has just returned.
fn after_statement() {
    if let Some(f) = AFTER_STATEMENT.get() {
        f();
    }
}

fn at_boundary(b: Boundary) {
    if let Some(f) = AT_BOUNDARY.get() {
        f(b);
    }
}

unsafe extern "C-unwind" {
    /// elog.c's PG_RE_THROW (pgrx's bindings leave it out): the current error, to the handler
    /// that `PG_exception_stack` names.
    fn pg_re_throw() -> !;
}

/// Run the next hook as one level of nesting, in PostgreSQL's own PG_TRY / PG_RE_THROW: an
/// ERROR inside restores the count and goes on untouched, every field of it (constraint and table
/// names, position, context) as the next catcher expects. Nothing with a destructor lives across
/// the jump.
fn nested<R: Copy>(next: impl FnOnce() -> R) -> R {
    DEPTH.with(|d| d.set(d.get() + 1));
    let mut out = std::mem::MaybeUninit::<R>::uninit();
    // SAFETY: as PG_TRY: the exception stack points at this jump buffer while `next` runs and is
    // restored, with the error context stack, on both ways out; pg_re_throw jumps to the outer
    // handler with the error state as it was raised. `out` is written before the only 0 return.
    unsafe {
        let prev_exception_stack = pg_sys::PG_exception_stack;
        let prev_error_context = pg_sys::error_context_stack;
        let jumped = cee_scape::call_with_sigsetjmp(false, |buffer| {
            pg_sys::PG_exception_stack = buffer as *const _ as *mut _;
            out.write(next());
            0
        });
        pg_sys::PG_exception_stack = prev_exception_stack;
        pg_sys::error_context_stack = prev_error_context;
        DEPTH.with(|d| d.set(d.get() - 1));
        if jumped != 0 {
            pg_re_throw();
        }
        out.assume_init()
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: i32,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    at_statement_boundary(query_string);
    // SAFETY: the hook chain as PostgreSQL defines it.
    nested(|| unsafe {
        match PREV_PLANNER {
            Some(prev) => prev(parse, query_string, cursor_options, bound_params),
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query: *mut pg_sys::QueryDesc, eflags: i32) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 == 0 {
        // SAFETY: the QueryDesc the executor is given.
        at_boundary(boundary(unsafe { (*query).sourceText }));
    }
    // SAFETY: the hook chain as PostgreSQL defines it.
    nested(|| unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => prev(query, eflags),
            None => pg_sys::standard_ExecutorStart(query, eflags),
        }
    })
}

#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
#[pg_guard]
unsafe extern "C-unwind" fn executor_run(
    query: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    // SAFETY: the QueryDesc the executor is given.
    let b = boundary(unsafe { (*query).sourceText });
    // Nested runs are checked too: a function's FETCH from a cursor runs the cursor's query with
    // no executor start.
    at_boundary(b);
    // SAFETY: the hook chain as PostgreSQL defines it.
    nested(|| unsafe {
        match PREV_EXECUTOR_RUN {
            Some(prev) => prev(query, direction, count, execute_once),
            None => pg_sys::standard_ExecutorRun(query, direction, count, execute_once),
        }
    });
    if b != Boundary::Nested {
        after_statement();
    }
}

#[cfg(feature = "pg18")]
#[pg_guard]
unsafe extern "C-unwind" fn executor_run(
    query: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
) {
    // SAFETY: the QueryDesc the executor is given.
    let b = boundary(unsafe { (*query).sourceText });
    at_boundary(b);
    // SAFETY: the hook chain as PostgreSQL defines it.
    nested(|| unsafe {
        match PREV_EXECUTOR_RUN {
            Some(prev) => prev(query, direction, count),
            None => pg_sys::standard_ExecutorRun(query, direction, count),
        }
    });
    if b != Boundary::Nested {
        after_statement();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_finish(query: *mut pg_sys::QueryDesc) {
    // SAFETY: the hook chain as PostgreSQL defines it.
    nested(|| unsafe {
        match PREV_EXECUTOR_FINISH {
            Some(prev) => prev(query),
            None => pg_sys::standard_ExecutorFinish(query),
        }
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_end(query: *mut pg_sys::QueryDesc) {
    // No "client step returned" here: an end is not checked on the way in (a function can end a
    // cursor it opened with the client's text), and runs nothing of the client's that could
    // change the token after its run returned.
    // SAFETY: the hook chain as PostgreSQL defines it.
    nested(|| unsafe {
        match PREV_EXECUTOR_END {
            Some(prev) => prev(query),
            None => pg_sys::standard_ExecutorEnd(query),
        }
    })
}

/// Installed in every backend (from `init`): a client's query string that holds tokens (a
/// multi-statement string that sets `request.headers` and `auth_jwt.token` with literals, the one
/// Citus sends a worker to begin a transaction and carry the token) shows in `pg_stat_activity`
/// with them hidden from its first statement's analysis on, not only once the statement that
/// assigns one runs; every backend of the same role can read it there.
#[pg_guard]
unsafe extern "C-unwind" fn post_parse_analyze(
    pstate: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
    jstate: *mut pg_sys::JumbleState,
) {
    // SAFETY: the hook chain as PostgreSQL defines it.
    unsafe {
        if let Some(prev) = PREV_POST_PARSE_ANALYZE {
            prev(pstate, query, jstate);
        }
    }
    // SAFETY: only a statement of the client's own text (not a function's) is looked at.
    if !pstate.is_null() && std::ptr::eq(unsafe { (*pstate).p_sourcetext }, unsafe { pg_sys::debug_query_string }) {
        settings::show_statement_hidden(None);
    }
}

/// Installed in every backend (from `init`): the statement text of `SET auth_jwt.token` passes
/// down the hook chain with the token hidden, so that a library whose hook runs after ours
/// (`pg_stat_statements`, loaded before auth_jwt) never records it; and `at_boundary` runs before
/// the utility statements that move rows.
#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    use pg_sys::NodeTag::*;
    // SAFETY: a planned utility statement, as ProcessUtility receives it; nodes read only.
    let rollback_to = unsafe {
        let stmt = (*pstmt).utilityStmt;
        (*stmt).type_ == T_TransactionStmt
            && (*(stmt as *mut pg_sys::TransactionStmt)).kind == pg_sys::TransactionStmtKind::TRANS_STMT_ROLLBACK_TO
    };
    // SAFETY: as above.
    let hidden = unsafe {
        let stmt = (*pstmt).utilityStmt;
        match (*stmt).type_ {
            T_VariableSetStmt => token_set(stmt as *mut pg_sys::VariableSetStmt, query_string),
            T_VariableShowStmt => None,
            // COMMIT fires deferred triggers (a foreign key's checks among them) after this
            // returns: the client's last change of the token is carried before, as at any
            // statement; nothing before BEGIN, ROLLBACK and the like.
            T_TransactionStmt
                if !matches!(
                    (*(stmt as *mut pg_sys::TransactionStmt)).kind,
                    pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT | pg_sys::TransactionStmtKind::TRANS_STMT_PREPARE
                ) =>
            {
                None
            }
            _ => {
                at_boundary(boundary(query_string));
                None
            }
        }
    };
    // Where boundaries count, what a utility statement runs is nested in it: a DO block's or a
    // procedure's statements, COPY's triggers and defaults, index expressions.
    let call = AT_BOUNDARY.get().is_some();
    let client = boundary(query_string) != Boundary::Nested;
    // SAFETY: pstrdup copies into the current memory context, which outlives the call.
    let query_string = hidden.map_or(query_string, |h| unsafe { pg_sys::pstrdup(h.as_ptr()) });
    // SAFETY: the hook chain as PostgreSQL defines it.
    let next = || unsafe {
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    };
    if call {
        nested(next);
        if client {
            after_statement();
            if rollback_to {
                ROLLED_BACK_TO.with(|r| r.set(Some(local_xid())));
            }
        }
    } else {
        next()
    }
}

static ON_TOKEN_SET: std::sync::OnceLock<fn(pg_sys::VariableSetKind::Type, bool, Boundary) -> bool> =
    std::sync::OnceLock::new();

/// `f(kind, is_local, where)` runs before a `SET`, `SET LOCAL` or `RESET` of `auth_jwt.token` or
/// `request.headers`, and before `RESET ALL`; it may raise, and says whether another library will send the statement on
/// by its text and must keep the token in it (only the carry's own `SET LOCAL`, which Citus
/// propagates so).
pub fn on_token_set(f: fn(pg_sys::VariableSetKind::Type, bool, Boundary) -> bool) {
    let _ = ON_TOKEN_SET.set(f);
}

/// A `SET` of the request's token or headers: what `on_token_set` says of it, and for
/// `SET [LOCAL] auth_jwt.token TO '<token>'` not sent on, the text with the token hidden, of the
/// same length (libraries cut the statement out of a multi-statement text by offset).
unsafe fn token_set(
    stmt: *mut pg_sys::VariableSetStmt,
    query_string: *const std::ffi::c_char,
) -> Option<std::ffi::CString> {
    // SAFETY: the caller's statement node; ExtractSetVariableArgs returns a palloc'd string or NULL.
    unsafe {
        if (*stmt).kind == pg_sys::VariableSetKind::VAR_RESET_ALL {
            if let Some(f) = ON_TOKEN_SET.get() {
                f((*stmt).kind, (*stmt).is_local, boundary(query_string));
            }
            return None;
        }
        if (*stmt).name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr((*stmt).name).to_bytes();
        let token = name.eq_ignore_ascii_case(b"auth_jwt.token");
        if !token && !name.eq_ignore_ascii_case(b"request.headers") {
            return None;
        }
        let sent_on = ON_TOKEN_SET.get().is_some_and(|f| f((*stmt).kind, (*stmt).is_local, boundary(query_string)));
        if !token || sent_on || (*stmt).kind != pg_sys::VariableSetKind::VAR_SET_VALUE || query_string.is_null() {
            return None;
        }
        let value = pg_sys::ExtractSetVariableArgs(stmt);
        if value.is_null() {
            return None;
        }
        let text = std::ffi::CStr::from_ptr(query_string).to_bytes();
        let hidden = auth_jwt_core::token::hide(text, std::ffi::CStr::from_ptr(value).to_bytes(), true)?;
        std::ffi::CString::new(hidden).ok()
    }
}

/// This backend is a parallel worker (it has the leader's settings, not its state or caches).
pub fn is_parallel_worker() -> bool {
    // SAFETY: a plain global of parallel.c.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}
