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
//!
//! On Citus, a reference table named by a setting is read through its placement on this node
//! (see `citus`): `Relation` is then the placement, locked after the table it belongs to.

use crate::citus::{self, Placement};
use crate::errors;
use crate::snapshot_query::{self, Moved, Snapshot};
use crate::xact;
use auth_jwt_core::error::printable;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::ffi::{CStr, CString};

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
        xact::namespace_changes() == self.mark
    }
}

/// A locked relation, described after the lock: the one a setting names or, on Citus, its
/// placement on this node.
pub struct Relation {
    /// The relation read.
    pub oid: pg_sys::Oid,
    /// `schema.table` of the relation read, each part quoted as needed.
    pub qualified: String,
    /// How messages name it: `qualified`, or the Citus table and its placement.
    pub shown: String,
    pub owner: pg_sys::Oid,
    /// The relation the setting names, locked.
    pub locked: Locked,
    /// On Citus, the table the placement belongs to: Citus invalidates it when its placements
    /// change, so a cache of the placement's rows watches it too.
    pub citus_table: Option<pg_sys::Oid>,
}

impl Relation {
    /// Every relation whose invalidation makes what was read from this one stale.
    pub fn watched(&self) -> Vec<pg_sys::Oid> {
        std::iter::once(self.oid).chain(self.citus_table).collect()
    }
}

/// Why a setting's value does not name a usable relation.
pub enum Unresolved {
    /// Not `schema.table` in a regular schema; says why that matters.
    Unqualified(&'static str),
    Missing,
    /// A Citus table (its name) whose rows this node does not hold, and why.
    NotOnThisNode(String, &'static str),
}

/// A relation a setting names, and how to say what is wrong with it: the key table and the
/// session table share every rule, and differ only in these words.
pub struct Configured {
    /// The setting, e.g. `auth_jwt.jwks_table`.
    pub setting: &'static str,
    /// What the relation is, in messages: "key table".
    pub noun: &'static str,
    /// The default value, for the hint on a value that is not `schema.table`.
    pub example: &'static str,
    /// Why the relation is read (the detail when it is missing).
    pub why: &'static str,
    /// What to do when it is missing.
    pub missing_hint: &'static str,
    /// The columns every read needs, and what to say when one is absent.
    pub columns: &'static [&'static str],
    pub columns_detail: &'static str,
    pub columns_hint: &'static str,
    /// What to do on Citus when a node cannot read it.
    pub citus_hint: &'static str,
}

pub const KEY_TABLE: Configured = Configured {
    setting: "auth_jwt.jwks_table",
    noun: "key table",
    example: "public.jwks",
    why: "Better Auth's public keys are read from the relation named by auth_jwt.jwks_table.",
    missing_hint: "Enable Better Auth's jwt() plugin and run its migrations (they create the jwks table), or point auth_jwt.jwks_table at the table or a view of it.",
    columns: &["id", "publicKey"],
    columns_detail: "The key table needs the columns id and \"publicKey\" (and uses \"expiresAt\", \"alg\", \"crv\" when present), as Better Auth 1.7 creates them.",
    columns_hint: "If Better Auth's jwks table or its columns are renamed, point auth_jwt.jwks_table at a view that exposes these names.",
    citus_hint: "On Citus, every node reads the keys: make the key table a reference table on the coordinator (DROP TRIGGER IF EXISTS auth_jwt_key_change ON public.jwks; SELECT create_reference_table('public.jwks'); SELECT auth_jwt.watch_key_table();), or set auth_jwt.jwks_url. If it is one already and this node joined since, copy it here on the coordinator: SELECT replicate_reference_tables(); SELECT auth_jwt.watch_key_table();",
};

pub const SESSION_TABLE: Configured = Configured {
    setting: "auth_jwt.session_table",
    noun: "session table",
    example: "public.session",
    why: "Sessions are read from the relation named by auth_jwt.session_table, because auth_jwt.require_session is on.",
    missing_hint: "Point auth_jwt.session_table at Better Auth's session table (or a view of it), or turn auth_jwt.require_session off.",
    columns: &["id", "userId", "expiresAt"],
    columns_detail: "The session table needs the columns id, \"userId\" and \"expiresAt\", as Better Auth creates them.",
    columns_hint: "If Better Auth's session table or its columns are renamed, point auth_jwt.session_table at a view that exposes these names.",
    citus_hint: "On Citus, every node looks sessions up: make the session table a reference table on the coordinator (SELECT create_reference_table('public.session');). If it is one already and this node joined since, copy it here on the coordinator: SELECT replicate_reference_tables();",
};

impl Configured {
    /// Resolve and lock the relation `value` names (see `resolve`), or raise what to fix.
    pub fn resolve(&self, value: &str) -> Relation {
        resolve(value).unwrap_or_else(|e| self.unresolved(value, e))
    }

    /// Raise why `value` names no usable relation.
    pub fn unresolved(&self, value: &str, e: Unresolved) -> ! {
        let value = printable(value, 128);
        match e {
            Unresolved::Unqualified(why) => errors::configured_relation(
                PgSqlErrorCode::ERRCODE_INVALID_NAME,
                format!("{} must name a table in a regular schema: \"{value}\"", self.setting),
                why.into(),
                &format!("Use schema.table, e.g. ALTER DATABASE mydb SET {} = '{}';", self.setting, self.example),
            ),
            Unresolved::Missing => errors::configured_relation(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("auth_jwt {} \"{value}\" does not exist", self.noun),
                self.why.into(),
                &if citus::installed() {
                    format!("{} {}", self.missing_hint, self.citus_hint)
                } else {
                    self.missing_hint.to_owned()
                },
            ),
            Unresolved::NotOnThisNode(name, why) => errors::configured_relation(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("auth_jwt {} {name} is a Citus table whose rows are not all on this node", self.noun),
                format!("{why}. {}", self.why),
                self.citus_hint,
            ),
        }
    }

    /// Raise unless `columns` (the relation's) has every column reads need.
    pub fn require_columns(&self, rel: &Relation, columns: &[Column]) {
        for required in self.columns {
            if !columns.iter().any(|c| c.name == *required) {
                errors::configured_relation(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!("auth_jwt {} {} has no column \"{required}\"", self.noun, rel.shown),
                    self.columns_detail.into(),
                    self.columns_hint,
                );
            }
        }
    }
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
    Ok(Locked { oid, mark: xact::namespace_changes() })
}

/// Resolve and lock `name`, then read its owner and kind (after the lock, so no owner change can
/// commit between the read and the end of the transaction).
pub fn resolve(name: &str) -> Result<Relation, Unresolved> {
    let locked = lock(&parse_name(name)?)?;
    describe(locked)
}

/// Read what a locked relation is, under a snapshot taken after the lock; on Citus, lock and
/// describe its placement on this node instead.
pub fn describe(locked: Locked) -> Result<Relation, Unresolved> {
    let (owner, qualified) = owner_and_name(locked.oid)?;
    match citus::placement(locked.oid) {
        Placement::Itself => {
            Ok(Relation { oid: locked.oid, shown: qualified.clone(), qualified, owner, locked, citus_table: None })
        }
        Placement::Local(placement) => {
            let (owner, name) = owner_and_name(placement)?;
            Ok(Relation {
                oid: placement,
                shown: format!("{qualified} (its Citus placement {name})"),
                qualified: name,
                owner,
                locked,
                citus_table: Some(locked.oid),
            })
        }
        Placement::NotHere(why) => Err(Unresolved::NotOnThisNode(qualified, why)),
    }
}

fn owner_and_name(oid: pg_sys::Oid) -> Result<(pg_sys::Oid, String), Unresolved> {
    let row = with_pinned_settings(|| {
        snapshot_query::select(&Snapshot::latest(), include_str!("../sql/queries/relation.sql"), &[oid.into()], |r| {
            (r.get::<pg_sys::Oid>(1), r.get::<String>(2))
        })
        .pop()
    });
    match row {
        Some((Some(owner), Some(qualified))) => Ok((owner, qualified)),
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
    errors::configured_relation(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        format!("auth_jwt: \"{}\" kept changing meaning while it was read", printable(name, 128)),
        "Schemas were renamed, created or dropped while auth_jwt resolved the relation.".into(),
        "Retry the transaction.",
    )
}

/// A column: its name and its type, as `format_type` spells it ("text", "uuid", "bigint").
pub struct Column {
    pub name: String,
    pub type_name: String,
    /// A virtual generated column (PostgreSQL 18).
    pub virtual_generated: bool,
}

/// The relation's columns, in order.
pub fn columns(rel: &Relation, snapshot: &Snapshot) -> Vec<Column> {
    snapshot_query::select(snapshot, include_str!("../sql/queries/columns.sql"), &[rel.oid.into()], |r| Column {
        name: r.get::<String>(1).unwrap_or_default(),
        type_name: r.get::<String>(2).unwrap_or_default(),
        virtual_generated: r.get::<bool>(3).unwrap_or(false),
    })
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
/// as a function's SET clauses would, and on Citus `citus.override_table_visibility = off` (Citus
/// hides placements from queries on pg_class in client backends, and auth_jwt describes them);
/// an error in `f` pops the GUC nest level through (sub)transaction abort.
pub fn with_pinned_settings<R>(f: impl FnOnce() -> R) -> R {
    const PINNED: [(&CStr, &CStr); 4] = [
        (c"search_path", c"pg_catalog, pg_temp"),
        (c"TimeZone", c"UTC"),
        (c"DateStyle", c"ISO, MDY"),
        (c"citus.override_table_visibility", c"off"),
    ];
    let pinned = if citus::loaded() { &PINNED[..] } else { &PINNED[..3] };
    // SAFETY: a new GUC nest level, popped below; set_config_option as a function's SET clause
    // does it (GUC_ACTION_SAVE, which parallel workers allow too).
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        for &(name, value) in pinned {
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
