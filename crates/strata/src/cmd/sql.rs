//! `strata sql`: DataFusion SQL over the lake, one query or an interactive prompt; `--role`
//! runs it as a `[[governance.roles]]` role (masked columns, queries only). Every statement is
//! recorded in `audit.access_log` when `governance.audit` is on.

use std::io::{BufRead, IsTerminal, Write};

use crate::config::Config;
use anyhow::Result;
use strata_sql::audit::{AccessRecord, Outcome, Surface};
use strata_sql::masking::{load_or_create_key, Masking};
use strata_sql::{format_batches, OutputFormat, SqlSession};
use strata_table::Lake;

use super::{load_config, output_format};
use crate::cli::SqlArgs;

/// The longest SQL text kept in the access log.
const MAX_LOGGED_SQL: usize = 4096;

struct Runner {
    lake: Lake,
    config: Config,
    role: Option<String>,
}

impl Runner {
    async fn session(&self) -> Result<SqlSession> {
        Ok(match &self.role {
            None => SqlSession::new(&self.lake).await?,
            Some(role) => {
                let key = load_or_create_key(&self.config.mask_key_path())?;
                let masking = Masking::new(self.config.governance.clone(), role, key)?;
                SqlSession::as_role(&self.lake, masking).await?
            }
        })
    }

    /// Runs `sql` in a new session (which sees tables committed since the last one) and
    /// records it.
    async fn run(&self, sql: &str) -> Result<Vec<arrow::array::RecordBatch>> {
        let result = async {
            self.session()
                .await?
                .run(sql)
                .await
                .map_err(anyhow::Error::from)
        }
        .await;
        if self.config.governance.audit {
            let outcome = match &result {
                Ok(_) => Outcome::Ok,
                Err(e) if is_refusal(e) => Outcome::Denied,
                Err(_) => Outcome::Rejected,
            };
            let mut record =
                AccessRecord::local(Surface::Sql, self.role.as_deref(), truncate(sql), outcome);
            record.rows = result
                .as_ref()
                .ok()
                .map(|b| b.iter().map(|b| b.num_rows() as i64).sum());
            record.detail = result.as_ref().err().map(|e| format!("{e:#}"));
            if let Err(e) = strata_sql::audit::append(&self.lake, &[record]).await {
                tracing::warn!(error = %e, "could not record the statement in audit.access_log");
            }
        }
        result
    }
}

fn is_refusal(e: &anyhow::Error) -> bool {
    let text = e.to_string();
    text.contains("runs queries only") || text.contains("no role named")
}

fn truncate(sql: &str) -> String {
    let sql = sql.trim();
    match sql.char_indices().nth(MAX_LOGGED_SQL) {
        Some((at, _)) => format!("{}…", &sql[..at]),
        None => sql.to_string(),
    }
}

pub async fn run(args: SqlArgs) -> Result<()> {
    let config = load_config(&args.config.config)?;
    if let Some(role) = &args.role {
        config
            .governance
            .role(role)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let lake = Lake::open(&config.lake_options()).await?;
    let format = output_format(args.format);
    let runner = Runner {
        lake,
        config,
        role: args.role,
    };
    if let Some(query) = args.query {
        let batches = runner.run(&query).await?;
        print!("{}", format_batches(&batches, format)?);
        return Ok(());
    }
    repl(&runner, format).await
}

/// Reads statements ending in `;` from stdin; errors are printed and the prompt goes on.
async fn repl(runner: &Runner, format: OutputFormat) -> Result<()> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!("strata sql — statements end with ';', \\q or Ctrl-D quits");
    }
    let mut buffer = String::new();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!(
                "{}",
                if buffer.is_empty() {
                    "strata> "
                } else {
                    "   ...> "
                }
            );
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        if buffer.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let statement = std::mem::take(&mut buffer);
        let result = async {
            let batches = runner.run(statement.trim().trim_end_matches(';')).await?;
            anyhow::Ok(format_batches(&batches, format)?)
        }
        .await;
        match result {
            Ok(out) => print!("{out}"),
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    if !buffer.trim().is_empty() {
        let batches = runner.run(buffer.trim()).await?;
        print!("{}", format_batches(&batches, format)?);
    }
    Ok(())
}
