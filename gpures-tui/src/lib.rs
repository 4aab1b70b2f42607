//! gpures: book shared GPUs from a terminal. With no arguments [`run_tui`]
//! opens the terminal UI; with a subcommand [`cli::run`] is a scriptable CLI;
//! `gpures demo` ([`demo`]) starts a private daemon with a seeded week.
//!
//! This crate depends on `gpures-proto` only: everything it knows about the
//! daemon is the contract. [`client`] is the one way to call the daemon (used
//! by the CLI and the TUI alike), [`conn`] finds the socket and keeps the
//! token file,
//! [`timefmt`] reads times in the viewer's zone, [`output`] prints tables and
//! JSON, [`tui`] is the terminal UI.

pub mod cli;
pub mod client;
pub mod conn;
pub mod demo;
pub mod output;
pub mod timefmt;
pub mod tui;

use std::path::Path;

use chrono::Utc;
use cli::{Cli, Command, exit};
use conn::TokenStore;
use crossterm::event::EventStream;
use gpures_proto::ApiError;

/// Runs what the command line asks for and returns the exit code.
pub async fn main_with(cli: Cli) -> u8 {
    match cli.command {
        None => {
            let socket = conn::socket_path(cli.global.socket.as_deref());
            run_tui(&socket, true, None).await
        }
        Some(Command::Demo) => demo::run().await,
        Some(command) => cli::run(cli.global, command).await,
    }
}

/// Opens the TUI on the daemon at `socket`. The token comes from `token` if
/// given (the demo), else from the user's session file for that daemon's host
/// when `use_store`; a login is saved there.
pub async fn run_tui(socket: &Path, use_store: bool, token: Option<(String, String)>) -> u8 {
    let tz = match timefmt::local_zone() {
        Ok(tz) => tz,
        Err(e) => {
            eprintln!("gpures: {e}");
            return exit::USAGE;
        }
    };
    let client = match client::Client::connect(socket).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gpures: {e}");
            return match e {
                conn::ConnError::Mismatch { .. } => exit::ERROR,
                _ => exit::UNREACHABLE,
            };
        }
    };
    let host = client.hello().host.clone();
    let store = if use_store {
        TokenStore::for_host(&host)
    } else {
        None
    };
    let saved = match token {
        Some((token, email)) => Some((token, email)),
        None => store
            .as_ref()
            .and_then(TokenStore::load)
            .map(|s| (s.token, s.email)),
    };
    let email = saved.as_ref().map(|s| s.1.clone()).unwrap_or_default();
    let peer_login = client.hello().peer_login;
    client.set_token(saved.as_ref().map(|s| s.0.clone()));
    // Who are we? A saved session, else the Unix user (peer sign-in).
    let mut start = client.whoami().await;
    if matches!(
        start,
        Err(client::ClientError::Api(ApiError::Unauthenticated))
    ) && client.fall_back_to_peer()
    {
        if let Some(store) = &store {
            store.clear();
        }
        start = client.whoami().await;
    }
    let signed_in = start.is_ok();
    let mut app = tui::app::App::new(tz, Utc::now(), signed_in, &email)
        .with_host(&host)
        .with_peer_login(peer_login);
    if let Err(client::ClientError::Api(ApiError::NoAccount { .. })) = start {
        app = app.first_run(&conn::gecos_name().unwrap_or_default(), !peer_login);
    }
    let initial = if signed_in {
        vec![app.refresh(), tui::app::Effect::Watch]
    } else {
        vec![]
    };
    let session = tui::Session::new(client.clone(), client.token(), store);
    tui::term::install_panic_hook();
    let mut term = match tui::term::Tui::enter() {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "gpures: cannot open the terminal UI ({e}); use a subcommand instead, see `gpures --help`"
            );
            return exit::ERROR;
        }
    };
    let result = tui::run(
        &mut term.terminal,
        app,
        session,
        EventStream::new(),
        initial,
    )
    .await;
    drop(term);
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("gpures: {e}");
            exit::ERROR
        }
    }
}
