//! Read-only SPI queries under a snapshot the caller chooses.
//!
//! pgrx's `Spi` reads with the caller's snapshot: the transaction's in REPEATABLE READ and
//! SERIALIZABLE, the statement's in READ COMMITTED. Either can be older than an invalidation this
//! backend has already consumed (a key DELETE that committed after the snapshot was taken, its
//! invalidation processed at a later lock), and a key load that read such a snapshot would mark
//! deleted keys fresh for every later transaction. So key loads read under the *latest* snapshot,
//! passed to `SPI_execute_snapshot`. PostgreSQL guarantees the order that makes this sound: a
//! committing transaction leaves the proc array (becomes visible to new snapshots) before it sends
//! its invalidations, so any snapshot taken after an invalidation was processed shows that commit.
//!
//! In parallel mode PostgreSQL forbids GetLatestSnapshot ("cannot update SecondarySnapshot during a
//! parallel operation"), and the query's own snapshot will not do: `SET TRANSACTION SNAPSHOT` can
//! give a new transaction a snapshot from before a key DELETE. There we take a fresh catalog
//! snapshot instead: an MVCC snapshot of now, which parallel workers take for their catalog reads
//! anyway.
//!
//! Queries here are read-only and never assign an XID, so they work in parallel workers and on a
//! hot standby.

use pgrx::datum::{DatumWithOid, FromDatum};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{c_char, CString};

/// A registered snapshot of the latest committed state, for a key load to read under. It shows
/// every commit whose invalidation this backend had processed before it was taken.
pub struct Snapshot {
    ptr: pg_sys::Snapshot,
}

impl Snapshot {
    pub fn latest() -> Snapshot {
        // SAFETY: called from SQL-callable functions, inside a transaction. Registering copies
        // the static snapshot, so later snapshot calls cannot change it under us.
        unsafe {
            let now = if pg_sys::IsInParallelMode() {
                pg_sys::InvalidateCatalogSnapshot();
                pg_sys::GetCatalogSnapshot(pg_sys::InvalidOid)
            } else {
                pg_sys::GetLatestSnapshot()
            };
            Snapshot { ptr: pg_sys::RegisterSnapshot(now) }
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // While unwinding from an ERROR, leave it to (sub)transaction abort, which releases the
        // resource owner's snapshots; calling into PostgreSQL mid-error is what must not happen.
        if !std::thread::panicking() {
            // SAFETY: registered in latest() with the same resource owner.
            unsafe { pg_sys::UnregisterSnapshot(self.ptr) };
        }
    }
}

/// One result row.
pub struct Row {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl Row {
    /// Column `n` (1-based) as `T`; the query casts every column to the type it is read as.
    pub fn get<T: FromDatum>(&self, n: i32) -> Option<T> {
        // SAFETY: the tuple and descriptor belong to SPI_tuptable, alive until SPI_finish.
        unsafe {
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut isnull);
            T::from_polymorphic_datum(datum, isnull, pg_sys::SPI_gettypeid(self.desc, n))
        }
    }
}

/// Run a read-only `sql` with `args` under `snapshot`, mapping each row with `each` (which must
/// copy what it keeps: the rows are freed when SPI disconnects).
pub fn select<R>(snapshot: &Snapshot, sql: &str, args: &[DatumWithOid<'_>], each: impl FnMut(&Row) -> R) -> Vec<R> {
    let types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    Spi::connect(|_| {
        let plan = prepare(sql, &types);
        execute(plan, snapshot, args, each)
    })
}

/// A relation the query was meant to read no longer answers to its name (see `relation`): the
/// caller resolves it again and retries.
#[derive(Debug)]
pub struct Moved;

/// Like [`select`], for a query that reads a relation locked by name: the plan is made ready
/// first (revalidated, every lock taken), and it runs only if `still_named()` says the name still
/// means that relation by then (see `relation::Locked`).
pub fn select_from<R>(
    still_named: impl Fn() -> bool,
    snapshot: &Snapshot,
    sql: &str,
    args: &[DatumWithOid<'_>],
    each: impl FnMut(&Row) -> R,
) -> Result<Vec<R>, Moved> {
    let types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    Spi::connect(|_| {
        let plan = prepare(sql, &types);
        ready(plan, false, &still_named)?;
        Ok(execute(plan, snapshot, args, each))
    })
}

/// Revalidate `plan` and take all its locks now (a generic plan fetched and released), so that
/// nothing left before execution can process an invalidation; then check the name.
fn ready(plan: pg_sys::SPIPlanPtr, kept: bool, still_named: &dyn Fn() -> bool) -> Result<(), Moved> {
    // SAFETY: SPI is connected; a plan with one statement; the cached plan is released with the
    // owner SPI_plan_get_cached_plan used (the current resource owner for kept plans only).
    unsafe {
        let cplan = pg_sys::SPI_plan_get_cached_plan(plan);
        if !cplan.is_null() {
            pg_sys::ReleaseCachedPlan(cplan, if kept { pg_sys::CurrentResourceOwner } else { std::ptr::null_mut() });
        }
    }
    if still_named() {
        Ok(())
    } else {
        Err(Moved)
    }
}

/// A prepared read-only query kept across transactions (`SPI_keepplan`): the plan cache replans it
/// by itself when a relation it reads changes. Freed with [`Plan::free`]; never in a callback.
pub struct Plan {
    ptr: pg_sys::SPIPlanPtr,
    types: Vec<pg_sys::Oid>,
}

impl Plan {
    pub fn new(sql: &str, types: &[pg_sys::Oid]) -> Plan {
        Spi::connect(|_| {
            let ptr = prepare(sql, types);
            // SAFETY: a plan SPI_prepare just returned, in this SPI connection.
            if unsafe { pg_sys::SPI_keepplan(ptr) } != 0 {
                pgrx::error!("auth_jwt: SPI_keepplan failed");
            }
            Plan { ptr, types: types.to_vec() }
        })
    }

    /// Run the plan with `args` (of the types it was prepared for) under `snapshot`, if
    /// `still_named()` once the plan is ready (see [`select_from`]).
    pub fn select_from<R>(
        &self,
        still_named: impl Fn() -> bool,
        snapshot: &Snapshot,
        args: &[DatumWithOid<'_>],
        each: impl FnMut(&Row) -> R,
    ) -> Result<Vec<R>, Moved> {
        assert!(args.iter().map(|a| a.oid()).eq(self.types.iter().copied()), "auth_jwt: plan argument types");
        Spi::connect(|_| {
            ready(self.ptr, true, &still_named)?;
            Ok(execute(self.ptr, snapshot, args, each))
        })
    }

    pub fn free(self) {
        // SAFETY: kept by Plan::new, and not in use (plans are run only through &self).
        unsafe { pg_sys::SPI_freeplan(self.ptr) };
    }
}

fn prepare(sql: &str, types: &[pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    let sql = CString::new(sql).unwrap_or_else(|_| pgrx::error!("auth_jwt: query text contains NUL"));
    let mut types = types.to_vec();
    // SAFETY: SPI is connected (the callers run this inside Spi::connect).
    let plan = unsafe { pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr()) };
    if plan.is_null() {
        // SAFETY: a plain read of SPI's result code.
        let code = unsafe { pg_sys::SPI_result };
        pgrx::error!("auth_jwt: SPI_prepare failed ({code})");
    }
    plan
}

fn execute<R>(
    plan: pg_sys::SPIPlanPtr,
    snapshot: &Snapshot,
    args: &[DatumWithOid<'_>],
    mut each: impl FnMut(&Row) -> R,
) -> Vec<R> {
    let mut values: Vec<pg_sys::Datum> =
        args.iter().map(|a| a.datum().map_or(pg_sys::Datum::from(0usize), |d| d.sans_lifetime())).collect();
    let nulls: Vec<c_char> = args.iter().map(|a| if a.datum().is_some() { b' ' } else { b'n' } as c_char).collect();
    // SAFETY: SPI is connected; the plan, values and nulls live until the call returns; the tuple
    // table is read before SPI_finish frees it.
    unsafe {
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            snapshot.ptr,
            std::ptr::null_mut(),
            true,
            false,
            0,
        );
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            pgrx::error!("auth_jwt: a read of a configured relation failed (SPI code {rc})");
        }
        let table = pg_sys::SPI_tuptable;
        (0..pg_sys::SPI_processed as usize)
            .map(|i| each(&Row { tuple: *(*table).vals.add(i), desc: (*table).tupdesc }))
            .collect()
    }
}
