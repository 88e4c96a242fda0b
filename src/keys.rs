//! The key store: Better Auth's public keys, read from `auth_jwt.jwks_table` with SPI and parsed
//! once per backend.
//!
//! Freshness. Plain INSERT/UPDATE/DELETE fire no relcache invalidation, so each base table under
//! the key relation carries a row-level trigger (see `key_watch`) that calls
//! `CacheInvalidateRelcacheByRelid`; TRUNCATE and DDL invalidate by themselves. Every backend
//! processes the invalidation at its next transaction start (or lock), a hot standby replays it
//! from the commit record, and our relcache callback counts it. The per-transaction cost in the
//! normal case is nothing at all: no query, no clock, one counter compare.
//!
//! The keys are fresh only while the invalidation counter still has the value it had *before*
//! the load that produced them, and every load reads under the latest snapshot (see
//! `snapshot_query`): taken after the counter was read, so it shows every commit whose
//! invalidation was counted. An invalidation processed during the load moves the counter, so
//! the load's result is used once and reloaded on the next call. A load that fails part-way (an
//! error, lock_timeout, statement_timeout, a cancel) stores nothing, so the counter stays ahead
//! and the next call loads again: no error path can mark old keys fresh.
//!
//! What a transaction that began before a key change sees: the same as every other, as soon as
//! its backend processes the invalidation (at its next statement that takes a lock, or at the
//! latest its next transaction): keys are never read with the transaction's own snapshot, not
//! even in parallel mode or under an imported one (`SET TRANSACTION SNAPSHOT`).
//!
//! Two changes send no relcache invalidation of a watched relation, so they are caught apart:
//! renaming or dropping a schema can swap the relation `auth_jwt.jwks_table` names for another
//! (any pg_namespace change counts; they are rare), and a load can read the transaction's own
//! uncommitted key rows before their trigger has fired (an AFTER ROW trigger fires at the end of
//! the statement): if that (sub)transaction then aborts, keys loaded in the transaction are
//! dropped.
//!
//! If a relation under the key table cannot be watched (a base table without the trigger, a
//! trigger not ENABLE ALWAYS, a view over a function, a materialized or foreign table), the keys
//! are re-read in every transaction that verifies, and a WARNING says why and how to fix it
//! (`SELECT auth_jwt.watch_key_table()`). Correct, but one SPI query per transaction.
//!
//! An unknown `kid` triggers at most one reload, and such reloads are rate-limited to one per
//! second per backend, so a flood of random kids cannot become a flood of queries.
//!
//! The read runs as the key relation's owner with settings pinned (see `relation`): the caller
//! needs no privilege on the table, and neither search_path, a temp table named `jwks` nor
//! TimeZone can change what is read. `"privateKey"` is never read.

use crate::errors;
use crate::key_watch;
use crate::relation::{self, Relation, Unresolved};
use crate::settings::{self, str_of};
use crate::snapshot_query::{self, Moved, Snapshot};
use crate::stats;
use auth_jwt_core::{KeyRow, KeySet};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

struct Store {
    /// The `auth_jwt.jwks_table` value the keys were read for.
    table: String,
    keys: Rc<KeySet>,
    /// The invalidation count read before the load's snapshot was taken.
    seen: u64,
    /// The transaction (local xid) of the load.
    loaded_in: u32,
    /// Some relation under the key table is not watched: trusted only in `loaded_in`.
    unwatched: bool,
    last_miss_reload: Option<Instant>,
    /// The reason last warned about, so the WARNING appears once per backend and cause.
    warned: Option<String>,
}

thread_local! {
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
    /// Invalidations of the watched relations processed by this backend. Separate from STORE
    /// because invalidations arrive while STORE is borrowed (during the load's own queries).
    static INVALIDATIONS: Cell<u64> = const { Cell::new(0) };
    /// A load is running: count every relcache invalidation, since the relations it reads are
    /// not known until it has read them.
    static LOADING: Cell<bool> = const { Cell::new(false) };
    static WATCHED_RELIDS: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// The current transaction loaded keys after it had written: they may include its own
    /// uncommitted rows, which an abort (of it or a subtransaction) takes back.
    static LOADED_OWN_WRITES: Cell<bool> = const { Cell::new(false) };
}

pub fn init() {
    // SAFETY: registering callbacks during _PG_init; the callbacks only touch thread-locals.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(on_namespace_change),
            pg_sys::Datum::from(0),
        );
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
}

fn invalidate() {
    INVALIDATIONS.with(|n| n.set(n.get().wrapping_add(1)));
}

/// A schema was renamed, dropped or created: the key table's name may now mean another relation.
#[pg_guard]
unsafe extern "C-unwind" fn on_namespace_change(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    invalidate();
}

/// Keys loaded in a transaction that aborts may include its own uncommitted rows, if it had
/// written anything. (Only then: an abort after a load that read committed rows only must not
/// force a reload, or a flood of failing requests with unknown kids would reload every time.)
fn drop_keys_loaded_after_own_writes() {
    if LOADED_OWN_WRITES.with(Cell::get) {
        invalidate();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            drop_keys_loaded_after_own_writes();
            LOADED_OWN_WRITES.with(|f| f.set(false));
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => LOADED_OWN_WRITES.with(|f| f.set(false)),
        _ => {}
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
        drop_keys_loaded_after_own_writes();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // InvalidOid means "everything" (e.g. after a sinval queue overflow).
    let hit = relid == pg_sys::InvalidOid
        || LOADING.with(Cell::get)
        || WATCHED_RELIDS.with(|w| w.try_borrow().map_or(true, |w| w.contains(&relid)));
    if hit {
        invalidate();
    }
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

/// No invalidation arrived since the cached keys were loaded (cheap: one counter compare; the
/// per-row memo checks the rest itself).
pub fn is_fresh() -> bool {
    let n = INVALIDATIONS.with(Cell::get);
    STORE.with(|s| s.borrow().as_ref().is_some_and(|st| st.seen == n))
}

/// The cached keys are loaded and still valid: no invalidation since the load, the same table,
/// and (for keys trusted only in their transaction) the same transaction. No SPI, no clock.
pub fn fresh() -> bool {
    let table = str_of(&settings::JWKS_TABLE);
    let n = INVALIDATIONS.with(Cell::get);
    STORE.with(|s| match &*s.borrow() {
        None => false,
        Some(st) => st.seen == n && st.table == table && (!st.unwatched || st.loaded_in == local_xid()),
    })
}

/// The current keys, reloaded first if the table changed (or may have).
pub fn current() -> Rc<KeySet> {
    if !fresh() {
        load(str_of(&settings::JWKS_TABLE));
    }
    STORE.with(|s| s.borrow().as_ref().map(|st| st.keys.clone()).unwrap_or_default())
}

/// A token names `kid`, which the cached keys do not have: reload once (rate-limited) and say
/// whether it is there now.
pub fn reload_for_unknown_kid(kid: &str) -> Option<Rc<KeySet>> {
    let allowed = STORE.with(|s| {
        s.borrow().as_ref().is_none_or(|st| st.last_miss_reload.is_none_or(|t| t.elapsed() >= MISS_RELOAD_INTERVAL))
    });
    if !allowed {
        return None;
    }
    stats::unknown_kid_reload();
    // Stamp the attempt first: a reload that errors still counts against the rate limit.
    STORE.with(|s| {
        if let Some(st) = s.borrow_mut().as_mut() {
            st.last_miss_reload = Some(Instant::now());
        }
    });
    load(str_of(&settings::JWKS_TABLE));
    STORE.with(|s| {
        let s = s.borrow();
        let st = s.as_ref()?;
        st.keys.contains_kid(kid).then(|| st.keys.clone())
    })
}

/// Resolve and lock `auth_jwt.jwks_table`, or raise an error that says how to fix it.
pub fn resolve(table: &str) -> Relation {
    match relation::resolve(table) {
        Ok(rel) => rel,
        Err(Unresolved::Unqualified(why)) => errors::configured_relation(
            PgSqlErrorCode::ERRCODE_INVALID_NAME,
            format!(
                "auth_jwt.jwks_table must name a table in a regular schema: \"{}\"",
                auth_jwt_core::error::printable(table, 128)
            ),
            why.into(),
            "Use schema.table, e.g. ALTER DATABASE mydb SET auth_jwt.jwks_table = 'public.jwks';",
        ),
        Err(Unresolved::Missing) => errors::configured_relation(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("auth_jwt key table \"{}\" does not exist", auth_jwt_core::error::printable(table, 128)),
            "Better Auth's public keys are read from the relation named by auth_jwt.jwks_table.".into(),
            "Enable Better Auth's jwt() plugin and run its migrations (they create the jwks table), or point auth_jwt.jwks_table at the table or a view of it.",
        ),
    }
}

/// Which of the optional Better Auth columns the relation has.
struct Columns {
    created_at: bool,
    expires_at: bool,
    alg: bool,
    crv: bool,
}

fn columns(rel: &Relation, snapshot: &Snapshot) -> Columns {
    let names: Vec<String> = relation::columns(rel, snapshot).into_iter().map(|c| c.name).collect();
    for required in ["id", "publicKey"] {
        if !names.iter().any(|n| n == required) {
            errors::configured_relation(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("auth_jwt key table {} has no column \"{required}\"", rel.qualified),
                "The key table needs the columns id and \"publicKey\" (and uses \"expiresAt\", \"alg\", \"crv\" when present), as Better Auth 1.7 creates them.".into(),
                "If Better Auth's jwks table or its columns are renamed, point auth_jwt.jwks_table at a view that exposes these names.",
            );
        }
    }
    let has = |n: &str| names.iter().any(|c| c == n);
    Columns { created_at: has("createdAt"), expires_at: has("expiresAt"), alg: has("alg"), crv: has("crv") }
}

/// One row of the key table, as read.
pub struct Row {
    pub id: Option<String>,
    pub public_key: Option<String>,
    /// Unix seconds (fractional), when the relation has the column.
    pub created_at: Option<f64>,
    pub expires_at: Option<f64>,
    pub alg: Option<String>,
    pub crv: Option<String>,
}

impl Row {
    pub fn key_row(&self) -> Option<KeyRow<'_>> {
        Some(KeyRow {
            id: self.id.as_deref()?,
            public_key: self.public_key.as_deref().unwrap_or(""),
            // Floor: a key expiring at 12:00:00.5 is expired at 12:00:00 + grace.
            expires_at: self.expires_at.map(|e| e.floor() as i64),
            alg: self.alg.as_deref(),
            crv: self.crv.as_deref(),
        })
    }
}

/// Read every row of the key relation (never `"privateKey"`), unless its name no longer means it.
pub fn read_rows(rel: &Relation, snapshot: &Snapshot) -> Result<Vec<Row>, Moved> {
    let cols = columns(rel, snapshot);
    let epoch = |present: bool, col: &str| {
        if present {
            relation::epoch_sql(col)
        } else {
            "NULL::pg_catalog.float8".to_owned()
        }
    };
    let q = format!(
        "SELECT id::pg_catalog.text, \"publicKey\"::pg_catalog.text, {}, {}, {}, {} FROM {}",
        epoch(cols.created_at, "createdAt"),
        epoch(cols.expires_at, "expiresAt"),
        if cols.alg { "alg::pg_catalog.text" } else { "NULL::pg_catalog.text" },
        if cols.crv { "crv::pg_catalog.text" } else { "NULL::pg_catalog.text" },
        rel.qualified
    );
    relation::as_owner(rel.owner, || {
        snapshot_query::select_from(&rel.locked, snapshot, &q, &[], |r| Row {
            id: r.get(1),
            public_key: r.get(2),
            created_at: r.get(3),
            expires_at: r.get(4),
            alg: r.get(5),
            crv: r.get(6),
        })
    })
}

/// The rows of the configured key relation, read as a load reads them (for diagnostics).
pub fn read_current_rows() -> Vec<Row> {
    let table = str_of(&settings::JWKS_TABLE);
    relation::retrying(table, || {
        let rel = resolve(table);
        let snapshot = Snapshot::latest();
        relation::with_pinned_settings(|| read_rows(&rel, &snapshot))
    })
}

/// Resets LOADING however the load ends (an ERROR unwinds through here as a Rust panic).
struct Loading;

impl Loading {
    fn start() -> Loading {
        LOADING.with(|l| l.set(true));
        Loading
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        LOADING.with(|l| l.set(false));
    }
}

/// Read the key table and store what was read. Nothing is stored unless every step succeeds.
fn load(table: &str) {
    stats::key_load();
    // Order matters: the count before the snapshot, so that every invalidation it includes is
    // for a commit the snapshot shows; later ones move the count and make this load stale.
    let seen = INVALIDATIONS.with(Cell::get);
    let (rel, watch, rows) = {
        let _loading = Loading::start();
        relation::retrying(table, || {
            // Locked before the snapshot is taken, and described after: see `relation`.
            let rel = resolve(table);
            let snapshot = Snapshot::latest();
            relation::with_pinned_settings(|| {
                let watch = key_watch::status(&rel, &snapshot);
                let rows = read_rows(&rel, &snapshot)?;
                Ok((rel, watch, rows))
            })
        })
    };
    WATCHED_RELIDS.with(|w| *w.borrow_mut() = watch.relids);
    // SAFETY: a plain read of the transaction state.
    if unsafe { pg_sys::GetTopTransactionIdIfAny() } != pg_sys::InvalidTransactionId {
        LOADED_OWN_WRITES.with(|f| f.set(true));
    }
    let keys = KeySet::from_rows(rows.iter().filter_map(Row::key_row));
    let problem = watch.problems.first().cloned();

    let warn = STORE.with(|s| {
        let mut s = s.borrow_mut();
        let changed = s.as_ref().is_none_or(|st| *st.keys != keys);
        if changed {
            crate::key_source::changed();
        }
        let old = s.take();
        let warned = old.as_ref().filter(|st| st.table == table).and_then(|st| st.warned.clone());
        let warn = problem.is_some() && problem != warned;
        *s = Some(Store {
            table: table.to_owned(),
            keys: match old.as_ref() {
                Some(st) if !changed => st.keys.clone(),
                _ => Rc::new(keys),
            },
            seen,
            loaded_in: local_xid(),
            unwatched: problem.is_some(),
            last_miss_reload: old.and_then(|st| st.last_miss_reload),
            warned: problem.clone().or(warned),
        });
        warn
    });
    if let (true, Some(why)) = (warn, problem) {
        pgrx::warning!(
            "auth_jwt: key table {} is not watched for changes ({why}), so keys are re-read in every transaction; run SELECT auth_jwt.watch_key_table(); as a superuser",
            rel.qualified
        );
    }
}
