//! Claims to `jsonb`. The core writes jsonb's binary format straight from the parsed claims
//! (`auth_jwt_core::jsonb`); a payload with a number it cannot write exactly (a fraction, an
//! integer beyond i64) goes through jsonb_in on the payload text as signed, so "1.50" stays 1.50.

use auth_jwt_core::Doc;
use pgrx::pg_sys;
use std::ffi::c_char;

/// The verified payload as a complete `jsonb` varlena.
pub fn from_claims(claims: &Doc) -> Box<[u8]> {
    if let Some(bytes) = auth_jwt_core::jsonb::encode(claims.root()) {
        return bytes.into_boxed_slice();
    }
    let mut cstr = claims.text().as_bytes().to_vec();
    cstr.push(0);
    // SAFETY: jsonb_in takes a NUL-terminated cstring (the payload has no NUL inside) and
    // returns a complete palloc'd varlena, copied and then freed here.
    unsafe {
        let p: *mut pg_sys::varlena = pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::jsonb_in,
            &[Some(pg_sys::Datum::from(cstr.as_ptr() as *mut c_char))],
        )
        .unwrap_or(pg_sys::Datum::from(0usize))
        .cast_mut_ptr();
        let len = pgrx::varlena::varsize_any(p);
        let bytes = std::slice::from_raw_parts(p as *const u8, len).to_vec().into_boxed_slice();
        pg_sys::pfree(p.cast());
        bytes
    }
}
