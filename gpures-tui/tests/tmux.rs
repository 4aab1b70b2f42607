//! End to end, as a person sees it: the real `gpures` binary in a real
//! terminal (tmux), driven with `send-keys` and read with `capture-pane`.
//! Books through the keys against a real daemon, restarts the daemon under
//! it and books again, quits, and checks that the terminal is restored (no alternate screen, canonical mode and echo back).
//! A second test runs `gpures demo` the way the README says.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::DurationRound;
use gpures_proto::ReservationFilter;
use gpures_testkit::TestDaemon;

const BIN: &str = env!("CARGO_BIN_EXE_gpures");

/// A private tmux server, killed on drop.
struct Tmux {
    server: String,
}

impl Tmux {
    fn start(command: &str, width: u16, height: u16) -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "tmux is not installed: apt install tmux (.ci/run does)"
        );
        let server = format!("gpures-test-{}-{}", std::process::id(), rand_suffix());
        let ok = Command::new("tmux")
            .args([
                "-L",
                &server,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tmux new-session failed");
        Tmux { server }
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.server, "capture-pane", "-p", "-t", "t"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        Command::new("tmux")
            .args(["-L", &self.server, "send-keys", "-t", "t"])
            .args(keys)
            .status()
            .expect("send-keys");
    }

    fn display(&self, format: &str) -> String {
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.server,
                "display-message",
                "-p",
                "-t",
                "t",
                format,
            ])
            .output()
            .expect("display");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    async fn wait_for(&self, text: &str, secs: u64) -> String {
        let started = Instant::now();
        loop {
            let screen = self.capture();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "{text:?} did not appear within {secs} s; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .status();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// After the program: its exit code and whether the tty is back to normal.
const AFTER: &str = "echo GPURES-EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo; sleep 600";

/// Registers `email` with a password, its session kept in `home`; returns
/// the shell command that opens the real TUI as that account (then
/// [`AFTER`]).
async fn register(daemon: &TestDaemon, home: &Path, email: &str, name: &str) -> String {
    let mut reg = tokio::process::Command::new(BIN)
        .args([
            "register",
            "--email",
            email,
            "--name",
            name,
            "--password-stdin",
        ])
        .env("XDG_CONFIG_HOME", home)
        .env("GPURES_SOCKET", &daemon.socket)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut stdin) = reg.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin
            .write_all(b"a password long enough\n")
            .await
            .expect("stdin");
    }
    assert!(reg.wait().await.expect("wait").success());
    format!(
        "env XDG_CONFIG_HOME={} GPURES_SOCKET={} TZ=Asia/Seoul TERM=xterm-256color {}; {AFTER}",
        shell_quote(home),
        shell_quote(&daemon.socket),
        shell_quote(Path::new(BIN)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tmux; .ci/run installs it and runs ignored tests"]
async fn the_real_tui_books_by_keys_in_tmux_and_restores_the_terminal() {
    let mut daemon = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let home = tempfile::tempdir().expect("home");
    let command = register(&daemon, home.path(), "kim@lab.kr", "김민수").await;
    let tmux = Tmux::start(&command, 100, 30);
    let screen = tmux.wait_for("gpu1", 20).await;
    assert!(
        screen.contains("Timeline") && screen.contains("김민수"),
        "{screen}"
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "1",
        "the TUI uses the alternate screen"
    );

    tmux.keys(&["j", "l", "l", "n"]);
    tmux.wait_for("New booking", 10).await;
    tmux.wait_for("✓ free", 10).await;
    tmux.keys(&["Tab", "Tab", "e2e run", "Enter"]);
    tmux.wait_for("booked gpu1", 10).await;
    // The bar arrives with the refresh that follows the booking.
    let screen = tmux.wait_for("*김", 10).await;
    assert!(
        screen.contains("*김"),
        "the bar is drawn as mine:\n{screen}"
    );
    let stored = daemon
        .reservations(&ReservationFilter::default())
        .await
        .expect("list");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].resource_name, "gpu1");
    assert_eq!(stored[0].note, "e2e run");

    // The daemon restarts (a package upgrade) under the open TUI: it says
    // it lost the connection, comes back by itself, and books by keys again.
    daemon.restart().await.expect("restart");
    tmux.wait_for("reconnected to the daemon", 15).await;
    tmux.keys(&["k", "n"]);
    tmux.wait_for("New booking", 10).await;
    tmux.wait_for("✓ free", 10).await;
    tmux.keys(&["Enter"]);
    tmux.wait_for("booked gpu0", 10).await;
    let stored = daemon
        .reservations(&ReservationFilter::default())
        .await
        .expect("list");
    assert_eq!(stored.len(), 2, "booked after the restart");

    // Help overlay, then quit.
    tmux.keys(&["?"]);
    tmux.wait_for("Keys · any key closes", 5).await;
    // Any key closes the help (a lone Escape is told from Alt-key by timing).
    tmux.keys(&["Escape"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    tmux.keys(&["q"]);
    let after = tmux.wait_for("GPURES-EXIT=", 10).await;
    assert!(after.contains("GPURES-EXIT=0"), "{after}");
    tmux.wait_for("icanon", 5).await;
    let after = tmux.capture();
    assert!(
        after.contains("icanon") && !after.contains("-icanon"),
        "canonical mode is back:\n{after}"
    );
    assert!(
        after.contains(" echo") || after.contains("echo "),
        "echo is back:\n{after}"
    );
    assert!(!after.contains("-echo "), "echo is back:\n{after}");
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "the alternate screen is left"
    );
    daemon.stop().await.expect("stop");
}

fn daemon_beside(bin: &str) -> Option<PathBuf> {
    let p = Path::new(bin).parent()?.join("gpures-daemon");
    p.is_file().then_some(p)
}

#[tokio::test]
#[ignore = "needs tmux and the daemon binary; .ci/run runs ignored tests"]
async fn the_demo_runs_and_cleans_up() {
    assert!(
        daemon_beside(BIN).is_some(),
        "build the daemon too (`cargo test --workspace` does)"
    );
    let command = format!(
        "env TZ=Asia/Seoul TERM=xterm-256color {} demo; {AFTER}",
        shell_quote(Path::new(BIN))
    );
    let tmux = Tmux::start(&command, 120, 32);
    let screen = tmux.wait_for("gpu7", 90).await;
    for name in ["김민수", "Timeline", "Admin"] {
        assert!(screen.contains(name), "{name} missing:\n{screen}");
    }
    tmux.keys(&["Tab"]);
    tmux.wait_for("My reservations (now and coming)", 5).await;
    tmux.keys(&["Tab"]);
    tmux.wait_for("NEXT", 5).await;
    // Live telemetry from the demo's stand-in probe: who really runs, and
    // the unreserved use on gpu6 (F5 reloads until a sample is in).
    let started = std::time::Instant::now();
    let status = loop {
        tmux.keys(&["F5"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let screen = tmux.capture();
        if screen.contains("!UNRESERVED") {
            break screen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no live telemetry in the demo:\n{screen}"
        );
    };
    assert!(
        status.contains("pid"),
        "processes with their pids:\n{status}"
    );
    assert!(!status.contains("no GPU telemetry"), "{status}");
    tmux.keys(&["q"]);
    let quit = std::time::Instant::now();
    let after = tmux.wait_for("GPURES-EXIT=", 30).await;
    assert!(
        quit.elapsed() < Duration::from_millis(1500),
        "the shell is back at once (took {:?})",
        quit.elapsed()
    );
    assert!(after.contains("GPURES-EXIT=0"), "{after}");
    assert!(after.contains("stopping the demo daemon…"), "{after}");
    let dir = after
        .lines()
        .find_map(|l| l.split("PostgreSQL in ").nth(1))
        .map(|rest| rest.trim_end_matches(" …").trim().to_owned())
        .expect("the demo names its folder");
    // The daemon stops and the folder goes behind the shell's back.
    let t = std::time::Instant::now();
    while Path::new(&dir).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the demo did not remove {dir}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tmux; .ci/run installs it and runs ignored tests"]
async fn a_new_unix_user_meets_the_registration_and_is_signed_in_by_it() {
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .config(|c| c.auth.accounts_per_unix_user = 1)
        .start()
        .await
        .expect("daemon");
    let member = gpures_testkit::UnixUser::create("박서연").expect("useradd");
    let command = format!(
        "runuser -u {} -- env TZ=Asia/Seoul TERM=xterm-256color XDG_CONFIG_HOME={} GPURES_SOCKET={} {}; {AFTER}",
        member.name,
        shell_quote(member.config.path()),
        shell_quote(&daemon.socket),
        shell_quote(Path::new(BIN)),
    );
    let tmux = Tmux::start(&command, 100, 30);
    let screen = tmux.wait_for("Register", 20).await;
    assert!(
        screen.contains("박서연") && screen.contains("No password"),
        "the first screen is the registration, the name from the Unix account:\n{screen}"
    );
    assert!(!screen.contains("error"), "{screen}");
    tmux.keys(&["-l", "seoyeon@lab.kr"]);
    tmux.keys(&["Enter"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("signed in by your Unix user", 20).await;
    assert!(screen.contains("gpu1"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("GPURES-EXIT=0", 10).await;
    let stored = daemon
        .host_admin()
        .expect("host admin")
        .user(gpures_daemon::admin::UserAction::List)
        .await
        .expect("list");
    assert!(
        stored.contains("seoyeon@lab.kr") && stored.contains(&member.name),
        "{stored}"
    );
    drop(tmux);

    // Any command on a terminal offers the registration, then goes on.
    let other = gpures_testkit::UnixUser::create("Choi Woojin").expect("useradd");
    let command = format!(
        "runuser -u {} -- env TZ=Asia/Seoul XDG_CONFIG_HOME={} GPURES_SOCKET={} {} resources; {AFTER}",
        other.name,
        shell_quote(other.config.path()),
        shell_quote(&daemon.socket),
        shell_quote(Path::new(BIN)),
    );
    let tmux = Tmux::start(&command, 100, 30);
    tmux.wait_for("Register now? [Y/n]", 20).await;
    tmux.keys(&["Enter"]);
    tmux.wait_for("Email", 10).await;
    tmux.keys(&["-l", "woojin@lab.kr"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("[Choi Woojin]", 10).await;
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("GPURES-EXIT=", 20).await;
    assert!(
        screen.contains("registered Choi Woojin <woojin@lab.kr>")
            && screen.contains("gpu1")
            && screen.contains("GPURES-EXIT=0"),
        "registered, then the command ran:\n{screen}"
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tmux; .ci/run installs it and runs ignored tests"]
async fn many_resources_a_filter_fast_typing_and_release_as_a_person_sees_them() {
    let daemon = TestDaemon::builder()
        .with_gpus(26)
        .start()
        .await
        .expect("daemon");
    let home = tempfile::tempdir().expect("home");
    let cli = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("XDG_CONFIG_HOME", home.path())
            .env("GPURES_SOCKET", &daemon.socket)
            .env("TZ", "Asia/Seoul")
            .output()
            .expect("gpures")
    };
    // The viewer: root's only account, signed in by the socket (no login).
    let out = cli(&["register", "--email", "kim@lab.kr", "--name", "김민수"]);
    assert!(out.status.success(), "{out:?}");
    // 이서연 holds gpu0 now (her account belongs to another Unix user).
    let (lee, login) = daemon.user("lee@lab.kr", "이서연").await.expect("lee");
    let admin = daemon.host_admin().expect("host admin");
    let start = chrono::Utc::now()
        .duration_trunc(chrono::TimeDelta::minutes(1))
        .expect("trunc");
    lee.create_booking(
        tarpc::context::current(),
        login.token.clone(),
        gpures_proto::BookingRequest {
            request_id: uuid::Uuid::new_v4(),
            resources: vec![daemon.gpus[0]],
            period: gpures_proto::Period {
                start,
                end: start + chrono::TimeDelta::hours(3),
            },
            note: "held by Lee".into(),
        },
    )
    .await
    .expect("rpc")
    .expect("book");
    admin
        .user(gpures_daemon::admin::UserAction::Bind {
            email: "lee@lab.kr".into(),
            unix_user: "nobody".into(),
        })
        .await
        .expect("bind");
    // The viewer holds gpu1 from now.
    let out = cli(&["book", "gpu1", "--for", "2h"]);
    assert!(out.status.success(), "{out:?}");

    let command = format!(
        "env XDG_CONFIG_HOME={} GPURES_SOCKET={} TZ=Asia/Seoul TERM=xterm-256color {}; {AFTER}",
        shell_quote(home.path()),
        shell_quote(&daemon.socket),
        shell_quote(Path::new(BIN)),
    );
    let tmux = Tmux::start(&command, 80, 24);
    tmux.wait_for("gpu1", 20).await;

    // A filter that hides Lee's bar never calls her cell free.
    tmux.keys(&["/"]);
    tmux.keys(&["-l", "kim"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("filter: kim", 5).await;
    let footer = screen.lines().rev().nth(1).unwrap_or_default().to_owned();
    assert!(
        footer.contains("이서연") && !footer.contains("free"),
        "the cell under the cursor is Lee's:\n{screen}"
    );
    tmux.keys(&["/", "Escape"]);
    tokio::time::sleep(Duration::from_millis(400)).await;

    // 26 resources at 80×24: the cursor scrolls to the last, whole name.
    for _ in 0..25 {
        tmux.keys(&["j"]);
    }
    tmux.wait_for("gpu25", 5).await;
    for _ in 0..24 {
        tmux.keys(&["k"]);
    }
    tmux.wait_for("gpu1 · 김민수", 5).await;

    // r on the viewer's running booking asks first, then releases.
    tmux.keys(&["r"]);
    tmux.wait_for("Release gpu1", 5).await;
    tmux.keys(&["y"]);
    tmux.wait_for("released gpu1", 10).await;

    // Fast typing in the booking form: the answer shown is for what the
    // field says last, and Enter books exactly that.
    tmux.keys(&["n"]);
    tmux.wait_for("New booking", 10).await;
    for _ in 0..30 {
        tmux.keys(&["BSpace"]);
    }
    tmux.keys(&["-l", "tomorrow 9pm"]);
    tmux.wait_for("✓ free", 10).await;
    tmux.keys(&["Enter"]);
    tmux.wait_for("booked gpu1", 10).await;
    let mine = daemon
        .reservations(&ReservationFilter {
            user_email: Some("kim@lab.kr".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    let tz: chrono_tz::Tz = "Asia/Seoul".parse().expect("zone");
    let booked = mine
        .iter()
        .find(|r| r.period.start > chrono::Utc::now() + chrono::TimeDelta::hours(3))
        .expect("the booking typed fast");
    assert_eq!(
        booked
            .period
            .start
            .with_timezone(&tz)
            .format("%H:%M")
            .to_string(),
        "21:00"
    );
    tmux.keys(&["q"]);
    tmux.wait_for("GPURES-EXIT=0", 10).await;
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tmux; .ci/run installs it and runs ignored tests"]
async fn an_admin_manages_policy_groups_and_resources_and_reads_the_report_in_the_real_tui() {
    use sqlx::Connection as _;
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let home = tempfile::tempdir().expect("home");
    let command = register(&daemon, home.path(), "boss@lab.kr", "김관리").await;
    daemon
        .host_admin()
        .expect("host admin")
        .promote("boss@lab.kr")
        .await
        .expect("promote");
    let tmux = Tmux::start(&command, 100, 30);
    tmux.wait_for("gpu1", 20).await;
    // Admin is the last tab.
    tmux.keys(&["BTab"]);
    tmux.wait_for("Users", 10).await;
    for (line, done) in [
        ("group add vision 비전 팀", "group vision created"),
        (
            "policy set gpu-hours-week 48 --group vision",
            "rule gpu-hours-week set",
        ),
        ("resource add gpu9 --gpu-index 9 spare card", "added gpu9"),
        ("resource disable gpu9", "gpu9 disabled"),
    ] {
        tmux.keys(&[":"]);
        tmux.wait_for("audited", 5).await;
        tmux.keys(&[line]);
        tmux.keys(&["Enter"]);
        tmux.wait_for(done, 10).await;
    }
    let screen = tmux.wait_for("48 GPU-hours", 10).await;
    assert!(screen.contains("group vision"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.contains("gpu9") && l.contains("disabled")),
        "a disabled resource stays listed, to enable again:\n{screen}"
    );
    let mut db = sqlx::PgConnection::connect(&daemon.database_url)
        .await
        .expect("db");
    let (active, description): (bool, String) =
        sqlx::query_as("SELECT active, description FROM resources WHERE name = 'gpu9'")
            .fetch_one(&mut db)
            .await
            .expect("gpu9");
    assert_eq!((active, description.as_str()), (false, "spare card"));
    let group: String = sqlx::query_scalar("SELECT description FROM groups WHERE name = 'vision'")
        .fetch_one(&mut db)
        .await
        .expect("group");
    assert_eq!(group, "비전 팀");
    // Where notifications go: terminals on, a webhook, one kind muted.
    tmux.keys(&["N"]);
    tmux.wait_for("Where notifications go", 10).await;
    tmux.wait_for("[ ] urgent ones written", 10).await;
    tmux.keys(&["Down", "Down", "Space"]);
    tmux.wait_for("[x] urgent ones written", 10).await;
    tmux.keys(&["Up", "Up", "Enter"]);
    tmux.wait_for("Enter saves", 5).await;
    tmux.keys(&["https://hooks.example/lab"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Webhook: https://hooks.example/lab", 10)
        .await;
    for _ in 0..3 {
        tmux.keys(&["Down"]);
    }
    tmux.keys(&["Space"]);
    tmux.wait_for("[ ] starts-soon", 10).await;
    tmux.keys(&["Escape"]);
    let (url, terminal, muted): (Option<String>, bool, Vec<String>) = sqlx::query_as(
        "SELECT webhook_url, terminal, muted FROM notification_settings s
           JOIN users u ON u.id = s.user_id WHERE u.email = 'boss@lab.kr'",
    )
    .fetch_one(&mut db)
    .await
    .expect("settings");
    assert_eq!(
        (url.as_deref(), terminal, muted),
        (
            Some("https://hooks.example/lab"),
            true,
            vec!["starts-soon".to_owned()]
        )
    );
    // The Report screen, one tab to the left: this month, the lab's row.
    tmux.keys(&["BTab"]);
    let screen = tmux.wait_for("(lab)", 10).await;
    assert!(screen.contains("Usage 20"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("GPURES-EXIT=0", 10).await;
    daemon.stop().await.expect("stop");
}

/// The last SGR sequence before `needle` on the line that contains `row`,
/// from `capture-pane -e`: the style it is drawn in.
fn style_before(screen: &str, row: &str, needle: char) -> Option<String> {
    let line = screen.lines().find(|l| l.contains(row))?;
    let before = &line[..line.find(needle)?];
    let esc = before.rfind("\u{1b}[")?;
    let sgr = &before[esc..];
    Some(sgr[..=sgr.find('m')?].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tmux; .ci/run installs it and runs ignored tests"]
async fn the_cursor_shows_on_the_second_column_of_a_korean_name_in_a_real_terminal() {
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let home = tempfile::tempdir().expect("home");
    let command = register(&daemon, home.path(), "kim@lab.kr", "김민수").await;
    let booked = tokio::process::Command::new(BIN)
        .args(["book", "gpu0", "--for", "3h"])
        .env("XDG_CONFIG_HOME", home.path())
        .env("GPURES_SOCKET", &daemon.socket)
        .output()
        .await
        .expect("book");
    assert!(booked.status.success(), "{booked:?}");
    let tmux = Tmux::start(&command, 100, 30);
    tmux.wait_for("*김민수", 20).await;
    let capture = |tmux: &Tmux| {
        let out = Command::new("tmux")
            .args(["-L", &tmux.server, "capture-pane", "-e", "-p", "-t", "t"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The cursor starts on now, the bar's first cell (`*`); two cells on is
    // the second column of 김.
    let away = style_before(&capture(&tmux), " gpu0", '김').expect("김 drawn");
    tmux.keys(&["l", "l"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let screen = capture(&tmux);
    let on = style_before(&screen, " gpu0", '김').expect("김 still drawn whole");
    assert_ne!(on, away, "the cursor's style shows on 김:\n{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("GPURES-EXIT=0", 10).await;
    daemon.stop().await.expect("stop");
}
