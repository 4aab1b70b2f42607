//! The daemon under attack and failure: a stalled half frame is cut off;
//! PostgreSQL going away makes calls fail fast with `Unavailable` and the
//! daemon serves again when it returns, without a restart; SIGKILL during a
//! booking load loses nothing a client saw succeed and leaves nothing
//! half-stored; a failover to a promoted standby behind the same address
//! loses no confirmed booking and needs no restart; nothing secret reaches
//! the log.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_daemon::host::pg::{Cluster, ClusterOptions};
use gpures_proto::{ApiError, BookingRequest, Period, RegisterRequest};
use gpures_testkit::{PASSWORD, TestDaemon, connect, fresh_database_url};
use tarpc::context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_gpures-daemon");

fn slot(hours_ahead: i64) -> Period {
    let start = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::hours(hours_ahead);
    Period {
        start,
        end: start + TimeDelta::hours(1),
    }
}

/// A booking of `gpu` alone for `period`.
fn one_gpu(gpu: i64, period: Period, note: &str) -> BookingRequest {
    BookingRequest {
        request_id: uuid::Uuid::new_v4(),
        resources: vec![gpu],
        period,
        note: note.to_owned(),
    }
}

#[tokio::test]
async fn a_peer_that_sends_half_a_frame_and_waits_is_disconnected() {
    let daemon = TestDaemon::start_with(|c| c.limits.frame_timeout_secs = 1)
        .await
        .expect("daemon");
    let mut s = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .expect("connect");
    s.write_all(&[0, 0, 0, 200, 1, 2, 3]).await.expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed well before 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "the daemon closed the connection");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    // An idle connection between frames is not cut off.
    let idle = daemon.client().await.expect("client");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    idle.hello(context::current(), gpures_proto::PROTOCOL_VERSION)
        .await
        .expect("rpc")
        .expect("idle connections live on");
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_fast_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .expect("chmod");
    let root = dir.path().join("pg");
    let cluster = tokio::task::spawn_blocking({
        let root = root.clone();
        move || Cluster::start(&root, ClusterOptions { unsafe_fast: true })
    })
    .await
    .expect("join")
    .expect("cluster");
    let socket = cluster.socket_dir().display().to_string();
    let admin_url = format!("postgres://gpures@localhost/postgres?host={socket}&port=5432");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .expect("connect");
    sqlx::query("CREATE DATABASE outage")
        .execute(&mut conn)
        .await
        .expect("create");
    drop(conn);
    let url = format!("postgres://gpures@localhost/outage?host={socket}&port=5432");
    // LISTEN over a URL of its own, as behind pgbouncer in transaction mode.
    let listen_url = format!("{url}&application_name=listen");
    let daemon = TestDaemon::start_on(url, "outage-host", move |c| {
        c.database_listen_url = Some(gpures_daemon::config::Secret::new(listen_url));
    })
    .await
    .expect("daemon");
    let (client, login) = daemon.user("a@lab.kr", "A").await.expect("user");
    assert!(
        listen_session_up(&admin_url).await,
        "LISTEN has a session of its own"
    );
    daemon.store.close().await;
    // Another member's version from before the outage (another account:
    // this one's must not be in the daemon's account cache for the checks
    // below).
    let (watcher, watcher_login) = daemon.user("w@lab.kr", "W").await.expect("user");
    let before = gpures_testkit::change_version(&watcher, &watcher_login.token).await;

    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("stop pg");
    for _ in 0..3 {
        let t = Instant::now();
        let err = client
            .whoami(context::current(), login.token.clone())
            .await
            .expect("the daemon answers")
            .expect_err("no database");
        assert_eq!(err, ApiError::Unavailable);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "fails fast: {:?}",
            t.elapsed()
        );
    }
    // Back again: served without a restart.
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::start(&root, ClusterOptions { unsafe_fast: true })
    })
    .await
    .expect("join")
    .expect("cluster again");
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(Ok(u)) = client.whoami(context::current(), login.token.clone()).await {
            assert_eq!(u.email, "a@lab.kr");
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "served again after PostgreSQL returned");
    // LISTEN comes back on a backoff of its own: the booking below must be
    // announced to it, not made before it is back.
    assert!(listen_session_up(&admin_url).await, "LISTEN re-established");
    // The change listener is back too (LISTEN re-established): a booking
    // made by another member wakes a long poll within a couple of seconds,
    // as an open TUI needs.
    let (other, other_login) = daemon.user("b@lab.kr", "B").await.expect("user");
    let gpu = daemon
        .host_admin()
        .expect("host admin")
        .add_gpus("outage-host", 1)
        .await
        .expect("gpu")[0];
    let mut since = 0;
    let t = Instant::now();
    while since == 0 && t.elapsed() < Duration::from_secs(30) {
        since = gpures_testkit::change_version(&client, &login.token).await;
    }
    let waiter = {
        let (client, token) = (client.clone(), login.token.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let mut since = since;
            loop {
                let now = client
                    .wait_for_changes(context::current(), token.clone(), since)
                    .await
                    .expect("rpc")
                    .expect("long poll");
                // What came before the booking (the GPU added, the gap
                // marked when LISTEN came back) is passed over.
                let booking = now
                    .delta
                    .as_ref()
                    .is_some_and(|d| !d.reservations.is_empty());
                if booking || t.elapsed() > Duration::from_secs(30) {
                    return (now, t.elapsed());
                }
                since = now.version;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    other
        .create_booking(
            context::current(),
            other_login.token.clone(),
            one_gpu(gpu, slot(2), ""),
        )
        .await
        .expect("rpc")
        .expect("booking after the outage");
    let (now, waited) = waiter.await.expect("waiter");
    assert_ne!(now.version, since, "the long poll saw the change");
    assert!(
        now.delta.is_some_and(|d| d.reservations.len() == 1),
        "the booking came as a delta"
    );
    // Notifications may have been missed while the database was away: a
    // client that holds a version from before is told to reload, not given
    // a delta.
    let across = watcher
        .wait_for_changes(context::current(), watcher_login.token.clone(), before)
        .await
        .expect("rpc")
        .expect("across the outage");
    assert_ne!(across.version, before);
    assert_eq!(across.delta, None, "a gap is not replayed as a delta");
    assert!(waited < Duration::from_secs(3), "woken in {waited:?}");
    daemon.stop().await.expect("stop");
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("stop pg");
}

/// Whether the daemon's LISTEN session (`application_name`
/// `gpures-daemon-listen`) is connected to the cluster behind `url`,
/// waiting up to 10 s for it.
async fn listen_session_up(url: &str) -> bool {
    for _ in 0..100 {
        if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(url).await
            && let Ok(1) = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gpures-daemon-listen'",
            )
            .fetch_one(&mut conn)
            .await
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Runs `cmd` as the owner of `like` (the cluster's own user), waits.
fn as_owner_of(like: &std::path::Path, cmd: &mut std::process::Command) -> std::process::Output {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let meta = std::fs::metadata(like).expect("owner");
    cmd.uid(meta.uid())
        .gid(meta.gid())
        .output()
        .expect("run as the cluster's user")
}

/// Streaming replication with a synchronous standby, as OPERATIONS.md
/// describes: the primary crashes, the standby is promoted and the address
/// the daemon uses (here a socket folder behind a symlink, as a floating IP
/// or DNS name would be) moves to it. The daemon serves again without a
/// restart, every booking it confirmed before the crash is there, and a
/// client holding a version from before is told to reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_promoted_standby_loses_no_confirmed_booking() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    // Durable: `unsafe_fast` turns synchronous commit off.
    let primary = tokio::task::spawn_blocking({
        let root = dir.path().join("primary");
        move || Cluster::start(&root, ClusterOptions { unsafe_fast: false })
    })
    .await
    .expect("join")
    .expect("primary");
    let primary_data = dir.path().join("primary/data");
    let owner = std::fs::metadata(&primary_data).expect("data");
    // The server's own folder: PATH may hold only some of its tools.
    let bin = gpures_daemon::host::pg::find_bin_dir().expect("postgres binaries");
    let tool = |name: &str| {
        std::iter::once(bin.join(name))
            .chain(
                std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("bin").join(name)),
            )
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name} is not installed"))
    };

    // The standby: a base backup over the primary's socket, then a server
    // of its own that follows it.
    let standby = dir.path().join("standby");
    let (standby_data, standby_run) = (standby.join("data"), standby.join("run"));
    for d in [&standby, &standby_data, &standby_run] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(d, Some(owner.uid()), Some(owner.gid())).expect("chown");
    }
    let out = as_owner_of(
        &primary_data,
        std::process::Command::new(tool("pg_basebackup"))
            .arg("-D")
            .arg(&standby_data)
            .args([
                "-R", "-X", "stream", "-c", "fast", "-U", "gpures", "-p", "5432",
            ])
            .arg("-h")
            .arg(primary.socket_dir()),
    );
    assert!(
        out.status.success(),
        "pg_basebackup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut standby_server = {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(standby.join("postgres.log")).expect("log");
        std::process::Command::new(tool("postgres"))
            .arg("-D")
            .arg(&standby_data)
            .arg("-k")
            .arg(&standby_run)
            .args([
                "-p",
                "5432",
                "-c",
                "listen_addresses=",
                "-c",
                "max_connections=300",
            ])
            .uid(owner.uid())
            .gid(owner.gid())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("standby")
    };
    // Synchronous: a commit returns once the standby has it.
    let primary_url = |db: &str| {
        format!(
            "postgres://gpures@localhost/{db}?host={}&port=5432",
            primary.socket_dir().display()
        )
    };
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&primary_url("postgres"))
        .await
        .expect("primary");
    let mut streaming = false;
    for _ in 0..150 {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM pg_stat_replication LIMIT 1")
                .fetch_optional(&mut admin)
                .await
                .expect("replication");
        if state.as_deref() == Some("streaming") {
            streaming = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(streaming, "the standby streams from the primary");
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "SELECT pg_reload_conf()",
        "CREATE DATABASE lab",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    drop(admin);

    // The address the daemon knows: moved to the standby at failover.
    let address = dir.path().join("db-address");
    std::os::unix::fs::symlink(primary.socket_dir(), &address).expect("symlink");
    let url = format!(
        "postgres://gpures@localhost/lab?host={}&port=5432",
        address.display()
    );
    let daemon = TestDaemon::start_on(url, "ha-host", |_| {})
        .await
        .expect("daemon");
    let gpu = daemon
        .host_admin()
        .expect("host admin")
        .add_gpus("ha-host", 1)
        .await
        .expect("gpu")[0];
    let (client, login) = daemon.user("ha@lab.kr", "HA").await.expect("user");
    let (watcher, watcher_login) = daemon.user("w@lab.kr", "W").await.expect("user");
    let before = gpures_testkit::change_version(&watcher, &watcher_login.token).await;
    let mut confirmed = Vec::new();
    for h in 0..20 {
        let b = client
            .create_booking(
                context::current(),
                login.token.clone(),
                one_gpu(gpu, slot(2 + h), "before the failover"),
            )
            .await
            .expect("rpc")
            .expect("booking");
        confirmed.push(b.reservations[0].id);
    }

    // The primary crashes; the standby is promoted and takes the address.
    let pid = primary.pid().expect("primary pid");
    gpures_daemon::host::unix::kill(pid, libc::SIGKILL);
    let out = as_owner_of(
        &standby_data,
        std::process::Command::new(tool("pg_ctl"))
            .args(["promote", "-w", "-D"])
            .arg(&standby_data),
    );
    assert!(
        out.status.success(),
        "promote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved = dir.path().join("db-address.new");
    std::os::unix::fs::symlink(&standby_run, &moved).expect("symlink");
    std::fs::rename(&moved, &address).expect("move the address");
    let t = Instant::now();

    // Served again without a restart, and nothing confirmed is lost.
    let mut booked_after = None;
    while t.elapsed() < Duration::from_secs(30) {
        let made = client
            .create_booking(
                context::current(),
                login.token.clone(),
                one_gpu(gpu, slot(30), "after the failover"),
            )
            .await
            .expect("rpc");
        match made {
            Ok(b) => {
                booked_after = Some(b);
                break;
            }
            Err(ApiError::Unavailable) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(
        booked_after.is_some(),
        "no booking within 30 s of the failover"
    );
    let served_after = t.elapsed();
    let mut new_primary = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
        "postgres://gpures@localhost/lab?host={}&port=5432",
        standby_run.display()
    ))
    .await
    .expect("the promoted standby");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut new_primary)
        .await
        .expect("recovery");
    assert!(!in_recovery, "promoted");
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations WHERE id = ANY($1) AND status = 'active'",
    )
    .bind(&confirmed)
    .fetch_one(&mut new_primary)
    .await
    .expect("count");
    assert_eq!(
        kept, 20,
        "every booking confirmed before the crash survived"
    );
    // The listener noticed the lost connection: a client from before the
    // failover is told to reload (once it is, it stays so).
    let mut told = false;
    while !told && t.elapsed() < Duration::from_secs(30) {
        let across = watcher
            .wait_for_changes(context::current(), watcher_login.token.clone(), before)
            .await
            .expect("rpc")
            .expect("changes");
        told = across.delta.is_none();
        if !told {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(told, "clients from before the failover reload");
    let told_after = t.elapsed();
    // Live updates work again (LISTEN on the new primary): a booking wakes
    // a client that follows from now, as a delta.
    let mut since = gpures_testkit::change_version(&watcher, &watcher_login.token).await;
    let mut live = false;
    for h in 40..60 {
        client
            .create_booking(
                context::current(),
                login.token.clone(),
                one_gpu(gpu, slot(h), ""),
            )
            .await
            .expect("rpc")
            .expect("booking");
        let mut short = context::current();
        short.deadline = Instant::now() + Duration::from_secs(2);
        let got = watcher
            .wait_for_changes(short, watcher_login.token.clone(), since)
            .await
            .expect("rpc")
            .expect("changes");
        if got.delta.is_some_and(|d| !d.reservations.is_empty()) {
            live = true;
            break;
        }
        // The listener came back meanwhile (a reload): follow from there.
        since = got.version;
    }
    assert!(live, "the listener follows the new primary");
    eprintln!(
        "failover: booked again {served_after:?} after the promotion; clients told to reload after {told_after:?}"
    );

    daemon.stop().await.expect("stop");
    drop(new_primary);
    gpures_daemon::host::unix::kill(standby_server.id(), libc::SIGINT);
    let _ = standby_server.wait();
    tokio::task::spawn_blocking(move || primary.stop())
        .await
        .expect("stop pg");
}

async fn spawn_daemon(
    socket: &std::path::Path,
    state: &std::path::Path,
    url: &str,
    log: Stdio,
) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(state)
        .arg("--database-url")
        .arg(url)
        .arg("--config")
        .arg(state.join("gpures.toml"))
        .env("GPURES_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn daemon")
}

async fn wait_up(socket: &std::path::Path) -> gpures_proto::GpuresClient {
    for _ in 0..200 {
        if let Ok(c) = connect(socket).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the daemon did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_booking_load_loses_nothing_and_half_stores_nothing() {
    let url = fresh_database_url().await.expect("database");
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("gpures.sock");
    std::fs::write(
        dir.path().join("gpures.toml"),
        "[gpu]\nbackend = \"none\"\n",
    )
    .expect("config");
    let mut daemon = spawn_daemon(&socket, dir.path(), &url, Stdio::null()).await;
    let admin = wait_up(&socket).await;
    admin
        .register(
            context::current(),
            RegisterRequest {
                email: "admin@lab.kr".into(),
                display_name: "Admin".into(),
                password: PASSWORD.into(),
            },
        )
        .await
        .expect("rpc")
        .expect("register");
    gpures_testkit::HostAdmin::on(&url)
        .expect("url")
        .promote("admin@lab.kr")
        .await
        .expect("promote");
    let store = gpures_daemon::store::Store::connect_lazy(url.parse().expect("url"), 2);
    let token = admin
        .login(context::current(), "admin@lab.kr".into(), PASSWORD.into())
        .await
        .expect("rpc")
        .expect("login")
        .token;
    let gpus = gpures_testkit::HostAdmin::on(&url)
        .expect("url")
        .add_gpus("test-host", 16)
        .await
        .expect("gpus");
    // 8 clients, each booking pairs of GPUs (all or nothing) in a loop.
    let seen: Arc<std::sync::Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let c = connect(&socket).await.expect("client");
        let (token, seen) = (token.clone(), seen.clone());
        let pair = vec![gpus[w * 2], gpus[w * 2 + 1]];
        tasks.push(tokio::spawn(async move {
            for n in 0..10_000i64 {
                let req = BookingRequest {
                    request_id: uuid::Uuid::new_v4(),
                    resources: pair.clone(),
                    period: slot(2 + n),
                    note: String::new(),
                };
                match c
                    .create_booking(context::current(), token.clone(), req)
                    .await
                {
                    Ok(Ok(b)) => seen.lock().expect("lock").push(b.booking_id),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.start_kill().expect("SIGKILL");
    let _ = daemon.wait().await;
    for t in tasks {
        let _ = t.await;
    }
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() > 10, "the load ran: {} bookings", seen.len());

    // Restart on the same database: everything a client saw is there, whole.
    let mut daemon = spawn_daemon(&socket, dir.path(), &url, Stdio::null()).await;
    wait_up(&socket).await;
    let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT booking_id, count(*) FROM reservations WHERE status = 'active' GROUP BY booking_id",
    )
    .fetch_all(store.pool())
    .await
    .expect("query");
    let per_booking: HashMap<uuid::Uuid, i64> = rows.into_iter().collect();
    for id in &seen {
        assert_eq!(
            per_booking.get(id),
            Some(&2),
            "booking {id} a client saw is stored whole"
        );
    }
    assert!(
        per_booking.values().all(|n| *n == 2),
        "no booking is half-stored"
    );
    let mut conn = store.acquire().await.expect("connection");
    assert_eq!(
        gpures_daemon::store::reservations::overlapping_pairs(&mut conn)
            .await
            .expect("query"),
        0
    );
    drop(conn);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM calendar_outbox")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(
        outbox,
        per_booking.len() as i64 * 2,
        "one outbox row per stored reservation"
    );
    daemon.start_kill().expect("kill");
    let _ = daemon.wait().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_reaches_the_log() {
    let url = fresh_database_url().await.expect("database");
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("gpures.sock");
    std::fs::write(
        dir.path().join("gpures.toml"),
        "[gpu]\nbackend = \"none\"\n",
    )
    .expect("config");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut daemon = spawn_daemon(&socket, dir.path(), &url, Stdio::from(log)).await;
    let c = wait_up(&socket).await;
    let secret_password = "hunter2-but-much-longer";
    c.register(
        context::current(),
        RegisterRequest {
            email: "s@lab.kr".into(),
            display_name: "S".into(),
            password: secret_password.into(),
        },
    )
    .await
    .expect("rpc")
    .expect("register");
    let token = c
        .login(
            context::current(),
            "s@lab.kr".into(),
            secret_password.into(),
        )
        .await
        .expect("rpc")
        .expect("login")
        .token;
    let _ = c
        .login(
            context::current(),
            "s@lab.kr".into(),
            "a wrong password!".into(),
        )
        .await;
    c.whoami(context::current(), token.clone())
        .await
        .expect("rpc")
        .expect("whoami");
    let pid = libc::pid_t::try_from(daemon.id().expect("pid")).expect("pid");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = daemon.wait().await;
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        log.contains("gpures-daemon is serving"),
        "the log was written at debug level:\n{log}"
    );
    let store = gpures_daemon::store::Store::connect_lazy(url.parse().expect("url"), 2);
    let secret = {
        let mut conn = store.acquire().await.expect("conn");
        gpures_daemon::store::keys::all(&mut conn)
            .await
            .expect("keys")
            .into_iter()
            .next()
            .expect("a signing key")
            .secret
    };
    store.close().await;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    for (what, needle) in [
        ("password", secret_password.to_owned()),
        ("wrong password", "a wrong password!".to_owned()),
        ("token", token.clone()),
        (
            "token signature",
            token.rsplit('.').next().unwrap_or_default().to_owned(),
        ),
        ("JWT secret", hex),
        (
            "JWT secret bytes",
            String::from_utf8_lossy(&secret).into_owned(),
        ),
    ] {
        assert!(!log.contains(&needle), "the {what} is in the log");
    }
    // Debug output of the config redacts the database URL's password.
    let cfg = gpures_daemon::config::Config {
        database_url: Some(gpures_daemon::config::Secret::new(
            "postgres://u:pw-in-url@db/x",
        )),
        ..Default::default()
    };
    assert!(!format!("{cfg:?}").contains("pw-in-url"));
    let req = RegisterRequest {
        email: "x@y.kr".into(),
        display_name: "X".into(),
        password: secret_password.into(),
    };
    assert!(!format!("{req:?}").contains(secret_password));
}

/// A server as PostgreSQL ships (JIT on, two workers per parallel query)
/// must neither compile the daemon's short queries nor start workers for
/// them once history makes their estimates large: its sessions turn both off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_database_sessions_run_without_jit_or_parallel_workers() {
    use sqlx::Connection as _;
    let url = fresh_database_url().await.expect("database");
    let mut plain = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET jit = on', current_database()); END $$",
    )
    .execute(&mut plain)
    .await
    .expect("jit on for the database");
    async fn settings(conn: &mut sqlx::PgConnection) -> (String, String) {
        sqlx::query_as(
            "SELECT current_setting('jit'), current_setting('max_parallel_workers_per_gather')",
        )
        .fetch_one(conn)
        .await
        .expect("settings")
    }
    // Another client of this server gets the server's defaults …
    let mut other = sqlx::PgConnection::connect(&url).await.expect("connect");
    assert_eq!(settings(&mut other).await, ("on".into(), "2".into()));
    // … and the daemon's sessions do not, whichever way they are opened.
    let store = gpures_daemon::store::Store::connect_lazy_with_calendar(
        url.parse().expect("url"),
        2,
        Duration::from_secs(60),
        true,
    );
    let mut conn = store.acquire().await.expect("acquire");
    assert_eq!(settings(&mut conn).await, ("off".into(), "0".into()));
    let calendar: String = sqlx::query_scalar("SELECT current_setting('gpures.calendar')")
        .fetch_one(&mut *conn)
        .await
        .expect("setting");
    assert_eq!(calendar, "on", "the other session setting is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_gives_its_database_connections_back() {
    let daemon = TestDaemon::start_with(|c| c.limits.db_idle_secs = 1)
        .await
        .expect("daemon");
    let (client, login) = daemon.user("a@lab.kr", "A").await.expect("user");
    let daemon_connections = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'gpures-daemon'",
        )
        .fetch_one(daemon.store.pool())
        .await
        .expect("activity");
        n
    };
    // Calls at once open connections as they need them …
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (c, t) = (client.clone(), login.token.clone());
            tokio::spawn(async move {
                for _ in 0..40 {
                    c.status(context::current(), t.clone(), None)
                        .await
                        .expect("rpc")
                        .expect("status");
                }
            })
        })
        .collect();
    let mut busy = 0;
    while calls.iter().any(|c| !c.is_finished()) {
        busy = busy.max(daemon_connections().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in calls {
        c.await.expect("caller");
    }
    // … and an idle daemon closes them again: it keeps its LISTEN session
    // and what its background workers use each second.
    let t = Instant::now();
    let mut now = busy;
    while now > 4 && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        now = daemon_connections().await;
    }
    assert!(busy > 4, "the load opened {busy} connections");
    assert!(
        now <= 4,
        "still {now} of {busy} connections after {:?}",
        t.elapsed()
    );
    daemon.stop().await.expect("stop");
}
