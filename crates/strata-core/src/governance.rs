//! `[governance]`: which columns are sensitive, which roles may see them, and the access log.
//!
//! A column is tagged (e.g. `pii`) by naming it under a tag; a tag says how the column looks to a
//! role that is not granted it (`null`, a keyed `hash`, or `partial`). A role lists the tags it
//! sees unmasked. Who acts as which role: a REST catalog token carries a role
//! (`strata tokens create --role`), `strata sql --role` runs a session as one. No role means
//! the lake's owner (the data directory's), who sees everything.
//!
//! This module is pure: the SQL engine and the REST catalog apply [`GovernanceConfig::masks`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a masked column reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// The first characters replaced by `*`, the last 4 kept (`*******4321`); values of 4
    /// characters or fewer are all `*`. Text.
    Partial,
    /// A keyed SHA-256 of the value, hex (`mask:` + 64 digits): equal values mask equal (joins and
    /// distinct counts still work), the value cannot be recovered without the lake's mask key.
    /// Text.
    Hash,
    /// Always NULL (the column's type is kept).
    Null,
}

/// `[[governance.tags]]`: one tag and the columns that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    /// The tag, e.g. `pii`; roles grant it by this name.
    pub name: String,
    /// How tagged columns read to a role without the grant: `null`, `hash` or `partial`.
    #[serde(default = "default_mask")]
    pub mask: MaskKind,
    /// The tagged columns as `namespace.table.column`, e.g. `ods.ods_users.phone`.
    #[serde(default)]
    pub columns: Vec<String>,
}

fn default_mask() -> MaskKind {
    MaskKind::Null
}

/// `[[governance.roles]]`: a role and the tags it sees unmasked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The role's name (`strata tokens create --role NAME`, `strata sql --role NAME`).
    pub name: String,
    /// Tags whose columns this role reads as they are; every other tagged column is masked.
    #[serde(default)]
    pub unmask: Vec<String>,
}

/// `[governance]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// Column tags (`[[governance.tags]]`). None by default.
    pub tags: Vec<TagConfig>,
    /// Roles (`[[governance.roles]]`). None by default.
    pub roles: Vec<RoleConfig>,
    /// Record every REST catalog call, `strata sql` statement and admin command in the
    /// `audit.access_log` table.
    pub audit: bool,
    /// `strata serve` deletes access-log rows older than this (once a day).
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
    /// `strata serve` appends buffered access-log rows this often (one commit each).
    #[serde(with = "humantime_serde")]
    pub audit_flush_interval: Duration,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            tags: Vec::new(),
            roles: Vec::new(),
            audit: true,
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            audit_flush_interval: Duration::from_secs(5),
        }
    }
}

/// A role name that `[governance]` does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl std::fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no role named {:?} ([[governance.roles]] in strata.toml defines roles)",
            self.0
        )
    }
}

impl GovernanceConfig {
    /// Pure checks: names valid and unique, columns as `namespace.table.column`, roles grant
    /// only tags that exist. Every problem, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut tags = BTreeMap::new();
        for tag in &self.tags {
            if let Err(e) = crate::names::check_name("governance.tags name", &tag.name) {
                problems.push(e);
            }
            if tags.insert(tag.name.as_str(), tag).is_some() {
                problems.push(format!(
                    "governance.tags: two tags are named {:?}",
                    tag.name
                ));
            }
            for column in &tag.columns {
                if let Err(e) = split_column(column) {
                    problems.push(format!("governance.tags {:?}: {e}", tag.name));
                }
            }
        }
        let mut roles = std::collections::BTreeSet::new();
        for role in &self.roles {
            if let Err(e) = crate::names::check_name("governance.roles name", &role.name) {
                problems.push(e);
            }
            if !roles.insert(role.name.as_str()) {
                problems.push(format!(
                    "governance.roles: two roles are named {:?}",
                    role.name
                ));
            }
            for t in &role.unmask {
                if !tags.contains_key(t.as_str()) {
                    problems.push(format!(
                        "governance.roles {:?} unmasks {t:?}, which no [[governance.tags]] defines",
                        role.name
                    ));
                }
            }
        }
        if self.audit_flush_interval.is_zero() {
            problems.push("governance.audit_flush_interval must be positive".to_string());
        }
        if self.audit_retention < Duration::from_secs(24 * 3600) {
            problems.push("governance.audit_retention must be at least 1 day".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Whether `role` is defined.
    pub fn role(&self, role: &str) -> Result<&RoleConfig, UnknownRole> {
        self.roles
            .iter()
            .find(|r| r.name == role)
            .ok_or_else(|| UnknownRole(role.to_string()))
    }

    /// The columns of `namespace.table` that `role` reads masked, each with its mask (where two
    /// tags mask one column, the stricter mask wins: null over hash over partial). `None` (the
    /// lake's owner) masks nothing.
    pub fn masks(
        &self,
        role: Option<&str>,
        namespace: &str,
        table: &str,
    ) -> Result<BTreeMap<String, MaskKind>, UnknownRole> {
        let mut out = BTreeMap::new();
        let Some(role) = role else {
            return Ok(out);
        };
        let role = self.role(role)?;
        for tag in &self.tags {
            if role.unmask.contains(&tag.name) {
                continue;
            }
            for column in &tag.columns {
                if let Ok((ns, t, c)) = split_column(column) {
                    if ns == namespace && t == table {
                        let e = out.entry(c.to_string()).or_insert(tag.mask);
                        *e = (*e).max(tag.mask);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether any tag names a column of `namespace.table`.
    pub fn has_tagged_columns(&self, namespace: &str, table: &str) -> bool {
        self.tags
            .iter()
            .flat_map(|t| &t.columns)
            .any(|c| split_column(c).is_ok_and(|(ns, t, _)| ns == namespace && t == table))
    }
}

/// `namespace.table.column` → its three parts.
fn split_column(text: &str) -> Result<(&str, &str, &str), String> {
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [ns, t, c] if !ns.is_empty() && !t.is_empty() && !c.is_empty() => Ok((ns, t, c)),
        _ => Err(format!(
            "column {text:?} must be written namespace.table.column (e.g. ods.ods_users.phone)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GovernanceConfig {
        let text = r#"
            [[tags]]
            name = "pii"
            mask = "hash"
            columns = ["ods.ods_users.phone", "ods.ods_users.email"]
            [[tags]]
            name = "national_id"
            mask = "null"
            columns = ["ods.ods_users.id_card", "ods.ods_users.phone"]
            [[roles]]
            name = "analyst"
            [[roles]]
            name = "support"
            unmask = ["pii"]
        "#;
        toml::from_str(text).unwrap()
    }

    #[test]
    fn masks_per_role() {
        let g = config();
        g.validate().unwrap();
        assert!(g.masks(None, "ods", "ods_users").unwrap().is_empty());
        let analyst = g.masks(Some("analyst"), "ods", "ods_users").unwrap();
        assert_eq!(analyst.get("email"), Some(&MaskKind::Hash));
        assert_eq!(analyst.get("id_card"), Some(&MaskKind::Null));
        assert_eq!(
            analyst.get("phone"),
            Some(&MaskKind::Null),
            "the stricter mask wins"
        );
        assert_eq!(analyst.len(), 3);
        let support = g.masks(Some("support"), "ods", "ods_users").unwrap();
        assert_eq!(support.len(), 2, "{support:?}");
        assert_eq!(support.get("phone"), Some(&MaskKind::Null));
        assert!(!support.contains_key("email"));
        assert!(g
            .masks(Some("analyst"), "ods", "ods_posts")
            .unwrap()
            .is_empty());
        assert_eq!(
            g.masks(Some("nobody"), "ods", "ods_users").unwrap_err(),
            UnknownRole("nobody".into())
        );
        assert!(g.has_tagged_columns("ods", "ods_users"));
        assert!(!g.has_tagged_columns("ods", "ods_posts"));
    }

    #[test]
    fn every_problem_is_reported() {
        let text = r#"
            [[tags]]
            name = "pii"
            columns = ["ods_users.phone"]
            [[tags]]
            name = "pii"
            [[roles]]
            name = "a/b"
            unmask = ["secret"]
        "#;
        let g: GovernanceConfig = toml::from_str(text).unwrap();
        let err = g.validate().unwrap_err();
        assert!(err.contains("namespace.table.column"), "{err}");
        assert!(err.contains("two tags are named"), "{err}");
        assert!(err.contains("path separator"), "{err}");
        assert!(err.contains("unmasks \"secret\""), "{err}");
        assert_eq!(err.lines().count(), 4, "{err}");
    }
}
