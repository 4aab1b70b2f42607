//! Identity over the real socket: peer sign-in (the connection's Unix user is
//! the login), sessions that slide, expire and end on logout, passwords
//! changed, reset by the host admin and redeemed with a one-time code,
//! account changes, and one login for every daemon on a database, across a
//! key rotation. The members of several Unix users are in `gpures-tui`'s
//! `identity` test, which runs the real binary as throwaway Unix users.

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_daemon::admin::UserAction;
use gpures_daemon::service::auth::Auth;
use gpures_daemon::service::{Actor, PasswordReset};
use gpures_proto::{AccountChange, ApiError, RegisterRequest};
use gpures_testkit::{PASSWORD, TestDaemon, fresh_database_url};
use tarpc::context;

fn register(email: &str, name: &str, password: &str) -> RegisterRequest {
    RegisterRequest {
        email: email.into(),
        display_name: name.into(),
        password: password.into(),
    }
}

/// Runs SQL on the daemon's database and tells every daemon that account
/// `id` changed (so no cache hides the edit).
async fn poke(daemon: &TestDaemon, sql: &'static str, id: i64) {
    sqlx::query(sql)
        .execute(daemon.store.pool())
        .await
        .expect("sql");
    sqlx::query("SELECT pg_notify('gpures_users', $1)")
        .bind(id.to_string())
        .execute(daemon.store.pool())
        .await
        .expect("notify");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

#[tokio::test]
async fn the_unix_user_is_the_login() {
    let daemon = TestDaemon::start().await.expect("daemon");
    let c = daemon.client().await.expect("client");
    let hello = c
        .hello(context::current(), gpures_proto::PROTOCOL_VERSION)
        .await
        .expect("rpc")
        .expect("hello");
    assert!(hello.peer_login, "peer sign-in is on by default");
    // No account yet: the answer says so, with the command to run.
    let err = c
        .whoami(context::current(), String::new())
        .await
        .expect("rpc")
        .expect_err("no account");
    assert_eq!(
        err,
        ApiError::NoAccount {
            unix_user: "root".into()
        }
    );
    assert!(err.to_string().contains("gpures register"), "{err}");
    // Register with no password: signed in by the connection from then on.
    let me = c
        .register(context::current(), register("kim@lab.kr", "김민수", ""))
        .await
        .expect("rpc")
        .expect("register without a password");
    assert!(!me.has_password);
    let who = c
        .whoami(context::current(), String::new())
        .await
        .expect("rpc")
        .expect("peer sign-in");
    assert_eq!(who.email, "kim@lab.kr");
    // There is no password to log in with, whatever is typed.
    for pw in ["", "anything at all long"] {
        assert_eq!(
            c.login(context::current(), String::new(), pw.into())
                .await
                .expect("rpc")
                .expect_err("no password"),
            ApiError::Unauthenticated
        );
    }
    // A second account of the Unix user needs a password, and then the
    // connection alone cannot tell who is asking.
    let err = c
        .register(context::current(), register("lab@lab.kr", "Lab", ""))
        .await
        .expect("rpc")
        .expect_err("second account without a password");
    assert!(
        matches!(err, ApiError::InvalidArgument { ref field, .. } if field == "password"),
        "{err:?}"
    );
    c.register(context::current(), register("lab@lab.kr", "Lab", PASSWORD))
        .await
        .expect("rpc")
        .expect("second account with a password");
    assert_eq!(
        c.whoami(context::current(), String::new())
            .await
            .expect("rpc")
            .expect_err("two accounts"),
        ApiError::Unauthenticated
    );
    // Login without an email refuses to guess; with one it works.
    let err = c
        .login(context::current(), String::new(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect_err("which account?");
    assert!(matches!(err, ApiError::InvalidArgument { .. }), "{err:?}");
    let login = c
        .login(context::current(), "lab@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login");
    assert_eq!(
        c.whoami(context::current(), login.token)
            .await
            .expect("rpc")
            .expect("token")
            .email,
        "lab@lab.kr"
    );
    daemon.stop().await.expect("stop");

    // peer_login = false: today's behaviour, passwords decide.
    let daemon = TestDaemon::start_with(|c| c.auth.peer_login = false)
        .await
        .expect("daemon");
    let c = daemon.client().await.expect("client");
    let err = c
        .register(context::current(), register("kim@lab.kr", "Kim", ""))
        .await
        .expect("rpc")
        .expect_err("a password is required");
    assert!(
        matches!(err, ApiError::InvalidArgument { ref field, .. } if field == "password"),
        "{err:?}"
    );
    c.register(context::current(), register("kim@lab.kr", "Kim", PASSWORD))
        .await
        .expect("rpc")
        .expect("register");
    assert_eq!(
        c.whoami(context::current(), String::new())
            .await
            .expect("rpc")
            .expect_err("no peer sign-in"),
        ApiError::Unauthenticated
    );
    let login = c
        .login(context::current(), String::new(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login with the account of this Unix user");
    assert_eq!(login.user.email, "kim@lab.kr");
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn sessions_slide_expire_and_end_on_logout() {
    let daemon = TestDaemon::start().await.expect("daemon");
    let (c, login) = daemon.user("kim@lab.kr", "Kim").await.expect("user");
    let id = login.user.id;
    let token = login.token.clone();
    let list = c
        .sessions(context::current(), token.clone())
        .await
        .expect("rpc")
        .expect("sessions");
    assert_eq!(list.len(), 1);
    assert!(list[0].current);
    assert_eq!(list[0].host, "test-host");
    let idle = TimeDelta::days(30);
    assert!(
        (list[0].expires_at - (Utc::now() + idle))
            .num_minutes()
            .abs()
            < 2
    );

    // Used after half its idle time: renewed, the end moves to now + 30 days.
    poke(
        &daemon,
        "UPDATE sessions SET last_used_at = now() - interval '16 days', \
         expires_at = now() + interval '14 days'",
        id,
    )
    .await;
    c.whoami(context::current(), token.clone())
        .await
        .expect("rpc")
        .expect("still valid");
    let renewed = c
        .sessions(context::current(), token.clone())
        .await
        .expect("rpc")
        .expect("sessions");
    assert!(
        renewed[0].expires_at > Utc::now() + TimeDelta::days(29),
        "renewed on use: {:?}",
        renewed[0].expires_at
    );
    // Unused past its end: refused.
    poke(
        &daemon,
        "UPDATE sessions SET expires_at = now() - interval '1 second'",
        id,
    )
    .await;
    assert_eq!(
        c.whoami(context::current(), token.clone())
            .await
            .expect("rpc")
            .expect_err("idle session"),
        ApiError::Unauthenticated
    );

    // Logout ends the session on the daemon: a copy of the token is refused.
    let first = c
        .login(context::current(), "kim@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login");
    let second = c
        .login(context::current(), "kim@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login");
    let copy = first.token.clone();
    c.logout(context::current(), first.token, None)
        .await
        .expect("rpc")
        .expect("logout");
    assert_eq!(
        c.whoami(context::current(), copy)
            .await
            .expect("rpc")
            .expect_err("a copy of a logged-out token"),
        ApiError::Unauthenticated
    );
    c.whoami(context::current(), second.token.clone())
        .await
        .expect("rpc")
        .expect("the other session lives");
    // Someone else's session cannot be ended by id.
    let (bob, bob_login) = daemon.user("bob@lab.kr", "Bob").await.expect("bob");
    let bobs = bob
        .sessions(context::current(), bob_login.token.clone())
        .await
        .expect("rpc")
        .expect("sessions");
    let err = c
        .logout(context::current(), second.token.clone(), Some(bobs[0].id))
        .await
        .expect("rpc")
        .expect_err("not yours");
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    bob.whoami(context::current(), bob_login.token)
        .await
        .expect("rpc")
        .expect("Bob's session is untouched");
    // logout --everywhere ends the rest.
    c.logout_everywhere(context::current(), second.token.clone())
        .await
        .expect("rpc")
        .expect("everywhere");
    assert_eq!(
        c.whoami(context::current(), second.token)
            .await
            .expect("rpc")
            .expect_err("ended everywhere"),
        ApiError::Unauthenticated
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn passwords_change_reset_and_redeem_and_accounts_change() {
    let daemon = TestDaemon::start().await.expect("daemon");
    let (c, login) = daemon.user("kim@lab.kr", "Kim").await.expect("user");
    let other = c
        .login(context::current(), "kim@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("a second session");
    let token = login.token.clone();
    let new_pw = "a brand new passphrase";
    for (old, new, field) in [
        ("wrong old password!!", new_pw, "old_password"),
        (PASSWORD, "short", "password"),
    ] {
        let err = c
            .change_password(context::current(), token.clone(), old.into(), new.into())
            .await
            .expect("rpc")
            .expect_err("refused");
        assert!(
            matches!(err, ApiError::InvalidArgument { field: ref f, .. } if f == field),
            "{err:?}"
        );
    }
    // Nothing changed: the old password still logs in.
    c.login(context::current(), "kim@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("old password unchanged");
    c.change_password(
        context::current(),
        token.clone(),
        PASSWORD.into(),
        new_pw.into(),
    )
    .await
    .expect("rpc")
    .expect("changed");
    c.whoami(context::current(), token.clone())
        .await
        .expect("rpc")
        .expect("this session lives on");
    assert_eq!(
        c.whoami(context::current(), other.token)
            .await
            .expect("rpc")
            .expect_err("the other session ended"),
        ApiError::Unauthenticated
    );
    c.login(context::current(), "kim@lab.kr".into(), new_pw.into())
        .await
        .expect("rpc")
        .expect("the new password");

    // The host admin sets a password: every session ends.
    let admin = daemon.host_admin().expect("host admin");
    let svc = gpures_daemon::admin::host_service(
        daemon.store.clone(),
        &gpures_daemon::config::Config::default(),
    );
    svc.reset_password(
        &Actor::host_admin(),
        "kim@lab.kr",
        PasswordReset::To("set by the host admin".into()),
    )
    .await
    .expect("reset");
    // The host admin's change reaches the daemon as a NOTIFY, which drops
    // the cached session: a moment after the commit, not with it.
    let mut ended = None;
    for _ in 0..50 {
        match c
            .whoami(context::current(), token.clone())
            .await
            .expect("rpc")
        {
            Err(e) => {
                ended = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        ended,
        Some(ApiError::Unauthenticated),
        "sessions ended by the reset within 5 s"
    );
    c.login(
        context::current(),
        "kim@lab.kr".into(),
        "set by the host admin".into(),
    )
    .await
    .expect("rpc")
    .expect("the admin's password");
    // A member cannot reset anyone's password.
    let as_member = svc
        .reset_password(
            &Actor::signed_in(login.user.clone()),
            "kim@lab.kr",
            PasswordReset::Code,
        )
        .await;
    assert!(as_member.is_err());

    // A one-time code: wrong codes are refused and change nothing; the
    // right one works once.
    let printed = admin
        .user(UserAction::ResetPassword {
            email: "kim@lab.kr".into(),
            code: true,
        })
        .await
        .expect("code");
    let code = printed
        .split_whitespace()
        .find(|w| w.len() == 14 && w.matches('-').count() == 2)
        .unwrap_or_else(|| panic!("no code in {printed:?}"))
        .to_owned();
    let final_pw = "redeemed with a code";
    assert_eq!(
        c.redeem_reset_code(context::current(), "AAAA-BBBB-CCCC".into(), final_pw.into())
            .await
            .expect("rpc")
            .expect_err("wrong code"),
        ApiError::Unauthenticated
    );
    c.redeem_reset_code(context::current(), code.to_lowercase(), final_pw.into())
        .await
        .expect("rpc")
        .expect("right code, typed in lower case");
    assert_eq!(
        c.redeem_reset_code(context::current(), code, "and again, once more".into())
            .await
            .expect("rpc")
            .expect_err("a code works once"),
        ApiError::Unauthenticated
    );
    let login = c
        .login(context::current(), "kim@lab.kr".into(), final_pw.into())
        .await
        .expect("rpc")
        .expect("the redeemed password");

    // Name and email changes; bad input changes nothing.
    daemon.user("lee@lab.kr", "Lee").await.expect("lee");
    for (change, field) in [
        (
            AccountChange {
                email: Some("lee@lab.kr".into()),
                ..AccountChange::default()
            },
            "email",
        ),
        (
            AccountChange {
                email: Some("not an email".into()),
                ..AccountChange::default()
            },
            "email",
        ),
        (
            AccountChange {
                display_name: Some("\u{1b}[2J".into()),
                ..AccountChange::default()
            },
            "display_name",
        ),
        (AccountChange::default(), "account"),
    ] {
        let err = c
            .update_account(context::current(), login.token.clone(), change)
            .await
            .expect("rpc")
            .expect_err("refused");
        assert!(
            matches!(err, ApiError::InvalidArgument { field: ref f, .. } if f == field),
            "{err:?}"
        );
    }
    let me = c
        .whoami(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("whoami");
    assert_eq!(
        (me.email.as_str(), me.display_name.as_str()),
        ("kim@lab.kr", "Kim")
    );
    let me = c
        .update_account(
            context::current(),
            login.token.clone(),
            AccountChange {
                display_name: Some("김민수".into()),
                email: Some("minsu.kim@lab.kr".into()),
            },
        )
        .await
        .expect("rpc")
        .expect("changed");
    assert_eq!(
        (me.email.as_str(), me.display_name.as_str()),
        ("minsu.kim@lab.kr", "김민수")
    );
    c.login(
        context::current(),
        "minsu.kim@lab.kr".into(),
        final_pw.into(),
    )
    .await
    .expect("rpc")
    .expect("logs in with the new email");
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_for_every_host_across_a_key_rotation() {
    let url = fresh_database_url().await.expect("database");
    let a = TestDaemon::start_on(url.clone(), "gpu01", |_| {})
        .await
        .expect("daemon A");
    let b = TestDaemon::start_on(url, "gpu02", |_| {})
        .await
        .expect("daemon B");
    let (on_a, login) = a.user("kim@lab.kr", "Kim").await.expect("user");
    let on_b = b.client().await.expect("client");
    let kid = |token: &str| -> String {
        jsonwebtoken::decode_header(token)
            .expect("header")
            .kid
            .expect("kid")
    };
    let old_kid = kid(&login.token);
    on_b.whoami(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("a session made on A works on B");
    // Book on B with the session made on A.
    let gpu = b
        .host_admin()
        .expect("host admin")
        .add_gpus("gpu02", 1)
        .await
        .expect("gpu")[0];
    let start = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::hours(2);
    on_b.create_booking(
        context::current(),
        login.token.clone(),
        gpures_proto::BookingRequest {
            request_id: uuid::Uuid::new_v4(),
            resources: vec![gpu],
            period: gpures_proto::Period {
                start,
                end: start + TimeDelta::hours(1),
            },
            note: String::new(),
        },
    )
    .await
    .expect("rpc")
    .expect("booked on B with A's session");
    let sessions = on_b
        .sessions(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("sessions");
    assert_eq!(sessions[0].host, "gpu01", "the session says where it began");

    let svc = gpures_daemon::admin::host_service(
        a.store.clone(),
        &gpures_daemon::config::Config::default(),
    );
    let new_id = svc.rotate_key(&Actor::host_admin()).await.expect("rotate");
    assert_ne!(new_id.to_string(), old_kid);
    // Old sessions keep working on both hosts.
    for c in [&on_a, &on_b] {
        c.whoami(context::current(), login.token.clone())
            .await
            .expect("rpc")
            .expect("an old token after the rotation");
    }
    // New logins on either host use the new key, and work on the other.
    let on_b_login = on_b
        .login(context::current(), "kim@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login on B");
    assert_eq!(kid(&on_b_login.token), new_id.to_string());
    on_a.whoami(context::current(), on_b_login.token)
        .await
        .expect("rpc")
        .expect("B's new token on A (A reads the new key)");
    let on_a_login = on_a
        .login(context::current(), "kim@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login on A");
    assert_eq!(kid(&on_a_login.token), new_id.to_string());
    // A token with a key id nobody made is refused without harm.
    let forged = Auth::with_secret(new_id + 7, &[1u8; 32])
        .issue(
            login.user.id,
            "root",
            1,
            uuid::Uuid::new_v4(),
            Utc::now() + TimeDelta::hours(1),
        )
        .expect("issue");
    assert_eq!(
        on_a.whoami(context::current(), forged)
            .await
            .expect("rpc")
            .expect_err("unknown key"),
        ApiError::Unauthenticated
    );
    b.stop().await.expect("stop B");
    a.stop().await.expect("stop A");
}
