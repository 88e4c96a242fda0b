//! Shared memory, when auth_jwt is in `shared_preload_libraries`: one area sized at server start
//! and one LWLock guarding what in it is not atomic. (What lives there: `jwks_shared`.) Without
//! preload there is none, and `area()` says so.

use pgrx::pg_sys;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

const NAME: &std::ffi::CStr = c"auth_jwt";

static SIZE: AtomicUsize = AtomicUsize::new(0);
static AREA: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static LOCK: AtomicPtr<pg_sys::LWLock> = AtomicPtr::new(std::ptr::null_mut());
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// The library is being loaded by `shared_preload_libraries` (only then can it ask for memory).
pub fn preloading() -> bool {
    // SAFETY: a plain global of miscinit.c, read in _PG_init.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// Ask for `size` bytes, zeroed at server start; call from `_PG_init` while preloading.
pub fn request(size: usize) {
    SIZE.store(size, Ordering::Relaxed);
    // SAFETY: hooks are chained in _PG_init, in the postmaster, before any other process exists.
    unsafe {
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_startup);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_request() {
    // SAFETY: called by the postmaster in its shmem request phase, as the hook contract says.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(SIZE.load(Ordering::Relaxed));
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), 1);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: called once per shared memory (re)initialisation, under AddinShmemInitLock as
    // every extension does (index 21 of the main array, as pgrx's own PgLwLock takes it).
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let size = SIZE.load(Ordering::Relaxed);
        let mut found = false;
        let area = pg_sys::ShmemInitStruct(NAME.as_ptr(), size, &mut found).cast::<u8>();
        if !found {
            std::ptr::write_bytes(area, 0, size);
        }
        AREA.store(area, Ordering::Release);
        LOCK.store(&raw mut (*pg_sys::GetNamedLWLockTranche(NAME.as_ptr())).lock, Ordering::Release);
        pg_sys::LWLockRelease(init_lock);
    }
}

/// The area, if auth_jwt was preloaded (its size is what `request` asked for).
pub fn area() -> Option<*mut u8> {
    let p = AREA.load(Ordering::Acquire);
    (!p.is_null()).then_some(p)
}

/// The LWLock, held until dropped. An ERROR while it is held releases it too
/// (LWLockReleaseAll at abort), so holders only copy memory.
pub struct Held;

pub fn lock(exclusive: bool) -> Held {
    let lock = LOCK.load(Ordering::Acquire);
    assert!(!lock.is_null(), "auth_jwt's shared memory is not attached");
    let mode = if exclusive { pg_sys::LWLockMode::LW_EXCLUSIVE } else { pg_sys::LWLockMode::LW_SHARED };
    // SAFETY: the tranche's lock, set up in on_startup.
    unsafe { pg_sys::LWLockAcquire(lock, mode) };
    Held
}

impl Drop for Held {
    fn drop(&mut self) {
        let lock = LOCK.load(Ordering::Acquire);
        // SAFETY: taken by lock(); if an ERROR already released it, LWLockHeldByMe says so.
        unsafe {
            if pg_sys::LWLockHeldByMe(lock) {
                pg_sys::LWLockRelease(lock);
            }
        }
    }
}

/// Sleep on this process's latch for at most `ms`, then handle interrupts (a cancel raises here).
pub fn nap(ms: i64) {
    // SAFETY: the process's own latch; WL_EXIT_ON_PM_DEATH ends the process with the postmaster.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
}
