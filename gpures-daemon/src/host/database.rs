//! Opening the configured database: `database_url` if set, else the
//! embedded cluster of [`super::pg`] in `<state-dir>/pg`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Config;
use crate::host::pg::{self, Cluster, ClusterOptions};
use crate::store::Store;

/// The database a daemon or an admin command works on, and the embedded
/// cluster behind it when there is one (stopped by [`Database::close`]).
#[derive(Debug)]
pub struct Database {
    pub store: Store,
    cluster: Option<Arc<Cluster>>,
    /// Where `LISTEN` connects when the pool goes through a pooler in
    /// transaction mode (`database_listen_url`).
    listen: Option<PgConnectOptions>,
}

impl Database {
    /// Closes the pool and stops the embedded cluster if this process runs it.
    pub async fn close(self) {
        self.store.close().await;
        if let Some(cluster) = self.cluster {
            let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
        }
    }

    /// What the change listener takes its session from: a pool of its own
    /// on `database_listen_url`, else the store's pool.
    pub fn listen_pool(&self) -> PgPool {
        match &self.listen {
            Some(options) => PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .acquire_timeout(std::time::Duration::from_secs(3))
                .connect_lazy_with(options.clone()),
            None => self.store.pool().clone(),
        }
    }

    /// The embedded cluster, if the database is embedded.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
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
    let idle = std::time::Duration::from_secs(config.limits.db_idle_secs.max(1));
    let listen = match &config.database_listen_url {
        Some(url) => Some(
            url.expose()
                .parse::<PgConnectOptions>()
                .context("database_listen_url is not a valid PostgreSQL URL")?
                .application_name("gpures-daemon-listen"),
        ),
        None => None,
    };
    if let Some(url) = &config.database_url {
        let options: PgConnectOptions = url
            .expose()
            .parse()
            .context("database_url is not a valid PostgreSQL URL")?;
        return Ok(Database {
            store: Store::connect_lazy_with_calendar(
                options.application_name("gpures-daemon"),
                pool_size,
                idle,
                config.calendar.enabled,
            ),
            cluster: None,
            listen,
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
        idle,
        config.calendar.enabled,
    );
    Ok(Database {
        store,
        cluster: Some(Arc::new(cluster)),
        listen,
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
