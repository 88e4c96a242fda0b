//! Keeping key caches fresh: the invalidation trigger, which relations it must sit on, and
//! `auth_jwt.watch_key_table()`.
//!
//! Each base table under `auth_jwt.jwks_table` (through views, partitions and inheritance
//! children) gets a row-level AFTER INSERT OR UPDATE OR DELETE trigger that calls
//! `CacheInvalidateRelcacheByRelid` for the table: the only cross-backend signal that plain DML
//! can raise without shared memory or a preload library (see `keys` for the receiving side).
//! Row-level, because logical-replication apply fires row triggers only; ENABLE ALWAYS, because
//! apply runs with `session_replication_role = replica`, where an ordinary (origin) trigger does
//! not fire. On a partitioned table PostgreSQL clones the trigger, with its ENABLE ALWAYS state,
//! to every partition, including ones attached later. TRUNCATE needs no trigger: it gives the
//! table a new relfilenode, which invalidates it by itself. The trigger depends on the extension
//! (DEPENDENCY_AUTO), so DROP EXTENSION removes it and leaves the table untouched.
//!
//! A trigger counts by what it does, not by its name: our function, row-level, AFTER INSERT OR
//! UPDATE OR DELETE, no WHEN clause, no column list, ENABLE ALWAYS. Anything else under the key
//! relation that can change without such a trigger firing (a view over a function, a
//! materialized view, a foreign table, an inheritance child created later, a trigger left in
//! another state) makes the table unwatched: keys are then re-read in every transaction.

use crate::keys;
use crate::relation::Relation;
use crate::snapshot_query::{self, Snapshot};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Name of the invalidation trigger `watch_key_table()` creates.
pub const TRIGGER_NAME: &str = "auth_jwt_key_change";

/// `deps(oid)`: the relation $1 and, recursively, every relation its view rules or its row-level
/// security policies read, and every partition or inheritance child (whose rows a read of the
/// parent returns).
const RELATIONS_UNDER: &str = "WITH RECURSIVE
   reads(parent, child) AS (
     SELECT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d
         ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) r.oid
        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.<>) r.ev_class
     UNION ALL
     SELECT p.polrelid, d.refobjid FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_depend d
         ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) p.oid
        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.<>) p.polrelid
     UNION ALL
     SELECT i.inhparent, i.inhrelid FROM pg_catalog.pg_inherits i),
   deps(oid) AS (
     SELECT $1::pg_catalog.oid
     UNION
     SELECT reads.child FROM deps JOIN reads ON reads.parent OPERATOR(pg_catalog.=) deps.oid)";

/// A trigger `t` that does our job, in any enabled state. pg_trigger.tgtype bits: ROW (1) |
/// INSERT (4) | DELETE (8) | UPDATE (16), and not BEFORE (2), TRUNCATE (32) or INSTEAD (64).
const DOES_OUR_JOB: &str = "t.tgfoid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure('auth_jwt.on_key_change()')
     AND t.tgtype OPERATOR(pg_catalog.=) 29 AND t.tgqual IS NULL AND t.tgconstraint OPERATOR(pg_catalog.=) 0
     AND pg_catalog.cardinality(t.tgattr::pg_catalog.int2[]) OPERATOR(pg_catalog.=) 0";

/// The functions relation `c`'s rows depend on, other than built-in immutable ones: those called
/// by its view rules or row-level security policies, directly or through operators, read from
/// their stored expression trees (pg_depend records no dependency on a function an operator
/// calls, nor on built-in functions). Such a function can read tables or the clock, so no
/// trigger can tell when its results change. Empty when there are none.
const UNWATCHABLE_CALLS: &str = "(SELECT pg_catalog.string_agg(DISTINCT f.oid::pg_catalog.regprocedure::pg_catalog.text, ', ')
      FROM (SELECT r.ev_action::pg_catalog.text FROM pg_catalog.pg_rewrite r WHERE r.ev_class OPERATOR(pg_catalog.=) c.oid
            UNION ALL
            SELECT p.polqual::pg_catalog.text FROM pg_catalog.pg_policy p
             WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid AND c.relrowsecurity) AS tree(t),
           pg_catalog.regexp_matches(tree.t, ':(funcid|opfuncid|aggfnoid|winfnoid|opno) ([0-9]+)', 'g') AS m
      JOIN pg_catalog.pg_proc f ON f.oid OPERATOR(pg_catalog.=) CASE m[1]
             WHEN 'opno' THEN (SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.=) m[2]::pg_catalog.oid)
             ELSE m[2]::pg_catalog.oid END
     WHERE f.oid OPERATOR(pg_catalog.>=) 16384 OR f.provolatile OPERATOR(pg_catalog.<>) 'i')";

/// Why relation `c` is not watched, or NULL when it is.
fn problem_sql() -> String {
    format!(
        "CASE
           WHEN {UNWATCHABLE_CALLS} IS NOT NULL THEN
             CASE c.relkind WHEN 'v' THEN 'its view definition calls ' ELSE 'its row-level security policies call ' END
             OPERATOR(pg_catalog.||) {UNWATCHABLE_CALLS}
             OPERATOR(pg_catalog.||) ', whose results no trigger can watch'
           WHEN c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}'::pg_catalog.\"char\"[]) THEN CASE
             WHEN EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid
                           AND {DOES_OUR_JOB} AND t.tgenabled OPERATOR(pg_catalog.=) 'A') THEN NULL
             WHEN EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid AND {DOES_OUR_JOB})
               THEN 'its key-change trigger is not ENABLE ALWAYS, so it does not fire for logical replication apply'
             ELSE 'it has no key-change trigger' END
           WHEN c.relkind OPERATOR(pg_catalog.=) 'v' THEN NULL
           WHEN c.relkind OPERATOR(pg_catalog.=) 'm' THEN 'it is a materialized view, whose REFRESH ... CONCURRENTLY sends no invalidation'
           WHEN c.relkind OPERATOR(pg_catalog.=) 'f' THEN 'it is a foreign table, whose rows change elsewhere'
           ELSE 'it cannot carry a trigger' END"
    )
}

/// Every relation under a key relation, and why each unwatched one is unwatched.
pub struct Status {
    pub relids: Vec<pg_sys::Oid>,
    /// "schema.name: reason", one per unwatched relation; empty when the key table is watched.
    pub problems: Vec<String>,
}

/// Which relations a load of `rel` reads, and whether a change to any of them is guaranteed to
/// reach every backend as an invalidation of one of them.
pub fn status(rel: &Relation, snapshot: &Snapshot) -> Status {
    let rows = snapshot_query::select(
        snapshot,
        &format!(
            "{RELATIONS_UNDER} SELECT c.oid, c.oid::pg_catalog.regclass::pg_catalog.text, {}
               FROM deps JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) deps.oid",
            problem_sql()
        ),
        &[rel.oid.into()],
        |r| (r.get::<pg_sys::Oid>(1).unwrap_or(pg_sys::InvalidOid), r.get::<String>(2), r.get::<String>(3)),
    );
    let problems = rows
        .iter()
        .filter_map(|(_, name, why)| why.as_ref().map(|w| format!("{}: {w}", name.as_deref().unwrap_or("?"))))
        .collect();
    Status { relids: rows.into_iter().map(|(oid, _, _)| oid).collect(), problems }
}

#[no_mangle]
pub extern "C" fn pg_finfo_auth_jwt_on_key_change() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `auth_jwt.on_key_change()`: AFTER ... FOR EACH ROW trigger on the key table's base tables.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_on_key_change(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fmgr guarantees fcinfo; context is checked to be TriggerData before use.
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            pgrx::error!("auth_jwt.on_key_change() must be called as a trigger");
        }
        let td = ctx as *mut pg_sys::TriggerData;
        // Deduplicated per transaction by inval.c, so a bulk change costs one message.
        pg_sys::CacheInvalidateRelcacheByRelid((*(*td).tg_relation).rd_id);
        pg_sys::Datum::from(0usize) // an AFTER trigger's result is ignored
    }
}

/// Attach the invalidation trigger to every base table under `auth_jwt.jwks_table`. Idempotent.
/// Run it after Better Auth's migrations if they created the table after the extension, after
/// pointing the setting somewhere new, or when a WARNING says the key table is not watched.
#[pg_extern(schema = "auth_jwt", volatile)]
fn watch_key_table() -> TableIterator<'static, (name!(relation, String), name!(action, String))> {
    // SAFETY: reads the current user's superuser flag.
    if !unsafe { pg_sys::superuser() } {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "only a superuser can run auth_jwt.watch_key_table()"
        );
    }
    let (rel, out) = crate::relation::with_pinned_settings(attach_triggers);
    for (name, action) in &out {
        if action.starts_with("not watchable") {
            pgrx::warning!("auth_jwt: {name} is {action}");
        }
    }
    if out.is_empty() {
        pgrx::warning!("auth_jwt: {} reads no relation that can change", rel.qualified);
    }
    TableIterator::new(out)
}

/// One trigger on a base table, as watch_key_table sees it.
struct Trigger {
    name: String,
    /// Calls auth_jwt.on_key_change(), row-level, AFTER INSERT OR UPDATE OR DELETE.
    does_our_job: bool,
    calls_ours: bool,
    function: String,
    enabled: String,
    /// Cloned from a partitioned parent's trigger.
    inherited: bool,
}

fn triggers(table: pg_sys::Oid) -> Vec<Trigger> {
    snapshot_query::select(
        &Snapshot::latest(),
        &format!(
            "SELECT t.tgname::pg_catalog.text, {DOES_OUR_JOB},
                    t.tgfoid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure('auth_jwt.on_key_change()'),
                    t.tgfoid::pg_catalog.regprocedure::pg_catalog.text, t.tgenabled::pg_catalog.text,
                    t.tgparentid OPERATOR(pg_catalog.<>) 0
               FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) $1
              ORDER BY 2 DESC, t.tgenabled OPERATOR(pg_catalog.=) 'A' DESC"
        ),
        &[table.into()],
        |r| Trigger {
            name: r.get(1).unwrap_or_default(),
            does_our_job: r.get(2).unwrap_or(false),
            calls_ours: r.get(3).unwrap_or(false),
            function: r.get(4).unwrap_or_default(),
            enabled: r.get(5).unwrap_or_default(),
            inherited: r.get(6).unwrap_or(false),
        },
    )
}

/// Make each relation under the key table watched where it can be; returns (relation, what was
/// done). Partitioned parents come first: their trigger is cloned to their partitions.
fn attach_triggers() -> (Relation, Vec<(String, String)>) {
    let rel = keys::resolve(crate::settings::str_of(&crate::settings::JWKS_TABLE));
    let snapshot = Snapshot::latest();
    let under = snapshot_query::select(
        &snapshot,
        &format!(
            "{RELATIONS_UNDER} SELECT c.oid, c.oid::pg_catalog.regclass::pg_catalog.text,
                    c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}'::pg_catalog.\"char\"[]), {}
               FROM deps JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) deps.oid
              ORDER BY c.relispartition, c.oid",
            problem_sql()
        ),
        &[rel.oid.into()],
        |r| (r.get::<pg_sys::Oid>(1), r.get::<String>(2).unwrap_or_default(), r.get::<bool>(3), r.get::<String>(4)),
    );
    drop(snapshot);
    let run = |sql: String| Spi::run(&sql).unwrap_or_else(|e| pgrx::error!("{e}"));
    let mut out = Vec::new();
    for (oid, name, base, problem) in under {
        let (Some(oid), Some(true)) = (oid, base) else {
            // Views need no trigger: redefining one invalidates it by itself.
            if let Some(p) = problem {
                out.push((name, format!("not watchable: {p}")));
            }
            continue;
        };
        let all = triggers(oid);
        let action = match all.iter().find(|t| t.does_our_job) {
            Some(t) if t.enabled == "A" && t.inherited => "watched through its partitioned parent's trigger".to_owned(),
            Some(t) if t.enabled == "A" => "already watched".to_owned(),
            Some(t) => {
                run(format!("ALTER TABLE {name} ENABLE ALWAYS TRIGGER {}", quote(&t.name)));
                format!("trigger {} re-enabled (was state {}, now ENABLE ALWAYS)", t.name, t.enabled)
            }
            None => {
                let mut what = "trigger created";
                if let Some(t) = all.iter().find(|t| t.name == TRIGGER_NAME) {
                    if !t.calls_ours {
                        pgrx::ereport!(
                            ERROR,
                            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                            format!("trigger \"{TRIGGER_NAME}\" on {name} calls {}, not auth_jwt.on_key_change()", t.function),
                            format!("auth_jwt recognises its trigger by what it does, and this one does not invalidate key caches. Drop it (DROP TRIGGER {TRIGGER_NAME} ON {name};) and run SELECT auth_jwt.watch_key_table(); again.")
                        );
                    }
                    // auth_jwt 0.2.0's statement-level trigger, or ours edited: replace it.
                    run(format!("DROP TRIGGER {TRIGGER_NAME} ON {name}"));
                    what = "trigger replaced by a row-level one";
                }
                run(format!(
                    "CREATE TRIGGER {TRIGGER_NAME} AFTER INSERT OR UPDATE OR DELETE ON {name} \
                     FOR EACH ROW EXECUTE FUNCTION auth_jwt.on_key_change()"
                ));
                run(format!("ALTER TABLE {name} ENABLE ALWAYS TRIGGER {TRIGGER_NAME}"));
                depend_on_extension(oid);
                what.to_owned()
            }
        };
        out.push((name, action));
    }
    (rel, out)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Record that the trigger on `table` goes away with the extension.
fn depend_on_extension(table: pg_sys::Oid) {
    let trigger: Option<pg_sys::Oid> = crate::relation::select_one(
        "SELECT oid FROM pg_catalog.pg_trigger WHERE tgrelid OPERATOR(pg_catalog.=) $1 AND tgname OPERATOR(pg_catalog.=) $2",
        &[table.into(), TRIGGER_NAME.into()],
    );
    // SAFETY: catalog lookups and a dependency insert with valid object addresses.
    unsafe {
        let ext = pg_sys::get_extension_oid(c"auth_jwt".as_ptr(), true);
        if let (Some(trigger), true) = (trigger, ext != pg_sys::InvalidOid) {
            let depender =
                pg_sys::ObjectAddress { classId: pg_sys::TriggerRelationId, objectId: trigger, objectSubId: 0 };
            let referenced =
                pg_sys::ObjectAddress { classId: pg_sys::ExtensionRelationId, objectId: ext, objectSubId: 0 };
            pg_sys::recordDependencyOn(&depender, &referenced, pg_sys::DependencyType::DEPENDENCY_AUTO);
        }
    }
}
