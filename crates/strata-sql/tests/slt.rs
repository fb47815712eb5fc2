//! Runs the sqllogictest-style files in `tests/slt/` against a fresh lake each, through
//! `SqlSession` (the engine behind `strata sql`).
//!
//! The format is the usual one:
//!
//! ```text
//! # a comment
//! statement ok
//! CREATE NAMESPACE app
//!
//! statement error no column nope
//! SELECT nope FROM app.t
//!
//! query IT rowsort
//! SELECT id, name FROM app.t
//! ----
//! 1 ann
//! 2 bob
//! ```
//!
//! `statement error <text>` passes when the error message contains `<text>`. Query results
//! print one row per line, values separated by one space, `NULL` for nulls and `(empty)` for
//! empty strings; `rowsort` sorts the printed rows before comparing. The type letters after
//! `query` document the columns and are checked for count only. `__TEST_DIR__` stands for
//! the file's own temp dir (the lake is in it; COPY writes and reads files there).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::path::{Path, PathBuf};
use strata_table::config::LakeOptions;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use strata_sql::SqlSession;
use strata_table::Lake;

#[derive(Debug)]
enum Record {
    Statement {
        line: usize,
        sql: String,
        error: Option<String>,
    },
    Query {
        line: usize,
        sql: String,
        columns: usize,
        rowsort: bool,
        expected: Vec<String>,
    },
}

fn parse(text: &str) -> Vec<Record> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            i += 1;
            continue;
        }
        let header_line = i + 1;
        let header: Vec<&str> = line.split_whitespace().collect();
        i += 1;
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let sql = sql.join("\n");
        match header.first().copied() {
            Some("statement") => {
                let error = match header.get(1).copied() {
                    Some("ok") => None,
                    Some("error") => Some(
                        line.split_once("error")
                            .map(|(_, rest)| rest.trim().to_string())
                            .unwrap_or_default(),
                    ),
                    other => panic!("line {header_line}: statement {other:?}?"),
                };
                records.push(Record::Statement {
                    line: header_line,
                    sql,
                    error,
                });
            }
            Some("query") => {
                let columns = header.get(1).map(|t| t.len()).unwrap_or(0);
                let rowsort = header.get(2) == Some(&"rowsort");
                let mut expected = Vec::new();
                if i < lines.len() && lines[i].trim() == "----" {
                    i += 1;
                    while i < lines.len() && !lines[i].trim().is_empty() {
                        expected.push(lines[i].trim_end().to_string());
                        i += 1;
                    }
                }
                records.push(Record::Query {
                    line: header_line,
                    sql,
                    columns,
                    rowsort,
                    expected,
                });
            }
            other => panic!("line {header_line}: unknown record {other:?}"),
        }
    }
    records
}

fn render(batches: &[RecordBatch]) -> (usize, Vec<String>) {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    let mut columns = 0;
    for batch in batches {
        columns = batch.num_columns();
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for r in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| {
                    let v = f.value(r).to_string();
                    if v.is_empty() {
                        "(empty)".to_string()
                    } else {
                        v
                    }
                })
                .collect();
            rows.push(cells.join(" "));
        }
    }
    (columns, rows)
}

async fn run_file(path: &Path) {
    let name = path.display();
    let text = std::fs::read_to_string(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = LakeOptions::new(dir.path());
    let lake = Lake::open(&config).await.unwrap();
    let session = SqlSession::new(&lake).await.unwrap();
    // `__TEST_DIR__` in a statement is this file's temp dir (for files COPY writes and reads).
    let text = text.replace("__TEST_DIR__", &dir.path().display().to_string());
    for record in parse(&text) {
        match record {
            Record::Statement { line, sql, error } => {
                let result = session.run(&sql).await;
                match (result, error) {
                    (Ok(_), None) => {}
                    (Err(e), None) => panic!("{name}:{line}: statement failed: {e}\n{sql}"),
                    (Ok(_), Some(want)) => {
                        panic!("{name}:{line}: expected an error containing {want:?}\n{sql}")
                    }
                    (Err(e), Some(want)) => assert!(
                        e.to_string().contains(&want),
                        "{name}:{line}: error {e:?} does not contain {want:?}\n{sql}"
                    ),
                }
            }
            Record::Query {
                line,
                sql,
                columns,
                rowsort,
                expected,
            } => {
                let batches = session
                    .run(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{name}:{line}: query failed: {e}\n{sql}"));
                let (got_columns, mut rows) = render(&batches);
                if rowsort {
                    rows.sort();
                }
                if !rows.is_empty() {
                    assert_eq!(got_columns, columns, "{name}:{line}: column count\n{sql}");
                }
                assert_eq!(rows, expected, "{name}:{line}: rows differ\n{sql}");
            }
        }
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo and nextest set CARGO_MANIFEST_DIR"),
    )
    .join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

#[tokio::test]
async fn sqllogictest_files() {
    for file in slt_files() {
        run_file(&file).await;
    }
}
