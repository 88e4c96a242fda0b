//! auth_jwt: verify Better Auth JWTs inside PostgreSQL.
//!
//! A thin layer over `auth_jwt_core`: settings, the key store (SPI + cache + invalidation),
//! session binding, the request's token source, the SQL functions, and the mapping of errors to
//! SQLSTATEs.

use pgrx::prelude::*;

mod diagnostics;
mod errors;
mod functions;
mod jsonb;
mod jwks_url;
mod key_source;
mod key_watch;
mod keys;
mod relation;
mod request_role;
mod sessions;
mod settings;
mod snapshot_query;
mod stats;
mod token_cache;
mod token_source;
mod verify;

::pgrx::pg_module_magic!(name, version);

/// Schema `auth_jwt`: created by the extension script, so DROP EXTENSION removes it.
#[pg_schema]
mod auth_jwt {}
extension_sql_file!("../sql/functions.sql", name = "functions", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx captures a Rust backtrace with every error when these are set, and can put it in the
    // error's DETAIL: internals for any client to read, and a cost on every refused token. A
    // backend is single-threaded, and no Rust has run in it before this.
    std::env::remove_var("RUST_BACKTRACE");
    std::env::remove_var("RUST_LIB_BACKTRACE");
    settings::init();
    relation::init();
    keys::init();
    sessions::init();
}

/// This backend is a parallel worker (it has the leader's settings, not its state or caches).
pub(crate) fn is_parallel_worker() -> bool {
    // SAFETY: a plain global of parallel.c.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
