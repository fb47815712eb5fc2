//! `strata`: one binary for the whole platform. Each subcommand lives in its own module under
//! `cmd/`; this file only parses the command line and dispatches.

mod bus;
mod cli;
mod cmd;
mod config;

use clap::Parser;

/// mimalloc instead of glibc malloc (ADR 0016): every record on the CDC and event paths is a
/// handful of short-lived allocations across worker threads, where glibc spent 40 % of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3 keeps freed memory for 1 s before it returns it to the OS (mimalloc 2: 10 ms).
/// Under ingest load that held ~300 MB of freed sink buffers and Parquet pages and took peak
/// RSS to ~1 GiB; at 100 ms the same load ran as fast at ~760 MiB (at 10 ms: ~640 MiB but
/// slower, every buffer faulted in afresh). ADR 0016. `MIMALLOC_PURGE_DELAY` in the
/// environment still decides when it is set.
fn return_freed_memory_sooner() {
    /// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (libmimalloc-sys 0.1.49; the
    /// `extended` bindings there do not name it). Recheck when libmimalloc-sys is upgraded.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    const PURGE_DELAY_MS: std::ffi::c_long = 100;
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc's option setter takes any option index and value; it is linked in
        // as the global allocator above, and options may change at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

fn main() -> std::process::ExitCode {
    return_freed_memory_sooner();
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
