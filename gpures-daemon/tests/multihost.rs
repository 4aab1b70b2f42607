//! A lab of several GPU hosts on one PostgreSQL: two daemons with different
//! host names share one database. 64 clients split across both race for one
//! slot and exactly one wins; a booking made through daemon A wakes a
//! `wait_for_changes` waiting on daemon B within a second; each daemon's
//! resources carry its host name.

use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_proto::{ApiError, BookingRequest, NewResource, Period, ResourceKind};
use gpures_testkit::{TestDaemon, fresh_database_url};
use tarpc::context;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_share_one_schedule() {
    let url = fresh_database_url().await.expect("database");
    let a = TestDaemon::start_on(url.clone(), "gpu01", |_| {})
        .await
        .expect("daemon A");
    let b = TestDaemon::start_on(url, "gpu02", |_| {})
        .await
        .expect("daemon B");
    let (admin_a, login) = a.admin("admin@lab.kr", "Admin").await.expect("admin");
    // One login for every host: the signing keys live in the database.
    let admin_b = b.client().await.expect("client");
    let login_b = login.clone();
    assert_eq!(
        admin_b
            .whoami(context::current(), login.token.clone())
            .await
            .expect("rpc")
            .expect("A's token on B")
            .email,
        "admin@lab.kr"
    );
    let new = |name: &str| NewResource {
        name: name.into(),
        host: String::new(),
        kind: ResourceKind::Gpu,
        gpu_index: Some(0),
        gpu_uuid: None,
        description: String::new(),
    };
    let on_a = admin_a
        .create_resource(context::current(), login.token.clone(), new("a-gpu0"))
        .await
        .expect("rpc")
        .expect("create on A");
    let on_b = admin_b
        .create_resource(context::current(), login_b.token.clone(), new("b-gpu0"))
        .await
        .expect("rpc")
        .expect("create on B");
    assert_eq!(on_a.host, "gpu01");
    assert_eq!(on_b.host, "gpu02");

    // 64 clients, half on each daemon, race for one slot.
    let slot = {
        let start = Utc::now()
            .duration_trunc(TimeDelta::hours(1))
            .expect("trunc")
            + TimeDelta::hours(3);
        Period {
            start,
            end: start + TimeDelta::hours(1),
        }
    };
    let mut racers = Vec::new();
    for i in 0..64 {
        let daemon = if i % 2 == 0 { &a } else { &b };
        let (client, l) = daemon
            .user(&format!("r{i}@lab.kr"), &format!("Racer {i}"))
            .await
            .expect("user");
        racers.push((client, l.token));
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(racers.len()));
    let tasks: Vec<_> = racers
        .into_iter()
        .map(|(client, token)| {
            let barrier = barrier.clone();
            let gpu = on_a.id;
            tokio::spawn(async move {
                barrier.wait().await;
                client
                    .create_booking(
                        context::current(),
                        token,
                        BookingRequest {
                            request_id: uuid::Uuid::new_v4(),
                            resources: vec![gpu],
                            period: slot,
                            note: String::new(),
                        },
                    )
                    .await
                    .expect("rpc")
            })
        })
        .collect();
    let (mut wins, mut conflicts) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => wins += 1,
            Err(ApiError::Conflict { holders }) => {
                assert_eq!(holders.len(), 1);
                conflicts += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 63));
    assert_eq!(a.overlapping_pairs().await.expect("query"), 0);

    // A booking through A wakes a long poll on B.
    let watcher = b.client().await.expect("client");
    let since = watcher
        .wait_for_changes(context::current(), login_b.token.clone(), 0)
        .await
        .expect("rpc")
        .expect("since");
    let token = login_b.token.clone();
    let waiting = tokio::spawn(async move {
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + Duration::from_secs(30);
        let t0 = Instant::now();
        let v = watcher
            .wait_for_changes(ctx, token, since)
            .await
            .expect("rpc")
            .expect("value");
        (v, t0)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let booked_at = Instant::now();
    admin_a
        .create_booking(
            context::current(),
            login.token.clone(),
            BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![on_b.id],
                period: slot,
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book on A");
    let (value, _) = waiting.await.expect("task");
    let lag = booked_at.elapsed();
    assert_ne!(value, since);
    assert!(
        lag < Duration::from_secs(1),
        "woken {lag:?} after the booking"
    );
    // Status through either daemon shows both hosts' resources.
    let status = admin_b
        .status(context::current(), login_b.token.clone())
        .await
        .expect("rpc")
        .expect("status");
    let hosts: Vec<&str> = status
        .resources
        .iter()
        .map(|r| r.resource.host.as_str())
        .collect();
    assert!(
        hosts.contains(&"gpu01") && hosts.contains(&"gpu02"),
        "{hosts:?}"
    );
    // Disabling an account through A ends its session on B at once (B's
    // cache of accounts is invalidated by NOTIFY).
    let (carol, carol_login) = b.user("carol@lab.kr", "Carol").await.expect("user");
    for _ in 0..3 {
        carol
            .whoami(context::current(), carol_login.token.clone())
            .await
            .expect("rpc")
            .expect("whoami on B");
    }
    admin_a
        .disable_user(
            context::current(),
            login.token.clone(),
            "carol@lab.kr".into(),
            false,
            String::new(),
        )
        .await
        .expect("rpc")
        .expect("disable via A");
    let t0 = Instant::now();
    loop {
        match carol
            .whoami(context::current(), carol_login.token.clone())
            .await
            .expect("rpc")
        {
            Err(ApiError::Unauthenticated) => break,
            Ok(_) => assert!(
                t0.elapsed() < Duration::from_secs(1),
                "B still accepts a disabled account"
            ),
            Err(e) => panic!("unexpected {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await.expect("stop B");
    a.stop().await.expect("stop A");
}
