//! Table options: `TBLPROPERTIES ('key' = 'value', …)` of CREATE TABLE and ALTER TABLE … SET
//! TBLPROPERTIES, as Iceberg table properties.

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::{CreateTableOptions, Expr as SqlExpr, SqlOption};

use strata_table::error::{Error, Result};

pub(super) fn options_map(options: &[SqlOption]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for o in options {
        match o {
            SqlOption::KeyValue { key, value } => {
                let value = match value {
                    SqlExpr::Value(v) => match &v.value {
                        datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s)
                        | datafusion::sql::sqlparser::ast::Value::DoubleQuotedString(s) => {
                            s.clone()
                        }
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                out.insert(key.value.clone(), value);
            }
            other => return Err(Error::Sql(format!("unsupported table option {other}"))),
        }
    }
    Ok(out)
}

pub(super) fn table_options(options: &CreateTableOptions) -> Result<HashMap<String, String>> {
    match options {
        CreateTableOptions::None => Ok(HashMap::new()),
        CreateTableOptions::With(o)
        | CreateTableOptions::TableProperties(o)
        | CreateTableOptions::Options(o) => options_map(o),
        CreateTableOptions::Plain(_) => Err(Error::Sql(
            "table options: use TBLPROPERTIES ('key' = 'value', …)".to_string(),
        )),
    }
}
