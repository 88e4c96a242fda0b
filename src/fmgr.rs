//! Version-1 C functions without pgrx's conversion layer: the info record PostgreSQL looks up for
//! each, and reading a text argument. The verifying functions are written this way so that the
//! per-row path returns cached datums directly.

use pgrx::pg_sys;

/// `v1!(pg_finfo_NAME)`: the info record that tells PostgreSQL `NAME` is a version-1 function.
macro_rules! v1_ {
    ($finfo:ident) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pgrx::pg_sys::Pg_finfo_record {
            const V1: pgrx::pg_sys::Pg_finfo_record = pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}
pub(crate) use v1_ as v1;

/// Argument `n` of a STRICT function taking text.
///
/// # Safety
/// `fcinfo` is the call's, and argument `n` is a non-null text datum (the function is STRICT).
pub unsafe fn text_arg<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> &'a str {
    // SAFETY: see above.
    unsafe { pgrx::fcinfo::pg_getarg::<&str>(fcinfo, n).unwrap_or("") }
}
