//! `strata`: one binary for the whole platform. Each subcommand lives in its own module under
//! `cmd/`; this file only parses the command line and dispatches.

mod bus;
mod cli;
mod cmd;

use clap::Parser;

/// mimalloc instead of glibc malloc (ADR 0016): every record on the CDC and event paths is a
/// handful of short-lived allocations across worker threads, where glibc spent 40 % of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // The demo reports its progress on stdout; its components' info logs would bury it.
    let quiet = matches!(cli.command, cli::Command::Demo(_));
    cmd::init_tracing(cli.verbose, quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
