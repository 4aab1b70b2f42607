//! Test support for every integration test and the benchmarks: a real
//! PostgreSQL and the real daemon on a real Unix socket. A dev-only crate:
//! nothing here ships in the daemon or the client.
//!
//! - [`fresh_database_url`] gives each test its own database, cloned from a
//!   migrated template, in one embedded cluster per test process started with
//!   the same [`Cluster`] code the daemon uses (in a temp dir, torn down when
//!   the process exits). `GPURES_TEST_DATABASE_URL` switches to an external
//!   server.
//! - [`TestDaemon`] runs [`gpures_daemon::run`] on a temp socket over such a
//!   database; [`TestDaemon::builder`] adds GPUs and config changes.
//! - [`HostAdmin`] runs host-admin commands (promote, add GPUs, discover) on
//!   a database through the daemon's own service, as `gpures-daemon` does.
//! - [`fake_google`]: a local server speaking Google's token and Calendar v3
//!   protocol, driven by the real client library.
//! - [`connect`] and [`PASSWORD`]: a client that said hello, and the
//!   password every test user gets.

pub mod fake_google;
pub mod sinks;
pub mod smi;

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

use gpures_daemon::admin::{ResourceAction, UserAction, resources, users};
use gpures_daemon::config::{Config, Secret};
use gpures_daemon::host::pg::{self, Cluster, ClusterOptions};
use gpures_daemon::service::{Actor, Service};
use gpures_daemon::store::Store;
use gpures_proto::{NewResource, ResourceKind};

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
            gpures_daemon::host::unix::kill(pid, libc::SIGQUIT);
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
        url_base: format!("postgres://{}@localhost", pg::SUPERUSER),
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

/// A PostgreSQL cluster of its own, started with the daemon's [`Cluster`]
/// code and stopped on drop: the benchmarks use a durable one (fsync on),
/// unlike the fast shared cluster of [`fresh_database_url`].
pub struct TestCluster {
    cluster: Option<Cluster>,
    dir: tempfile::TempDir,
    next_db: AtomicU32,
    options: ClusterOptions,
}

impl TestCluster {
    /// Starts a cluster in a new temp dir.
    ///
    /// # Errors
    /// PostgreSQL could not be started.
    pub fn start(options: ClusterOptions) -> Result<TestCluster> {
        let dir = tempfile::Builder::new()
            .prefix("gpures-cluster-")
            .tempdir()?;
        // Reachable by the cluster's own user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        let cluster = Cluster::start(&dir.path().join("pg"), options)?;
        Ok(TestCluster {
            cluster: Some(cluster),
            dir,
            next_db: AtomicU32::new(0),
            options,
        })
    }

    /// Stops the server (fast shutdown: open transactions roll back) and
    /// starts it again on the same data, as a restart of an external
    /// PostgreSQL does: every connection open before is closed. Blocking.
    ///
    /// # Errors
    /// The server did not start again.
    pub fn restart(&mut self) -> Result<()> {
        if let Some(c) = self.cluster.take() {
            c.stop();
        }
        self.cluster = Some(Cluster::start(&self.dir.path().join("pg"), self.options)?);
        Ok(())
    }

    /// A folder beside the cluster for a test's own files, removed with it.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A new, migrated, empty database; returns its URL.
    ///
    /// # Errors
    /// The database could not be created or migrated.
    pub async fn database(&self) -> Result<String> {
        let cluster = self.cluster.as_ref().context("the cluster was stopped")?;
        let name = format!("db_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let mut conn = PgConnection::connect_with(&cluster.connect_options("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        let url = format!(
            "postgres://{}@localhost/{name}?host={}&port=5432",
            pg::SUPERUSER,
            cluster.socket_dir().display()
        );
        let store = Store::connect_lazy(url.parse()?, 2);
        store.migrate().await?;
        store.close().await;
        Ok(url)
    }

    /// Stops the cluster and waits for it.
    pub fn stop(mut self) {
        if let Some(c) = self.cluster.take() {
            c.stop();
        }
    }
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

/// The host admin on one database: the daemon's own service acting as
/// [`Actor::HostAdmin`], as `gpures-daemon user …` and `resource …` do.
#[derive(Clone, Debug)]
pub struct HostAdmin {
    service: Service,
}

impl HostAdmin {
    /// The host admin of the database at `database_url`.
    ///
    /// # Errors
    /// The URL is invalid.
    pub fn on(database_url: &str) -> Result<HostAdmin> {
        let store = Store::connect_lazy(database_url.parse()?, 2);
        Ok(HostAdmin {
            service: gpures_daemon::admin::host_service(store, &Config::default()),
        })
    }

    /// Runs `gpures-daemon user …`; returns what it prints.
    ///
    /// # Errors
    /// The command failed.
    pub async fn user(&self, action: UserAction) -> Result<String> {
        Ok(users::execute(&self.service, &Actor::host_admin(), action).await?)
    }

    /// Runs `gpures-daemon resource …`; returns what it prints.
    ///
    /// # Errors
    /// The command failed.
    pub async fn resource(&self, action: ResourceAction) -> Result<String> {
        Ok(resources::execute(&self.service, &Actor::host_admin(), action).await?)
    }

    /// `gpures-daemon user promote EMAIL`.
    ///
    /// # Errors
    /// Unknown email, store failures.
    pub async fn promote(&self, email: &str) -> Result<()> {
        self.user(UserAction::Role {
            email: email.to_owned(),
            role: Role::Admin,
        })
        .await
        .map(|_| ())
    }

    /// Adds `gpu0` … `gpu{n-1}` on `host` (GPU indices 0 … n-1); returns their ids.
    ///
    /// # Errors
    /// A name exists already, store failures.
    pub async fn add_gpus(&self, host: &str, n: i32) -> Result<Vec<i64>> {
        let actor = Actor::host_admin();
        let mut ids = Vec::new();
        for i in 0..n {
            let new = NewResource {
                name: format!("gpu{i}"),
                host: host.to_owned(),
                kind: ResourceKind::Gpu,
                gpu_index: Some(i),
                gpu_uuid: None,
                description: format!("test GPU {i}"),
            };
            ids.push(self.service.create_resource(&actor, new).await?.id);
        }
        Ok(ids)
    }
}

/// A daemon serving a fresh database on a temp socket.
pub struct TestDaemon {
    pub socket: PathBuf,
    pub state_dir: tempfile::TempDir,
    pub database_url: String,
    /// A pool on the daemon's database, for tests that inspect rows.
    pub store: Store,
    /// The ids of the GPUs [`TestDaemonBuilder::with_gpus`] added.
    pub gpus: Vec<i64>,
    host: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

/// How to start a [`TestDaemon`].
pub struct TestDaemonBuilder {
    gpus: i32,
    host: String,
    database_url: Option<String>,
    adjust: Box<dyn FnOnce(&mut Config) + Send>,
}

impl TestDaemonBuilder {
    /// Adds `gpu0` … `gpu{n-1}` before the daemon serves.
    pub fn with_gpus(mut self, n: i32) -> Self {
        self.gpus = n;
        self
    }

    /// Changes the configuration before the daemon starts.
    pub fn config(mut self, adjust: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.adjust = Box::new(adjust);
        self
    }

    /// The daemon's host name (default `test-host`).
    pub fn host(mut self, host: &str) -> Self {
        host.clone_into(&mut self.host);
        self
    }

    /// Serves an existing database (several daemons may share one).
    pub fn database(mut self, url: String) -> Self {
        self.database_url = Some(url);
        self
    }

    /// Starts the daemon and waits until it answers.
    ///
    /// # Errors
    /// The database or the socket could not be set up.
    pub async fn start(self) -> Result<TestDaemon> {
        let url = match self.database_url {
            Some(url) => url,
            None => fresh_database_url().await?,
        };
        let gpus = if self.gpus > 0 {
            HostAdmin::on(&url)?.add_gpus(&self.host, self.gpus).await?
        } else {
            Vec::new()
        };
        let mut daemon = TestDaemon::start_on(url, &self.host, self.adjust).await?;
        daemon.gpus = gpus;
        Ok(daemon)
    }
}

impl TestDaemon {
    /// How to start one: GPUs, configuration, host, database.
    pub fn builder() -> TestDaemonBuilder {
        TestDaemonBuilder {
            gpus: 0,
            host: "test-host".to_owned(),
            database_url: None,
            adjust: Box::new(|_| {}),
        }
    }

    /// Starts a daemon with the default configuration.
    ///
    /// # Errors
    /// The database or the socket could not be set up.
    pub async fn start() -> Result<TestDaemon> {
        TestDaemon::builder().start().await
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
        let (shutdown, task) = TestDaemon::serve(&database_url, state_dir.path(), host, adjust)?;
        let store = Store::connect_lazy(database_url.parse()?, 4);
        let daemon = TestDaemon {
            socket: state_dir.path().join("gpures.sock"),
            state_dir,
            database_url,
            store,
            gpus: Vec::new(),
            host: host.to_owned(),
            shutdown: Some(shutdown),
            task: Some(task),
        };
        // Wait until it answers.
        daemon.client().await?;
        Ok(daemon)
    }

    /// Stops the daemon and starts it again on the same database, state
    /// directory and socket (with the default configuration), as a package
    /// upgrade does; clients connected before see their connection end.
    ///
    /// # Errors
    /// The daemon failed, or could not start again.
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        let (shutdown, task) = TestDaemon::serve(
            &self.database_url,
            self.state_dir.path(),
            &self.host,
            |_| {},
        )?;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
        self.client().await?;
        Ok(())
    }

    /// Binds the socket in `state_dir` and runs a daemon on it.
    fn serve(
        database_url: &str,
        state_dir: &Path,
        host: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<(oneshot::Sender<()>, JoinHandle<Result<()>>)> {
        let socket = state_dir.join("gpures.sock");
        let mut config = Config {
            socket: Some(socket.clone()),
            state_dir: Some(state_dir.to_owned()),
            database_url: Some(Secret::new(database_url.to_owned())),
            host: Some(host.to_owned()),
            ..Config::default()
        };
        config.limits.db_pool_size = 8;
        // Tests play a whole lab from one Unix user; the tests of the
        // one-account rule set it back to 1.
        config.auth.accounts_per_unix_user = 1000;
        adjust(&mut config);
        let listener = gpures_daemon::bind_socket(&config)?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gpures_daemon::run(
            config,
            Some(listener),
            async move {
                let _ = rx.await;
            },
            gpures_daemon::RunOptions::default(),
        ));
        Ok((tx, task))
    }

    /// The host admin of this daemon's database.
    ///
    /// # Errors
    /// The URL is invalid.
    pub fn host_admin(&self) -> Result<HostAdmin> {
        HostAdmin::on(&self.database_url)
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

    /// Registers a user, makes them an admin (as the host admin would), and
    /// logs in.
    ///
    /// # Errors
    /// Registration, promotion or login failed.
    pub async fn admin(&self, email: &str, name: &str) -> Result<(GpuresClient, LoginReply)> {
        let (client, _) = self.user(email, name).await?;
        self.host_admin()?.promote(email).await?;
        let login = client
            .login(context::current(), email.to_owned(), PASSWORD.to_owned())
            .await??;
        Ok((client, login))
    }

    /// The key that signs tokens now (id and secret), read from the
    /// database, for tests that forge or inspect tokens.
    ///
    /// # Errors
    /// The query failed or there is no key.
    pub async fn signing_key(&self) -> Result<(i32, Vec<u8>)> {
        let mut conn = self.store.acquire().await?;
        let keys = gpures_daemon::store::keys::all(&mut conn).await?;
        let key = keys
            .into_iter()
            .find(|k| k.retired_at.is_none())
            .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        Ok((key.id, key.secret))
    }

    /// The reservations stored, read straight from the database.
    ///
    /// # Errors
    /// The query failed.
    pub async fn reservations(
        &self,
        filter: &gpures_proto::ReservationFilter,
    ) -> Result<Vec<gpures_proto::Reservation>> {
        all_reservations(&self.store, filter).await
    }

    /// Every pair of overlapping active reservations of one resource; zero
    /// while invariant 1 holds.
    ///
    /// # Errors
    /// The query failed.
    pub async fn overlapping_pairs(&self) -> Result<i64> {
        let mut conn = self.store.acquire().await?;
        Ok(gpures_daemon::store::reservations::overlapping_pairs(&mut conn).await?)
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

/// Every reservation matching `filter`, read straight from the database a
/// page at a time.
///
/// # Errors
/// The query failed.
pub async fn all_reservations(
    store: &Store,
    filter: &gpures_proto::ReservationFilter,
) -> Result<Vec<gpures_proto::Reservation>> {
    let mut conn = store.acquire().await?;
    let mut all = Vec::new();
    let mut after: Option<gpures_proto::Cursor> = None;
    loop {
        let page =
            gpures_daemon::store::reservations::page(&mut conn, filter, after.as_ref(), 1000)
                .await?;
        let done = page.len() < 1000;
        after = page.last().map(|r| gpures_proto::Cursor {
            start: r.period.start,
            resource_name: r.resource_name.clone(),
            id: r.id,
        });
        all.extend(page);
        if done {
            return Ok(all);
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

/// The daemon's change version now, to follow live changes from
/// (`wait_for_changes` from 0 answers at once).
///
/// # Panics
/// The call failed: a test's setup is broken.
pub async fn change_version(client: &GpuresClient, token: &str) -> u64 {
    client
        .wait_for_changes(context::current(), token.to_owned(), 0)
        .await
        .expect("rpc")
        .expect("the change version")
        .version
}

/// A throwaway Unix user for tests that need several lab members: made with
/// `useradd` (no home, no login shell, `gecos` as its full name), deleted
/// with `userdel` on drop. Tests run as root.
#[derive(Debug)]
pub struct UnixUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// A config dir the user owns (its `XDG_CONFIG_HOME`).
    pub config: tempfile::TempDir,
}

impl UnixUser {
    /// Creates `gpr` plus random letters.
    ///
    /// # Errors
    /// `useradd` failed (not root?) or the config dir cannot be made.
    pub fn create(gecos: &str) -> Result<UnixUser> {
        let name = format!("gpr{:08x}", rand::random::<u32>());
        // Another process may hold the lock on /etc/passwd for a moment
        // (an embedded cluster creating its user): try again.
        let mut status = None;
        for attempt in 0..20 {
            let done = std::process::Command::new("useradd")
                .args([
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--comment",
                    &format!("{gecos},,,"),
                    &name,
                ])
                .status()?;
            if done.success() {
                status = Some(done);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50 * (attempt + 1)));
        }
        anyhow::ensure!(status.is_some(), "useradd {name} kept failing");
        let config = tempfile::tempdir()?;
        let user = gpures_daemon::host::unix::user_by_name(&name)
            .ok_or_else(|| anyhow::anyhow!("{name} was not created"))?;
        std::os::unix::fs::chown(config.path(), Some(user.uid), Some(user.gid))?;
        Ok(UnixUser {
            name,
            uid: user.uid,
            gid: user.gid,
            config,
        })
    }

    /// `runuser -u NAME -- env … PROGRAM ARGS` with the user's config dir,
    /// `GPURES_SOCKET` = `socket` and `TZ` = Asia/Seoul.
    pub fn command(&self, socket: &Path, program: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("runuser");
        cmd.args(["-u", &self.name, "--", "env"])
            .arg(format!("XDG_CONFIG_HOME={}", self.config.path().display()))
            .arg(format!("GPURES_SOCKET={}", socket.display()))
            .arg("TZ=Asia/Seoul")
            .arg(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }
}

/// What one run of a program as a [`UnixUser`] did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl UnixUser {
    /// Runs `program args` as this user against the daemon on `socket`,
    /// with no input.
    ///
    /// # Panics
    /// When `runuser` cannot start.
    pub async fn run(&self, socket: &Path, program: &Path, args: &[&str]) -> Run {
        let out = self
            .command(socket, program, args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("runuser");
        Run {
            code: out.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// As [`UnixUser::run`], which must succeed; its standard output.
    ///
    /// # Panics
    /// When it exits non-zero (with what it printed).
    pub async fn ok(&self, socket: &Path, program: &Path, args: &[&str]) -> String {
        let r = self.run(socket, program, args).await;
        assert_eq!(
            r.code,
            0,
            "{} {args:?} as {}: {}{}",
            program.display(),
            self.name,
            r.out,
            r.err
        );
        r.out
    }
}

impl Drop for UnixUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .status();
    }
}
