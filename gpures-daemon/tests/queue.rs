//! The fair queue on the real daemon: first come first served, backfill that
//! never delays the head, a grant within a second of a release, exactly one
//! grant per request with two daemons on one database, and bad requests
//! refused with nothing queued.

use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_proto::{
    ApiError, BookingRequest, GpuresClient, LoginReply, Period, QueueEntry, QueueRequest,
    QueueState,
};
use gpures_testkit::{TestDaemon, fresh_database_url};
use tarpc::context;
use uuid::Uuid;

fn request(gpus: u32, minutes: u32) -> QueueRequest {
    QueueRequest {
        request_id: Uuid::new_v4(),
        gpus,
        length_minutes: minutes,
        host: None,
        until: None,
        note: String::new(),
    }
}

async fn enqueue(c: &GpuresClient, who: &LoginReply, gpus: u32, minutes: u32) -> QueueEntry {
    c.enqueue(
        context::current(),
        who.token.clone(),
        request(gpus, minutes),
    )
    .await
    .expect("rpc")
    .expect("enqueue")
}

async fn state_of(c: &GpuresClient, who: &LoginReply, id: Uuid) -> QueueEntry {
    c.queue(context::current(), who.token.clone())
        .await
        .expect("rpc")
        .expect("queue")
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("{id} is not listed"))
}

/// Waits up to `within` for request `id` to be granted; returns how long.
async fn granted_within(
    c: &GpuresClient,
    who: &LoginReply,
    id: Uuid,
    within: Duration,
) -> Duration {
    let t = Instant::now();
    loop {
        let e = state_of(c, who, id).await;
        if e.state == QueueState::Granted {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "{id} not granted in {within:?}: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn book(c: &GpuresClient, who: &LoginReply, gpus: &[i64], minutes: i64) -> Uuid {
    let start = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc");
    c.create_booking(
        context::current(),
        who.token.clone(),
        BookingRequest {
            request_id: Uuid::new_v4(),
            resources: gpus.to_vec(),
            period: Period {
                start,
                end: start + TimeDelta::minutes(minutes),
            },
            note: String::new(),
        },
    )
    .await
    .expect("rpc")
    .expect("book")
    .booking_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_is_never_starved_and_backfill_never_delays_it() {
    let daemon = TestDaemon::builder()
        .with_gpus(8)
        .start()
        .await
        .expect("daemon");
    let g = daemon.gpus.clone();
    let (a, alice) = daemon.user("alice@lab.kr", "Alice").await.expect("user");
    let (b, bob) = daemon.user("bob@lab.kr", "Bob").await.expect("user");
    let (c, carol) = daemon.user("carol@lab.kr", "Carol").await.expect("user");
    // Alice holds gpu0–5 for 2 h and gpu6–7 for 1 h.
    let six = book(&a, &alice, &g[..6], 120).await;
    let two = book(&a, &alice, &g[6..], 60).await;

    // Bob waits for 4 GPUs for an hour: the head, due when gpu0–5 free.
    let head = enqueue(&b, &bob, 4, 60).await;
    assert_eq!(head.state, QueueState::Waiting);
    assert_eq!(head.position, Some(1));
    let due = head.estimated_start.expect("an estimate");
    assert!(
        due >= Utc::now() + TimeDelta::minutes(110),
        "the head can start when gpu0–5 free: {due}"
    );
    // Carol's short request and a stream of long 1-GPU requests queue behind.
    let short = enqueue(&c, &carol, 1, 30).await;
    let mut long = Vec::new();
    for _ in 0..3 {
        long.push(enqueue(&c, &carol, 1, 180).await);
    }
    assert_eq!(short.position, Some(2));

    // Alice frees gpu6–7: the short request ends before the head could
    // start, so it may go first; the long ones would delay the head: they wait.
    a.release_booking(context::current(), alice.token.clone(), two)
        .await
        .expect("rpc")
        .expect("release");
    granted_within(&c, &carol, short.id, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for l in &long {
        assert_eq!(
            state_of(&c, &carol, l.id).await.state,
            QueueState::Waiting,
            "a 1-GPU request ending after the head's start does not jump it"
        );
    }
    assert_eq!(state_of(&b, &bob, head.id).await.state, QueueState::Waiting);

    // Alice releases the rest: the head is granted within a second, then
    // the 1-GPU requests in order as far as GPUs remain (8 − 1 − 4 = 3).
    a.release_booking(context::current(), alice.token.clone(), six)
        .await
        .expect("rpc")
        .expect("release");
    let took = granted_within(&b, &bob, head.id, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "granted in {took:?}");
    for l in &long {
        granted_within(&c, &carol, l.id, Duration::from_secs(2)).await;
    }
    let granted = state_of(&b, &bob, head.id).await;
    let booking = granted.booking_id.expect("a booking");
    let rs = b
        .find_reservations(
            context::current(),
            bob.token.clone(),
            gpures_proto::Lookup::Booking(booking),
        )
        .await
        .expect("rpc")
        .expect("find");
    assert_eq!(rs.len(), 4, "all or nothing: four GPUs");
    assert!(rs.iter().all(|r| r.user.email == "bob@lab.kr"));
    assert!(rs[0].period.start <= Utc::now());
    assert_eq!(daemon.overlapping_pairs().await.expect("query"), 0);
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_grant_each_request_once() {
    let url = fresh_database_url().await.expect("database");
    let one = TestDaemon::builder()
        .database(url.clone())
        .host("gpu01")
        .with_gpus(4)
        .start()
        .await
        .expect("daemon one");
    let two = TestDaemon::start_on(url, "gpu02", |_| {})
        .await
        .expect("daemon two");
    let g = one.gpus.clone();
    let (a, alice) = one.user("alice@lab.kr", "Alice").await.expect("user");
    let holding = book(&a, &alice, &g, 60).await;
    let mut waiting = Vec::new();
    for i in 0..8 {
        let d = if i % 2 == 0 { &one } else { &two };
        let (c, who) = d
            .user(&format!("m{i}@lab.kr"), &format!("M{i}"))
            .await
            .expect("user");
        let e = enqueue(&c, &who, 1, 30).await;
        assert_eq!(e.state, QueueState::Waiting);
        waiting.push((c, who, e.id));
    }
    a.release_booking(context::current(), alice.token.clone(), holding)
        .await
        .expect("rpc")
        .expect("release");
    // Four GPUs: the first four requests get one each, the rest wait.
    for (c, who, id) in &waiting[..4] {
        granted_within(c, who, *id, Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (c, who, id) in &waiting[4..] {
        assert_eq!(state_of(c, who, *id).await.state, QueueState::Waiting);
    }
    let asked: Vec<Uuid> = waiting.iter().map(|w| w.2).collect();
    let per_request: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT request_id, count(*) FROM reservations WHERE request_id = ANY($1)
         GROUP BY request_id",
    )
    .bind(&asked)
    .fetch_all(one.store.pool())
    .await
    .expect("query");
    let granted: Vec<Uuid> = waiting[..4].iter().map(|w| w.2).collect();
    assert_eq!(per_request.len(), 4, "{per_request:?}");
    for (request, n) in per_request {
        assert!(granted.contains(&request));
        assert_eq!(n, 1, "one grant per request");
    }
    assert_eq!(one.overlapping_pairs().await.expect("query"), 0);
    two.stop().await.expect("stop");
    one.stop().await.expect("stop");
}

#[tokio::test]
async fn bad_requests_queue_nothing_and_only_the_owner_cancels() {
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let (c, kim) = daemon.user("kim@lab.kr", "Kim").await.expect("user");
    let (o, lee) = daemon.user("lee@lab.kr", "Lee").await.expect("user");
    for (req, field) in [
        (request(0, 60), "gpus"),
        (request(3, 60), "gpus"),
        (request(1, 0), "length"),
        (request(1, 15 * 24 * 60), "length"),
        (
            QueueRequest {
                until: Some(Utc::now() - TimeDelta::minutes(1)),
                ..request(1, 60)
            },
            "until",
        ),
        (
            QueueRequest {
                host: Some("nowhere".into()),
                ..request(1, 60)
            },
            "host",
        ),
    ] {
        let err = c
            .enqueue(context::current(), kim.token.clone(), req.clone())
            .await
            .expect("rpc")
            .expect_err("refused");
        assert!(
            matches!(err, ApiError::InvalidArgument { field: ref f, .. } if f == field),
            "{req:?}: {err:?}"
        );
    }
    let listed = c
        .queue(context::current(), kim.token.clone())
        .await
        .expect("rpc")
        .expect("queue");
    assert!(listed.is_empty(), "nothing was queued: {listed:?}");

    // Both GPUs taken: a request waits; only its owner (or an admin) cancels.
    book(&o, &lee, &daemon.gpus, 60).await;
    let mine = enqueue(&c, &kim, 1, 60).await;
    let err = o
        .cancel_queued(context::current(), lee.token.clone(), mine.id)
        .await
        .expect("rpc")
        .expect_err("not Lee's");
    assert_eq!(err, ApiError::PermissionDenied);
    let cancelled = c
        .cancel_queued(context::current(), kim.token.clone(), mine.id)
        .await
        .expect("rpc")
        .expect("cancel");
    assert_eq!(cancelled.state, QueueState::Cancelled);
    let err = c
        .cancel_queued(context::current(), kim.token.clone(), Uuid::new_v4())
        .await
        .expect("rpc")
        .expect_err("unknown");
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    daemon.stop().await.expect("stop");

    // A request whose GPUs are free is granted at once.
    let daemon = TestDaemon::builder()
        .with_gpus(1)
        .start()
        .await
        .expect("daemon");
    let (c, park) = daemon.user("park@lab.kr", "Park").await.expect("user");
    let now = enqueue(&c, &park, 1, 30).await;
    assert_eq!(now.state, QueueState::Granted, "{now:?}");
    assert!(now.booking_id.is_some());
    daemon.stop().await.expect("stop");
}
