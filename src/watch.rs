//! The SQL functions that keep key and session caches fresh: `auth_jwt.on_key_change()`, the
//! trigger on the key table's base tables, `auth_jwt.on_session_change()`, the one on the session
//! table's, and `auth_jwt.watch_key_table()` and `watch_session_table()`, which put them there
//! (see `key_watch` for which relations, and how a trigger is recognised).

use crate::citus;
use crate::errors;
use crate::key_watch::{self, Spec};
use crate::relation;
use crate::sessions;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// The trigger data fmgr passes a trigger function, or an error naming `function`.
unsafe fn trigger_data(fcinfo: pg_sys::FunctionCallInfo, function: &str) -> *mut pg_sys::TriggerData {
    // SAFETY: fmgr guarantees fcinfo; context is checked to be TriggerData before use.
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            pgrx::error!("{function} must be called as a trigger");
        }
        ctx as *mut pg_sys::TriggerData
    }
}

/// Every backend drops what it cached from the trigger's table, at its next transaction (or
/// lock). Deduplicated per transaction by inval.c, so a bulk change costs one message.
unsafe fn invalidate(td: *mut pg_sys::TriggerData) {
    // SAFETY: the trigger's own relation, open for the trigger call.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid((*(*td).tg_relation).rd_id) }
}

crate::fmgr::v1!(pg_finfo_auth_jwt_on_key_change);
/// `auth_jwt.on_key_change()`: AFTER ... FOR EACH ROW trigger on the key table's base tables.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_on_key_change(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: as trigger_data requires.
    unsafe { invalidate(trigger_data(fcinfo, "auth_jwt.on_key_change()")) };
    pg_sys::Datum::from(0usize) // an AFTER trigger's result is ignored
}

crate::fmgr::v1!(pg_finfo_auth_jwt_on_session_change);
/// `auth_jwt.on_session_change()`: AFTER ... FOR EACH ROW trigger on the session table's base
/// tables. Only a change that can end a session invalidates (a DELETE, or an UPDATE that is not
/// a refresh, see `sessions::update_can_end_session`), and only that session in each backend
/// (`sessions::announce_end`); a sign-in's INSERT and Better Auth's daily refresh leave every
/// backend's cached sessions alone. TRUNCATE invalidates the relation by itself.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_jwt_on_session_change(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: as trigger_data requires; the tuples are the trigger's own.
    unsafe {
        let td = trigger_data(fcinfo, "auth_jwt.on_session_change()");
        let op = (*td).tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
        let can_end = match op {
            pg_sys::TRIGGER_EVENT_INSERT => false,
            pg_sys::TRIGGER_EVENT_UPDATE => sessions::update_can_end_session(td),
            _ => true,
        };
        if can_end && !(*td).tg_trigtuple.is_null() {
            sessions::announce_end(td, (*td).tg_trigtuple);
        } else if can_end {
            invalidate(td);
        }
    }
    pg_sys::Datum::from(0usize)
}

/// Attach the invalidation trigger to every base table under `auth_jwt.jwks_table`. Idempotent.
/// Run it after Better Auth's migrations if they created the table after the extension, after
/// pointing the setting somewhere new, or when a WARNING says the key table is not watched.
#[pg_extern(schema = "auth_jwt", volatile)]
fn watch_key_table() -> TableIterator<'static, (name!(relation, String), name!(action, String))> {
    watch(&key_watch::KEYS)
}

/// Attach the session-change trigger to the table `auth_jwt.session_table` names (its partitions
/// and inheritance children too), so that `require_session` keeps live sessions between
/// transactions. Idempotent. Run it after Better Auth's migrations if they created the table after
/// the extension, after pointing the setting somewhere new, or when a WARNING says the session
/// table is not watched.
#[pg_extern(schema = "auth_jwt", volatile)]
fn watch_session_table() -> TableIterator<'static, (name!(relation, String), name!(action, String))> {
    watch(&key_watch::SESSIONS)
}

fn watch(spec: &'static Spec) -> TableIterator<'static, (name!(relation, String), name!(action, String))> {
    // SAFETY: reads the current user's superuser flag.
    if !unsafe { pg_sys::superuser() } {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("only a superuser can run {}", spec.watch_function)
        );
    }
    let (rel, mut out) = relation::with_pinned_settings(|| key_watch::attach_triggers(spec));
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
            let workers = key_watch::attach_on_workers(spec);
            for (name, action) in &workers {
                if action.starts_with("failed") || action.starts_with("not watchable") {
                    errors::advise(
                        PgLogLevel::WARNING,
                        format!("auth_jwt: {name}: {action}"),
                        &format!("Each worker watches its own copy of the {}, and sees only what has committed.", spec.configured.noun),
                        &format!("If this transaction made the {} a reference table, run SELECT {}; again once it has committed; until then that worker reads it in every transaction.", spec.configured.noun, spec.watch_function),
                    );
                }
            }
            out.extend(workers);
        } else {
            errors::advise(
                PgLogLevel::NOTICE,
                format!("auth_jwt: {} {} is a local table of the Citus coordinator", spec.configured.noun, rel.shown),
                "Row-level security on distributed tables runs on the workers, which cannot read it.",
                spec.configured.citus_hint,
            );
        }
    }
    TableIterator::new(out)
}
