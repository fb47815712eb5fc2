//! Column masking for SQL sessions run as a role (`strata sql --role R`).
//!
//! When a statement names a table with columns the role reads masked
//! (`GovernanceConfig::masks`), the table resolves to a view over it: every masked column is
//! replaced by its mask under the same name, the rest pass through. Filters, joins and
//! aggregates above see only the masked values, whatever the query; pushdown into the scan
//! still works for the columns that pass through. Masks:
//! - `null`: a NULL of the column's type;
//! - `hash`: `mask:` + hex HMAC-SHA256 of the value's text, keyed with the lake's mask key
//!   (`<data>/mask.key`, made on first use): equal values mask equal, so joins and distinct
//!   counts still work, and no dictionary of phone numbers reverses it without the key;
//! - `partial`: `*` for every character but the last four (all `*` up to four characters).
//!
//! A role session runs queries only (no DDL, DML or external tables: a role that could create
//! a table could copy raw data out from under its masks, or read files by path).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, ViewTable};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlanBuilder, ScalarUDF, Signature, SimpleScalarUDF, Volatility,
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use strata_core::governance::{GovernanceConfig, MaskKind};

use strata_table::error::{Error, Result};

/// Bytes of the mask key.
const KEY_BYTES: usize = 32;

/// A role and the rules that apply to it.
#[derive(Debug)]
pub struct Masking {
    governance: GovernanceConfig,
    role: String,
    hash: ScalarUDF,
    partial: ScalarUDF,
}

impl Masking {
    /// `role` under `governance`, with the hash mask keyed by `key`.
    pub fn new(governance: GovernanceConfig, role: &str, key: Vec<u8>) -> Result<Masking> {
        governance
            .role(role)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let key = Arc::new(key);
        let hash = ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            "strata_mask_hash",
            Signature::any(1, Volatility::Immutable),
            DataType::Utf8,
            Arc::new(move |args: &[ColumnarValue]| mask_with(args, |v| hash_value(&key, v))),
        ));
        let partial = ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            "strata_mask_partial",
            Signature::any(1, Volatility::Immutable),
            DataType::Utf8,
            Arc::new(|args: &[ColumnarValue]| mask_with(args, partial_value)),
        ));
        Ok(Masking {
            governance,
            role: role.to_string(),
            hash,
            partial,
        })
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    /// The columns of `namespace.table` this role reads masked.
    pub fn masks(&self, namespace: &str, table: &str) -> BTreeMap<String, MaskKind> {
        self.governance
            .masks(Some(&self.role), namespace, table)
            .unwrap_or_default()
    }

    /// `provider` as this role sees it: itself when nothing in it is masked, else a view.
    pub fn wrap(
        &self,
        namespace: &str,
        table: &str,
        provider: Arc<dyn TableProvider>,
    ) -> DFResult<Arc<dyn TableProvider>> {
        let masks = self.masks(namespace, table);
        if masks.is_empty() {
            return Ok(provider);
        }
        let schema = provider.schema();
        let reference = TableReference::bare(table.to_string());
        let exprs: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|field| {
                let column =
                    Expr::Column(Column::new(Some(reference.clone()), field.name().clone()));
                let masked = match masks.get(field.name()) {
                    None => return Ok(column),
                    Some(MaskKind::Null) => {
                        Expr::Literal(ScalarValue::try_from(field.data_type())?, None)
                    }
                    Some(MaskKind::Hash) => self.hash.call(vec![column]),
                    Some(MaskKind::Partial) => self.partial.call(vec![column]),
                };
                Ok(masked.alias(field.name()))
            })
            .collect::<DFResult<_>>()?;
        let plan = LogicalPlanBuilder::scan(reference, provider_as_source(provider), None)?
            .project(exprs)?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// Applies `f` to every non-null value's text (any type is cast to text first).
fn mask_with(
    args: &[ColumnarValue],
    f: impl Fn(&str) -> String,
) -> Result<ColumnarValue, DataFusionError> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let input = arrays
        .first()
        .ok_or_else(|| DataFusionError::Internal("mask function without argument".into()))?;
    let text = arrow::compute::cast(input, &DataType::Utf8)?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("cast to Utf8 gave no StringArray".into()))?;
    let out: StringArray = (0..text.len())
        .map(|i| (!text.is_null(i)).then(|| f(text.value(i))))
        .collect();
    let out: ArrayRef = Arc::new(out);
    if scalar {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
    }
    Ok(ColumnarValue::Array(out))
}

/// The `hash` mask of `value`'s text: `mask:` + hex HMAC-SHA256 keyed with the lake's mask key.
/// Other surfaces that serve lake data (the feature server) use it so a value masks the same
/// everywhere.
pub fn hash_value(key: &[u8], value: &str) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return "mask:".to_string(),
    };
    mac.update(value.as_bytes());
    format!("mask:{}", hex::encode(mac.finalize().into_bytes()))
}

/// The `partial` mask of `value`'s text: `*` for every character but the last four.
pub fn partial_value(value: &str) -> String {
    let n = value.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    let keep: String = value.chars().skip(n - 4).collect();
    format!("{}{keep}", "*".repeat(n - 4))
}

/// The lake's mask key at `path`, made (random, mode 0600) when missing.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(key) if key.len() >= KEY_BYTES => return Ok(key),
        Ok(_) => {
            return Err(Error::Invalid(format!(
                "the mask key {} is shorter than {KEY_BYTES} bytes",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    }
    let mut key = Vec::with_capacity(KEY_BYTES);
    while key.len() < KEY_BYTES {
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    key.truncate(KEY_BYTES);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
        }
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_keeps_the_last_four() {
        assert_eq!(partial_value("+15551234567"), "********4567");
        assert_eq!(partial_value("1234"), "****");
        assert_eq!(partial_value(""), "");
        assert_eq!(partial_value("ünïcødé"), "***cødé");
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = hash_value(b"k1", "+15551234567");
        assert_eq!(a, hash_value(b"k1", "+15551234567"));
        assert_ne!(a, hash_value(b"k2", "+15551234567"));
        assert_ne!(a, hash_value(b"k1", "+15551234568"));
        assert!(a.starts_with("mask:") && a.len() == 5 + 64, "{a}");
    }

    #[test]
    fn key_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.key");
        let k1 = load_or_create_key(&path).unwrap();
        let k2 = load_or_create_key(&path).unwrap();
        assert_eq!(k1, k2);
        assert_eq!(k1.len(), KEY_BYTES);
        std::fs::write(&path, b"short").unwrap();
        assert!(load_or_create_key(&path).is_err());
    }
}
