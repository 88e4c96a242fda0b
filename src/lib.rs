//! auth_jwt: verify Better Auth JWTs inside PostgreSQL.
//!
//! A thin layer over `auth_jwt_core`: settings, the key store (SPI + cache + invalidation),
//! session binding, the request's token source, the SQL functions, and the mapping of errors to
//! SQLSTATEs.

use pgrx::prelude::*;

// Layered: each module imports only modules above it in this list (ARCHITECTURE.md draws it;
// scripts/check-layers keeps it true).
mod citus;
mod diagnostics;
mod errors;
mod fmgr;
mod functions;
mod jsonb;
mod jwks_fetch;
mod jwks_shared;
mod jwks_url;
mod key_source;
mod key_table;
mod key_watch;
mod keyring;
mod relation;
mod request;
mod request_role;
mod sessions;
mod settings;
mod shmem;
mod snapshot_query;
mod stats;
mod token_cache;
mod token_forward;
mod token_source;
mod verify;
mod watch;
mod xact;

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
    if shmem::preloading() {
        // Once in the postmaster instead of in every backend's first verification.
        auth_jwt_core::warm_up();
    }
    jwks_shared::init();
    xact::init();
    token_forward::init();
    sessions::init();
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
