//! The SQL functions that keep key caches fresh: `auth_jwt.on_key_change()`, the trigger on the
//! key table's base tables, and `auth_jwt.watch_key_table()`, which puts it there (see
//! `key_watch` for which relations, and how a trigger is recognised).

use crate::citus;
use crate::errors;
use crate::key_watch;
use crate::relation;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

crate::fmgr::v1!(pg_finfo_auth_jwt_on_key_change);
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
    let (rel, mut out) = relation::with_pinned_settings(key_watch::attach_triggers);
    for (name, action) in &out {
        if action.starts_with("not watchable") {
            pgrx::warning!("auth_jwt: {name} is {action}");
        }
    }
    if out.is_empty() {
        pgrx::warning!("auth_jwt: {} reads no relation that can change", rel.shown);
    }
    // On the Citus coordinator, every worker watches its own placement too. Not while the
    // extension is being created: Citus creates it on each worker next, and its script watches
    // there.
    // SAFETY: a plain read of a global.
    if citus::is_coordinator() && !unsafe { pg_sys::creating_extension } {
        if rel.citus_table.is_some() {
            let workers = key_watch::attach_on_workers();
            for (name, action) in &workers {
                if action.starts_with("failed") || action.starts_with("not watchable") {
                    errors::advise(
                        PgLogLevel::WARNING,
                        format!("auth_jwt: {name}: {action}"),
                        "Each worker watches its own copy of the key table, and sees only what has committed.",
                        "If this transaction made the key table a reference table, run SELECT auth_jwt.watch_key_table(); again once it has committed; until then that worker re-reads keys in every transaction.",
                    );
                }
            }
            out.extend(workers);
        } else {
            errors::advise(
                PgLogLevel::NOTICE,
                format!("auth_jwt: key table {} is a local table of the Citus coordinator", rel.shown),
                "Row-level security on distributed tables runs on the workers, which cannot read it.",
                relation::KEY_TABLE.citus_hint,
            );
        }
    }
    TableIterator::new(out)
}
