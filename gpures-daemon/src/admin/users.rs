//! `gpures-daemon user list|promote|demote|disable|enable|bind|reset-password`.

use std::fmt::Write as _;

use gpures_proto::{Role, UserInfo, text};

use crate::cli::UserCommand;
use crate::service::{Actor, Error, PasswordReset, Result, Service};
use crate::store::users::UserChange;

/// One account action of the host admin.
#[derive(Clone, Debug)]
pub enum UserAction {
    List,
    Role {
        email: String,
        role: Role,
    },
    /// With `cancel_future`, the reason recorded on each cancelled or ended
    /// reservation.
    Disable {
        email: String,
        cancel_future: Option<String>,
    },
    Enable {
        email: String,
    },
    Bind {
        email: String,
        unix_user: String,
    },
    /// With `code`, a one-time code; else a password read from stdin.
    ResetPassword {
        email: String,
        code: bool,
    },
}

impl From<UserCommand> for UserAction {
    fn from(cmd: UserCommand) -> Self {
        match cmd {
            UserCommand::List => UserAction::List,
            UserCommand::Promote { email } => UserAction::Role {
                email,
                role: Role::Admin,
            },
            UserCommand::Demote { email } => UserAction::Role {
                email,
                role: Role::Member,
            },
            UserCommand::Disable {
                email,
                cancel_future,
                reason,
            } => UserAction::Disable {
                email,
                cancel_future: cancel_future.then(|| {
                    reason.unwrap_or_else(|| "the account was disabled by the host admin".into())
                }),
            },
            UserCommand::Enable { email } => UserAction::Enable { email },
            UserCommand::Bind { email, unix_user } => UserAction::Bind { email, unix_user },
            UserCommand::ResetPassword { email, code } => UserAction::ResetPassword { email, code },
        }
    }
}

/// Runs `action` and returns what to print.
///
/// # Errors
/// Unknown emails or Unix users, store failures.
pub async fn execute(service: &Service, actor: &Actor, action: UserAction) -> Result<String> {
    Ok(match action {
        UserAction::List => {
            let mut users = Vec::new();
            let mut after = None;
            loop {
                let page = service.list_users(actor, after, 0).await?;
                users.extend(page.users);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            users_table(&users)
        }
        UserAction::Role { email, role } => {
            let u = service
                .change_user(actor, &email, UserChange::Role(role))
                .await?;
            format!("{} is now {}\n", u.email, u.role)
        }
        UserAction::Disable {
            email,
            cancel_future,
        } => {
            let cancels = cancel_future.is_some();
            let u = service
                .change_user(actor, &email, UserChange::Disable(cancel_future))
                .await?;
            format!(
                "{} is disabled and its tokens are revoked{}\n",
                u.email,
                if cancels {
                    "; its reservations to come are cancelled and running ones ended"
                } else {
                    ""
                }
            )
        }
        UserAction::Enable { email } => {
            let u = service
                .change_user(actor, &email, UserChange::Enable)
                .await?;
            format!("{} is enabled again (it logs in anew)\n", u.email)
        }
        UserAction::Bind { email, unix_user } => {
            if crate::host::unix::user_by_name(&unix_user).is_none()
                && !unix_user.starts_with("uid:")
            {
                return Err(Error::invalid(
                    "unix_user",
                    format!("there is no Unix user {unix_user:?} on this host"),
                ));
            }
            let u = service
                .change_user(actor, &email, UserChange::Bind(unix_user))
                .await?;
            format!(
                "{} is now bound to the Unix user {}; its old tokens are revoked\n",
                u.email, u.unix_user
            )
        }
        UserAction::ResetPassword { email, code: true } => {
            let code = service
                .reset_password(actor, &email, PasswordReset::Code)
                .await?
                .unwrap_or_default();
            let shown: Vec<String> = code
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            format!(
                "one-time code for {email}: {}\n\
                 valid for 24 hours; the member runs, as their own Unix user:\n  \
                 gpures passwd --code {}\n",
                shown.join("-"),
                shown.join("-")
            )
        }
        UserAction::ResetPassword { email, code: false } => {
            let password = read_password_line()?;
            service
                .reset_password(actor, &email, PasswordReset::To(password))
                .await?;
            format!("the password of {email} is reset and its sessions ended\n")
        }
    })
}

/// One line of standard input: the new password (a prompt goes to stderr
/// when stdin is a terminal, with echo as the terminal has it).
fn read_password_line() -> Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("New password (one line): ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::invalid("password", format!("cannot read standard input: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// `s` padded with spaces to `width` terminal columns: a Korean character
/// takes two, so `{:<24}` would misalign the columns after a Korean name.
fn pad(s: &str, width: usize) -> String {
    let shown = unicode_width::UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(shown)))
}

fn users_table(users: &[UserInfo]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<32} {} {:<7} {:<12} STATE",
        "ID",
        "EMAIL",
        pad("NAME", 24),
        "ROLE",
        "UNIX USER"
    );
    for u in users {
        let _ = writeln!(
            out,
            "{:<5} {:<32} {} {:<7} {:<12} {}",
            u.id,
            text::sanitize(&u.email),
            pad(&text::sanitize(&u.display_name), 24),
            u.role,
            text::sanitize(&u.unix_user),
            if u.disabled { "disabled" } else { "active" }
        );
    }
    if users.is_empty() {
        out.push_str("(no users yet: lab members run `gpures register`)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, email: &str, name: &str) -> UserInfo {
        UserInfo {
            id,
            email: email.into(),
            display_name: name.into(),
            role: Role::Member,
            unix_user: "kim".into(),
            disabled: false,
            created_at: chrono::Utc::now(),
            has_password: true,
        }
    }

    #[test]
    fn user_list_aligns_korean_names() {
        let table = users_table(&[
            user(1, "kim@lab.kr", "김민수"),
            user(2, "alex@lab.kr", "Alex Morgan"),
            user(3, "eve@lab.kr", "\u{1b}[31mEve"),
        ]);
        // The role column starts at the same terminal column on every line.
        let columns: Vec<usize> = table
            .lines()
            .map(|l| {
                let at = l.find("member").or_else(|| l.find("ROLE")).expect("role");
                unicode_width::UnicodeWidthStr::width(&l[..at])
            })
            .collect();
        assert!(columns.windows(2).all(|w| w[0] == w[1]), "{table}");
        assert!(!table.contains('\u{1b}'), "{table:?}");
    }
}
