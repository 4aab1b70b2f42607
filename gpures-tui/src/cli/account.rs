//! `gpures register | login | logout | whoami`.

use std::io::{BufRead, IsTerminal, Write};

use gpures_proto::{ApiError, RegisterRequest, text};

use super::{CliResult, Ctx, Failure, exit};
use crate::client::ClientError;
use crate::conn::SavedSession;
use crate::output::{AccountJson, table};
use crate::timefmt::format_local;

/// Creates an account bound to this Unix user and logs in.
pub(super) async fn register(
    ctx: &Ctx,
    email: String,
    name: String,
    password_stdin: bool,
) -> CliResult<()> {
    let password = read_password(password_stdin, true)?;
    let user = ctx.api(
        ctx.client
            .register(RegisterRequest {
                email,
                display_name: name,
                password: password.clone(),
            })
            .await,
    )?;
    // Log straight in: registering is the start of using gpures.
    let login = ctx.api(ctx.client.login(user.email.clone(), password).await)?;
    save_session(ctx, &login)?;
    if ctx.json {
        return ctx.print_json(&AccountJson::from(&user));
    }
    outln!(
        "registered {} <{}>, bound to the Unix user {}; you are logged in",
        text::sanitize(&user.display_name),
        text::sanitize(&user.email),
        text::sanitize(&user.unix_user)
    );
    Ok(())
}

/// Logs in and saves the session.
pub(super) async fn login(ctx: &Ctx, email: String, password_stdin: bool) -> CliResult<()> {
    let tz = ctx.tz;
    let password = read_password(password_stdin, false)?;
    let login = match ctx.client.login(email, password).await {
        Ok(l) => l,
        Err(ClientError::Api(ApiError::Unauthenticated)) => {
            return Err(Failure::new(
                exit::AUTH,
                "wrong email or password (or the account belongs to another Unix user)",
            ));
        }
        Err(e) => return Err(ctx.failure(e)),
    };
    save_session(ctx, &login)?;
    if ctx.json {
        return ctx.print_json(&AccountJson::from(&login.user));
    }
    outln!(
        "logged in as {} <{}> until {}",
        text::sanitize(&login.user.display_name),
        text::sanitize(&login.user.email),
        format_local(login.expires_at, tz)
    );
    Ok(())
}

/// Forgets the session; `everywhere` revokes every token.
pub(super) async fn logout(ctx: &Ctx, everywhere: bool) -> CliResult<()> {
    if everywhere {
        ctx.api(ctx.client.logout_everywhere().await)?;
    }
    if let Some(store) = &ctx.store {
        store.clear();
    }
    if !ctx.json {
        outln!(
            "{}",
            if everywhere {
                "logged out everywhere"
            } else {
                "logged out"
            }
        );
    }
    Ok(())
}

/// Who the session belongs to.
pub(super) async fn whoami(ctx: &Ctx) -> CliResult<()> {
    let me = ctx.api(ctx.client.whoami().await)?;
    if ctx.json {
        return ctx.print_json(&AccountJson::from(&me));
    }
    out!(
        "{}",
        table(
            &["EMAIL", "NAME", "ROLE", "UNIX USER"],
            &[vec![
                me.email,
                me.display_name,
                me.role.to_string(),
                me.unix_user
            ]]
        )
    );
    Ok(())
}

fn save_session(ctx: &Ctx, login: &gpures_proto::LoginReply) -> CliResult<()> {
    let store = ctx.store.as_ref().ok_or_else(|| {
        Failure::new(
            exit::ERROR,
            "no config dir to keep the session in: set XDG_CONFIG_HOME",
        )
    })?;
    store
        .save(&SavedSession {
            token: login.token.clone(),
            email: login.user.email.clone(),
            expires_at: login.expires_at,
        })
        .map_err(|e| {
            Failure::new(
                exit::ERROR,
                format!("cannot save the session in {}: {e}", store.path().display()),
            )
        })
}

/// Reads a password: one line of stdin with `--password-stdin`, else a
/// prompt with echo off on the terminal.
fn read_password(from_stdin: bool, confirm: bool) -> CliResult<String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::new(exit::ERROR, format!("cannot read the password: {e}")))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let first = prompt_hidden("Password: ")?;
    if confirm && prompt_hidden("Again: ")? != first {
        return Err(Failure::usage("the passwords differ"));
    }
    Ok(first)
}

fn prompt_hidden(prompt: &str) -> CliResult<String> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let echo = crate::tui::term::EchoOff::new();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(echo);
    let _ = writeln!(stderr);
    read.map_err(|e| Failure::new(exit::ERROR, format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
