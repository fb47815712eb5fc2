//! `[collector.schemas]` in `strata.toml`: what the collector does with an event that breaks
//! its subject's schema, and the compatibility mode of subjects that have none of their own.
//!
//! ```toml
//! [collector.schemas]
//! validate = true
//! on_violation = "reject"        # or "tag"
//! compatibility = "backward"     # none, backward, forward, full, and *_transitive
//! [collector.schemas.subjects."Post Clicked"]
//! on_violation = "tag"
//! compatibility = "full"
//! ```
//!
//! A level set over HTTP (`PUT /registry/config`, `PUT /registry/config/{subject}`) is kept
//! in the registry file and wins over these defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compat::Compatibility;

/// What the collector does with an event that breaks its subject's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refused: the event goes to the dead-letter table (`ods.ods_event_rejected`) with the
    /// violation's JSON pointer in its reason, and the request's per-item error says it.
    #[default]
    Reject,
    /// Accepted and marked: `context.schema_violation` holds the violation.
    Tag,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::Tag => "tag",
        }
    }
}

/// One subject's own settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubjectSettings {
    /// This subject's action on a violation (default: `on_violation` of the section).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_violation: Option<Action>,
    /// This subject's compatibility mode (default: `compatibility` of the section).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<Compatibility>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemasConfig {
    /// Validate events whose subject (the track event's name, or the call type: `identify`,
    /// `page`, …) has a registered schema. Off: schemas are kept and served, never enforced.
    pub validate: bool,
    /// What happens to an event that breaks its schema: `reject` (dead-letter table) or `tag`
    /// (accepted, with `context.schema_violation`).
    pub on_violation: Action,
    /// Compatibility mode of subjects without their own, checked when a version is
    /// registered: `none`, `backward`, `forward`, `full`, or their `_transitive` forms.
    pub compatibility: Compatibility,
    /// Per-subject `on_violation` and `compatibility`, keyed by subject name.
    pub subjects: BTreeMap<String, SubjectSettings>,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        Self {
            validate: true,
            on_violation: Action::Reject,
            compatibility: Compatibility::Backward,
            subjects: BTreeMap::new(),
        }
    }
}

/// Longest subject name, in characters (the collector's longest event name).
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Checks a subject name: not empty, at most [`MAX_SUBJECT_CHARS`], no control characters.
pub fn check_subject(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a subject name must not be empty".to_string());
    }
    if name.chars().count() > MAX_SUBJECT_CHARS {
        return Err(format!(
            "subject {name:?} is longer than {MAX_SUBJECT_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("subject {name:?} contains control characters"));
    }
    Ok(())
}

impl SchemasConfig {
    /// Every problem of the section, one message each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let problems: Vec<String> = self
            .subjects
            .keys()
            .filter_map(|s| check_subject(s).err())
            .map(|e| format!("collector.schemas.subjects: {e}"))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The action for `subject`.
    pub fn action(&self, subject: &str) -> Action {
        self.subjects
            .get(subject)
            .and_then(|s| s.on_violation)
            .unwrap_or(self.on_violation)
    }
}
