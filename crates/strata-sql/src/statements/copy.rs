//! `COPY <table> FROM '<path or s3:// URL>' [, '…'] [WITH] (FORMAT parquet|csv|json, …)`: a
//! file load ([`strata_table::load`]) as a statement. DataFusion's parser knows only
//! `COPY … TO`, so `COPY … FROM` is read here from the tokens before it parses.
//!
//! Options (names and values in any case; values bare or quoted):
//! `FORMAT parquet|csv|json` (default: from each file's extension), `MODE append|overwrite|merge`
//! (default append), `KEY 'a,b'` (merge), `OP_COLUMN 'Op'` and `ORDER_BY 'ts'` (merge of
//! DMS-style changes), `PARTITION 'dt=2026-12-07'` (overwrite one identity partition),
//! `PARTITIONED_BY 'day(ts)'` (for a table the load creates), `DELIMITER ';'` (CSV),
//! `HEADER true` (CSV files must have a header row).

use arrow::array::RecordBatch;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::outcome_row;
use crate::SqlSession;
use strata_table::dialect::TimeTravelDialect;
use strata_table::error::{Error, Result};
use strata_table::load::{self, CsvOptions, FileFormat, LoadMode, LoadSpec, SourceS3};

/// A parsed `COPY … FROM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CopyFrom {
    table: Vec<Ident>,
    sources: Vec<String>,
    options: Vec<(String, String)>,
}

/// Reads `sql` as `COPY <table> FROM …`; `None` for any other statement (`COPY … TO` included).
pub(crate) fn parse(sql: &str) -> Result<Option<CopyFrom>> {
    let tokens: Vec<Token> = Tokenizer::new(&TimeTravelDialect, sql)
        .tokenize()
        .map_err(|e| Error::Sql(format!("cannot read the SQL: {e}")))?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .collect();
    let keyword = |t: Option<&Token>, k: Keyword| matches!(t, Some(Token::Word(w)) if w.keyword == k && w.quote_style.is_none());
    if !keyword(tokens.first(), Keyword::COPY) {
        return Ok(None);
    }
    // The table name: words joined by dots, then FROM.
    let mut at = 1;
    let mut table = Vec::new();
    loop {
        match tokens.get(at) {
            Some(Token::Word(w)) => {
                table.push(match w.quote_style {
                    Some(q) => Ident::with_quote(q, w.value.clone()),
                    None => Ident::new(w.value.clone()),
                });
                at += 1;
            }
            _ => return Ok(None),
        }
        if tokens.get(at) == Some(&Token::Period) {
            at += 1;
            continue;
        }
        break;
    }
    if !keyword(tokens.get(at), Keyword::FROM) {
        return Ok(None);
    }
    at += 1;
    let mut sources = Vec::new();
    loop {
        match tokens.get(at) {
            Some(Token::SingleQuotedString(s)) => sources.push(s.clone()),
            _ => {
                return Err(Error::Sql(
                    "COPY … FROM takes quoted paths or URLs: COPY t FROM 'data/x.parquet'"
                        .to_string(),
                ))
            }
        }
        at += 1;
        if tokens.get(at) == Some(&Token::Comma) {
            at += 1;
            continue;
        }
        break;
    }
    if keyword(tokens.get(at), Keyword::WITH) {
        at += 1;
    }
    let mut options = Vec::new();
    if tokens.get(at) == Some(&Token::LParen) {
        at += 1;
        loop {
            let name = match tokens.get(at) {
                Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
                Some(Token::RParen) if options.is_empty() => break,
                other => {
                    return Err(Error::Sql(format!(
                        "COPY … FROM options: expected an option name, got {}",
                        shown(other)
                    )))
                }
            };
            at += 1;
            if tokens.get(at) == Some(&Token::Eq) {
                at += 1;
            }
            let value = match tokens.get(at) {
                Some(Token::Word(w)) => w.value.clone(),
                Some(Token::SingleQuotedString(s)) => s.clone(),
                Some(Token::Number(n, _)) => n.clone(),
                other => {
                    return Err(Error::Sql(format!(
                        "COPY … FROM option {name}: expected a value, got {}",
                        shown(other)
                    )))
                }
            };
            at += 1;
            options.push((name, value));
            match tokens.get(at) {
                Some(Token::Comma) => at += 1,
                Some(Token::RParen) => break,
                other => {
                    return Err(Error::Sql(format!(
                        "COPY … FROM options: expected , or ), got {}",
                        shown(other)
                    )))
                }
            }
        }
        at += 1;
    }
    if let Some(extra) = tokens.get(at) {
        return Err(Error::Sql(format!(
            "COPY … FROM: unexpected {extra} after the options"
        )));
    }
    Ok(Some(CopyFrom {
        table,
        sources,
        options,
    }))
}

fn shown(t: Option<&Token>) -> String {
    t.map_or("the end".to_string(), |t| t.to_string())
}

impl CopyFrom {
    /// The load this statement asks for (the table name resolved by the session).
    fn spec(&self, table: iceberg::TableIdent, s3: SourceS3) -> Result<LoadSpec> {
        let mut format = None;
        let mut mode = "append".to_string();
        let mut key = Vec::new();
        let mut op_column = None;
        let mut order_by = None;
        let mut partition = None;
        let mut partition_by = None;
        let mut csv = CsvOptions::default();
        for (name, value) in &self.options {
            match name.as_str() {
                "format" => format = Some(FileFormat::parse(value)?),
                "mode" => mode = value.to_ascii_lowercase(),
                "key" => {
                    key = value
                        .split(',')
                        .map(|k| k.trim().to_string())
                        .filter(|k| !k.is_empty())
                        .collect()
                }
                "op_column" | "op" => op_column = Some(value.clone()),
                "order_by" => order_by = Some(value.clone()),
                "partition" => {
                    let (c, v) = value.split_once('=').ok_or_else(|| {
                        Error::Sql(format!(
                            "COPY … PARTITION {value:?}: expected 'column=value'"
                        ))
                    })?;
                    partition = Some((c.trim().to_string(), v.trim().to_string()));
                }
                "partitioned_by" => partition_by = Some(value.clone()),
                "delimiter" => {
                    let [b] = value.as_bytes() else {
                        return Err(Error::Sql(format!(
                            "COPY … DELIMITER {value:?}: one ASCII character"
                        )));
                    };
                    csv.delimiter = *b;
                }
                "header" if value.eq_ignore_ascii_case("true") => {}
                "header" => {
                    return Err(Error::Sql(
                        "COPY … HEADER false: CSV files need a header row naming their columns"
                            .to_string(),
                    ))
                }
                other => {
                    return Err(Error::Sql(format!(
                        "COPY … FROM: unknown option {other} (FORMAT, MODE, KEY, OP_COLUMN, \
                         ORDER_BY, PARTITION, PARTITIONED_BY, DELIMITER, HEADER)"
                    )))
                }
            }
        }
        let merge_only = op_column.is_some() || order_by.is_some() || !key.is_empty();
        let mode = match mode.as_str() {
            "append" if !merge_only && partition.is_none() => LoadMode::Append,
            "overwrite" if !merge_only => LoadMode::Overwrite { partition },
            "merge" if partition.is_none() => LoadMode::Merge {
                key,
                op_column,
                order_by,
            },
            "append" | "overwrite" | "merge" => {
                return Err(Error::Sql(format!(
                    "COPY … MODE {mode}: KEY, OP_COLUMN and ORDER_BY belong to MODE merge, \
                     PARTITION to MODE overwrite"
                )))
            }
            other => {
                return Err(Error::Sql(format!(
                    "COPY … MODE {other}: expected append, overwrite or merge"
                )))
            }
        };
        Ok(LoadSpec {
            table,
            sources: self.sources.clone(),
            format,
            mode,
            csv,
            partition_by,
            s3,
        })
    }
}

impl SqlSession {
    /// Runs a `COPY … FROM`: one load, one commit; its outcome row.
    pub(crate) async fn copy_from(&self, copy: &CopyFrom) -> Result<Vec<RecordBatch>> {
        if let Some(role) = self.role() {
            return Err(Error::Invalid(format!(
                "a session run as role {role:?} runs queries only (SELECT, WITH, EXPLAIN, SHOW, \
                 DESCRIBE)"
            )));
        }
        let ident = self.table_ident(&ObjectName::from(copy.table.clone()))?;
        let spec = copy.spec(ident, SourceS3::default())?;
        let report = load::load(&self.lake, &spec).await?;
        if report.created {
            self.refresh().await?;
        }
        outcome_row("copy", &report.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_copy_from_and_leaves_copy_to() {
        let c = parse(
            "COPY ods.\"Orders\" FROM 'raw/a.csv', 's3://b/p/' WITH (FORMAT csv, mode = 'merge', \
             KEY 'id, region', OP_COLUMN Op, ORDER_BY 'ts', DELIMITER ';')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.table.len(), 2);
        assert_eq!(c.table[1].value, "Orders");
        assert_eq!(c.sources, ["raw/a.csv", "s3://b/p/"]);
        let ident = iceberg::TableIdent::from_strs(["ods", "orders"]).unwrap();
        let spec = c.spec(ident, SourceS3::default()).unwrap();
        assert_eq!(spec.format, Some(FileFormat::Csv));
        assert_eq!(spec.csv.delimiter, b';');
        assert_eq!(
            spec.mode,
            LoadMode::Merge {
                key: vec!["id".into(), "region".into()],
                op_column: Some("Op".into()),
                order_by: Some("ts".into()),
            }
        );
        let c = parse("copy t from 'x.parquet'").unwrap().unwrap();
        assert!(c.options.is_empty());
        assert_eq!(parse("COPY (SELECT 1) TO 'x.parquet'").unwrap(), None);
        assert_eq!(parse("COPY t TO 'x.parquet'").unwrap(), None);
        assert_eq!(parse("SELECT 1").unwrap(), None);
        for bad in [
            "COPY t FROM x.parquet",
            "COPY t FROM 'x' (FORMAT)",
            "COPY t FROM 'x' (FORMAT csv",
            "COPY t FROM 'x' (FORMAT csv) extra",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let ident = || iceberg::TableIdent::from_strs(["ods", "t"]).unwrap();
        for bad in [
            "COPY t FROM 'x' (KEY id)",
            "COPY t FROM 'x' (MODE upsert)",
            "COPY t FROM 'x' (MODE merge, PARTITION 'dt=1')",
            "COPY t FROM 'x' (HEADER false)",
            "COPY t FROM 'x' (COMPRESSION gzip)",
            "COPY t FROM 'x' (FORMAT avro)",
        ] {
            let c = parse(bad).unwrap().unwrap();
            assert!(c.spec(ident(), SourceS3::default()).is_err(), "{bad}");
        }
    }
}
