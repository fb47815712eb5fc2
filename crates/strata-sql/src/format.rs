//! Printing query results: table, CSV, JSON lines.

use arrow::record_batch::RecordBatch;

use strata_table::error::{Error, Result};

/// How `strata sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An ASCII table (arrow's pretty printer).
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Renders `batches` as text in `format`.
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    match format {
        // Every format ends with a newline, so results can be printed back to back.
        OutputFormat::Table => arrow::util::pretty::pretty_format_batches(batches)
            .map(|t| format!("{t}\n"))
            .map_err(|e| Error::arrow("formatting a table", e)),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in batches {
                    writer
                        .write(batch)
                        .map_err(|e| Error::arrow("writing csv", e))?;
                }
            }
            String::from_utf8(out).map_err(|e| Error::Internal(format!("csv is not utf-8: {e}")))
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer
                .write_batches(&refs)
                .map_err(|e| Error::arrow("writing json", e))?;
            writer
                .finish()
                .map_err(|e| Error::arrow("writing json", e))?;
            String::from_utf8(writer.into_inner())
                .map_err(|e| Error::Internal(format!("json is not utf-8: {e}")))
        }
    }
}
