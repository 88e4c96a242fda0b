//! Keeping key caches fresh: the invalidation trigger, which relations it must sit on, and how
//! to put it there (the SQL functions `watch_key_table()` and `on_key_change()` are in `watch`).
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

use crate::relation::{self, Relation, KEY_TABLE};
use crate::settings;
use crate::snapshot_query::{self, Snapshot};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Name of the invalidation trigger `watch_key_table()` creates.
pub const TRIGGER_NAME: &str = "auth_jwt_key_change";

/// Every relation a read of the key relation reads, and why each is not watched
/// (sql/queries/key_relations_*.sql around the trigger rule, sql/queries/our_trigger.sql).
const KEY_RELATIONS: &str = concat!(
    include_str!("../sql/queries/key_relations_head.sql"),
    include_str!("../sql/queries/our_trigger.sql"),
    include_str!("../sql/queries/key_relations_tail.sql"),
);

/// The triggers of one table, with the same rule (sql/queries/table_triggers_*.sql).
const TABLE_TRIGGERS: &str = concat!(
    include_str!("../sql/queries/table_triggers_head.sql"),
    include_str!("../sql/queries/our_trigger.sql"),
    include_str!("../sql/queries/table_triggers_tail.sql"),
);

/// A relation under the key relation: (oid, name, a base table, why it is not watched).
type Under = (Option<pg_sys::Oid>, String, Option<bool>, Option<String>);

fn relations_under(rel: &Relation, snapshot: &Snapshot) -> Vec<Under> {
    snapshot_query::select(snapshot, KEY_RELATIONS, &[rel.oid.into()], |r| {
        (r.get::<pg_sys::Oid>(1), r.get::<String>(2).unwrap_or_default(), r.get::<bool>(3), r.get::<String>(4))
    })
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
    let rows = relations_under(rel, snapshot);
    let mut problems: Vec<String> =
        rows.iter().filter_map(|(_, name, _, why)| why.as_ref().map(|w| format!("{name}: {w}"))).collect();
    let relids: Vec<pg_sys::Oid> = rows.into_iter().filter_map(|(oid, ..)| oid).collect();
    if !relids.contains(&rel.oid) {
        // The catalog query did not see the relation itself (a filter on pg_class, as Citus
        // adds): nothing it found can be trusted to be complete.
        problems.insert(0, format!("{}: not found in pg_class", rel.shown));
    }
    Status { relids, problems }
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
    snapshot_query::select(&Snapshot::latest(), TABLE_TRIGGERS, &[table.into()], |r| Trigger {
        name: r.get(1).unwrap_or_default(),
        does_our_job: r.get(2).unwrap_or(false),
        calls_ours: r.get(3).unwrap_or(false),
        function: r.get(4).unwrap_or_default(),
        enabled: r.get(5).unwrap_or_default(),
        inherited: r.get(6).unwrap_or(false),
    })
}

/// Make each relation under the key table watched where it can be; returns (relation, what was
/// done). Partitioned parents come first: their trigger is cloned to their partitions.
pub fn attach_triggers() -> (Relation, Vec<(String, String)>) {
    let rel = KEY_TABLE.resolve(settings::jwks_table());
    let snapshot = Snapshot::latest();
    let under = relations_under(&rel, &snapshot);
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

/// On the Citus coordinator, `watch_key_table()` on every worker, so that each watches its own
/// placement (a write to a reference table changes every node's placement, and an invalidation
/// reaches only the backends of the node that sent it): (relation and node, what was done, or why
/// it failed).
pub fn attach_on_workers() -> Vec<(String, String)> {
    let rows =
        snapshot_query::select(&Snapshot::latest(), include_str!("../sql/queries/citus_watch_workers.sql"), &[], |r| {
            (
                r.get::<String>(1).unwrap_or_default(),
                r.get::<bool>(2).unwrap_or(false),
                r.get::<String>(3).unwrap_or_default(),
                r.get::<String>(4),
                r.get::<String>(5).unwrap_or_default(),
            )
        });
    rows.into_iter()
        .map(|(node, ok, result, relation, action)| match (ok, relation) {
            (false, _) => (format!("worker {node}"), format!("failed: {result}")),
            (true, None) => (format!("worker {node}"), "nothing to watch".to_owned()),
            (true, Some(relation)) => (format!("{relation} on worker {node}"), action),
        })
        .collect()
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Record that the trigger on `table` goes away with the extension.
fn depend_on_extension(table: pg_sys::Oid) {
    let trigger: Option<pg_sys::Oid> = relation::select_one(
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
