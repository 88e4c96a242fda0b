//! Keys from the key table: Better Auth's public keys, read from `auth_jwt.jwks_table` with SPI
//! and parsed once per backend (the default key source; see `key_source`).
//!
//! Freshness. Plain INSERT/UPDATE/DELETE fire no relcache invalidation, so each base table under
//! the key relation carries a row-level trigger (see `key_watch`) that calls
//! `CacheInvalidateRelcacheByRelid`; TRUNCATE and DDL invalidate by themselves. Every backend
//! processes the invalidation at its next transaction start (or lock), a hot standby replays it
//! from the commit record, and `xact` counts it. The per-transaction cost in the
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

use crate::key_watch;
use crate::keyring::{self, KeySource, Listed, Listing};
use crate::relation::{self, Relation, KEY_TABLE};
use crate::settings;
use crate::snapshot_query::{self, Moved, Snapshot};
use crate::stats;
use crate::xact::{self, Watched};
use auth_jwt_core::{KeyRow, KeySet};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The keys as loaded, and what decides whether they may still be used.
struct Store {
    /// The `auth_jwt.jwks_table` value the keys were read for.
    table: String,
    keys: Rc<KeySet>,
    /// `xact::invalidations(KeyTable)` read before the load's snapshot was taken.
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
}

/// The key table as a key source.
pub struct KeyTable;

impl KeySource for KeyTable {
    /// The cached keys are loaded and still valid: no invalidation since the load, the same table,
    /// and (for keys trusted only in their transaction) the same transaction. No SPI, no clock.
    fn fresh(&self) -> bool {
        let table = settings::jwks_table();
        // Take in the invalidations already sent: a transaction that holds every lock it needs
        // (a Citus worker's transaction across its shard queries, say) would otherwise not
        // process them until it took a new one. Nothing to do is one unlocked read.
        xact::accept_invalidations();
        let n = xact::invalidations(Watched::KeyTable);
        STORE.with(|s| match &*s.borrow() {
            None => false,
            Some(st) => st.seen == n && st.table == table && (!st.unwatched || st.loaded_in == xact::local_xid()),
        })
    }

    /// No invalidation arrived since the cached keys were loaded (one counter compare; the
    /// per-row memo checks the transaction and settings itself).
    fn untouched(&self) -> bool {
        let n = xact::invalidations(Watched::KeyTable);
        STORE.with(|s| s.borrow().as_ref().is_some_and(|st| st.seen == n))
    }

    /// The current keys, reloaded first if the table changed (or may have).
    fn current(&self) -> Rc<KeySet> {
        if !self.fresh() {
            load(settings::jwks_table());
        }
        STORE.with(|s| s.borrow().as_ref().map(|st| st.keys.clone()).unwrap_or_default())
    }

    /// A token names `kid`, which the cached keys do not have: reload once (rate-limited) and say
    /// whether it is there now.
    fn reload_for_unknown_kid(&self, kid: &str) -> Option<Rc<KeySet>> {
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
        load(settings::jwks_table());
        STORE.with(|s| {
            let s = s.borrow();
            let st = s.as_ref()?;
            st.keys.contains_kid(kid).then(|| st.keys.clone())
        })
    }

    /// Every row of the key relation, read as a load reads them, with what each parses to.
    fn listing(&self) -> Listing {
        let table = settings::jwks_table();
        let rows = relation::retrying(table, || {
            let rel = KEY_TABLE.resolve(table);
            let snapshot = Snapshot::latest();
            relation::with_pinned_settings(|| read_rows(&rel, &snapshot))
        });
        // Parsed as the verifier parses them (KeySet also marks ids that appear twice).
        let set = KeySet::from_rows(rows.iter().filter_map(KeyTableRow::key_row));
        let keys = keyring::listed(
            &rows,
            &set,
            |r| r.id.is_some(),
            |r, key| Listed {
                key,
                no_kid: "id is NULL",
                alg: r.alg.clone(),
                crv: r.crv.clone(),
                created_at: r.created_at,
                expires_at: r.expires_at,
            },
        );
        Listing { source: table.to_owned(), fetched_at: None, keys }
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
    let columns = relation::columns(rel, snapshot);
    KEY_TABLE.require_columns(rel, &columns);
    let has = |n: &str| columns.iter().any(|c| c.name == n);
    Columns { created_at: has("createdAt"), expires_at: has("expiresAt"), alg: has("alg"), crv: has("crv") }
}

/// One row of the key table, as read.
pub struct KeyTableRow {
    pub id: Option<String>,
    pub public_key: Option<String>,
    /// Unix seconds (fractional), when the relation has the column.
    pub created_at: Option<f64>,
    pub expires_at: Option<f64>,
    pub alg: Option<String>,
    pub crv: Option<String>,
}

impl KeyTableRow {
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
fn read_rows(rel: &Relation, snapshot: &Snapshot) -> Result<Vec<KeyTableRow>, Moved> {
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
        snapshot_query::select_from(
            || rel.locked.still_named(),
            snapshot,
            &q,
            &[],
            |r| KeyTableRow {
                id: r.get(1),
                public_key: r.get(2),
                created_at: r.get(3),
                expires_at: r.get(4),
                alg: r.get(5),
                crv: r.get(6),
            },
        )
    })
}

/// Read the key table and store what was read. Nothing is stored unless every step succeeds.
fn load(table: &str) {
    stats::key_load();
    // Order matters: the count before the snapshot, so that every invalidation it includes is
    // for a commit the snapshot shows; later ones move the count and make this load stale.
    let seen = xact::invalidations(Watched::KeyTable);
    let (rel, watch, rows) = {
        let _reading = xact::Reading::start(Watched::KeyTable);
        relation::retrying(table, || {
            // Locked before the snapshot is taken, and described after: see `relation`.
            let rel = KEY_TABLE.resolve(table);
            let snapshot = Snapshot::latest();
            relation::with_pinned_settings(|| {
                let watch = key_watch::status(&key_watch::KEYS, &rel, &snapshot);
                let rows = read_rows(&rel, &snapshot)?;
                Ok((rel, watch, rows))
            })
        })
    };
    xact::watch(Watched::KeyTable, watch.relids.into_iter().chain(rel.citus_table).collect());
    xact::note_read(Watched::KeyTable);
    let keys = KeySet::from_rows(rows.iter().filter_map(KeyTableRow::key_row));
    let problem = watch.problems.first().cloned();

    let warn = STORE.with(|s| {
        let mut s = s.borrow_mut();
        let old = s.take();
        let warned = old.as_ref().filter(|st| st.table == table).and_then(|st| st.warned.clone());
        let warn = problem.is_some() && problem != warned;
        *s = Some(Store {
            table: table.to_owned(),
            keys: keyring::serve(old.as_ref().map(|st| &st.keys), keys),
            seen,
            loaded_in: xact::local_xid(),
            unwatched: problem.is_some(),
            last_miss_reload: old.and_then(|st| st.last_miss_reload),
            warned: problem.clone().or(warned),
        });
        warn
    });
    if let (true, Some(why)) = (warn, problem) {
        pgrx::warning!(
            "auth_jwt: key table {} is not watched for changes ({why}), so keys are re-read in every transaction; run SELECT auth_jwt.watch_key_table(); as a superuser",
            rel.shown
        );
    }
}
