//! The real `gpures` binary against a real daemon: every command in human and
//! `--json` form, every exit code, and times read in the user's zone,
//! including a booking across a DST change.

use std::process::Output;

use gpures_testkit::TestDaemon;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gpures");
const PW: &str = "a password long enough";

struct Cli {
    daemon: TestDaemon,
    home: tempfile::TempDir,
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.out))
    }
}

impl Cli {
    async fn new() -> Cli {
        Cli {
            daemon: TestDaemon::start().await.expect("daemon"),
            home: tempfile::tempdir().expect("home"),
        }
    }

    /// Runs `gpures ARGS` as user `who` (a config dir of its own) in zone `tz`.
    async fn run_as(&self, who: &str, tz: &str, args: &[&str], stdin: Option<&str>) -> Run {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .env("XDG_CONFIG_HOME", self.home.path().join(who))
            .env("GPURES_SOCKET", &self.daemon.socket)
            .env("TZ", tz)
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn gpures");
        if let Some(mut input) = child.stdin.take() {
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).await.expect("stdin");
            }
            drop(input);
        }
        let out: Output = child.wait_with_output().await.expect("wait");
        Run {
            code: out.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_as("kim", "Asia/Seoul", args, None).await
    }

    async fn ok(&self, who: &str, args: &[&str]) -> Run {
        let r = self.run_as(who, "Asia/Seoul", args, None).await;
        assert_eq!(r.code, 0, "gpures {args:?} failed: {}{}", r.out, r.err);
        r
    }

    async fn register(&self, who: &str, email: &str, name: &str) {
        let r = self
            .run_as(
                who,
                "Asia/Seoul",
                &[
                    "register",
                    "--email",
                    email,
                    "--name",
                    name,
                    "--password-stdin",
                ],
                Some(&format!("{PW}\n")),
            )
            .await;
        assert_eq!(r.code, 0, "register: {}{}", r.out, r.err);
    }

    async fn promote(&self, email: &str) {
        self.daemon
            .host_admin()
            .expect("host admin")
            .promote(email)
            .await
            .expect("promote");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_admin_commands() {
    let cli = Cli::new().await;
    cli.register("kim", "kim@lab.kr", "김민수").await;
    let who = cli.ok("kim", &["whoami"]).await;
    assert!(
        who.out.contains("kim@lab.kr") && who.out.contains("김민수") && who.out.contains("member"),
        "{}",
        who.out
    );
    let who = cli.ok("kim", &["whoami", "--json"]).await.json();
    assert_eq!(who["email"], "kim@lab.kr");
    assert_eq!(who["role"], "member");
    assert_eq!(who["unix_user"], "root");
    // The token file is private.
    let token_file = cli.home.path().join("kim/gpures/session-test-host.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file)
            .expect("token file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // A member may not use admin commands: exit 4.
    let denied = cli
        .run(&["admin", "resource", "add", "gpu0", "--gpu-index", "0"])
        .await;
    assert_eq!(denied.code, 4, "{}", denied.err);
    assert!(denied.err.contains("permission denied"));

    cli.promote("kim@lab.kr").await;
    // Promotion bumps nothing: the same token now has admin rights.
    cli.ok(
        "kim",
        &[
            "admin",
            "resource",
            "add",
            "gpu0",
            "--gpu-index",
            "0",
            "--description",
            "H100",
        ],
    )
    .await;
    let added = cli
        .ok(
            "kim",
            &[
                "admin",
                "resource",
                "add",
                "gpu1",
                "--gpu-index",
                "1",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(added["name"], "gpu1");
    assert_eq!(added["kind"], "gpu");
    let rs = cli.ok("kim", &["resources"]).await;
    assert!(
        rs.out.lines().next().is_some_and(|l| l.starts_with("NAME")),
        "{}",
        rs.out
    );
    assert!(rs.out.contains("gpu0") && rs.out.contains("H100"));
    assert_eq!(
        cli.ok("kim", &["resources", "--json"])
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    cli.register("lee", "lee@lab.kr", "이서연").await;
    let users = cli.ok("kim", &["admin", "user", "list"]).await;
    assert!(users.out.contains("이서연") && users.out.contains("lee@lab.kr"));
    assert_eq!(
        cli.ok("kim", &["admin", "user", "list", "--json"])
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let promoted = cli
        .ok("kim", &["admin", "user", "promote", "lee@lab.kr", "--json"])
        .await
        .json();
    assert_eq!(promoted["role"], "admin");
    cli.ok("kim", &["admin", "user", "demote", "lee@lab.kr"])
        .await;
    let disabled = cli
        .ok("kim", &["admin", "user", "disable", "lee@lab.kr"])
        .await;
    assert!(disabled.out.contains("disabled"));
    // The disabled user's session is gone: exit 4 with the hint.
    let gone = cli.run_as("lee", "Asia/Seoul", &["whoami"], None).await;
    assert_eq!(gone.code, 4);
    assert!(gone.err.contains("run: gpures login"), "{}", gone.err);

    // Wrong password: exit 4, no hint about whether the email exists.
    let wrong = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["login", "--email", "kim@lab.kr", "--password-stdin"],
            Some("nope nope nope\n"),
        )
        .await;
    assert_eq!(wrong.code, 4);
    assert!(wrong.err.contains("wrong email or password"));
    let login = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &[
                "login",
                "--email",
                "kim@lab.kr",
                "--password-stdin",
                "--json",
            ],
            Some(&format!("{PW}\n")),
        )
        .await;
    assert_eq!(login.code, 0, "{}", login.err);
    cli.ok("kim", &["logout", "--everywhere"]).await;
    let after = cli.run(&["whoami"]).await;
    assert_eq!(after.code, 4);
    assert!(after.err.contains("run: gpures login"), "{}", after.err);
    cli.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_commands_and_exit_codes() {
    let cli = Cli::new().await;
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.register("lee", "lee@lab.kr", "이서연").await;
    cli.promote("kim@lab.kr").await;
    for i in 0..3 {
        cli.ok(
            "kim",
            &[
                "admin",
                "resource",
                "add",
                &format!("gpu{i}"),
                "--gpu-index",
                &i.to_string(),
            ],
        )
        .await;
    }
    let booked = cli
        .ok(
            "lee",
            &[
                "book",
                "gpu0",
                "gpu1",
                "--from",
                "tomorrow 10:00",
                "--for",
                "2h",
                "--note",
                "multi",
                "--json",
            ],
        )
        .await
        .json();
    let list = booked.as_array().expect("array");
    assert_eq!(list.len(), 2);
    let first = &list[0];
    for key in [
        "id",
        "booking_id",
        "resource",
        "user",
        "start",
        "end",
        "note",
        "status",
    ] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    assert_eq!(first["user"]["name"], "이서연");
    assert!(
        first["start"]
            .as_str()
            .is_some_and(|s| s.ends_with("T10:00:00+09:00")),
        "{first}"
    );
    assert!(
        first["end"]
            .as_str()
            .is_some_and(|s| s.ends_with("T12:00:00+09:00")),
        "{first}"
    );
    assert_eq!(first["status"], "active");
    assert_eq!(list[0]["booking_id"], list[1]["booking_id"]);

    // The same slot: exit 3, the holder on stderr, and in JSON on stdout.
    let taken = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &[
                "book",
                "gpu1",
                "--from",
                "tomorrow 11:00",
                "--to",
                "tomorrow 13:00",
            ],
            None,
        )
        .await;
    assert_eq!(taken.code, 3, "{}", taken.err);
    assert!(
        taken.err.contains("gpu1 is held by 이서연 <lee@lab.kr>"),
        "{}",
        taken.err
    );
    let taken = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &[
                "book",
                "gpu1",
                "--from",
                "tomorrow 11:00",
                "--for",
                "1h",
                "--json",
            ],
            None,
        )
        .await;
    assert_eq!(taken.code, 3);
    assert_eq!(taken.json()["holders"][0]["user"]["email"], "lee@lab.kr");

    // Usage errors: exit 2.
    for args in [
        vec!["book", "gpu2", "--from", "someday", "--for", "1h"],
        vec![
            "book",
            "gpu2",
            "--from",
            "tomorrow 10:00",
            "--for",
            "forever",
        ],
        vec!["book", "gpu2", "--from", "tomorrow 10:00"],
        vec![
            "book",
            "gpu2",
            "--from",
            "tomorrow 10:00",
            "--to",
            "tomorrow 09:00",
        ],
        vec!["frobnicate"],
    ] {
        let r = cli.run(&args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.err);
    }
    // Other errors: exit 1.
    let unknown = cli
        .run(&["book", "gpu9", "--from", "tomorrow 10:00", "--for", "1h"])
        .await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.err.contains("no resource named \"gpu9\""),
        "{}",
        unknown.err
    );
    let past = cli
        .run_as(
            "lee",
            "Asia/Seoul",
            &["book", "gpu2", "--from", "2020-01-01 10:00", "--for", "1h"],
            None,
        )
        .await;
    assert_eq!(past.code, 1, "{}", past.err);
    assert!(past.err.contains("must not be in the past"), "{}", past.err);

    // Listing.
    let ls = cli.ok("kim", &["ls"]).await;
    assert!(ls.out.starts_with("ID"), "{}", ls.out);
    assert_eq!(ls.out.lines().count(), 3, "{}", ls.out);
    assert!(ls.out.contains("이서연"));
    let mine = cli.ok("kim", &["ls", "--mine", "--json"]).await.json();
    assert_eq!(mine.as_array().map(Vec::len), Some(0));
    let on_gpu0 = cli
        .ok("kim", &["ls", "--resource", "gpu0", "--json"])
        .await
        .json();
    assert_eq!(on_gpu0.as_array().map(Vec::len), Some(1));
    let by_user = cli
        .ok(
            "kim",
            &[
                "ls",
                "--user",
                "lee@lab.kr",
                "--from",
                "now",
                "--to",
                "+3d",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(by_user.as_array().map(Vec::len), Some(2));

    // Edit by a unique prefix, extend, cancel, and a too-short prefix.
    let id = list[0]["id"].as_str().expect("id").to_owned();
    let prefix = &id[..8];
    let edited = cli
        .ok(
            "lee",
            &[
                "edit",
                prefix,
                "--to",
                "tomorrow 12:30",
                "--note",
                "longer",
                "--json",
            ],
        )
        .await
        .json();
    assert!(
        edited["end"]
            .as_str()
            .is_some_and(|s| s.ends_with("T12:30:00+09:00")),
        "{edited}"
    );
    assert_eq!(edited["note"], "longer");
    let extended = cli
        .ok("lee", &["extend", prefix, "--by", "90m", "--json"])
        .await
        .json();
    assert!(
        extended["end"]
            .as_str()
            .is_some_and(|s| s.ends_with("T14:00:00+09:00")),
        "{extended}"
    );
    let short = cli
        .run_as("lee", "Asia/Seoul", &["cancel", &id[..4]], None)
        .await;
    assert_eq!(short.code, 2);
    // Someone else's reservation: exit 4 (kim is an admin, so use a member).
    cli.register("park", "park@lab.kr", "박지훈").await;
    let theirs = cli
        .run_as("park", "Asia/Seoul", &["cancel", prefix], None)
        .await;
    assert_eq!(theirs.code, 4, "{}", theirs.err);
    let cancelled = cli.ok("lee", &["cancel", prefix, "--json"]).await.json();
    assert_eq!(cancelled["status"], "cancelled");
    let all = cli.ok("kim", &["ls", "--all", "--json"]).await.json();
    assert!(
        all.as_array()
            .is_some_and(|a| a.iter().any(|r| r["status"] == "cancelled"))
    );

    // A running reservation is released; status shows holders.
    cli.ok("park", &["book", "gpu2", "--from", "now", "--for", "1h"])
        .await;
    let status = cli.ok("kim", &["status"]).await;
    assert!(status.out.contains("박지훈"), "{}", status.out);
    let status = cli.ok("kim", &["status", "--json"]).await.json();
    let gpu2 = status
        .as_array()
        .and_then(|a| a.iter().find(|s| s["resource"]["name"] == "gpu2"))
        .expect("gpu2")
        .clone();
    assert_eq!(gpu2["current"]["user"]["name"], "박지훈");
    let running = gpu2["current"]["id"].as_str().expect("id").to_owned();
    let released = cli.ok("park", &["release", &running[..10]]).await;
    assert!(released.out.contains("released"), "{}", released.out);
    let status = cli.ok("kim", &["status", "--json"]).await.json();
    let gpu2 = status
        .as_array()
        .and_then(|a| a.iter().find(|s| s["resource"]["name"] == "gpu2"))
        .expect("gpu2");
    assert!(gpu2["current"].is_null(), "{gpu2}");
    cli.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_across_a_dst_change_keeps_wall_clock_days() {
    let cli = Cli::new().await;
    cli.register("kim", "kim@lab.kr", "Kim").await;
    cli.promote("kim@lab.kr").await;
    cli.ok(
        "kim",
        &["admin", "resource", "add", "gpu0", "--gpu-index", "0"],
    )
    .await;
    // Europe/Berlin springs forward on 2027-03-28: that day has 23 hours.
    let r = cli
        .run_as(
            "kim",
            "Europe/Berlin",
            &[
                "book",
                "gpu0",
                "--from",
                "2027-03-27 09:00",
                "--for",
                "1d",
                "--json",
            ],
            None,
        )
        .await;
    assert_eq!(r.code, 0, "{}", r.err);
    let b = &r.json()[0];
    assert_eq!(b["start"], "2027-03-27T09:00:00+01:00");
    assert_eq!(b["end"], "2027-03-28T09:00:00+02:00");
    // A wall-clock time the clocks skip is refused with exit 2.
    let gap = cli
        .run_as(
            "kim",
            "Europe/Berlin",
            &["book", "gpu0", "--from", "2027-03-28 02:30", "--for", "1h"],
            None,
        )
        .await;
    assert_eq!(gap.code, 2);
    assert!(gap.err.contains("does not exist"), "{}", gap.err);
    // The same reservation read from Seoul shows Seoul offsets.
    let seoul = cli.ok("kim", &["ls", "--all", "--json"]).await.json();
    assert_eq!(seoul[0]["start"], "2027-03-27T17:00:00+09:00");
    cli.daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn unreachable_daemon_and_completions() {
    let home = tempfile::tempdir().expect("home");
    let out = std::process::Command::new(BIN)
        .args(["--socket", "/nonexistent/gpures.sock", "whoami"])
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the gpures daemon at /nonexistent/gpures.sock"),
        "{err}"
    );
    assert!(err.contains("systemctl status gpures-daemon"), "{err}");
    assert_eq!(err.lines().count(), 1, "one sentence, no backtrace: {err}");
    let tui = std::process::Command::new(BIN)
        .args(["--socket", "/nonexistent/gpures.sock"])
        .output()
        .expect("run");
    assert_eq!(
        tui.status.code(),
        Some(5),
        "the TUI says the same before touching the terminal"
    );
    let comp = std::process::Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(comp.status.success());
    assert!(String::from_utf8_lossy(&comp.stdout).contains("_gpures"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_puts_the_command_on_the_gpus_held_now() {
    let cli = Cli::new().await;
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.promote("kim@lab.kr").await;
    cli.ok(
        "kim",
        &[
            "admin",
            "resource",
            "add",
            "gpu0",
            "--gpu-index",
            "0",
            "--gpu-uuid",
            "GPU-aaaa",
        ],
    )
    .await;
    cli.ok(
        "kim",
        &[
            "admin",
            "resource",
            "add",
            "gpu1",
            "--gpu-index",
            "1",
            "--gpu-uuid",
            "GPU-bbbb",
        ],
    )
    .await;
    cli.register("lee", "lee@lab.kr", "이서연").await;
    let nothing = cli
        .run_as("lee", "Asia/Seoul", &["run", "--", "env"], None)
        .await;
    assert_eq!(nothing.code, 3);
    assert!(
        nothing.err.contains("no reservation coming"),
        "{}",
        nothing.err
    );
    cli.ok(
        "lee",
        &["book", "gpu1", "--from", "tomorrow 10:00", "--for", "1h"],
    )
    .await;
    let later = cli
        .run_as("lee", "Asia/Seoul", &["run", "--", "env"], None)
        .await;
    assert_eq!(later.code, 3, "{}", later.err);
    assert!(
        later.err.contains("your next reservation (gpu1) starts"),
        "{}",
        later.err
    );
    assert!(
        !later.out.contains("CUDA_VISIBLE_DEVICES"),
        "the command did not run"
    );
    cli.ok("lee", &["book", "gpu0", "--from", "now", "--for", "1h"])
        .await;
    let ran = cli.ok("lee", &["run", "--", "env"]).await;
    assert!(
        ran.out
            .lines()
            .any(|l| l == "CUDA_VISIBLE_DEVICES=GPU-aaaa"),
        "{}",
        ran.out
    );
    let by_index = cli
        .ok(
            "lee",
            &[
                "run",
                "--index",
                "--",
                "sh",
                "-c",
                "echo devices=$CUDA_VISIBLE_DEVICES",
            ],
        )
        .await;
    assert_eq!(by_index.out.trim(), "devices=0");
    let env = cli.ok("lee", &["env"]).await;
    assert_eq!(env.out.trim(), "export CUDA_VISIBLE_DEVICES=GPU-aaaa");
    // Someone else's GPU is never handed out.
    let kims = cli.run_as("kim", "Asia/Seoul", &["env"], None).await;
    assert_eq!(kims.code, 3);
    cli.daemon.stop().await.expect("stop");
}

/// Fills `history` with `past` one-hour reservations of `email` in the past
/// and `future` one-minute ones in the coming days carrying 500-character
/// Korean notes (about 1.5 KB each), spread over `gpus`: one member's
/// 3 seconds of work, as the review reproduced it.
async fn fill(daemon: &TestDaemon, email: &str, past: i64, future: i64) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&daemon.database_url)
        .await
        .expect("db");
    let user: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&mut conn)
        .await
        .expect("user");
    let per_gpu = |n: i64| n / i64::try_from(daemon.gpus.len()).expect("gpus");
    for gpu in &daemon.gpus {
        sqlx::query(
            "INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
             SELECT gen_random_uuid(), gen_random_uuid(), $1, $2,
                    tstzrange(date_trunc('minute', now()) - make_interval(hours => (g + 48)::int),
                              date_trunc('minute', now()) - make_interval(hours => (g + 47)::int), '[)')
             FROM generate_series(1, $3) g",
        )
        .bind(user)
        .bind(gpu)
        .bind(per_gpu(past))
        .execute(&mut conn)
        .await
        .expect("past");
        sqlx::query(
            "INSERT INTO reservations (id, booking_id, user_id, resource_id, period, note)
             SELECT gen_random_uuid(), gen_random_uuid(), $1, $2,
                    tstzrange(date_trunc('minute', now()) + make_interval(mins => (10 * g + 60)::int),
                              date_trunc('minute', now()) + make_interval(mins => (10 * g + 61)::int), '[)'),
                    repeat('가', 500)
             FROM generate_series(1, $3) g",
        )
        .bind(user)
        .bind(gpu)
        .bind(per_gpu(future))
        .execute(&mut conn)
        .await
        .expect("future");
    }
}

/// 600 resources with the longest descriptions in 4-byte characters are
/// about 1.2 MB, more than one frame: `gpures resources` reads them page by
/// page and lists every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_past_one_frame_list_page_by_page() {
    use sqlx::Connection as _;
    let cli = Cli::new().await;
    cli.register("kim", "kim@lab.kr", "김민수").await;
    let mut conn = sqlx::PgConnection::connect(&cli.daemon.database_url)
        .await
        .expect("db");
    sqlx::query(
        "INSERT INTO resources (name, host, kind, gpu_index, description)
         SELECT format('big-gpu%s', i), 'big-host', 'gpu', i, $1
           FROM generate_series(0, 599) i",
    )
    .bind("𠀀".repeat(gpures_proto::limits::DESCRIPTION_MAX_CHARS))
    .execute(&mut conn)
    .await
    .expect("resources");
    let listed = cli.ok("kim", &["resources", "--json"]).await.json();
    let listed = listed.as_array().expect("array");
    let big: Vec<&str> = listed
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.starts_with("big-gpu"))
        .collect();
    let every: Vec<String> = (0..600).map(|i| format!("big-gpu{i}")).collect();
    assert_eq!(big, every, "every resource once, in order");
    assert!(
        listed
            .iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("big-gpu")))
            .all(|r| r["description"]
                .as_str()
                .is_some_and(|d| d.chars().count() == 500))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_with_big_notes_breaks_no_listing_and_no_lookup() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(4)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    // 20,000 reservations: 19,400 past, 600 ahead with 500-character notes
    // (together about 1 MB, the size of a whole frame).
    fill(&cli.daemon, "kim@lab.kr", 19_400, 600).await;

    let ahead = cli.ok("kim", &["ls", "--json"]).await.json();
    let ahead = ahead.as_array().expect("array");
    assert_eq!(ahead.len(), 600, "every reservation of the next 14 days");
    assert!(
        ahead
            .iter()
            .all(|r| r["note"].as_str().is_some_and(|n| n.chars().count() == 500))
    );
    let table = cli.ok("kim", &["ls"]).await;
    assert!(table.out.lines().count() > 600, "the table lists them all");
    let everything = cli.ok("kim", &["ls", "--all", "--json"]).await.json();
    assert_eq!(
        everything.as_array().map(Vec::len),
        Some(20_000),
        "all of history, page by page"
    );

    // The TUI loads its timeline and the viewer's list page by page.
    let client = gpures_tui::client::Client::connect(&cli.daemon.socket)
        .await
        .expect("connect");
    let login = client
        .login("kim@lab.kr".into(), PW.into())
        .await
        .expect("login");
    let session = gpures_tui::tui::Session::new(client, Some(login.token), None);
    let app = gpures_tui::tui::app::App::new(
        "Asia/Seoul".parse().expect("zone"),
        chrono::Utc::now(),
        true,
        "kim@lab.kr",
    );
    match session.execute(app.refresh()).await {
        gpures_tui::tui::app::Msg::Loaded(snapshot) => {
            assert!(
                snapshot.reservations.len() >= 600,
                "{}",
                snapshot.reservations.len()
            );
            assert_eq!(snapshot.mine.len(), 600);
        }
        other => panic!("the refresh failed: {other:?}"),
    }

    // Edit and cancel by a prefix of the id: a lookup, not a listing.
    let id = ahead[0]["id"].as_str().expect("id").to_owned();
    cli.ok("kim", &["edit", &id[..8], "--note", "shorter"])
        .await;
    let cancelled = cli.ok("kim", &["cancel", &id[..8], "--json"]).await.json();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["note"], "shorter");
    let gone = cli.run(&["cancel", "0000000"]).await;
    assert_eq!(gone.code, 1, "{}{}", gone.out, gone.err);
    assert!(
        gone.err.contains("no reservation or booking starts with"),
        "{}",
        gone.err
    );

    // A two-GPU booking as one unit, by its booking id: extend, move, cancel.
    let booked = cli
        .ok(
            "kim",
            &[
                "book", "gpu2", "gpu3", "--from", "+20d", "--for", "2h", "--json",
            ],
        )
        .await
        .json();
    let booking = booked[0]["booking_id"]
        .as_str()
        .expect("booking")
        .to_owned();
    let extended = cli
        .ok("kim", &["extend", &booking[..8], "--by", "1h", "--json"])
        .await
        .json();
    let extended = extended.as_array().expect("both");
    assert_eq!(extended.len(), 2);
    assert!(extended.iter().all(|r| r["end"] == extended[0]["end"]));
    let moved = cli
        .ok(
            "kim",
            &[
                "edit", &booking, "--from", "+21d", "--to", "+21d2h", "--json",
            ],
        )
        .await;
    assert_eq!(
        moved.json().as_array().map(Vec::len),
        Some(2),
        "{}",
        moved.out
    );
    let cancelled = cli
        .ok("kim", &["cancel", &booking[..8], "--json"])
        .await
        .json();
    assert!(
        cancelled
            .as_array()
            .expect("both")
            .iter()
            .all(|r| r["status"] == "cancelled")
    );
    // A running one: released as a unit.
    let running = cli
        .ok(
            "kim",
            &[
                "book", "gpu2", "gpu3", "--from", "now", "--for", "1h", "--json",
            ],
        )
        .await
        .json();
    let booking = running[0]["booking_id"]
        .as_str()
        .expect("booking")
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let released = cli
        .ok("kim", &["release", &booking[..8], "--json"])
        .await
        .json();
    assert_eq!(released.as_array().map(Vec::len), Some(2));
    cli.daemon.stop().await.expect("stop");
}

/// What a new member types works as they mean it: `book` from now, times as
/// people say them, names in any case with "did you mean", `edit --from`
/// keeping the length, `edit --for`, `list`, `ls --mine` past two weeks, a
/// closed pipe, `run` exit codes and device order, and a help that explains
/// every flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_what_people_type() {
    let cli = Cli::new().await;
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.promote("kim@lab.kr").await;
    for (name, index, uuid) in [("gpu1", "1", "GPU-bbbb"), ("gpu0", "0", "GPU-aaaa")] {
        cli.ok(
            "kim",
            &[
                "admin",
                "resource",
                "add",
                name,
                "--gpu-index",
                index,
                "--gpu-uuid",
                uuid,
            ],
        )
        .await;
    }
    // No --from: from now. Upper case names, booked in reverse index order.
    let booked = cli
        .ok("kim", &["--json", "book", "GPU1", "Gpu0", "--for", "1h"])
        .await
        .json();
    let starts: Vec<&str> = booked
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["start"].as_str())
        .collect();
    assert_eq!(starts.len(), 2);
    let start = chrono::DateTime::parse_from_rfc3339(starts[0]).expect("start");
    assert!(
        (chrono::Utc::now() - start.with_timezone(&chrono::Utc)).num_minutes() <= 1,
        "starts now: {start}"
    );
    // `run`: devices in index order, whatever order they were booked in.
    let env = cli.ok("kim", &["env"]).await;
    assert_eq!(
        env.out.trim(),
        "export CUDA_VISIBLE_DEVICES=GPU-aaaa,GPU-bbbb"
    );
    let missing = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["run", "--", "no-such-command-xyz"],
            None,
        )
        .await;
    assert_eq!(missing.code, 127, "{}", missing.err);
    let script = cli.home.path().join("not-executable.sh");
    std::fs::write(&script, "echo hi\n").expect("write");
    let script = script.to_str().expect("utf-8 path");
    let not_exec = cli
        .run_as("kim", "Asia/Seoul", &["run", "--", script], None)
        .await;
    assert_eq!(not_exec.code, 126, "{}", not_exec.err);

    // A near miss names the resource meant; a missing end says how to give one.
    let typo = cli
        .run_as("kim", "Asia/Seoul", &["book", "gpu", "--for", "1h"], None)
        .await;
    assert_eq!(typo.code, 1);
    assert!(typo.err.contains("did you mean gpu0?"), "{}", typo.err);
    let no_end = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["book", "gpu0", "--from", "9pm"],
            None,
        )
        .await;
    assert_eq!(no_end.code, 2);
    assert!(
        no_end.err.contains("--to") && no_end.err.contains("--for"),
        "{}",
        no_end.err
    );

    // Times as people type them, far enough ahead to be free.
    let later = cli
        .ok(
            "kim",
            &[
                "--json",
                "book",
                "gpu0",
                "--from",
                "next mon 9pm",
                "--to",
                "next mon 11pm",
            ],
        )
        .await
        .json();
    let id = later[0]["id"].as_str().expect("id").to_owned();
    assert!(
        later[0]["start"]
            .as_str()
            .is_some_and(|s| s.ends_with("T21:00:00+09:00")),
        "{later}"
    );
    // `edit --from` moves it and keeps its two hours; `--for` sets a length.
    let moved = cli
        .ok(
            "kim",
            &["--json", "edit", &id[..8], "--from", "next tue 9am"],
        )
        .await
        .json();
    let period = |v: &Value| {
        let r = if v.is_array() { &v[0] } else { v };
        let at = |k: &str| {
            chrono::DateTime::parse_from_rfc3339(r[k].as_str().expect("time")).expect("time")
        };
        (at("start"), at("end"))
    };
    let (s, e) = period(&moved);
    assert_eq!((e - s).num_minutes(), 120, "{moved}");
    assert_eq!(s.format("%H:%M").to_string(), "09:00");
    let shorter = cli
        .ok("kim", &["--json", "edit", &id[..8], "--for", "30m"])
        .await
        .json();
    let (s2, e2) = period(&shorter);
    assert_eq!((s2, (e2 - s2).num_minutes()), (s, 30), "{shorter}");

    // Three weeks ahead is still "mine"; `list` is `ls`.
    let far = chrono::Utc::now() + chrono::TimeDelta::days(21);
    let far = far.format("%Y-%m-%d 10:00").to_string();
    cli.ok("kim", &["book", "gpu1", "--from", &far, "--for", "1h"])
        .await;
    let mine = cli.ok("kim", &["--json", "list", "--mine"]).await.json();
    assert_eq!(mine.as_array().map(Vec::len), Some(4), "{mine}");
    let everyone = cli.ok("kim", &["--json", "ls"]).await.json();
    assert_eq!(
        everyone.as_array().map(Vec::len),
        Some(3),
        "everyone's: two weeks"
    );

    // A reader that goes away ends the command quietly.
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{BIN} ls | head -1 >/dev/null; {BIN} completions zsh | head -3 >/dev/null; echo done"
        ))
        .env("XDG_CONFIG_HOME", cli.home.path().join("kim"))
        .env("GPURES_SOCKET", &cli.daemon.socket)
        .output()
        .expect("sh");
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(String::from_utf8_lossy(&piped.stdout).contains("done"));

    // Help explains every flag and shows times, with no empty default.
    for cmd in ["book", "edit", "ls", "cancel", "extend", "release"] {
        let help = cli.ok("kim", &[cmd, "--help"]).await.out;
        assert!(!help.contains("[default: ]"), "{cmd}: {help}");
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            let described = line.split_whitespace().count() > 2
                || line.contains("--help")
                || line.contains("--json")
                || line.contains("--socket");
            assert!(described, "{cmd}: an undescribed flag: {line}");
        }
        if cmd == "book" || cmd == "edit" {
            assert!(help.contains("tomorrow 9am"), "{cmd}: {help}");
        }
    }
    cli.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_any_gpus_at_the_earliest_time_and_ask_when() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(4)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    // Three GPUs: the lowest indices, now, with the reason.
    let r = cli
        .ok(
            "kim",
            &["book", "--gpus", "3", "--for", "2h", "--note", "sweep"],
        )
        .await;
    assert!(r.out.contains("booked gpu0, gpu1, gpu2 from"), "{}", r.out);
    assert!(r.out.contains("lowest"), "{}", r.out);
    // Two more: only gpu3 is free now, so the earliest is when the three end.
    let when = cli.ok("kim", &["when", "--gpus", "2", "--for", "1h"]).await;
    assert!(when.out.contains("HOST"), "{}", when.out);
    let json = cli
        .ok("kim", &["when", "--gpus", "2", "--for", "1h", "--json"])
        .await
        .json();
    let first = &json[0];
    assert_eq!(first["host"], "test-host");
    let booked = cli
        .ok("kim", &["book", "--gpus", "2", "--for", "1h", "--json"])
        .await
        .json();
    assert_eq!(
        booked["reservations"][0]["start"], first["start"],
        "booked what `when` showed first"
    );
    assert!(
        booked["why"]
            .as_str()
            .is_some_and(|w| w.contains("earliest")),
        "{booked}"
    );
    // Bad input: clear errors, exit 1, nothing booked.
    for (args, says) in [
        (
            vec!["book", "--gpus", "9", "--for", "1h"],
            "the most on one host is 4",
        ),
        (vec!["book", "--gpus", "0", "--for", "1h"], "1 to 64 GPUs"),
        (
            vec!["book", "--gpus", "1", "--for", "20d"],
            "at most 14 days",
        ),
        (
            vec!["when", "--gpus", "1", "--for", "1h", "--host", "nope"],
            "no GPUs on host",
        ),
    ] {
        let r = cli.run(&args).await;
        assert_eq!(r.code, 1, "{args:?}: {}{}", r.out, r.err);
        assert!(r.err.contains(says), "{args:?}: {}", r.err);
    }
    let r = cli
        .run(&["book", "gpu0", "--gpus", "1", "--for", "1h"])
        .await;
    assert_eq!(r.code, 2, "names and --gpus together: {}", r.err);
    let mine = cli.ok("kim", &["ls", "--mine", "--json"]).await.json();
    assert_eq!(mine.as_array().map(Vec::len), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_in_the_queue_and_get_the_gpus_when_they_free() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(2)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.register("lee", "lee@lab.kr", "이서연").await;
    let held = cli
        .ok("kim", &["book", "--gpus", "2", "--for", "1h", "--json"])
        .await
        .json();
    let booking = held["booking_id"].as_str().expect("booking id")[..8].to_owned();
    let queued = cli
        .ok(
            "lee",
            &["queue", "--gpus", "1", "--for", "30m", "--note", "eval"],
        )
        .await;
    assert!(queued.out.contains("position 1"), "{}", queued.out);
    let spare = cli
        .ok("lee", &["queue", "--gpus", "1", "--for", "2h", "--json"])
        .await
        .json();
    let listed = cli.ok("lee", &["queue"]).await;
    assert!(
        listed.out.contains("이서연 (you)") && listed.out.contains("EXPECTED FROM"),
        "{}",
        listed.out
    );
    let spare_id = spare["id"].as_str().expect("id")[..8].to_owned();
    let left = cli.ok("lee", &["queue", "cancel", &spare_id]).await;
    assert!(left.out.contains("left the queue"), "{}", left.out);
    // Kim releases: Lee's request becomes a booking starting now.
    cli.ok("kim", &["release", &booking]).await;
    let t = std::time::Instant::now();
    loop {
        let q = cli.ok("lee", &["queue"]).await;
        if q.out.contains("was granted") {
            break;
        }
        assert!(t.elapsed().as_secs() < 5, "not granted: {}", q.out);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mine = cli.ok("lee", &["ls", "--mine", "--json"]).await.json();
    assert_eq!(mine[0]["note"], "eval");
    // Bad requests: a clear error, nothing queued.
    let r = cli
        .run_as(
            "lee",
            "Asia/Seoul",
            &["queue", "--gpus", "5", "--for", "1h"],
            None,
        )
        .await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("the most on one host is 2"), "{}", r.err);
    let r = cli
        .run_as("lee", "Asia/Seoul", &["queue", "--gpus", "1"], None)
        .await;
    assert_eq!(r.code, 2, "--for is required: {}", r.err);
    let r = cli
        .run_as(
            "lee",
            "Asia/Seoul",
            &[
                "queue",
                "--gpus",
                "1",
                "--for",
                "1h",
                "--until",
                "2020-01-01 10:00",
            ],
            None,
        )
        .await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("deadline"), "{}", r.err);
    let json = cli.ok("lee", &["queue", "ls", "--json"]).await.json();
    assert!(
        json.as_array()
            .is_some_and(|a| a.iter().all(|e| e["state"] != "waiting")),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_books_gpus_for_a_command_and_gives_them_back() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(2)
            .config(|c| c.gpu.sample_interval_secs = 1)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.register("lee", "lee@lab.kr", "이서연").await;
    // Books, runs with the GPU set, releases at exit, passes the exit code.
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &[
                "run",
                "--gpus",
                "1",
                "--for",
                "10m",
                "--index",
                "--",
                "sh",
                "-c",
                "echo CUDA=$CUDA_VISIBLE_DEVICES; exit 7",
            ],
            None,
        )
        .await;
    assert_eq!(r.code, 7, "{}{}", r.out, r.err);
    assert!(r.out.contains("CUDA=0"), "{}", r.out);
    assert!(r.err.contains("released when it exits"), "{}", r.err);
    // Every GPU of the booking, in index order.
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &[
                "run",
                "--gpus",
                "2",
                "--for",
                "10m",
                "--index",
                "--",
                "sh",
                "-c",
                "echo CUDA=$CUDA_VISIBLE_DEVICES",
            ],
            None,
        )
        .await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("CUDA=0,1"), "{}", r.out);
    let now = chrono::Utc::now();
    let all = cli
        .ok("kim", &["ls", "--mine", "--all", "--json"])
        .await
        .json();
    let end = all[0]["end"].as_str().expect("end");
    let end = chrono::DateTime::parse_from_rfc3339(end).expect("time");
    assert!(end <= now, "released at exit: ends {end}");
    // More GPUs than the host has; and a host that is full without --wait.
    let r = cli
        .run(&["run", "--gpus", "3", "--for", "1h", "--", "true"])
        .await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("the most on one host is 2"), "{}", r.err);
    let held = cli
        .ok("lee", &["book", "--gpus", "2", "--for", "1h", "--json"])
        .await
        .json();
    let r = cli
        .run(&["run", "--gpus", "1", "--for", "10m", "--", "true"])
        .await;
    assert_eq!(r.code, 3, "{}", r.err);
    assert!(r.err.contains("--wait"), "{}", r.err);
    let q = cli.ok("kim", &["queue", "--json"]).await.json();
    assert!(
        q.as_array()
            .is_some_and(|a| a.iter().all(|e| e["state"] != "waiting")),
        "nothing left in the queue: {q}"
    );
    // (It starts at the next whole minute after Kim's early release.)
    let booking = held["booking_id"].as_str().expect("id")[..8].to_owned();
    cli.ok("lee", &["cancel", &booking]).await;

    // The client and its command killed at once (an SSH session dropped):
    // the daemon sees both gone and releases the booking itself.
    let mut job = tokio::process::Command::new(BIN)
        .args(["run", "--gpus", "1", "--for", "30m", "--", "sleep", "300"])
        .env("XDG_CONFIG_HOME", cli.home.path().join("kim"))
        .env("GPURES_SOCKET", &cli.daemon.socket)
        .env("TZ", "Asia/Seoul")
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pgid = job.id().expect("pid");
    let started = std::time::Instant::now();
    let running = loop {
        let mine = cli.ok("kim", &["ls", "--mine", "--json"]).await.json();
        let live = mine.as_array().and_then(|a| {
            a.iter()
                .find(|r| r["note"].as_str().is_some_and(|n| n.contains("sleep")))
                .cloned()
        });
        if let Some(r) = live {
            break r;
        }
        assert!(started.elapsed().as_secs() < 10, "the job never started");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // Let the client tell the daemon about its processes.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // SAFETY: killing the process group we started.
    unsafe {
        libc::kill(-libc::pid_t::try_from(pgid).expect("pid"), libc::SIGKILL);
    }
    let _ = job.wait().await;
    let id = running["id"].as_str().expect("id").to_owned();
    let t = std::time::Instant::now();
    loop {
        let all = cli
            .ok("kim", &["ls", "--mine", "--all", "--json"])
            .await
            .json();
        let r = all
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == id.as_str()).cloned())
            .expect("the job's reservation");
        let end =
            chrono::DateTime::parse_from_rfc3339(r["end"].as_str().expect("end")).expect("time");
        if end <= chrono::Utc::now() {
            break;
        }
        assert!(
            t.elapsed().as_secs() < 10,
            "the daemon did not release the dead job's booking: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_extend_keeps_the_gpus_while_free_and_stops_before_the_next_holder() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(1)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.register("lee", "lee@lab.kr", "이서연").await;
    // Lee holds gpu0 from 30 minutes on: one 15-minute step fits.
    cli.ok("lee", &["book", "gpu0", "--from", "+30m", "--for", "1h"])
        .await;
    let job = {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args([
            "run", "--gpus", "1", "--for", "1m", "--extend", "--", "sleep", "4",
        ])
        .env("XDG_CONFIG_HOME", cli.home.path().join("kim"))
        .env("GPURES_SOCKET", &cli.daemon.socket)
        .env("TZ", "Asia/Seoul")
        .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("spawn")
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mine = cli.ok("kim", &["ls", "--mine", "--json"]).await.json();
    let end =
        chrono::DateTime::parse_from_rfc3339(mine[0]["end"].as_str().expect("end")).expect("time");
    assert!(
        end > chrono::Utc::now() + chrono::TimeDelta::minutes(14),
        "extended while the GPU is free: ends {end}"
    );
    let out = job.wait_with_output().await.expect("wait");
    assert!(out.status.success());
    // Lee now holds gpu0 from 10 minutes on: the step would reach into it.
    cli.ok("lee", &["book", "gpu0", "--from", "+10m", "--for", "15m"])
        .await;
    let r = cli
        .run(&[
            "run", "--gpus", "1", "--for", "2m", "--extend", "--", "sleep", "2",
        ])
        .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err.contains("no longer extending") && r.err.contains("이서연"),
        "{}",
        r.err
    );
}

/// A stand-in `nvidia-smi` printing the H100 capture with `pid` on GPU 0.
fn fake_smi(dir: &std::path::Path, pid: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gpures-testkit/data/nvidia-smi/h100-driver580/query-gpu-busy-nounits.csv"
    );
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  --query-gpu=*) cat '{fixture}' ;;\n  --query-compute-apps=*) echo 'GPU-d823cc85-ff44-26ac-915e-cef58e038574, {pid}, python3, 1386' ;;\n  *) exit 2 ;;\nesac\n"
    );
    let path = dir.join("nvidia-smi");
    std::fs::write(&path, script).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to run a process as uid 65534; CI runs as root with --include-ignored"]
async fn booking_a_gpu_someone_uses_without_a_reservation_warns() {
    use std::os::unix::process::CommandExt;
    let mut intruder = std::process::Command::new("sleep")
        .arg("120")
        .uid(65534)
        .gid(65534)
        .spawn()
        .expect("sleep as nobody");
    let dir = tempfile::tempdir().expect("dir");
    let smi = fake_smi(dir.path(), intruder.id());
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(1)
            .config(move |c| {
                c.gpu.backend = gpures_daemon::gpu::BackendChoice::NvidiaSmi;
                c.gpu.nvidia_smi = smi;
                c.gpu.sample_interval_secs = 1;
            })
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    // Wait for a sample naming the intruder.
    let t = std::time::Instant::now();
    while !cli.ok("kim", &["status"]).await.out.contains("nobody") {
        assert!(t.elapsed().as_secs() < 15, "no sample");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let r = cli.ok("kim", &["book", "gpu0", "--for", "1h"]).await;
    assert!(
        r.err
            .contains("warning: gpu0 is in use right now by nobody")
            && r.err.contains(&format!("pid {}", intruder.id())),
        "{}",
        r.err
    );
    // Later bookings do not warn: the process may be gone by then.
    let r = cli
        .ok("kim", &["book", "gpu0", "--from", "+3h", "--for", "1h"])
        .await;
    assert!(!r.err.contains("warning"), "{}", r.err);
    let _ = intruder.kill();
    let _ = intruder.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_changing_someone_elses_reservation_says_why() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(1)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.register("boss", "boss@lab.kr", "Boss").await;
    cli.promote("boss@lab.kr").await;
    let booked = cli
        .ok(
            "kim",
            &["book", "gpu0", "--from", "+2h", "--for", "1h", "--json"],
        )
        .await
        .json();
    let id = booked[0]["id"].as_str().expect("id")[..8].to_owned();
    let r = cli
        .run_as("boss", "Asia/Seoul", &["extend", &id, "--by", "30m"], None)
        .await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("needs a reason"), "{}", r.err);
    cli.ok(
        "boss",
        &[
            "extend",
            &id,
            "--by",
            "30m",
            "--reason",
            "the run needs the extra time",
        ],
    )
    .await;
    let r = cli
        .run_as("boss", "Asia/Seoul", &["cancel", &id], None)
        .await;
    assert_eq!(r.code, 1, "{}", r.err);
    cli.ok(
        "boss",
        &["cancel", &id, "--reason", "GPU maintenance at 3pm"],
    )
    .await;
    let mine = cli.ok("kim", &["ls", "--mine", "--all"]).await;
    assert!(mine.out.contains("GPU maintenance at 3pm"), "{}", mine.out);
    let json = cli
        .ok("kim", &["ls", "--mine", "--all", "--json"])
        .await
        .json();
    assert_eq!(json[0]["change_reason"], "GPU maintenance at 3pm");
    // A member cannot touch it with or without a reason.
    cli.register("lee", "lee@lab.kr", "이서연").await;
    let again = cli
        .ok(
            "kim",
            &["book", "gpu0", "--from", "+5h", "--for", "1h", "--json"],
        )
        .await
        .json();
    let id = again[0]["id"].as_str().expect("id")[..8].to_owned();
    let r = cli
        .run_as(
            "lee",
            "Asia/Seoul",
            &["cancel", &id, "--reason", "mine now"],
            None,
        )
        .await;
    assert_eq!(r.code, 4, "{}", r.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_policy_refuses_with_the_rule_and_its_numbers_and_admins_may_override() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(2)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.register("boss", "boss@lab.kr", "Boss").await;
    cli.promote("boss@lab.kr").await;
    let none = cli.ok("kim", &["policy"]).await;
    assert!(none.out.contains("no lab policy"), "{}", none.out);

    // A member cannot set rules.
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["admin", "policy", "set", "max-gpus", "9"],
            None,
        )
        .await;
    assert_eq!(r.code, 4, "{}", r.err);
    cli.ok("boss", &["admin", "group", "add", "vision"]).await;
    cli.ok(
        "boss",
        &["admin", "group", "member", "add", "vision", "kim@lab.kr"],
    )
    .await;
    cli.ok("boss", &["admin", "policy", "set", "max-gpus", "1"])
        .await;
    let set = cli
        .ok(
            "boss",
            &[
                "admin",
                "policy",
                "set",
                "gpu-hours-week",
                "4",
                "--group",
                "vision",
            ],
        )
        .await;
    assert!(
        set.out.contains("gpu-hours-week") && set.out.contains("group vision"),
        "{}",
        set.out
    );
    let r = cli
        .run_as(
            "boss",
            "Asia/Seoul",
            &["admin", "policy", "set", "max-gpus", "2h"],
            None,
        )
        .await;
    assert_eq!(r.code, 2, "a bad value is a usage error: {}", r.err);

    let mine = cli.ok("kim", &["policy"]).await;
    assert!(mine.out.contains("your groups: vision"), "{}", mine.out);
    let json = cli.ok("kim", &["policy", "--json"]).await.json();
    let rules: Vec<(&str, bool)> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|p| {
            (
                p["rule"].as_str().expect("rule"),
                p["applies_to_me"] == true,
            )
        })
        .collect();
    assert!(rules.contains(&("max-gpus", true)), "{json}");
    assert!(rules.contains(&("gpu-hours-week", true)), "{json}");
    let groups = cli.ok("kim", &["groups", "--json"]).await.json();
    assert_eq!(groups[0]["members"][0], "kim@lab.kr");

    let booked = cli
        .ok(
            "kim",
            &["book", "gpu0", "--from", "+1h", "--for", "2h", "--json"],
        )
        .await
        .json();
    let id = booked[0]["id"].as_str().expect("id")[..8].to_owned();
    // A second GPU at the same time: refused, exit 6, the numbers in KST.
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["book", "gpu1", "--from", "+2h", "--for", "1h"],
            None,
        )
        .await;
    assert_eq!(r.code, 6, "{}{}", r.out, r.err);
    assert!(
        r.err
            .contains("refused by lab policy: this makes 2 GPUs held at once")
            && r.err.contains("the lab's limit is 1; possible again from")
            && r.err.contains("(policy max-gpus)"),
        "{}",
        r.err
    );
    // The busiest stretch starts at +2h, written in Seoul time.
    let kst = chrono::FixedOffset::east_opt(9 * 3600).expect("offset");
    let start = |lag: i64| {
        (chrono::Utc::now() + chrono::TimeDelta::hours(2) - chrono::TimeDelta::minutes(lag))
            .with_timezone(&kst)
            .format("(%Y-%m-%d %H:%M to ")
            .to_string()
    };
    assert!(
        r.err.contains(&start(0)) || r.err.contains(&start(1)),
        "{}",
        r.err
    );
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["book", "gpu1", "--from", "+2h", "--for", "1h", "--json"],
            None,
        )
        .await;
    assert_eq!(r.code, 6);
    let refusal = r.json();
    assert_eq!(refusal["error"], "policy");
    assert_eq!(refusal["rule"], "max-gpus");
    assert_eq!(
        (refusal["limit"].as_i64(), refusal["would_be"].as_i64()),
        (Some(1), Some(2))
    );
    // When the first GPU's hour is over, the second fits.
    assert!(refusal["free_from"].is_string(), "{refusal}");
    // Extending past the group's 4 GPU-hours a week is refused too.
    let r = cli
        .run_as("kim", "Asia/Seoul", &["extend", &id, "--by", "3h"], None)
        .await;
    assert_eq!(r.code, 6, "{}", r.err);
    assert!(
        r.err
            .contains("this makes 5 of group vision's 4 GPU-hours in 7 days"),
        "{}",
        r.err
    );
    cli.ok("kim", &["extend", &id, "--by", "2h"]).await;

    // Admins: refused like anyone, unless they override with a reason.
    let r = cli
        .run_as(
            "boss",
            "Asia/Seoul",
            &["book", "gpu0", "gpu1", "--from", "+10h", "--for", "1h"],
            None,
        )
        .await;
    assert_eq!(r.code, 6, "{}", r.err);
    cli.ok(
        "boss",
        &[
            "book",
            "gpu0",
            "gpu1",
            "--from",
            "+10h",
            "--for",
            "1h",
            "--override",
            "deadline run",
        ],
    )
    .await;
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &[
                "book",
                "gpu1",
                "--from",
                "+20h",
                "--for",
                "1h",
                "--override",
                "please",
            ],
            None,
        )
        .await;
    assert_eq!(r.code, 4, "{}", r.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_blocks_from_the_cli() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(2)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.register("boss", "boss@lab.kr", "Boss").await;
    cli.promote("boss@lab.kr").await;
    cli.ok("kim", &["book", "gpu0", "--from", "+3h", "--for", "2h"])
        .await;
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &[
                "admin", "block", "gpu0", "--from", "+2h", "--for", "2h", "--reason", "x",
            ],
            None,
        )
        .await;
    assert_eq!(r.code, 4, "members cannot block: {}", r.err);
    let blocked = cli
        .ok(
            "boss",
            &[
                "admin",
                "block",
                "gpu0",
                "--from",
                "+2h",
                "--for",
                "2h",
                "--reason",
                "드라이버 업데이트",
            ],
        )
        .await;
    assert!(blocked.out.contains("드라이버 업데이트"), "{}", blocked.out);
    assert!(blocked.out.contains("kept, owners told"), "{}", blocked.out);
    assert!(
        blocked.out.contains("김민수"),
        "the reservation inside: {}",
        blocked.out
    );

    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["book", "gpu0", "--from", "+2h", "--for", "30m"],
            None,
        )
        .await;
    assert_eq!(r.code, 3, "{}", r.err);
    assert!(
        r.err.contains("blocked for maintenance") && r.err.contains("드라이버 업데이트"),
        "{}",
        r.err
    );
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["book", "gpu0", "--from", "+2h", "--for", "30m", "--json"],
            None,
        )
        .await;
    assert_eq!(r.code, 3);
    let json = r.json();
    assert_eq!(json["error"], "blocked");
    assert_eq!(json["blocks"][0]["resource"], "gpu0");

    let list = cli.ok("kim", &["blocks"]).await;
    assert!(
        list.out.contains("gpu0") && list.out.contains("드라이버 업데이트"),
        "{}",
        list.out
    );
    let ls = cli.ok("kim", &["ls"]).await;
    assert!(ls.out.contains("blocked for maintenance:"), "{}", ls.out);
    let status = cli.ok("kim", &["status"]).await;
    assert!(
        status.out.contains("maintenance (nobody can book these):"),
        "{}",
        status.out
    );
    let json = cli.ok("kim", &["blocks", "--json"]).await.json();
    let id = json[0]["block_id"].as_str().expect("id").replace('-', "")[..8].to_owned();
    let r = cli
        .run_as("boss", "Asia/Seoul", &["admin", "unblock", "abc"], None)
        .await;
    assert_eq!(r.code, 2, "{}", r.err);
    let lifted = cli.ok("boss", &["admin", "unblock", &id]).await;
    assert!(lifted.out.contains("lifted"), "{}", lifted.out);
    cli.ok("kim", &["book", "gpu0", "--from", "+2h", "--for", "30m"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_booking_keeps_its_wall_clock_time_across_dst() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(1)
            .config(|c| c.booking.horizon_days = 400)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    let ny = "America/New_York";
    // Sundays 10:00-14:00 New York time; DST starts on 2027-03-14.
    let args = [
        "book",
        "gpu0",
        "--from",
        "2027-03-07 10:00",
        "--for",
        "4h",
        "--every",
        "week",
        "--until",
        "2027-03-21",
        "--note",
        "주간 실험",
        "--json",
    ];
    let r = cli.run_as("kim", ny, &args, None).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let json = r.json();
    let starts: Vec<&str> = json["booked"]
        .as_array()
        .expect("booked")
        .iter()
        .map(|b| b["start"].as_str().expect("start"))
        .collect();
    assert_eq!(
        starts,
        [
            "2027-03-07T10:00:00-05:00",
            "2027-03-14T10:00:00-04:00",
            "2027-03-21T10:00:00-04:00"
        ]
    );
    let series = json["series_id"].as_str().expect("series").to_owned();
    assert_eq!(json["booked"][1]["series_id"], series.as_str());

    // Someone holds the 28th: all or nothing refuses, naming the occurrence.
    cli.register("lee", "lee@lab.kr", "이서연").await;
    let r = cli
        .run_as(
            "lee",
            ny,
            &["book", "gpu0", "--from", "2027-03-28 11:00", "--for", "1h"],
            None,
        )
        .await;
    assert_eq!(r.code, 0, "{}", r.err);
    let clash = [
        "book",
        "gpu0",
        "--from",
        "2027-03-28 11:00",
        "--for",
        "2h",
        "--every",
        "2 weeks",
        "--until",
        "2027-04-30",
    ];
    let r = cli.run_as("kim", ny, &clash, None).await;
    assert_eq!(r.code, 3, "{}{}", r.out, r.err);
    assert!(
        r.err.contains("nothing booked: 1 occurrence(s) cannot be"),
        "{}",
        r.err
    );
    assert!(
        r.err
            .contains("2027-03-28 11:00 to 2027-03-28 13:00: taken by 이서연"),
        "in New York time: {}",
        r.err
    );
    let mut skipping = clash.to_vec();
    skipping.push("--skip-conflicts");
    let r = cli.run_as("kim", ny, &skipping, None).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("skipped 1:"), "{}", r.out);

    // Edit the second Sunday and the following ones: an hour later, same
    // length, still 11:00 New York time after the change to DST; the first
    // Sunday stays. Moving them a week on (into the 28th) is all or nothing.
    let second = json["booked"][1]["id"].as_str().expect("id")[..8].to_owned();
    let edit = [
        "edit",
        &second,
        "--following",
        "--from",
        "2027-03-14 11:00",
        "--json",
    ];
    let r = cli.run_as("kim", ny, &edit, None).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let mut moved: Vec<(String, String)> = r
        .json()
        .as_array()
        .expect("changed")
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().expect("time").to_owned();
            (s("start"), s("end"))
        })
        .collect();
    moved.sort();
    assert_eq!(
        moved,
        [
            (
                "2027-03-14T11:00:00-04:00".to_owned(),
                "2027-03-14T15:00:00-04:00".to_owned()
            ),
            (
                "2027-03-21T11:00:00-04:00".to_owned(),
                "2027-03-21T15:00:00-04:00".to_owned()
            ),
        ]
    );
    let r = cli
        .run_as("kim", ny, &["ls", "--mine", "--json"], None)
        .await;
    assert!(
        r.out.contains("2027-03-07T10:00:00-05:00"),
        "the first stays: {}",
        r.out
    );
    let week_on = ["edit", &second, "--following", "--from", "2027-03-21 11:00"];
    let r = cli.run_as("kim", ny, &week_on, None).await;
    assert_eq!(r.code, 3, "the 28th is taken: {}{}", r.out, r.err);
    let r = cli
        .run_as("kim", ny, &["ls", "--mine", "--json"], None)
        .await;
    assert!(
        r.out.contains("2027-03-21T11:00:00-04:00") && !r.out.contains("2027-03-28T11:00:00-04:00"),
        "nothing moved: {}",
        r.out
    );
    let r = cli
        .run_as(
            "lee",
            ny,
            &["edit", &second, "--following", "--for", "1h"],
            None,
        )
        .await;
    assert_ne!(r.code, 0, "not lee's series: {}", r.err);

    // Cancel the second Sunday and the following ones of the first series.
    let r = cli
        .run_as(
            "kim",
            ny,
            &["cancel", &second, "--following", "--json"],
            None,
        )
        .await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert_eq!(r.json().as_array().map(Vec::len), Some(2));
    let r = cli
        .run_as("lee", ny, &["ls", "--mine", "--json"], None)
        .await;
    let lees = r.json()[0]["id"].as_str().expect("id")[..8].to_owned();
    let r = cli
        .run_as("lee", ny, &["cancel", &lees, "--following"], None)
        .await;
    assert_eq!(r.code, 2, "not part of a series: {}", r.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_asks_for_an_exception_and_an_admin_approves_it() {
    let cli = Cli {
        daemon: TestDaemon::builder()
            .with_gpus(2)
            .start()
            .await
            .expect("daemon"),
        home: tempfile::tempdir().expect("home"),
    };
    cli.register("kim", "kim@lab.kr", "김민수").await;
    cli.register("boss", "boss@lab.kr", "Boss").await;
    cli.promote("boss@lab.kr").await;
    cli.ok("boss", &["admin", "policy", "set", "max-length", "2h"])
        .await;
    let r = cli
        .run_as(
            "kim",
            "Asia/Seoul",
            &["book", "gpu0", "--from", "+3h", "--for", "5h"],
            None,
        )
        .await;
    assert_eq!(r.code, 6, "{}", r.err);
    let asked = cli
        .ok(
            "kim",
            &[
                "book",
                "gpu0",
                "--from",
                "+3h",
                "--for",
                "5h",
                "--request-approval",
                "논문 마감 paper deadline",
                "--decide-by",
                "+2h",
            ],
        )
        .await;
    assert!(asked.out.contains("asked for approval"), "{}", asked.out);
    assert!(asked.out.contains("pending"), "{}", asked.out);
    let json = cli.ok("kim", &["ls", "--mine", "--json"]).await.json();
    assert_eq!(json[0]["status"], "pending");
    assert_eq!(json[0]["pending_reason"], "논문 마감 paper deadline");
    let id = json[0]["id"].as_str().expect("id")[..8].to_owned();
    let r = cli
        .run_as("kim", "Asia/Seoul", &["admin", "approve", &id], None)
        .await;
    assert_eq!(r.code, 4, "{}", r.err);
    let pending = cli.ok("boss", &["admin", "pending"]).await;
    assert!(
        pending.out.contains("pending") && pending.out.contains("김민수"),
        "{}",
        pending.out
    );
    cli.ok("boss", &["admin", "approve", &id]).await;
    let json = cli.ok("kim", &["ls", "--mine", "--json"]).await.json();
    assert_eq!(json[0]["status"], "active");
    let inbox = cli.ok("kim", &["notifications", "--json"]).await.json();
    assert!(
        inbox
            .as_array()
            .expect("array")
            .iter()
            .any(|n| n["kind"] == "approval-decided"),
        "{inbox}"
    );
}
