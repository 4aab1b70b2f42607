//! Test support shared by every integration test (this crate's and the
//! TUI's): a real PostgreSQL and the real daemon on a real Unix socket.
//!
//! [`fresh_database_url`] gives each test its own database, cloned from a
//! migrated template, in one embedded cluster per test process started with
//! the same [`Cluster`] code the daemon uses (in a temp dir, torn down when the
//! process exits). `GPURES_TEST_DATABASE_URL` switches to an external server.
//! [`TestDaemon`] runs [`run`](crate::run) on a temp socket over such a
//! database. Nothing here is used by the daemon itself.

pub mod fake_google;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use gpures_proto::{GpuresClient, LoginReply, PROTOCOL_VERSION, RegisterRequest, Role};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tarpc::context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, Secret};
use crate::pg::{Cluster, ClusterOptions};
use crate::store::{Store, UserChange};

const TEMPLATE: &str = "gpures_test_template";

struct Server {
    /// Where new databases are created from (the `postgres` database).
    admin: PgConnectOptions,
    /// Base URL to which `/<dbname>` is appended, for [`Config::database_url`].
    url_base: String,
    url_query: String,
}

static SERVER: OnceLock<std::result::Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The cluster of this test process, kept alive until exit.
static CLUSTER: OnceLock<(Cluster, PathBuf)> = OnceLock::new();

extern "C" fn stop_test_cluster() {
    if let Some((cluster, dir)) = CLUSTER.get() {
        if let Some(pid) = cluster.pid() {
            crate::unix::kill(pid, libc::SIGQUIT);
            for _ in 0..200 {
                if !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn start_server() -> std::result::Result<Server, String> {
    if let Ok(url) = std::env::var("GPURES_TEST_DATABASE_URL") {
        let admin: PgConnectOptions = url
            .parse()
            .map_err(|e| format!("GPURES_TEST_DATABASE_URL: {e}"))?;
        let (base, query) = split_url(&url);
        let server = Server {
            admin,
            url_base: base,
            url_query: query,
        };
        prepare_template(&server)?;
        return Ok(server);
    }
    let dir = tempfile::Builder::new()
        .prefix("gpures-test-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let cluster = Cluster::start(&dir.join("pg"), ClusterOptions { unsafe_fast: true })
        .map_err(|e| e.to_string())?;
    let socket = cluster.socket_dir().display().to_string();
    let admin = cluster.connect_options("postgres");
    if CLUSTER.set((cluster, dir)).is_ok() {
        // SAFETY: registering a plain extern "C" function has no preconditions.
        unsafe {
            libc::atexit(stop_test_cluster);
        }
    }
    let server = Server {
        admin,
        url_base: format!("postgres://{}@localhost", crate::pg::SUPERUSER),
        url_query: format!("host={socket}&port=5432"),
    };
    prepare_template(&server)?;
    Ok(server)
}

fn split_url(url: &str) -> (String, String) {
    let (without_query, query) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = without_query.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    (base.to_owned(), query.to_owned())
}

/// Creates the migrated template database, on a thread of its own because the
/// caller may be inside a runtime.
fn prepare_template(server: &Server) -> std::result::Result<(), String> {
    let admin = server.admin.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let mut conn = PgConnection::connect_with(&admin)
                .await
                .map_err(|e| e.to_string())?;
            let name = format!("{TEMPLATE}_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let store = Store::connect_lazy(admin.clone().database(&name), 2);
            store.migrate().await.map_err(|e| e.to_string())?;
            store.close().await;
            Ok(())
        })
    })
    .join()
    .map_err(|_| "template thread panicked".to_string())?
}

/// A URL of a new, migrated, empty database for one test.
///
/// # Errors
/// The test PostgreSQL could not be started or the database not created.
pub async fn fresh_database_url() -> Result<String> {
    let server = SERVER
        .get_or_init(start_server)
        .as_ref()
        .map_err(|e| anyhow::anyhow!("test PostgreSQL: {e}"))?;
    let name = format!(
        "gpures_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = PgConnection::connect_with(&server.admin).await?;
    let template = format!("{TEMPLATE}_{}", std::process::id());
    for attempt in 0.. {
        match sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {template}"
        )))
        .execute(&mut conn)
        .await
        {
            Ok(_) => break,
            // 55006: the template is briefly in use by a concurrent clone.
            Err(e)
                if attempt < 50
                    && e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55006") =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e).context("creating a test database"),
        }
    }
    let _ = conn.close().await;
    let sep = if server.url_query.is_empty() { "" } else { "?" };
    Ok(format!(
        "{}/{name}{sep}{}",
        server.url_base, server.url_query
    ))
}

/// A daemon serving a fresh database on a temp socket.
pub struct TestDaemon {
    pub socket: PathBuf,
    pub state_dir: tempfile::TempDir,
    pub database_url: String,
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

impl TestDaemon {
    /// Starts a daemon with the default configuration.
    ///
    /// # Errors
    /// The database or the socket could not be set up.
    pub async fn start() -> Result<TestDaemon> {
        TestDaemon::start_with(|_| {}).await
    }

    /// Starts a daemon on a fresh database, after `adjust` changed its config.
    ///
    /// # Errors
    /// The database or the socket could not be set up.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Result<TestDaemon> {
        let url = fresh_database_url().await?;
        TestDaemon::start_on(url, "test-host", adjust).await
    }

    /// Starts a daemon on an existing database (several daemons may share one).
    ///
    /// # Errors
    /// The socket could not be set up.
    pub async fn start_on(
        database_url: String,
        host: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<TestDaemon> {
        let state_dir = tempfile::Builder::new()
            .prefix("gpures-test-state-")
            .tempdir()?;
        // Reachable by a client running as another uid (tests drop to 65534).
        std::fs::set_permissions(state_dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let socket = state_dir.path().join("gpures.sock");
        let mut config = Config {
            socket: Some(socket.clone()),
            state_dir: Some(state_dir.path().to_owned()),
            database_url: Some(Secret::new(database_url.clone())),
            host: Some(host.to_owned()),
            ..Config::default()
        };
        config.limits.db_pool_size = 8;
        adjust(&mut config);
        let listener = crate::bind_socket(&config)?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::run(
            config,
            Some(listener),
            async move {
                let _ = rx.await;
            },
            crate::RunOptions::default(),
        ));
        let store = Store::connect_lazy(database_url.parse()?, 4);
        let daemon = TestDaemon {
            socket,
            state_dir,
            database_url,
            store,
            shutdown: Some(tx),
            task: Some(task),
        };
        // Wait until it answers.
        daemon.client().await?;
        Ok(daemon)
    }

    /// A connected client that has said hello.
    ///
    /// # Errors
    /// The daemon does not answer.
    pub async fn client(&self) -> Result<GpuresClient> {
        connect(&self.socket).await
    }

    /// Registers and logs in a user; returns the client and the login.
    ///
    /// # Errors
    /// Registration or login failed.
    pub async fn user(&self, email: &str, name: &str) -> Result<(GpuresClient, LoginReply)> {
        let client = self.client().await?;
        let req = RegisterRequest {
            email: email.to_owned(),
            display_name: name.to_owned(),
            password: PASSWORD.to_owned(),
        };
        client.register(context::current(), req).await??;
        let login = client
            .login(context::current(), email.to_owned(), PASSWORD.to_owned())
            .await??;
        Ok((client, login))
    }

    /// Registers a user, makes them an admin, and logs in.
    ///
    /// # Errors
    /// Registration, promotion or login failed.
    pub async fn admin(&self, email: &str, name: &str) -> Result<(GpuresClient, LoginReply)> {
        let (client, _) = self.user(email, name).await?;
        self.store
            .change_user(email, UserChange::Role(Role::Admin), None, "test")
            .await?;
        let login = client
            .login(context::current(), email.to_owned(), PASSWORD.to_owned())
            .await??;
        Ok((client, login))
    }

    /// Stops the daemon the way SIGTERM does and waits for it.
    ///
    /// # Errors
    /// The daemon failed.
    pub async fn stop(mut self) -> Result<()> {
        self.stop_inner().await
    }

    async fn stop_inner(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        self.store.close().await;
        Ok(())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Connects to `socket` and says hello.
///
/// # Errors
/// The connection or the hello failed.
pub async fn connect(socket: &Path) -> Result<GpuresClient> {
    let client = gpures_proto::framing::connect(socket).await?;
    client.hello(context::current(), PROTOCOL_VERSION).await??;
    Ok(client)
}
