//! Running under systemd: the units verify, the service's offline security
//! exposure stays at or below 2.5, and the real binary started the way
//! systemd starts it (listening socket as fd 3, `LISTEN_FDS`, `LISTEN_PID`,
//! `NOTIFY_SOCKET`, `WATCHDOG_USEC`) reports READY=1 only once it answers a
//! hello, then pings the watchdog, and says STOPPING=1 on SIGTERM.

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gpures_testkit::{connect, fresh_database_url};

const BIN: &str = env!("CARGO_BIN_EXE_gpures-daemon");
const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd");

fn have_systemd_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
}

/// The units with ExecStart pointing at the binary under test.
fn units_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let service =
        std::fs::read_to_string(format!("{UNITS}/gpures-daemon.service")).expect("service");
    std::fs::write(
        dir.path().join("gpures-daemon.service"),
        service.replace("/usr/bin/gpures-daemon", BIN),
    )
    .expect("write");
    std::fs::copy(
        format!("{UNITS}/gpures.socket"),
        dir.path().join("gpures.socket"),
    )
    .expect("copy");
    dir
}

#[test]
#[ignore = "needs systemd-analyze (package systemd); .ci/run installs it and runs ignored tests"]
fn units_verify_and_the_service_exposure_is_at_most_2_5() {
    assert!(
        have_systemd_analyze(),
        "systemd-analyze is not installed: apt install systemd"
    );
    let dir = units_dir();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("gpures-daemon.service"))
        .arg(dir.path().join("gpures.socket"))
        .output()
        .expect("verify");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(dir.path().join("gpures-daemon.service"))
        .output()
        .expect("security");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line:\n{text}"));
    let figure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable: {line}"));
    println!("systemd-analyze security --offline=yes gpures-daemon.service: exposure {figure}");
    assert!(figure <= 2.5, "exposure {figure} > 2.5");
    for unit in ["gpures.sysusers", "gpures.tmpfiles"] {
        assert!(
            std::path::Path::new(&format!("{UNITS}/{unit}")).is_file(),
            "{unit}"
        );
    }
}

/// Receives one datagram, or `None` after `timeout`.
fn recv(sock: &UnixDatagram, timeout: Duration) -> Option<String> {
    sock.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_like_systemd_it_notifies_ready_after_serving_then_pings_the_watchdog() {
    let url = fresh_database_url().await.expect("database");
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("gpures.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let config = dir.path().join("gpures.toml");
    std::fs::write(&config, "[gpu]\nbackend = \"none\"\n").expect("config");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    // `$$` is the shell's pid, which `exec` hands to the daemon: LISTEN_PID.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" serve --state-dir \"$1\" --database-url \"$2\" --config \"$3\"")
        .arg(BIN)
        .arg(dir.path().join("state"))
        .arg(&url)
        .arg(&config)
        .env("LISTEN_FDS", "1")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: dup2/fcntl are async-signal-safe; fd 3 is the socket systemd passes.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    drop(listener);
    let started = Instant::now();
    let ready = tokio::task::spawn_blocking({
        let notify = notify.try_clone().expect("clone");
        move || recv(&notify, Duration::from_secs(60))
    })
    .await
    .expect("join");
    assert_eq!(
        ready.as_deref(),
        Some("READY=1"),
        "after {:?}",
        started.elapsed()
    );
    // Ready means served: a hello is answered at once.
    let client = tokio::time::timeout(Duration::from_secs(2), connect(&socket))
        .await
        .expect("answered at once")
        .expect("hello");
    drop(client);
    let ping = tokio::task::spawn_blocking({
        let notify = notify.try_clone().expect("clone");
        move || recv(&notify, Duration::from_secs(3))
    })
    .await
    .expect("join");
    assert_eq!(ping.as_deref(), Some("WATCHDOG=1"));
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut stopping = false;
    for _ in 0..10 {
        let n = tokio::task::spawn_blocking({
            let notify = notify.try_clone().expect("clone");
            move || recv(&notify, Duration::from_secs(5))
        })
        .await
        .expect("join");
        match n.as_deref() {
            Some("STOPPING=1") => {
                stopping = true;
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(socket.exists(), "a socket systemd owns is left to systemd");
}
