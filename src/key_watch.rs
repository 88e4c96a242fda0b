//! Keeping key caches fresh: the invalidation trigger and `auth_jwt.watch_key_table()`.
//!
//! Each base table under `auth_jwt.jwks_table` gets a statement-level trigger that calls
//! `CacheInvalidateRelcacheByRelid` for the table: the only cross-backend signal that plain DML
//! can raise without shared memory or a preload library (see `keys` for the receiving side).
//! It is ENABLE ALWAYS, so it fires for logical-replication apply too, and it depends on the
//! extension (DEPENDENCY_AUTO), so DROP EXTENSION removes it and leaves the table untouched.

use crate::keys::{self, RELATIONS_UNDER, TRIGGER_NAME};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

#[no_mangle]
pub extern "C" fn pg_finfo_auth_jwt_on_key_change() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `auth_jwt.on_key_change()`: AFTER ... FOR EACH STATEMENT trigger on the key table.
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
        pg_sys::CacheInvalidateRelcacheByRelid((*(*td).tg_relation).rd_id);
        pg_sys::Datum::from(0usize)
    }
}

/// Attach the invalidation trigger to every base table under `auth_jwt.jwks_table`. Idempotent.
/// Run it after Better Auth's migrations if they created the table after the extension, or
/// after pointing the setting somewhere new.
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
    let (rel, out) = keys::with_pinned_search_path(attach_triggers);
    if out.is_empty() {
        pgrx::warning!(
            "auth_jwt: {} has no base table that can carry a trigger; keys will be re-read in every transaction",
            rel.qualified
        );
    }
    TableIterator::new(out)
}

/// Attach (or re-enable) the trigger on each base table; returns (table, what was done).
fn attach_triggers() -> (keys::Relation, Vec<(String, String)>) {
    let rel = keys::resolve(crate::settings::str_of(&crate::settings::JWKS_TABLE));
    let bases: Vec<(pg_sys::Oid, String, Option<String>)> = Spi::connect(|c| {
        let t = c.select(
            &format!(
                "{RELATIONS_UNDER}
             SELECT c.oid, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),
                    (SELECT t.tgenabled::pg_catalog.text FROM pg_catalog.pg_trigger t
                      WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid AND t.tgname OPERATOR(pg_catalog.=) $2)
               FROM deps JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) deps.oid
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}'::pg_catalog.\"char\"[])"
            ),
            None,
            &[rel.oid.into(), TRIGGER_NAME.into()],
        )?;
        t.map(|r| Ok((r.get(1)?.unwrap_or(pg_sys::InvalidOid), r.get(2)?.unwrap_or_default(), r.get(3)?)))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_default();

    let run = |sql: String| Spi::run(&sql).unwrap_or_else(|e| pgrx::error!("{e}"));
    let mut out = Vec::new();
    for (oid, name, enabled) in bases {
        let action = match enabled.as_deref() {
            Some("A") => "already watched",
            Some(_) => "trigger re-enabled",
            None => {
                run(format!(
                    "CREATE TRIGGER {TRIGGER_NAME} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {name} \
                     FOR EACH STATEMENT EXECUTE FUNCTION auth_jwt.on_key_change()"
                ));
                depend_on_extension(oid);
                "trigger created"
            }
        };
        if action != "already watched" {
            run(format!("ALTER TABLE {name} ENABLE ALWAYS TRIGGER {TRIGGER_NAME}"));
        }
        out.push((name, action.to_owned()));
    }
    (rel, out)
}

/// Record that the trigger on `table` goes away with the extension.
fn depend_on_extension(table: pg_sys::Oid) {
    let trigger: Option<pg_sys::Oid> = keys::select_one(
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
