//! `gpures`: parses flags and calls the library. See `lib.rs`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = gpures_tui::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpures: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(gpures_tui::main_with(cli)))
}
