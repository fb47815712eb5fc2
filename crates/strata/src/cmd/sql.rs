//! `strata sql`: DataFusion SQL over the lake, one query or an interactive prompt.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use strata_lake::{format_batches, Lake, OutputFormat, SqlSession};

use super::{load_config, output_format};
use crate::cli::SqlArgs;

pub async fn run(args: SqlArgs) -> Result<()> {
    let config = load_config(&args.config.config)?;
    let lake = Lake::open(&config).await?;
    let format = output_format(args.format);
    if let Some(query) = args.query {
        let session = SqlSession::new(&lake).await?;
        let batches = session.run(&query).await?;
        print!("{}", format_batches(&batches, format)?);
        return Ok(());
    }
    repl(&lake, format).await
}

/// Reads statements ending in `;` from stdin; errors are printed and the prompt goes on.
async fn repl(lake: &Lake, format: OutputFormat) -> Result<()> {
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
        // A new session per statement sees tables committed since the last one.
        let result = async {
            let session = SqlSession::new(lake).await?;
            let batches = session.run(statement.trim().trim_end_matches(';')).await?;
            anyhow::Ok(format_batches(&batches, format)?)
        }
        .await;
        match result {
            Ok(out) => print!("{out}"),
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    if !buffer.trim().is_empty() {
        let session = SqlSession::new(lake).await?;
        let batches = session.run(buffer.trim()).await?;
        print!("{}", format_batches(&batches, format)?);
    }
    Ok(())
}
