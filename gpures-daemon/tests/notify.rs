//! Notifications end to end: a queue grant and an admin's change reach the
//! member's inbox, their Slack-style webhook (retried after a 500), the lab
//! webhook and an SMTP sink, each exactly once, also across a SIGKILL of
//! the daemon; a reminder before a start; bad settings are refused and
//! change nothing.

use std::path::Path;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_proto::{
    ApiError, ChangeKind, ChangeTarget, GpuresClient, NotificationKind, NotifyChange, Period,
    QueueRequest, RegisterRequest,
};
use gpures_testkit::sinks::{SmtpSink, WebhookSink};
use gpures_testkit::{PASSWORD, TestDaemon, connect, fresh_database_url};
use tarpc::context;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_gpures-daemon");

fn hour_from_now() -> Period {
    let start = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc");
    Period {
        start,
        end: start + TimeDelta::hours(1),
    }
}

/// The kinds `hook` accepted at `path`, in order.
fn kinds_at(hook: &WebhookSink, path: &str) -> Vec<String> {
    hook.accepted_at(path)
        .iter()
        .map(|v| v["gpures"]["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    for _ in 0..secs * 10 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn unread(c: &GpuresClient, token: &str) -> Vec<NotificationKind> {
    c.notifications(context::current(), token.into(), true, 50)
        .await
        .expect("rpc")
        .expect("notifications")
        .items
        .iter()
        .map(|n| n.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_admin_changes_reach_every_channel_once() {
    let hook = WebhookSink::start().await.expect("hook");
    let smtp = SmtpSink::start().await.expect("smtp");
    let (lab_url, port) = (hook.url("lab"), smtp.port());
    let daemon = TestDaemon::builder()
        .with_gpus(1)
        .config(move |c| {
            c.notify.lab_webhook_url = Some(gpures_daemon::config::Secret::new(lab_url));
            c.notify.retry_base_ms = 50;
            c.notify.smtp.enabled = true;
            c.notify.smtp.host = "127.0.0.1".into();
            c.notify.smtp.port = port;
            c.notify.smtp.from = "gpures <gpures@lab.kr>".into();
        })
        .start()
        .await
        .expect("daemon");
    let (alice, a) = daemon.user("alice@lab.kr", "김민수").await.expect("alice");
    let (bob, b) = daemon.user("bob@lab.kr", "Bob").await.expect("bob");
    let (admin, root) = daemon.admin("root@lab.kr", "Admin").await.expect("admin");

    // Bad settings are refused and change nothing.
    for bad in [
        "ftp://example.org/x",
        "http://a b",
        "http://x/\u{1b}[31m",
        "",
    ] {
        let r = alice
            .notify_settings(
                context::current(),
                a.token.clone(),
                Some(NotifyChange {
                    webhook_url: Some(Some(bad.into())),
                    ..NotifyChange::default()
                }),
            )
            .await
            .expect("rpc");
        assert!(
            matches!(r, Err(ApiError::InvalidArgument { .. })),
            "{bad:?}: {r:?}"
        );
    }
    let s = alice
        .notify_settings(context::current(), a.token.clone(), None)
        .await
        .expect("rpc")
        .expect("settings");
    assert_eq!(s.webhook_url, None);
    let s = alice
        .notify_settings(
            context::current(),
            a.token.clone(),
            Some(NotifyChange {
                webhook_url: Some(Some(hook.url("alice"))),
                email: Some(true),
                ..NotifyChange::default()
            }),
        )
        .await
        .expect("rpc")
        .expect("settings");
    assert!(s.email && s.email_available);

    // The first webhook call fails: it is retried, and arrives once.
    hook.fail_next(1);
    let gpu = daemon.gpus[0];
    let held = bob
        .create_booking(
            context::current(),
            b.token.clone(),
            gpures_proto::BookingRequest {
                request_id: Uuid::new_v4(),
                resources: vec![gpu],
                period: hour_from_now(),
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");
    let waiting = alice
        .enqueue(
            context::current(),
            a.token.clone(),
            QueueRequest {
                request_id: Uuid::new_v4(),
                gpus: 1,
                length_minutes: 30,
                host: None,
                until: None,
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("enqueue");
    assert_eq!(waiting.state, gpures_proto::QueueState::Waiting);
    bob.release_booking(context::current(), b.token.clone(), held.booking_id)
        .await
        .expect("rpc")
        .expect("release");
    eventually("the grant on both webhooks and by email", 15, || {
        hook.accepted().len() >= 2 && !smtp.mails().is_empty()
    })
    .await;
    assert_eq!(
        unread(&alice, &a.token).await,
        vec![NotificationKind::Granted]
    );
    assert!(hook.refused() >= 1, "the 500 was not retried");

    // An admin cancels Alice's grant with a reason: she is told why.
    let granted = alice
        .queue(context::current(), a.token.clone())
        .await
        .expect("rpc")
        .expect("queue")
        .into_iter()
        .find_map(|e| e.booking_id)
        .expect("granted booking");
    admin
        .change_with_reason(
            context::current(),
            root.token.clone(),
            ChangeTarget::Booking(granted),
            ChangeKind::Cancel,
            "node maintenance".into(),
        )
        .await
        .expect("rpc")
        .expect("cancel");
    eventually("the admin's change delivered", 15, || {
        hook.accepted().len() >= 4 && smtp.mails().len() >= 2
    })
    .await;
    let page = alice
        .notifications(context::current(), a.token.clone(), true, 50)
        .await
        .expect("rpc")
        .expect("inbox");
    assert_eq!(page.unread, 2);
    let changed = &page.items[0];
    assert_eq!(changed.kind, NotificationKind::AdminChanged);
    assert!(changed.body.contains("node maintenance"), "{changed:?}");

    // Each delivered once: two to Alice's hook, two to the lab's, two mails.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kinds_at(&hook, "alice"), ["granted", "admin-changed"]);
    assert_eq!(kinds_at(&hook, "lab"), ["granted", "admin-changed"]);
    let lab = hook.accepted_at("lab");
    assert!(
        lab[0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("김민수")),
        "{lab:#?}"
    );
    let mut keys = hook.keys();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 4, "a delivery was repeated");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    assert!(mails[0].to[0].contains("alice@lab.kr"), "{:?}", mails[0]);
    assert!(
        mails[0].data.contains("Granted from the queue"),
        "{}",
        mails[0].data
    );

    // Reading them clears the count.
    let n = alice
        .mark_read(context::current(), a.token.clone(), changed.id)
        .await
        .expect("rpc")
        .expect("read");
    assert_eq!(n, 2);
    assert!(unread(&alice, &a.token).await.is_empty());
    // Nobody can read another member's inbox: the call has no user id.
    assert!(unread(&bob, &b.token).await.is_empty());

    // A booking made an hour ago that starts within the reminder time is
    // announced once.
    let soon = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc")
        + TimeDelta::minutes(6);
    bob.create_booking(
        context::current(),
        b.token.clone(),
        gpures_proto::BookingRequest {
            request_id: Uuid::new_v4(),
            resources: vec![gpu],
            period: Period {
                start: soon,
                end: soon + TimeDelta::hours(1),
            },
            note: String::new(),
        },
    )
    .await
    .expect("rpc")
    .expect("book");
    {
        let mut conn = daemon.store.acquire().await.expect("conn");
        sqlx::query("UPDATE reservations SET updated_at = now() - interval '1 hour'")
            .execute(&mut *conn)
            .await
            .expect("age");
    }
    let mut told = Vec::new();
    for _ in 0..200 {
        told = unread(&bob, &b.token).await;
        if !told.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(told, vec![NotificationKind::StartsSoon]);
    daemon.stop().await.expect("stop");
}

fn write_config(dir: &Path, lab_hook: &str) -> std::path::PathBuf {
    let path = dir.join("gpures.toml");
    std::fs::write(
        &path,
        format!("[notify]\nlab_webhook_url = \"{lab_hook}\"\nlab_events = [\"test\"]\nretry_base_ms = 50\n"),
    )
    .expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_deliveries_pending_loses_and_duplicates_nothing() {
    let hook = WebhookSink::start().await.expect("hook");
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), &hook.url("lab"));
    let url = fresh_database_url().await.expect("db");
    let socket = dir.path().join("gpures.sock");
    let spawn = || {
        tokio::process::Command::new(BIN)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config)
            .arg("--database-url")
            .arg(&url)
            .arg("--state-dir")
            .arg(dir.path())
            .env("GPURES_LOG", "error")
            .kill_on_drop(true)
            .spawn()
            .expect("spawn")
    };
    let wait_up = async |socket: &Path| {
        for _ in 0..200 {
            if let Ok(c) = connect(socket).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("daemon did not start");
    };
    // The receiver is down while ten notifications are made.
    hook.fail_next(u32::MAX);
    let mut daemon = spawn();
    let c = wait_up(&socket).await;
    c.register(
        context::current(),
        RegisterRequest {
            email: "a@lab.kr".into(),
            display_name: "A".into(),
            password: PASSWORD.into(),
        },
    )
    .await
    .expect("rpc")
    .expect("register");
    let token = c
        .login(context::current(), "a@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login")
        .token;
    c.notify_settings(
        context::current(),
        token.clone(),
        Some(NotifyChange {
            webhook_url: Some(Some(hook.url("mine"))),
            ..NotifyChange::default()
        }),
    )
    .await
    .expect("rpc")
    .expect("settings");
    for _ in 0..10 {
        c.test_notification(context::current(), token.clone())
            .await
            .expect("rpc")
            .expect("test");
    }
    eventually("failed attempts", 10, || hook.refused() >= 5).await;
    daemon.start_kill().expect("SIGKILL");
    let _ = daemon.wait().await;
    // The receiver recovers; the restarted daemon delivers the rest once.
    hook.fail_next(0);
    let mut daemon = spawn();
    wait_up(&socket).await;
    eventually("20 deliveries", 30, || hook.accepted().len() >= 20).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut keys = hook.keys();
    assert_eq!(keys.len(), 20, "{keys:?}");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 20, "a delivery was duplicated");
    let c = wait_up(&socket).await;
    let token = c
        .login(context::current(), "a@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login")
        .token;
    let page = c
        .notifications(context::current(), token, false, 50)
        .await
        .expect("rpc")
        .expect("inbox");
    assert_eq!(page.items.len(), 10);
    daemon.start_kill().expect("kill");
    let _ = daemon.wait().await;
}
