//! `gpures register | login | logout | sessions | passwd | account | whoami`,
//! and the registration offered to a Unix user with no account.

use std::io::{BufRead, IsTerminal, Write};

use gpures_proto::{AccountChange, ApiError, RegisterRequest, limits, text};
use uuid::Uuid;

use super::{CliResult, Ctx, Failure, exit};
use crate::client::ClientError;
use crate::conn::{SavedSession, gecos_name};
use crate::output::{AccountJson, table};
use crate::timefmt::format_local;

/// Creates an account bound to this Unix user. Where the host signs members
/// in by Unix user no password is needed (one may still be given); else it
/// is asked twice and the new account logs in.
pub(super) async fn register(
    ctx: &Ctx,
    email: String,
    name: Option<String>,
    password_stdin: bool,
) -> CliResult<()> {
    let peer = ctx.client.hello().peer_login;
    let name = name.or_else(gecos_name).ok_or_else(|| {
        Failure::usage("give your name with --name (your Unix account has none to default to)")
    })?;
    let password = if password_stdin || !peer {
        read_new_password(password_stdin)?
    } else {
        String::new()
    };
    let user = ctx.api(
        ctx.client
            .register(RegisterRequest {
                email,
                display_name: name,
                password: password.clone(),
            })
            .await,
    )?;
    let with_password = !password.is_empty();
    if with_password {
        // Log straight in: registering is the start of using gpures (and a
        // shared Unix account's members are told apart by their sessions).
        let login = ctx.api(ctx.client.login(user.email.clone(), password).await)?;
        save_session(ctx, &login)?;
    }
    if ctx.json {
        return ctx.print_json(&AccountJson::from(&user));
    }
    outln!(
        "registered {} <{}>, bound to the Unix user {}; {}",
        text::sanitize(&user.display_name),
        text::sanitize(&user.email),
        text::sanitize(&user.unix_user),
        if with_password {
            "you are logged in"
        } else {
            "this host signs you in by your Unix user: no login needed"
        }
    );
    Ok(())
}

/// Asks a Unix user with no account whether to register now (only on a
/// terminal; elsewhere the failure already names the command to run).
/// Returns whether an account now exists.
pub(super) async fn offer_registration(ctx: &Ctx) -> CliResult<bool> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) || ctx.json {
        return Ok(false);
    }
    let unix_user = text::sanitize(&ctx.client.hello().peer_unix_user);
    let answer = prompt(&format!(
        "The Unix user {unix_user} has no gpures account yet. Register now? [Y/n] "
    ))?;
    if answer.trim().to_lowercase().starts_with('n') {
        return Ok(false);
    }
    let email = prompt("Email (your calendar identity): ")?;
    let default = gecos_name().unwrap_or_default();
    let name = if default.is_empty() {
        prompt("Your name as the lab sees it: ")?
    } else {
        let typed = prompt(&format!("Your name as the lab sees it [{default}]: "))?;
        if typed.trim().is_empty() {
            default
        } else {
            typed
        }
    };
    register(ctx, email.trim().to_owned(), Some(name), false).await?;
    Ok(true)
}

/// Logs in with a password and saves the session. Without `email`, the
/// account of this Unix user.
pub(super) async fn login(ctx: &Ctx, email: Option<String>, password_stdin: bool) -> CliResult<()> {
    let password = read_password("Password: ", password_stdin)?;
    let login = match ctx.client.login(email.unwrap_or_default(), password).await {
        Ok(l) => l,
        Err(ClientError::Api(ApiError::Unauthenticated)) => {
            return Err(Failure::new(
                exit::AUTH,
                "wrong email or password (or the account belongs to another Unix user, \
                 or has no password yet: set one with `gpures passwd`)",
            ));
        }
        Err(e) => return Err(ctx.failure(e)),
    };
    save_session(ctx, &login)?;
    if ctx.json {
        return ctx.print_json(&AccountJson::from(&login.user));
    }
    outln!(
        "logged in as {} <{}>; the session lasts while you use it (`gpures sessions`)",
        text::sanitize(&login.user.display_name),
        text::sanitize(&login.user.email),
    );
    Ok(())
}

/// Ends this session on the daemon (or the one named, or every one) and
/// forgets it here.
pub(super) async fn logout(ctx: &Ctx, everywhere: bool, session: Option<String>) -> CliResult<()> {
    let (message, forget_here) = if everywhere {
        ctx.api(ctx.client.logout_everywhere().await)?;
        (
            "logged out everywhere: every session of your account has ended",
            true,
        )
    } else if let Some(prefix) = session {
        let id = find_session(ctx, &prefix).await?;
        ctx.api(ctx.client.logout(Some(id)).await)?;
        ("that session has ended", false)
    } else if ctx.client.token().is_none() {
        return Err(Failure::usage(
            "there is no login session here (you are signed in by your Unix user, or not at all)",
        ));
    } else {
        match ctx.client.logout(None).await {
            // Already over on the daemon: forgetting it here is all that is left.
            Ok(()) | Err(ClientError::Api(ApiError::Unauthenticated)) => {}
            Err(e) => return Err(ctx.failure(e)),
        }
        ("logged out: this session has ended", true)
    };
    if forget_here && let Some(store) = &ctx.store {
        store.clear();
    }
    if !ctx.json {
        outln!("{message}");
    }
    Ok(())
}

/// The session whose id starts with `prefix`.
async fn find_session(ctx: &Ctx, prefix: &str) -> CliResult<Uuid> {
    let prefix = prefix.trim().to_lowercase();
    let all = ctx.api(ctx.client.sessions().await)?;
    let hits: Vec<Uuid> = all
        .iter()
        .map(|s| s.id)
        .filter(|id| !prefix.is_empty() && id.to_string().starts_with(&prefix))
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::new(
            exit::ERROR,
            format!("no session of yours starts with {prefix:?}: see `gpures sessions`"),
        )),
        _ => Err(Failure::usage(format!(
            "{prefix:?} names several sessions: give more of the id"
        ))),
    }
}

/// Lists the account's live sessions.
pub(super) async fn sessions(ctx: &Ctx) -> CliResult<()> {
    let all = ctx.api(ctx.client.sessions().await)?;
    if ctx.json {
        return ctx.print_json(&all);
    }
    if all.is_empty() {
        outln!(
            "no login sessions{}",
            if ctx.client.token().is_none() {
                " (you are signed in by your Unix user)"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            vec![
                format!(
                    "{}{}",
                    &s.id.to_string()[..8],
                    if s.current { " *" } else { "" }
                ),
                text::sanitize(&s.host),
                format_local(s.created_at, ctx.tz),
                format_local(s.last_used_at, ctx.tz),
                format_local(s.expires_at, ctx.tz),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "SESSION",
                "HOST",
                "LOGGED IN",
                "LAST USED",
                "ENDS IF UNUSED"
            ],
            &rows
        )
    );
    outln!("* this session; `gpures logout --session ID` ends another");
    Ok(())
}

/// Sets a new password: with the old one, or with a one-time code from the
/// host admin.
pub(super) async fn passwd(ctx: &Ctx, password_stdin: bool, code: Option<String>) -> CliResult<()> {
    if let Some(code) = code {
        let new = read_new_password(password_stdin)?;
        let user = match ctx.client.redeem_reset_code(code, new).await {
            Ok(u) => u,
            Err(ClientError::Api(ApiError::Unauthenticated)) => {
                return Err(Failure::new(
                    exit::AUTH,
                    "that code is wrong, used or expired (codes last 24 hours): ask the host admin \
                     for a new one",
                ));
            }
            Err(e) => return Err(ctx.failure(e)),
        };
        outln!(
            "the password of {} is set; every session of the account has ended",
            text::sanitize(&user.email)
        );
        return Ok(());
    }
    let me = ctx.api(ctx.client.whoami().await)?;
    let old = if me.has_password {
        read_password("Current password: ", password_stdin)?
    } else {
        String::new()
    };
    let new = read_new_password(password_stdin)?;
    ctx.api(ctx.client.change_password(old, new).await)?;
    outln!("password changed; your other sessions have ended");
    Ok(())
}

/// Shows the account, or changes its name or email.
pub(super) async fn account(
    ctx: &Ctx,
    name: Option<String>,
    email: Option<String>,
) -> CliResult<()> {
    if name.is_none() && email.is_none() {
        return whoami(ctx).await;
    }
    let me = ctx.api(
        ctx.client
            .update_account(AccountChange {
                display_name: name,
                email,
            })
            .await,
    )?;
    if ctx.json {
        return ctx.print_json(&AccountJson::from(&me));
    }
    outln!(
        "your account is now {} <{}>",
        text::sanitize(&me.display_name),
        text::sanitize(&me.email)
    );
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

/// Reads one password: a line of stdin with `--password-stdin` (or when
/// stdin is not a terminal), else a hidden prompt.
fn read_password(prompt: &str, from_stdin: bool) -> CliResult<String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        return read_line();
    }
    prompt_hidden(prompt)
}

/// Reads a new password: from stdin, or on a terminal with the rules stated
/// first, hidden and twice.
fn read_new_password(from_stdin: bool) -> CliResult<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        return read_line();
    }
    eprintln!(
        "The password: {} to {} characters.",
        limits::PASSWORD_MIN_CHARS,
        limits::PASSWORD_MAX_CHARS
    );
    let first = prompt_hidden("New password: ")?;
    if prompt_hidden("Again: ")? != first {
        return Err(Failure::usage("the passwords differ"));
    }
    Ok(first)
}

fn read_line() -> CliResult<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(exit::ERROR, format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// A visible prompt on stderr; the answer from stdin.
fn prompt(prompt: &str) -> CliResult<String> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(exit::ERROR, format!("cannot read the answer: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
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
