//! `gpures`: parses flags and calls the library. See `lib.rs`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = gpures_tui::cli::Cli::parse();
    // The TUI draws while it waits for the daemon, and the demo runs a
    // daemon in-process: two threads. A command makes its calls one after
    // another, so it runs on this thread alone: a reply wakes one thread,
    // not a worker that then wakes this one.
    let interactive = matches!(cli.command, None | Some(gpures_tui::cli::Command::Demo));
    let runtime = if interactive {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpures: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(gpures_tui::main_with(cli)))
}
