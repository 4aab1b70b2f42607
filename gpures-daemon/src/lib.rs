//! gpures-daemon: owns the GPU reservations of a host in PostgreSQL and serves
//! them to the `gpures` TUI and CLI over tarpc on a Unix socket.
//!
//! [`run`] is the whole daemon: it opens the database
//! ([`host::database`]: the embedded cluster or an external server), migrates
//! it, builds the [`service::Service`], starts the workers, and serves the
//! socket until the shutdown future resolves. The binary's `main` only parses
//! flags ([`cli`]) and calls [`dispatch`]; tests call [`run`] with their own
//! listener and shutdown.
//!
//! The layers, outside in:
//! - [`wire`]: the socket, frames and tarpc; each RPC is one service call.
//! - [`admin`]: the host admin's commands; also one service call each.
//! - [`service`]: the only way in; every rule, every check, every transaction.
//! - [`store`]: SQL and nothing else, one file per table.
//! - [`workers`]: background work (change listener, calendar, GPU monitor).
//! - [`gpu`]: the GPU probe and what is stored of it.
//! - [`host`]: PostgreSQL, the socket file, systemd, Unix calls.

pub mod admin;
pub mod cli;
pub mod config;
pub mod gpu;
pub mod host;
pub mod service;
pub mod store;
pub mod wire;
pub mod workers;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::net::UnixListener;

pub use host::database::{Database, open_database, prepare_state_dir};
pub use host::socket::bind_socket;

use crate::cli::{Cli, Command};
use crate::config::{Config, Overrides, Secret};
use crate::host::pg::ClusterOptions;
use crate::host::systemd;
use crate::service::{Auth, Service, Settings};
use crate::workers::calendar::{Calendar, CalendarWorker};
use crate::workers::changes::ChangeListener;
use crate::workers::db_supervisor::DbSupervisor;
use crate::workers::gpu_monitor::GpuMonitor;
use crate::workers::{ShutdownTrigger, WorkerHandle};

/// Options of [`run`] that tests, benchmarks and systemd change.
#[derive(Debug, Default)]
pub struct RunOptions {
    pub cluster: ClusterOptions,
    /// Where to report readiness and watchdog pings (systemd `Type=notify`).
    pub notifier: systemd::Notifier,
}

/// The service settings a configuration asks for.
pub fn settings(config: &Config) -> Settings {
    Settings {
        rules: service::Rules {
            max_length: chrono::TimeDelta::days(i64::from(config.booking.max_days)),
            past_grace: chrono::TimeDelta::minutes(i64::from(config.booking.past_grace_minutes)),
            horizon: chrono::TimeDelta::days(i64::from(config.booking.horizon_days)),
        },
        host: config.host_name(),
        idle_after: chrono::TimeDelta::minutes(i64::from(config.gpu.idle_minutes)),
        calendar_enabled: config.calendar.enabled,
        hash_queue_per_user: config.limits.hash_queue_per_user,
        failed_logins_per_minute: config.limits.failed_logins_per_minute,
        accounts_per_unix_user: usize::try_from(config.auth.accounts_per_unix_user)
            .unwrap_or(usize::MAX),
        peer_login: config.auth.peer_login,
        session_idle: chrono::TimeDelta::days(i64::from(config.auth.session_idle_days)),
        session_max: chrono::TimeDelta::days(i64::from(config.auth.session_max_days)),
        notify: service::notify::NotifyRules {
            lab_webhook: config.notify.lab_webhook_url.is_some(),
            lab_kinds: config
                .notify
                .lab_events
                .iter()
                .filter_map(|k| gpures_proto::NotificationKind::parse(k))
                .collect(),
            email: config.notify.smtp.enabled,
            member_webhooks: config.notify.member_webhooks,
            remind: chrono::TimeDelta::minutes(i64::from(config.notify.remind_minutes)),
        },
        reclaim: reclaim_rules(config),
        policy: config.policy.rules(),
        usage_keep: chrono::TimeDelta::days(i64::from(config.usage.keep_minutes_days)),
        enforce: service::enforce::EnforceRules {
            mode: match config.enforce.mode.as_str() {
                "off" => service::enforce::Mode::Off,
                "stop" => service::enforce::Mode::Stop,
                "kill" => service::enforce::Mode::Kill,
                _ => service::enforce::Mode::Warn,
            },
            // Validated: finite, between 0 and a year.
            grace: chrono::TimeDelta::milliseconds(
                (config.enforce.grace_minutes * 60_000.0) as i64,
            ),
            overrun_grace: chrono::TimeDelta::milliseconds(
                (config.enforce.overrun_grace_minutes * 60_000.0) as i64,
            ),
            exempt: config.enforce.exempt_users.clone(),
            unheld: config.enforce.unheld,
            dry_run: config.enforce.dry_run,
            journal: Some(config.state_dir().join("enforce-stopped.json")),
        },
    }
}

/// `[reclaim]` in the service's units.
fn reclaim_rules(config: &Config) -> service::reclaim::ReclaimRules {
    let r = &config.reclaim;
    // Validated: finite, between 0 and a year.
    let minutes = |m: f64| chrono::TimeDelta::milliseconds((m * 60_000.0) as i64);
    service::reclaim::ReclaimRules {
        enabled: r.enabled,
        dry_run: r.dry_run,
        idle: minutes(r.idle_minutes),
        startup_grace: minutes(r.startup_grace_minutes),
        no_show: minutes(r.no_show_minutes),
        warn: minutes(r.warn_minutes),
        keep: minutes(r.keep_minutes),
        memory_floor_mib: r.memory_floor_mib,
        ignore: r.ignore_processes.clone(),
        stale_after: chrono::TimeDelta::seconds(
            i64::try_from(config.gpu.sample_interval_secs.saturating_mul(3)).unwrap_or(i64::MAX),
        ),
    }
}

/// Runs the daemon until `shutdown` resolves: opens and migrates the
/// database, serves `listener` (or the configured socket when `None`), then
/// stops accepting, lets calls and transactions finish, stops the workers,
/// removes the socket it bound, and stops the embedded cluster.
///
/// # Errors
/// Start-up failures: configuration, database, secret, socket.
pub async fn run(
    config: Config,
    listener: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
    options: RunOptions,
) -> Result<()> {
    prepare_state_dir(&config.state_dir())?;
    let database = open_database(&config, options.cluster).await?;
    let result = serve(&config, &database, listener, shutdown, &options.notifier).await;
    database.close().await;
    result
}

async fn serve(
    config: &Config,
    database: &Database,
    listener: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
    notifier: &systemd::Notifier,
) -> Result<()> {
    let store = database.store.clone();
    store.migrate().await.context("migrating the database")?;
    if config.auth.token_ttl_hours.is_some() {
        tracing::warn!(
            "[auth] token_ttl_hours is ignored: sessions now slide, see session_idle_days"
        );
    }
    let service = Service::new(store.clone(), Auth::new(), settings(config));
    // Whatever a daemon that died stopped goes on now.
    let journal = config.state_dir().join("enforce-stopped.json");
    match service::enforce::resume_journal(&journal) {
        Ok(continued) if !continued.is_empty() => {
            tracing::warn!(
                n = continued.len(),
                "continued processes the previous daemon had stopped (it did not shut down cleanly)"
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, path = %journal.display(), "cannot read the enforcement journal")
        }
    }
    service
        .load_keys()
        .await
        .context("loading the token signing keys")?;
    let (trigger, down) = ShutdownTrigger::new();
    let mut workers: Vec<WorkerHandle> = Vec::new();
    // A worker that finds the daemon cannot go on says why here.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<String>(1);
    if let Some(cluster) = database.cluster() {
        workers.push(
            DbSupervisor {
                cluster: Arc::clone(cluster),
                fatal: fatal_tx.clone(),
            }
            .start(trigger.subscribe()),
        );
    }

    let (changes, change_log, listener_task) = ChangeListener {
        pool: database.listen_pool(),
        accounts: service.account_cache(),
    }
    .start(trigger.subscribe());
    workers.push(listener_task);
    workers.push(
        workers::granter::Granter {
            service: service.clone(),
            changes: changes.clone(),
            every: Duration::from_secs(5),
        }
        .start(trigger.subscribe()),
    );
    workers.push(
        workers::jobs::JobWatcher {
            service: service.clone(),
            every: Duration::from_secs(config.gpu.sample_interval_secs.max(1)),
        }
        .start(trigger.subscribe()),
    );

    workers.push(
        workers::notifier::Notifier {
            service: service.clone(),
            store: store.clone(),
            config: config.notify.clone(),
            changes: changes.clone(),
        }
        .start(trigger.subscribe()),
    );
    if let Some(dir) = &config.feeds.dir {
        workers.push(
            workers::feeds::FeedWriter {
                service: service.clone(),
                dir: dir.clone(),
                past: chrono::TimeDelta::days(i64::from(config.feeds.past_days)),
                ahead: chrono::TimeDelta::days(i64::from(config.feeds.ahead_days)),
                changes: changes.clone(),
            }
            .start(trigger.subscribe()),
        );
    }
    workers.push(
        workers::watcher::Watcher {
            service: service.clone(),
            every: Duration::from_secs(config.gpu.sample_interval_secs.max(1)),
        }
        .start(trigger.subscribe()),
    );

    let probe = gpu::Probe::new(config.gpu.backend, &config.gpu.nvidia_smi);
    tracing::info!(backend = probe.backend_name(), note = ?probe.note(), "GPU probe");
    let (_, monitor_task) = GpuMonitor {
        probe,
        store: store.clone(),
        host: config.host_name(),
        interval: Duration::from_secs(config.gpu.sample_interval_secs),
    }
    .start(trigger.subscribe());
    workers.push(monitor_task);

    if config.calendar.enabled {
        match Calendar::connect(&config.calendar, &config.host_name()).await {
            Ok(cal) => {
                tracing::info!(client_email = %cal.client_email, "Google Calendar sync is on");
                let worker = CalendarWorker {
                    calendar: Arc::new(cal),
                    store: store.clone(),
                    changes: changes.clone(),
                    writes_per_sec: config.calendar.writes_per_sec,
                    reconcile_every: Duration::from_secs(
                        config.calendar.reconcile_interval_secs.max(1),
                    ),
                    retry_first: Duration::from_millis(config.calendar.retry_base_ms.max(1)),
                };
                workers.push(worker.start(trigger.subscribe()));
            }
            Err(e) => {
                // Bookings never depend on Google: serve, and keep the outbox.
                tracing::error!(error = %e, "Failed to start Google Calendar sync; changes wait in the outbox");
            }
        }
    }

    let (listener, bound) = match listener {
        Some(l) => (l, None),
        None => (bind_socket(config)?, Some(config.socket_path())),
    };
    let shared = wire::rpc::Shared {
        service: service.clone(),
        changes,
        log: change_log,
        shutdown: down.clone(),
    };
    let limiter = wire::server::Limiter::new(wire::server::Limits {
        max_connections: config.limits.max_connections,
        max_connections_per_user: config.limits.max_connections_per_user,
        max_calls_per_connection: config.limits.max_calls_per_connection,
        max_calls_per_user: config.limits.max_calls_per_user,
        shared_calls_per_user: config.limits.shared_calls(),
        db_turns: usize::try_from(config.limits.db_pool_size).unwrap_or(16),
        frame_timeout: Duration::from_secs(config.limits.frame_timeout_secs.max(1)),
    });
    let local = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.to_owned()));
    let serving = tokio::spawn(wire::server::serve(listener, shared, limiter, down.clone()));
    // Ready means a client is answered: say hello to ourselves first.
    if let Some(path) = &local {
        self_check(path).await?;
    }
    tracing::info!(
        socket = ?local,
        calls_per_user = config.limits.max_calls_per_user,
        shared_calls_per_user = config.limits.shared_calls(),
        "gpures-daemon is serving"
    );
    notifier.notify("READY=1");
    if let Some(every) = notifier.watchdog_interval() {
        let ping = systemd::Notifier::clone_target(notifier);
        let mut down = trigger.subscribe();
        let store = store.clone();
        workers.push(WorkerHandle::spawn("watchdog", async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = down.requested() => return,
                    _ = tick.tick() => {}
                }
                // Alive means able to serve: no ping while the database is
                // gone, so systemd restarts a daemon that cannot recover.
                if database_answers(&store, every).await {
                    ping.notify("WATCHDOG=1");
                } else {
                    tracing::warn!("the database does not answer; withholding the watchdog ping");
                }
            }
        }));
    }
    drop(fatal_tx);
    let fatal = tokio::select! {
        _ = shutdown => None,
        Some(reason) = fatal_rx.recv() => Some(reason),
    };
    tracing::info!("shutting down");
    notifier.notify("STOPPING=1");
    trigger.trigger();
    let _ = serving.await;
    // Calls are done; transactions they started finish before the pool closes.
    service.drain().await;
    for worker in workers {
        worker.join().await;
    }
    // Nothing is left stopped by a daemon that is going away.
    service.continue_stopped();
    if let Some(path) = bound {
        let _ = std::fs::remove_file(path);
    }
    match fatal {
        Some(reason) => Err(anyhow::anyhow!(reason)),
        None => Ok(()),
    }
}

/// Whether `SELECT 1` answers within `within`.
async fn database_answers(store: &store::Store, within: Duration) -> bool {
    let probe = async {
        let mut conn = store.acquire().await.ok()?;
        sqlx::query("SELECT 1").execute(&mut *conn).await.ok()
    };
    matches!(tokio::time::timeout(within, probe).await, Ok(Some(_)))
}

/// What systemd handed the process before any thread started.
#[derive(Debug, Default)]
pub struct FromSystemd {
    /// The socket of `gpures.socket` (socket activation).
    pub listener: Option<std::os::unix::net::UnixListener>,
    /// Where readiness and watchdog pings go.
    pub notifier: systemd::Notifier,
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command failed with, with context for the admin.
pub async fn dispatch(cli: Cli, systemd: FromSystemd) -> Result<()> {
    let command = cli.command.unwrap_or(Command::Serve {
        socket: None,
        host: None,
    });
    match &command {
        Command::Man { dir } => return cli::write_man_pages(dir),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "gpures-daemon",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        _ => {}
    }
    if cli.common.database_url.is_some() {
        eprintln!(
            "gpures-daemon: warning: --database-url is visible to every user of this host \
             (ps, /proc); put it in GPURES_DATABASE_URL or database_url in the config file"
        );
    }
    let mut overrides = Overrides {
        config: cli.common.config.clone(),
        state_dir: cli.common.state_dir.clone(),
        database_url: cli.common.database_url.clone().map(Secret::new),
        ..Overrides::default()
    };
    if let Command::Serve { socket, host } = &command {
        overrides.socket = socket.clone();
        overrides.host = host.clone();
    }
    let config = Config::load(&overrides)?;
    if let Command::Serve { .. } = command {
        let shutdown = termination_signal()?;
        let listener = match systemd.listener {
            Some(l) => {
                l.set_nonblocking(true).context("the socket from systemd")?;
                Some(tokio::net::UnixListener::from_std(l).context("the socket from systemd")?)
            }
            None => None,
        };
        let options = RunOptions {
            notifier: systemd.notifier,
            ..RunOptions::default()
        };
        return run(config, listener, shutdown, options).await;
    }
    admin::run(&config, command).await
}

/// Connects to our own socket and says hello, so that readiness is only
/// reported once a client would really be answered.
async fn self_check(path: &Path) -> Result<()> {
    let check = async {
        let client = gpures_proto::framing::connect(path).await?;
        client
            .hello(tarpc::context::current(), gpures_proto::PROTOCOL_VERSION)
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), check)
        .await
        .context("the daemon did not answer its own hello in time")?
        .context("the daemon cannot answer on its own socket")
}

/// Resolves on SIGTERM or SIGINT.
///
/// # Errors
/// The signal handlers cannot be installed.
pub fn termination_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
