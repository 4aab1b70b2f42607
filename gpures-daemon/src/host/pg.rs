//! The embedded PostgreSQL cluster: [`Cluster`].
//!
//! With no `database_url`, the daemon keeps a private cluster in
//! `<state-dir>/pg` (mode 0700): `data/` is the cluster, `run/` holds its Unix
//! socket (no TCP), `postgres.log` its log. The host's server binaries are used
//! (PATH first, then `/usr/lib/postgresql/*/bin`, newest first). PostgreSQL
//! refuses to run as root, so as root the cluster runs as a dedicated account
//! (the package's `gpures` user, else `postgres`; never a shared account
//! such as `nobody`) and the directory is owned by it. Authentication is
//! `trust` because only the cluster's owner and root can reach the socket.
//!
//! `postgres` is started as a direct child held by a dedicated thread that
//! waits for it (so it is always reaped: a container may have no init), with
//! `PR_SET_PDEATHSIG` so it shuts down if the daemon dies. When another process
//! (a running `serve`) already runs the cluster, [`Cluster::start`] attaches to
//! it instead, which is how admin commands work beside a running daemon.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use thiserror::Error;

use crate::host::unix;

/// The role the daemon connects as; created by `initdb -U`.
pub const SUPERUSER: &str = "gpures";
/// The daemon's database inside the cluster.
pub const DATABASE: &str = "gpures";
/// Port number naming the socket file; nothing listens on TCP.
const PORT: u16 = 5432;
/// How long a start may take before we give up (first start includes initdb).
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum PgError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin: install them (`apt install postgresql`) or set database_url \
         to use an existing server"
    )]
    BinariesMissing,
    #[error(
        "embedded PostgreSQL: running as root, the cluster needs a dedicated unprivileged account \
         and neither `gpures` nor `postgres` exists: create one with \
         `useradd --system --no-create-home --shell /usr/sbin/nologin gpures` (the package does), \
         run gpures-daemon as an unprivileged user, or set database_url"
    )]
    NoClusterUser,
    #[error("embedded PostgreSQL: {what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("embedded PostgreSQL: {what} failed: {output}")]
    Command { what: String, output: String },
    #[error(
        "embedded PostgreSQL: {path} is not reachable by the unprivileged user {user}: \
         give its folders execute permission for others, or choose another state dir"
    )]
    NotTraversable { path: PathBuf, user: String },
    #[error("embedded PostgreSQL did not become ready within {secs} s; see {log}")]
    Timeout { secs: u64, log: PathBuf },
    #[error("embedded PostgreSQL exited during start-up; its log {log} says:\n{tail}")]
    Exited { log: PathBuf, tail: String },
}

pub type Result<T> = std::result::Result<T, PgError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// Tuning for the cluster.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterOptions {
    /// Turns off fsync and full-page writes. For tests and benchmarks of the
    /// daemon itself only: a crash can lose committed data.
    pub unsafe_fast: bool,
}

/// The postgres child we started, and the flag its waiter thread sets when it
/// has exited and been reaped.
#[derive(Debug)]
struct Owned {
    pid: u32,
    exited: Arc<(Mutex<bool>, Condvar)>,
}

/// What it takes to start the server again (a cluster this process runs).
#[derive(Debug)]
struct Spawn {
    bin: PathBuf,
    data: PathBuf,
    owner: Option<unix::User>,
    options: ClusterOptions,
}

/// A running embedded cluster. The server this process started can be
/// restarted through a shared reference ([`Cluster::restart`]), so a
/// supervisor can bring it back while the pool keeps its handle.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    socket_dir: PathBuf,
    owned: Mutex<Option<Owned>>,
    spawn: Option<Spawn>,
}

impl Cluster {
    /// Starts the cluster in `root` (creating it on first use), or attaches to
    /// the one already running there. Blocking: call it from a blocking thread.
    ///
    /// # Errors
    /// Missing binaries, a directory the cluster user cannot reach, `initdb`
    /// failing, or the server not becoming ready.
    pub fn start(root: &Path, options: ClusterOptions) -> Result<Cluster> {
        let bin = find_bin_dir().ok_or(PgError::BinariesMissing)?;
        let owner = cluster_owner()?;
        fs::create_dir_all(root).map_err(io_err(format!("creating {}", root.display())))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("setting the mode of {}", root.display())))?;
        let data = root.join("data");
        let run = root.join("run");
        for dir in [&data, &run] {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("setting the mode of {}", dir.display())))?;
        }
        if let Some(owner) = &owner {
            make_traversable(root, owner)?;
            for path in [root, &data, &run] {
                unix::chown(path, owner.uid, owner.gid)
                    .map_err(io_err(format!("chown {}", path.display())))?;
            }
        }
        let mut cluster = Cluster {
            root: root.to_owned(),
            socket_dir: run.clone(),
            owned: Mutex::new(None),
            spawn: None,
        };
        if !data.join("PG_VERSION").exists() {
            initdb(&bin, &data, owner.as_ref(), options)?;
        }
        let pid_file = data.join("postmaster.pid");
        if let Some(pid) = running_postmaster(&pid_file) {
            if postmaster_state(&pid_file).as_deref() == Some("stopping") {
                // The cluster of a daemon that just died (PDEATHSIG stopped
                // it): attaching would find it gone in a moment. Wait for it
                // to exit, then start our own.
                tracing::info!(
                    pid,
                    "the previous embedded PostgreSQL is shutting down; waiting for it"
                );
                wait_exit(pid, STOP_TIMEOUT + STOP_TIMEOUT)?;
            } else {
                tracing::info!(pid, dir = %root.display(), "attaching to the embedded PostgreSQL already running");
                wait_ready(&pid_file, None, &cluster.log_path())?;
                return Ok(cluster);
            }
        }
        cluster.spawn = Some(Spawn {
            bin,
            data,
            owner,
            options,
        });
        cluster.start_server()?;
        tracing::info!(dir = %root.display(), "embedded PostgreSQL is ready");
        Ok(cluster)
    }

    /// Starts the server of a cluster this process runs and waits until it
    /// is ready. Blocking.
    fn start_server(&self) -> Result<()> {
        let Some(spawn) = &self.spawn else {
            return Ok(());
        };
        let pid_file = spawn.data.join("postmaster.pid");
        // A crash left these behind: the server would refuse to start.
        let _ = fs::remove_file(&pid_file);
        let _ = fs::remove_file(self.socket_dir.join(format!(".s.PGSQL.{PORT}.lock")));
        let owned = spawn_postgres(
            &spawn.bin,
            &spawn.data,
            &self.socket_dir,
            &self.log_path(),
            spawn.owner.as_ref(),
            spawn.options,
        )?;
        let ready = wait_ready(&pid_file, Some(&owned), &self.log_path());
        if let Ok(mut slot) = self.owned.lock() {
            *slot = Some(owned);
        }
        ready
    }

    /// Whether the server this process started has exited (a cluster it
    /// only attached to is never reported).
    pub fn has_exited(&self) -> bool {
        self.owned
            .lock()
            .ok()
            .and_then(|o| {
                o.as_ref()
                    .map(|o| o.exited.0.lock().map(|d| *d).unwrap_or(true))
            })
            .unwrap_or(false)
    }

    /// Starts the server again after it exited. Blocking.
    ///
    /// # Errors
    /// The server did not come back (see the log it names).
    pub fn restart(&self) -> Result<()> {
        if self.spawn.is_none() {
            return Ok(());
        }
        if let Some(pid) = running_postmaster(&self.root.join("data/postmaster.pid")) {
            // What is left of the old server (backends of a killed
            // postmaster) has to go before a new one can start.
            wait_exit(pid, STOP_TIMEOUT)?;
        }
        self.start_server()
    }

    /// Connection options for `database` in this cluster.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
            .application_name("gpures-daemon")
    }

    /// The folder holding the server's socket (for `psql -h`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Stops the server if this process started it (fast shutdown: open
    /// transactions roll back, committed data is safe) and waits for it.
    /// Blocking.
    pub fn stop(&self) {
        self.stop_inner();
    }

    /// Stops the server by pid: for `atexit` handlers that cannot own `self`.
    pub fn pid(&self) -> Option<u32> {
        self.owned.lock().ok()?.as_ref().map(|o| o.pid)
    }

    fn stop_inner(&self) {
        let Some(owned) = self.owned.lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        unix::kill(owned.pid, libc::SIGINT);
        let (lock, cvar) = &*owned.exited;
        let Ok(guard) = lock.lock() else {
            return;
        };
        match cvar.wait_timeout_while(guard, STOP_TIMEOUT, |exited| !*exited) {
            Ok((_, timeout)) if timeout.timed_out() => {
                tracing::warn!(
                    pid = owned.pid,
                    "PostgreSQL did not stop in time; sending SIGQUIT"
                );
                unix::kill(owned.pid, libc::SIGQUIT);
            }
            _ => tracing::info!("embedded PostgreSQL stopped"),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// The folder with `initdb` and `postgres`: PATH first, then the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().next().map(|(_, dir)| dir)
}

/// The accounts a root daemon runs its cluster as, in order of preference:
/// the package's own system user, else PostgreSQL's. Never a user other
/// processes share (such as `nobody`): authentication inside the cluster is
/// `trust`, so whoever runs as its owner is the database's superuser.
const CLUSTER_USERS: [&str; 2] = ["gpures", "postgres"];

/// The account the cluster runs as: none (ourselves) unless we are root.
///
/// # Errors
/// Root, and no dedicated account exists.
fn cluster_owner() -> Result<Option<unix::User>> {
    if unix::euid() != 0 {
        return Ok(None);
    }
    CLUSTER_USERS
        .iter()
        .find_map(|name| unix::user_by_name(name))
        .map(Some)
        .ok_or(PgError::NoClusterUser)
}

/// The cluster user must be able to walk down to `root`. We fix the one folder
/// that is ours to fix (the state dir, which is private to root by default)
/// by adding only the execute bit for others, and refuse anything else.
fn make_traversable(root: &Path, owner: &unix::User) -> Result<()> {
    let mut ancestors: Vec<&Path> = root.ancestors().skip(1).collect();
    ancestors.reverse();
    let state_dir = root.parent();
    for dir in ancestors {
        let meta = fs::metadata(dir).map_err(io_err(format!("reading {}", dir.display())))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if Some(dir) == state_dir {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o001))
                .map_err(io_err(format!("setting the mode of {}", dir.display())))?;
            continue;
        }
        return Err(PgError::NotTraversable {
            path: dir.to_owned(),
            user: owner.name.clone(),
        });
    }
    Ok(())
}

fn as_owner(cmd: &mut Command, owner: Option<&unix::User>, dir: &Path) {
    use std::os::unix::process::CommandExt;
    cmd.current_dir(dir);
    if let Some(owner) = owner {
        cmd.uid(owner.uid).gid(owner.gid);
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
}

fn initdb(
    bin: &Path,
    data: &Path,
    owner: Option<&unix::User>,
    options: ClusterOptions,
) -> Result<()> {
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(data)
        .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"]);
    if options.unsafe_fast {
        cmd.arg("--no-sync");
    }
    as_owner(&mut cmd, owner, data);
    let output = cmd.output().map_err(io_err("running initdb"))?;
    if !output.status.success() {
        return Err(PgError::Command {
            what: "initdb".into(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// The pid in `postmaster.pid` if that process is alive and is a postgres.
fn running_postmaster(pid_file: &Path) -> Option<u32> {
    let text = fs::read_to_string(pid_file).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "postgres" && unix::kill(pid, 0)).then_some(pid)
}

/// The server's state from `postmaster.pid` (its 8th line: `starting`,
/// `ready`, `stopping`, `standby`).
fn postmaster_state(pid_file: &Path) -> Option<String> {
    let text = fs::read_to_string(pid_file).ok()?;
    text.lines().nth(7).map(|l| l.trim().to_owned())
}

/// Waits until process `pid` is gone (or a zombie nobody reaps: the
/// container may have no init).
fn wait_exit(pid: u32, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let gone = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if gone {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(PgError::Io {
                what: format!("waiting for the previous PostgreSQL (pid {pid}) to stop"),
                source: io::Error::other(format!(
                    "it is still running after {} s; stop it (kill {pid}) and start again",
                    timeout.as_secs()
                )),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_postgres(
    bin: &Path,
    data: &Path,
    run: &Path,
    log: &Path,
    owner: Option<&unix::User>,
    options: ClusterOptions,
) -> Result<Owned> {
    let log_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(format!("opening {}", log.display())))?;
    if let Some(owner) = owner {
        let _ = unix::chown(log, owner.uid, owner.gid);
    }
    let log_err = log_file
        .try_clone()
        .map_err(io_err("duplicating the log file"))?;
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(data)
        .arg("-k")
        .arg(run)
        .args(["-p", &PORT.to_string()])
        .args(["-c", "listen_addresses="])
        .args(["-c", "unix_socket_permissions=0700"])
        .args(["-c", "max_connections=300"])
        // No JIT: the systemd unit forbids writable executable memory.
        .args(["-c", "jit=off"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    if options.unsafe_fast {
        cmd.args([
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
        ]);
    }
    as_owner(&mut cmd, owner, data);
    unix::die_with_parent(&mut cmd, libc::SIGINT);

    // The thread that spawns the child must outlive it (PDEATHSIG fires when
    // the spawning thread exits), so spawning and waiting share one thread.
    let exited = Arc::new((Mutex::new(false), Condvar::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let flag = Arc::clone(&exited);
    std::thread::Builder::new()
        .name("gpures-postgres".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let status = child.wait();
                tracing::info!(?status, "embedded PostgreSQL exited");
                let (lock, cvar) = &*flag;
                if let Ok(mut done) = lock.lock() {
                    *done = true;
                }
                cvar.notify_all();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(io_err("starting the postgres thread"))?;
    let pid = rx
        .recv()
        .map_err(|_| PgError::Io {
            what: "starting postgres".into(),
            source: io::Error::other("the postgres thread ended early"),
        })?
        .map_err(io_err("starting postgres"))?;
    Ok(Owned { pid, exited })
}

/// Waits until `postmaster.pid` says "ready" (PostgreSQL 10 and later write
/// the state on its 8th line).
fn wait_ready(pid_file: &Path, owned: Option<&Owned>, log: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(text) = fs::read_to_string(pid_file)
            && text.lines().nth(7).map(str::trim) == Some("ready")
        {
            return Ok(());
        }
        if let Some(owned) = owned {
            let done = owned.exited.0.lock().map(|d| *d).unwrap_or(true);
            if done {
                return Err(PgError::Exited {
                    log: log.to_owned(),
                    tail: log_tail(log),
                });
            }
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(PgError::Timeout {
                secs: START_TIMEOUT.as_secs(),
                log: log.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_tail(log: &Path) -> String {
    let Ok(mut f) = fs::File::open(log) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(2000)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}
