//! Accounts and tokens over the real socket: the register/login round trip,
//! peer identity (a token used from another Unix user), forged and revoked
//! tokens, throttling, and the hello gate.

use std::time::Duration;

use chrono::Utc;

use gpures_proto::{ApiError, PROTOCOL_VERSION, RegisterRequest};
use gpures_testkit::{PASSWORD, TestDaemon, connect};
use tarpc::context;

fn register(email: &str, name: &str, password: &str) -> RegisterRequest {
    RegisterRequest {
        email: email.into(),
        display_name: name.into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn register_login_whoami_logout_everywhere_round_trip() {
    let daemon = TestDaemon::start().await.expect("daemon");
    let c = daemon.client().await.expect("client");
    let me = c
        .register(
            context::current(),
            register("Kim.Minsu@Lab.kr", "김민수", PASSWORD),
        )
        .await
        .expect("rpc")
        .expect("register");
    assert_eq!(
        me.unix_user, "root",
        "bound to the Unix user it registered from"
    );
    let again = c
        .register(
            context::current(),
            register("kim.minsu@lab.KR", "Someone", PASSWORD),
        )
        .await
        .expect("rpc")
        .expect_err("same email in another case");
    assert!(
        matches!(again, ApiError::InvalidArgument { ref field, .. } if field == "email"),
        "{again:?}"
    );

    let login = c
        .login(
            context::current(),
            "kim.minsu@lab.kr".into(),
            PASSWORD.into(),
        )
        .await
        .expect("rpc")
        .expect("login in any case");
    let who = c
        .whoami(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("whoami");
    assert_eq!(who.display_name, "김민수");
    let second = c
        .login(
            context::current(),
            "kim.minsu@lab.kr".into(),
            PASSWORD.into(),
        )
        .await
        .expect("rpc")
        .expect("second login");
    c.logout_everywhere(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("logout everywhere");
    for token in [login.token, second.token] {
        assert_eq!(
            c.whoami(context::current(), token)
                .await
                .expect("rpc")
                .expect_err("revoked"),
            ApiError::Unauthenticated
        );
    }
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn registration_checks_its_fields() {
    let daemon = TestDaemon::start().await.expect("daemon");
    let c = daemon.client().await.expect("client");
    let cases = [
        ("not-an-email", "Name", PASSWORD, "email"),
        ("a@b.kr", "", PASSWORD, "display_name"),
        ("a@b.kr", "\u{1b}[31m\u{1b}[0m", PASSWORD, "display_name"),
        ("a@b.kr", "Name", "short", "password"),
        ("a@b.kr", "Name", &"p".repeat(129), "password"),
    ];
    for (email, name, pw, field) in cases {
        let err = c
            .register(context::current(), register(email, name, pw))
            .await
            .expect("rpc")
            .expect_err(field);
        assert!(
            matches!(err, ApiError::InvalidArgument { field: ref f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
    // An escape sequence in a name is removed, the rest kept.
    let u = c
        .register(
            context::current(),
            register("evil@b.kr", "\u{1b}]0;pwn\u{7}Eve\u{1b}[2J", PASSWORD),
        )
        .await
        .expect("rpc")
        .expect("register");
    assert_eq!(u.display_name, "Eve");
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn wrong_passwords_are_throttled_and_unknown_emails_look_the_same() {
    let daemon = TestDaemon::start().await.expect("daemon");
    let (c, _) = daemon.user("target@lab.kr", "Target").await.expect("user");
    let unknown = c
        .login(context::current(), "nobody@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect_err("unknown email");
    let wrong = c
        .login(
            context::current(),
            "target@lab.kr".into(),
            "wrong password!!".into(),
        )
        .await
        .expect("rpc")
        .expect_err("wrong password");
    assert_eq!(
        unknown, wrong,
        "the same answer whether the email exists or not"
    );
    let mut throttled = false;
    for _ in 0..19 {
        match c
            .login(
                context::current(),
                "target@lab.kr".into(),
                "wrong password!!".into(),
            )
            .await
            .expect("rpc")
        {
            Err(ApiError::RateLimited { .. }) => throttled = true,
            Err(ApiError::Unauthenticated) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(throttled, "20 wrong passwords are throttled");
    let err = c
        .login(context::current(), "target@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect_err("the right password during the lockout");
    assert!(
        matches!(err, ApiError::RateLimited { retry_after_secs } if retry_after_secs >= 1),
        "{err:?}"
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn calls_before_hello_or_with_another_protocol_are_refused() {
    let daemon = TestDaemon::start().await.expect("daemon");
    let raw = gpures_proto::framing::connect(&daemon.socket)
        .await
        .expect("connect");
    let err = raw
        .whoami(context::current(), "token".into())
        .await
        .expect("rpc")
        .expect_err("no hello yet");
    assert!(matches!(err, ApiError::ProtocolMismatch { .. }), "{err:?}");
    let err = raw
        .hello(context::current(), PROTOCOL_VERSION + 1)
        .await
        .expect("rpc")
        .expect_err("future protocol");
    assert_eq!(
        err,
        ApiError::ProtocolMismatch {
            daemon: PROTOCOL_VERSION,
            client: PROTOCOL_VERSION + 1
        }
    );
    let hello = raw
        .hello(context::current(), PROTOCOL_VERSION)
        .await
        .expect("rpc")
        .expect("hello");
    assert_eq!(hello.peer_unix_user, "root");
    assert_eq!(hello.host, "test-host");
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused() {
    forged_tokens_refused(true).await;
}

#[tokio::test]
async fn forged_tokens_are_refused_without_peer_sign_in_too() {
    forged_tokens_refused(false).await;
}

/// Every token attack, with peer sign-in on or off. Root holds two accounts
/// here, so a refused token never falls back to the connection's account.
async fn forged_tokens_refused(peer_login: bool) {
    let daemon = TestDaemon::start_with(|c| c.auth.peer_login = peer_login)
        .await
        .expect("daemon");
    let (c, login) = daemon.user("alice@lab.kr", "Alice").await.expect("user");
    use gpures_daemon::service::auth::Auth;
    let exp = Utc::now() + chrono::TimeDelta::hours(1);
    let (kid, secret) = daemon.signing_key().await.expect("key");
    let real = Auth::with_secret(kid, &secret);
    let sid = real.verify(&login.token).expect("the login's token").sid;
    let other = Auth::with_secret(kid, &[0u8; 32]);
    let other_key = other
        .issue(login.user.id, "root", 1, sid, exp)
        .expect("issue");
    let unknown_kid = Auth::with_secret(kid + 100, &secret)
        .issue(login.user.id, "root", 1, sid, exp)
        .expect("issue");
    let old_version = real
        .issue(login.user.id, "root", 0, sid, exp)
        .expect("issue");
    let other_user = real
        .issue(login.user.id, "nobody", 1, sid, exp)
        .expect("issue");
    let unknown_user = real.issue(424_242, "root", 1, sid, exp).expect("issue");
    let unknown_session = real
        .issue(login.user.id, "root", 1, uuid::Uuid::new_v4(), exp)
        .expect("issue");
    let (_, bob) = daemon.user("bob@lab.kr", "Bob").await.expect("bob");
    let bobs_sid = real.verify(&bob.token).expect("bob's token").sid;
    let someone_elses_session = real
        .issue(login.user.id, "root", 1, bobs_sid, exp)
        .expect("issue");
    let genuine = real
        .issue(login.user.id, "root", 1, sid, exp)
        .expect("issue");
    assert!(
        c.whoami(context::current(), genuine)
            .await
            .expect("rpc")
            .is_ok()
    );
    for (what, token) in [
        ("another key", other_key),
        ("a key id nobody made", unknown_kid),
        (
            "no token, and two accounts on this Unix user",
            String::new(),
        ),
        ("an unknown session", unknown_session),
        ("someone else's session", someone_elses_session),
        ("an old token version", old_version),
        ("another unix user in the claims", other_user),
        ("an unknown user", unknown_user),
        ("garbage", "a.b.c".to_owned()),
        (
            "alg none",
            format!(
                "{}.{}.",
                "eyJhbGciOiJub25lIn0",
                login.token.split('.').nth(1).unwrap_or("")
            ),
        ),
    ] {
        let err = c
            .whoami(context::current(), token)
            .await
            .expect("rpc")
            .expect_err(what);
        assert_eq!(err, ApiError::Unauthenticated, "{what}");
    }
    daemon.stop().await.expect("stop");
}

/// Runs as a child process under uid 65534 (see the test below): presents the
/// token from `GPURES_HELPER_TOKEN` on `GPURES_HELPER_SOCKET` and prints the
/// outcome. Ignored so that it runs only when asked for by name.
#[tokio::test]
#[ignore = "helper: runs only as the child of token_from_another_unix_user_is_refused"]
async fn helper_present_token() {
    let (Ok(socket), Ok(token)) = (
        std::env::var("GPURES_HELPER_SOCKET"),
        std::env::var("GPURES_HELPER_TOKEN"),
    ) else {
        return;
    };
    let c = connect(std::path::Path::new(&socket))
        .await
        .expect("connect");
    if let Ok(email) = std::env::var("GPURES_HELPER_EMAIL") {
        match c
            .login(context::current(), email, PASSWORD.into())
            .await
            .expect("rpc")
        {
            Ok(l) => println!("HELPER-LOGIN accepted {}", l.user.email),
            Err(e) => println!("HELPER-LOGIN refused {e:?}"),
        }
    }
    match c.whoami(context::current(), token).await.expect("rpc") {
        Ok(u) => println!("HELPER-RESULT accepted {}", u.email),
        Err(e) => println!("HELPER-RESULT refused {e:?}"),
    }
}

/// Logs in to `email` with the right password and asserts the answer is
/// `RateLimited`.
async fn right_password_is_rate_limited(c: &gpures_proto::GpuresClient, email: &str) {
    let e = c
        .login(context::current(), email.into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect_err("refused while throttled");
    assert!(matches!(e, ApiError::RateLimited { .. }), "{e:?}");
}

/// The tests that start a client as uid 65534 need root (CI runs as root).
fn assert_root() {
    assert_eq!(
        gpures_daemon::host::unix::euid(),
        0,
        "run as root: this test starts a client as uid 65534"
    );
}

/// Runs [`helper_present_token`] as `uid` against `daemon` with `token`
/// (and a login to `email` with the test password first) and returns what
/// it printed. Blocking is fine on a thread of its own; the daemon runs on
/// the test's runtime.
async fn helper_as(
    uid: u32,
    daemon: &TestDaemon,
    token: &str,
    email: Option<&'static str>,
) -> Result<String, tokio::task::JoinError> {
    let exe = std::env::current_exe().expect("exe");
    let (socket, token) = (daemon.socket.clone(), token.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "--exact",
            "helper_present_token",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GPURES_HELPER_SOCKET", &socket)
        .env("GPURES_HELPER_TOKEN", &token)
        .uid(uid)
        .gid(if uid == 0 { 0 } else { 65534 });
        if let Some(email) = email {
            cmd.env("GPURES_HELPER_EMAIL", email);
        }
        let out = cmd.output().expect("run helper");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to start a client as uid 65534; CI runs as root with --include-ignored"]
async fn token_from_another_unix_user_is_refused() {
    assert_root();
    let daemon = TestDaemon::start().await.expect("daemon");
    let (_, login) = daemon
        .user("root-user@lab.kr", "Root User")
        .await
        .expect("user");
    let run_helper = |uid, email| helper_as(uid, &daemon, &login.token, email);
    // Four wrong passwords from root first: the right password from another
    // Unix user is then the fifth failure, not a reset.
    let root = daemon.client().await.expect("client");
    for _ in 0..4 {
        let e = root
            .login(
                context::current(),
                "root-user@lab.kr".into(),
                "wrong password!".into(),
            )
            .await
            .expect("rpc")
            .expect_err("wrong");
        assert_eq!(e, ApiError::Unauthenticated);
    }
    let as_nobody = run_helper(65534, Some("root-user@lab.kr"))
        .await
        .expect("helper");
    assert!(
        as_nobody.contains("HELPER-RESULT refused Unauthenticated"),
        "{as_nobody}"
    );
    // Logging in from another Unix user is refused with the same answer as a
    // wrong password: it does not tell that the password was right.
    assert!(
        as_nobody.contains("HELPER-LOGIN refused Unauthenticated"),
        "{as_nobody}"
    );
    // Five failures lock the email, the other user's one included.
    right_password_is_rate_limited(&root, "root-user@lab.kr").await;
    let as_root = run_helper(0, None).await.expect("helper");
    assert!(
        as_root.contains("HELPER-RESULT accepted root-user@lab.kr"),
        "{as_root}"
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to start a client as uid 65534; CI runs as root with --include-ignored"]
async fn a_unix_user_spraying_emails_runs_out_of_failed_checks_and_no_one_else_does() {
    assert_root();
    let daemon = TestDaemon::start_with(|c| c.limits.failed_logins_per_minute = 10)
        .await
        .expect("daemon");
    let (_, login) = daemon
        .user("root-user@lab.kr", "Root User")
        .await
        .expect("user");
    let root = daemon.client().await.expect("client");
    // Every guess names another email, so no email's own throttle starts.
    let (mut checked, mut limited) = (0, 0);
    for i in 0..25 {
        match root
            .login(
                context::current(),
                format!("spray{i}@lab.kr"),
                "wrong password!".into(),
            )
            .await
            .expect("rpc")
        {
            Err(ApiError::Unauthenticated) => checked += 1,
            Err(ApiError::RateLimited { .. }) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // One check comes back every 6 s: a slow machine may get an eleventh.
    assert!(
        (10..=11).contains(&checked) && checked + limited == 25,
        "{checked} checked (hashed), {limited} refused before hashing"
    );
    // The budget is the Unix user's: their own right password waits too,
    // while the session they hold goes on working.
    right_password_is_rate_limited(&root, "root-user@lab.kr").await;
    root.whoami(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("the session still works");
    // Another Unix user's password is still checked: a wrong one is answered
    // as wrong, not refused unchecked.
    let as_nobody = helper_as(65534, &daemon, &login.token, Some("nobody@lab.kr"))
        .await
        .expect("helper");
    assert!(
        as_nobody.contains("HELPER-LOGIN refused Unauthenticated"),
        "{as_nobody}"
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_guesses_hashes_only_the_free_allowance() {
    let daemon = TestDaemon::start_with(|c| c.limits.hash_queue_per_user = 1000)
        .await
        .expect("daemon");
    daemon.user("target@lab.kr", "Target").await.expect("user");
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(daemon.client().await.expect("client"));
    }
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let c = clients[i % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            c.login(
                context::current(),
                "target@lab.kr".into(),
                format!("wrong guess {i}"),
            )
            .await
        }));
    }
    let (mut checked, mut limited) = (0, 0);
    for t in tasks {
        match t.await.expect("join").expect("rpc") {
            Err(ApiError::Unauthenticated) => checked += 1,
            Err(ApiError::RateLimited { .. }) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        checked <= 5,
        "only the free allowance is checked (hashed): {checked} checked, {limited} refused"
    );
    assert_eq!(checked + limited, 200);
    // The right password during the lockout is refused too.
    right_password_is_rate_limited(&clients[0], "target@lab.kr").await;
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to start a client as uid 65534; CI runs as root with --include-ignored"]
async fn one_unix_user_at_its_connection_limit_does_not_lock_out_another() {
    assert_root();
    let daemon = TestDaemon::start_with(|c| c.limits.max_connections_per_user = 8)
        .await
        .expect("daemon");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // root opens connections until refused.
    let mut held = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), daemon.client()).await {
            Ok(Ok(c)) => held.push(c),
            _ => break,
        }
        assert!(held.len() <= 8, "the limit holds");
    }
    assert_eq!(held.len(), 8);
    // nobody is still served.
    let text = helper_as(65534, &daemon, "not-a-token", None)
        .await
        .expect("join");
    assert!(
        text.contains("HELPER-RESULT refused Unauthenticated"),
        "served (answered) as nobody: {text}"
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unix_user_holds_one_account_and_a_disabled_one_cannot_register_again() {
    let daemon = TestDaemon::start_with(|c| c.auth.accounts_per_unix_user = 1)
        .await
        .expect("daemon");
    let (client, login) = daemon.user("first@lab.kr", "First").await.expect("user");
    // The same Unix user cannot squat a second email.
    let second = client
        .register(
            context::current(),
            RegisterRequest {
                email: "second@lab.kr".into(),
                display_name: "Look-alike".into(),
                password: PASSWORD.into(),
            },
        )
        .await
        .expect("rpc")
        .expect_err("one account per Unix user");
    assert!(
        matches!(&second, ApiError::InvalidArgument { field, reason }
            if field == "unix_user" && reason.contains("first@lab.kr")),
        "{second:?}"
    );
    // A booking ahead and one running, then the host admin disables the
    // account and cancels what is to come, with a reason.
    let gpus = daemon
        .host_admin()
        .expect("host admin")
        .add_gpus("test-host", 2)
        .await
        .expect("gpus");
    let now = chrono::DurationRound::duration_trunc(Utc::now(), chrono::TimeDelta::minutes(1))
        .expect("trunc");
    for (gpu, start) in [(gpus[0], now), (gpus[1], now + chrono::TimeDelta::hours(5))] {
        client
            .create_booking(
                context::current(),
                login.token.clone(),
                gpures_proto::BookingRequest {
                    request_id: uuid::Uuid::new_v4(),
                    resources: vec![gpu],
                    period: gpures_proto::Period {
                        start,
                        end: start + chrono::TimeDelta::hours(2),
                    },
                    note: String::new(),
                },
            )
            .await
            .expect("rpc")
            .expect("book");
    }
    let admin = daemon.host_admin().expect("host admin");
    admin
        .user(gpures_daemon::admin::UserAction::Disable {
            email: "first@lab.kr".into(),
            cancel_future: Some("left the lab".into()),
        })
        .await
        .expect("disable");
    let theirs = daemon
        .reservations(&gpures_proto::ReservationFilter {
            include_cancelled: true,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(theirs.len(), 2);
    for r in &theirs {
        assert_eq!(r.change_reason.as_deref(), Some("left the lab"), "{r:?}");
        let over =
            r.status == gpures_proto::ReservationStatus::Cancelled || r.period.end <= Utc::now();
        assert!(over, "cancelled or ended: {r:?}");
    }
    // Locked out: the old token, a new registration from the same Unix user.
    let e = client
        .whoami(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect_err("revoked");
    assert_eq!(e, ApiError::Unauthenticated);
    let again = client
        .register(
            context::current(),
            RegisterRequest {
                email: "fresh@lab.kr".into(),
                display_name: "Fresh".into(),
                password: PASSWORD.into(),
            },
        )
        .await
        .expect("rpc")
        .expect_err("disabled");
    assert!(format!("{again:?}").contains("disabled"), "{again:?}");
    // Enabled again, the person logs in.
    admin
        .user(gpures_daemon::admin::UserAction::Enable {
            email: "first@lab.kr".into(),
        })
        .await
        .expect("enable");
    client
        .login(context::current(), "first@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login after enable");
    daemon.stop().await.expect("stop");
}
