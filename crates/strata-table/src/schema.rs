//! The ODS tables the lake sink fills: their Iceberg schemas, partition specs and properties.
//!
//! `ods.ods_event` is partitioned Firehose-style by `identity(dt)`, `identity(hr)`,
//! `identity(event_type)`, where `dt`/`hr` are the UTC date and hour of `event_ts`, stored as
//! ordinary columns (Java Iceberg rejects two time transforms on one source column, so
//! `day(ts)` + `hour(ts)` is not an option). `ods.ods_event_rejected` is partitioned by
//! `identity(dt)` of `server_ts`.

use std::collections::HashMap;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use iceberg::{NamespaceIdent, TableIdent};

use crate::error::{Error, Result};

/// Namespace of the operational data store tables.
pub const ODS_NAMESPACE: &str = "ods";
/// Accepted events.
pub const EVENT_TABLE: &str = "ods_event";
/// Dead-letter: payloads the collector refused and bus records the sink could not decode.
pub const REJECTED_TABLE: &str = "ods_event_rejected";

/// Which of the sink's two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OdsTable {
    Event,
    Rejected,
}

impl OdsTable {
    pub const ALL: [OdsTable; 2] = [OdsTable::Event, OdsTable::Rejected];

    pub fn name(self) -> &'static str {
        match self {
            OdsTable::Event => EVENT_TABLE,
            OdsTable::Rejected => REJECTED_TABLE,
        }
    }

    pub fn ident(self) -> TableIdent {
        TableIdent::new(ods_namespace(), self.name().to_string())
    }

    pub fn schema(self) -> Result<Schema> {
        match self {
            OdsTable::Event => event_schema(),
            OdsTable::Rejected => rejected_schema(),
        }
    }

    pub fn partition_spec(self) -> Result<UnboundPartitionSpec> {
        let fields: &[&str] = match self {
            OdsTable::Event => &["dt", "hr", "event_type"],
            OdsTable::Rejected => &["dt"],
        };
        let schema = self.schema()?;
        let mut builder = UnboundPartitionSpec::builder().with_spec_id(0);
        for name in fields {
            let field = schema
                .field_by_name(name)
                .ok_or_else(|| Error::Internal(format!("partition source {name} not in schema")))?;
            builder = builder
                .add_partition_field(field.id, *name, Transform::Identity)
                .map_err(|e| Error::iceberg("building partition spec", e))?;
        }
        Ok(builder.build())
    }
}

pub fn ods_namespace() -> NamespaceIdent {
    NamespaceIdent::new(ODS_NAMESPACE.to_string())
}

/// Table properties both tables are created with (readable by every Iceberg engine).
pub fn table_properties() -> HashMap<String, String> {
    HashMap::from([
        ("write.format.default".to_string(), "parquet".to_string()),
        (
            "write.parquet.compression-codec".to_string(),
            "zstd".to_string(),
        ),
        ("strata.writer".to_string(), "strata-lake".to_string()),
        // The sink retries commits itself, after checking the bus position in the latest
        // snapshot; iceberg's own retry would re-apply an append blindly.
        ("commit.retry.num-retries".to_string(), "0".to_string()),
    ])
}

#[derive(Clone, Copy)]
enum Col {
    Str,
    Ts,
    Date,
    Int,
    Long,
}

fn build_schema(cols: &[(&str, Col, bool)]) -> Result<Schema> {
    let fields = cols
        .iter()
        .enumerate()
        .map(|(i, (name, col, required))| {
            let ty = Type::Primitive(match col {
                Col::Str => PrimitiveType::String,
                Col::Ts => PrimitiveType::Timestamptz,
                Col::Date => PrimitiveType::Date,
                Col::Int => PrimitiveType::Int,
                Col::Long => PrimitiveType::Long,
            });
            // Field ids are 1.. in column order; the catalog keeps them as given.
            let id = i as i32 + 1;
            if *required {
                NestedField::required(id, *name, ty).into()
            } else {
                NestedField::optional(id, *name, ty).into()
            }
        })
        .collect::<Vec<_>>();
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(|e| Error::iceberg("building schema", e))
}

/// Columns of `ods.ods_event`, in order: (name, type, required).
const EVENT_COLUMNS: &[(&str, Col, bool)] = &[
    ("message_id", Col::Str, true),
    ("app", Col::Str, true),
    ("type", Col::Str, true),
    ("event", Col::Str, false),
    ("event_type", Col::Str, true),
    ("user_id", Col::Str, false),
    ("anonymous_id", Col::Str, false),
    ("group_id", Col::Str, false),
    ("previous_id", Col::Str, false),
    ("client_ts", Col::Ts, false),
    ("sent_at", Col::Ts, false),
    ("server_ts", Col::Ts, true),
    ("event_ts", Col::Ts, true),
    ("dt", Col::Date, true),
    ("hr", Col::Int, true),
    ("ip", Col::Str, false),
    ("country", Col::Str, false),
    ("region", Col::Str, false),
    ("city", Col::Str, false),
    ("user_agent", Col::Str, false),
    ("os", Col::Str, false),
    ("os_version", Col::Str, false),
    ("browser", Col::Str, false),
    ("browser_version", Col::Str, false),
    ("device", Col::Str, false),
    ("app_version", Col::Str, false),
    ("library_name", Col::Str, false),
    ("library_version", Col::Str, false),
    ("locale", Col::Str, false),
    ("timezone", Col::Str, false),
    ("page_url", Col::Str, false),
    ("page_path", Col::Str, false),
    ("referrer", Col::Str, false),
    ("context", Col::Str, false),
    ("properties", Col::Str, false),
    ("traits", Col::Str, false),
    ("bus_partition", Col::Int, true),
    ("bus_offset", Col::Long, true),
    ("ingested_at", Col::Ts, true),
];

/// Columns of `ods.ods_event_rejected`, in order.
const REJECTED_COLUMNS: &[(&str, Col, bool)] = &[
    ("message_id", Col::Str, false),
    ("app", Col::Str, true),
    ("server_ts", Col::Ts, true),
    ("dt", Col::Date, true),
    ("reason", Col::Str, true),
    ("raw", Col::Str, true),
    ("bus_partition", Col::Int, true),
    ("bus_offset", Col::Long, true),
    ("ingested_at", Col::Ts, true),
];

pub fn event_schema() -> Result<Schema> {
    build_schema(EVENT_COLUMNS)
}

pub fn rejected_schema() -> Result<Schema> {
    build_schema(REJECTED_COLUMNS)
}
