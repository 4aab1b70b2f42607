//! Closing the loop, end to end with the real `gpures` as throwaway Unix
//! users and a stand-in `nvidia-smi` that reports their real processes:
//! idle reclaim (a no-show released after its warning; small and ignored
//! processes are not use; stale telemetry never acts; `keep` stops it),
//! notices of unreserved use to both sides, `adopt` turning an unreserved
//! process into a booking that ends with it, and the inbox in
//! `notifications` and `motd`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use gpures_daemon::gpu::BackendChoice;
use gpures_testkit::smi::{GPU0, GPU1, fake_smi, set_apps, sleep_as};
use gpures_testkit::{Run, TestDaemon, UnixUser};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gpures");

async fn run(daemon: &TestDaemon, who: &UnixUser, args: &[&str]) -> Run {
    who.run(&daemon.socket, Path::new(BIN), args).await
}

async fn ok(daemon: &TestDaemon, who: &UnixUser, args: &[&str]) -> String {
    who.ok(&daemon.socket, Path::new(BIN), args).await
}

async fn json(daemon: &TestDaemon, who: &UnixUser, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(daemon, who, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// The first `booking_id` in a JSON answer.
fn booking_id(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .get("booking_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                m.values()
                    .map(booking_id)
                    .find(|s| !s.is_empty())
                    .unwrap_or_default()
            }),
        Value::Array(a) => a
            .iter()
            .map(booking_id)
            .find(|s| !s.is_empty())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The kinds in a member's inbox (newest first), read or not.
async fn kinds(daemon: &TestDaemon, who: &UnixUser) -> Vec<(String, String)> {
    let v = json(daemon, who, &["notifications", "--all", "--peek"]).await;
    v.as_array()
        .expect("array")
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{} {}",
                    n["title"].as_str().unwrap_or_default(),
                    n["body"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect()
}

async fn wait_for_kind(daemon: &TestDaemon, who: &UnixUser, kind: &str, secs: u64) -> String {
    for _ in 0..secs * 4 {
        if let Some((_, text)) = kinds(daemon, who)
            .await
            .into_iter()
            .find(|(k, _)| k == kind)
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = run(daemon, who, &["status"]).await;
    panic!(
        "{} got no {kind} notification: {:?}\n{}{}",
        who.name,
        kinds(daemon, who).await,
        status.out,
        status.err
    );
}

/// Whether the booking holds its GPUs now.
async fn running(daemon: &TestDaemon, who: &UnixUser, booking: &str) -> bool {
    let v = json(daemon, who, &["ls", "--mine"]).await;
    let now = chrono::Utc::now();
    v.as_array().expect("array").iter().any(|r| {
        r["booking_id"] == booking
            && r["status"] == "active"
            && r["end"]
                .as_str()
                .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                .is_some_and(|e| e > now)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to create Unix users; .ci/run runs ignored tests as root"]
async fn idle_reclaim_unreserved_notices_and_adopt() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("gpures_daemon=info")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("dir");
    let smi = fake_smi(dir.path());
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .config(move |c| {
            c.gpu.backend = BackendChoice::NvidiaSmi;
            c.gpu.nvidia_smi = smi;
            c.gpu.sample_interval_secs = 1;
            c.reclaim.enabled = true;
            c.reclaim.idle_minutes = 0.05;
            c.reclaim.startup_grace_minutes = 0.0;
            c.reclaim.no_show_minutes = 0.1;
            c.reclaim.warn_minutes = 0.1;
            c.reclaim.keep_minutes = 2.0;
        })
        .start()
        .await
        .expect("daemon");
    let alice = UnixUser::create("김민수").expect("useradd");
    let bob = UnixUser::create("Lee Jiwon").expect("useradd");
    ok(&daemon, &alice, &["register", "--email", "alice@lab.kr"]).await;
    ok(&daemon, &bob, &["register", "--email", "bob@lab.kr"]).await;

    // Alice runs on her gpu0; Bob books gpu1 and runs nothing that counts
    // there: a 100 MiB context (under the floor) and an Xorg (ignored).
    let alice_job = sleep_as(alice.uid, alice.gid);
    let bob_small = sleep_as(bob.uid, bob.gid);
    let bob_x = sleep_as(bob.uid, bob.gid);
    let apps = vec![
        (GPU0, alice_job.id(), "python3", 1386),
        (GPU1, bob_small.id(), "python3", 100),
        (GPU1, bob_x.id(), "Xorg", 900),
    ];
    set_apps(dir.path(), &apps);
    let a = booking_id(&json(&daemon, &alice, &["book", "gpu0", "--for", "1h"]).await);
    let b = booking_id(&json(&daemon, &bob, &["book", "gpu1", "--for", "1h"]).await);

    // Bob's no-show: warned, then released after the warning's grace.
    let warning = wait_for_kind(&daemon, &bob, "idle-warning", 20).await;
    assert!(warning.contains("gpures keep"), "{warning}");
    assert!(
        running(&daemon, &bob, &b).await,
        "released before the grace"
    );
    let reclaimed = wait_for_kind(&daemon, &bob, "reclaimed", 20).await;
    assert!(reclaimed.contains("reclaimed by gpures"), "{reclaimed}");
    assert!(
        !running(&daemon, &bob, &b).await,
        "the no-show still holds gpu1"
    );
    // Usage reports count it as reclaimed, from its booked end.
    let mine = json(&daemon, &bob, &["report", "--from", "today", "--to", "+2h"]).await;
    assert_eq!(mine["rows"][0]["reclaimed_count"], 1, "{mine:#}");
    assert!(
        mine["rows"][0]["reclaimed_gpu_hours"].as_f64() > Some(0.9),
        "{mine:#}"
    );
    // Alice, busy all along, was never warned.
    assert!(running(&daemon, &alice, &a).await);
    assert!(
        !kinds(&daemon, &alice)
            .await
            .iter()
            .any(|(k, _)| k == "idle-warning")
    );

    // Telemetry goes away while Alice's job is gone: nothing is done.
    std::fs::write(dir.path().join("broken"), "").expect("break");
    set_apps(dir.path(), &[]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        running(&daemon, &alice, &a).await,
        "acted on missing telemetry"
    );
    assert!(
        !kinds(&daemon, &alice)
            .await
            .iter()
            .any(|(k, _)| k == "idle-warning")
    );

    // Back, and idle: warned; `keep` stops the release.
    std::fs::remove_file(dir.path().join("broken")).expect("mend");
    wait_for_kind(&daemon, &alice, "idle-warning", 20).await;
    let kept = ok(&daemon, &alice, &["keep", &a[..8]]).await;
    assert!(kept.contains("kept"), "{kept}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(running(&daemon, &alice, &a).await, "released despite keep");

    // Someone else on Alice's GPU: both are told, once.
    let mut bob_intruder = sleep_as(bob.uid, bob.gid);
    set_apps(dir.path(), &[(GPU0, bob_intruder.id(), "python3", 2048)]);
    let told = wait_for_kind(&daemon, &alice, "runs-on-yours", 10).await;
    assert!(told.contains(&bob.name), "{told}");
    let mine = wait_for_kind(&daemon, &bob, "you-run-unreserved", 10).await;
    assert!(mine.contains("gpu0"), "{mine}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = kinds(&daemon, &alice)
        .await
        .iter()
        .filter(|(k, _)| k == "runs-on-yours")
        .count();
    assert_eq!(count, 1, "told more than once");

    // Bob moves to the free gpu1 without booking, is told how to adopt,
    // adopts, and the booking ends when the process does.
    let intruder_pid = bob_intruder.id();
    set_apps(dir.path(), &[(GPU1, intruder_pid, "python3", 2048)]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let advice = kinds(&daemon, &bob).await;
    assert!(
        advice
            .iter()
            .any(|(k, t)| k == "you-run-unreserved" && t.contains("gpures adopt")),
        "{advice:?}"
    );
    let pid = intruder_pid.to_string();
    // Someone else's process cannot be adopted.
    let refused = run(&daemon, &alice, &["adopt", &pid, "--for", "1h"]).await;
    assert_ne!(refused.code, 0, "{}", refused.out);
    assert!(
        refused.err.contains("not a running process of yours"),
        "{}",
        refused.err
    );
    let adopted = json(&daemon, &bob, &["adopt", &pid, "--for", "1h"]).await;
    let adopted_booking = booking_id(&adopted);
    assert!(adopted.to_string().contains("gpu1"), "{adopted}");
    assert!(running(&daemon, &bob, &adopted_booking).await);
    bob_intruder.kill().expect("kill");
    bob_intruder.wait().expect("reap");
    set_apps(dir.path(), &[]);
    let mut ended = false;
    for _ in 0..40 {
        if !running(&daemon, &bob, &adopted_booking).await {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ended, "the adopted booking outlived its process");

    // The inbox: motd lists unread ones; reading them silences it.
    let motd = ok(&daemon, &alice, &["motd"]).await;
    assert!(motd.contains("unread"), "{motd}");
    let listed = ok(&daemon, &alice, &["notifications"]).await;
    assert!(listed.contains("idle"), "{listed}");
    assert_eq!(ok(&daemon, &alice, &["motd"]).await, "");
    // A user with no account gets nothing and no question.
    let stranger = UnixUser::create("Stranger").expect("useradd");
    let r = run(&daemon, &stranger, &["motd"]).await;
    assert_eq!((r.code, r.out.as_str(), r.err.as_str()), (0, "", ""));

    for mut c in [alice_job, bob_small, bob_x] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = &mut bob_intruder;
    daemon.stop().await.expect("stop");
}

/// The state letter of `pid` (`T`: stopped), or `None` once it is gone.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(") ")?.1;
    after.chars().next().filter(|c| *c != 'Z')
}

async fn wait_state(pid: u32, want: Option<char>, secs: u64) -> bool {
    for _ in 0..secs * 10 {
        if state_of(pid) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A daemon enforcing `mode` over the stand-in nvidia-smi in `dir`, with
/// `exempt` never acted on; Alice holds gpu0.
async fn enforcing(
    dir: &Path,
    mode: &str,
    dry_run: bool,
    exempt: Vec<String>,
) -> (TestDaemon, UnixUser, String) {
    let smi = fake_smi(dir);
    let mode = mode.to_owned();
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .config(move |c| {
            c.gpu.backend = BackendChoice::NvidiaSmi;
            c.gpu.nvidia_smi = smi;
            c.gpu.sample_interval_secs = 1;
            c.enforce.mode = mode;
            c.enforce.grace_minutes = 0.05;
            c.enforce.dry_run = dry_run;
            c.enforce.exempt_users = exempt;
        })
        .start()
        .await
        .expect("daemon");
    let alice = UnixUser::create("Alice").expect("useradd");
    ok(&daemon, &alice, &["register", "--email", "alice@lab.kr"]).await;
    let a = booking_id(&json(&daemon, &alice, &["book", "gpu0", "--for", "1h"]).await);
    (daemon, alice, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to create Unix users and signal uid 65534; .ci/run runs ignored tests as root"]
async fn stop_mode_stops_an_intruder_after_the_grace_and_continues_it_when_the_gpu_frees() {
    let dir = tempfile::tempdir().expect("dir");
    let bob = UnixUser::create("Bob").expect("useradd");
    let (daemon, alice, a) = enforcing(dir.path(), "stop", false, vec![bob.name.clone()]).await;
    let mut intruder = sleep_as(65534, 65534);
    let mut rooted = sleep_as(0, 0);
    let mut exempt = sleep_as(bob.uid, bob.gid);
    set_apps(
        dir.path(),
        &[
            (GPU0, intruder.id(), "python3", 4096),
            (GPU0, rooted.id(), "python3", 4096),
            (GPU0, exempt.id(), "python3", 4096),
        ],
    );
    assert!(
        wait_state(intruder.id(), Some('T'), 20).await,
        "not stopped"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(state_of(rooted.id()), Some('T'), "root was stopped");
    assert_ne!(
        state_of(exempt.id()),
        Some('T'),
        "an exempt user was stopped"
    );
    // Alice's booking ends: the GPU is free, the process goes on.
    ok(&daemon, &alice, &["release", &a[..8]]).await;
    assert!(
        wait_state(intruder.id(), Some('S'), 20).await,
        "not continued"
    );
    for c in [&mut intruder, &mut rooted, &mut exempt] {
        let _ = c.kill();
        let _ = c.wait();
    }
    // Both signals are in the audit log, with the process and the reason.
    let mut conn = daemon.store.acquire().await.expect("conn");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, detail->>'reason' FROM audit_log WHERE action LIKE 'process.%' ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("audit");
    drop(conn);
    let actions: Vec<&str> = rows.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["process.stop", "process.continue"], "{rows:?}");
    assert!(rows[0].1.contains("nobody"), "{rows:?}");
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to create Unix users and signal uid 65534; .ci/run runs ignored tests as root"]
async fn kill_mode_ends_an_intruder_and_dry_run_acts_on_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let (daemon, _alice, _a) = enforcing(dir.path(), "kill", false, Vec::new()).await;
    // A process that ignores SIGTERM gets SIGKILL.
    let mut stubborn = std::process::Command::new("sh")
        .args(["-c", "trap '' TERM; while :; do sleep 1; done"])
        .uid(65534)
        .gid(65534)
        .spawn()
        .expect("sh");
    set_apps(dir.path(), &[(GPU0, stubborn.id(), "python3", 4096)]);
    let pid = stubborn.id();
    let mut ended = false;
    for _ in 0..300 {
        if matches!(stubborn.try_wait(), Ok(Some(_))) {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "pid {pid} outlived kill mode");
    daemon.stop().await.expect("stop");

    let dir = tempfile::tempdir().expect("dir");
    let (daemon, _alice, _a) = enforcing(dir.path(), "kill", true, Vec::new()).await;
    let mut spared = sleep_as(65534, 65534);
    set_apps(dir.path(), &[(GPU0, spared.id(), "python3", 4096)]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        matches!(spared.try_wait(), Ok(None)),
        "dry run ended a process"
    );
    let _ = spared.kill();
    let _ = spared.wait();
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to create Unix users and run their processes; .ci/run runs ignored tests as root"]
async fn a_job_that_overruns_its_booking_is_left_alone_for_the_overrun_grace_then_stopped() {
    let dir = tempfile::tempdir().expect("dir");
    let smi = fake_smi(dir.path());
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .config(move |c| {
            c.gpu.backend = BackendChoice::NvidiaSmi;
            c.gpu.nvidia_smi = smi;
            c.gpu.sample_interval_secs = 1;
            c.enforce.mode = "stop".into();
            c.enforce.grace_minutes = 0.05;
            c.enforce.overrun_grace_minutes = 0.15;
            // Only overruns act on a GPU nobody holds.
            c.enforce.unheld = false;
        })
        .start()
        .await
        .expect("daemon");
    let alice = UnixUser::create("Alice").expect("useradd");
    ok(&daemon, &alice, &["register", "--email", "alice@lab.kr"]).await;
    let a = booking_id(&json(&daemon, &alice, &["book", "gpu0", "--for", "1h"]).await);
    let mut job = sleep_as(alice.uid, alice.gid);
    // Someone else on the free gpu1: not acted on (unheld = false).
    let mut other = sleep_as(65534, 65534);
    set_apps(
        dir.path(),
        &[
            (GPU0, job.id(), "python3", 4096),
            (GPU1, other.id(), "python3", 4096),
        ],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(state_of(job.id()), Some('T'), "her own booking");
    // Her booking ends while the job runs on: 9 s to finish, then it is
    // unreserved use (3 s of grace after that).
    ok(&daemon, &alice, &["release", &a[..8]]).await;
    let released = std::time::Instant::now();
    assert!(wait_state(job.id(), Some('T'), 30).await, "never stopped");
    let after = released.elapsed();
    assert!(
        after >= Duration::from_secs(9),
        "stopped {after:?} after the end, within the overrun grace"
    );
    assert_ne!(state_of(other.id()), Some('T'), "unheld = false");
    // The GPU is free, but going on would only be stopped again: it waits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(state_of(job.id()), Some('T'), "continued on a free GPU");
    // Adopting it (a booking from this second) makes it hers: it goes on.
    ok(
        &daemon,
        &alice,
        &["adopt", &job.id().to_string(), "--for", "30m"],
    )
    .await;
    assert!(wait_state(job.id(), Some('S'), 20).await, "not continued");
    let mut conn = daemon.store.acquire().await.expect("conn");
    let reason: String = sqlx::query_scalar(
        "SELECT detail->>'reason' FROM audit_log WHERE action = 'process.stop' ORDER BY id LIMIT 1",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("audit");
    drop(conn);
    assert!(
        reason.contains("after your booking of it ended"),
        "{reason}"
    );
    for c in [&mut job, &mut other] {
        let _ = c.kill();
        let _ = c.wait();
    }
    daemon.stop().await.expect("stop");
}
