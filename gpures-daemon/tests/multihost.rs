//! A lab of several GPU hosts on one PostgreSQL: two daemons with different
//! host names share one database. 64 clients split across both race for one
//! slot and exactly one wins; a booking made through daemon A wakes a
//! `wait_for_changes` waiting on daemon B within a second; each daemon's
//! resources carry its host name; `status` follows each host's latest GPU
//! record.

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
    let since = gpures_testkit::change_version(&watcher, &login_b.token).await;
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
    assert_ne!(value.version, since);
    // What changed came with the wake-up, read by B from the database.
    let delta = value.delta.expect("a delta, not a reload");
    assert_eq!(delta.reservations.len(), 1, "{delta:?}");
    assert_eq!(delta.reservations[0].resource_id, on_b.id);
    assert_eq!(delta.status.len(), 1);
    assert_eq!(delta.status[0].resource.id, on_b.id);
    assert!(
        lag < Duration::from_secs(1),
        "woken {lag:?} after the booking"
    );
    // Status through either daemon shows both hosts' resources.
    let status = admin_b
        .status(context::current(), login_b.token.clone(), None)
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

/// One GPU host's record as its daemon writes it, with one card at `busy`
/// percent.
fn record(host: &str, busy: u32) -> gpures_daemon::gpu::HostRecord {
    let now = Utc::now();
    gpures_daemon::gpu::HostRecord {
        host: host.into(),
        backend: "nvml".into(),
        sampled_at: Some(now),
        note: None,
        gpus: vec![gpures_daemon::gpu::StoredGpu {
            telemetry: gpures_proto::GpuTelemetry {
                host: host.into(),
                index: 0,
                uuid: format!("GPU-{host}-0"),
                name: "NVIDIA H100 80GB HBM3".into(),
                sampled_at: now,
                utilization_pct: Some(busy),
                memory_used_mib: Some(1024),
                memory_total_mib: Some(81_559),
                temperature_c: Some(40),
                power_w: Some(120.0),
                history: vec![u8::try_from(busy).unwrap_or(100)],
                processes: Vec::new(),
            },
            last_process_at: None,
            watched_since: now,
        }],
        topology: Vec::new(),
    }
}

/// `status` shows every host's GPUs as their daemons last wrote them: the
/// daemon keeps the records parsed between calls and rereads a host's only
/// when it wrote again, so each write shows at once and a host whose record
/// is gone is gone from the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_each_hosts_latest_telemetry() {
    let d = TestDaemon::start_with(|c| c.gpu.backend = gpures_daemon::gpu::BackendChoice::None)
        .await
        .expect("daemon");
    let (admin, login) = d.admin("admin@lab.kr", "Admin").await.expect("admin");
    // A GPU of a host whose daemon is elsewhere.
    sqlx::query(
        "INSERT INTO resources (name, host, kind, gpu_index, description)
         VALUES ('gpu09-0', 'gpu09', 'gpu', 0, '')",
    )
    .execute(d.store.pool())
    .await
    .expect("resource");
    let busy_shown = || async {
        let s = admin
            .status(context::current(), login.token.clone(), None)
            .await
            .expect("rpc")
            .expect("status");
        let host = s.hosts.iter().any(|h| h.host == "gpu09");
        let busy = s
            .resources
            .iter()
            .find(|r| r.resource.name == "gpu09-0")
            .and_then(|r| r.telemetry.as_ref())
            .and_then(|t| t.utilization_pct);
        (host, busy)
    };
    assert_eq!(busy_shown().await, (false, None), "nothing written yet");
    for busy in [10, 90, 35] {
        let mut conn = d.store.acquire().await.expect("conn");
        gpures_daemon::store::telemetry::put(&mut conn, &record("gpu09", busy))
            .await
            .expect("put");
        drop(conn);
        assert_eq!(
            busy_shown().await,
            (true, Some(busy)),
            "after writing {busy}%"
        );
        // Asked again with nothing written: the same answer.
        assert_eq!(busy_shown().await, (true, Some(busy)));
    }
    sqlx::query("DELETE FROM host_telemetry WHERE host = 'gpu09'")
        .execute(d.store.pool())
        .await
        .expect("delete");
    assert_eq!(
        busy_shown().await,
        (false, None),
        "the host's record is gone"
    );
    d.stop().await.expect("stop");
}
