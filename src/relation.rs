//! Relations named by a setting (the key table, the session table): resolved under a snapshot the
//! caller chooses, and read the way a `SECURITY DEFINER` function with pinned settings would.
//!
//! Reads run as the relation's owner, so the calling role needs no privilege on it; and with
//! `search_path = pg_catalog, pg_temp` and `TimeZone = UTC`, so neither a temp table nor a
//! caller's `SET TimeZone` can change what is read (a `timestamp without time zone` column,
//! as some ORMs create `"expiresAt"`, is read as UTC). Owner rather than superuser, so a view's
//! functions never run with more rights than the view's owner already has.

use crate::snapshot_query::{self, Snapshot};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// A relation, resolved from a setting's value.
pub struct Relation {
    pub oid: pg_sys::Oid,
    /// `schema.table`, each part quoted as needed.
    pub qualified: String,
    pub owner: pg_sys::Oid,
}

/// Why a setting's value does not name a usable relation.
pub enum Unresolved {
    /// Not `schema.table` in a regular schema; says why that matters.
    Unqualified(&'static str),
    Missing,
}

/// The first column of the first row of a read-only query that reads no table (its snapshot
/// does not matter). Never `Spi::get_one*`: those mark the transaction as writing, which assigns
/// an XID, and that fails in a parallel worker and on a hot standby.
pub fn select_one<A: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Option<A> {
    Spi::connect(|c| c.select(query, Some(1), args)?.first().get_one::<A>()).ok().flatten()
}

/// Resolve `name`, which must be `schema.table` (a table, view, materialized or foreign table).
pub fn resolve(name: &str, snapshot: &Snapshot) -> Result<Relation, Unresolved> {
    // parse_ident raises its own clear error for a name that is not an identifier.
    let parts: Vec<String> =
        select_one::<Vec<String>>("SELECT pg_catalog.parse_ident($1)", &[name.into()]).unwrap_or_default();
    if parts.len() != 2 {
        return Err(Unresolved::Unqualified(
            "an unqualified name would depend on search_path, which the caller controls",
        ));
    }
    if parts[0].starts_with("pg_temp") {
        return Err(Unresolved::Unqualified("a temporary table belongs to the session that created it"));
    }
    let row = snapshot_query::select(
        snapshot,
        "SELECT c.oid, c.relowner, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
          WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2
            AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog.\"char\"[])",
        &[parts[0].as_str().into(), parts[1].as_str().into()],
        |r| (r.get::<pg_sys::Oid>(1), r.get::<pg_sys::Oid>(2), r.get::<String>(3)),
    )
    .pop();
    match row {
        Some((Some(oid), Some(owner), Some(qualified))) => Ok(Relation { oid, qualified, owner }),
        _ => Err(Unresolved::Missing),
    }
}

/// A column: its name and its type, as `format_type` spells it ("text", "uuid", "bigint").
pub struct Column {
    pub name: String,
    pub type_name: String,
}

/// The relation's columns, in order.
pub fn columns(rel: &Relation, snapshot: &Snapshot) -> Vec<Column> {
    snapshot_query::select(
        snapshot,
        "SELECT attname::pg_catalog.text, pg_catalog.format_type(atttypid, NULL) FROM pg_catalog.pg_attribute
          WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped
          ORDER BY attnum",
        &[rel.oid.into()],
        |r| Column { name: r.get::<String>(1).unwrap_or_default(), type_name: r.get::<String>(2).unwrap_or_default() },
    )
}

/// SQL for column `col` as Unix seconds (float8), whatever its date/time type.
pub fn epoch_sql(col: &str) -> String {
    format!("pg_catalog.date_part('epoch', \"{col}\"::pg_catalog.timestamptz)::pg_catalog.float8")
}

/// Run `f` with SPI as `user`, with the settings pinned (see the module comment), like a
/// SECURITY DEFINER function with SET clauses. On error, (sub)transaction abort restores both,
/// as it does for SECURITY DEFINER.
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
    let r = with_pinned_settings(f);
    // SAFETY: restores what we saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx) };
    r
}

/// Run `f` with `search_path = pg_catalog, pg_temp` and `TimeZone = UTC`, as a function's SET
/// clauses would; an error in `f` pops the GUC nest level through (sub)transaction abort.
pub fn with_pinned_settings<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: a new GUC nest level, popped below; set_config_option as a function's SET clause
    // does it (GUC_ACTION_SAVE, which parallel workers allow too).
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        for (name, value) in [(c"search_path", c"pg_catalog, pg_temp"), (c"TimeZone", c"UTC")] {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        nest
    };
    let r = f();
    // SAFETY: pops the nest level pushed above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    r
}
