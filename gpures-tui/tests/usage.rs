//! Usage reports end to end: a seeded October with known use (real
//! processes of the members seen by the real probe through a stand-in
//! `nvidia-smi`, classified and metered as the daemon does, at the month's
//! times) gives exact figures in `gpures report --json` and `--csv` for an
//! admin and for a member; a live daemon with the stand-in counts the
//! holder's minutes as used, another's as unreserved and a telemetry gap as
//! unknown; iCalendar exports and the daemon's feeds parse and round-trip.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_daemon::gpu::BackendChoice;
use gpures_daemon::gpu::Probe;
use gpures_daemon::service::reclaim::ReclaimRules;
use gpures_daemon::service::usage::{Meter, sample_of};
use gpures_daemon::store::usage;
use gpures_testkit::smi::{GPU0, GPU1, fake_smi, set_apps, sleep_as};
use gpures_testkit::{Run, TestDaemon, UnixUser};
use serde_json::{Value, json};
use sqlx::Connection as _;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_gpures");

async fn run(daemon: &TestDaemon, who: &UnixUser, args: &[&str]) -> Run {
    who.run(&daemon.socket, Path::new(BIN), args).await
}

async fn ok(daemon: &TestDaemon, who: &UnixUser, args: &[&str]) -> String {
    who.ok(&daemon.socket, Path::new(BIN), args).await
}

async fn report(daemon: &TestDaemon, who: &UnixUser, args: &[&str]) -> Value {
    let mut all = vec!["--json", "report"];
    all.extend_from_slice(args);
    let out = ok(daemon, who, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Korean time as UTC.
fn kst(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{s}:00+09:00"))
        .expect("time")
        .with_timezone(&Utc)
}

/// A row of `--json` by key, without the key.
fn row<'a>(v: &'a Value, key: &str) -> &'a Value {
    v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key}: {v:#}"))
}

/// Booked, used, idle, unknown and unreserved GPU-hours; released and
/// reclaimed (hours, count); efficiency.
fn figures(
    [booked, used, idle, unknown, unreserved]: [f64; 5],
    released: (f64, i64),
    reclaimed: (f64, i64),
    efficiency: Option<f64>,
) -> Value {
    json!({
        "booked_gpu_hours": booked,
        "used_gpu_hours": used,
        "idle_gpu_hours": idle,
        "unknown_gpu_hours": unknown,
        "unreserved_gpu_hours": unreserved,
        "released_gpu_hours": released.0,
        "released_count": released.1,
        "reclaimed_gpu_hours": reclaimed.0,
        "reclaimed_count": reclaimed.1,
        "efficiency": efficiency,
    })
}

fn without_key(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("key");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to create Unix users; .ci/run runs ignored tests as root"]
async fn a_seeded_month_gives_exact_figures_to_admins_and_members() {
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let alice = UnixUser::create("김민수").expect("useradd");
    let bob = UnixUser::create("Lee Jiwon").expect("useradd");
    let carol = UnixUser::create("Carol Admin").expect("useradd");
    ok(&daemon, &alice, &["register", "--email", "alice@lab.kr"]).await;
    ok(&daemon, &bob, &["register", "--email", "bob@lab.kr"]).await;
    ok(&daemon, &carol, &["register", "--email", "carol@lab.kr"]).await;
    daemon
        .host_admin()
        .expect("host admin")
        .promote("carol@lab.kr")
        .await
        .expect("promote");
    ok(&daemon, &carol, &["admin", "group", "add", "vision"]).await;
    ok(
        &daemon,
        &carol,
        &["admin", "group", "member", "add", "vision", "alice@lab.kr"],
    )
    .await;

    let mut conn = sqlx::PgConnection::connect(&daemon.database_url)
        .await
        .expect("db");
    let id_of = |email: &'static str| {
        sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE email = $1").bind(email)
    };
    let alice_id = id_of("alice@lab.kr")
        .fetch_one(&mut conn)
        .await
        .expect("id");
    let bob_id = id_of("bob@lab.kr").fetch_one(&mut conn).await.expect("id");
    let (gpu0, gpu1) = (daemon.gpus[0], daemon.gpus[1]);
    let mut reserve = async |user: i64,
                             gpu: i64,
                             from: &str,
                             to: &str,
                             status: &str,
                             ended: Option<(&str, &str)>,
                             pending: bool| {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO reservations (id, booking_id, user_id, resource_id, period, status,
                                       booked_end, ended_by, pending_until, pending_reason)
             VALUES ($1, $1, $2, $3, tstzrange($4, $5, '[)'), $6, $7, $8,
                     CASE WHEN $9 THEN $4 END, CASE WHEN $9 THEN 'please' END)",
        )
        .bind(id)
        .bind(user)
        .bind(gpu)
        .bind(kst(from))
        .bind(kst(to))
        .bind(status)
        .bind(ended.map(|e| kst(e.0)))
        .bind(ended.map(|e| e.1))
        .bind(pending)
        .execute(&mut conn)
        .await
        .expect("reservation");
        id
    };
    // Alice, 4 h on gpu0: 2 h used, 1 h idle, then 1 h without telemetry.
    let a = reserve(
        alice_id,
        gpu0,
        "2026-10-05T09:00",
        "2026-10-05T13:00",
        "active",
        None,
        false,
    )
    .await;
    // Bob, 2 h on gpu1 all idle, given back 2 h early.
    let b1 = reserve(
        bob_id,
        gpu1,
        "2026-10-06T10:00",
        "2026-10-06T12:00",
        "active",
        Some(("2026-10-06T14:00", "release")),
        false,
    )
    .await;
    // Bob, 1 h on gpu1, half used, then reclaimed 1 h before its end.
    let b2 = reserve(
        bob_id,
        gpu1,
        "2026-10-07T10:00",
        "2026-10-07T11:00",
        "active",
        Some(("2026-10-07T12:00", "reclaim")),
        false,
    )
    .await;
    // Never counted: a cancelled booking, a pending request, another month.
    reserve(
        alice_id,
        gpu1,
        "2026-10-09T09:00",
        "2026-10-09T19:00",
        "cancelled",
        None,
        false,
    )
    .await;
    reserve(
        alice_id,
        gpu1,
        "2026-10-10T09:00",
        "2026-10-10T19:00",
        "active",
        None,
        true,
    )
    .await;
    reserve(
        alice_id,
        gpu0,
        "2026-11-02T09:00",
        "2026-11-02T19:00",
        "active",
        None,
        false,
    )
    .await;
    // The month's use, recorded as the daemon does: real processes of the
    // members, seen through the stand-in nvidia-smi by the real probe,
    // classified and metered (one sample a minute), then written.
    let dir = tempfile::tempdir().expect("dir");
    let probe = Probe::new(BackendChoice::NvidiaSmi, &fake_smi(dir.path()));
    let rules = ReclaimRules::default();
    let stranger = UnixUser::create("Stranger").expect("useradd");
    let alice_job = sleep_as(alice.uid, alice.gid);
    let bob_job = sleep_as(bob.uid, bob.gid);
    let bob_tiny = sleep_as(bob.uid, bob.gid);
    let stranger_job = sleep_as(stranger.uid, stranger.gid);
    let (alice_unix, bob_unix) = (alice.name.as_str(), bob.name.as_str());
    let mut meter = Meter::default();
    // `n` minutes from `from`, the GPUs running `apps`, held as `holders`
    // (per GPU index: reservation and its holder's Unix user).
    let mut phase = |from: &str,
                     n: i64,
                     apps: &[(&str, u32, &str, u64)],
                     holders: [Option<(Uuid, &str)>; 2]| {
        set_apps(dir.path(), apps);
        let Ok(gpus) = probe.sample() else {
            return; // No telemetry: nothing to count.
        };
        for i in 0..n {
            let samples = gpus
                .iter()
                .filter_map(|g| {
                    let k = usize::try_from(g.index).expect("index");
                    let resource = [gpu0, gpu1][k];
                    sample_of(
                        resource,
                        g.utilization_pct,
                        g.memory_used_mib,
                        &g.processes,
                        holders[k],
                        &rules,
                    )
                })
                .collect();
            meter.observe(
                kst(from) + TimeDelta::minutes(i) + TimeDelta::seconds(10),
                samples,
            );
        }
    };
    // Alice on gpu0: her job runs 2 h, then nothing for 1 h, then the
    // probe fails for her last hour.
    let alice_on = Some((a, alice_unix));
    phase(
        "2026-10-05T09:00",
        120,
        &[(GPU0, alice_job.id(), "python3", 4096)],
        [alice_on, None],
    );
    phase("2026-10-05T11:00", 60, &[], [alice_on, None]);
    std::fs::write(dir.path().join("broken"), "").expect("break");
    phase(
        "2026-10-05T12:00",
        60,
        &[(GPU0, alice_job.id(), "python3", 4096)],
        [alice_on, None],
    );
    std::fs::remove_file(dir.path().join("broken")).expect("mend");
    // Bob's first booking: only a 100 MiB context (under the floor): idle.
    phase(
        "2026-10-06T10:00",
        120,
        &[(GPU1, bob_tiny.id(), "python3", 100)],
        [None, Some((b1, bob_unix))],
    );
    // His second: his job every other minute.
    for i in 0..60 {
        let apps: &[(&str, u32, &str, u64)] = if i % 2 == 0 {
            &[(GPU1, bob_job.id(), "python3", 2048)]
        } else {
            &[]
        };
        let at = (kst("2026-10-07T10:00") + TimeDelta::minutes(i))
            .with_timezone(&chrono_tz::Asia::Seoul)
            .format("%Y-%m-%dT%H:%M")
            .to_string();
        phase(&at, 1, apps, [None, Some((b2, bob_unix))]);
    }
    // On the free gpu0: Bob for 45 min, a Unix user without an account for
    // the first 15 of them.
    phase(
        "2026-10-08T10:00",
        15,
        &[
            (GPU0, bob_job.id(), "python3", 2048),
            (GPU0, stranger_job.id(), "python3", 2048),
        ],
        [None, None],
    );
    phase(
        "2026-10-08T10:15",
        30,
        &[(GPU0, bob_job.id(), "python3", 2048)],
        [None, None],
    );
    let seeded = meter.finished(kst("2026-10-09T00:00"));
    for mut job in [alice_job, bob_job, bob_tiny, stranger_job] {
        let _ = job.kill();
        let _ = job.wait();
    }
    // Written in two calls, the second repeating the first's last minutes:
    // a minute is counted once.
    usage::put(&mut conn, &seeded[..400]).await.expect("put");
    usage::put(&mut conn, &seeded[390..]).await.expect("put");
    let ghost = stranger.name.as_str();

    let alice_row = figures([4.0, 2.0, 1.0, 1.0, 0.0], (0.0, 0), (0.0, 0), Some(0.667));
    let bob_row = figures([3.0, 0.5, 2.5, 0.0, 0.75], (2.0, 1), (1.0, 1), Some(0.167));
    let ghost_row = figures([0.0, 0.0, 0.0, 0.0, 0.25], (0.0, 0), (0.0, 0), None);
    let lab = figures([7.0, 2.5, 3.5, 1.0, 1.0], (2.0, 1), (1.0, 1), Some(0.417));

    let all = report(&daemon, &carol, &["--month", "2026-10"]).await;
    assert_eq!(all["from"], "2026-10-01T00:00:00+09:00");
    assert_eq!(all["to"], "2026-11-01T00:00:00+09:00");
    assert_eq!(all["everyone"], true);
    assert_eq!(all["rows"].as_array().map(Vec::len), Some(3), "{all:#}");
    assert_eq!(without_key(row(&all, "김민수")), alice_row);
    assert_eq!(without_key(row(&all, "Lee Jiwon")), bob_row);
    assert_eq!(without_key(row(&all, ghost)), ghost_row);
    assert_eq!(all["lab"], lab);

    let groups = report(&daemon, &carol, &["--month", "2026-10", "--by", "group"]).await;
    assert_eq!(without_key(row(&groups, "vision")), alice_row);
    assert_eq!(
        without_key(row(&groups, "(no group)")),
        figures([3.0, 0.5, 2.5, 0.0, 1.0], (2.0, 1), (1.0, 1), Some(0.167))
    );
    let gpus = report(&daemon, &carol, &["--month", "2026-10", "--by", "resource"]).await;
    assert_eq!(
        without_key(row(&gpus, "gpu0")),
        figures([4.0, 2.0, 1.0, 1.0, 1.0], (0.0, 0), (0.0, 0), Some(0.667))
    );
    assert_eq!(
        without_key(row(&gpus, "gpu1")),
        figures([3.0, 0.5, 2.5, 0.0, 0.0], (2.0, 1), (1.0, 1), Some(0.167))
    );
    let hosts = report(&daemon, &carol, &["--month", "2026-10", "--by", "host"]).await;
    assert_eq!(hosts["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(without_key(&hosts["rows"][0]), lab);

    // A member sees their own row and the lab's total, nobody else's.
    let mine = report(&daemon, &bob, &["--month", "2026-10"]).await;
    assert_eq!(mine["everyone"], false);
    assert_eq!(mine["rows"].as_array().map(Vec::len), Some(1), "{mine:#}");
    assert_eq!(without_key(row(&mine, "Lee Jiwon")), bob_row);
    assert_eq!(mine["lab"], lab);

    // The same figures as CSV, the lab's line last; a window of hours.
    let csv = ok(&daemon, &carol, &["report", "--month", "2026-10", "--csv"]).await;
    assert_eq!(
        csv,
        format!(
            "user,booked_gpu_hours,used_gpu_hours,idle_gpu_hours,unknown_gpu_hours,unreserved_gpu_hours,released_gpu_hours,released_count,reclaimed_gpu_hours,reclaimed_count,efficiency\n\
         김민수,4.00,2.00,1.00,1.00,0.00,0.00,0,0.00,0,0.667\n\
         Lee Jiwon,3.00,0.50,2.50,0.00,0.75,2.00,1,1.00,1,0.167\n\
         {ghost},0.00,0.00,0.00,0.00,0.25,0.00,0,0.00,0,\n\
         (lab),7.00,2.50,3.50,1.00,1.00,2.00,1,1.00,1,0.417\n"
        )
    );
    let day = report(
        &daemon,
        &carol,
        &["--from", "2026-10-05 10:30", "--to", "2026-10-05 12:00"],
    )
    .await;
    // Widened to whole hours: 10:00 to 12:00, one hour used and one idle.
    assert_eq!(day["from"], "2026-10-05T10:00:00+09:00");
    assert_eq!(
        day["lab"],
        figures([2.0, 1.0, 1.0, 0.0, 0.0], (0.0, 0), (0.0, 0), Some(0.5))
    );
    let table = ok(&daemon, &alice, &["report", "--month", "2026-10"]).await;
    assert!(table.contains("김민수"), "{table}");
    assert!(table.contains("67%"), "{table}");
    assert!(table.contains("never counted as idle"), "{table}");

    // The timeline's booked-against-used runs of a long past come by the
    // hour (an hour is used when most of it was); the live test below
    // checks the last hours come by the minute.
    let (client, login) = daemon.admin("ops@lab.kr", "ops").await.expect("admin");
    let timeline = |start: &str, end: &str| {
        let (client, token) = (client.clone(), login.token.clone());
        let window = gpures_proto::Period {
            start: kst(start),
            end: kst(end),
        };
        async move {
            client
                .timeline(tarpc::context::current(), token, window, Default::default())
                .await
                .expect("rpc")
                .expect("timeline")
                .usage
        }
    };
    let span = |from: &str, to: &str, used: bool| gpures_proto::UsageSpan {
        resource_id: gpu0,
        period: gpures_proto::Period {
            start: kst(from),
            end: kst(to),
        },
        used,
    };
    let day = timeline("2026-10-05T08:00", "2026-10-05T13:00").await;
    assert_eq!(
        day,
        [
            span("2026-10-05T09:00", "2026-10-05T11:00", true),
            span("2026-10-05T11:00", "2026-10-05T12:00", false),
        ]
    );
    let week = timeline("2026-10-01T00:00", "2026-10-08T00:00").await;
    assert_eq!(week[..2], day[..], "a longer window gives the same runs");
    // Bob's reclaimed hour, used every other minute: one used hour.
    let b2_day = timeline("2026-10-07T09:00", "2026-10-07T12:00").await;
    assert_eq!(b2_day.len(), 1);
    assert!(b2_day[0].used);
    assert_eq!(week.len(), 4, "{week:#?}");
    assert!(week[3].used && week[3].period.end - week[3].period.start == TimeDelta::hours(1));

    // Pruning old minutes keeps the hourly rollups: the same report.
    let pruned = usage::prune(&mut conn, kst("2026-10-07T00:00"))
        .await
        .expect("prune");
    assert_eq!(
        pruned, 600,
        "both GPUs' minutes of alice's 3 h and bob's first 2 h"
    );
    assert_eq!(report(&daemon, &carol, &["--month", "2026-10"]).await, all);

    // Bad input: a clear error, exit 2.
    for args in [
        &["report", "--month", "2026-13"][..],
        &["report", "--by", "team"],
        &["report", "--from", "2026-10-05", "--to", "2026-10-01"],
        &["report", "--month", "2026-10", "--from", "2026-10-01"],
        &["--json", "report", "--csv"],
    ] {
        let r = run(&daemon, &alice, args).await;
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.out, r.err);
        assert!(!r.err.is_empty(), "{args:?}");
    }
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to create Unix users; .ci/run runs ignored tests as root"]
async fn a_live_daemon_counts_used_and_unreserved_minutes_from_real_processes() {
    let dir = tempfile::tempdir().expect("dir");
    let smi = fake_smi(dir.path());
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .config(move |c| {
            c.gpu.backend = BackendChoice::NvidiaSmi;
            c.gpu.nvidia_smi = smi;
            c.gpu.sample_interval_secs = 1;
        })
        .start()
        .await
        .expect("daemon");
    let alice = UnixUser::create("김민수").expect("useradd");
    let bob = UnixUser::create("Lee Jiwon").expect("useradd");
    ok(&daemon, &alice, &["register", "--email", "alice@lab.kr"]).await;
    ok(&daemon, &bob, &["register", "--email", "bob@lab.kr"]).await;
    let started = Utc::now();
    let booked = ok(&daemon, &alice, &["--json", "book", "gpu0", "--for", "1h"]).await;
    let booking: Value = serde_json::from_str(&booked).expect("json");
    // A booking of named GPUs prints its reservations.
    let booking = booking[0]["booking_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no booking id: {booking}"))
        .to_owned();
    // Alice runs on her gpu0; Bob on gpu1, which nobody booked.
    let mut alice_job = sleep_as(alice.uid, alice.gid);
    let mut bob_job = sleep_as(bob.uid, bob.gid);
    set_apps(
        dir.path(),
        &[
            (GPU0, alice_job.id(), "python3", 4096),
            (GPU1, bob_job.id(), "python3", 2048),
        ],
    );
    // Wait for a finished minute with both in it.
    let mut conn = sqlx::PgConnection::connect(&daemon.database_url)
        .await
        .expect("db");
    let mut seen = (0, 0);
    for _ in 0..150 {
        seen = sqlx::query_as::<_, (i64, i64)>(
            "SELECT count(*) FILTER (WHERE reservation_id IS NOT NULL AND used_samples > 0),
                    count(*) FILTER (WHERE reservation_id IS NULL AND unreserved <> '{}')
               FROM usage_minutes",
        )
        .fetch_one(&mut conn)
        .await
        .expect("minutes");
        if seen.0 > 0 && seen.1 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(seen.0 > 0 && seen.1 > 0, "no finished minute: {seen:?}");
    let from = (started - TimeDelta::hours(1)).to_rfc3339();
    let to = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    let v = report(&daemon, &alice, &["--from", &from, "--to", &to]).await;
    let a = row(&v, "김민수");
    assert!(a["used_gpu_hours"].as_f64() > Some(0.0), "{v:#}");
    // The timeline marks the recent past by the minute: a used run on gpu0
    // shorter than an hour.
    let (client, login) = daemon.user("ops@lab.kr", "ops").await.expect("user");
    let window = gpures_proto::Period {
        start: started - TimeDelta::hours(1),
        end: Utc::now() + TimeDelta::hours(1),
    };
    let runs = client
        .timeline(
            tarpc::context::current(),
            login.token,
            window,
            Default::default(),
        )
        .await
        .expect("rpc")
        .expect("timeline")
        .usage;
    assert!(
        runs.iter().any(|r| r.resource_id == daemon.gpus[0]
            && r.used
            && r.period.end - r.period.start < TimeDelta::hours(1)),
        "{runs:#?}"
    );
    assert_eq!(a["idle_gpu_hours"], 0.0, "{v:#}");
    assert!(
        v["lab"]["unreserved_gpu_hours"].as_f64() > Some(0.0),
        "{v:#}"
    );
    let b = report(&daemon, &bob, &["--from", &from, "--to", &to]).await;
    assert!(
        row(&b, "Lee Jiwon")["unreserved_gpu_hours"].as_f64() > Some(0.0),
        "{b:#}"
    );
    // A telemetry gap: the probe fails for a whole minute. No minute of it
    // is written, and the report counts that booked time as unknown, not
    // idle.
    // (Not in a minute's last seconds: a sample already running may still
    // land in the next one.)
    use chrono::Timelike as _;
    if Utc::now().second() >= 50 {
        tokio::time::sleep(Duration::from_secs(12)).await;
    }
    std::fs::write(dir.path().join("broken"), "").expect("break");
    let broken_at = Utc::now();
    let gap_minute = broken_at
        .duration_trunc(TimeDelta::minutes(1))
        .expect("minute")
        + TimeDelta::minutes(1);
    tokio::time::sleep(
        (gap_minute + TimeDelta::seconds(62) - Utc::now())
            .to_std()
            .expect("wait"),
    )
    .await;
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_minutes WHERE minute >= $1")
        .bind(gap_minute)
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(written, 0, "a minute without telemetry was written");
    let v = report(&daemon, &alice, &["--from", &from, "--to", &to]).await;
    let a = row(&v, "김민수");
    assert!(a["unknown_gpu_hours"].as_f64() > Some(0.0), "{v:#}");
    assert_eq!(a["idle_gpu_hours"], 0.0, "{v:#}");
    std::fs::remove_file(dir.path().join("broken")).expect("mend");

    // Given back early: counted as released, from its booked end.
    ok(&daemon, &alice, &["release", &booking]).await;
    let v = report(&daemon, &alice, &["--from", &from, "--to", &to]).await;
    let a = row(&v, "김민수");
    assert_eq!(a["released_count"], 1, "{v:#}");
    assert!(a["released_gpu_hours"].as_f64() > Some(0.9), "{v:#}");
    let _ = alice_job.kill();
    let _ = bob_job.kill();
    let _ = alice_job.wait();
    let _ = bob_job.wait();
    daemon.stop().await.expect("stop");
}

/// The events of an iCalendar text, parsed by the `icalendar` crate: UID →
/// (summary, start, end, status, description).
fn events(text: &str) -> std::collections::BTreeMap<String, [String; 5]> {
    use icalendar::{Component as _, DatePerhapsTime};
    let cal: icalendar::Calendar = text
        .parse()
        .unwrap_or_else(|e| panic!("not iCalendar: {e}\n{text}"));
    let time = |t: Option<DatePerhapsTime>| match t {
        Some(DatePerhapsTime::DateTime(icalendar::CalendarDateTime::Utc(t))) => t.to_rfc3339(),
        other => panic!("not a UTC time: {other:?}"),
    };
    cal.components
        .iter()
        .filter_map(|c| c.as_event())
        .map(|e| {
            (
                e.get_uid().expect("uid").to_owned(),
                [
                    e.get_summary().expect("summary").to_owned(),
                    time(e.get_start()),
                    time(e.get_end()),
                    format!("{:?}", e.get_status().expect("status")),
                    e.get_description().unwrap_or_default().to_owned(),
                ],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to create Unix users; .ci/run runs ignored tests as root"]
async fn ics_exports_and_feeds_round_trip_and_change_only_what_changed() {
    let feeds = tempfile::tempdir().expect("dir");
    let feed_dir = feeds.path().to_owned();
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .config(move |c| c.feeds.dir = Some(feed_dir))
        .start()
        .await
        .expect("daemon");
    let alice = UnixUser::create("김민수").expect("useradd");
    let bob = UnixUser::create("Lee Jiwon").expect("useradd");
    ok(&daemon, &alice, &["register", "--email", "alice@lab.kr"]).await;
    ok(&daemon, &bob, &["register", "--email", "bob@lab.kr"]).await;
    let note = format!("a, b; c\\d {}", "긴 메모 ".repeat(30));
    let book = async |who: &UnixUser, args: &[&str]| -> String {
        let mut all = vec!["--json", "book"];
        all.extend_from_slice(args);
        let v: Value = serde_json::from_str(&ok(&daemon, who, &all).await).expect("json");
        // A booking of named GPUs prints its reservations.
        v.get(0).unwrap_or(&v)["booking_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no booking id: {v}"))
            .to_owned()
    };
    book(
        &alice,
        &[
            "gpu0",
            "--from",
            "tomorrow 9am",
            "--for",
            "2h",
            "--note",
            &note,
        ],
    )
    .await;
    let both = book(
        &alice,
        &["gpu0", "gpu1", "--from", "tomorrow 1pm", "--for", "1h"],
    )
    .await;
    let gone = book(&bob, &["gpu1", "--from", "tomorrow 9am", "--for", "3h"]).await;
    ok(&daemon, &bob, &["cancel", &gone]).await;

    // Alice's own folder: she writes the file.
    let out = alice.config.path().join("lab.ics");
    let out_s = out.to_str().expect("path");
    ok(&daemon, &alice, &["export", "--ics", "-o", out_s]).await;
    let first = std::fs::read_to_string(&out).expect("read");
    assert!(
        first.lines().all(|l| l.len() <= 76),
        "a line over 75 octets"
    );
    assert!(first.contains("\r\n "), "the long note is folded");
    let got = events(&first);
    // Every reservation of the window, cancelled ones as cancelled.
    let listed: Value = serde_json::from_str(
        &ok(
            &daemon,
            &alice,
            &["--json", "ls", "--all", "--from", "today"],
        )
        .await,
    )
    .expect("json");
    let listed = listed.as_array().expect("array");
    assert_eq!(got.len(), listed.len(), "{got:#?}");
    assert_eq!(got.len(), 4);
    for r in listed {
        let e = &got[&format!("{}@gpures", r["id"].as_str().expect("id"))];
        let at = |k: &str| {
            DateTime::parse_from_rfc3339(r[k].as_str().expect("time"))
                .expect("time")
                .with_timezone(&Utc)
                .to_rfc3339()
        };
        assert_eq!((&e[1], &e[2]), (&at("start"), &at("end")));
        let status = if r["status"] == "cancelled" {
            "Cancelled"
        } else {
            "Confirmed"
        };
        assert_eq!(e[3], status, "{e:?}");
        let who = if r["user"]["email"] == "alice@lab.kr" {
            "김민수"
        } else {
            "Lee Jiwon"
        };
        assert_eq!(
            e[0],
            format!("{} · {who}", r["resource"].as_str().expect("name"))
        );
    }
    assert!(
        got.values().any(|e| e[4].ends_with(note.trim_end())),
        "{got:#?}"
    );

    // Stable: the same bytes again; after one edit only that event differs.
    let again = ok(&daemon, &alice, &["export", "--ics"]).await;
    assert_eq!(again, first);
    ok(&daemon, &alice, &["edit", &both, "--for", "2h"]).await;
    let edited = events(&ok(&daemon, &alice, &["export", "--ics"]).await);
    let changed: Vec<&String> = got
        .keys()
        .filter(|uid| got.get(*uid) != edited.get(*uid))
        .collect();
    assert_eq!(changed.len(), 2, "the two GPUs of the edited booking only");
    // --mine: Bob's cancelled one only.
    let bobs = events(&ok(&daemon, &bob, &["export", "--ics", "--mine"]).await);
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs.values().next().expect("one")[3], "Cancelled");

    // The daemon's feeds follow every change: the lab's, and one per member.
    let lab = feeds.path().join("lab.ics");
    let mine = feeds.path().join(format!("users/{}.ics", alice.name));
    let mut feed = String::new();
    for _ in 0..40 {
        feed = std::fs::read_to_string(&lab).unwrap_or_default();
        if !feed.is_empty() && events(&feed) == edited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(events(&feed), edited, "the lab feed did not follow");
    let alices = events(&std::fs::read_to_string(&mine).expect("alice's feed"));
    assert_eq!(alices.len(), 3);
    assert!(alices.values().all(|e| e[0].ends_with("김민수")));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&lab).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o644);

    // Bad input: a clear error, exit 2, nothing written.
    for args in [
        &["export"][..],
        &["export", "--ics", "--from", "tomorrow", "--to", "today"],
    ] {
        let r = run(&daemon, &alice, args).await;
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.out, r.err);
    }
    daemon.stop().await.expect("stop");
}
