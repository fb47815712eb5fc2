//! Schema evolution for `ALTER TABLE` and for CDC tables following their source: the current
//! schema's fields changed in place, by the rules Iceberg readers rely on (ids kept; new ids
//! after the last; only safe widenings).

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{
    NestedField, PrimitiveType, Schema as IcebergSchema, TableMetadata, TableMetadataBuilder, Type,
};
use iceberg::table::Table;
use iceberg::TableIdent;

use crate::error::{Error, Result};

/// One schema change: the current schema's fields, changed in place (ids kept, new ids after
/// the table's last column id).
pub struct Evolution {
    fields: Vec<NestedField>,
    next_id: i32,
    schema_id: i32,
    identifier_ids: Vec<i32>,
    partition_sources: Vec<i32>,
    changed: bool,
}

impl Evolution {
    pub fn new(metadata: &TableMetadata) -> Result<Evolution> {
        let schema = metadata.current_schema();
        Ok(Evolution {
            fields: schema
                .as_struct()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect(),
            next_id: metadata.last_column_id() + 1,
            schema_id: metadata
                .schemas_iter()
                .map(|s| s.schema_id())
                .max()
                .unwrap_or(0)
                + 1,
            identifier_ids: schema.identifier_field_ids().collect(),
            partition_sources: metadata
                .partition_specs_iter()
                .flat_map(|s| s.fields().iter().map(|f| f.source_id))
                .collect(),
            changed: false,
        })
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    fn find(&self, name: &str) -> Result<usize> {
        self.position(name)
            .ok_or_else(|| Error::Sql(format!("no column {name}")))
    }

    /// The column names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// Adds an optional column at the end.
    pub fn add(&mut self, name: &str, ty: Type, if_not_exists: bool) -> Result<()> {
        self.insert(name, ty, if_not_exists, self.fields.len())
    }

    /// Adds an optional column before the `at`-th one (at the end when `at` is past it).
    pub fn insert(&mut self, name: &str, ty: Type, if_not_exists: bool, at: usize) -> Result<()> {
        if self.position(name).is_some() {
            if if_not_exists {
                return Ok(());
            }
            return Err(Error::Sql(format!("column {name} already exists")));
        }
        if !matches!(ty, Type::Primitive(_)) {
            return Err(Error::Sql(format!(
                "ADD COLUMN {name}: only primitive types can be added for now"
            )));
        }
        let at = at.min(self.fields.len());
        self.fields
            .insert(at, NestedField::optional(self.next_id, name, ty));
        self.next_id += 1;
        self.changed = true;
        Ok(())
    }

    pub fn drop(&mut self, name: &str, if_exists: bool) -> Result<()> {
        let Some(i) = self.position(name) else {
            if if_exists {
                return Ok(());
            }
            return Err(Error::Sql(format!("no column {name}")));
        };
        let id = self.fields[i].id;
        if self.partition_sources.contains(&id) {
            return Err(Error::Sql(format!(
                "column {name} is a partition source; it cannot be dropped"
            )));
        }
        if self.identifier_ids.contains(&id) {
            return Err(Error::Sql(format!("column {name} is an identifier field")));
        }
        if self.fields.len() == 1 {
            return Err(Error::Sql(format!("{name} is the last column")));
        }
        self.fields.remove(i);
        self.changed = true;
        Ok(())
    }

    pub fn rename(&mut self, old: &str, new: &str) -> Result<()> {
        let i = self.find(old)?;
        if self.position(new).is_some() {
            return Err(Error::Sql(format!("column {new} already exists")));
        }
        self.fields[i].name = new.to_string();
        self.changed = true;
        Ok(())
    }

    pub fn widen(&mut self, name: &str, to: &Type) -> Result<()> {
        let i = self.find(name)?;
        let from = self.fields[i].field_type.as_ref().clone();
        if &from == to {
            return Ok(());
        }
        let allowed = match (&from, to) {
            (Type::Primitive(PrimitiveType::Int), Type::Primitive(PrimitiveType::Long)) => true,
            (Type::Primitive(PrimitiveType::Float), Type::Primitive(PrimitiveType::Double)) => true,
            (
                Type::Primitive(PrimitiveType::Decimal {
                    precision: p1,
                    scale: s1,
                }),
                Type::Primitive(PrimitiveType::Decimal {
                    precision: p2,
                    scale: s2,
                }),
            ) => s1 == s2 && p2 >= p1,
            _ => false,
        };
        if !allowed {
            return Err(Error::Sql(format!(
                "cannot change column {name} from {from} to {to}: Iceberg widens int → bigint, float → double and decimal(p, s) → decimal(P ≥ p, s) only"
            )));
        }
        *self.fields[i].field_type = to.clone();
        self.changed = true;
        Ok(())
    }

    pub fn make_optional(&mut self, name: &str) -> Result<()> {
        let i = self.find(name)?;
        if self.fields[i].required {
            self.fields[i].required = false;
            self.changed = true;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Option<IcebergSchema>> {
        if !self.changed {
            return Ok(None);
        }
        IcebergSchema::builder()
            .with_schema_id(self.schema_id)
            .with_identifier_field_ids(self.identifier_ids)
            .with_fields(self.fields.into_iter().map(Arc::new))
            .build()
            .map(Some)
            .map_err(|e| Error::Sql(format!("new schema: {e}")))
    }
}

/// One metadata change built from a table's current metadata: a new current schema (from an
/// [`Evolution`]), table properties to set and to remove. Empty when it has none of them.
#[derive(Debug, Default)]
pub struct MetadataChange {
    pub schema: Option<IcebergSchema>,
    pub set_properties: HashMap<String, String>,
    pub remove_properties: Vec<String>,
    /// A user asked for it (`ALTER TABLE`): when Iceberg refuses it (a reserved property, say),
    /// that is the request's fault ([`Error::Invalid`]), not an internal failure.
    pub requested: bool,
}

impl MetadataChange {
    fn is_empty(&self) -> bool {
        self.schema.is_none() && self.set_properties.is_empty() && self.remove_properties.is_empty()
    }
}

/// Commits a change to `ident`'s schema and properties as one metadata swap. `build` makes the
/// change from the table as it is now and is called again, on the table reloaded, when another
/// writer commits first (bounded retries); its second value is returned beside the commit.
/// Nothing is committed, and `None` is returned, when the change is empty. After the swap the
/// table gets a snapshot with its new schema ([`super::snapshot_current_schema`]). `what`
/// names the change in errors (e.g. `ALTER TABLE ods.t`).
pub async fn commit_metadata_change<T>(
    lake: &crate::Lake,
    ident: &TableIdent,
    what: &str,
    mut build: impl FnMut(&Table) -> Result<(MetadataChange, T)>,
) -> Result<Option<T>> {
    let mut backoff = crate::retry::Backoff::new(8);
    let out = loop {
        let table = lake.load_table(ident).await?;
        let (change, out) = build(&table)?;
        if change.is_empty() {
            return Ok(None);
        }
        let requested = change.requested;
        let refused = |e: iceberg::Error| {
            if requested {
                Error::Invalid(format!("{what}: {e}"))
            } else {
                Error::iceberg(what.to_string(), e)
            }
        };
        let mut builder = TableMetadataBuilder::new_from_metadata(
            table.metadata().clone(),
            table.metadata_location().map(str::to_string),
        );
        if let Some(schema) = change.schema {
            builder = builder.add_current_schema(schema).map_err(refused)?;
        }
        if !change.set_properties.is_empty() {
            builder = builder
                .set_properties(change.set_properties)
                .map_err(refused)?;
        }
        if !change.remove_properties.is_empty() {
            builder = builder
                .remove_properties(&change.remove_properties)
                .map_err(refused)?;
        }
        let next = builder.build().map_err(refused)?;
        match super::swap_metadata(lake, &table, next).await {
            Ok(_) => break out,
            Err(Error::Conflict { .. }) if backoff.can_retry() => backoff.wait().await,
            Err(e) => return Err(e),
        }
    };
    super::snapshot_current_schema(lake, ident).await?;
    Ok(Some(out))
}

/// Adds `fields` the table lacks as optional columns after its last one, in one schema change
/// (retried on a concurrent commit), and returns the names added. A field the table already
/// has is left alone, whatever its type: the caller compares types first.
pub async fn add_columns(
    lake: &crate::Lake,
    ident: &TableIdent,
    fields: &[arrow::datatypes::FieldRef],
) -> Result<Vec<String>> {
    let what = format!("adding columns to {ident}");
    let added = commit_metadata_change(lake, ident, &what, |table| {
        let mut evolution = Evolution::new(table.metadata())?;
        let mut added = Vec::new();
        for f in fields {
            if evolution.position(f.name()).is_some() {
                continue;
            }
            let ty = iceberg::arrow::arrow_type_to_type(f.data_type())
                .map_err(|e| Error::iceberg(format!("the type of column {}", f.name()), e))?;
            evolution.add(f.name(), ty, true)?;
            added.push(f.name().clone());
        }
        let change = MetadataChange {
            schema: evolution.finish()?,
            ..Default::default()
        };
        Ok((change, added))
    })
    .await?;
    Ok(added.unwrap_or_default())
}
