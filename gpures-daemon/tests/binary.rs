//! The real `gpures-daemon` binary on a fresh state dir: `serve` starts its
//! own embedded PostgreSQL (as root it drops the cluster to an unprivileged
//! user), the admin commands work beside it on the same state dir, and SIGTERM
//! stops everything and removes the socket.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gpures_proto::RegisterRequest;
use gpures_testkit::connect;
use tarpc::context;

const BIN: &str = env!("CARGO_BIN_EXE_gpures-daemon");

fn daemon_cmd(state: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--state-dir")
        .arg(state)
        .arg("--config")
        .arg(state.join("absent-is-an-error.toml"))
        .env_remove("GPURES_DATABASE_URL")
        .env("GPURES_CONFIG", "")
        .env("GPURES_LOG", "info");
    cmd
}

fn admin(state: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("GPURES_DATABASE_URL")
        .output()
        .expect("run gpures-daemon");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn serve_on_a_fresh_state_dir_and_admin_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let socket = dir.path().join("gpures.sock");

    // An explicit config file that does not exist is an error, not a default.
    let out = daemon_cmd(&state)
        .arg("check-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));

    let mut serve = Command::new(BIN)
        .args(["serve", "--socket"])
        .arg(&socket)
        .arg("--state-dir")
        .arg(&state)
        .env_remove("GPURES_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let started = Instant::now();
    let client = loop {
        if let Ok(c) = connect(&socket).await {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o666, "socket mode");
    let pg_mode = std::fs::metadata(state.join("pg"))
        .expect("pg dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        pg_mode, 0o700,
        "the embedded cluster's directory is private"
    );

    client
        .register(
            context::current(),
            RegisterRequest {
                email: "first@lab.kr".into(),
                display_name: "First".into(),
                password: "a long enough password".into(),
            },
        )
        .await
        .expect("rpc")
        .expect("register");

    let (ok, out) = admin(&state, &["user", "list"]);
    assert!(ok, "{out}");
    assert!(out.contains("first@lab.kr"), "{out}");
    let (ok, out) = admin(&state, &["user", "promote", "first@lab.kr"]);
    assert!(ok && out.contains("is now admin"), "{out}");
    let (ok, out) = admin(
        &state,
        &[
            "resource",
            "add",
            "gpu0",
            "--gpu-index",
            "0",
            "--description",
            "H100 80GB",
        ],
    );
    assert!(ok && out.contains("added gpu0"), "{out}");
    let (ok, out) = admin(&state, &["user", "promote", "ghost@lab.kr"]);
    assert!(!ok && out.contains("user not found"), "{out}");

    // Groups and lab policy, as the host admin sets them.
    let (ok, out) = admin(
        &state,
        &["group", "add", "vision", "--description", "비전 팀"],
    );
    assert!(ok && out.contains("group vision created"), "{out}");
    let (ok, out) = admin(
        &state,
        &["group", "member", "add", "vision", "first@lab.kr"],
    );
    assert!(ok && out.contains("first@lab.kr added to vision"), "{out}");
    let (ok, out) = admin(&state, &["group", "list"]);
    assert!(
        ok && out.contains("vision (비전 팀): first@lab.kr"),
        "{out}"
    );
    let (ok, out) = admin(
        &state,
        &["policy", "set", "max-gpus", "2", "--group", "vision"],
    );
    assert!(
        ok && out.contains("max-gpus") && out.contains("group vision"),
        "{out}"
    );
    let (ok, out) = admin(
        &state,
        &["policy", "set", "cooldown", "12h", "--after", "1d"],
    );
    assert!(ok && out.contains("12 h after 1 d"), "{out}");
    let (ok, out) = admin(&state, &["policy", "set", "max-gpu", "2"]);
    assert!(!ok && out.contains("unknown rule"), "{out}");
    let (ok, out) = admin(&state, &["policy", "set", "max-gpus", "two"]);
    assert!(!ok && out.contains("takes a count"), "{out}");
    let (ok, out) = admin(
        &state,
        &["policy", "unset", "max-gpus", "--group", "vision"],
    );
    assert!(ok && !out.contains("max-gpus"), "{out}");

    // SIGTERM: stop accepting, remove the socket, stop the cluster.
    let pid = libc::pid_t::try_from(serve.id()).expect("pid");
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = serve.wait().expect("wait");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(!socket.exists(), "the socket is removed");
    assert!(
        !state.join("pg/data/postmaster.pid").exists(),
        "the cluster is stopped"
    );

    // With the daemon gone, the admin commands start the cluster themselves.
    let (ok, out) = admin(&state, &["resource", "list"]);
    assert!(ok && out.contains("H100 80GB"), "{out}");
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_db_dump_writes_a_backup() {
    let url = gpures_testkit::fresh_database_url()
        .await
        .expect("database");
    let dir = tempfile::tempdir().expect("dir");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--database-url")
            .arg(&url)
            .arg("--state-dir")
            .arg(dir.path())
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = run(&["migrate"]);
    assert!(ok && out.contains("up to date"), "{out}");
    let dump = dir.path().join("backup.dump");
    let (ok, out) = run(&["db", "dump", dump.to_str().expect("path")]);
    assert!(ok, "{out}");
    let bytes = std::fs::read(&dump).expect("dump file");
    assert!(
        bytes.starts_with(b"PGDMP"),
        "a pg_dump custom-format archive"
    );
    let mode = std::fs::metadata(&dump).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the dump holds password hashes: private");
    // A migration from the future, as a newer daemon would leave it.
    let store = gpures_daemon::store::Store::connect_lazy(url.parse().expect("url"), 1);
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000000, 'from the future', true, '\\x00', 0)",
    )
    .execute(store.pool())
    .await
    .expect("insert");
    store.close().await;
    let (ok, out) = run(&["migrate"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("migrated by a newer gpures-daemon") && out.contains("29991231000000"),
        "{out}"
    );
}

/// Starts `serve` in `dir` with the relative state dir `state`; returns the
/// child once a client is answered.
#[allow(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, which waits for it"
)]
async fn serve_relative(dir: &Path, socket: &Path) -> (std::process::Child, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["serve", "--state-dir", "state", "--socket"])
        .arg(socket)
        .env_remove("GPURES_DATABASE_URL")
        .env("GPURES_CONFIG", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    loop {
        if connect(socket).await.is_ok() {
            return (child, started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not come up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_restart_right_after_a_crash_comes_up_within_seconds_on_a_relative_state_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("gpures.sock");
    let (mut first, _) = serve_relative(dir.path(), &socket).await;
    let client = connect(&socket).await.expect("client");
    client
        .register(
            context::current(),
            RegisterRequest {
                email: "crash@lab.kr".into(),
                display_name: "Crash".into(),
                password: "a long enough password".into(),
            },
        )
        .await
        .expect("rpc")
        .expect("register");
    assert!(
        dir.path().join("state/pg/data/PG_VERSION").exists(),
        "the relative state dir is under the working directory"
    );
    // SIGKILL: the embedded PostgreSQL is told to stop (PDEATHSIG) and takes
    // a few seconds; the next daemon starts while it is still stopping.
    first.kill().expect("kill");
    first.wait().expect("reap");
    let (mut second, took) = serve_relative(dir.path(), &socket).await;
    assert!(took < Duration::from_secs(15), "the restart took {took:?}");
    let client = connect(&socket).await.expect("client");
    let login = client
        .login(
            context::current(),
            "crash@lab.kr".into(),
            "a long enough password".into(),
        )
        .await
        .expect("rpc")
        .expect("the account survived the crash");
    assert_eq!(login.user.email, "crash@lab.kr");
    // SIGTERM stops it cleanly.
    let pid = libc::pid_t::try_from(second.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = second.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_daemon_restarts_its_embedded_postgres_when_it_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("gpures.sock");
    let (mut serve, _) = serve_relative(dir.path(), &socket).await;
    let state = dir.path().join("state");
    let (ok, out) = admin(&state, &["resource", "add", "gpu0", "--gpu-index", "0"]);
    assert!(ok, "{out}");
    let client = connect(&socket).await.expect("client");
    client
        .register(
            context::current(),
            RegisterRequest {
                email: "pg@lab.kr".into(),
                display_name: "PG".into(),
                password: "a long enough password".into(),
            },
        )
        .await
        .expect("rpc")
        .expect("register");
    let token = client
        .login(
            context::current(),
            "pg@lab.kr".into(),
            "a long enough password".into(),
        )
        .await
        .expect("rpc")
        .expect("login")
        .token;
    let gpu = client
        .list_resources(context::current(), token.clone(), false, None)
        .await
        .expect("rpc")
        .expect("resources")
        .resources[0]
        .id;
    let start = chrono::DurationRound::duration_trunc(
        chrono::Utc::now() + chrono::TimeDelta::hours(2),
        chrono::TimeDelta::minutes(1),
    )
    .expect("trunc");
    let booked = client
        .create_booking(
            context::current(),
            token.clone(),
            gpures_proto::BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![gpu],
                period: gpures_proto::Period {
                    start,
                    end: start + chrono::TimeDelta::hours(1),
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");

    // Kill the postmaster outright.
    let pid_file = std::fs::read_to_string(state.join("pg/data/postmaster.pid")).expect("pid file");
    let pid: libc::pid_t = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid");
    // SAFETY: kill(2) on the embedded postmaster's pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };

    // Served again within 15 s, with nothing lost.
    let killed = Instant::now();
    let listed = loop {
        let reply = client
            .list_reservations(
                context::current(),
                token.clone(),
                gpures_proto::ReservationFilter::default(),
                gpures_proto::PageRequest::default(),
            )
            .await
            .expect("rpc");
        match reply {
            Ok(page) => break page.reservations,
            Err(e) => {
                assert!(
                    killed.elapsed() < Duration::from_secs(15),
                    "still failing after 15 s: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(
        listed.iter().any(|r| r.id == booked.reservations[0].id),
        "the booking survived"
    );
    let pid = libc::pid_t::try_from(serve.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = serve.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_database_that_cannot_come_back_makes_the_daemon_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("gpures.sock");
    let (mut serve, _) = serve_relative(dir.path(), &socket).await;
    let data = dir.path().join("state/pg/data");
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).expect("pid file");
    let pid: libc::pid_t = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid");
    // Take the data directory away from the cluster's user, then kill it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    // SAFETY: kill(2) on the embedded postmaster's pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("the daemon kept running without a database");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod back");
    assert!(
        !status.success(),
        "exits non-zero so systemd restarts it: {status}"
    );
}

/// An admin command prints its answer: no INFO lines unless `-v`, and no
/// colour codes when its output is not a terminal.
#[test]
fn admin_commands_print_no_log_noise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quiet = Command::new(BIN)
        .args(["check-config", "--state-dir"])
        .arg(dir.path())
        .env_remove("GPURES_LOG")
        .env_remove("GPURES_DATABASE_URL")
        .output()
        .expect("run");
    assert!(quiet.status.success());
    let text = String::from_utf8_lossy(&quiet.stdout).into_owned()
        + &String::from_utf8_lossy(&quiet.stderr);
    assert!(!text.contains("INFO"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colour codes: {text:?}");
    assert!(text.contains("[limits]"), "TOML: {text}");
    assert!(!text.contains("Some("), "no Debug noise: {text}");
}
