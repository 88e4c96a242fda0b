//! Keeping key caches fresh: the invalidation trigger, which relations it must sit on, and how
//! to put it there (the SQL functions `watch_key_table()` and `on_key_change()` are in `watch`).
//! The session cache is kept fresh the same way (`SESSIONS`, `watch_session_table()` and
//! `on_session_change()`), with one rule more: see `Spec::own_rows_only`.
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

use crate::relation::{self, Configured, Relation, KEY_TABLE, SESSION_TABLE};
use crate::settings;
use crate::snapshot_query::{self, Snapshot};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// A relation watched by a trigger of ours: which, with which trigger.
pub struct Spec {
    pub configured: &'static Configured,
    /// The setting that names the relation.
    pub setting: fn() -> &'static str,
    /// The name `watch_*()` gives the trigger it creates.
    pub trigger: &'static str,
    /// The trigger function, as `to_regprocedure` reads it.
    pub function: &'static str,
    /// What messages call the trigger ("it has no key-change trigger").
    pub noun: &'static str,
    /// The SQL function that attaches it, as the hint names it.
    pub watch_function: &'static str,
    /// That function on every Citus worker, as a query of its rows (sql/queries/citus_watch_workers.sql).
    pub on_workers: &'static str,
    /// The trigger compares columns (an UPDATE that only moves a session's end later invalidates
    /// nothing), so it may sit only on relations whose rows are the configured relation's own
    /// rows, with the same columns: itself, its partitions and inheritance children. Through a
    /// view or a row-level security policy that applies to the reader, a change of any column
    /// can change what is read.
    pub own_rows_only: bool,
}

/// The key table (`auth_jwt.jwks_table`): any row change invalidates.
pub const KEYS: Spec = Spec {
    configured: &KEY_TABLE,
    setting: settings::jwks_table,
    trigger: "auth_jwt_key_change",
    function: "auth_jwt.on_key_change()",
    noun: "key-change",
    watch_function: "auth_jwt.watch_key_table()",
    on_workers: "SELECT pg_catalog.json_agg(w) FROM auth_jwt.watch_key_table() AS w",
    own_rows_only: false,
};

/// The session table (`auth_jwt.session_table`): a change that can end a session invalidates.
pub const SESSIONS: Spec = Spec {
    configured: &SESSION_TABLE,
    setting: settings::session_table,
    trigger: "auth_jwt_session_change",
    function: "auth_jwt.on_session_change()",
    noun: "session-change",
    watch_function: "auth_jwt.watch_session_table()",
    on_workers: "SELECT pg_catalog.json_agg(w) FROM auth_jwt.watch_session_table() AS w",
    own_rows_only: true,
};

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

/// A relation under the watched relation: its oid, its name, whether it is a base table, why it
/// is not watched.
struct Under {
    oid: Option<pg_sys::Oid>,
    name: String,
    base: bool,
    problem: Option<String>,
    /// For `Spec::own_rows_only`: why its rows are not the relation's own, if they are not.
    not_own: Option<String>,
}

impl Under {
    fn why_unwatched(&self) -> Option<&String> {
        self.not_own.as_ref().or(self.problem.as_ref())
    }
}

fn relations_under(spec: &Spec, rel: &Relation, snapshot: &Snapshot) -> Vec<Under> {
    let args = [rel.oid.into(), spec.function.into(), spec.noun.into()];
    snapshot_query::select(snapshot, KEY_RELATIONS, &args, |r| {
        let name = r.get::<String>(2).unwrap_or_default();
        let base = r.get::<bool>(3).unwrap_or(false);
        let problem = r.get::<String>(4);
        let mut not_own = None;
        if spec.own_rows_only {
            not_own = if !r.get::<bool>(5).unwrap_or(false) {
                Some("it is read through a view or a row-level security policy, so a change of any of its columns can end a session".into())
            } else if !base {
                Some("it is a view, so a change of any column of what it reads can end a session; only a table's own trigger tells a session's refresh from its end".into())
            } else if r.get::<bool>(6).unwrap_or(false) {
                Some("its row-level security applies to its owner, who reads the sessions, so a change of any column can end a session".into())
            } else {
                None
            };
        }
        Under { oid: r.get::<pg_sys::Oid>(1), name, base, problem, not_own }
    })
}

/// Every relation under a key relation, and why each unwatched one is unwatched.
pub struct Status {
    pub relids: Vec<pg_sys::Oid>,
    /// "schema.name: reason", one per unwatched relation; empty when the key table is watched.
    pub problems: Vec<String>,
}

/// Which relations a read of `rel` reads, and whether a change to any of them (for sessions: one
/// that can end a session) is guaranteed to reach every backend as an invalidation of one of them.
pub fn status(spec: &Spec, rel: &Relation, snapshot: &Snapshot) -> Status {
    let mut rows = relations_under(spec, rel, snapshot);
    if spec.own_rows_only {
        // Why the configured relation itself is not watched first (a view, say), then what it reads.
        rows.sort_by_key(|u| u.oid != Some(rel.oid));
    }
    let mut problems: Vec<String> =
        rows.iter().filter_map(|u| u.why_unwatched().map(|w| format!("{}: {w}", u.name))).collect();
    let relids: Vec<pg_sys::Oid> = rows.into_iter().filter_map(|u| u.oid).collect();
    if !relids.contains(&rel.oid) {
        // The catalog query did not see the relation itself (a filter on pg_class, as Citus
        // adds): nothing it found can be trusted to be complete.
        problems.insert(0, format!("{}: not found in pg_class", rel.shown));
    }
    Status { relids, problems }
}

/// One trigger on a base table, as watch_key_table or watch_session_table sees it.
struct Trigger {
    name: String,
    /// Calls the spec's function, row-level, AFTER INSERT OR UPDATE OR DELETE.
    does_our_job: bool,
    calls_ours: bool,
    function: String,
    enabled: String,
    /// Cloned from a partitioned parent's trigger.
    inherited: bool,
}

fn triggers(spec: &Spec, table: pg_sys::Oid) -> Vec<Trigger> {
    snapshot_query::select(&Snapshot::latest(), TABLE_TRIGGERS, &[table.into(), spec.function.into()], |r| Trigger {
        name: r.get(1).unwrap_or_default(),
        does_our_job: r.get(2).unwrap_or(false),
        calls_ours: r.get(3).unwrap_or(false),
        function: r.get(4).unwrap_or_default(),
        enabled: r.get(5).unwrap_or_default(),
        inherited: r.get(6).unwrap_or(false),
    })
}

/// Make each relation under the spec's relation watched where it can be; returns (relation, what
/// was done). Partitioned parents come first: their trigger is cloned to their partitions.
pub fn attach_triggers(spec: &Spec) -> (Relation, Vec<(String, String)>) {
    let rel = spec.configured.resolve((spec.setting)());
    let snapshot = Snapshot::latest();
    let under = relations_under(spec, &rel, &snapshot);
    drop(snapshot);
    let run = |sql: String| Spi::run(&sql).unwrap_or_else(|e| pgrx::error!("{e}"));
    let mut out = Vec::new();
    for u in under {
        let (Some(oid), true, None) = (u.oid, u.base, &u.not_own) else {
            // Views need no trigger: redefining one invalidates it by itself.
            if let Some(p) = u.why_unwatched() {
                out.push((u.name.clone(), format!("not watchable: {p}")));
            }
            continue;
        };
        let name = u.name;
        let all = triggers(spec, oid);
        let action = match all.iter().find(|t| t.does_our_job) {
            Some(t) if t.enabled == "A" && t.inherited => "watched through its partitioned parent's trigger".to_owned(),
            Some(t) if t.enabled == "A" => "already watched".to_owned(),
            Some(t) => {
                run(format!("ALTER TABLE {name} ENABLE ALWAYS TRIGGER {}", quote(&t.name)));
                format!("trigger {} re-enabled (was state {}, now ENABLE ALWAYS)", t.name, t.enabled)
            }
            None => {
                let mut what = "trigger created";
                let (trigger, function) = (spec.trigger, spec.function);
                if let Some(t) = all.iter().find(|t| t.name == trigger) {
                    if !t.calls_ours {
                        pgrx::ereport!(
                            ERROR,
                            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                            format!("trigger \"{trigger}\" on {name} calls {}, not {function}", t.function),
                            format!("auth_jwt recognises its trigger by what it does, and this one does not invalidate caches. Drop it (DROP TRIGGER {trigger} ON {name};) and run SELECT {}; again.", spec.watch_function)
                        );
                    }
                    // auth_jwt 0.2.0's statement-level trigger, or ours edited: replace it.
                    run(format!("DROP TRIGGER {trigger} ON {name}"));
                    what = "trigger replaced by a row-level one";
                }
                run(format!(
                    "CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {name} \
                     FOR EACH ROW EXECUTE FUNCTION {function}"
                ));
                run(format!("ALTER TABLE {name} ENABLE ALWAYS TRIGGER {trigger}"));
                depend_on_extension(oid, trigger);
                what.to_owned()
            }
        };
        out.push((name, action));
    }
    (rel, out)
}

/// On the Citus coordinator, the spec's `watch_*()` on every worker, so that each watches its own
/// placement (a write to a reference table changes every node's placement, and an invalidation
/// reaches only the backends of the node that sent it): (relation and node, what was done, or why
/// it failed).
pub fn attach_on_workers(spec: &Spec) -> Vec<(String, String)> {
    let query = include_str!("../sql/queries/citus_watch_workers.sql");
    let rows = snapshot_query::select(&Snapshot::latest(), query, &[spec.on_workers.into()], |r| {
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
fn depend_on_extension(table: pg_sys::Oid, trigger: &str) {
    let trigger: Option<pg_sys::Oid> = relation::select_one(
        "SELECT oid FROM pg_catalog.pg_trigger WHERE tgrelid OPERATOR(pg_catalog.=) $1 AND tgname OPERATOR(pg_catalog.=) $2",
        &[table.into(), trigger.into()],
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
