//! `gpures demo`: a private daemon with a seeded week, and the TUI on it.
//!
//! [`run`] finds `gpures-daemon` (next to this executable, else on PATH),
//! starts it on a temporary socket with an embedded PostgreSQL in a temporary
//! state dir (and an empty config file, so a host's real configuration is
//! never touched), seeds 8 GPUs, 6 users with Korean and English names, and
//! past, current and future reservations including a multi-GPU booking, logs
//! in as 김민수 (an admin, so every screen is there) and opens the TUI. A
//! stand-in `nvidia-smi` with three stand-in jobs gives live telemetry: who
//! really runs, one unreserved use and one idle booking. On quit the shell
//! comes back at once while the daemon stops and the folder is removed. [`seed`] is
//! also used by tests and the benchmark.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
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
    // Live telemetry without a GPU: three processes of this user stand in
    // for jobs, and a stand-in `nvidia-smi` puts them on gpu0 (the viewer's
    // running fine-tuning), gpu4 (a running booking) and gpu6 (nobody's
    // booking: unreserved use); gpu2 and gpu3 are booked with nothing on
    // them (flagged idle after a minute).
    let jobs = Jobs::start(3)?;
    write_fake_smi(dir.path(), &jobs.pids())?;
    let mut daemon = DemoDaemon::start(&daemon_bin, dir.path())?;
    eprintln!(
        "gpures demo: starting a private daemon and PostgreSQL in {} …",
        dir.path().display()
    );
    daemon.wait_ready().await?;
    let token = seed(&daemon.socket, &|args| daemon.admin(args)).await?;
    let code = crate::run_tui(&daemon.socket, false, Some((token, USERS[0].0.to_owned()))).await;
    eprintln!("gpures demo: stopping the demo daemon…");
    drop(jobs);
    // The shell comes back now; the daemon and PostgreSQL stop, and the
    // folder is removed, behind it.
    daemon.stop_in_background(dir.keep());
    Ok(code)
}

/// Stand-in jobs for the demo's telemetry: `sleep` processes, killed on drop.
struct Jobs(Vec<Child>);

impl Jobs {
    fn start(n: usize) -> Result<Jobs> {
        let mut children = Vec::new();
        for _ in 0..n {
            children.push(
                Command::new("sleep")
                    .arg("86400")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting the demo's stand-in jobs")?,
            );
        }
        Ok(Jobs(children))
    }

    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `dir/nvidia-smi`: eight H100s in the two CSV forms the daemon
/// asks for, their load moving with the clock, and `pids` on gpu0, gpu4
/// and gpu6.
fn write_fake_smi(dir: &Path, pids: &[u32]) -> Result<PathBuf> {
    let uuid = |i: usize| format!("GPU-00000000-0000-4000-8000-00000000000{i}");
    let mut gpus = String::new();
    for i in 0..8 {
        // (utilization, memory used): busy where a job runs.
        let (util, mem) = match i {
            0 => ("$((55 + s % 40))", "61234"),
            4 => ("$((70 + s % 25))", "30211"),
            6 => ("$((20 + s % 60))", "12288"),
            _ => ("0", "4"),
        };
        gpus.push_str(&format!(
            "{i}, {}, NVIDIA H100 80GB HBM3, 00000000:0{i}:00.0, {util}, 0, {mem}, 81559, 40, 120.00, 700.00\n",
            uuid(i)
        ));
    }
    let mut apps = String::new();
    for (gpu, pid) in [0usize, 4, 6].iter().zip(pids) {
        apps.push_str(&format!("{}, {pid}, python3, 1386\n", uuid(*gpu)));
    }
    let script = format!(
        "#!/bin/sh\n# gpures demo: a stand-in for nvidia-smi\ns=$(date +%S)\ns=${{s#0}}\n\
         case \"$1\" in\n  --query-gpu=*) printf \"{gpus}\" ;;\n  \
         --query-compute-apps=*) printf \"{apps}\" ;;\n  *) exit 2 ;;\nesac\n"
    );
    let path = dir.join("nvidia-smi");
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
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
            format!(
                "# gpures demo: six accounts share one Unix user\n[auth]\naccounts_per_unix_user = 16\n\
                 # A stand-in nvidia-smi with the demo's jobs on it\n[gpu]\nbackend = \"nvidia-smi\"\n\
                 nvidia_smi = \"{}\"\nsample_interval_secs = 2\nidle_minutes = 1\n",
                dir.join("nvidia-smi").display()
            ),
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

    /// Asks the daemon to stop (SIGTERM) and returns at once; a detached
    /// shell waits for it (killing it after 30 s) and removes `dir`.
    pub fn stop_in_background(&mut self, dir: PathBuf) {
        let Some(child) = self.child.take() else {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        };
        let pid = child.id();
        if let Ok(p) = libc::pid_t::try_from(pid) {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(p, libc::SIGTERM);
            }
        }
        let script = "for i in $(seq 300); do kill -0 \"$1\" 2>/dev/null || break; sleep 0.1; done; \
                      kill -9 \"$1\" 2>/dev/null; rm -rf \"$2\"";
        let spawned = Command::new("sh")
            .args(["-c", script, "gpures-demo-cleanup"])
            .arg(pid.to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if spawned.is_err() {
            let mut child = child;
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        }
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
