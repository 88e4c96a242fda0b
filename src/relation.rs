//! Relations named by a setting (the key table, the session table): locked, then described, and
//! read the way a `SECURITY DEFINER` function with pinned settings would.
//!
//! Reads run as the relation's owner, so the calling role needs no privilege on it; and with
//! `search_path = pg_catalog, pg_temp`, `TimeZone = UTC` and `DateStyle = ISO, MDY` (PostgreSQL's
//! default), so neither a temp table nor a caller's settings can change what is read (a
//! `timestamp without time zone` `"expiresAt"`, as some ORMs create it, is read as UTC). Owner
//! rather than superuser, so a view's functions never run with more rights than the view's owner
//! already has.
//!
//! That promise needs the relation read to be the one whose owner we act as. A role that owns
//! the schema can drop and replace the relation the name points to, or rename the schema and
//! put another in its place, between the moment we look the owner up and the moment a query
//! resolves the name again. So: the name is resolved and locked first (`AccessShareLock` until
//! the transaction ends: no drop, rename, owner change or view replacement can commit meanwhile),
//! the owner is read after the lock, and a query runs only if, once its plan is ready with all
//! its locks taken, no schema has been renamed, created or dropped since the lock: the only way
//! left for the name to mean another relation. Otherwise the caller resolves again.

use crate::snapshot_query::{self, Moved, Snapshot};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CString;

thread_local! {
    /// Schema changes this backend has processed (any pg_namespace row).
    static NAMESPACE_CHANGES: Cell<u64> = const { Cell::new(0) };
}

pub fn init() {
    // SAFETY: registering a callback during _PG_init; it only touches a thread-local.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(on_namespace_change),
            pg_sys::Datum::from(0),
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_namespace_change(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    NAMESPACE_CHANGES.with(|n| n.set(n.get().wrapping_add(1)));
}

/// A setting's value, parsed as `schema.table`.
#[derive(Clone, PartialEq, Eq)]
pub struct Name {
    schema: CString,
    relation: CString,
}

/// A relation resolved from a name and locked by this transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub oid: pg_sys::Oid,
    /// Schema changes processed when the lock was held.
    mark: u64,
}

impl Locked {
    /// The name still means this relation: no schema change was processed since it was locked.
    pub fn still_named(&self) -> bool {
        NAMESPACE_CHANGES.with(Cell::get) == self.mark
    }
}

/// A locked relation, described after the lock.
pub struct Relation {
    pub oid: pg_sys::Oid,
    /// `schema.table`, each part quoted as needed.
    pub qualified: String,
    pub owner: pg_sys::Oid,
    pub locked: Locked,
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

/// Parse `name`, which must be `schema.table` in a regular schema.
pub fn parse_name(name: &str) -> Result<Name, Unresolved> {
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
    let c = |s: &str| CString::new(s).map_err(|_| Unresolved::Missing);
    Ok(Name { schema: c(&parts[0])?, relation: c(&parts[1])? })
}

/// Resolve `name` and lock the relation (`AccessShareLock`, until the transaction ends). Cheap
/// when this transaction already holds the lock.
pub fn lock(name: &Name) -> Result<Locked, Unresolved> {
    // SAFETY: makeRangeVar copies nothing we free; RangeVarGetRelidExtended resolves, locks and
    // re-resolves until the name and the lock agree (concurrent drops and renames), and returns
    // InvalidOid for a missing schema or relation with RVR_MISSING_OK.
    let oid = unsafe {
        let rv = pg_sys::makeRangeVar(name.schema.as_ptr() as *mut _, name.relation.as_ptr() as *mut _, -1);
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    if oid == pg_sys::InvalidOid {
        return Err(Unresolved::Missing);
    }
    Ok(Locked { oid, mark: NAMESPACE_CHANGES.with(Cell::get) })
}

/// Resolve and lock `name`, then read its owner and kind (after the lock, so no owner change can
/// commit between the read and the end of the transaction).
pub fn resolve(name: &str) -> Result<Relation, Unresolved> {
    let locked = lock(&parse_name(name)?)?;
    describe(locked)
}

/// Read what a locked relation is, under a snapshot taken after the lock.
pub fn describe(locked: Locked) -> Result<Relation, Unresolved> {
    let row = snapshot_query::select(
        &Snapshot::latest(),
        "SELECT c.relowner, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
          WHERE c.oid OPERATOR(pg_catalog.=) $1
            AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog.\"char\"[])",
        &[locked.oid.into()],
        |r| (r.get::<pg_sys::Oid>(1), r.get::<String>(2)),
    )
    .pop();
    match row {
        Some((Some(owner), Some(qualified))) => Ok(Relation { oid: locked.oid, qualified, owner, locked }),
        _ => Err(Unresolved::Missing),
    }
}

/// Run `read` (which resolves and reads), again if the name moved under it, at most three times.
pub fn retrying<R>(name: &str, mut read: impl FnMut() -> Result<R, Moved>) -> R {
    for _ in 0..3 {
        if let Ok(r) = read() {
            return r;
        }
    }
    crate::errors::configured_relation(
        pgrx::PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        format!("auth_jwt: \"{}\" kept changing meaning while it was read", auth_jwt_core::error::printable(name, 128)),
        "Schemas were renamed, created or dropped while auth_jwt resolved the relation.".into(),
        "Retry the transaction.",
    )
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

/// Run `f` with `search_path = pg_catalog, pg_temp`, `TimeZone = UTC` and `DateStyle = ISO, MDY`,
/// as a function's SET clauses would; an error in `f` pops the GUC nest level through
/// (sub)transaction abort.
pub fn with_pinned_settings<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: a new GUC nest level, popped below; set_config_option as a function's SET clause
    // does it (GUC_ACTION_SAVE, which parallel workers allow too).
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        for (name, value) in
            [(c"search_path", c"pg_catalog, pg_temp"), (c"TimeZone", c"UTC"), (c"DateStyle", c"ISO, MDY")]
        {
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
