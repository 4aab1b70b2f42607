//! `gpures-daemon`: parses flags and calls the library. See `lib.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use gpures_daemon::admin::{self, AdminCommand};
use gpures_daemon::config::{Config, Overrides, Secret};
use gpures_daemon::{RunOptions, open_database};
use gpures_proto::Role;

#[derive(Parser, Debug)]
#[command(
    name = "gpures-daemon",
    version,
    about = "Owns the GPU reservations of this host and serves them to `gpures`"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Flags every subcommand accepts.
#[derive(Args, Debug, Clone, Default)]
struct Common {
    /// Config file (default /etc/gpures/gpures.toml, if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// State directory (JWT secret, embedded PostgreSQL).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Use this PostgreSQL server instead of the embedded cluster.
    #[arg(long, global = true, value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
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
enum CalendarCommand {
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
enum DbCommand {
    /// Dump the database (embedded or external) with pg_dump, custom format;
    /// restore with pg_restore.
    Dump { file: PathBuf },
}

#[derive(Subcommand, Debug)]
enum GpuCommand {
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
enum UserCommand {
    /// List every account.
    List,
    /// Make an account an admin.
    Promote { email: String },
    /// Make an admin a member again.
    Demote { email: String },
    /// Disable an account and revoke its tokens.
    Disable { email: String },
    /// Bind an account to another Unix user (revokes its tokens).
    Bind {
        email: String,
        #[arg(long, value_name = "NAME")]
        unix_user: String,
    },
}

#[derive(Subcommand, Debug)]
enum ResourceCommand {
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
    /// Create or update one resource per GPU of this host (idempotent).
    Discover {
        /// Host name to store (default: this daemon's host name).
        #[arg(long)]
        host: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Read what systemd passed before any thread exists (these edit the
    // environment).
    let systemd_listener = gpures_daemon::systemd::take_listener();
    let notifier = gpures_daemon::systemd::Notifier::from_env();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GPURES_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,sqlx=warn,tarpc=warn")
            }),
        )
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
    match runtime.block_on(real_main(cli, systemd_listener, notifier)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpures-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main(
    cli: Cli,
    systemd_listener: Option<std::os::unix::net::UnixListener>,
    notifier: gpures_daemon::systemd::Notifier,
) -> Result<()> {
    let mut overrides = Overrides {
        config: cli.common.config.clone(),
        state_dir: cli.common.state_dir.clone(),
        database_url: cli.common.database_url.clone().map(Secret::new),
        ..Overrides::default()
    };
    let command = cli.command.unwrap_or(Command::Serve {
        socket: None,
        host: None,
    });
    if let Command::Serve { socket, host } = &command {
        overrides.socket = socket.clone();
        overrides.host = host.clone();
    }
    if let Command::Man { dir } = &command {
        return write_man_pages(dir);
    }
    if let Command::Completions { shell } = &command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "gpures-daemon",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let config = Config::load(&overrides)?;
    let admin_command = match command {
        Command::Man { .. } | Command::Completions { .. } => return Ok(()),
        Command::Db(DbCommand::Dump { file }) => return dump(&config, &file).await,
        Command::Calendar(CalendarCommand::Check) => return calendar_check(&config).await,
        Command::Calendar(CalendarCommand::Resync { from, to }) => {
            return calendar_resync(&config, from.as_deref(), to.as_deref()).await;
        }
        Command::Serve { .. } => {
            let shutdown = gpures_daemon::termination_signal()?;
            let listener = match systemd_listener {
                Some(l) => {
                    l.set_nonblocking(true).context("the socket from systemd")?;
                    Some(tokio::net::UnixListener::from_std(l).context("the socket from systemd")?)
                }
                None => None,
            };
            let options = RunOptions {
                notifier,
                ..RunOptions::default()
            };
            return gpures_daemon::run(config, listener, shutdown, options).await;
        }
        Command::CheckConfig => {
            println!("{config:#?}");
            println!("state dir: {}", config.state_dir().display());
            println!("socket:    {}", config.socket_path().display());
            match (&config.database_url, gpures_daemon::pg::find_bin_dir()) {
                (Some(_), _) => println!("database:  external (database_url)"),
                (None, Some(bin)) => println!(
                    "database:  embedded, PostgreSQL binaries in {}",
                    bin.display()
                ),
                (None, None) => anyhow::bail!("{}", gpures_daemon::pg::PgError::BinariesMissing),
            }
            return Ok(());
        }
        Command::Gpu(GpuCommand::Probe { json, repeat }) => {
            let probe = gpures_daemon::gpu::Probe::new(config.gpu.backend, &config.gpu.nvidia_smi);
            let report = tokio::task::spawn_blocking(move || {
                gpures_daemon::gpu::probe_report(&probe, repeat.max(1), json)
            })
            .await
            .context("the probe thread failed")??;
            print!("{report}");
            return Ok(());
        }
        Command::Migrate => None,
        Command::User(u) => Some(match u {
            UserCommand::List => AdminCommand::UserList,
            UserCommand::Promote { email } => AdminCommand::UserRole {
                email,
                role: Role::Admin,
            },
            UserCommand::Demote { email } => AdminCommand::UserRole {
                email,
                role: Role::Member,
            },
            UserCommand::Disable { email } => AdminCommand::UserDisable { email },
            UserCommand::Bind { email, unix_user } => AdminCommand::UserBind { email, unix_user },
        }),
        Command::Resource(r) => Some(match r {
            ResourceCommand::Add {
                name,
                host,
                gpu_index,
                gpu_uuid,
                description,
            } => AdminCommand::ResourceAdd(admin::new_resource(
                name,
                host.unwrap_or_else(|| config.host_name()),
                gpu_index,
                gpu_uuid,
                description,
            )),
            ResourceCommand::List => AdminCommand::ResourceList,
            ResourceCommand::Discover { host } => {
                let probe =
                    gpures_daemon::gpu::Probe::new(config.gpu.backend, &config.gpu.nvidia_smi);
                if let Some(note) = probe.note() {
                    anyhow::bail!("{note}");
                }
                let gpus = tokio::task::spawn_blocking(move || probe.sample())
                    .await
                    .context("the probe thread failed")??;
                AdminCommand::ResourceDiscover {
                    host: host.unwrap_or_else(|| config.host_name()),
                    gpus,
                }
            }
            ResourceCommand::Disable { name } => AdminCommand::ResourceDisable { name },
        }),
    };
    let database = open_database(&config, Default::default()).await?;
    let result = async {
        database
            .store
            .migrate()
            .await
            .context("migrating the database")?;
        match admin_command {
            None => {
                println!("the database schema is up to date");
                Ok(())
            }
            Some(cmd) => {
                print!("{}", admin::execute(&database.store, cmd).await?);
                Ok(())
            }
        }
    }
    .await;
    database.close().await;
    result
}

/// Writes `gpures-daemon.1` and a page per subcommand.
fn write_man_pages(dir: &std::path::Path) -> Result<()> {
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

/// `db dump FILE`: pg_dump of whatever database the daemon uses.
async fn dump(config: &Config, file: &std::path::Path) -> Result<()> {
    let bin = gpures_daemon::pg::find_bin_dir()
        .map(|d| d.join("pg_dump"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("pg_dump"));
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(["--format=custom", "--no-owner", "--file"])
        .arg(file);
    let database = if config.database_url.is_some() {
        None
    } else {
        Some(open_database(config, Default::default()).await?)
    };
    match (
        &config.database_url,
        database.as_ref().and_then(|d| d.cluster()),
    ) {
        (Some(url), _) => {
            cmd.arg(format!("--dbname={}", url.expose()));
        }
        (None, Some(cluster)) => {
            cmd.arg("--host").arg(cluster.socket_dir()).args([
                "--port",
                "5432",
                "--username",
                gpures_daemon::pg::SUPERUSER,
                "--dbname",
                gpures_daemon::pg::DATABASE,
            ]);
        }
        (None, None) => anyhow::bail!("no database to dump"),
    }
    let status = cmd
        .status()
        .await
        .with_context(|| format!("running {}", bin.display()));
    if let Some(d) = database {
        d.close().await;
    }
    let status = status?;
    if !status.success() {
        anyhow::bail!("pg_dump failed ({status})");
    }
    println!("dumped to {} (restore with pg_restore)", file.display());
    Ok(())
}

/// `calendar check`: each failure comes with its fix.
async fn calendar_check(config: &Config) -> Result<()> {
    use gpures_daemon::calendar::Calendar;
    let cal = Calendar::connect(&config.calendar, &config.host_name()).await?;
    println!("key: service account {}", cal.client_email);
    match cal.check().await {
        Ok(()) => {
            println!(
                "OK: wrote and deleted a test event in {}",
                config.calendar.calendar_id.as_deref().unwrap_or("?")
            );
            Ok(())
        }
        Err(fix) => anyhow::bail!("{fix}"),
    }
}

fn parse_when(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("{s:?} is not RFC 3339 or YYYY-MM-DD"))?;
    Ok(d.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// `calendar resync`: the calendar made equal to the database.
async fn calendar_resync(config: &Config, from: Option<&str>, to: Option<&str>) -> Result<()> {
    use gpures_daemon::calendar::{Calendar, reconcile};
    let now = chrono::Utc::now();
    let from = from
        .map(parse_when)
        .transpose()?
        .unwrap_or(now - chrono::TimeDelta::days(30));
    let to = to
        .map(parse_when)
        .transpose()?
        .unwrap_or(now + chrono::TimeDelta::days(90));
    if to <= from {
        anyhow::bail!("--to must be after --from");
    }
    let cal = Calendar::connect(&config.calendar, &config.host_name()).await?;
    let database = open_database(config, Default::default()).await?;
    let result = async {
        database.store.migrate().await?;
        let retried = database.store.calendar_retry_failed().await?;
        let r = reconcile(&cal, &database.store, from, to).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "calendar resynced from {from} to {to}: {} created, {} updated, {} deleted, {} already right; {retried} refused changes queued again",
            r.created, r.updated, r.deleted, r.unchanged
        );
        anyhow::Ok(())
    }
    .await;
    database.close().await;
    result
}
