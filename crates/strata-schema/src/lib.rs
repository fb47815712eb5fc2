//! Strata's event schema registry (ADR 0054, docs/schemas.md).
//!
//! - `schema.rs`: the supported subset of JSON Schema, compiled once (`Schema::parse`);
//!   unsupported keywords refuse the schema with their location.
//! - `scan.rs`: the fast path, the instance checked while it is parsed (no tree, no pointer),
//!   answering only valid / not valid; what the collector runs first for every event.
//! - `value.rs`, `validate.rs`: the instance parsed once (borrowing its text) and walked;
//!   violations carry a JSON pointer (`/properties/post_id: expected integer, got string`).
//!   Run when the fast path says no, for the exact violation.
//! - `compat.rs`: the compatibility modes (backward, forward, full, their transitive forms,
//!   none), decided structurally on compiled schemas.
//! - `registry.rs`: subjects, versions, ids and levels in `<data>/schema_registry.json`,
//!   shared by every process on the data directory.
//! - `project.rs`: schemas kept in the warehouse project (`<project>/schemas/`), checked by
//!   `strata check` and registered by `serve`.
//! - `http.rs`: the Confluent-style REST API `serve` mounts under `/registry`.
//! - `infer.rs`, `views.rs`: schema proposals from seen events, and typed-column models.
//! - `config.rs`: `[collector.schemas]`.
//!
//! The collector calls [`check_event`] for events whose subject has a schema.

pub mod compat;
pub mod config;
mod error;
pub mod http;
pub mod infer;
pub mod project;
pub mod registry;
mod scan;
pub mod schema;
pub mod validate;
pub mod value;
pub mod views;

use std::fmt;

pub use compat::Compatibility;
pub use config::{Action, SchemasConfig};
pub use error::{Error, Result};
pub use registry::{Latest, Registry, Snapshot};
pub use schema::Schema;
pub use validate::Violation;
pub use value::Val;

/// An event that breaks its subject's latest schema.
#[derive(Debug, Clone)]
pub struct EventViolation {
    pub subject: String,
    pub version: u32,
    pub violation: Violation,
}

impl fmt::Display for EventViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "schema violation ({} v{}): {}",
            self.subject, self.version, self.violation
        )
    }
}

/// The subject of an event: the track event's name, else the call type.
pub fn subject_of<'a>(kind: &'a str, event: Option<&'a str>) -> &'a str {
    match (kind, event) {
        ("track", Some(name)) => name,
        _ => kind,
    }
}

/// Validates the part of an event its call type's schema covers: `properties` for track,
/// page and screen, `traits` for identify and group (alias: nothing). An absent part is
/// validated as `{}`. `None` when the subject has no schema or the event is valid.
pub fn check_event(
    snapshot: &Snapshot,
    kind: &str,
    event: Option<&str>,
    properties: Option<&str>,
    traits: Option<&str>,
) -> Option<EventViolation> {
    let latest = snapshot.latest(subject_of(kind, event))?;
    check_event_against(latest, kind, properties, traits)
}

/// [`check_event`] against the subject's latest schema already looked up (the collector
/// looks it up once per event, to count the events it validates).
///
/// The fast path (`scan.rs`) decides while parsing; only an event it refuses is parsed into a
/// tree and walked, for the first violation and its pointer (or the parse error).
pub fn check_event_against(
    latest: &Latest,
    kind: &str,
    properties: Option<&str>,
    traits: Option<&str>,
) -> Option<EventViolation> {
    let (text, base) = match kind {
        "identify" | "group" => (traits, "/traits"),
        "alias" => return None,
        _ => (properties, "/properties"),
    };
    if latest.schema.accepts(text.unwrap_or("{}")) {
        return None;
    }
    let parsed = match text {
        Some(t) => Val::parse(t),
        None => Ok(Val::Obj(Vec::new())),
    };
    let result = match parsed {
        Ok(v) => latest.schema.validate(&v, base),
        Err(e) => Err(Violation {
            path: base.to_string(),
            message: format!("not JSON: {e}"),
        }),
    };
    result.err().map(|violation| EventViolation {
        subject: latest.subject.clone(),
        version: latest.version,
        violation,
    })
}
