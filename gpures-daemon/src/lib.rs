//! gpures-daemon: owns the GPU reservations of a host in PostgreSQL and serves
//! them to the `gpures` TUI and CLI over tarpc on a Unix socket.
//!
//! [`run`] is the whole daemon: it opens the database ([`open_database`]: the
//! embedded cluster of [`pg`], or an external server), migrates it, loads the
//! token secret, starts the change listener ([`changes`]) and serves the socket
//! ([`server`]) until the shutdown future resolves. The binary's `main` only
//! parses flags; tests call [`run`] with their own listener and shutdown.
//!
//! Modules by concern: [`config`], [`store`] (SQL), [`auth`] (passwords,
//! tokens, throttling), [`service`] (booking rules), [`rpc`] (the tarpc glue
//! and error mapping), [`server`] (accept loop, limits), [`pg`] (embedded
//! PostgreSQL), [`admin`] (the host admin's subcommands).

pub mod admin;
pub mod auth;
pub mod calendar;
pub mod changes;
pub mod config;
pub mod gpu;
pub mod pg;
pub mod rpc;
pub mod server;
pub mod service;
pub mod store;
pub mod systemd;
pub mod testing;
pub mod unix;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use sqlx::postgres::PgConnectOptions;
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::pg::{Cluster, ClusterOptions};
use crate::store::Store;

/// The database a daemon or an admin command works on, and the embedded
/// cluster behind it when there is one (stopped by [`Database::close`]).
#[derive(Debug)]
pub struct Database {
    pub store: Store,
    cluster: Option<Cluster>,
}

impl Database {
    /// Closes the pool and stops the embedded cluster if this process runs it.
    pub async fn close(self) {
        self.store.close().await;
        if let Some(cluster) = self.cluster {
            let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
        }
    }

    /// The embedded cluster, if the database is embedded.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }
}

/// Opens the configured database: `database_url` if set, else the embedded
/// cluster in `<state-dir>/pg` (started, or attached to when another process
/// runs it). Does not migrate.
///
/// # Errors
/// An invalid URL, missing PostgreSQL binaries, or a cluster that fails to start.
pub async fn open_database(config: &Config, cluster_options: ClusterOptions) -> Result<Database> {
    let pool_size = config.limits.db_pool_size;
    if let Some(url) = &config.database_url {
        let options: PgConnectOptions = url
            .expose()
            .parse()
            .context("database_url is not a valid PostgreSQL URL")?;
        return Ok(Database {
            store: Store::connect_lazy_with_calendar(
                options.application_name("gpures-daemon"),
                pool_size,
                config.calendar.enabled,
            ),
            cluster: None,
        });
    }
    let state_dir = prepare_state_dir(&config.state_dir())?;
    let root = state_dir.join("pg");
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&root, cluster_options))
        .await
        .context("the PostgreSQL start-up thread failed")??;
    create_database_if_missing(&cluster, pg::DATABASE).await?;
    let store = Store::connect_lazy_with_calendar(
        cluster.connect_options(pg::DATABASE),
        pool_size,
        config.calendar.enabled,
    );
    Ok(Database {
        store,
        cluster: Some(cluster),
    })
}

/// Creates `name` in the embedded cluster unless it exists (two processes
/// racing here both succeed).
async fn create_database_if_missing(cluster: &Cluster, name: &str) -> Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .context("connecting to the embedded PostgreSQL")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await;
        if let Err(e) = created {
            // 42P04: created by a process that raced us.
            if e.as_database_error().and_then(|d| d.code()).as_deref() != Some("42P04") {
                return Err(e).context("creating the gpures database");
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// Creates the state directory, private to the daemon's user.
///
/// # Errors
/// The directory cannot be created.
pub fn prepare_state_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state dir {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("protecting the state dir {}", dir.display()))?;
    }
    Ok(dir.to_owned())
}

/// Binds the configured socket: removes a stale file, binds, and applies the
/// configured mode and group.
///
/// # Errors
/// The path is in use by a live daemon, or cannot be bound or chmod'ed.
pub fn bind_socket(config: &Config) -> Result<UnixListener> {
    let path = config.socket_path();
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            anyhow::bail!("another daemon is serving {}", path.display());
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(
        &path,
        std::fs::Permissions::from_mode(config.socket_mode_bits()?),
    )
    .with_context(|| format!("setting the mode of {}", path.display()))?;
    if let Some(group) = &config.socket_group {
        let gid = unix::group_by_name(group)
            .with_context(|| format!("socket_group {group:?} does not exist"))?;
        unix::chown(&path, u32::MAX, gid)
            .with_context(|| format!("setting the group of {}", path.display()))?;
    }
    Ok(listener)
}

/// Options of [`run`] that tests, benchmarks and systemd change.
#[derive(Debug, Default)]
pub struct RunOptions {
    pub cluster: ClusterOptions,
    /// Where to report readiness and watchdog pings (systemd `Type=notify`).
    pub notifier: systemd::Notifier,
}

/// Runs the daemon until `shutdown` resolves: opens and migrates the
/// database, serves `listener` (or the configured socket when `None`), then
/// stops accepting, lets calls finish, removes the socket it bound, and stops
/// the embedded cluster.
///
/// # Errors
/// Start-up failures: configuration, database, secret, socket.
pub async fn run(
    config: Config,
    listener: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
    options: RunOptions,
) -> Result<()> {
    let state_dir = prepare_state_dir(&config.state_dir())?;
    let database = open_database(&config, options.cluster).await?;
    let result = serve_database(
        &config,
        &state_dir,
        &database,
        listener,
        shutdown,
        &options.notifier,
    )
    .await;
    database.close().await;
    result
}

async fn serve_database(
    config: &Config,
    state_dir: &Path,
    database: &Database,
    listener: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
    notifier: &systemd::Notifier,
) -> Result<()> {
    let store = database.store.clone();
    store.migrate().await.context("migrating the database")?;
    let ttl = Duration::from_secs(u64::from(config.auth.token_ttl_hours) * 3600);
    let auth = auth::Auth::load(state_dir, ttl)?;
    let rules = service::Rules {
        max_length: chrono::TimeDelta::days(i64::from(config.booking.max_days)),
        past_grace: chrono::TimeDelta::minutes(i64::from(config.booking.past_grace_minutes)),
    };
    let service = service::Service::new(store.clone(), rules);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let users = std::sync::Arc::new(store::UserCache::default());
    let (changes_rx, listener_task) =
        changes::spawn(store.pool().clone(), users.clone(), shutdown_rx.clone());
    let (listener, bound) = match listener {
        Some(l) => (l, None),
        None => (bind_socket(config)?, Some(config.socket_path())),
    };
    let probe = gpu::Probe::new(config.gpu.backend, &config.gpu.nvidia_smi);
    tracing::info!(backend = probe.backend_name(), note = ?probe.note(), "GPU probe");
    let (_, monitor_task) = gpu::Monitor::spawn(
        probe,
        store.clone(),
        config.host_name(),
        Duration::from_secs(config.gpu.sample_interval_secs),
        shutdown_rx.clone(),
    );
    let calendar_task = if config.calendar.enabled {
        match calendar::Calendar::connect(&config.calendar, &config.host_name()).await {
            Ok(cal) => {
                tracing::info!(client_email = %cal.client_email, "Google Calendar sync is on");
                Some(calendar::Worker::spawn(
                    std::sync::Arc::new(cal),
                    store.clone(),
                    changes_rx.clone(),
                    shutdown_rx.clone(),
                    config.calendar.writes_per_sec,
                    Duration::from_secs(config.calendar.reconcile_interval_secs.max(1)),
                    Duration::from_millis(config.calendar.retry_base_ms.max(1)),
                ))
            }
            Err(e) => {
                // Bookings never depend on Google: serve, and keep the outbox.
                tracing::error!(error = %e, "Failed to start Google Calendar sync; changes wait in the outbox");
                None
            }
        }
    } else {
        None
    };
    let shared = rpc::Shared {
        service,
        auth,
        changes: changes_rx,
        shutdown: shutdown_rx.clone(),
        host: config.host_name(),
        idle_after: chrono::TimeDelta::minutes(i64::from(config.gpu.idle_minutes)),
        users,
        calendar_enabled: config.calendar.enabled,
    };
    let limiter = server::Limiter::new(
        config.limits.max_connections,
        config.limits.max_connections_per_user,
        Duration::from_secs(config.limits.frame_timeout_secs.max(1)),
    );
    let local = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.to_owned()));
    let serving = tokio::spawn(server::serve(listener, shared, limiter, shutdown_rx));
    // Ready means a client is answered: say hello to ourselves first.
    if let Some(path) = &local {
        self_check(path).await?;
    }
    tracing::info!(socket = ?local, "gpures-daemon is serving");
    notifier.notify("READY=1");
    let watchdog = notifier.watchdog_interval().map(|every| {
        let mut down = shutdown_tx.subscribe();
        let ping = systemd::Notifier::clone_target(notifier);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown_requested(&mut down) => return,
                    _ = tick.tick() => ping.notify("WATCHDOG=1"),
                }
            }
        })
    });
    shutdown.await;
    tracing::info!("shutting down");
    notifier.notify("STOPPING=1");
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = shutdown_tx.send(true);
    let _ = serving.await;
    let _ = listener_task.await;
    let _ = monitor_task.await;
    if let Some(t) = calendar_task {
        let _ = t.await;
    }
    if let Some(path) = bound {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
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

/// Resolves once the shutdown flag turns true (or its sender is gone).
pub async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await.map(|_| ());
}
