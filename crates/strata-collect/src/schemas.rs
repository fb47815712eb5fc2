//! Events checked against their subject's registered JSON Schema (strata-schema, ADR 0054).
//!
//! The subject is the track event's name, or the call type for the others; track, page and
//! screen validate `properties`, identify and group validate `traits`, alias nothing. An event
//! whose subject has no schema costs one hash lookup; with no schema registered at all, not
//! even that (the request takes the registry's snapshot once and skips the check when it is
//! empty). An event whose subject has one is checked while its part is parsed, building no
//! tree and no path (strata-schema `scan.rs`); only a violation is parsed again and walked
//! for its JSON pointer. On a violation, `[collector.schemas]` decides per subject:
//! - `reject`: the event is refused like any invalid event (dead-letter table, per-item
//!   error) with the reason `schema violation (<subject> v<n>): <pointer>: <what>`;
//! - `tag`: the event is accepted with that reason in `context.schema_violation`, so
//!   `json_get_str(context, 'schema_violation') IS NOT NULL` finds it in `ods.ods_event`.

use std::borrow::Cow;

use strata_core::EventView;
use strata_schema::{Action, SchemasConfig, Snapshot};

/// The key tag mode adds to an event's context.
pub const TAG_KEY: &str = "schema_violation";

/// A refusal: (metrics kind, reason, the event's message id).
pub type Refusal = (&'static str, String, String);

/// Checks `event` against `snapshot`; returns it (tagged when the action says so) or a
/// refusal. `validated` counts the events whose subject has a schema.
pub fn check<'p>(
    snapshot: &Snapshot,
    config: &SchemasConfig,
    mut event: EventView<'p>,
    validated: &mut u64,
) -> Result<EventView<'p>, Refusal> {
    let subject = strata_schema::subject_of(&event.kind, event.event.as_deref());
    // One lookup: the schema found is the one checked.
    let Some(latest) = snapshot.latest(subject) else {
        return Ok(event);
    };
    *validated += 1;
    let Some(violation) = strata_schema::check_event_against(
        latest,
        &event.kind,
        event.properties.as_deref(),
        event.traits.as_deref(),
    ) else {
        return Ok(event);
    };
    let action = config.action(&violation.subject);
    metrics::counter!(
        "strata_collect_schema_violations_total",
        "subject" => violation.subject.clone(),
        "action" => action.as_str()
    )
    .increment(1);
    let reason = violation.to_string();
    match action {
        Action::Reject => Err(("schema_violation", reason, event.message_id.to_string())),
        Action::Tag => {
            event.context = Some(Cow::Owned(tag(event.context.as_deref(), reason)));
            Ok(event)
        }
    }
}

/// The context JSON with `schema_violation` set (an absent context becomes an object).
fn tag(context: Option<&str>, reason: String) -> String {
    let mut object = context
        .and_then(|c| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(c).ok())
        .unwrap_or_default();
    object.insert(TAG_KEY.to_string(), serde_json::Value::String(reason));
    serde_json::Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keeps_the_context() {
        let t = tag(
            Some(r#"{"ip":"1.2.3.4","app":{"version":"1"}}"#),
            "bad".into(),
        );
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["ip"], "1.2.3.4");
        assert_eq!(v["app"]["version"], "1");
        assert_eq!(v[TAG_KEY], "bad");
        assert_eq!(tag(None, "x".into()), r#"{"schema_violation":"x"}"#);
    }
}
