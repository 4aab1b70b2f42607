//! `gpures-daemon`: parses flags and calls the library ([`gpures_daemon::dispatch`]).

use std::process::ExitCode;

use clap::Parser;
use gpures_daemon::cli::Cli;
use gpures_daemon::host::systemd;
use gpures_daemon::{FromSystemd, dispatch};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Read what systemd passed before any thread exists (these edit the
    // environment).
    let from_systemd = FromSystemd {
        listener: systemd::take_listener(),
        notifier: systemd::Notifier::from_env(),
    };
    // The service logs its progress; an admin command prints its answer
    // and only warnings unless asked (-v). Colour only on a terminal: the
    // journal and files get plain text.
    let serving = matches!(
        cli.command,
        None | Some(gpures_daemon::cli::Command::Serve { .. })
    );
    let level = if serving || cli.common.verbose {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GPURES_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!("{level},sqlx=warn,tarpc=warn"))
            }),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpures-daemon: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli, from_systemd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpures-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}
