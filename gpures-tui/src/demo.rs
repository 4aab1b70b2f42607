//! `gpures demo`: a private daemon with a seeded week, and the TUI on it.
//!
//! [`run`] finds `gpures-daemon` (next to this executable, else on PATH),
//! starts it on a temporary socket with an embedded PostgreSQL in a temporary
//! state dir (and an empty config file, so a host's real configuration is
//! never touched), seeds 8 GPUs, 6 users with Korean and English names, and
//! past, current and future reservations including a multi-GPU booking, logs
//! in as 김민수 (an admin, so every screen is there) and opens the TUI. On
//! quit the daemon is stopped and the temporary folder removed. [`seed`] is
//! also used by tests and the benchmark.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Client;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{BookingRequest, NewResource, Period, RegisterRequest, ResourceKind};
use uuid::Uuid;

use crate::cli::exit;

/// The demo's people: email, display name.
pub const USERS: [(&str, &str); 6] = [
    ("minsu.kim@lab.example", "김민수"),
    ("seoyeon.lee@lab.example", "이서연"),
    ("jihoon.park@lab.example", "박지훈"),
    ("yujin.choi@lab.example", "최유진"),
    ("alex.morgan@lab.example", "Alex Morgan"),
    ("priya.n@lab.example", "Priya Natarajan"),
];

/// A password only the demo knows.
pub const DEMO_PASSWORD: &str = "demo password for gpures";

/// Starts everything, runs the TUI, cleans up. Returns the exit code.
pub async fn run() -> u8 {
    match run_inner().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gpures demo: {e:#}");
            exit::ERROR
        }
    }
}

async fn run_inner() -> Result<u8> {
    let daemon_bin = find_daemon()?;
    let dir = tempfile::Builder::new().prefix("gpures-demo-").tempdir()?;
    // As root the embedded cluster runs as an unprivileged user, who must be
    // able to walk into this folder.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let mut daemon = DemoDaemon::start(&daemon_bin, dir.path())?;
    eprintln!(
        "gpures demo: starting a private daemon and PostgreSQL in {} …",
        dir.path().display()
    );
    daemon.wait_ready().await?;
    let token = seed(&daemon.socket, &|args| daemon.admin(args)).await?;
    let code = crate::run_tui(&daemon.socket, false, Some((token, USERS[0].0.to_owned()))).await;
    daemon.stop();
    drop(dir);
    Ok(code)
}

/// The daemon next to this executable, else on PATH.
fn find_daemon() -> Result<PathBuf> {
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        let beside = dir.join("gpures-daemon");
        if beside.is_file() {
            return Ok(beside);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("gpures-daemon");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "gpures-daemon was not found next to gpures or on PATH: build it with `cargo build --release`"
    )
}

/// A daemon started for the demo; stopped on drop.
pub struct DemoDaemon {
    child: Option<Child>,
    bin: PathBuf,
    pub socket: PathBuf,
    state: PathBuf,
    config: PathBuf,
}

impl DemoDaemon {
    /// Starts `bin serve` in `dir`.
    ///
    /// # Errors
    /// The daemon cannot be started.
    pub fn start(bin: &Path, dir: &Path) -> Result<DemoDaemon> {
        let socket = dir.join("gpures.sock");
        let state = dir.join("state");
        let config = dir.join("gpures.toml");
        // The seeded lab's six people all come from the viewer's Unix user.
        std::fs::write(
            &config,
            "# gpures demo: six accounts share one Unix user\n[auth]\naccounts_per_unix_user = 16\n",
        )?;
        let log = std::fs::File::create(dir.join("daemon.log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--host")
            .arg("demo-host")
            .args(base_args(&state, &config))
            .env_remove("GPURES_DATABASE_URL")
            .env_remove("GPURES_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(DemoDaemon {
            child: Some(child),
            bin: bin.to_owned(),
            socket,
            state,
            config,
        })
    }

    /// Waits until the daemon answers a hello.
    ///
    /// # Errors
    /// The daemon exited or did not answer within a minute.
    pub async fn wait_ready(&mut self) -> Result<Client> {
        let started = Instant::now();
        loop {
            if let Ok(client) = Client::connect(&self.socket).await {
                return Ok(client);
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = self.socket.with_file_name("daemon.log");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("the demo daemon exited ({status}):\n{text}");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the demo daemon did not answer within a minute");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `gpures-daemon ARGS` on the demo's state dir.
    ///
    /// # Errors
    /// The command failed.
    pub fn admin(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(&self.bin)
            .args(args)
            .args(base_args(&self.state, &self.config))
            .env_remove("GPURES_DATABASE_URL")
            .output()?;
        if !out.status.success() {
            bail!(
                "gpures-daemon {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stops the daemon (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: signalling our own child.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let _ = child.wait();
        }
    }
}

impl Drop for DemoDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn base_args(state: &Path, config: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "--state-dir".into(),
        state.as_os_str().to_owned(),
        "--config".into(),
        config.as_os_str().to_owned(),
    ]
}

/// Seeds a realistic week and returns a token for the first user (an admin).
/// `admin` runs a `gpures-daemon` subcommand on the daemon's host.
///
/// # Errors
/// Any call failed.
pub async fn seed(socket: &Path, admin: &dyn Fn(&[&str]) -> Result<()>) -> Result<String> {
    // One client (one session) per seeded user.
    let mut clients = Vec::new();
    for (email, name) in USERS {
        let client = Client::connect(socket).await?;
        client
            .register(RegisterRequest {
                email: email.into(),
                display_name: name.into(),
                password: DEMO_PASSWORD.into(),
            })
            .await?;
        // Everyone is an admin while seeding, so that past reservations (which
        // members may not book) can be made in their names.
        admin(&["user", "promote", email])?;
        clients.push(client);
    }
    for (client, (email, _)) in clients.iter().zip(USERS) {
        client.login(email.into(), DEMO_PASSWORD.into()).await?;
    }
    let mut gpus = Vec::new();
    for i in 0..8 {
        let r = clients[0]
            .create_resource(NewResource {
                name: format!("gpu{i}"),
                host: String::new(),
                kind: ResourceKind::Gpu,
                gpu_index: Some(i),
                gpu_uuid: None,
                description: "NVIDIA H100 80GB HBM3".into(),
            })
            .await?;
        gpus.push(r.id);
    }
    let hour = Utc::now().duration_trunc(TimeDelta::hours(1))?;
    let h = |n: i64| hour + TimeDelta::hours(n);
    // (user, gpus, start, end, note)
    type Plan<'a> = (usize, Vec<usize>, DateTime<Utc>, DateTime<Utc>, &'a str);
    let plan: Vec<Plan> = vec![
        (1, vec![0], h(-20), h(-14), "ablation runs"),
        (2, vec![1], h(-30), h(-6), "pretraining warm-up"),
        (0, vec![0], h(-2), h(3), "LLM fine-tuning"),
        (4, vec![2, 3], h(-1), h(5), "multi-GPU DDP sweep"),
        (3, vec![4], h(-3), h(1), "diffusion sampling"),
        (5, vec![5], h(1), h(7), "benchmarks for the paper"),
        (1, vec![0], h(4), h(10), "evaluation"),
        (2, vec![6, 7], h(12), h(36), "RLHF run (2 GPUs)"),
        (3, vec![1], h(20), h(28), ""),
        (0, vec![2], h(30), h(40), "hyperparameter search"),
        (4, vec![4], h(48), h(60), "thesis experiments"),
        (
            5,
            vec![0, 1, 2, 3],
            h(72),
            h(84),
            "scaling-law sweep, 4 GPUs",
        ),
        (1, vec![5], h(100), h(110), ""),
    ];
    for (user, on, start, end, note) in plan {
        clients[user]
            .book(BookingRequest {
                request_id: Uuid::new_v4(),
                resources: on.iter().map(|i| gpus[*i]).collect(),
                period: Period { start, end },
                note: note.into(),
            })
            .await?;
    }
    for (email, _) in &USERS[1..] {
        admin(&["user", "demote", email])?;
    }
    clients[0]
        .token()
        .context("the first demo user has no session")
}
