//! The stream half of a view file: `kind = "stream"` views are keyed windowed aggregates over
//! the event stream, computed by the `realtime` consumer inside `strata serve` (crate
//! `strata-stream`) and served through the same feature API as batch views.
//!
//! ```toml
//! kind = "stream"
//! description = "What each user did in the last minutes and hours"
//! entity = "user_id"
//! key = "user_id"                  # the event field the entity comes from (default: the entity)
//! key_type = "int64"               # or "string" (default)
//! allowed_lateness = "1m"
//! ttl = "2d"
//!
//! [[aggregates]]
//! name = "clicks_5m"
//! function = "count"               # count | sum | min | max | avg | distinct_count | last
//! window = "5m"                    # sliding, moving every `slide` (default: window / 10)
//! events = ["Post Clicked"]
//!
//! [[aggregates]]
//! name = "last_5_clicked_post_ids"
//! function = "last"
//! n = 5
//! field = "properties.post_id"
//! type = "int64"
//! events = ["Post Clicked"]
//! ```
//!
//! Fields are event columns (`user_id`, `anonymous_id`, `message_id`, `event`, `type`, `ip`,
//! `country`, `device`, `os`, `app`, `app_version`, `user_agent`) or `properties.<path>` /
//! `context.<path>` / `traits.<path>` (dots walk into objects). `where` compares fields with
//! values: `where = { "properties.surface" = "feed" }`.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;
use std::sync::Arc;

use crate::view::KeyKind;

/// The lake table a stream view backfills from (and what its grants are checked against).
pub const EVENTS_TABLE: &str = "ods.ods_event";

/// One `[[aggregates]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateFile {
    pub name: String,
    pub function: String,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// How often a sliding window moves (its resolution); default a tenth of the window.
    #[serde(default, with = "humantime_serde")]
    pub slide: Option<Duration>,
    /// A tumbling window: the current window of `window` aligned on the epoch (slide = window).
    #[serde(default)]
    pub tumbling: bool,
    /// Event names (`track` events' `event`, or a call type such as `identify`); none: every event.
    pub events: Option<crate::view::OneOrMany>,
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, serde_json::Value>,
    /// The field aggregated (sum, min, max, avg, distinct_count, last).
    pub field: Option<String>,
    /// How many values `last` keeps.
    pub n: Option<usize>,
    /// `last`: `string` (default) or `int64` values.
    #[serde(rename = "type")]
    pub ty: Option<String>,
}

/// Where a value comes from in an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldRef {
    UserId,
    AnonymousId,
    MessageId,
    Event,
    Type,
    Ip,
    Country,
    Device,
    Os,
    App,
    AppVersion,
    UserAgent,
    /// A path inside `properties`, `context` or `traits` (the first element names which).
    Json(JsonRoot, Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonRoot {
    Properties,
    Context,
    Traits,
}

impl FieldRef {
    pub fn parse(text: &str) -> Result<FieldRef, String> {
        let (head, rest) = match text.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (text, None),
        };
        let root = match head {
            "properties" => Some(JsonRoot::Properties),
            "context" => Some(JsonRoot::Context),
            "traits" => Some(JsonRoot::Traits),
            _ => None,
        };
        if let Some(root) = root {
            let path: Vec<String> = rest.unwrap_or("").split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("field {text:?} must name a key: {head}.<name>"));
            }
            return Ok(FieldRef::Json(root, path));
        }
        if rest.is_some() {
            return Err(format!(
                "field {text:?}: only properties, context and traits have keys"
            ));
        }
        Ok(match head {
            "user_id" => FieldRef::UserId,
            "anonymous_id" => FieldRef::AnonymousId,
            "message_id" => FieldRef::MessageId,
            "event" => FieldRef::Event,
            "type" => FieldRef::Type,
            "ip" => FieldRef::Ip,
            "country" => FieldRef::Country,
            "device" => FieldRef::Device,
            "os" => FieldRef::Os,
            "app" => FieldRef::App,
            "app_version" => FieldRef::AppVersion,
            "user_agent" => FieldRef::UserAgent,
            other => {
                return Err(format!(
                    "field {other:?} is not an event column (user_id, anonymous_id, message_id, event, type, ip, country, device, os, app, app_version, user_agent) nor properties.<key>, context.<key>, traits.<key>"
                ))
            }
        })
    }

    /// The `ods.ods_event` column that holds it (for the backfill query).
    pub fn lake_column(&self) -> &'static str {
        match self {
            FieldRef::UserId => "user_id",
            FieldRef::AnonymousId => "anonymous_id",
            FieldRef::MessageId => "message_id",
            FieldRef::Event => "event",
            FieldRef::Type => "event_type",
            FieldRef::Ip => "ip",
            FieldRef::Country => "country",
            FieldRef::Device => "device",
            FieldRef::Os => "os",
            FieldRef::App => "app",
            FieldRef::AppVersion => "app_version",
            FieldRef::UserAgent => "user_agent",
            FieldRef::Json(JsonRoot::Properties, _) => "properties",
            FieldRef::Json(JsonRoot::Context, _) => "context",
            FieldRef::Json(JsonRoot::Traits, _) => "traits",
        }
    }
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// Distinct values of the field (exact up to a few dozen per window slice, then a
    /// HyperLogLog estimate).
    DistinctCount,
    /// The newest `n` values of the field, newest first.
    Last {
        n: usize,
        integers: bool,
    },
}

/// A window: `size` long, moving in steps of `slide` (equal for a tumbling window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub size_ms: i64,
    pub slide_ms: i64,
}

impl Window {
    pub fn tumbling(&self) -> bool {
        self.size_ms == self.slide_ms
    }
}

/// One checked aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub name: String,
    pub function: Function,
    /// `None`: unbounded (only `last` allows it).
    pub window: Option<Window>,
    /// Event names; empty: every event.
    pub events: Vec<String>,
    /// Field = value conditions, the value as canonical JSON text.
    pub filters: Vec<(FieldRef, String)>,
    pub field: Option<FieldRef>,
}

impl Aggregate {
    /// The served type's Arrow type (so a stream view resolves like any view).
    pub fn data_type(&self) -> DataType {
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        match self.function {
            Function::Count | Function::DistinctCount => DataType::Int64,
            Function::Sum | Function::Min | Function::Max | Function::Avg => DataType::Float64,
            Function::Last { integers: true, .. } => list(DataType::Int64),
            Function::Last {
                integers: false, ..
            } => list(DataType::Utf8),
        }
    }
}

/// A checked stream view definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Where the entity's value comes from in an event.
    pub key: FieldRef,
    pub key_type: KeyKind,
    pub allowed_lateness: Duration,
    pub aggregates: Vec<Aggregate>,
}

/// Default allowed lateness of a stream view.
pub const DEFAULT_LATENESS: Duration = Duration::from_secs(60);

impl StreamSpec {
    /// Checks the stream parts of a view file; problems are pushed to `problems`.
    pub fn from_parts(
        entity: &[String],
        key: Option<&str>,
        key_type: Option<&str>,
        allowed_lateness: Option<Duration>,
        aggregates: &[AggregateFile],
        problems: &mut Vec<String>,
    ) -> Option<StreamSpec> {
        let before = problems.len();
        if entity.len() != 1 {
            problems.push("a stream view has one entity column".to_string());
        }
        let key_text = key
            .map(str::to_string)
            .or_else(|| entity.first().cloned())
            .unwrap_or_default();
        let key = match FieldRef::parse(&key_text)
            .or_else(|_| FieldRef::parse(&format!("properties.{key_text}")))
        {
            Ok(k) => Some(k),
            Err(e) => {
                problems.push(format!("key: {e}"));
                None
            }
        };
        let key_type = match key_type.unwrap_or("string") {
            "string" => KeyKind::Text,
            "int64" => KeyKind::Integer,
            other => {
                problems.push(format!("key_type {other:?} is not string or int64"));
                KeyKind::Text
            }
        };
        if aggregates.is_empty() {
            problems.push("a stream view needs [[aggregates]]".to_string());
        }
        let mut names = std::collections::HashSet::new();
        let mut checked = Vec::new();
        for a in aggregates {
            let mut own = Vec::new();
            if let Err(e) = strata_core::names::check_name("aggregate name", &a.name) {
                own.push(e);
            }
            if entity.contains(&a.name) {
                own.push("has the entity column's name".to_string());
            }
            if !names.insert(a.name.clone()) {
                own.push("is declared twice".to_string());
            }
            let field = match a.field.as_deref().map(FieldRef::parse).transpose() {
                Ok(f) => f,
                Err(e) => {
                    own.push(e);
                    None
                }
            };
            let function = match a.function.as_str() {
                "count" => Some(Function::Count),
                "sum" => Some(Function::Sum),
                "min" => Some(Function::Min),
                "max" => Some(Function::Max),
                "avg" => Some(Function::Avg),
                "distinct_count" => Some(Function::DistinctCount),
                "last" => {
                    let n = a.n.unwrap_or(1);
                    if n == 0 || n > 1000 {
                        own.push("n must be between 1 and 1000".to_string());
                    }
                    let integers = match a.ty.as_deref().unwrap_or("string") {
                        "string" => false,
                        "int64" => true,
                        other => {
                            own.push(format!("type {other:?} is not string or int64"));
                            false
                        }
                    };
                    Some(Function::Last { n, integers })
                }
                other => {
                    own.push(format!(
                        "function {other:?} is not count, sum, min, max, avg, distinct_count or last"
                    ));
                    None
                }
            };
            if a.ty.is_some() && !matches!(function, Some(Function::Last { .. })) {
                own.push("type applies to last only".to_string());
            }
            if a.n.is_some() && !matches!(function, Some(Function::Last { .. })) {
                own.push("n applies to last only".to_string());
            }
            match function {
                Some(Function::Count) if field.is_some() => {
                    own.push("count takes no field (use where to filter)".to_string())
                }
                Some(f) if f != Function::Count && field.is_none() => {
                    own.push(format!("{} needs a field", a.function))
                }
                _ => {}
            }
            let window = match (a.window, a.slide, a.tumbling) {
                (None, _, _) if !matches!(function, Some(Function::Last { .. })) => {
                    own.push("needs a window (e.g. window = \"5m\")".to_string());
                    None
                }
                (None, Some(_), _) | (None, _, true) => {
                    own.push("slide and tumbling need a window".to_string());
                    None
                }
                (None, None, false) => None,
                (Some(w), slide, tumbling) => {
                    let size_ms = w.as_millis() as i64;
                    let slide_ms = if tumbling {
                        if slide.is_some_and(|s| s != w) {
                            own.push("a tumbling window's slide is its size".to_string());
                        }
                        size_ms
                    } else {
                        slide.map_or((size_ms / 10).max(1000), |s| s.as_millis() as i64)
                    };
                    if size_ms < 1000 {
                        own.push("window must be at least 1s".to_string());
                    } else if size_ms > 31 * 24 * 3_600_000 {
                        own.push("window must be at most 31d".to_string());
                    }
                    if slide_ms < 1000 || slide_ms > size_ms || size_ms % slide_ms != 0 {
                        own.push(
                            "slide must be at least 1s and divide the window evenly".to_string(),
                        );
                    }
                    if size_ms / slide_ms.max(1) > 1440 {
                        own.push("a window may have at most 1440 slides".to_string());
                    }
                    Some(Window { size_ms, slide_ms })
                }
            };
            let mut filters = Vec::new();
            for (f, v) in &a.filter {
                match FieldRef::parse(f) {
                    Ok(r) => {
                        if v.is_object() || v.is_array() || v.is_null() {
                            own.push(format!(
                                "where {f}: compare with a string, number or boolean"
                            ));
                        }
                        filters.push((r, v.to_string()));
                    }
                    Err(e) => own.push(format!("where: {e}")),
                }
            }
            let events = a.events.as_ref().map(|e| e.to_vec()).unwrap_or_default();
            if own.is_empty() {
                if let Some(function) = function {
                    checked.push(Aggregate {
                        name: a.name.clone(),
                        function,
                        window,
                        events,
                        filters,
                        field,
                    });
                }
            } else {
                problems.extend(
                    own.into_iter()
                        .map(|p| format!("aggregate {}: {p}", a.name)),
                );
            }
        }
        let lateness = allowed_lateness.unwrap_or(DEFAULT_LATENESS);
        if lateness > Duration::from_secs(24 * 3600) {
            problems.push("allowed_lateness must be at most 1d".to_string());
        }
        if problems.len() > before {
            return None;
        }
        Some(StreamSpec {
            key: key?,
            key_type,
            allowed_lateness: lateness,
            aggregates: checked,
        })
    }

    /// The schema the view "reads": the entity column and one column per aggregate, so a
    /// stream view resolves (and is served) like a batch one.
    pub fn schema(&self, entity: &str) -> SchemaRef {
        let key = match self.key_type {
            KeyKind::Integer => DataType::Int64,
            KeyKind::Text => DataType::Utf8,
        };
        let mut fields = vec![Field::new(entity, key, false)];
        fields.extend(
            self.aggregates
                .iter()
                .map(|a| Field::new(&a.name, a.data_type(), true)),
        );
        Arc::new(Schema::new(fields))
    }

    /// The longest time an event counts in any aggregate (what a backfill reads from the lake;
    /// unbounded `last` aggregates read a day).
    pub fn horizon(&self) -> Duration {
        self.aggregates
            .iter()
            .map(|a| a.window.map_or(24 * 3_600_000, |w| w.size_ms))
            .max()
            .map_or(Duration::ZERO, |ms| Duration::from_millis(ms as u64))
            + self.allowed_lateness
    }

    /// A fingerprint of what the state depends on: a changed definition starts over (with a
    /// backfill) instead of mixing old state into new aggregates.
    pub fn fingerprint(&self) -> String {
        // FNV-1a 64 of the definition's debug form: stable for one Strata version, which is
        // all a restart needs (a new version that changes the form re-backfills once).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("{self:?}").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}
