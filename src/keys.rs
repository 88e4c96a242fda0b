//! The key store: Better Auth's public keys, read from `auth_jwt.jwks_table` with SPI and parsed
//! once per backend.
//!
//! Freshness. Plain INSERT/UPDATE/DELETE fire no relcache invalidation, so the key table carries
//! a statement-level trigger (`auth_jwt_key_change`, see `key_watch`) that calls
//! `CacheInvalidateRelcacheByRelid` on every change. The invalidation is sent at commit (and
//! applied locally at the next command), every backend applies it when its next transaction
//! starts, and a hot standby replays it from the commit record. Our relcache callback only sets
//! a flag, so the per-transaction cost in the normal case is nothing at all: no query, no clock.
//! The next verification after the flag is set reloads the table once.
//!
//! If a base relation of the key table lacks the trigger (the table was created after the
//! extension, or the setting points somewhere new), we fall back to re-reading the keys in every
//! transaction that verifies a cache-missed or cached token (one SPI query per transaction), and
//! warn once per backend with the fix: `SELECT auth_jwt.watch_key_table()`. Correct, but slower.
//!
//! An unknown `kid` triggers at most one reload, and such reloads are rate-limited to one per
//! second per backend, so a flood of random kids cannot become a flood of queries.
//!
//! The read runs as the key relation's owner with `search_path = pg_catalog, pg_temp`: the caller
//! needs no privilege on the table, and neither search_path nor a temp table named `jwks` can
//! redirect it. Owner rather than superuser, so a view's functions never run with more rights
//! than the view's owner already has. `"privateKey"` is never read.

use crate::errors;
use crate::settings::{self, str_of};
use crate::stats;
use auth_jwt_core::{KeyRow, KeySet};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Name of the invalidation trigger on each base table of the key table.
pub const TRIGGER_NAME: &str = "auth_jwt_key_change";

const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

struct Store {
    /// The `auth_jwt.jwks_table` value the keys were read for.
    table: String,
    keys: Rc<KeySet>,
    /// Every base relation carries the invalidation trigger.
    watched: bool,
    /// Transaction (local xid) of the last load, for the unwatched fallback.
    loaded_in: u32,
    last_miss_reload: Option<Instant>,
    warned_unwatched: bool,
}

thread_local! {
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
    /// Set by the relcache callback; separate from STORE because invalidations can arrive while
    /// STORE is borrowed (during the load's own queries).
    static STALE: Cell<bool> = const { Cell::new(true) };
    static WATCHED_RELIDS: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// Bumped whenever a load yields a different key set; caches of verified tokens compare it.
    static GENERATION: Cell<u64> = const { Cell::new(1) };
}

pub fn init() {
    // SAFETY: registering a callback during _PG_init; the callback only touches thread-locals.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // InvalidOid means "everything" (e.g. after a sinval queue overflow).
    let hit =
        relid == pg_sys::InvalidOid || WATCHED_RELIDS.with(|w| w.try_borrow().map_or(true, |w| w.contains(&relid)));
    if hit {
        STALE.with(|s| s.set(true));
    }
}

/// The key-set generation: differs after any load that changed which keys exist or how.
pub fn generation() -> u64 {
    GENERATION.with(|g| g.get())
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

/// The cached keys are loaded and still valid: no invalidation pending, the same table, and
/// (for an unwatched table) already read in this transaction. Cheap: no SPI, no clock.
pub fn fresh() -> bool {
    let table = str_of(&settings::JWKS_TABLE);
    STORE.with(|s| match &*s.borrow() {
        None => false,
        Some(st) => !STALE.with(|f| f.get()) && st.table == table && (st.watched || st.loaded_in == local_xid()),
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
    load(str_of(&settings::JWKS_TABLE));
    STORE.with(|s| {
        let mut s = s.borrow_mut();
        let st = s.as_mut()?;
        st.last_miss_reload = Some(Instant::now());
        st.keys.contains_kid(kid).then(|| st.keys.clone())
    })
}

/// The first column of the first row of a read-only query. Never `Spi::get_one*`: those mark
/// the transaction as writing, which assigns an XID, and that fails in a parallel worker and on
/// a hot standby, where verification must work too.
pub fn select_one<A: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Option<A> {
    Spi::connect(|c| c.select(query, Some(1), args)?.first().get_one::<A>()).ok().flatten()
}

/// The key relation, resolved from the setting.
pub struct Relation {
    pub oid: pg_sys::Oid,
    /// `schema.table`, each part quoted as needed.
    pub qualified: String,
    pub owner: pg_sys::Oid,
}

/// Parse and resolve `auth_jwt.jwks_table`: it must be schema-qualified and exist.
pub fn resolve(table: &str) -> Relation {
    // parse_ident raises its own clear error for a name that is not an identifier.
    let parts: Vec<String> =
        select_one::<Vec<String>>("SELECT pg_catalog.parse_ident($1)", &[table.into()]).unwrap_or_default();
    let why = if parts.len() != 2 {
        Some("an unqualified name would depend on search_path, which the caller controls")
    } else if parts[0].starts_with("pg_temp") {
        Some("a temporary table belongs to the session that created it")
    } else {
        None
    };
    if let Some(why) = why {
        errors::key_table(
            PgSqlErrorCode::ERRCODE_INVALID_NAME,
            format!(
                "auth_jwt.jwks_table must name a table in a regular schema: \"{}\"",
                auth_jwt_core::error::printable(table, 128)
            ),
            why.into(),
            "Use schema.table, e.g. ALTER DATABASE mydb SET auth_jwt.jwks_table = 'public.jwks';",
        );
    }
    let row = Spi::connect(|c| {
        let t = c.select(
            "SELECT c.oid, c.relowner, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2
                AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog.\"char\"[])",
            Some(1),
            &[parts[0].as_str().into(), parts[1].as_str().into()],
        )?;
        let mut out = None;
        for r in t {
            out = Some((r.get::<pg_sys::Oid>(1)?, r.get::<pg_sys::Oid>(2)?, r.get::<String>(3)?));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .ok()
    .flatten();
    match row {
        Some((Some(oid), Some(owner), Some(qualified))) => Relation { oid, qualified, owner },
        _ => errors::key_table(
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

fn columns(rel: &Relation) -> Columns {
    let names: Vec<String> = Spi::connect(|c| {
        let t = c.select(
            "SELECT attname::pg_catalog.text FROM pg_catalog.pg_attribute
              WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped",
            None,
            &[rel.oid.into()],
        )?;
        t.map(|r| r.get::<String>(1).map(Option::unwrap_or_default)).collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_default();
    for required in ["id", "publicKey"] {
        if !names.iter().any(|n| n == required) {
            errors::key_table(
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

/// `deps(oid)`: the relation $1 and, recursively, every relation its view rules read.
pub const RELATIONS_UNDER: &str = "WITH RECURSIVE deps(oid) AS (
     SELECT $1::pg_catalog.oid
     UNION
     SELECT d.refobjid FROM deps
       JOIN pg_catalog.pg_rewrite r ON r.ev_class OPERATOR(pg_catalog.=) deps.oid
       JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
            AND d.objid OPERATOR(pg_catalog.=) r.oid
            AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.refobjid OPERATOR(pg_catalog.<>) deps.oid)";

/// The base relations under the key relation (through views, recursively) and whether each
/// carries the invalidation trigger. Views and materialized views need no trigger: redefining
/// or refreshing them invalidates them by itself.
fn watch_status(rel: &Relation) -> (Vec<pg_sys::Oid>, bool) {
    let rows: Vec<(pg_sys::Oid, bool)> = Spi::connect(|c| {
        let t = c.select(
            &format!(
                "{RELATIONS_UNDER} SELECT c.oid,
                    c.relkind OPERATOR(pg_catalog.=) ANY ('{{v,m}}'::pg_catalog.\"char\"[])
                    OR (c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}'::pg_catalog.\"char\"[]) AND EXISTS (
                        SELECT FROM pg_catalog.pg_trigger t
                         WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid AND t.tgname OPERATOR(pg_catalog.=) $2
                           AND t.tgenabled OPERATOR(pg_catalog.=) ANY ('{{O,A}}'::pg_catalog.\"char\"[])))
               FROM deps JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) deps.oid"
            ),
            None,
            &[rel.oid.into(), TRIGGER_NAME.into()],
        )?;
        t.map(|r| Ok((r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid), r.get::<bool>(2)?.unwrap_or(false))))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_default();
    let all = !rows.is_empty() && rows.iter().all(|(_, w)| *w);
    (rows.into_iter().map(|(o, _)| o).collect(), all)
}

/// Run `f` with SPI as `user`, with search_path pinned to pg_catalog, like a SECURITY DEFINER
/// function with `SET search_path`. On error, transaction (or subtransaction) abort restores
/// both, as it does for SECURITY DEFINER.
pub fn as_owner<R>(user: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_ctx = 0;
    // SAFETY: plain calls into miscinit.c/guc.c with valid arguments, undone below in order.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            user,
            saved_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let r = with_pinned_search_path(f);
    // SAFETY: restores what we saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx) };
    r
}

/// Run `f` with search_path = pg_catalog, pg_temp, as a function's `SET search_path` clause
/// would; an error in `f` pops the GUC nest level through (sub)transaction abort.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: a new GUC nest level, popped below; set_config_option as for SET.
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest
    };
    let r = f();
    // SAFETY: pops the nest level pushed above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    r
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

/// Read every row of the key relation (never `"privateKey"`).
pub fn read_rows(rel: &Relation) -> Vec<Row> {
    let cols = columns(rel);
    let epoch = |present: bool, col: &str| {
        if present {
            format!("pg_catalog.date_part('epoch', \"{col}\"::pg_catalog.timestamptz)::pg_catalog.float8")
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
    as_owner(rel.owner, || {
        Spi::connect(|c| {
            let t = c.select(q.as_str(), None, &[])?;
            t.map(|r| {
                Ok(Row {
                    id: r.get(1)?,
                    public_key: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                    alg: r.get(5)?,
                    crv: r.get(6)?,
                })
            })
            .collect::<Result<Vec<Row>, pgrx::spi::Error>>()
        })
    })
    .unwrap_or_else(|e| {
        errors::key_table(
            PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
            format!("auth_jwt could not read key table {}", rel.qualified),
            format!("{e}"),
            "Check that auth_jwt.jwks_table names Better Auth's jwks table or a view of it.",
        )
    })
}

fn load(table: &str) {
    stats::key_load();
    // Clear first: an invalidation that arrives while we read must trigger another load.
    STALE.with(|s| s.set(false));
    let (rel, relids, watched, rows) = with_pinned_search_path(|| {
        let rel = resolve(table);
        let (relids, watched) = watch_status(&rel);
        let rows = read_rows(&rel);
        (rel, relids, watched, rows)
    });
    WATCHED_RELIDS.with(|w| *w.borrow_mut() = relids);
    let keys = KeySet::from_rows(rows.iter().filter_map(Row::key_row));

    let warn = STORE.with(|s| {
        let mut s = s.borrow_mut();
        let changed = s.as_ref().is_none_or(|st| *st.keys != keys);
        if changed {
            GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
        }
        let (last_miss_reload, warned) =
            s.as_ref().map_or((None, false), |st| (st.last_miss_reload, st.warned_unwatched && st.table == table));
        *s = Some(Store {
            table: table.to_owned(),
            keys: if changed { Rc::new(keys) } else { s.as_ref().map(|st| st.keys.clone()).unwrap_or_default() },
            watched,
            loaded_in: local_xid(),
            last_miss_reload,
            warned_unwatched: warned || !watched,
        });
        !watched && !warned
    });
    if warn {
        pgrx::warning!(
            "auth_jwt: key table {} is not watched for changes, so keys are re-read in every transaction; run SELECT auth_jwt.watch_key_table(); as a superuser",
            rel.qualified
        );
    }
}

/// No invalidation of the key table is pending (cheap: one thread-local flag).
pub fn is_fresh() -> bool {
    !STALE.with(|s| s.get())
}
