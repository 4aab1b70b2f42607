//! The command line of `gpures-daemon`: the clap definitions ([`Cli`]), kept
//! in the library so that `main`, the man pages and the shell completions use
//! the same ones. [`crate::dispatch`] runs a parsed command.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "gpures-daemon",
    version,
    about = "Owns the GPU reservations of this host and serves them to `gpures`"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every subcommand accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct Common {
    /// Config file (default /etc/gpures/gpures.toml, if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory (JWT secret, embedded PostgreSQL).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Use this PostgreSQL server instead of the embedded cluster.
    #[arg(long, global = true, value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log progress (INFO) from admin commands too; `serve` always does.
    /// GPURES_LOG (e.g. `debug`) overrides both.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the socket (the default command).
    Serve {
        /// Socket path (default /run/gpures.sock as root).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Host name stored on this host's resources.
        #[arg(long)]
        host: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage bookable resources.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Token signing keys.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Groups of members (teams, projects) that lab policy can name.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Lab policy: limits on what members may book, checked in every booking.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check the configuration and print it (secrets redacted).
    CheckConfig,
    /// GPU telemetry.
    #[command(subcommand)]
    Gpu(GpuCommand),
    /// Backups.
    #[command(subcommand)]
    Db(DbCommand),
    /// Google Calendar sync.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Write man pages (gpures-daemon.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
pub enum CalendarCommand {
    /// Make the calendar equal to the database: create missing events, update
    /// changed ones, delete those of cancelled or unknown reservations; also
    /// retries changes Google refused before.
    Resync {
        /// Start of the range (RFC 3339 or YYYY-MM-DD; default 30 days ago).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// End of the range (default 90 days ahead).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
    },
    /// Check the settings, the key, the token exchange and write access with a
    /// probe event, and say how to fix what fails.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Dump the database (embedded or external) with pg_dump, custom format;
    /// restore with pg_restore.
    Dump { file: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum GpuCommand {
    /// Take one sample of this host's GPUs and print it.
    Probe {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Take this many samples and report the CPU time per sample
        /// (this process and its children, e.g. nvidia-smi).
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// List every account.
    List,
    /// Make an account an admin.
    Promote { email: String },
    /// Make an admin a member again.
    Demote { email: String },
    /// Disable an account and revoke its tokens; its Unix user cannot
    /// register again until `enable`.
    Disable {
        email: String,
        /// Also cancel its reservations to come and end its running ones.
        #[arg(long)]
        cancel_future: bool,
        /// Why (recorded on each reservation and shown to its owner).
        #[arg(long, value_name = "TEXT", requires = "cancel_future")]
        reason: Option<String>,
    },
    /// Enable a disabled account again.
    Enable { email: String },
    /// Bind an account to another Unix user (revokes its tokens).
    Bind {
        email: String,
        #[arg(long, value_name = "NAME")]
        unix_user: String,
    },
    /// Reset a forgotten password: the new one is read from standard input
    /// (one line) and every session of the account ends; with --code, print
    /// a one-time code instead, which the member redeems within 24 hours
    /// with `gpures passwd --code CODE` from their own Unix user.
    ResetPassword {
        email: String,
        /// Make a one-time code for the member instead of setting a password.
        #[arg(long)]
        code: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List the groups and their members.
    List,
    /// Create a group.
    Add {
        name: String,
        #[arg(long, value_name = "TEXT", default_value_t = String::new(), hide_default_value = true)]
        description: String,
    },
    /// Delete a group (its rules go with it; its members stay).
    Rm { name: String },
    /// Add members to a group or remove them.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add members (by email) to GROUP.
    Add {
        group: String,
        #[arg(required = true)]
        emails: Vec<String>,
    },
    /// Remove members (by email) from GROUP.
    Rm {
        group: String,
        #[arg(required = true)]
        emails: Vec<String>,
    },
}

/// Whom a rule is for: everyone (neither flag), a group or one member.
#[derive(Args, Debug, Clone)]
pub struct RuleScope {
    /// The rule applies to the members of this group.
    #[arg(long, value_name = "NAME", conflicts_with = "user")]
    pub group: Option<String>,
    /// The rule applies to this member (by email).
    #[arg(long, value_name = "EMAIL")]
    pub user: Option<String>,
    /// Only the resources of this host (and only they count).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// List every rule in force, defaults from gpures.toml included.
    List,
    /// Set a rule: max-gpus N, gpu-hours-week H, max-length LEN, horizon LEN,
    /// max-future N, cooldown LEN --after LEN. Lengths: 90m, 4h, 2d, 1w (a
    /// bare number is hours). A member's own rule beats their groups' (the
    /// most generous group wins), which beat everyone's.
    Set {
        /// max-gpus, gpu-hours-week, max-length, horizon, max-future or cooldown.
        rule: String,
        value: String,
        #[command(flatten)]
        scope: RuleScope,
        /// Cooldown: how long a reservation must be to be followed by one.
        #[arg(long, value_name = "LEN")]
        after: Option<String>,
    },
    /// Remove a rule set in the database.
    Unset {
        rule: String,
        #[command(flatten)]
        scope: RuleScope,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Make a new token signing key for every daemon on this database. Tokens
    /// signed with the old key keep working until they expire; new logins
    /// use the new key.
    RotateKey,
}

#[derive(Subcommand, Debug)]
pub enum ResourceCommand {
    /// Add a GPU or a server.
    Add {
        name: String,
        /// Host of the resource (default: this daemon's host name).
        #[arg(long)]
        host: Option<String>,
        #[arg(long, value_name = "N")]
        gpu_index: Option<i32>,
        #[arg(long, value_name = "UUID")]
        gpu_uuid: Option<String>,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List resources, disabled ones too.
    List,
    /// Disable a resource: it can no longer be booked.
    Disable { name: String },
    /// Enable a disabled resource again.
    Enable { name: String },
    /// Rename a resource (its reservations follow it).
    Rename { name: String, new_name: String },
    /// Set a resource's description (shown in `gpures resources`).
    Describe { name: String, description: String },
    /// Remove a resource that has never been booked (one with reservations,
    /// past ones included, can only be disabled).
    Remove { name: String },
    /// Create or update one resource per GPU of this host (idempotent).
    Discover {
        /// Host name to store (default: this daemon's host name).
        #[arg(long)]
        host: Option<String>,
    },
}

/// Writes `gpures-daemon.1` and a page per subcommand into `dir`.
///
/// # Errors
/// The directory or a page cannot be written.
pub fn write_man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut pages = vec![(String::from("gpures-daemon"), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((format!("gpures-daemon-{}", sub.get_name()), sub.clone()));
    }
    for (name, page) in pages {
        let page = page.name(name.clone());
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
