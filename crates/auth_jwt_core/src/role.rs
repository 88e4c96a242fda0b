//! Which database role a verified request runs as, when the extension switches it (PostgREST's
//! `db-pre-request`; see the extension's `request_role`). By default every verified request gets
//! the one configured role (`auth_jwt.authenticated_role`). A claim in the token (Better Auth's
//! admin plugin puts `role: "user"` or `"admin"` there) decides only through an allow-list the DBA
//! writes, `auth_jwt.role_claim_map`: `claim value=role` pairs. A value the list does not name, a
//! missing claim, or one that is not a string gets the default role: a token can only ever pick
//! among the roles the DBA listed.

use crate::json::{Json, Object};

/// The parsed `auth_jwt.role_claim_map`: claim value -> role name, in the order written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoleMap {
    entries: Vec<(String, String)>,
}

/// The longest role name PostgreSQL keeps (NAMEDATALEN - 1 bytes).
const MAX_ROLE_NAME: usize = 63;

impl RoleMap {
    /// `value=role, value=role, ...` (spaces around names are ignored; empty: no entry). A value
    /// named twice is refused, so that the list cannot say two things.
    pub fn parse(s: &str) -> Result<RoleMap, String> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (value, role) = item
                .split_once('=')
                .map(|(v, r)| (v.trim(), r.trim()))
                .filter(|(v, r)| !v.is_empty() && !r.is_empty() && !r.contains('='))
                .ok_or_else(|| format!("\"{item}\" is not of the form claim value=role"))?;
            if role.len() > MAX_ROLE_NAME {
                return Err(format!("role \"{role}\" is longer than {MAX_ROLE_NAME} bytes"));
            }
            if entries.iter().any(|(v, _)| v == value) {
                return Err(format!("the claim value \"{value}\" is mapped twice"));
            }
            entries.push((value.to_owned(), role.to_owned()));
        }
        Ok(RoleMap { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The role for a token whose role claim is `claim` (exact string match), if listed.
    pub fn role_for(&self, claim: Option<&str>) -> Option<&str> {
        let claim = claim?;
        self.entries.iter().find(|(v, _)| v == claim).map(|(_, r)| r.as_str())
    }

    /// Every role the list can switch to.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(_, r)| r.as_str())
    }
}

/// The role claim's value, if it is a string.
pub fn role_claim<'a>(claims: Object<'a>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Json::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_picks_by_exact_value() {
        let m = RoleMap::parse(" admin = app_admin ,user=authenticated,").unwrap();
        assert_eq!(m.role_for(Some("admin")), Some("app_admin"));
        assert_eq!(m.role_for(Some("user")), Some("authenticated"));
        assert_eq!(m.role_for(Some("Admin")), None, "exact, case-sensitive");
        assert_eq!(m.role_for(Some("admin,user")), None, "the admin plugin's several roles are not split");
        assert_eq!(m.role_for(None), None);
        assert_eq!(m.roles().collect::<Vec<_>>(), ["app_admin", "authenticated"]);
        assert!(RoleMap::parse("").unwrap().is_empty());
        assert!(RoleMap::parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_list_of_pairs() {
        for bad in ["admin", "=x", "admin=", "a=b=c", "a=x, a=y"] {
            assert!(RoleMap::parse(bad).is_err(), "{bad}");
        }
        assert!(RoleMap::parse(&format!("a={}", "r".repeat(64))).is_err());
        assert!(RoleMap::parse(&format!("a={}", "r".repeat(63))).is_ok());
    }
}
