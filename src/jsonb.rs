//! Claims to `jsonb` without re-parsing: the payload was already parsed (strictly) by the core,
//! so build the jsonb from that tree with pushJsonbValue. jsonb_in would lex the text again and
//! cost more than a tenth of a full verification. Exactness: strings, booleans, null and
//! integers map one to one (integers through int64_to_numeric); a payload with any non-integer
//! or out-of-i64 number goes through jsonb_in on the original text instead, so "1.50" stays 1.50.

use pgrx::pg_sys;
use serde_json::{Map, Value};
use std::ffi::c_char;

/// A palloc'd jsonb for the verified payload (`text` is the payload exactly as signed).
pub fn from_claims(claims: &Map<String, Value>, text: &str) -> *mut pg_sys::varlena {
    if all_exact(claims) {
        // SAFETY: every JsonbValue pushed points into `claims`, which outlives the conversion.
        unsafe {
            let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
            let root = push_object(&mut state, claims);
            return pg_sys::JsonbValueToJsonb(root).cast();
        }
    }
    let mut cstr = text.as_bytes().to_vec();
    cstr.push(0);
    // SAFETY: jsonb_in takes a NUL-terminated cstring (the payload has no NUL inside).
    unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::jsonb_in,
            &[Some(pg_sys::Datum::from(cstr.as_ptr() as *mut c_char))],
        )
        .unwrap_or(pg_sys::Datum::from(0usize))
        .cast_mut_ptr()
    }
}

#[cfg(not(feature = "pg13"))]
unsafe fn numeric_of(i: i64) -> pg_sys::Numeric {
    unsafe { pg_sys::int64_to_numeric(i) }
}

/// PostgreSQL 13 has no int64_to_numeric; int8_numeric is the same conversion through fmgr.
#[cfg(feature = "pg13")]
unsafe fn numeric_of(i: i64) -> pg_sys::Numeric {
    unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(pg_sys::int8_numeric, &[Some(pg_sys::Datum::from(i))])
            .unwrap_or(pg_sys::Datum::from(0usize))
            .cast_mut_ptr()
    }
}

fn all_exact(map: &Map<String, Value>) -> bool {
    fn exact(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.is_i64(),
            Value::Array(a) => a.iter().all(exact),
            Value::Object(o) => all_exact(o),
            _ => true,
        }
    }
    map.values().all(exact)
}

fn string(s: &str) -> pg_sys::JsonbValue {
    let mut v = pg_sys::JsonbValue { type_: pg_sys::jbvType::jbvString, ..Default::default() };
    v.val.string =
        pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 { len: s.len() as i32, val: s.as_ptr() as *mut c_char };
    v
}

unsafe fn push_object(state: &mut *mut pg_sys::JsonbParseState, map: &Map<String, Value>) -> *mut pg_sys::JsonbValue {
    unsafe {
        pg_sys::pushJsonbValue(state, pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT, std::ptr::null_mut());
        for (k, v) in map {
            let mut key = string(k);
            pg_sys::pushJsonbValue(state, pg_sys::JsonbIteratorToken::WJB_KEY, &mut key);
            push_value(state, v, pg_sys::JsonbIteratorToken::WJB_VALUE);
        }
        pg_sys::pushJsonbValue(state, pg_sys::JsonbIteratorToken::WJB_END_OBJECT, std::ptr::null_mut())
    }
}

unsafe fn push_value(state: &mut *mut pg_sys::JsonbParseState, v: &Value, token: pg_sys::JsonbIteratorToken::Type) {
    unsafe {
        let mut scalar = match v {
            Value::Object(o) => {
                push_object(state, o);
                return;
            }
            Value::Array(a) => {
                pg_sys::pushJsonbValue(state, pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY, std::ptr::null_mut());
                for e in a {
                    push_value(state, e, pg_sys::JsonbIteratorToken::WJB_ELEM);
                }
                pg_sys::pushJsonbValue(state, pg_sys::JsonbIteratorToken::WJB_END_ARRAY, std::ptr::null_mut());
                return;
            }
            Value::String(s) => string(s),
            Value::Null => pg_sys::JsonbValue { type_: pg_sys::jbvType::jbvNull, ..Default::default() },
            Value::Bool(b) => {
                let mut j = pg_sys::JsonbValue { type_: pg_sys::jbvType::jbvBool, ..Default::default() };
                j.val.boolean = *b;
                j
            }
            Value::Number(n) => {
                let mut j = pg_sys::JsonbValue { type_: pg_sys::jbvType::jbvNumeric, ..Default::default() };
                j.val.numeric = numeric_of(n.as_i64().unwrap_or(0));
                j
            }
        };
        pg_sys::pushJsonbValue(state, token, &mut scalar);
    }
}
