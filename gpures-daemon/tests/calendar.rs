//! Google Calendar sync against a local fake Google (token endpoint and
//! Calendar v3) driven by the real `google-calendar3` client: every change
//! leaves the calendar equal to the database, faults are retried without
//! duplicates, bookings never wait for Google, a SIGKILLed daemon loses
//! nothing, two daemons deliver each change once, `calendar resync` repairs
//! hand edits, and `calendar check` names the fix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_daemon::config::Config;
use gpures_daemon::workers::calendar::event_id;
use gpures_proto::{
    BookingRequest, GpuresClient, NewResource, Period, RegisterRequest, ReservationChange,
    ReservationFilter, ResourceKind,
};
use gpures_testkit::fake_google::{CALENDAR, CLIENT_EMAIL, FakeGoogle, UNSHARED};
use gpures_testkit::{PASSWORD, TestDaemon, connect, fresh_database_url};
use tarpc::context;

const BIN: &str = env!("CARGO_BIN_EXE_gpures-daemon");

fn calendar_config(c: &mut Config, fake: &FakeGoogle, key: &Path) {
    c.calendar.enabled = true;
    c.calendar.service_account_file = Some(key.to_owned());
    c.calendar.calendar_id = Some(CALENDAR.into());
    c.calendar.api_base_url = Some(fake.base_url());
    c.calendar.writes_per_sec = 500.0;
    c.calendar.retry_base_ms = 50;
    c.calendar.request_timeout_secs = 1;
    c.gpu.backend = gpures_daemon::gpu::BackendChoice::None;
}

struct Lab {
    daemon: TestDaemon,
    fake: FakeGoogle,
    _dir: tempfile::TempDir,
    key: PathBuf,
    client: GpuresClient,
    token: String,
    gpus: Vec<i64>,
}

async fn lab_with(before: impl FnOnce(&FakeGoogle)) -> Lab {
    let fake = FakeGoogle::start().await.expect("fake google");
    before(&fake);
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("key.json");
    fake.write_key(&key).expect("key");
    let daemon = TestDaemon::start_with(|c| calendar_config(c, &fake, &key))
        .await
        .expect("daemon");
    let (client, login) = daemon.admin("admin@lab.kr", "김민수").await.expect("admin");
    let mut gpus = Vec::new();
    for i in 0..4 {
        gpus.push(
            client
                .create_resource(context::current(), login.token.clone(), gpu(i))
                .await
                .expect("rpc")
                .expect("resource")
                .id,
        );
    }
    Lab {
        daemon,
        fake,
        _dir: dir,
        key,
        client,
        token: login.token,
        gpus,
    }
}

fn gpu(i: i32) -> NewResource {
    NewResource {
        name: format!("gpu{i}"),
        host: String::new(),
        kind: ResourceKind::Gpu,
        gpu_index: Some(i),
        gpu_uuid: None,
        description: String::new(),
    }
}

fn slot(hours_ahead: i64, len: i64) -> Period {
    let start = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::hours(hours_ahead);
    Period {
        start,
        end: start + TimeDelta::hours(len),
    }
}

async fn book(
    c: &GpuresClient,
    token: &str,
    gpus: Vec<i64>,
    period: Period,
) -> Vec<gpures_proto::Reservation> {
    c.create_booking(
        context::current(),
        token.to_owned(),
        BookingRequest {
            request_id: uuid::Uuid::new_v4(),
            resources: gpus,
            period,
            note: "calendar test".into(),
        },
    )
    .await
    .expect("rpc")
    .expect("book")
    .reservations
}

async fn outbox(store: &gpures_daemon::store::Store) -> (i64, i64) {
    sqlx::query_as("SELECT count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed) FROM calendar_outbox")
        .fetch_one(store.pool())
        .await
        .expect("outbox")
}

/// Waits until the outbox is empty, then checks the fake calendar holds
/// exactly one right event per active reservation, one per block in force,
/// and nothing else.
async fn assert_settled(store: &gpures_daemon::store::Store, fake: &FakeGoogle, within: Duration) {
    let started = Instant::now();
    loop {
        let (queued, failed) = outbox(store).await;
        assert_eq!(failed, 0, "no change may fail for good here");
        if queued == 0 {
            break;
        }
        assert!(
            started.elapsed() < within,
            "{queued} changes still queued after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let active = gpures_testkit::all_reservations(store, &ReservationFilter::default())
        .await
        .expect("list");
    let mut events = fake.events();
    let blocks: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT block_id, min(reason) FROM blocks WHERE removed_at IS NULL GROUP BY block_id",
    )
    .fetch_all(store.pool())
    .await
    .expect("blocks");
    for (block, reason) in &blocks {
        let e = events
            .remove(&event_id(*block))
            .unwrap_or_else(|| panic!("block {block} has no event"));
        assert!(
            e["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("Blocked · ") && s.ends_with(reason.as_str())),
            "{e}"
        );
        assert_eq!(
            e.pointer("/extendedProperties/private/gpures_block")
                .and_then(|v| v.as_str()),
            Some(block.to_string().as_str())
        );
    }
    let by_id: HashMap<String, &gpures_proto::Reservation> =
        active.iter().map(|r| (event_id(r.id), r)).collect();
    for (id, e) in &events {
        let r = by_id
            .get(id)
            .unwrap_or_else(|| panic!("event {id} has no active reservation: {e}"));
        let waiting = if r.pending.is_some() {
            " (waiting for approval)"
        } else {
            ""
        };
        assert_eq!(
            e["summary"].as_str(),
            Some(format!("{} · {}{waiting}", r.resource_name, r.user.display_name).as_str())
        );
        let status = if r.pending.is_some() {
            "tentative"
        } else {
            "confirmed"
        };
        assert_eq!(e["status"].as_str(), Some(status), "{id} status");
        let t = |k: &str| {
            e[k]["dateTime"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        assert_eq!(t("start"), Some(r.period.start), "{id} start");
        assert_eq!(t("end"), Some(r.period.end), "{id} end");
        assert_eq!(
            e.pointer("/extendedProperties/private/gpures_reservation")
                .and_then(|v| v.as_str()),
            Some(r.id.to_string().as_str())
        );
        assert!(
            e["description"]
                .as_str()
                .is_some_and(|d| d.contains(&r.booking_id.to_string()))
        );
    }
    assert_eq!(
        events.len(),
        active.len(),
        "one event per active reservation"
    );
    assert!(fake.max_inserts() <= 1, "no event was inserted twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_leaves_the_calendar_equal_to_the_database() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    let one = book(c, t, vec![g[0]], slot(2, 2)).await;
    let multi = book(c, t, vec![g[1], g[2]], slot(3, 4)).await;
    assert_eq!(multi.len(), 2);
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    assert_eq!(lab.fake.events().len(), 3);
    // Move, extend, re-note.
    let moved = slot(10, 2);
    c.update_reservation(
        context::current(),
        t.into(),
        one[0].id,
        ReservationChange {
            start: Some(moved.start),
            end: Some(moved.end),
            note: None,
        },
    )
    .await
    .expect("rpc")
    .expect("move");
    c.update_reservation(
        context::current(),
        t.into(),
        multi[0].id,
        ReservationChange {
            end: Some(multi[0].period.end + TimeDelta::hours(2)),
            ..Default::default()
        },
    )
    .await
    .expect("rpc")
    .expect("extend");
    // Release a running one, cancel another.
    let now = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc");
    let running = book(
        c,
        t,
        vec![g[3]],
        Period {
            start: now - TimeDelta::minutes(1),
            end: now + TimeDelta::hours(1),
        },
    )
    .await;
    c.release_now(context::current(), t.into(), running[0].id)
        .await
        .expect("rpc")
        .expect("release");
    c.cancel_reservation(context::current(), t.into(), multi[1].id)
        .await
        .expect("rpc")
        .expect("cancel");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    assert!(
        !lab.fake.events().contains_key(&event_id(multi[1].id)),
        "the cancelled one is gone"
    );
    // Sync state is visible per reservation, and the queue in status.
    let listed = c
        .list_reservations(
            context::current(),
            t.into(),
            ReservationFilter::default(),
            gpures_proto::PageRequest::default(),
        )
        .await
        .expect("rpc")
        .expect("list")
        .reservations;
    assert!(
        listed
            .iter()
            .all(|r| r.sync == gpures_proto::SyncState::Synced),
        "{listed:?}"
    );
    let status = c
        .status(context::current(), t.into(), None)
        .await
        .expect("rpc")
        .expect("status");
    let cal = status.calendar.expect("admins see the calendar queue");
    assert!(cal.enabled);
    assert_eq!(cal.queued, 0);
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_approval_is_tentative_until_approved() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    let rule = gpures_proto::PolicySet {
        rule: gpures_proto::PolicyRule::MaxLength,
        target: gpures_proto::PolicyTarget::Everyone,
        host: None,
        value: Some(60),
        threshold: None,
    };
    c.set_policy(context::current(), t.into(), rule)
        .await
        .expect("rpc")
        .expect("rule");
    let (kc, kim) = lab.daemon.user("kim@lab.kr", "김민지").await.expect("user");
    let asked = kc
        .request_approval(
            context::current(),
            kim.token.clone(),
            BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![g[0], g[1]],
                period: slot(30, 3),
                note: "long run".into(),
            },
            "paper deadline".into(),
            None,
        )
        .await
        .expect("rpc")
        .expect("asked");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    let tentative = lab
        .fake
        .events()
        .values()
        .filter(|e| e["status"] == "tentative")
        .count();
    assert_eq!(tentative, 2, "both GPUs shown as waiting");
    c.decide_approval(context::current(), t.into(), asked.booking_id, true, None)
        .await
        .expect("rpc")
        .expect("approved");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    assert!(
        lab.fake
            .events()
            .values()
            .all(|e| e["status"] == "confirmed")
    );
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_block_is_one_event_repaired_like_a_booking_and_gone_once_lifted() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    book(c, t, vec![g[2]], slot(4, 1)).await;
    let blocked = c
        .block(
            context::current(),
            t.into(),
            gpures_proto::BlockRequest {
                resources: vec![g[1], g[0]],
                period: slot(3, 2),
                reason: "driver upgrade".into(),
                cancel_overlapping: false,
            },
        )
        .await
        .expect("rpc")
        .expect("block");
    let block = blocked.blocks[0].block_id;
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    let eid = event_id(block);
    let ev = &lab.fake.events()[&eid];
    assert_eq!(
        ev["summary"].as_str(),
        Some("Blocked · gpu0, gpu1 · driver upgrade"),
        "one event for both GPUs: {ev}"
    );
    let t0 = |e: &serde_json::Value| {
        e["start"]["dateTime"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    assert_eq!(t0(ev), Some(slot(3, 2).start));

    // By hand: the block's event deleted, and an event of a block that
    // never existed. A repair brings back the first and deletes the second.
    lab.fake.delete_event(&eid);
    let ghost = uuid::Uuid::new_v4();
    let s = slot(5, 1);
    lab.fake.put_event(
        &event_id(ghost),
        serde_json::json!({
            "id": event_id(ghost), "summary": "Blocked · gpu3 · old", "status": "confirmed",
            "start": {"dateTime": s.start.to_rfc3339()}, "end": {"dateTime": s.end.to_rfc3339()},
            "extendedProperties": {"private": {"gpures": "1", "gpures_block": ghost.to_string()}}
        }),
    );
    let cal = calendar_of(&lab).await;
    let (from, to) = window();
    let repair = gpures_daemon::workers::calendar::reconcile(&cal, &lab.daemon.store, from, to)
        .await
        .expect("repair");
    assert_eq!(
        (repair.created, repair.deleted, repair.unchanged),
        (1, 1, 1),
        "{repair:?}"
    );
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    assert!(lab.fake.events().contains_key(&eid));
    let again = gpures_daemon::workers::calendar::reconcile(&cal, &lab.daemon.store, from, to)
        .await
        .expect("repair");
    assert_eq!(again.queued() + again.deleted, 0, "{again:?}");

    c.unblock(context::current(), t.into(), block)
        .await
        .expect("rpc")
        .expect("unblock");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    assert!(!lab.fake.events().contains_key(&eid), "lifted: no event");
    assert_eq!(lab.fake.events().len(), 1, "the booking's event stays");
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_and_never_duplicate_an_event() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    // Three 429s, then success.
    lab.fake.fail_next(3, 429, "rateLimitExceeded");
    book(c, t, vec![g[0]], slot(2, 1)).await;
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    // 500s and a rate-limit 403.
    lab.fake.fail_next(2, 500, "backendError");
    lab.fake.fail_next(1, 403, "userRateLimitExceeded");
    book(c, t, vec![g[0]], slot(4, 1)).await;
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    // A response slower than the timeout (1 s): retried; the late insert
    // then finds the event and changes nothing.
    lab.fake.slow_next(1, Duration::from_millis(1500));
    book(c, t, vec![g[1]], slot(2, 1)).await;
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(lab.fake.max_inserts() <= 1);
    // 409 on insert (the event exists already, as after a lost reply): updated.
    let r = book(c, t, vec![g[2]], slot(2, 1)).await;
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    lab.fake
        .edit_event(&event_id(r[0].id), |e| e["summary"] = "stale".into());
    sqlx::query("INSERT INTO calendar_outbox (reservation_id, operation) VALUES ($1, 'upsert'); ")
        .bind(r[0].id)
        .execute(lab.daemon.store.pool())
        .await
        .expect("requeue");
    sqlx::query("SELECT pg_notify('gpures_changes', '')")
        .execute(lab.daemon.store.pool())
        .await
        .expect("notify");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    // 410 on delete (deleted by hand already): counts as done.
    lab.fake.delete_event(&event_id(r[0].id));
    c.cancel_reservation(context::current(), t.into(), r[0].id)
        .await
        .expect("rpc")
        .expect("cancel");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_down_for_a_while_delays_but_loses_nothing() {
    let lab = lab_with(|f| f.set_token_down(true)).await;
    book(&lab.client, &lab.token, vec![lab.gpus[0]], slot(2, 1)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(outbox(&lab.daemon.store).await.0, 1, "waiting for a token");
    assert!(lab.fake.events().is_empty());
    lab.fake.set_token_down(false);
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(15)).await;
    assert_eq!(lab.fake.events().len(), 1);
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_google_unreachable_bookings_run_at_full_speed_and_the_backlog_drains() {
    let lab = lab_with(|f| f.set_down(true)).await;
    let started = Instant::now();
    for i in 0..40 {
        book(
            &lab.client,
            &lab.token,
            vec![lab.gpus[usize::try_from(i % 4).expect("idx")]],
            slot(2 + i, 1),
        )
        .await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "40 bookings took {took:?} with Google down"
    );
    let (queued, failed) = outbox(&lab.daemon.store).await;
    assert_eq!((queued, failed), (40, 0), "all waiting, none given up");
    lab.fake.set_down(false);
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(20)).await;
    assert_eq!(lab.fake.events().len(), 40);
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_deliver_every_change_exactly_once() {
    let fake = FakeGoogle::start().await.expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("key.json");
    fake.write_key(&key).expect("key");
    let url = fresh_database_url().await.expect("db");
    let a = TestDaemon::start_on(url.clone(), "gpu01", |c| calendar_config(c, &fake, &key))
        .await
        .expect("A");
    let b = TestDaemon::start_on(url, "gpu02", |c| calendar_config(c, &fake, &key))
        .await
        .expect("B");
    let (ca, la) = a.admin("admin@lab.kr", "Admin").await.expect("admin");
    let mut gpus = Vec::new();
    for i in 0..4 {
        gpus.push(
            ca.create_resource(context::current(), la.token.clone(), gpu(i))
                .await
                .expect("rpc")
                .expect("gpu")
                .id,
        );
    }
    let cb = b.client().await.expect("client");
    let lb = cb
        .login(context::current(), "admin@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login on B");
    for i in 0..60i64 {
        let (c, t) = if i % 2 == 0 {
            (&ca, &la.token)
        } else {
            (&cb, &lb.token)
        };
        book(
            c,
            t,
            vec![gpus[usize::try_from(i % 4).expect("idx")]],
            slot(2 + i, 1),
        )
        .await;
    }
    assert_settled(&a.store, &fake, Duration::from_secs(20)).await;
    assert_eq!(fake.events().len(), 60);
    assert_eq!(fake.max_inserts(), 1, "each event inserted exactly once");
    b.stop().await.expect("B");
    a.stop().await.expect("A");
}

fn write_config(dir: &Path, base_url: &str, key: &str, calendar: &str) -> PathBuf {
    let path = dir.join("gpures.toml");
    std::fs::write(
        &path,
        format!(
            "[gpu]\nbackend = \"none\"\n[calendar]\nenabled = true\nservice_account_file = \"{key}\"\ncalendar_id = \"{calendar}\"\napi_base_url = \"{base_url}\"\nretry_base_ms = 50\nrequest_timeout_secs = 2\nwrites_per_sec = 200.0\n"
        ),
    )
    .expect("config");
    path
}

fn daemon_cmd(config: &Path, url: &str, state: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--database-url")
        .arg(url)
        .arg("--state-dir")
        .arg(state)
        .env("GPURES_LOG", "error")
        .output()
        .expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_check_names_the_fix() {
    let fake = FakeGoogle::start().await.expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    fake.write_key(&dir.path().join("key.json")).expect("key");
    let url = fresh_database_url().await.expect("db");
    let run = |key: &'static str, cal: &'static str| {
        let (dir, base, url) = (dir.path().to_owned(), fake.base_url(), url.clone());
        tokio::task::spawn_blocking(move || {
            let config = write_config(&dir, &base, key, cal);
            let out = daemon_cmd(&config, &url, &dir, &["calendar", "check"]);
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        })
    };
    // The key path is relative to the config file's folder.
    let (ok, out) = run("key.json", CALENDAR).await.expect("join");
    assert!(
        ok && out.contains("OK: wrote, read back, listed and deleted a test event"),
        "{out}"
    );
    let (ok, out) = run("missing.json", CALENDAR).await.expect("join");
    assert!(
        !ok && out.contains("missing or unreadable") && out.contains("Add key → JSON"),
        "{out}"
    );
    let (ok, out) = run("key.json", UNSHARED).await.expect("join");
    assert!(
        !ok && out.contains("the calendar is not shared with it"),
        "{out}"
    );
    assert!(
        out.contains(CLIENT_EMAIL) && out.contains("Make changes to events"),
        "{out}"
    );
    let (ok, out) = run("key.json", "nope@group.calendar.google.com")
        .await
        .expect("join");
    assert!(
        !ok && out.contains("does not know the calendar nope@group.calendar.google.com")
            && out.contains("Calendar ID")
            && out.contains("not shared with the account at all"),
        "{out}"
    );
    // The flag off.
    std::fs::write(dir.path().join("off.toml"), "[calendar]\nenabled = false\n").expect("write");
    let out = daemon_cmd(
        &dir.path().join("off.toml"),
        &url,
        dir.path(),
        &["calendar", "check"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("GOOGLE_CALENDAR_ENABLED=true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_repairs_hand_edits() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    let a = book(c, t, vec![g[0]], slot(2, 1)).await;
    let b = book(c, t, vec![g[1]], slot(2, 1)).await;
    book(c, t, vec![g[2]], slot(2, 1)).await;
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    // By hand: one deleted, one edited, one added that no reservation owns.
    lab.fake.delete_event(&event_id(a[0].id));
    let later = (b[0].period.end + TimeDelta::hours(3)).to_rfc3339();
    lab.fake.edit_event(&event_id(b[0].id), |e| {
        e["summary"] = "moved by hand".into();
        e["end"]["dateTime"] = later.into();
    });
    let stray = event_id(uuid::Uuid::new_v4());
    let s = slot(3, 1);
    lab.fake.put_event(
        &stray,
        serde_json::json!({
            "id": stray, "summary": "stray", "status": "confirmed",
            "start": {"dateTime": s.start.to_rfc3339()}, "end": {"dateTime": s.end.to_rfc3339()},
            "extendedProperties": {"private": {"gpures": "1", "gpures_reservation": uuid::Uuid::new_v4().to_string()}}
        }),
    );
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        dir.path(),
        &lab.fake.base_url(),
        &lab.key.display().to_string(),
        CALENDAR,
    );
    let url = lab.daemon.database_url.clone();
    let state = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        daemon_cmd(&config, &url, &state, &["calendar", "resync"])
    })
    .await
    .expect("join");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 created, 1 updated, 1 deleted, 1 already right"),
        "{text}"
    );
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(5)).await;
    assert!(!lab.fake.events().contains_key(&stray));
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_200_changes_pending_loses_and_duplicates_nothing() {
    let fake = FakeGoogle::start().await.expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    fake.write_key(&dir.path().join("key.json")).expect("key");
    let config = write_config(dir.path(), &fake.base_url(), "key.json", CALENDAR);
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
    // Slow Google: 200 changes pile up.
    fake.slow_next(100_000, Duration::from_millis(100));
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
    gpures_testkit::HostAdmin::on(&url)
        .expect("url")
        .promote("a@lab.kr")
        .await
        .expect("promote");
    let store = gpures_daemon::store::Store::connect_lazy(url.parse().expect("url"), 2);
    let token = c
        .login(context::current(), "a@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login")
        .token;
    let mut gpus = Vec::new();
    for i in 0..4 {
        gpus.push(
            c.create_resource(context::current(), token.clone(), gpu(i))
                .await
                .expect("rpc")
                .expect("gpu")
                .id,
        );
    }
    for i in 0..200i64 {
        book(
            &c,
            &token,
            vec![gpus[usize::try_from(i % 4).expect("idx")]],
            slot(2 + i, 1),
        )
        .await;
    }
    let (queued, _) = outbox(&store).await;
    assert!(
        queued > 50,
        "changes are pending when the daemon dies ({queued})"
    );
    daemon.start_kill().expect("SIGKILL");
    let _ = daemon.wait().await;
    // Google recovers; the restarted daemon finishes the work.
    fake.clear_faults();
    let mut daemon = spawn();
    wait_up(&socket).await;
    assert_settled(&store, &fake, Duration::from_secs(60)).await;
    assert_eq!(fake.events().len(), 200);
    daemon.start_kill().expect("kill");
    let _ = daemon.wait().await;
    store.close().await;
}

/// The daemon's own calendar client, for running a repair in the test.
async fn calendar_of(lab: &Lab) -> gpures_daemon::workers::calendar::Calendar {
    let mut config = Config::default();
    calendar_config(&mut config, &lab.fake, &lab.key);
    gpures_daemon::workers::calendar::Calendar::connect(&config.calendar, "test-host")
        .await
        .expect("calendar")
}

fn window() -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let now = Utc::now();
    (now - TimeDelta::days(1), now + TimeDelta::days(14))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_during_edits_never_writes_stale_state_and_a_second_changes_nothing() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            book(
                c,
                t,
                vec![g[usize::try_from(i % 4).expect("i")]],
                slot(2 + 3 * i, 1),
            )
            .await[0]
                .id,
        );
    }
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    let cal = calendar_of(&lab).await;
    let (from, to) = window();
    // Repairs run while every reservation moves by an hour.
    let repairs = {
        let store = lab.daemon.store.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                gpures_daemon::workers::calendar::reconcile(&cal, &store, from, to)
                    .await
                    .expect("repair");
            }
            cal
        })
    };
    for id in &ids {
        let r = c
            .find_reservations(context::current(), t.into(), gpures_proto::Lookup::Id(*id))
            .await
            .expect("rpc")
            .expect("find");
        c.update_reservation(
            context::current(),
            t.into(),
            *id,
            gpures_proto::ReservationChange {
                end: Some(r[0].period.end + TimeDelta::hours(1)),
                ..Default::default()
            },
        )
        .await
        .expect("rpc")
        .expect("move");
    }
    let cal = repairs.await.expect("join");
    // Every event ends with the reservation's latest state.
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    let again = gpures_daemon::workers::calendar::reconcile(&cal, &lab.daemon.store, from, to)
        .await
        .expect("repair");
    assert_eq!(again.queued() + again.deleted, 0, "{again:?}");
    assert_eq!(again.unchanged, 10);
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_over_several_pages_during_a_booking_keeps_the_new_event() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    // 280 events: more than one page of 250.
    for i in 0..70 {
        book(c, t, g.clone(), slot(2 + i, 1)).await;
    }
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(30)).await;
    assert_eq!(lab.fake.events().len(), 280);
    let cal = calendar_of(&lab).await;
    let (from, to) = window();
    let store = lab.daemon.store.clone();
    let repair = tokio::spawn(async move {
        gpures_daemon::workers::calendar::reconcile(&cal, &store, from, to).await
    });
    let new = book(c, t, vec![g[0]], slot(100, 1)).await;
    let report = repair.await.expect("join").expect("repair");
    assert_eq!(report.deleted, 0, "{report:?}");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    assert!(
        lab.fake.events().contains_key(&event_id(new[0].id)),
        "the booking made during the repair keeps its event"
    );
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_moved_into_the_window_by_hand_is_moved_back_not_deleted() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    // 20 days ahead: outside the periodic repair's two weeks.
    let far = book(c, t, vec![g[0]], slot(20 * 24, 2)).await;
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    let next_week = slot(7 * 24, 2);
    lab.fake.edit_event(&event_id(far[0].id), |e| {
        e["start"]["dateTime"] = next_week.start.to_rfc3339().into();
        e["end"]["dateTime"] = next_week.end.to_rfc3339().into();
    });
    let cal = calendar_of(&lab).await;
    let (from, to) = window();
    let report = gpures_daemon::workers::calendar::reconcile(&cal, &lab.daemon.store, from, to)
        .await
        .expect("repair");
    assert_eq!((report.updated, report.deleted), (1, 0), "{report:?}");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_success_clears_an_earlier_failure_and_tokens_expire_harmlessly() {
    let lab = lab_with(|f| f.set_token_lifetime(2)).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    lab.fake.fail_next(1, 403, "requiredAccessLevel");
    let r = book(c, t, vec![g[0]], slot(3, 1)).await;
    let started = Instant::now();
    loop {
        if outbox(&lab.daemon.store).await.1 == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = c
        .find_reservations(
            context::current(),
            t.into(),
            gpures_proto::Lookup::Id(r[0].id),
        )
        .await
        .expect("rpc")
        .expect("find");
    assert!(matches!(failed[0].sync, gpures_proto::SyncState::Failed(_)));
    // Tokens live 2 s: the client gets new ones as they expire.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.update_reservation(
        context::current(),
        t.into(),
        r[0].id,
        gpures_proto::ReservationChange {
            note: Some("fixed".into()),
            ..Default::default()
        },
    )
    .await
    .expect("rpc")
    .expect("edit");
    // The edit's delivery succeeds and takes the old failure with it.
    let started = Instant::now();
    while outbox(&lab.daemon.store).await != (0, 0) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the failure stayed: {:?}",
            outbox(&lab.daemon.store).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    let now = c
        .find_reservations(
            context::current(),
            t.into(),
            gpures_proto::Lookup::Id(r[0].id),
        )
        .await
        .expect("rpc")
        .expect("find");
    assert_eq!(now[0].sync, gpures_proto::SyncState::Synced);
    let status = c
        .status(context::current(), t.into(), None)
        .await
        .expect("rpc")
        .expect("status");
    assert_eq!(status.calendar.map(|c| c.failed), Some(0));
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_update_known_events_without_a_refused_insert_first() {
    let lab = lab_with(|_| {}).await;
    let (c, t, g) = (&lab.client, lab.token.as_str(), &lab.gpus);
    let r = book(c, t, vec![g[0]], slot(3, 1)).await;
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    for i in 0..5 {
        c.update_reservation(
            context::current(),
            t.into(),
            r[0].id,
            gpures_proto::ReservationChange {
                note: Some(format!("edit {i}")),
                ..Default::default()
            },
        )
        .await
        .expect("rpc")
        .expect("edit");
        assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    }
    assert_eq!(lab.fake.conflicts(), 0, "no insert was refused with 409");
    // An event deleted by hand is written again by an insert after the
    // update finds it gone.
    lab.fake.delete_event(&event_id(r[0].id));
    c.update_reservation(
        context::current(),
        t.into(),
        r[0].id,
        gpures_proto::ReservationChange {
            note: Some("after a hand delete".into()),
            ..Default::default()
        },
    )
    .await
    .expect("rpc")
    .expect("edit");
    assert_settled(&lab.daemon.store, &lab.fake, Duration::from_secs(10)).await;
    lab.daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_calendar_refuses_owner_only_scopes_and_the_daemon_asks_for_events() {
    use google_calendar3::CalendarHub;
    use google_calendar3::api::Scope;
    use gpures_daemon::workers::calendar::token::{ServiceAccount, ServiceAccountKey};
    let fake = FakeGoogle::start().await.expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let key_path = dir.path().join("key.json");
    fake.write_key(&key_path).expect("key");
    let key: ServiceAccountKey =
        serde_json::from_str(&std::fs::read_to_string(&key_path).expect("read key"))
            .expect("a key");
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .expect("roots")
        .https_or_http()
        .enable_http1()
        .build();
    let token_http =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, String>(connector.clone());
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let auth = ServiceAccount::new(&key, token_http).expect("auth");
    let mut hub = CalendarHub::new(http, auth);
    hub.base_url(format!("{}/calendar/v3/", fake.base_url()));
    hub.root_url(format!("{}/", fake.base_url()));
    // The client library's default scope for reading covers only calendars
    // the account owns: refused on a calendar shared with it as a writer.
    let refused = hub.events().list(CALENDAR).doit().await;
    let err = refused.expect_err("owner-only scope");
    assert!(
        format!("{err:?}").contains("insufficientPermissions"),
        "{err:?}"
    );
    // The scope the daemon asks for on every call works.
    hub.events()
        .list(CALENDAR)
        .add_scope(Scope::Event)
        .doit()
        .await
        .expect("calendar.events scope");
}
