//! Which key source is in force: Better Auth's JWKS endpoint when `auth_jwt.jwks_url` is set
//! (one document for the whole server when auth_jwt is preloaded, else each backend's own),
//! otherwise its `jwks` table. Verification, the per-request memo, `jwt_explain` and `jwks_keys()`
//! all ask here, through the one interface (`keyring::KeySource`).

use crate::jwks_shared::{self, SharedJwksUrl};
use crate::jwks_url::JwksUrl;
use crate::key_table::KeyTable;
use crate::keyring::KeySource;
use crate::settings;

pub use crate::keyring::generation;

/// The source keys come from now.
pub fn source() -> &'static dyn KeySource {
    if settings::keys_from_url() {
        if jwks_shared::active() {
            &SharedJwksUrl
        } else {
            &JwksUrl
        }
    } else {
        &KeyTable
    }
}
