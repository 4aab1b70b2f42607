//! The real `gpures` binary as lab members really are: throwaway Unix users
//! (`useradd`, run with `runuser`) against a real daemon with peer sign-in.
//! A new member registers with no password and books with no login; another
//! member cannot act as them with any file copied from them; a member with
//! no account is told the one command to run; passwords, sessions and
//! logout work end to end.

use std::path::Path;

use gpures_testkit::{TestDaemon, UnixUser};

const BIN: &str = env!("CARGO_BIN_EXE_gpures");

struct Run {
    code: i32,
    out: String,
    err: String,
}

async fn run(daemon: &TestDaemon, who: &UnixUser, args: &[&str], stdin: &str) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut child = who
        .command(&daemon.socket, Path::new(BIN), args)
        .spawn()
        .expect("runuser");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).await.expect("stdin");
    }
    let out = child.wait_with_output().await.expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ok(daemon: &TestDaemon, who: &UnixUser, args: &[&str], stdin: &str) -> Run {
    let r = run(daemon, who, args, stdin).await;
    assert_eq!(
        r.code, 0,
        "gpures {args:?} as {}: {}{}",
        who.name, r.out, r.err
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to create Unix users; .ci/run runs ignored tests as root"]
async fn a_unix_user_is_signed_in_by_the_socket() {
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .config(|c| c.auth.accounts_per_unix_user = 1)
        .start()
        .await
        .expect("daemon");
    let minsu = UnixUser::create("김민수").expect("useradd");
    let lee = UnixUser::create("Lee Jiwon").expect("useradd");

    // No account yet: any command says what to run, and changes nothing.
    let r = run(&daemon, &minsu, &["ls"], "").await;
    assert_eq!(r.code, 4, "{}{}", r.out, r.err);
    assert!(
        r.err.contains(&minsu.name) && r.err.contains("gpures register --email"),
        "{}",
        r.err
    );

    // Register: no password, the name from the Unix account.
    let r = ok(
        &daemon,
        &minsu,
        &["register", "--email", "minsu@lab.kr"],
        "",
    )
    .await;
    assert!(r.out.contains("김민수"), "{}", r.out);
    assert!(r.out.contains("no login needed"), "{}", r.out);
    // Book and see it, with no login and no token file.
    let r = ok(
        &daemon,
        &minsu,
        &["book", "gpu0", "--for", "2h", "--json"],
        "",
    )
    .await;
    let booking: serde_json::Value = serde_json::from_str(&r.out).expect("json");
    let id = booking[0]["id"]
        .as_str()
        .expect("reservation id")
        .to_owned();
    let who = ok(&daemon, &minsu, &["whoami"], "").await;
    assert!(who.out.contains("minsu@lab.kr"), "{}", who.out);
    assert!(
        std::fs::read_dir(minsu.config.path())
            .expect("config dir")
            .next()
            .is_none(),
        "nothing was written: peer sign-in needs no token file"
    );

    // Minsu sets a password and logs in (a session token for scripts).
    ok(
        &daemon,
        &minsu,
        &["passwd", "--password-stdin"],
        "minsu's long password\n",
    )
    .await;
    ok(
        &daemon,
        &minsu,
        &["login", "--password-stdin"],
        "minsu's long password\n",
    )
    .await;
    let sessions = ok(&daemon, &minsu, &["sessions"], "").await;
    assert!(sessions.out.contains('*'), "{}", sessions.out);

    // Lee copies every file of Minsu's config (as root could hand them
    // over) and tries to act as Minsu: nothing works, nothing changes.
    let lee_register = ok(
        &daemon,
        &lee,
        &["register", "--email", "lee@lab.kr", "--name", "이지원"],
        "",
    )
    .await;
    assert!(lee_register.out.contains("이지원"));
    copy_dir(minsu.config.path(), lee.config.path(), &lee);
    let who = ok(&daemon, &lee, &["whoami"], "").await;
    assert!(
        who.out.contains("lee@lab.kr") && !who.out.contains("minsu@lab.kr"),
        "a copied token is refused and Lee stays Lee: {}",
        who.out
    );
    let r = run(&daemon, &lee, &["cancel", &id], "").await;
    assert_ne!(r.code, 0, "Lee cancelled Minsu's booking: {}", r.out);
    let mine = ok(&daemon, &minsu, &["ls", "--mine", "--json"], "").await;
    assert!(mine.out.contains(&id), "Minsu's booking is intact");

    // Logout ends the session on the daemon; a copy kept aside is refused
    // (the CLI then falls back to peer sign-in, still as Minsu).
    let saved: Vec<_> = std::fs::read_dir(minsu.config.path().join("gpures"))
        .expect("session dir")
        .filter_map(Result::ok)
        .map(|e| (e.path(), std::fs::read(e.path()).expect("read")))
        .collect();
    ok(&daemon, &minsu, &["logout"], "").await;
    let r = run(&daemon, &minsu, &["logout"], "").await;
    assert_eq!(r.code, 2, "no session left to end: {}", r.err);
    let token = saved
        .iter()
        .find_map(|(_, bytes)| {
            serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v["token"].as_str().map(str::to_owned))
        })
        .expect("a saved token");
    let c = gpures_testkit::connect(&daemon.socket)
        .await
        .expect("connect");
    // Root presenting Minsu's token: refused (another Unix user, and ended).
    let err = c
        .whoami(tarpc::context::current(), token)
        .await
        .expect("rpc")
        .expect_err("a logged-out token");
    assert_eq!(err, gpures_proto::ApiError::Unauthenticated);

    daemon.stop().await.expect("stop");
}

/// Copies every file under `from` into `to`, owned by `owner`.
fn copy_dir(from: &Path, to: &Path, owner: &UnixUser) {
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).expect("prefix");
        let dest = to.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else {
            std::fs::copy(&entry, &dest).expect("copy");
        }
        std::os::unix::fs::chown(&dest, Some(owner.uid), Some(owner.gid)).expect("chown");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(Result::ok)
    {
        let path = entry.path();
        out.push(path.clone());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}
