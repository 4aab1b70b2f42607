//! The scriptable CLI: [`Cli`] (clap) and [`run`], which executes one
//! subcommand and returns its exit code (the values of [`exit`] are
//! documented in `docs/CLI.md`). Human output goes to stdout as aligned
//! tables, `--json` prints the stable shapes of [`crate::output`], errors go
//! to stderr. One file per command group: [`account`], [`booking`],
//! [`status`], [`run`](mod@run), [`admin`]; every call goes through
//! [`Client`].

/// `print!` for command output: when the reader goes away (`gpures ls |
/// head -1`) the command ends quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!($($arg)*)) };
}

/// `println!` for command output, quiet on a closed pipe like [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

mod account;
mod admin;
mod blocks;
mod booking;
mod export;
mod notify;
mod policy;
mod queue;
mod report;
mod run;
mod status;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::{Args, CommandFactory, Parser, Subcommand};
use gpures_proto::{
    ApiError, ChangeKind, Lookup, Reservation, ReservationFilter, Resource, limits, text,
};
use serde::Serialize;
use uuid::Uuid;

use crate::client::{self, Client, ClientError};
use crate::conn::{self, TokenStore};
use crate::output::{self, HolderJson, ReservationJson};
use crate::timefmt;

pub use status::sparkline;

/// Exit codes (documented in docs/CLI.md).
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFLICT: u8 = 3;
    pub const AUTH: u8 = 4;
    pub const UNREACHABLE: u8 = 5;
    /// Lab policy refused the booking or change (the rule and numbers on stderr).
    pub const POLICY: u8 = 6;
    /// `run`: the command cannot be executed (as a shell says it).
    pub const CANNOT_RUN: u8 = 126;
    /// `run`: no such command.
    pub const NOT_FOUND: u8 = 127;
}

#[derive(Parser, Debug)]
#[command(
    name = "gpures",
    version,
    about = "Book shared GPUs: a terminal UI with no arguments, a CLI with a subcommand"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Daemon socket (default: GPURES_SOCKET, else /run/gpures.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print machine-readable JSON (see docs/CLI.md).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `gpures notify`: where notifications go besides the inbox.
#[derive(Args, Debug, Clone, Default)]
pub struct NotifyArgs {
    /// Post to this Slack-compatible incoming webhook.
    #[arg(long, value_name = "URL", conflicts_with = "no_webhook")]
    pub webhook: Option<String>,
    /// Stop posting to your webhook.
    #[arg(long)]
    pub no_webhook: bool,
    /// Email to your account's address (where the host sends email).
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub email: Option<bool>,
    /// Write urgent ones (idle warnings, actions on your processes) to
    /// your terminals on this host.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub terminal: Option<bool>,
    /// Keep these kinds to the inbox (comma-separated, or `all`).
    #[arg(long, value_name = "KIND")]
    pub mute: Vec<String>,
    /// Deliver these kinds again.
    #[arg(long, value_name = "KIND")]
    pub unmute: Vec<String>,
    /// Send yourself a test notification on every channel.
    #[arg(long)]
    pub test: bool,
    /// List the kinds.
    #[arg(long)]
    pub kinds: bool,
}

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub action: Option<QueueAction>,
    /// How many GPUs, all on one host.
    #[arg(long, value_name = "N", requires = "for")]
    pub gpus: Option<u32>,
    /// The length of the booking a grant makes: 90m, 3h, 1d2h.
    #[arg(long = "for", value_name = "DURATION", requires = "gpus")]
    pub r#for: Option<String>,
    /// Only GPUs of this host.
    #[arg(long, value_name = "HOST", requires = "gpus")]
    pub host: Option<String>,
    /// Give up if not granted by then.
    #[arg(long, value_name = "TIME", requires = "gpus")]
    pub until: Option<String>,
    /// What it is for (the booking's note).
    #[arg(long, value_name = "TEXT", requires = "gpus")]
    pub note: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum QueueAction {
    /// Every waiting request in order, with its estimated start, and yours
    /// granted, cancelled or expired in the last day.
    Ls,
    /// Leave the queue (an id or a prefix of it from `gpures queue`).
    Cancel { id: String },
}

/// How times and durations are written, shown under every command that
/// takes one.
const TIMES: &str = "Times are in your zone: now, +2h, 14:00, 9pm, noon, tomorrow 9am, \
9:00 tomorrow, mon 10:30, next fri, 2026-12-01 09:00. Durations: 90m, 3h, 1d2h.";

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Create an account bound to your Unix user. Where the host signs
    /// members in by Unix user (the default) no password is needed and you
    /// are signed in from then on; else the password is asked twice.
    Register {
        /// Your email (your calendar identity, and your login where
        /// passwords are used).
        #[arg(long)]
        email: String,
        /// Your name as the lab sees it (Korean is fine; default: the name
        /// on your Unix account).
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input (one line). Optional where
        /// the host signs you in by Unix user.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log in with your password and remember the session (mode 0600 in
    /// your config dir). Not needed where the host signs you in by Unix user.
    Login {
        /// The email you registered with (default: the account of your Unix
        /// user).
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// End this session on the daemon (a copy of its token stops working)
    /// and forget it here.
    Logout {
        /// End every session of your account, on every host.
        #[arg(long, conflicts_with = "session")]
        everywhere: bool,
        /// End this session instead (an id or prefix from `gpures sessions`).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
    },
    /// List your live login sessions.
    Sessions,
    /// Set a new password (old and new asked hidden, the new one twice).
    Passwd {
        /// Read the old password, then the new one, from standard input
        /// (one line each; only the new one with --code or when you have
        /// no password yet).
        #[arg(long)]
        password_stdin: bool,
        /// A one-time code from the host admin
        /// (`gpures-daemon user reset-password --code`).
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
    /// Show your account; with --name or --email, change it.
    Account {
        /// A new display name.
        #[arg(long)]
        name: Option<String>,
        /// A new email.
        #[arg(long)]
        email: Option<String>,
    },
    /// Show who you are signed in as.
    Whoami,
    /// List the bookable resources.
    Resources,
    /// List reservations (default: everyone's from now for 14 days; with
    /// --mine, every one of yours to come).
    #[command(visible_alias = "list", after_help = TIMES)]
    Ls {
        /// Only this resource (repeat for several).
        #[arg(long = "resource", value_name = "NAME")]
        resources: Vec<String>,
        /// Only yours, every one to come unless --from/--to say otherwise.
        #[arg(long, conflicts_with = "user")]
        mine: bool,
        /// Only this user's.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// From this time (default: now).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Until this time (default: 14 days after --from).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Include past and cancelled reservations, over all time.
        #[arg(long)]
        all: bool,
    },
    /// Book resources by name, or any N GPUs of one host at the earliest
    /// time they are all free (--gpus); all or nothing.
    #[command(after_help = TIMES)]
    Book {
        /// The resources to book together (gpu0 gpu1 …; case does not matter).
        #[arg(
            value_name = "NAME",
            required_unless_present = "gpus",
            conflicts_with = "gpus"
        )]
        resources: Vec<String>,
        /// Any N GPUs of one host, at the earliest start at or after --from
        /// at which all N are free for the length (prints which and why).
        #[arg(long, value_name = "N")]
        gpus: Option<u32>,
        /// With --gpus: only GPUs of this host.
        #[arg(long, value_name = "HOST", requires = "gpus")]
        host: Option<String>,
        /// The start (default: now).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// The end; or give the length with --for (one of the two is needed).
        #[arg(long, value_name = "TIME", conflicts_with = "for")]
        to: Option<String>,
        /// The length instead of --to: 90m, 3h, 1d2h.
        #[arg(long = "for", value_name = "DURATION")]
        r#for: Option<String>,
        /// What it is for, shown to the lab and in the calendar.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Admins: book past lab policy; the reason is kept in the audit log.
        #[arg(long = "override", value_name = "REASON", conflicts_with = "gpus")]
        override_reason: Option<String>,
        /// Past lab policy: ask an admin; the booking holds its slot,
        /// pending, until approved, denied, or --decide-by (default: its start).
        #[arg(
            long,
            value_name = "REASON",
            conflicts_with_all = ["gpus", "override_reason", "every"]
        )]
        request_approval: Option<String>,
        /// With --request-approval: cancelled unless approved by then.
        #[arg(long, value_name = "TIME", requires = "request_approval")]
        decide_by: Option<String>,
        /// Repeat: day, week, 2 weeks, 3d, 1w (wall-clock times are kept
        /// across DST); needs --until.
        #[arg(long, value_name = "EVERY", requires = "until", conflicts_with_all = ["gpus", "override_reason"])]
        every: Option<String>,
        /// With --every: the last day an occurrence may start on.
        #[arg(long, value_name = "DATE", requires = "every")]
        until: Option<String>,
        /// With --every: book the occurrences that are free and report the
        /// others (default: all or nothing).
        #[arg(long, requires = "every")]
        skip_conflicts: bool,
    },
    /// When N GPUs of one host are free for a length: the earliest three
    /// starts per host at or after --from, without booking.
    #[command(after_help = TIMES)]
    When {
        /// How many GPUs, all on one host.
        #[arg(long, value_name = "N")]
        gpus: u32,
        /// The length: 90m, 3h, 1d2h.
        #[arg(long = "for", value_name = "DURATION")]
        r#for: String,
        /// Not before this time (default: now).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Only GPUs of this host.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// Move, shorten, extend or re-note a reservation or a whole booking
    /// (a reservation or booking id, or a unique prefix of 6+).
    #[command(after_help = TIMES)]
    Edit {
        /// The reservation or booking id (or a unique prefix of 6+).
        id: String,
        /// The new start; the length stays unless --to or --for is given.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// The new end.
        #[arg(long, value_name = "TIME", conflicts_with = "for")]
        to: Option<String>,
        /// The new length, from the (new) start: 90m, 3h, 1d2h.
        #[arg(long = "for", value_name = "DURATION")]
        r#for: Option<String>,
        /// The new note.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Why: required when an admin changes someone else's reservation;
        /// its owner sees it (`ls`, the TUI).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// An occurrence of a recurring booking: change it and every later
        /// one the same way (`--from "tue 15:00"` moves each an hour later,
        /// at the same wall-clock time across a DST change).
        #[arg(long)]
        following: bool,
    },
    /// Cancel a reservation, or every GPU of a booking given by its id.
    Cancel {
        /// The reservation or booking id (or a unique prefix of 6+).
        id: String,
        /// Why: required when an admin changes someone else's reservation;
        /// its owner sees it (`ls`, the TUI).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// An occurrence of a recurring booking: cancel it and every later
        /// one of its series.
        #[arg(long, conflicts_with = "reason")]
        following: bool,
    },
    /// End a running reservation (or booking) now.
    Release {
        /// The reservation or booking id (or a unique prefix of 6+).
        id: String,
        /// Why: required when an admin changes someone else's reservation;
        /// its owner sees it (`ls`, the TUI).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Extend a reservation's (or booking's) end.
    Extend {
        /// The reservation or booking id (or a unique prefix of 6+).
        id: String,
        /// How much longer: 30m, 2h, 1d.
        #[arg(long, value_name = "DURATION")]
        by: String,
        /// Why: required when an admin changes someone else's reservation;
        /// its owner sees it (`ls`, the TUI).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Who holds each GPU now, who is next, live load, and who really uses it.
    Status,
    /// Run a command on the GPUs you hold on this host now
    /// (CUDA_VISIBLE_DEVICES set to them); with --gpus N --for D, book N
    /// GPUs of this host first, run, and give them back when it exits.
    Run {
        /// Wait for your next reservation on this host instead of exiting 3;
        /// with --gpus, wait in the queue until N GPUs free.
        #[arg(long)]
        wait: bool,
        /// Book N GPUs of this host now for the command, and release them
        /// the moment it exits (the daemon releases them if this client is
        /// killed).
        #[arg(long, value_name = "N", requires = "for")]
        gpus: Option<u32>,
        /// With --gpus: the most the command may run (90m, 3h, 1d).
        #[arg(long = "for", value_name = "DURATION", requires = "gpus")]
        r#for: Option<String>,
        /// With --gpus: while the command runs, extend the booking 15
        /// minutes at a time as long as the GPUs stay free (never into the
        /// next holder's time, never past the booking limit).
        #[arg(long, requires = "gpus")]
        extend: bool,
        /// Use GPU indices instead of UUIDs (also GPURES_CUDA_DEVICES=index).
        #[arg(long)]
        index: bool,
        /// The command and its arguments (after --).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Print `export CUDA_VISIBLE_DEVICES=...` for the GPUs you hold here now.
    Env {
        #[arg(long)]
        index: bool,
    },
    /// Wait in the fair queue for N GPUs of one host (granted as a booking
    /// starting at once when they free); with no arguments, where the queue
    /// stands.
    #[command(after_help = TIMES)]
    Queue(QueueArgs),
    /// Your notifications, newest first: the unread ones (marking them
    /// read), or with --all the last ones.
    #[command(visible_alias = "inbox")]
    Notifications {
        /// Read ones too.
        #[arg(long)]
        all: bool,
        /// Leave them unread.
        #[arg(long)]
        peek: bool,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// The login message: your unread notifications, or nothing. Quick and
    /// silent on any failure (for /etc/profile.d).
    Motd,
    /// Where your notifications go besides the inbox: a webhook (Slack
    /// compatible), email, your terminals; mute kinds; send a test.
    Notify(NotifyArgs),
    /// Keep a running booking from idle reclaim for a while (answers an
    /// idle warning).
    Keep {
        /// The reservation or booking id (or a unique prefix of 6+).
        id: String,
    },
    /// Tie processes you started without gpures to a booking: a new one of
    /// the GPUs they use, from now --for a length, or --booking ID. The
    /// booking ends when they do.
    Adopt {
        /// The processes (yours, running on GPUs of this host).
        #[arg(required = true, value_name = "PID")]
        pids: Vec<u32>,
        /// The new booking's length: 90m, 3h, 1d.
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "booking")]
        r#for: Option<String>,
        /// A running booking of yours that holds their GPUs.
        #[arg(long, value_name = "ID")]
        booking: Option<String>,
    },
    /// Lab policy: every rule in force, and which apply to you.
    Policy,
    /// Maintenance blocks to come: when nobody can book which GPUs, and why.
    Blocks {
        /// How many days ahead (default 30).
        #[arg(long, value_name = "N", default_value_t = 30)]
        days: i64,
    },
    /// The groups of the lab and their members.
    Groups,
    /// The reservations of a window as an iCalendar file (RFC 5545), for
    /// calendars that are not Google: cancelled ones stay in as cancelled,
    /// and each event keeps its UID, so a subscribed calendar updates.
    Export {
        /// iCalendar, the only format so far (required).
        #[arg(long, required = true)]
        ics: bool,
        /// Only your own reservations.
        #[arg(long)]
        mine: bool,
        /// Start of the window (default 30 days ago): 2026-11-01, yesterday.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// End of the window (default 180 days ahead).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Write FILE (replaced whole, mode 0644) instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// GPU-hours booked, really used, left idle and used without a booking,
    /// per user, group, resource or host (members see their own rows and the
    /// lab's total). Default: this month.
    Report {
        /// A calendar month in your time zone: 2026-11.
        #[arg(long, value_name = "YYYY-MM", conflicts_with_all = ["from", "to"])]
        month: Option<String>,
        /// Start of the window: 2026-11-01, "2026-11-01 09:00", yesterday.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// End of the window (default now).
        #[arg(long, value_name = "TIME", requires = "from")]
        to: Option<String>,
        /// Rows per user, group, resource or host.
        #[arg(long, value_name = "WHAT", default_value = "user")]
        by: String,
        /// CSV instead of a table (one line per row, the lab's last).
        #[arg(long)]
        csv: bool,
    },
    /// Admin commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Start a private daemon with a seeded week and open the TUI on it.
    Demo,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Write man pages (gpures.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Manage resources.
    #[command(subcommand)]
    Resource(AdminResource),
    /// Manage users.
    #[command(subcommand)]
    User(AdminUser),
    /// Manage groups of members (teams, projects).
    #[command(subcommand)]
    Group(AdminGroup),
    /// Set lab policy: limits checked in every booking.
    #[command(subcommand)]
    Policy(AdminPolicy),
    /// Block GPUs for a period (maintenance, a blackout): nobody can book
    /// into it. Reservations inside are listed and their owners told; with
    /// --cancel they are cancelled (or cut at the block's start).
    #[command(after_help = TIMES)]
    Block {
        /// The resources to block (gpu0 gpu1 …).
        #[arg(value_name = "NAME", required = true)]
        resources: Vec<String>,
        /// The start (default: now).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// The end; or give the length with --for.
        #[arg(long, value_name = "TIME", conflicts_with = "for")]
        to: Option<String>,
        /// The length instead of --to: 90m, 3h, 1d2h.
        #[arg(long = "for", value_name = "DURATION")]
        r#for: Option<String>,
        /// Why, shown to everyone and told to the owners of reservations inside.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Cancel the reservations inside (else they are kept).
        #[arg(long)]
        cancel: bool,
    },
    /// Lift a block (its id or a unique prefix of 6+, from `gpures blocks`).
    Unblock { id: String },
    /// Bookings waiting for approval (asked with book --request-approval).
    Pending,
    /// Approve a pending booking (its id or booking id); the owner is told.
    Approve {
        id: String,
        /// Shown to the owner and kept in the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Deny a pending booking: cancelled, and the owner told why.
    Deny {
        id: String,
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminGroup {
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
    Member(AdminMember),
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminMember {
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

#[derive(Subcommand, Debug, Clone)]
pub enum AdminPolicy {
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

#[derive(Subcommand, Debug, Clone)]
pub enum AdminResource {
    /// Add a GPU (with --gpu-index/--gpu-uuid) or a server.
    Add {
        name: String,
        #[arg(long, value_name = "N")]
        gpu_index: Option<i32>,
        #[arg(long, value_name = "UUID")]
        gpu_uuid: Option<String>,
        /// What it is (shown in `gpures resources`).
        #[arg(long, value_name = "TEXT", default_value_t = String::new(), hide_default_value = true)]
        description: String,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminUser {
    List,
    Promote {
        email: String,
    },
    Demote {
        email: String,
    },
    /// Disable an account and revoke its sessions.
    Disable {
        email: String,
        /// Also cancel its reservations to come and end its running ones.
        #[arg(long)]
        cancel_future: bool,
        /// Why (recorded on each reservation and shown to its owner).
        #[arg(long, value_name = "TEXT", requires = "cancel_future")]
        reason: Option<String>,
    },
}

/// Writes command output to stdout. A reader that went away (a closed
/// pipe) ends the process quietly with success, as `ls | head` does; any
/// other write error is reported once and exits 1.
pub fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(exit::OK));
        }
        eprintln!("gpures: cannot write the output: {e}");
        std::process::exit(i32::from(exit::ERROR));
    }
}

/// `on`/`off` (also yes/no, true/false).
fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != *cb)).min(up + 1).min(row[j] + 1);
            diag = up;
        }
    }
    row[b.len()]
}

/// Refuses a note longer than the daemon takes, before any call.
fn check_note(note: &str) -> CliResult<()> {
    if note.chars().count() > limits::NOTE_MAX_CHARS {
        return Err(Failure::usage(format!(
            "the note may have at most {} characters",
            limits::NOTE_MAX_CHARS
        )));
    }
    Ok(())
}

/// `--for DURATION` from `start`, in whole minutes (at least one).
fn length_minutes(length: &str, start: DateTime<Utc>, tz: Tz) -> CliResult<u32> {
    let end = timefmt::parse_duration(length)?.add_to(start, tz)?;
    let minutes = u32::try_from((end - start).num_minutes())
        .map_err(|_| Failure::usage("that is too long"))?;
    if minutes == 0 {
        return Err(Failure::usage("the length must be at least a minute"));
    }
    Ok(minutes)
}

/// A failure with its exit code and the sentence for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// With `--json`, printed to stdout too (the holders of a conflict).
    pub json: Option<serde_json::Value>,
    /// Why the daemon did not sign us in, when that was the failure.
    pub signed_out: Option<SignedOut>,
}

/// The two ways a call fails for want of a signed-in account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedOut {
    /// The token was refused, or peer sign-in could not decide.
    Unauthenticated,
    /// This Unix user has no account yet.
    NoAccount,
}

impl Failure {
    pub(super) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            json: None,
            signed_out: None,
        }
    }

    fn signed_out(why: SignedOut, message: impl Into<String>) -> Failure {
        Failure {
            signed_out: Some(why),
            ..Failure::new(exit::AUTH, message)
        }
    }

    pub(super) fn usage(message: impl Into<String>) -> Failure {
        Failure::new(exit::USAGE, message)
    }
}

impl From<conn::ConnError> for Failure {
    fn from(e: conn::ConnError) -> Self {
        let code = match e {
            conn::ConnError::Mismatch { .. } => exit::ERROR,
            _ => exit::UNREACHABLE,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<timefmt::TimeError> for Failure {
    fn from(e: timefmt::TimeError) -> Self {
        Failure::usage(e.to_string())
    }
}

/// Maps a failed call; conflicts print their holders in the caller's zone.
fn client_failure(e: ClientError, tz: Tz) -> Failure {
    match e {
        ClientError::Connect(e) => {
            let code = match e {
                conn::ConnError::Mismatch { .. } => exit::ERROR,
                _ => exit::UNREACHABLE,
            };
            Failure::new(code, e.to_string())
        }
        ClientError::Lost(_) => Failure::new(exit::UNREACHABLE, e.to_string()),
        ClientError::Api(ApiError::Unauthenticated) => Failure::signed_out(
            SignedOut::Unauthenticated,
            "not signed in or the session expired: run: gpures login",
        ),
        ClientError::Api(e @ ApiError::NoAccount { .. }) => {
            Failure::signed_out(SignedOut::NoAccount, e.to_string())
        }
        ClientError::Api(ApiError::PermissionDenied) => {
            Failure::new(exit::AUTH, "permission denied")
        }
        ClientError::Api(ApiError::Conflict { holders }) => {
            let json: Vec<HolderJson> = holders.iter().map(|h| HolderJson::new(h, tz)).collect();
            Failure {
                code: exit::CONFLICT,
                message: format!(
                    "the slot is taken:\n{}",
                    output::holders_lines(&holders, tz).trim_end()
                ),
                json: serde_json::to_value(
                    serde_json::json!({ "error": "conflict", "holders": json }),
                )
                .ok(),
                signed_out: None,
            }
        }
        ClientError::Api(ApiError::Blocked { blocks }) => Failure {
            code: exit::CONFLICT,
            message: format!(
                "blocked for maintenance:\n{}",
                blocks::lines(&blocks, tz).trim_end()
            ),
            json: Some(serde_json::json!({
                "error": "blocked",
                "blocks": blocks.iter().map(|b| blocks::BlockJson::new(b, tz)).collect::<Vec<_>>(),
            })),
            signed_out: None,
        },
        ClientError::Api(ApiError::Series { refused }) => {
            let all_policy = refused.iter().all(|s| matches!(s.why, ApiError::Policy(_)));
            Failure {
                code: if all_policy {
                    exit::POLICY
                } else {
                    exit::CONFLICT
                },
                message: format!(
                    "nothing booked: {} occurrence(s) cannot be (add --skip-conflicts to book the others):\n{}",
                    refused.len(),
                    booking::skipped_lines(&refused, tz).trim_end()
                ),
                json: Some(serde_json::json!({
                    "error": "series",
                    "refused": booking::skipped_json(&refused, tz),
                })),
                signed_out: None,
            }
        }
        ClientError::Api(ApiError::Policy(refusal)) => {
            let message = refusal.sentence(|t| timefmt::format_local(t, tz));
            Failure {
                code: exit::POLICY,
                json: Some(serde_json::json!({
                    "error": "policy",
                    "rule": refusal.rule.as_str(),
                    "scope": refusal.scope.to_string(),
                    "host": refusal.host,
                    "limit": refusal.limit,
                    "would_be": refusal.would_be,
                    "unit": if refusal.rule.is_count() { "count" } else { "minutes" },
                    "window": refusal.window.map(|w| serde_json::json!({
                        "start": timefmt::rfc3339(w.start, tz),
                        "end": timefmt::rfc3339(w.end, tz),
                    })),
                    "free_from": refusal.free_from.map(|t| timefmt::rfc3339(t, tz)),
                    "message": message,
                })),
                message: format!("refused by lab policy: {message}"),
                signed_out: None,
            }
        }
        ClientError::Api(e @ ApiError::Unavailable) => {
            Failure::new(exit::UNREACHABLE, e.to_string())
        }
        ClientError::Api(e) => Failure::new(exit::ERROR, e.to_string()),
    }
}

type CliResult<T> = Result<T, Failure>;

/// What an id on the command line names.
enum Target {
    One(Box<Reservation>),
    /// A booking's id, and its reservations.
    Booking(Uuid, Vec<Reservation>),
}

/// A connection plus what every command needs.
struct Ctx {
    client: Client,
    json: bool,
    tz: Tz,
    now: DateTime<Utc>,
    store: Option<TokenStore>,
}

impl Ctx {
    fn failure(&self, e: ClientError) -> Failure {
        client_failure(e, self.tz)
    }

    fn api<T>(&self, r: client::Result<T>) -> CliResult<T> {
        r.map_err(|e| self.failure(e))
    }

    fn print_json<T: Serialize>(&self, value: &T) -> CliResult<()> {
        let s = serde_json::to_string_pretty(value)
            .map_err(|e| Failure::new(exit::ERROR, e.to_string()))?;
        outln!("{s}");
        Ok(())
    }

    async fn resources(&self) -> CliResult<Vec<Resource>> {
        self.api(self.client.resources(false).await)
    }

    /// Resource names as ids: exact, else ignoring case (`GPU0`); a near
    /// miss is answered with the name meant.
    async fn resolve_resources(&self, names: &[String]) -> CliResult<Vec<i64>> {
        let all = self.resources().await?;
        names
            .iter()
            .map(|n| {
                let found = all
                    .iter()
                    .find(|r| r.name == *n)
                    .or_else(|| all.iter().find(|r| r.name.eq_ignore_ascii_case(n)));
                found.map(|r| r.id).ok_or_else(|| {
                    let near = all
                        .iter()
                        .map(|r| (edit_distance(&r.name.to_lowercase(), &n.to_lowercase()), r))
                        .filter(|(d, _)| *d <= 2)
                        .min_by_key(|(d, _)| *d)
                        .map(|(_, r)| format!(": did you mean {}?", text::sanitize(&r.name)))
                        .unwrap_or_else(|| ": see `gpures resources`".into());
                    Failure::new(
                        exit::ERROR,
                        format!("no resource named {:?}{near}", text::sanitize(n)),
                    )
                })
            })
            .collect()
    }

    /// What an id on the command line names: a reservation by its full id or
    /// a unique prefix of 6+ hex digits, else a booking by its id or prefix.
    /// Found by index lookups on the daemon, never by listing history.
    async fn find_target(&self, id: &str) -> CliResult<Target> {
        let id = id.trim().to_lowercase();
        if let Ok(uuid) = Uuid::parse_str(&id) {
            if let Some(r) = self.api(self.client.find(Lookup::Id(uuid)).await)?.pop() {
                return Ok(Target::One(Box::new(r)));
            }
            let booking = self.api(self.client.find(Lookup::Booking(uuid)).await)?;
            if booking.is_empty() {
                return Err(Failure::new(
                    exit::ERROR,
                    format!("no reservation or booking {id}"),
                ));
            }
            return Ok(Target::Booking(uuid, booking));
        }
        if id.chars().filter(|c| *c != '-').count() < limits::ID_PREFIX_MIN {
            return Err(Failure::usage(format!(
                "give at least {} characters of the reservation or booking id",
                limits::ID_PREFIX_MIN
            )));
        }
        let found = self.api(self.client.find(Lookup::Prefix(id.clone())).await)?;
        let mut own: Vec<Reservation> = found
            .iter()
            .filter(|r| r.id.to_string().starts_with(&id))
            .cloned()
            .collect();
        match own.len() {
            1 => return Ok(Target::One(Box::new(own.remove(0)))),
            0 => {}
            n => {
                return Err(Failure::usage(format!(
                    "{n} reservations start with {id}: give more characters"
                )));
            }
        }
        let mut bookings: Vec<Uuid> = found
            .iter()
            .map(|r| r.booking_id)
            .filter(|b| b.to_string().starts_with(&id))
            .collect();
        bookings.sort_unstable();
        bookings.dedup();
        match bookings.as_slice() {
            [] => Err(Failure::new(
                exit::ERROR,
                format!("no reservation or booking starts with {id}"),
            )),
            [b] => {
                let rs = found.into_iter().filter(|r| r.booking_id == *b).collect();
                Ok(Target::Booking(*b, rs))
            }
            many => Err(Failure::usage(format!(
                "{} bookings start with {id}: give more characters",
                many.len()
            ))),
        }
    }

    async fn list(&self, filter: ReservationFilter) -> CliResult<Vec<Reservation>> {
        self.api(self.client.reservations(filter).await)
    }

    fn print_reservations(&self, rs: &[Reservation]) -> CliResult<()> {
        if self.json {
            let v: Vec<ReservationJson> = rs
                .iter()
                .map(|r| ReservationJson::new(r, self.tz))
                .collect();
            return self.print_json(&v);
        }
        out!("{}", output::reservations_table(rs, self.tz));
        Ok(())
    }
}

/// Runs one subcommand (not `demo`, not the TUI) and returns its exit code.
pub async fn run(global: Global, command: Command) -> u8 {
    if let Command::Motd = command {
        notify::motd(global.socket.as_deref()).await;
        return exit::OK;
    }
    let tz = match timefmt::local_zone() {
        Ok(tz) => tz,
        Err(e) => {
            eprintln!("gpures: {e}");
            return exit::USAGE;
        }
    };
    let json = global.json;
    match execute(global, command, tz).await {
        Ok(()) => exit::OK,
        Err(f) => {
            if let (true, Some(v)) = (json, &f.json) {
                outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            }
            eprintln!("gpures: {}", f.message);
            f.code
        }
    }
}

async fn execute(global: Global, command: Command, tz: Tz) -> CliResult<()> {
    if let Command::Completions { shell } = command {
        let mut cmd = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "gpures", &mut script);
        out!("{}", String::from_utf8_lossy(&script));
        return Ok(());
    }
    if let Command::Man { dir } = &command {
        return write_man_pages(dir)
            .map_err(|e| Failure::new(exit::ERROR, format!("cannot write man pages: {e}")));
    }
    let socket = conn::socket_path(global.socket.as_deref());
    let client = Client::connect(&socket)
        .await
        .map_err(|e| client_failure(e.into(), tz))?;
    let store = TokenStore::for_host(&client.hello().host);
    client.set_token(store.as_ref().and_then(TokenStore::load).map(|s| s.token));
    let ctx = &Ctx {
        client,
        json: global.json,
        tz,
        now: Utc::now(),
        store,
    };
    match dispatch(ctx, command.clone()).await {
        Err(f)
            if f.signed_out == Some(SignedOut::Unauthenticated)
                && ctx.client.fall_back_to_peer() =>
        {
            // The saved session expired or was ended elsewhere: this host
            // signs us in by Unix user instead.
            if let Some(store) = &ctx.store {
                store.clear();
            }
            dispatch(ctx, command).await
        }
        Err(f)
            if f.signed_out == Some(SignedOut::NoAccount)
                && !matches!(command, Command::Register { .. }) =>
        {
            if account::offer_registration(ctx).await? {
                dispatch(ctx, command).await
            } else {
                Err(f)
            }
        }
        other => other,
    }
}

/// Runs one command on a connected context.
async fn dispatch(ctx: &Ctx, command: Command) -> CliResult<()> {
    match command {
        Command::Register {
            email,
            name,
            password_stdin,
        } => account::register(ctx, email, name, password_stdin).await,
        Command::Login {
            email,
            password_stdin,
        } => account::login(ctx, email, password_stdin).await,
        Command::Logout {
            everywhere,
            session,
        } => account::logout(ctx, everywhere, session).await,
        Command::Sessions => account::sessions(ctx).await,
        Command::Passwd {
            password_stdin,
            code,
        } => account::passwd(ctx, password_stdin, code).await,
        Command::Account { name, email } => account::account(ctx, name, email).await,
        Command::Whoami => account::whoami(ctx).await,
        Command::Resources => booking::resources(ctx).await,
        Command::Ls {
            resources,
            mine,
            user,
            from,
            to,
            all,
        } => booking::ls(ctx, resources, mine, user, from, to, all).await,
        Command::Book {
            gpus: Some(gpus),
            host,
            from,
            to,
            r#for,
            note,
            ..
        } => {
            let length = booking::Length { to, r#for };
            let need = booking::Need { gpus, host, from };
            booking::book_any(ctx, need, length, note.unwrap_or_default()).await
        }
        Command::Book {
            resources,
            from,
            to,
            r#for,
            note,
            every: Some(every),
            until: Some(until),
            skip_conflicts,
            ..
        } => {
            let length = booking::Length { to, r#for };
            let repeat = booking::Repeat {
                every,
                until,
                skip_conflicts,
            };
            let note = note.unwrap_or_default();
            booking::book_series(ctx, resources, from, length, note, repeat).await
        }
        Command::Book {
            resources,
            from,
            to,
            r#for,
            note,
            override_reason,
            request_approval,
            decide_by,
            ..
        } => {
            let length = booking::Length { to, r#for };
            let note = note.unwrap_or_default();
            let how = match (override_reason, request_approval) {
                (Some(reason), _) => booking::How::Override(reason),
                (None, Some(reason)) => booking::How::Request { reason, decide_by },
                (None, None) => booking::How::Plain,
            };
            booking::book(ctx, resources, from, length, note, how).await
        }
        Command::Policy => policy::show(ctx).await,
        Command::Blocks { days } => blocks::list(ctx, days).await,
        Command::Groups => policy::groups(ctx).await,
        Command::Export {
            ics: _,
            mine,
            from,
            to,
            output,
        } => {
            export::ics(
                ctx,
                export::Asked {
                    mine,
                    from,
                    to,
                    output,
                },
            )
            .await
        }
        Command::Report {
            month,
            from,
            to,
            by,
            csv,
        } => {
            report::report(
                ctx,
                report::Asked {
                    month,
                    from,
                    to,
                    by,
                    csv,
                },
            )
            .await
        }
        Command::When {
            gpus,
            r#for,
            from,
            host,
        } => {
            let length = booking::Length {
                to: None,
                r#for: Some(r#for),
            };
            booking::when(ctx, booking::Need { gpus, host, from }, length).await
        }
        Command::Edit {
            id,
            from,
            to,
            r#for,
            note,
            reason,
            following,
        } => {
            let length = booking::Length { to, r#for };
            let edit = booking::Edit {
                from,
                length,
                note,
                reason,
                following,
            };
            booking::edit(ctx, id, edit).await
        }
        Command::Extend { id, by, reason } => booking::extend(ctx, id, by, reason).await,
        Command::Cancel {
            id,
            following: true,
            ..
        } => booking::cancel_following(ctx, &id).await,
        Command::Cancel { id, reason, .. } => {
            booking::apply(ctx, &id, ChangeKind::Cancel, reason, "cancelled").await
        }
        Command::Release { id, reason } => {
            booking::apply(ctx, &id, ChangeKind::Release, reason, "released").await
        }
        Command::Status => status::status(ctx).await,
        Command::Run {
            wait,
            gpus: Some(gpus),
            r#for,
            extend,
            index,
            command,
        } => {
            let how = run::Managed {
                gpus,
                length: r#for.unwrap_or_default(),
                wait,
                extend,
                index,
            };
            run::run_booked(ctx, how, command).await
        }
        Command::Run {
            wait,
            index,
            command,
            ..
        } => run::run(ctx, wait, index, command).await,
        Command::Env { index } => run::env(ctx, index).await,
        Command::Queue(args) => queue::queue(ctx, args).await,
        Command::Notifications { all, peek, limit } => {
            notify::notifications(ctx, all, peek, limit).await
        }
        Command::Notify(args) => notify::notify(ctx, args).await,
        Command::Keep { id } => notify::keep(ctx, &id).await,
        Command::Adopt {
            pids,
            r#for,
            booking,
        } => notify::adopt(ctx, pids, r#for, booking).await,
        Command::Admin(cmd) => admin::admin(ctx, cmd).await,
        Command::Motd => Err(Failure::usage("handled elsewhere")),
        Command::Demo | Command::Completions { .. } | Command::Man { .. } => {
            Err(Failure::usage("handled elsewhere"))
        }
    }
}

/// Writes `gpures.1` and a page per subcommand.
fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut pages = vec![(String::from("gpures"), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((format!("gpures-{}", sub.get_name()), sub.clone()));
    }
    for (name, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page.name(name.clone())).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
