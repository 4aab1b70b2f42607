//! Bookings over the real socket against a real PostgreSQL: the overlap
//! invariant under a race, all-or-nothing multi-GPU bookings, the booking
//! rules, ownership, idempotent retries and live change notification.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{
    ApiError, BookingRequest, GpuresClient, Period, ReservationChange, ReservationFilter,
    ReservationStatus, limits,
};
use gpures_testkit::TestDaemon;
use tarpc::context;
use uuid::Uuid;

fn hour_from_now(hours: i64) -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::hours(hours)
}

fn period(start: DateTime<Utc>, hours: i64) -> Period {
    Period {
        start,
        end: start + TimeDelta::hours(hours),
    }
}

fn booking(resources: Vec<i64>, p: Period) -> BookingRequest {
    BookingRequest {
        request_id: Uuid::new_v4(),
        resources,
        period: p,
        note: String::new(),
    }
}

/// A daemon with `n` GPUs; returns the GPU ids.
async fn daemon_with_gpus(n: i32) -> (TestDaemon, Vec<i64>) {
    let daemon = TestDaemon::builder()
        .with_gpus(n)
        .start()
        .await
        .expect("daemon");
    let gpus = daemon.gpus.clone();
    (daemon, gpus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_race_for_one_slot_and_exactly_one_wins() {
    let (daemon, gpus) = daemon_with_gpus(1).await;
    let slot = period(hour_from_now(2), 1);
    let mut users: Vec<(GpuresClient, String, String)> = Vec::new();
    for i in 0..64 {
        let email = format!("racer{i}@lab.kr");
        let (client, login) = daemon
            .user(&email, &format!("Racer {i}"))
            .await
            .expect("user");
        users.push((client, login.token, email));
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(users.len()));
    let mut tasks = Vec::new();
    for (client, token, email) in users {
        let barrier = barrier.clone();
        let gpu = gpus[0];
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = client
                .create_booking(context::current(), token, booking(vec![gpu], slot))
                .await
                .expect("rpc");
            (email, result)
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = Vec::new();
    for t in tasks {
        let (email, result) = t.await.expect("task");
        match result {
            Ok(_) => winners.push(email),
            Err(ApiError::Conflict { holders }) => conflicts.push(holders),
            Err(e) => panic!("unexpected error for {email}: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    assert_eq!(conflicts.len(), 63);
    for holders in &conflicts {
        assert_eq!(holders.len(), 1);
        assert_eq!(
            holders[0].user.email, winners[0],
            "the conflict names the winner"
        );
        assert_eq!(holders[0].period, slot);
    }
    assert_eq!(daemon.overlapping_pairs().await.expect("query"), 0);
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn back_to_back_bookings_both_succeed() {
    let (daemon, gpus) = daemon_with_gpus(1).await;
    let (c, login) = daemon.user("kim@lab.kr", "김민수").await.expect("user");
    let ten = hour_from_now(24);
    for p in [period(ten, 2), period(ten + TimeDelta::hours(2), 2)] {
        c.create_booking(
            context::current(),
            login.token.clone(),
            booking(vec![gpus[0]], p),
        )
        .await
        .expect("rpc")
        .expect("back-to-back booking succeeds");
    }
    // One minute of overlap is refused.
    let overlapping = Period {
        start: ten + TimeDelta::hours(4) - TimeDelta::minutes(1),
        end: ten + TimeDelta::hours(5),
    };
    let err = c
        .create_booking(
            context::current(),
            login.token.clone(),
            booking(vec![gpus[0]], overlapping),
        )
        .await
        .expect("rpc")
        .expect_err("overlap refused");
    assert!(matches!(err, ApiError::Conflict { .. }), "{err:?}");
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn a_booking_from_this_minute_starts_where_a_release_earlier_in_it_ended() {
    let (daemon, gpus) = daemon_with_gpus(1).await;
    let (c, login) = daemon.user("kim@lab.kr", "김민수").await.expect("user");
    let (_, lee) = daemon.user("lee@lab.kr", "이서연").await.expect("user");
    let minute = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc");
    let now = |len: i64| Period {
        start: minute,
        end: minute + TimeDelta::hours(len),
    };
    let first = c
        .create_booking(
            context::current(),
            login.token.clone(),
            booking(vec![gpus[0]], now(1)),
        )
        .await
        .expect("rpc")
        .expect("book");
    let released = c
        .release_now(
            context::current(),
            login.token.clone(),
            first.reservations[0].id,
        )
        .await
        .expect("rpc")
        .expect("release");
    // The same minute, again (as `gpures run` does after a job): from the
    // second the release ended, not refused.
    let again = c
        .create_booking(
            context::current(),
            lee.token.clone(),
            booking(vec![gpus[0]], now(2)),
        )
        .await
        .expect("rpc")
        .expect("booked right after the release");
    assert_eq!(again.reservations[0].period.start, released.period.end);
    assert_eq!(
        again.reservations[0].period.end,
        minute + TimeDelta::hours(2)
    );
    // A running booking is still a conflict, from this minute or not.
    let err = c
        .create_booking(
            context::current(),
            login.token.clone(),
            booking(vec![gpus[0]], now(1)),
        )
        .await
        .expect("rpc")
        .expect_err("held");
    assert!(matches!(err, ApiError::Conflict { .. }), "{err:?}");
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn a_multi_gpu_booking_is_all_or_nothing() {
    let (daemon, gpus) = daemon_with_gpus(3).await;
    let (alice, a) = daemon.user("alice@lab.kr", "Alice").await.expect("user");
    let (bob, b) = daemon.user("bob@lab.kr", "Bob").await.expect("user");
    let slot = period(hour_from_now(3), 2);
    alice
        .create_booking(
            context::current(),
            a.token.clone(),
            booking(vec![gpus[1]], slot),
        )
        .await
        .expect("rpc")
        .expect("alice books gpu1");
    let err = bob
        .create_booking(
            context::current(),
            b.token.clone(),
            booking(vec![gpus[0], gpus[1], gpus[2]], slot),
        )
        .await
        .expect("rpc")
        .expect_err("gpu1 is taken");
    let ApiError::Conflict { holders } = err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].resource_name, "gpu1");
    assert_eq!(holders[0].user.display_name, "Alice");
    let bobs = bob
        .list_reservations(
            context::current(),
            b.token.clone(),
            ReservationFilter {
                user_email: Some("bob@lab.kr".into()),
                include_cancelled: true,
                ..ReservationFilter::default()
            },
            gpures_proto::PageRequest::default(),
        )
        .await
        .expect("rpc")
        .expect("list")
        .reservations;
    assert!(
        bobs.is_empty(),
        "nothing of the failed booking is left: {bobs:?}"
    );
    // With gpu1 left out, the two others are booked together.
    let ok = bob
        .create_booking(
            context::current(),
            b.token.clone(),
            booking(vec![gpus[2], gpus[0]], slot),
        )
        .await
        .expect("rpc")
        .expect("two free gpus");
    assert_eq!(ok.reservations.len(), 2);
    assert!(
        ok.reservations
            .iter()
            .all(|r| r.booking_id == ok.booking_id)
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn booking_rules_refuse_bad_periods_and_notes_and_change_nothing() {
    let (daemon, gpus) = daemon_with_gpus(1).await;
    let (c, login) = daemon.user("lee@lab.kr", "Lee").await.expect("user");
    let t = login.token.clone();
    let start = hour_from_now(5);
    let cases: Vec<(&str, Period, String)> = vec![
        (
            "end before start",
            Period {
                start,
                end: start - TimeDelta::hours(1),
            },
            String::new(),
        ),
        ("empty", Period { start, end: start }, String::new()),
        ("in the past", period(hour_from_now(-3), 1), String::new()),
        ("too long", period(start, 24 * 15), String::new()),
        (
            "not a whole minute",
            Period {
                start: start + TimeDelta::seconds(30),
                end: start + TimeDelta::hours(1),
            },
            String::new(),
        ),
        ("note too long", period(start, 1), "x".repeat(501)),
        (
            "note of 10,000 characters",
            period(start, 1),
            "가".repeat(10_000),
        ),
    ];
    for (what, p, note) in cases {
        let mut req = booking(vec![gpus[0]], p);
        req.note = note;
        let err = c
            .create_booking(context::current(), t.clone(), req)
            .await
            .expect("rpc")
            .expect_err(what);
        assert!(
            matches!(err, ApiError::InvalidArgument { .. }),
            "{what}: {err:?}"
        );
    }
    let err = c
        .create_booking(
            context::current(),
            t.clone(),
            booking(vec![9_999], period(start, 1)),
        )
        .await
        .expect("rpc")
        .expect_err("unknown resource");
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    let all = c
        .list_reservations(
            context::current(),
            t.clone(),
            ReservationFilter {
                include_cancelled: true,
                ..Default::default()
            },
            gpures_proto::PageRequest::default(),
        )
        .await
        .expect("rpc")
        .expect("list")
        .reservations;
    assert!(all.is_empty(), "nothing stored: {all:?}");

    // Escape sequences, NUL bytes and bidi overrides are stripped; SQL is just text.
    let mut req = booking(vec![gpus[0]], period(start, 1));
    req.note =
        "\u{1b}]0;owned\u{7}train\u{0} \u{202e}run'); DROP TABLE reservations;--\u{1b}[2J".into();
    let made = c
        .create_booking(context::current(), t.clone(), req)
        .await
        .expect("rpc")
        .expect("book");
    assert_eq!(
        made.reservations[0].note,
        "train run'); DROP TABLE reservations;--"
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn a_retried_request_returns_the_same_booking() {
    let (daemon, gpus) = daemon_with_gpus(2).await;
    let (c, login) = daemon.user("park@lab.kr", "박지훈").await.expect("user");
    let req = booking(vec![gpus[0], gpus[1]], period(hour_from_now(6), 1));
    let first = c
        .create_booking(context::current(), login.token.clone(), req.clone())
        .await
        .expect("rpc")
        .expect("book");
    let again = c
        .create_booking(context::current(), login.token.clone(), req)
        .await
        .expect("rpc")
        .expect("a retry is not a conflict with itself");
    assert_eq!(first.booking_id, again.booking_id);
    assert_eq!(again.reservations.len(), 2);
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn owners_and_admins_change_reservations_and_others_cannot() {
    let (daemon, gpus) = daemon_with_gpus(1).await;
    let (admin, admin_login) = daemon.admin("boss@lab.kr", "Boss").await.expect("admin");
    let (alice, a) = daemon.user("alice@lab.kr", "Alice").await.expect("user");
    let (mallory, m) = daemon
        .user("mallory@lab.kr", "Mallory")
        .await
        .expect("user");
    let start = hour_from_now(8);
    let r = alice
        .create_booking(
            context::current(),
            a.token.clone(),
            booking(vec![gpus[0]], period(start, 2)),
        )
        .await
        .expect("rpc")
        .expect("book")
        .reservations
        .remove(0);

    let extend = ReservationChange {
        end: Some(start + TimeDelta::hours(3)),
        ..Default::default()
    };
    let denied = [
        mallory
            .update_reservation(context::current(), m.token.clone(), r.id, extend.clone())
            .await
            .expect("rpc"),
        mallory
            .cancel_reservation(context::current(), m.token.clone(), r.id)
            .await
            .expect("rpc"),
        mallory
            .release_now(context::current(), m.token.clone(), r.id)
            .await
            .expect("rpc"),
    ];
    for result in denied {
        assert_eq!(
            result.expect_err("not the owner"),
            ApiError::PermissionDenied
        );
    }
    assert_eq!(
        mallory
            .list_users(context::current(), m.token.clone(), None, 0)
            .await
            .expect("rpc")
            .expect_err("admin only"),
        ApiError::PermissionDenied
    );
    assert_eq!(
        mallory
            .set_role(
                context::current(),
                m.token.clone(),
                "mallory@lab.kr".into(),
                gpures_proto::Role::Admin
            )
            .await
            .expect("rpc")
            .expect_err("admin only"),
        ApiError::PermissionDenied
    );

    // The owner extends and re-notes; moving into the past is refused.
    let changed = alice
        .update_reservation(
            context::current(),
            a.token.clone(),
            r.id,
            ReservationChange {
                note: Some("fine-tuning".into()),
                ..extend
            },
        )
        .await
        .expect("rpc")
        .expect("extend");
    assert_eq!(changed.period.end, start + TimeDelta::hours(3));
    assert_eq!(changed.note, "fine-tuning");
    let err = alice
        .update_reservation(
            context::current(),
            a.token.clone(),
            r.id,
            ReservationChange {
                start: Some(hour_from_now(-2)),
                ..Default::default()
            },
        )
        .await
        .expect("rpc")
        .expect_err("past start");
    assert!(matches!(err, ApiError::InvalidArgument { .. }), "{err:?}");
    // Not started: release is refused, cancel works (by an admin here).
    let err = alice
        .release_now(context::current(), a.token.clone(), r.id)
        .await
        .expect("rpc")
        .expect_err("not started");
    assert!(matches!(err, ApiError::InvalidArgument { .. }), "{err:?}");
    // An admin must say why; the owner is shown the reason.
    let err = admin
        .cancel_reservation(context::current(), admin_login.token.clone(), r.id)
        .await
        .expect("rpc")
        .expect_err("no reason");
    assert!(
        matches!(err, ApiError::InvalidArgument { ref field, .. } if field == "reason"),
        "{err:?}"
    );
    for bad in ["", "   ", "\u{1b}[2J"] {
        let err = admin
            .change_with_reason(
                context::current(),
                admin_login.token.clone(),
                gpures_proto::ChangeTarget::Reservation(r.id),
                gpures_proto::ChangeKind::Cancel,
                bad.into(),
            )
            .await
            .expect("rpc")
            .expect_err("an empty reason");
        assert!(matches!(err, ApiError::InvalidArgument { .. }), "{err:?}");
    }
    let cancelled = admin
        .change_with_reason(
            context::current(),
            admin_login.token.clone(),
            gpures_proto::ChangeTarget::Reservation(r.id),
            gpures_proto::ChangeKind::Cancel,
            "the node goes down for maintenance".into(),
        )
        .await
        .expect("rpc")
        .expect("admin cancels with a reason");
    assert_eq!(cancelled[0].status, ReservationStatus::Cancelled);
    let seen = alice
        .find_reservations(
            context::current(),
            a.token.clone(),
            gpures_proto::Lookup::Id(r.id),
        )
        .await
        .expect("rpc")
        .expect("find");
    assert_eq!(
        seen[0].change_reason.as_deref(),
        Some("the node goes down for maintenance"),
        "the owner sees why"
    );
    let err = alice
        .cancel_reservation(context::current(), a.token.clone(), r.id)
        .await
        .expect("rpc")
        .expect_err("already cancelled");
    assert!(matches!(err, ApiError::InvalidArgument { .. }), "{err:?}");
    let err = alice
        .cancel_reservation(context::current(), a.token.clone(), Uuid::new_v4())
        .await
        .expect("rpc")
        .expect_err("unknown id");
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");

    // A running reservation is released now by its owner and then is over.
    let now_min = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc");
    let running = alice
        .create_booking(
            context::current(),
            a.token.clone(),
            booking(
                vec![gpus[0]],
                Period {
                    start: now_min - TimeDelta::minutes(1),
                    end: now_min + TimeDelta::hours(1),
                },
            ),
        )
        .await
        .expect("rpc")
        .expect("book now")
        .reservations
        .remove(0);
    let released = alice
        .release_now(context::current(), a.token.clone(), running.id)
        .await
        .expect("rpc")
        .expect("release");
    assert!(released.period.end <= Utc::now());
    let err = alice
        .update_reservation(
            context::current(),
            a.token.clone(),
            running.id,
            ReservationChange {
                note: Some("x".into()),
                ..Default::default()
            },
        )
        .await
        .expect("rpc")
        .expect_err("over");
    assert!(matches!(err, ApiError::InvalidArgument { .. }), "{err:?}");

    // Every change left an audit row and a calendar outbox row.
    let audits: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE reservation_id IS NOT NULL")
            .fetch_one(daemon.store.pool())
            .await
            .expect("count");
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM calendar_outbox")
        .fetch_one(daemon.store.pool())
        .await
        .expect("count");
    assert_eq!(audits, 5, "create, update, cancel, create, release");
    assert_eq!(outbox, 5);
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn a_change_wakes_a_waiting_client_within_a_second() {
    let (daemon, gpus) = daemon_with_gpus(1).await;
    let (watcher, w) = daemon.user("watch@lab.kr", "Watcher").await.expect("user");
    let (booker, b) = daemon.user("book@lab.kr", "Booker").await.expect("user");
    let since = gpures_testkit::change_version(&watcher, &w.token).await;
    let token = w.token.clone();
    let waiting = tokio::spawn(async move {
        let mut ctx = context::current();
        ctx.deadline = std::time::Instant::now() + Duration::from_secs(30);
        let started = std::time::Instant::now();
        let next = watcher
            .wait_for_changes(ctx, token, since)
            .await
            .expect("rpc")
            .expect("value");
        (next, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    booker
        .create_booking(
            context::current(),
            b.token.clone(),
            booking(vec![gpus[0]], period(hour_from_now(10), 1)),
        )
        .await
        .expect("rpc")
        .expect("book");
    let (next, waited) = waiting.await.expect("task");
    assert_ne!(next.version, since);
    assert!(
        waited < Duration::from_secs(5),
        "woken by the change, not the timeout: {waited:?}"
    );
    daemon.stop().await.expect("stop");
}

/// Waits (up to 10 s) until the changes after `since` satisfy `done`;
/// asks from `since` every time, so the delta covers every change since.
async fn changes_until(
    c: &GpuresClient,
    token: &str,
    since: u64,
    done: impl Fn(&gpures_proto::Changes) -> bool,
) -> gpures_proto::Changes {
    let t = std::time::Instant::now();
    loop {
        let mut ctx = context::current();
        ctx.deadline = std::time::Instant::now() + Duration::from_secs(2);
        let got = c
            .wait_for_changes(ctx, token.to_owned(), since)
            .await
            .expect("rpc")
            .expect("changes");
        if done(&got) {
            return got;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not seen in 10 s: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn changes_come_as_deltas_of_what_changed() {
    let (daemon, gpus) = daemon_with_gpus(2).await;
    let (watcher, w) = daemon
        .user("watch@lab.kr", "지켜보는 사람")
        .await
        .expect("user");
    let (booker, b) = daemon.user("book@lab.kr", "Booker").await.expect("user");
    let (admin, a) = daemon.admin("admin@lab.kr", "Admin").await.expect("admin");

    // The first answer is a version to follow from, and "reload".
    let first = watcher
        .wait_for_changes(context::current(), w.token.clone(), 0)
        .await
        .expect("rpc")
        .expect("first");
    assert_eq!(first.delta, None);
    // A version this daemon never gave: reload too.
    let stranger = watcher
        .wait_for_changes(
            context::current(),
            w.token.clone(),
            first.version ^ 0xdead_0000,
        )
        .await
        .expect("rpc")
        .expect("unknown version");
    assert_eq!((stranger.version, stranger.delta), (first.version, None));
    // Nothing changed: the same version, an empty delta, after the wait.
    let mut short = context::current();
    short.deadline = std::time::Instant::now() + Duration::from_millis(1500);
    let quiet = watcher
        .wait_for_changes(short, w.token.clone(), first.version)
        .await
        .expect("rpc")
        .expect("quiet");
    assert_eq!(quiet.version, first.version);
    assert!(quiet.delta.is_some_and(|d| d.is_empty()));

    // Two GPUs booked from now: both rows, and both GPUs' status showing
    // the booker as the holder.
    let now = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc");
    let booked = booker
        .create_booking(
            context::current(),
            b.token.clone(),
            booking(gpus.clone(), period(now, 1)),
        )
        .await
        .expect("rpc")
        .expect("book");
    let mut ids: Vec<Uuid> = booked.reservations.iter().map(|r| r.id).collect();
    ids.sort();
    let got = changes_until(&watcher, &w.token, first.version, |c| {
        c.delta.as_ref().is_some_and(|d| d.reservations.len() == 2)
    })
    .await;
    let delta = got.delta.expect("delta");
    let mut seen: Vec<Uuid> = delta.reservations.iter().map(|r| r.id).collect();
    seen.sort();
    assert_eq!(seen, ids);
    assert_eq!(delta.reservations, {
        let mut rs = booked.reservations.clone();
        rs.sort_by_key(|r| delta.reservations.iter().position(|d| d.id == r.id));
        rs
    });
    assert_eq!(delta.status.len(), 2);
    for s in &delta.status {
        let holder = s.current.as_ref().expect("held now");
        assert!(ids.contains(&holder.id), "{s:?}");
    }
    assert!(!delta.queue && !delta.inbox && !delta.calendar);

    // An admin cancels one with a reason: the row comes cancelled, its GPU
    // free; the booker is told (their inbox), the watcher is not.
    let v1 = got.version;
    let b_since = gpures_testkit::change_version(&booker, &b.token).await;
    let target = booked.reservations[0].clone();
    admin
        .change_with_reason(
            context::current(),
            a.token.clone(),
            gpures_proto::ChangeTarget::Reservation(target.id),
            gpures_proto::ChangeKind::Cancel,
            "maintenance on the PSU".into(),
        )
        .await
        .expect("rpc")
        .expect("cancel");
    let got = changes_until(&watcher, &w.token, v1, |c| {
        c.delta.as_ref().is_some_and(|d| !d.reservations.is_empty())
    })
    .await;
    let delta = got.delta.expect("delta");
    assert_eq!(delta.reservations.len(), 1);
    assert_eq!(delta.reservations[0].id, target.id);
    assert_eq!(delta.reservations[0].status, ReservationStatus::Cancelled);
    assert_eq!(
        delta.reservations[0].change_reason.as_deref(),
        Some("maintenance on the PSU")
    );
    let freed = delta
        .status
        .iter()
        .find(|s| s.resource.id == target.resource_id)
        .expect("the GPU's status");
    assert_eq!(freed.current, None);
    assert!(!delta.inbox, "someone else's notification is not ours");
    let told = changes_until(&booker, &b.token, b_since, |c| {
        c.delta.as_ref().is_some_and(|d| d.inbox)
    })
    .await;
    assert!(told.delta.is_some_and(|d| d.reservations.len() == 1));

    // Joining the queue is a queue change.
    let v2 = got.version;
    watcher
        .enqueue(
            context::current(),
            w.token.clone(),
            gpures_proto::QueueRequest {
                request_id: Uuid::new_v4(),
                gpus: 2,
                length_minutes: 30,
                host: None,
                until: None,
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("enqueue");
    let got = changes_until(&watcher, &w.token, v2, |c| {
        c.delta.as_ref().is_some_and(|d| d.queue)
    })
    .await;
    // A new resource is not a delta: everyone reloads.
    let v3 = got.version;
    admin
        .create_resource(
            context::current(),
            a.token.clone(),
            gpures_proto::NewResource {
                name: "spare".into(),
                host: "testhost".into(),
                kind: gpures_proto::ResourceKind::Server,
                gpu_index: None,
                gpu_uuid: None,
                description: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("resource");
    changes_until(&watcher, &w.token, v3, |c| c.delta.is_none()).await;
    daemon.stop().await.expect("stop");
}

/// Who, what, which GPU and the detail of an audit row.
type AuditRow = (Option<i64>, String, String, Option<i64>, String);

/// The one-round-trip booking (no rule applies) and the statement-by-
/// statement path (a rule applies) write the same rows: reservation,
/// outbox, audit, and the same announcement.
#[tokio::test]
async fn both_booking_paths_write_the_same_rows() {
    let (daemon, gpus) = daemon_with_gpus(2).await;
    let (fast, f) = daemon.user("fast@lab.kr", "Fast").await.expect("user");
    let (full, g) = daemon.user("full@lab.kr", "Full").await.expect("user");
    let (admin, a) = daemon.admin("admin@lab.kr", "Admin").await.expect("admin");
    admin
        .set_policy(
            context::current(),
            a.token.clone(),
            gpures_proto::PolicySet {
                rule: gpures_proto::PolicyRule::MaxGpus,
                target: gpures_proto::PolicyTarget::User("full@lab.kr".into()),
                host: None,
                value: Some(8),
                threshold: None,
            },
        )
        .await
        .expect("rpc")
        .expect("a rule for one member only");
    let since = gpures_testkit::change_version(&fast, &f.token).await;
    let mut made = Vec::new();
    for (c, login, hours) in [(&fast, &f, 3), (&full, &g, 6)] {
        let b = c
            .create_booking(
                context::current(),
                login.token.clone(),
                BookingRequest {
                    request_id: Uuid::new_v4(),
                    resources: gpus.clone(),
                    period: period(hour_from_now(hours), 1),
                    note: "같은 줄".into(),
                },
            )
            .await
            .expect("rpc")
            .expect("book");
        assert_eq!(b.reservations.len(), 2);
        assert!(b.reservations.iter().all(|r| r.booking_id == b.booking_id));
        let on: Vec<i64> = b.reservations.iter().map(|r| r.resource_id).collect();
        assert_eq!(on, gpus, "in the order asked");
        made.push(b);
    }
    let shape = |r: &gpures_proto::Reservation| {
        (
            r.resource_id,
            r.note.clone(),
            r.status,
            r.sync.clone(),
            r.pending.clone(),
            r.series_id,
            r.period.end - r.period.start,
        )
    };
    let shapes: Vec<Vec<_>> = made
        .iter()
        .map(|b| b.reservations.iter().map(shape).collect())
        .collect();
    assert_eq!(shapes[0], shapes[1]);
    for b in &made {
        let user = b.reservations[0].user.id;
        for r in &b.reservations {
            let audit: Vec<AuditRow> = sqlx::query_as(
                "SELECT actor_id, actor_unix_user, action, resource_id, detail::text
                       FROM audit_log WHERE reservation_id = $1",
            )
            .bind(r.id)
            .fetch_all(daemon.store.pool())
            .await
            .expect("audit");
            assert_eq!(
                audit,
                vec![(
                    Some(user),
                    "root".to_owned(),
                    "reservation.create".to_owned(),
                    Some(r.resource_id),
                    "{}".to_owned()
                )]
            );
            let outbox: Vec<String> = sqlx::query_scalar(
                "SELECT operation FROM calendar_outbox WHERE reservation_id = $1",
            )
            .bind(r.id)
            .fetch_all(daemon.store.pool())
            .await
            .expect("outbox");
            assert_eq!(outbox, ["upsert"]);
        }
    }
    // Each announced its own reservations.
    let got = changes_until(&fast, &f.token, since, |c| {
        c.delta.as_ref().is_some_and(|d| d.reservations.len() == 4)
    })
    .await;
    let announced: Vec<Uuid> = got
        .delta
        .expect("delta")
        .reservations
        .iter()
        .map(|r| r.id)
        .collect();
    let booked: Vec<Uuid> = made
        .iter()
        .flat_map(|b| b.reservations.iter().map(|r| r.id))
        .collect();
    assert_eq!(announced, booked);
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn timeline_and_status_show_holders() {
    let (daemon, gpus) = daemon_with_gpus(2).await;
    let (c, login) = daemon.user("choi@lab.kr", "최유진").await.expect("user");
    let now_min = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc");
    c.create_booking(
        context::current(),
        login.token.clone(),
        booking(
            vec![gpus[0]],
            Period {
                start: now_min,
                end: now_min + TimeDelta::hours(2),
            },
        ),
    )
    .await
    .expect("rpc")
    .expect("now");
    c.create_booking(
        context::current(),
        login.token.clone(),
        booking(vec![gpus[0]], period(hour_from_now(5), 1)),
    )
    .await
    .expect("rpc")
    .expect("later");
    let status = c
        .status(context::current(), login.token.clone(), None)
        .await
        .expect("rpc")
        .expect("status");
    let gpu0 = status
        .resources
        .iter()
        .find(|s| s.resource.id == gpus[0])
        .expect("gpu0");
    assert_eq!(
        gpu0.current.as_ref().map(|r| r.user.display_name.as_str()),
        Some("최유진")
    );
    assert!(gpu0.next.is_some());
    let gpu1 = status
        .resources
        .iter()
        .find(|s| s.resource.id == gpus[1])
        .expect("gpu1");
    assert!(gpu1.current.is_none() && gpu1.next.is_none());
    let window = Period {
        start: now_min - TimeDelta::days(1),
        end: now_min + TimeDelta::days(6),
    };
    let tl = c
        .timeline(
            context::current(),
            login.token.clone(),
            window,
            gpures_proto::PageRequest::default(),
        )
        .await
        .expect("rpc")
        .expect("timeline");
    assert_eq!(tl.resources.len(), 2);
    assert_eq!(tl.reservations.len(), 2);
    let holders = c
        .check_availability(
            context::current(),
            login.token.clone(),
            vec![gpus[0], gpus[1]],
            period(hour_from_now(5), 1),
            None,
        )
        .await
        .expect("rpc")
        .expect("check");
    assert_eq!(holders.len(), 1);
    let bad = c
        .timeline(
            context::current(),
            login.token.clone(),
            Period {
                start: now_min,
                end: now_min - TimeDelta::hours(1),
            },
            gpures_proto::PageRequest::default(),
        )
        .await
        .expect("rpc")
        .expect_err("inverted window");
    assert!(matches!(bad, ApiError::InvalidArgument { .. }));
    daemon.stop().await.expect("stop");
}

/// Every reservation of `window`, page after page as the TUI asks (the
/// first page at most `PAGE_MAX`, later ones `TIMELINE_PAGE_MAX`); the
/// number of reservations in each page.
async fn timeline_pages(
    c: &gpures_proto::GpuresClient,
    token: &str,
    window: Period,
) -> (Vec<Uuid>, Vec<usize>) {
    let mut page = gpures_proto::PageRequest {
        after: None,
        limit: limits::PAGE_MAX,
    };
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    loop {
        let tl = c
            .timeline(context::current(), token.to_owned(), window, page.clone())
            .await
            .expect("a page that fits the frame")
            .expect("timeline");
        sizes.push(tl.reservations.len());
        ids.extend(tl.reservations.iter().map(|r| r.id));
        match tl.next {
            Some(after) => {
                page.after = Some(after);
                page.limit = limits::TIMELINE_PAGE_MAX;
            }
            None => return (ids, sizes),
        }
    }
}

/// A large window comes in few round trips: pages after the first carry up
/// to `TIMELINE_PAGE_MAX` reservations, but a page of 500-character Korean
/// notes ends early at about `PAGE_BYTES_MAX`, so it still fits the frame;
/// every reservation comes exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_timeline_comes_in_pages_that_fit_the_frame() {
    let (daemon, gpus) = daemon_with_gpus(2).await;
    let (c, login) = daemon.user("kang@lab.kr", "강민서").await.expect("user");
    let me = c
        .whoami(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("whoami")
        .id;
    let start = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::days(2);
    // One-minute reservations: 2,500 without a note on one GPU the first
    // day, 1,200 with the longest note on the other the next day.
    let fill = |gpu: i64, from: DateTime<Utc>, n: i32, note: String| {
        sqlx::query(
            "INSERT INTO reservations (id, booking_id, user_id, resource_id, period, note)
             SELECT gen_random_uuid(), gen_random_uuid(), $1, $2,
                    tstzrange($3 + make_interval(mins => k), $3 + make_interval(mins => k + 1), '[)'), $4
               FROM generate_series(0, $5 - 1) k",
        )
        .bind(me)
        .bind(gpu)
        .bind(from)
        .bind(note)
        .bind(n)
        .execute(daemon.store.pool())
    };
    fill(gpus[0], start, 2_500, String::new())
        .await
        .expect("short");
    let long_day = start + TimeDelta::days(1) + TimeDelta::hours(18);
    fill(
        gpus[1],
        long_day,
        1_200,
        "가".repeat(limits::NOTE_MAX_CHARS),
    )
    .await
    .expect("long");
    let pool = daemon.store.pool().clone();
    let expected = |from: DateTime<Utc>, to: DateTime<Utc>| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "SELECT r.id FROM reservations r JOIN resources res ON res.id = r.resource_id
              WHERE r.period && tstzrange($1, $2, '[)')
              ORDER BY lower(r.period), res.name, r.id",
            )
            .bind(from)
            .bind(to)
            .fetch_all(&pool)
            .await
            .expect("ids")
        }
    };

    let short = Period {
        start,
        end: start + TimeDelta::minutes(2_500),
    };
    let (ids, sizes) = timeline_pages(&c, &login.token, short).await;
    assert_eq!(ids, expected(short.start, short.end).await);
    assert_eq!(
        sizes,
        vec![200, 1_000, 1_000, 300],
        "short notes: full pages after the first"
    );

    let long = Period {
        start: long_day,
        end: long_day + TimeDelta::days(1),
    };
    let (ids, sizes) = timeline_pages(&c, &login.token, long).await;
    assert_eq!(ids, expected(long.start, long.end).await);
    assert_eq!(ids.len(), 1_200);
    assert_eq!(sizes[0], 200);
    assert!(
        sizes.len() > 3 && sizes[1..].iter().all(|&n| n < 500),
        "long notes: later pages end by size, not at {}: {sizes:?}",
        limits::TIMELINE_PAGE_MAX
    );
    daemon.stop().await.expect("stop");
}

/// 400 GPUs with the longest descriptions, each held now and booked next
/// by reservations with the longest notes, in 4-byte characters (hanja of
/// CJK extension B): about 2.5 MB of status, and 800 KB of resources before
/// the timeline's first reservation. Both come in pages that each fit the
/// frame, with everything once, in order.
#[tokio::test]
async fn a_large_status_and_timeline_come_in_pages_that_fit_the_frame() {
    let (daemon, _) = daemon_with_gpus(0).await;
    let gpus = daemon
        .host_admin()
        .expect("host admin")
        .add_gpus("big-host", 400)
        .await
        .expect("gpus");
    let (c, login) = daemon.user("seo@lab.kr", "서지우").await.expect("user");
    let me = c
        .whoami(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("whoami")
        .id;
    let pool = daemon.store.pool().clone();
    sqlx::query("UPDATE resources SET description = $1")
        .bind("𠀀".repeat(limits::DESCRIPTION_MAX_CHARS))
        .execute(&pool)
        .await
        .expect("descriptions");
    let now = Utc::now();
    for (from, to) in [
        (now - TimeDelta::hours(1), now + TimeDelta::hours(1)),
        (now + TimeDelta::hours(2), now + TimeDelta::hours(3)),
    ] {
        sqlx::query(
            "INSERT INTO reservations (id, booking_id, user_id, resource_id, period, note)
             SELECT gen_random_uuid(), gen_random_uuid(), $1, id, tstzrange($2, $3, '[)'), $4
               FROM resources",
        )
        .bind(me)
        .bind(from)
        .bind(to)
        .bind("𠀀".repeat(limits::NOTE_MAX_CHARS))
        .execute(&pool)
        .await
        .expect("reservations");
    }

    let mut after = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = c
            .status(context::current(), login.token.clone(), after)
            .await
            .expect("rpc: every page fits the frame")
            .expect("status");
        assert!(
            gpures_proto::framing::encoded_len(&page) < gpures_proto::MAX_FRAME_BYTES,
            "page {pages} fits"
        );
        assert!(!page.resources.is_empty());
        if pages == 0 {
            assert!(!page.hosts.is_empty(), "the hosts come with the first page");
        } else {
            assert!(page.hosts.is_empty());
        }
        for s in &page.resources {
            assert!(
                s.current.is_some() && s.next.is_some(),
                "{}",
                s.resource.name
            );
        }
        seen.extend(page.resources.iter().map(|s| s.resource.id));
        pages += 1;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    // gpu0 … gpu399 on one host, added in index order: the status order.
    assert_eq!(seen, gpus, "every GPU once, in order");

    // The timeline's first page carries the 400 resources too: its
    // reservations get what is left of the page.
    let window = Period {
        start: now - TimeDelta::hours(2),
        end: now + TimeDelta::hours(4),
    };
    let mut page = gpures_proto::PageRequest {
        after: None,
        limit: limits::PAGE_MAX,
    };
    let mut got = 0;
    let mut pages = 0;
    loop {
        let tl = c
            .timeline(
                context::current(),
                login.token.clone(),
                window,
                page.clone(),
            )
            .await
            .expect("rpc: every page fits the frame")
            .expect("timeline");
        assert!(
            gpures_proto::framing::encoded_len(&tl) < gpures_proto::MAX_FRAME_BYTES,
            "timeline page {pages} fits"
        );
        if pages == 0 {
            assert_eq!(tl.resources.len(), 400);
        }
        got += tl.reservations.len();
        pages += 1;
        match tl.next {
            Some(next) => {
                page.after = Some(next);
                page.limit = limits::TIMELINE_PAGE_MAX;
            }
            None => break,
        }
    }
    assert_eq!(got, 800, "every reservation once");

    // 200 disabled resources more: the 600 are more than one frame, and
    // the listing (inactive ones included) comes in pages too.
    sqlx::query(
        "INSERT INTO resources (name, host, kind, gpu_index, description, active)
         SELECT format('old-gpu%s', i), 'old-host', 'gpu', i, $1, false
           FROM generate_series(0, 199) i",
    )
    .bind("𠀀".repeat(limits::DESCRIPTION_MAX_CHARS))
    .execute(&pool)
    .await
    .expect("disabled resources");
    async fn every_page(
        c: &GpuresClient,
        token: &str,
        inactive: bool,
    ) -> (Vec<(String, Option<i32>)>, usize) {
        let (mut after, mut listed, mut bytes) = (None, Vec::new(), 0);
        loop {
            let page = c
                .list_resources(context::current(), token.to_owned(), inactive, after)
                .await
                .expect("rpc: every page fits the frame")
                .expect("resources");
            let len = gpures_proto::framing::encoded_len(&page);
            assert!(len < gpures_proto::MAX_FRAME_BYTES, "a resource page fits");
            assert!(!page.resources.is_empty());
            bytes += len;
            listed.extend(page.resources.into_iter().map(|r| (r.host, r.gpu_index)));
            match page.next {
                Some(next) => after = Some(next),
                None => return (listed, bytes),
            }
        }
    }
    let (listed, bytes) = every_page(&c, &login.token, true).await;
    assert!(
        bytes > gpures_proto::MAX_FRAME_BYTES,
        "one reply would not fit ({bytes} bytes)"
    );
    let active: Vec<(String, Option<i32>)> =
        (0..400).map(|i| ("big-host".to_owned(), Some(i))).collect();
    let disabled = (0..200).map(|i| ("old-host".to_owned(), Some(i)));
    let every: Vec<_> = active.iter().cloned().chain(disabled).collect();
    assert_eq!(listed, every, "every resource once, in status order");
    let (listed, _) = every_page(&c, &login.token, false).await;
    assert_eq!(listed, active, "without the disabled ones");
    daemon.stop().await.expect("stop");
}
