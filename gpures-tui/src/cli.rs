//! The scriptable CLI: [`Cli`] (clap) and [`run`], which executes one
//! subcommand and returns its exit code ([`ExitCode`] values are documented in
//! `docs/CLI.md`). Human output goes to stdout as aligned tables, `--json`
//! prints the stable shapes of [`crate::output`], errors go to stderr.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use chrono_tz::Tz;
use clap::{Args, CommandFactory, Parser, Subcommand};
use gpures_proto::{
    ApiError, BookingRequest, GpuresClient, NewResource, Period, RegisterRequest, Reservation,
    ReservationChange, ReservationFilter, Resource, ResourceKind, Role, limits, text,
};
use serde::Serialize;
use tarpc::context;
use uuid::Uuid;

use crate::conn::{self, SavedSession, TokenStore};
use crate::output::{self, AccountJson, HolderJson, ReservationJson, ResourceJson, table};
use crate::timefmt::{self, format_local, parse_duration, parse_time};

/// Exit codes (documented in docs/CLI.md).
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFLICT: u8 = 3;
    pub const AUTH: u8 = 4;
    pub const UNREACHABLE: u8 = 5;
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an account bound to your Unix user.
    Register {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log in and remember the session (mode 0600 in your config dir).
    Login {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the session; --everywhere revokes every token of your account.
    Logout {
        #[arg(long)]
        everywhere: bool,
    },
    /// Show who you are logged in as.
    Whoami,
    /// List the bookable resources.
    Resources,
    /// List reservations (default: everyone's, from now for 14 days).
    Ls {
        #[arg(long = "resource", value_name = "NAME")]
        resources: Vec<String>,
        /// Only yours.
        #[arg(long, conflicts_with = "user")]
        mine: bool,
        /// Only this user's.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Include past and cancelled reservations, over all time.
        #[arg(long)]
        all: bool,
    },
    /// Book one or more resources, all or nothing.
    Book {
        #[arg(required = true, value_name = "NAME")]
        resources: Vec<String>,
        #[arg(long, value_name = "TIME")]
        from: String,
        #[arg(
            long,
            value_name = "TIME",
            conflicts_with = "for",
            required_unless_present = "for"
        )]
        to: Option<String>,
        /// Length instead of --to: 90m, 3h, 1d2h.
        #[arg(long = "for", value_name = "DURATION")]
        r#for: Option<String>,
        #[arg(long, value_name = "TEXT", default_value = "")]
        note: String,
    },
    /// Move, shorten, extend or re-note a reservation (ID or a unique prefix of 6+).
    Edit {
        id: String,
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Cancel a reservation.
    Cancel { id: String },
    /// End a running reservation now.
    Release { id: String },
    /// Extend a reservation's end.
    Extend {
        id: String,
        #[arg(long, value_name = "DURATION")]
        by: String,
    },
    /// Who holds each GPU now, who is next, live load, and who really uses it.
    Status,
    /// Run a command on the GPUs you hold on this host now
    /// (CUDA_VISIBLE_DEVICES set to them).
    Run {
        /// Wait for your next reservation on this host instead of exiting 3.
        #[arg(long)]
        wait: bool,
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

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Manage resources.
    #[command(subcommand)]
    Resource(AdminResource),
    /// Manage users.
    #[command(subcommand)]
    User(AdminUser),
}

#[derive(Subcommand, Debug)]
pub enum AdminResource {
    /// Add a GPU (with --gpu-index/--gpu-uuid) or a server.
    Add {
        name: String,
        #[arg(long, value_name = "N")]
        gpu_index: Option<i32>,
        #[arg(long, value_name = "UUID")]
        gpu_uuid: Option<String>,
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminUser {
    List,
    Promote { email: String },
    Demote { email: String },
    Disable { email: String },
}

/// A failure with its exit code and the sentence for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// With `--json`, printed to stdout too (the holders of a conflict).
    pub json: Option<serde_json::Value>,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            json: None,
        }
    }

    fn usage(message: impl Into<String>) -> Failure {
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

impl From<tarpc::client::RpcError> for Failure {
    fn from(e: tarpc::client::RpcError) -> Self {
        Failure::new(
            exit::UNREACHABLE,
            format!("lost the connection to the daemon: {e}"),
        )
    }
}

/// Maps a daemon error; conflicts print their holders in the caller's zone.
fn api_failure(e: ApiError, tz: Tz) -> Failure {
    match e {
        ApiError::Unauthenticated => Failure::new(
            exit::AUTH,
            "not logged in or the session expired: run: gpures login",
        ),
        ApiError::PermissionDenied => Failure::new(exit::AUTH, "permission denied"),
        ApiError::Conflict { holders } => {
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
            }
        }
        ApiError::Unavailable => Failure::new(exit::UNREACHABLE, e.to_string()),
        e => Failure::new(exit::ERROR, e.to_string()),
    }
}

type CliResult<T> = Result<T, Failure>;

/// A connection plus what every command needs.
struct Ctx {
    client: GpuresClient,
    json: bool,
    tz: Tz,
    store: Option<TokenStore>,
}

impl Ctx {
    fn token(&self) -> CliResult<String> {
        self.store
            .as_ref()
            .and_then(TokenStore::load)
            .map(|s| s.token)
            .ok_or_else(|| Failure::new(exit::AUTH, "not logged in: run: gpures login"))
    }

    fn api<T>(&self, r: Result<Result<T, ApiError>, tarpc::client::RpcError>) -> CliResult<T> {
        r?.map_err(|e| api_failure(e, self.tz))
    }

    fn print_json<T: Serialize>(&self, value: &T) -> CliResult<()> {
        let s = serde_json::to_string_pretty(value)
            .map_err(|e| Failure::new(exit::ERROR, e.to_string()))?;
        println!("{s}");
        Ok(())
    }

    async fn resources(&self, token: &str) -> CliResult<Vec<Resource>> {
        self.api(
            self.client
                .list_resources(context::current(), token.to_owned(), false)
                .await,
        )
    }

    async fn resolve_resources(&self, token: &str, names: &[String]) -> CliResult<Vec<i64>> {
        let all = self.resources(token).await?;
        names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|r| r.name == *n)
                    .map(|r| r.id)
                    .ok_or_else(|| {
                        Failure::new(
                            exit::ERROR,
                            format!(
                                "no resource named {:?}: see `gpures resources`",
                                text::sanitize(n)
                            ),
                        )
                    })
            })
            .collect()
    }

    /// A reservation by full id or a unique prefix of at least 6 characters.
    async fn find_reservation(&self, token: &str, id: &str) -> CliResult<Reservation> {
        let id = id.trim().to_lowercase();
        if let Ok(uuid) = Uuid::parse_str(&id) {
            let all = self
                .list(
                    token,
                    ReservationFilter {
                        include_cancelled: true,
                        ..Default::default()
                    },
                )
                .await?;
            return all
                .into_iter()
                .find(|r| r.id == uuid)
                .ok_or_else(|| Failure::new(exit::ERROR, format!("no reservation {id}")));
        }
        if id.chars().count() < 6 {
            return Err(Failure::usage(
                "give at least 6 characters of the reservation id",
            ));
        }
        let all = self
            .list(
                token,
                ReservationFilter {
                    include_cancelled: true,
                    ..Default::default()
                },
            )
            .await?;
        let matches: Vec<Reservation> = all
            .into_iter()
            .filter(|r| r.id.to_string().starts_with(&id))
            .collect();
        match matches.len() {
            0 => Err(Failure::new(
                exit::ERROR,
                format!("no reservation starts with {id}"),
            )),
            1 => Ok(matches
                .into_iter()
                .next()
                .ok_or_else(|| Failure::new(exit::ERROR, "vanished"))?),
            n => Err(Failure::usage(format!(
                "{n} reservations start with {id}: give more characters"
            ))),
        }
    }

    async fn list(&self, token: &str, filter: ReservationFilter) -> CliResult<Vec<Reservation>> {
        self.api(
            self.client
                .list_reservations(context::current(), token.to_owned(), filter)
                .await,
        )
    }

    fn print_reservations(&self, rs: &[Reservation]) -> CliResult<()> {
        if self.json {
            let v: Vec<ReservationJson> = rs
                .iter()
                .map(|r| ReservationJson::new(r, self.tz))
                .collect();
            return self.print_json(&v);
        }
        print!("{}", output::reservations_table(rs, self.tz));
        Ok(())
    }
}

/// Runs one subcommand (not `demo`, not the TUI) and returns its exit code.
pub async fn run(global: Global, command: Command) -> u8 {
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
                println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            }
            eprintln!("gpures: {}", f.message);
            f.code
        }
    }
}

async fn execute(global: Global, command: Command, tz: Tz) -> CliResult<()> {
    if let Command::Completions { shell } = command {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "gpures", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Man { dir } = &command {
        return write_man_pages(dir)
            .map_err(|e| Failure::new(exit::ERROR, format!("cannot write man pages: {e}")));
    }
    let socket = conn::socket_path(global.socket.as_deref());
    let (client, hello) = conn::connect(&socket).await?;
    let hello_host = hello.host;
    let ctx = Ctx {
        client,
        json: global.json,
        tz,
        store: TokenStore::for_host(&hello_host),
    };
    let now = Utc::now();
    match command {
        Command::Register {
            email,
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin, true)?;
            let user = ctx.api(
                ctx.client
                    .register(
                        context::current(),
                        RegisterRequest {
                            email,
                            display_name: name,
                            password: password.clone(),
                        },
                    )
                    .await,
            )?;
            // Log straight in: registering is the start of using gpures.
            let login = ctx.api(
                ctx.client
                    .login(context::current(), user.email.clone(), password)
                    .await,
            )?;
            save_session(&ctx, &login)?;
            if ctx.json {
                return ctx.print_json(&AccountJson::from(&user));
            }
            println!(
                "registered {} <{}>, bound to the Unix user {}; you are logged in",
                text::sanitize(&user.display_name),
                text::sanitize(&user.email),
                text::sanitize(&user.unix_user)
            );
        }
        Command::Login {
            email,
            password_stdin,
        } => {
            let password = read_password(password_stdin, false)?;
            let login = match ctx
                .client
                .login(context::current(), email, password)
                .await?
            {
                Ok(l) => l,
                Err(ApiError::Unauthenticated) => {
                    return Err(Failure::new(exit::AUTH, "wrong email or password"));
                }
                Err(e) => return Err(api_failure(e, tz)),
            };
            save_session(&ctx, &login)?;
            if ctx.json {
                return ctx.print_json(&AccountJson::from(&login.user));
            }
            println!(
                "logged in as {} <{}> until {}",
                text::sanitize(&login.user.display_name),
                text::sanitize(&login.user.email),
                format_local(login.expires_at, tz)
            );
        }
        Command::Logout { everywhere } => {
            if everywhere {
                let token = ctx.token()?;
                ctx.api(
                    ctx.client
                        .logout_everywhere(context::current(), token)
                        .await,
                )?;
            }
            if let Some(store) = &ctx.store {
                store.clear();
            }
            if !ctx.json {
                println!(
                    "{}",
                    if everywhere {
                        "logged out everywhere"
                    } else {
                        "logged out"
                    }
                );
            }
        }
        Command::Whoami => {
            let token = ctx.token()?;
            let me = ctx.api(ctx.client.whoami(context::current(), token).await)?;
            if ctx.json {
                return ctx.print_json(&AccountJson::from(&me));
            }
            print!(
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
        }
        Command::Resources => {
            let token = ctx.token()?;
            let rs = ctx.resources(&token).await?;
            if ctx.json {
                return ctx.print_json(&rs.iter().map(ResourceJson::from).collect::<Vec<_>>());
            }
            let rows: Vec<Vec<String>> = rs
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.host.clone(),
                        r.kind.as_str().into(),
                        r.gpu_index
                            .map(|i| i.to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.description.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NAME", "HOST", "KIND", "GPU", "DESCRIPTION"], &rows)
            );
        }
        Command::Ls {
            resources,
            mine,
            user,
            from,
            to,
            all,
        } => {
            let token = ctx.token()?;
            let resource_ids = ctx.resolve_resources(&token, &resources).await?;
            let user_email = if mine {
                Some(
                    ctx.api(ctx.client.whoami(context::current(), token.clone()).await)?
                        .email,
                )
            } else {
                user
            };
            let window = match (from, to, all) {
                (None, None, true) => None,
                (from, to, _) => {
                    let start = match from {
                        Some(f) => parse_time(&f, now, tz)?,
                        None => now,
                    };
                    let end = match to {
                        Some(t) => parse_time(&t, now, tz)?,
                        None => start + chrono::TimeDelta::days(14),
                    };
                    if end <= start {
                        return Err(Failure::usage("--to must be after --from"));
                    }
                    Some(Period { start, end })
                }
            };
            let rs = ctx
                .list(
                    &token,
                    ReservationFilter {
                        resources: resource_ids,
                        user_email,
                        window,
                        include_cancelled: all,
                    },
                )
                .await?;
            ctx.print_reservations(&rs)?;
        }
        Command::Book {
            resources,
            from,
            to,
            r#for,
            note,
        } => {
            let token = ctx.token()?;
            let start = parse_time(&from, now, tz)?;
            let end = match (to, r#for) {
                (Some(t), _) => parse_time(&t, now, tz)?,
                (None, Some(d)) => parse_duration(&d)?.add_to(start, tz)?,
                (None, None) => return Err(Failure::usage("give --to or --for")),
            };
            if end <= start {
                return Err(Failure::usage("the end must be after the start"));
            }
            if note.chars().count() > limits::NOTE_MAX_CHARS {
                return Err(Failure::usage(format!(
                    "the note may have at most {} characters",
                    limits::NOTE_MAX_CHARS
                )));
            }
            let ids = ctx.resolve_resources(&token, &resources).await?;
            let request = BookingRequest {
                request_id: Uuid::new_v4(),
                resources: ids,
                period: Period { start, end },
                note,
            };
            // A lost reply is retried with the same request id: the daemon
            // returns the booking it made instead of a conflict with it.
            let mut attempt = 0;
            let booking = loop {
                attempt += 1;
                match ctx
                    .client
                    .create_booking(context::current(), token.clone(), request.clone())
                    .await
                {
                    Ok(r) => break r.map_err(|e| api_failure(e, tz))?,
                    Err(e) if attempt < 3 => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let _ = e;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            if ctx.json {
                return ctx.print_json(
                    &booking
                        .reservations
                        .iter()
                        .map(|r| ReservationJson::new(r, tz))
                        .collect::<Vec<_>>(),
                );
            }
            println!("booked (booking {}):", &booking.booking_id.to_string()[..8]);
            print!("{}", output::reservations_table(&booking.reservations, tz));
        }
        Command::Edit { id, from, to, note } => {
            let token = ctx.token()?;
            let r = ctx.find_reservation(&token, &id).await?;
            let change = ReservationChange {
                start: from.map(|f| parse_time(&f, now, tz)).transpose()?,
                end: to.map(|t| parse_time(&t, now, tz)).transpose()?,
                note,
            };
            if change.start.is_none() && change.end.is_none() && change.note.is_none() {
                return Err(Failure::usage(
                    "nothing to change: give --from, --to or --note",
                ));
            }
            let r = ctx.api(
                ctx.client
                    .update_reservation(context::current(), token, r.id, change)
                    .await,
            )?;
            done(&ctx, "changed", &r)?;
        }
        Command::Extend { id, by } => {
            let token = ctx.token()?;
            let span = parse_duration(&by)?;
            let r = ctx.find_reservation(&token, &id).await?;
            let change = ReservationChange {
                end: Some(span.add_to(r.period.end, tz)?),
                ..Default::default()
            };
            let r = ctx.api(
                ctx.client
                    .update_reservation(context::current(), token, r.id, change)
                    .await,
            )?;
            done(&ctx, "extended", &r)?;
        }
        Command::Cancel { id } => {
            let token = ctx.token()?;
            let r = ctx.find_reservation(&token, &id).await?;
            let r = ctx.api(
                ctx.client
                    .cancel_reservation(context::current(), token, r.id)
                    .await,
            )?;
            done(&ctx, "cancelled", &r)?;
        }
        Command::Release { id } => {
            let token = ctx.token()?;
            let r = ctx.find_reservation(&token, &id).await?;
            let r = ctx.api(
                ctx.client
                    .release_now(context::current(), token, r.id)
                    .await,
            )?;
            done(&ctx, "released", &r)?;
        }
        Command::Status => {
            let token = ctx.token()?;
            let report = ctx.api(ctx.client.status(context::current(), token).await)?;
            if ctx.json {
                #[derive(Serialize)]
                struct Row<'a> {
                    resource: ResourceJson,
                    current: Option<ReservationJson>,
                    next: Option<ReservationJson>,
                    telemetry: Option<&'a gpures_proto::GpuTelemetry>,
                    flags: Vec<String>,
                }
                let rows: Vec<Row> = report
                    .resources
                    .iter()
                    .map(|s| Row {
                        resource: ResourceJson::from(&s.resource),
                        current: s.current.as_ref().map(|r| ReservationJson::new(r, tz)),
                        next: s.next.as_ref().map(|r| ReservationJson::new(r, tz)),
                        telemetry: s.telemetry.as_ref(),
                        flags: s.flags.iter().map(flag_name).collect(),
                    })
                    .collect();
                return ctx.print_json(&rows);
            }
            let rows: Vec<Vec<String>> = report
                .resources
                .iter()
                .map(|s| {
                    let (now_holder, until) = match &s.current {
                        Some(r) => (r.user.display_name.clone(), format_local(r.period.end, tz)),
                        None => ("free".into(), "-".into()),
                    };
                    let (next, from) = match &s.next {
                        Some(r) => (
                            r.user.display_name.clone(),
                            format_local(r.period.start, tz),
                        ),
                        None => ("-".into(), "-".into()),
                    };
                    let (load, procs) = match &s.telemetry {
                        Some(t) => (load_text(t), processes_text(t)),
                        None => ("no GPU telemetry".into(), "-".into()),
                    };
                    let flags: Vec<String> = s.flags.iter().map(|f| f.marker()).collect();
                    vec![
                        s.resource.name.clone(),
                        s.resource.host.clone(),
                        now_holder,
                        until,
                        next,
                        from,
                        load,
                        procs,
                        if flags.is_empty() {
                            "-".into()
                        } else {
                            flags.join(" ")
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "RESOURCE",
                        "HOST",
                        "NOW",
                        "UNTIL",
                        "NEXT",
                        "FROM",
                        "LOAD",
                        "PROCESSES",
                        "FLAGS"
                    ],
                    &rows
                )
            );
            for h in &report.hosts {
                if let Some(note) = &h.note {
                    println!("{}: {}", text::sanitize(&h.host), text::sanitize(note));
                }
            }
            if report.hosts.is_empty() {
                println!("no GPU telemetry yet");
            }
            if let Some(c) = &report.calendar {
                println!("{}", output::calendar_line(c));
            }
        }
        Command::Run {
            wait,
            index,
            command,
        } => {
            let token = ctx.token()?;
            let devices = loop {
                match held_devices(&ctx, &token, index, &hello_host).await? {
                    Held::Now(devices) => break devices,
                    Held::Next(text) if wait => {
                        eprintln!("gpures: {text}; waiting for it");
                        tokio::time::sleep(Duration::from_secs(15)).await;
                    }
                    Held::Next(text) => return Err(Failure::new(exit::CONFLICT, text)),
                    Held::Nothing(text) => return Err(Failure::new(exit::CONFLICT, text)),
                }
            };
            use std::os::unix::process::CommandExt;
            let (program, args) = command
                .split_first()
                .ok_or_else(|| Failure::usage("give a command after --"))?;
            let err = std::process::Command::new(program)
                .args(args)
                .env("CUDA_VISIBLE_DEVICES", &devices)
                .exec();
            return Err(Failure::new(
                exit::ERROR,
                format!("cannot run {program}: {err}"),
            ));
        }
        Command::Env { index } => {
            let token = ctx.token()?;
            match held_devices(&ctx, &token, index, &hello_host).await? {
                Held::Now(devices) => println!("export CUDA_VISIBLE_DEVICES={devices}"),
                Held::Next(text) | Held::Nothing(text) => {
                    return Err(Failure::new(exit::CONFLICT, text));
                }
            }
        }
        Command::Admin(cmd) => admin(&ctx, cmd).await?,
        Command::Demo | Command::Completions { .. } | Command::Man { .. } => {
            return Err(Failure::usage("handled elsewhere"));
        }
    }
    Ok(())
}

async fn admin(ctx: &Ctx, cmd: AdminCommand) -> CliResult<()> {
    let token = ctx.token()?;
    match cmd {
        AdminCommand::Resource(AdminResource::Add {
            name,
            gpu_index,
            gpu_uuid,
            description,
        }) => {
            let kind = if gpu_index.is_some() || gpu_uuid.is_some() {
                ResourceKind::Gpu
            } else {
                ResourceKind::Server
            };
            let r = ctx.api(
                ctx.client
                    .create_resource(
                        context::current(),
                        token,
                        NewResource {
                            name,
                            host: String::new(),
                            kind,
                            gpu_index,
                            gpu_uuid,
                            description,
                        },
                    )
                    .await,
            )?;
            if ctx.json {
                return ctx.print_json(&ResourceJson::from(&r));
            }
            println!("added {}", text::sanitize(&r.name));
        }
        AdminCommand::User(AdminUser::List) => {
            let users = ctx.api(ctx.client.list_users(context::current(), token).await)?;
            if ctx.json {
                return ctx.print_json(&users.iter().map(AccountJson::from).collect::<Vec<_>>());
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.email.clone(),
                        u.display_name.clone(),
                        u.role.to_string(),
                        u.unix_user.clone(),
                        if u.disabled {
                            "disabled".into()
                        } else {
                            "active".into()
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["EMAIL", "NAME", "ROLE", "UNIX USER", "STATE"], &rows)
            );
        }
        AdminCommand::User(change) => {
            let u = match change {
                AdminUser::Promote { email } => {
                    ctx.client
                        .set_role(context::current(), token, email, Role::Admin)
                        .await
                }
                AdminUser::Demote { email } => {
                    ctx.client
                        .set_role(context::current(), token, email, Role::Member)
                        .await
                }
                AdminUser::Disable { email } => {
                    ctx.client
                        .disable_user(context::current(), token, email)
                        .await
                }
                AdminUser::List => return Ok(()),
            };
            let u = ctx.api(u)?;
            if ctx.json {
                return ctx.print_json(&AccountJson::from(&u));
            }
            println!(
                "{}: {}{}",
                text::sanitize(&u.email),
                u.role,
                if u.disabled { ", disabled" } else { "" }
            );
        }
    }
    Ok(())
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

/// A flag's stable name in `--json`, with its detail.
fn flag_name(f: &gpures_proto::GpuFlag) -> String {
    match f {
        gpures_proto::GpuFlag::UnreservedUse { unix_user, pid } => {
            format!("unreserved_use:{unix_user}:{pid}")
        }
        gpures_proto::GpuFlag::IdleReservation { idle_minutes } => {
            format!("idle_reservation:{idle_minutes}")
        }
        gpures_proto::GpuFlag::Overrun { unix_user, pid } => format!("overrun:{unix_user}:{pid}"),
    }
}

/// `97% · 2787/81559 MiB · ▁▃▇`.
fn load_text(t: &gpures_proto::GpuTelemetry) -> String {
    let util = t
        .utilization_pct
        .map(|u| format!("{u}%"))
        .unwrap_or_else(|| "?%".into());
    let mem = match (t.memory_used_mib, t.memory_total_mib) {
        (Some(u), Some(m)) => format!("{u}/{m} MiB"),
        _ => "? MiB".into(),
    };
    format!("{util} {mem} {}", sparkline(&t.history, 10))
}

/// `root:634 labuser1:638`, unknown users as `?`.
fn processes_text(t: &gpures_proto::GpuTelemetry) -> String {
    if t.processes.is_empty() {
        return "-".into();
    }
    t.processes
        .iter()
        .map(|p| format!("{}:{}", p.unix_user.as_deref().unwrap_or("?"), p.pid))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `width` values of `history` (0–100) as block characters.
pub fn sparkline(history: &[u8], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = history.len().saturating_sub(width);
    history[start..]
        .iter()
        .map(|v| BARS[usize::from((*v).min(100)) * 7 / 100])
        .collect()
}

enum Held {
    /// The value for CUDA_VISIBLE_DEVICES.
    Now(String),
    /// Nothing now; when the next reservation starts.
    Next(String),
    Nothing(String),
}

/// The GPUs of this host the caller holds right now, as UUIDs (or indices).
async fn held_devices(ctx: &Ctx, token: &str, index: bool, host: &str) -> CliResult<Held> {
    let index = index || std::env::var("GPURES_CUDA_DEVICES").is_ok_and(|v| v == "index");
    let me = ctx.api(
        ctx.client
            .whoami(context::current(), token.to_owned())
            .await,
    )?;
    let resources = ctx.resources(token).await?;
    let now = Utc::now();
    let mine = ctx
        .list(
            token,
            ReservationFilter {
                user_email: Some(me.email),
                window: Some(Period {
                    start: now,
                    end: now + chrono::TimeDelta::days(60),
                }),
                ..Default::default()
            },
        )
        .await?;
    let here = |id: i64| {
        resources
            .iter()
            .find(|r| r.id == id && r.host == host && r.kind == ResourceKind::Gpu)
    };
    let mut devices = Vec::new();
    for r in mine.iter().filter(|r| r.period.contains(now)) {
        let Some(res) = here(r.resource_id) else {
            continue;
        };
        let dev = match (&res.gpu_uuid, res.gpu_index) {
            (Some(uuid), _) if !index => uuid.clone(),
            (_, Some(i)) => i.to_string(),
            (Some(uuid), None) => uuid.clone(),
            (None, None) => {
                return Err(Failure::new(
                    exit::ERROR,
                    format!(
                        "{} has no GPU index or UUID: ask an admin to run `gpures-daemon resource discover`",
                        text::sanitize(&res.name)
                    ),
                ));
            }
        };
        devices.push(dev);
    }
    if !devices.is_empty() {
        return Ok(Held::Now(devices.join(",")));
    }
    Ok(
        match mine
            .iter()
            .filter(|r| r.period.start > now && here(r.resource_id).is_some())
            .min_by_key(|r| r.period.start)
        {
            Some(next) => Held::Next(format!(
                "you hold no GPU on {host} now; your next reservation ({}) starts {}",
                text::sanitize(&next.resource_name),
                format_local(next.period.start, ctx.tz)
            )),
            None => Held::Nothing(format!(
                "you hold no GPU on {host} now and have no reservation coming: book one with `gpures book`"
            )),
        },
    )
}

fn done(ctx: &Ctx, what: &str, r: &Reservation) -> CliResult<()> {
    if ctx.json {
        return ctx.print_json(&ReservationJson::new(r, ctx.tz));
    }
    println!("{what}:");
    print!(
        "{}",
        output::reservations_table(std::slice::from_ref(r), ctx.tz)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
