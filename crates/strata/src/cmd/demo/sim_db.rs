//! The simulated app database in CDC terms: its table definitions, its rows as CDC row images
//! and its change log, shared by the built-in path and the `--mysql` / `--postgres` one.

use strata_core::cdc::{ColumnSchema, ColumnType, Row as CdcRow, TableSchema, Value};
use strata_sim::{Row, Table, World};

use super::super::demo_db::RowChange;

/// Each business table's final rows as ODS tables (replacing what an earlier run wrote).
/// Source name of the simulated app database: its topics are `cdc.sim.<table>`.
pub(super) const SIM_SOURCE: &str = "sim";

/// The simulated app database's table definition, as a MySQL schema would describe it (the
/// demo's `--mysql`/`--postgres` tables are created from it too).
pub(super) fn sim_schema(t: Table) -> TableSchema {
    use ColumnType::{DateTime, Int, Long, String as Str};
    let cols: &[(&str, ColumnType)] = match t {
        Table::Users => &[
            ("user_id", Long),
            ("username", Str),
            ("email", Str),
            ("country", Str),
            ("signup_platform", Str),
            ("created_at", DateTime),
        ],
        Table::Profiles => &[
            ("user_id", Long),
            ("display_name", Str),
            ("country", Str),
            ("city", Str),
            ("age_band", Str),
            ("gender", Str),
            ("locale", Str),
            ("platform", Str),
            ("device_model", Str),
            ("app_version", Str),
            ("bio_length", Int),
            ("updated_at", DateTime),
        ],
        Table::Posts => &[
            ("post_id", Long),
            ("author_id", Long),
            ("kind", Str),
            ("tags", Str),
            ("caption_length", Int),
            ("created_at", DateTime),
        ],
        Table::Follows => &[
            ("follower_id", Long),
            ("followee_id", Long),
            ("created_at", DateTime),
        ],
        Table::Orders => &[
            ("order_id", Long),
            ("user_id", Long),
            ("product_id", Str),
            ("product_kind", Str),
            ("amount_minor", Long),
            ("currency", Str),
            ("status", Str),
            ("created_at", DateTime),
            ("updated_at", DateTime),
        ],
        Table::Messages => &[
            ("message_id", Long),
            ("sender_id", Long),
            ("recipient_id", Long),
            ("length", Int),
            ("created_at", DateTime),
        ],
    };
    let key = t.primary_key();
    TableSchema {
        source: SIM_SOURCE.to_string(),
        database: "social".to_string(),
        table: t.name().to_string(),
        columns: cols
            .iter()
            .map(|(name, kind)| ColumnSchema {
                name: name.to_string(),
                source_type: match kind {
                    Long => "bigint",
                    Int => "int",
                    DateTime => "datetime(6)",
                    _ => "varchar(255)",
                }
                .to_string(),
                kind: *kind,
                nullable: !key.contains(name),
            })
            .collect(),
        primary_key: key.iter().map(|k| k.to_string()).collect(),
    }
}

/// A simulated row as a CDC row image (the columns of [`sim_schema`]).
pub(super) fn image(row: &Row) -> CdcRow {
    let id = |v: u64| Value::Int(v as i64);
    let s = |v: &str| Value::Str(v.to_string());
    let dt = Value::DateTime;
    let cols: Vec<(&str, Value)> = match row {
        Row::User(r) => vec![
            ("user_id", id(r.user_id)),
            ("username", s(&r.username)),
            ("email", s(&r.email)),
            ("country", s(r.country)),
            ("signup_platform", s(r.signup_platform)),
            ("created_at", dt(r.created_at)),
        ],
        Row::Profile(r) => vec![
            ("user_id", id(r.user_id)),
            ("display_name", s(&r.display_name)),
            ("country", s(r.country)),
            ("city", s(r.city)),
            ("age_band", s(r.age_band)),
            ("gender", s(r.gender)),
            ("locale", s(r.locale)),
            ("platform", s(r.platform)),
            ("device_model", s(r.device_model)),
            ("app_version", s(r.app_version)),
            ("bio_length", Value::Int(i64::from(r.bio_length))),
            ("updated_at", dt(r.updated_at)),
        ],
        // Tags travel as a MySQL SET does: comma-separated text.
        Row::Post(r) => vec![
            ("post_id", id(r.post_id)),
            ("author_id", id(r.author_id)),
            ("kind", s(r.kind)),
            ("tags", Value::Str(r.tags.join(","))),
            ("caption_length", Value::Int(i64::from(r.caption_length))),
            ("created_at", dt(r.created_at)),
        ],
        Row::Follow(r) => vec![
            ("follower_id", id(r.follower_id)),
            ("followee_id", id(r.followee_id)),
            ("created_at", dt(r.created_at)),
        ],
        Row::Order(r) => vec![
            ("order_id", id(r.order_id)),
            ("user_id", id(r.user_id)),
            ("product_id", s(r.product_id)),
            ("product_kind", s(r.product_kind)),
            ("amount_minor", Value::Int(r.amount_minor)),
            ("currency", s(r.currency)),
            ("status", s(r.status)),
            ("created_at", dt(r.created_at)),
            ("updated_at", dt(r.updated_at)),
        ],
        Row::Message(r) => vec![
            ("message_id", id(r.message_id)),
            ("sender_id", id(r.sender_id)),
            ("recipient_id", id(r.recipient_id)),
            ("length", Value::Int(i64::from(r.length))),
            ("created_at", dt(r.created_at)),
        ],
    };
    cols.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The world's change log with CDC row images, in commit order.
pub(super) fn sim_changes(world: &World) -> Vec<RowChange> {
    world
        .changes()
        .map(|c| RowChange {
            table: c.table,
            op: c.op,
            before: c.before.as_ref().map(image),
            after: c.after.as_ref().map(image),
        })
        .collect()
}
