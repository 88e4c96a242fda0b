//! Citus: where a relation Citus manages really is on this node, and how a setting reaches the
//! workers a transaction uses.
//!
//! A Citus reference table (Better Auth's `jwks` and `session`, distributed with
//! `create_reference_table`) is, on each node, an empty *shell* table under the name and a full
//! copy of the rows in a *placement*, `jwks_<shardid>`. Reading the shell is a distributed query,
//! which Citus refuses inside a shard query ("cannot execute a distributed query from a query on a
//! shard"), and writes change the placement, never the shell, so a trigger on the shell never
//! fires. So auth_jwt reads, and watches, the placement on this node directly: plain PostgreSQL,
//! no nested distributed execution. Citus invalidates the shell's relcache whenever its shard
//! metadata changes (pg_dist_shard, pg_dist_placement), so a cache that also watches the shell
//! resolves the placement again.
//!
//! Citus hides placements from queries on `pg_class` in client backends; the catalog reads that
//! describe a placement run with `citus.override_table_visibility` off (see
//! `relation::with_pinned_settings`).
//!
//! Settings. Citus sends a `SET LOCAL` to the workers of a transaction block when
//! `citus.propagate_set_commands` is `local`, and nothing else: not `set_config(..., true)`, not
//! PostgREST's `request.headers`. [`set_local_on_workers`] runs a `SET LOCAL` through Citus's own
//! propagation, which is how the request's token reaches the shards (`token_forward`).

use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::{CStr, CString};

thread_local! {
    static LOADED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Citus is loaded in this server. It can only be preloaded (shared_preload_libraries), so this
/// never changes for the life of a backend; its settings are defined variables, not placeholders.
pub fn loaded() -> bool {
    LOADED.with(|l| {
        l.get().unwrap_or_else(|| {
            let loaded = crate::settings::GucRecord::find(c"citus.propagate_set_commands").is_some_and(|r| {
                // SAFETY: a live GUC record, read only.
                unsafe { (*r.record).flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 == 0 }
            });
            l.set(Some(loaded));
            loaded
        })
    })
}

/// Citus is loaded and installed in this database (its metadata tables exist).
pub fn installed() -> bool {
    // SAFETY: a catalog lookup by name; missing_ok.
    loaded() && unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) } != pg_sys::InvalidOid
}

/// Where a relation's rows are on this node.
pub enum Placement {
    /// Not a Citus table: the relation itself.
    Itself,
    /// The Citus table's placement on this node, which holds every row.
    Local(pg_sys::Oid),
    /// A Citus table this node has no full copy of; says why.
    NotHere(&'static str),
}

/// Where the rows of `rel` (locked by the caller) are on this node.
pub fn placement(rel: pg_sys::Oid) -> Placement {
    if !installed() {
        return Placement::Itself;
    }
    let row = crate::snapshot_query::select(
        &crate::snapshot_query::Snapshot::latest(),
        include_str!("../sql/queries/citus_placement.sql"),
        &[rel.into()],
        |r| (r.get::<i64>(1).unwrap_or(0), r.get::<pg_sys::Oid>(2)),
    )
    .pop();
    match row {
        None => Placement::Itself,
        Some((shards, _)) if shards != 1 => Placement::NotHere(
            "it is distributed by a column, so each node holds only some of its rows; auth_jwt needs them all on every node",
        ),
        Some((_, None)) => Placement::NotHere("this node holds no placement of it"),
        Some((_, Some(oid))) => {
            // SAFETY: takes a lock released at transaction end, like the lock on the shell.
            unsafe { pg_sys::LockRelationOid(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
            Placement::Local(oid)
        }
    }
}

/// This node is the coordinator: Citus is installed and this node's group is 0.
pub fn is_coordinator() -> bool {
    installed()
        && crate::snapshot_query::select(
            &crate::snapshot_query::Snapshot::latest(),
            include_str!("../sql/queries/citus_coordinator.sql"),
            &[],
            |r| r.get::<bool>(1).unwrap_or(false),
        )
        .pop()
        .unwrap_or(false)
}

/// This backend says it runs commands Citus sent from another node (a shard query, a propagated
/// command): what it was given to run is already distributed. Any role can say so (it is
/// application_name), so it only spares work, never a check.
pub fn internal_backend() -> bool {
    // SAFETY: application_name is a string GUC variable that is never NULL once GUCs are set up.
    let app = unsafe {
        let p = pg_sys::application_name;
        if p.is_null() {
            return false;
        }
        CStr::from_ptr(p).to_bytes()
    };
    app.starts_with(b"citus_internal gpid=")
        || app.starts_with(b"citus_rebalancer gpid=")
        || app.starts_with(b"citus_run_command gpid=")
        || app.starts_with(b"citus_shard_")
}

/// Citus will send this `SET` to the workers it has in the transaction by its text: a `SET
/// LOCAL`, a `RESET` or `RESET ALL`, with `citus.propagate_set_commands = 'local'` (whatever the
/// backend's application_name claims it is).
pub fn propagates_set(kind: pg_sys::VariableSetKind::Type, is_local: bool) -> bool {
    use pg_sys::VariableSetKind::{VAR_RESET, VAR_RESET_ALL};
    // SAFETY: GetConfigOption returns the current value or NULL (missing_ok).
    (is_local || matches!(kind, VAR_RESET | VAR_RESET_ALL)) // Citus sends RESETs on too
        && unsafe {
            let p = pg_sys::GetConfigOption(c"citus.propagate_set_commands".as_ptr(), true, false);
            !p.is_null() && CStr::from_ptr(p).to_bytes() == b"local"
        }
}

/// The setting by which Citus would show the client what it sends a worker, if one does now:
/// `citus.log_remote_commands` on shows every command (as NOTICEs); `citus.worker_min_messages`
/// below `notice` passes on what a worker logs at LOG or DEBUG levels, where the worker prints the
/// parse tree of each statement it runs under `debug_print_parse` (which any role may set, and
/// Citus sends on with `citus.propagate_set_commands`). Only the levels that pass on nothing a
/// worker logs are allowed.
pub fn shows_client_what_workers_get() -> Option<&'static str> {
    let value = |name: &CStr| {
        // SAFETY: GetConfigOption returns the current value or NULL (missing_ok).
        unsafe {
            let p = pg_sys::GetConfigOption(name.as_ptr(), true, false);
            (!p.is_null()).then(|| CStr::from_ptr(p).to_bytes().to_ascii_lowercase())
        }
    };
    if value(c"citus.log_remote_commands").is_some_and(|v| v == b"on") {
        return Some("citus.log_remote_commands");
    }
    let relayed = value(c"citus.worker_min_messages")
        .is_some_and(|v| !matches!(v.as_slice(), b"notice" | b"warning" | b"error" | b"off"));
    relayed.then_some("citus.worker_min_messages")
}

/// Run `SET LOCAL <name> TO <value>` so that Citus sends it to every worker this transaction
/// uses: to those already in the transaction now, and first thing to any it opens later. Here the
/// variable keeps its value. `citus.propagate_set_commands` is `local` for this one statement
/// only (Citus propagates only within a transaction block).
///
/// The statement goes straight to ProcessUtility, as a raw parse tree, not through SPI: its text
/// holds the value (a token), and SPI's parse analysis prints the tree to the client under
/// `debug_print_parse`, and an error would quote the text in its CONTEXT; `pg_stat_statements`
/// does not record it either (`track_utility` off for the statement: the text Citus needs cannot
/// be hidden).
pub fn set_local_on_workers(name: &CStr, value: &str) {
    let value = CString::new(value).unwrap_or_default();
    // SAFETY: quote_identifier and quote_literal_cstr return palloc'd, NUL-terminated strings.
    let sql = unsafe {
        format!(
            "SET LOCAL {} TO {}",
            CStr::from_ptr(pg_sys::quote_identifier(name.as_ptr())).to_string_lossy(),
            CStr::from_ptr(pg_sys::quote_literal_cstr(value.as_ptr())).to_string_lossy()
        )
    };
    // palloc'd: nothing with a destructor lives across the calls below, which may raise.
    // SAFETY: pstrdup copies the NUL-terminated text into the current memory context.
    let sql = unsafe { pg_sys::pstrdup(CString::new(sql).unwrap_or_default().as_ptr()) };
    // SAFETY: a GUC nest level popped below as an abort pops it (as VACUUM and REFRESH
    // MATERIALIZED VIEW roll back what index functions set): the pinned settings and the variable
    // itself get their values back here, so the SET reaches the workers (Citus sent it, and
    // replays it to workers it opens later) without changing what this node reads (a token from
    // request.headers stays one, and goes when the headers go). raw_parser gives one RawStmt for
    // one statement; ProcessUtility runs a utility PlannedStmt as SPI would build it.
    unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        let pin = |setting: &CStr, value: &CStr, context| {
            pg_sys::set_config_option(
                setting.as_ptr(),
                value.as_ptr(),
                context,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        };
        pin(c"citus.propagate_set_commands", c"local", pg_sys::GucContext::PGC_USERSET);
        if !pg_sys::GetConfigOption(c"pg_stat_statements.track_utility".as_ptr(), true, false).is_null() {
            pin(c"pg_stat_statements.track_utility", c"off", pg_sys::GucContext::PGC_SUSET);
        }
        let parsed = pg_sys::raw_parser(sql, pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let raw = (*(*parsed).elements).ptr_value as *mut pg_sys::RawStmt;
        let stmt = pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannedStmt>()) as *mut pg_sys::PlannedStmt;
        (*stmt).type_ = pg_sys::NodeTag::T_PlannedStmt;
        (*stmt).commandType = pg_sys::CmdType::CMD_UTILITY;
        (*stmt).canSetTag = true;
        (*stmt).utilityStmt = (*raw).stmt;
        (*stmt).stmt_location = (*raw).stmt_location;
        (*stmt).stmt_len = (*raw).stmt_len;
        let qc = pg_sys::palloc0(std::mem::size_of::<pg_sys::QueryCompletion>()) as *mut pg_sys::QueryCompletion;
        pg_sys::ProcessUtility(
            stmt,
            sql,
            false,
            pg_sys::ProcessUtilityContext::PROCESS_UTILITY_QUERY,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            pg_sys::None_Receiver,
            qc,
        );
        pg_sys::AtEOXact_GUC(false, nest);
    }
}
