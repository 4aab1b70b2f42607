//! GPU awareness end to end: a fake `nvidia-smi` that prints the H100 capture
//! with the pids of real processes of two Unix users (and one pid the host
//! cannot see), the real daemon sampling it, discovery, and status with the
//! holder, the processes with their users, and `unreserved_use`. Without any
//! GPU tooling, status says "no GPU telemetry".

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_daemon::admin::ResourceAction;
use gpures_daemon::gpu::{BackendChoice, Probe};
use gpures_proto::{BookingRequest, GpuFlag, Period, StatusReport};
use gpures_testkit::TestDaemon;
use tarpc::context;

const UUID: &str = "GPU-d823cc85-ff44-26ac-915e-cef58e038574";
const INVISIBLE_PID: u32 = 99_999_999;

fn fake_smi(dir: &Path, pids: &[u32]) -> std::path::PathBuf {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gpures-testkit/data/nvidia-smi/h100-driver580/query-gpu-busy-nounits.csv"
    );
    let mut apps = String::new();
    for pid in pids.iter().chain(std::iter::once(&INVISIBLE_PID)) {
        apps.push_str(&format!("{UUID}, {pid}, python3, 1386\n"));
    }
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  --query-gpu=*) cat '{fixture}' ;;\n  --query-compute-apps=*) cat <<'EOF'\n{apps}EOF\n ;;\n  *) echo \"unexpected $*\" >&2; exit 2 ;;\nesac\n"
    );
    let path = dir.join("nvidia-smi");
    std::fs::write(&path, script).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

async fn status_when_sampled(client: &gpures_proto::GpuresClient, token: &str) -> StatusReport {
    for _ in 0..50 {
        let s = client
            .status(context::current(), token.to_owned(), None)
            .await
            .expect("rpc")
            .expect("status");
        if s.resources.iter().any(|r| r.telemetry.is_some())
            || (!s.hosts.is_empty() && s.resources.is_empty())
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no sample arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to run a process as uid 65534; CI runs as root with --include-ignored"]
async fn status_shows_holder_processes_users_and_unreserved_use() {
    assert_eq!(
        gpures_daemon::host::unix::euid(),
        0,
        "run as root: this test starts a process as uid 65534"
    );
    let mut root_proc = std::process::Command::new("sleep")
        .arg("120")
        .spawn()
        .expect("sleep");
    let mut nobody_proc = std::process::Command::new("sleep")
        .arg("120")
        .uid(65534)
        .gid(65534)
        .spawn()
        .expect("sleep as nobody");
    let dir = tempfile::tempdir().expect("dir");
    let smi = fake_smi(dir.path(), &[root_proc.id(), nobody_proc.id()]);
    let daemon = TestDaemon::start_with(|c| {
        c.gpu.backend = BackendChoice::NvidiaSmi;
        c.gpu.nvidia_smi = smi.clone();
        c.gpu.sample_interval_secs = 1;
    })
    .await
    .expect("daemon");

    // Discovery creates gpu0 with the UUID, and changes nothing the second time.
    let probe = Probe::new(BackendChoice::NvidiaSmi, &smi);
    assert_eq!(probe.backend_name(), "nvidia-smi");
    let gpus = probe.sample().expect("sample");
    let admin = daemon.host_admin().expect("host admin");
    let discover = || ResourceAction::Discover {
        host: "test-host".into(),
        gpus: gpus.clone(),
    };
    let out = admin.resource(discover()).await.expect("discover");
    assert!(
        out.contains("added gpu0 (NVIDIA H100 80GB HBM3, GPU-d823cc85"),
        "{out}"
    );
    let out = admin.resource(discover()).await.expect("discover again");
    assert!(out.contains("unchanged gpu0"), "{out}");
    let out = admin
        .resource(ResourceAction::Discover {
            host: "test-host".into(),
            gpus: vec![],
        })
        .await
        .expect("discover none");
    assert!(
        out.contains("missing gpu0"),
        "a vanished GPU is reported, not deleted: {out}"
    );
    assert!(
        out.contains("resource add gpu0 --gpu-index 0"),
        "no GPUs: it says how to add resources by hand: {out}"
    );

    // root holds gpu0 now; nobody's process on it is unreserved use.
    let (client, login) = daemon
        .user("root-user@lab.kr", "Root User")
        .await
        .expect("user");
    let resources = client
        .list_resources(context::current(), login.token.clone(), false, None)
        .await
        .expect("rpc")
        .expect("resources")
        .resources;
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].gpu_uuid.as_deref(), Some(UUID));
    let start = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc");
    client
        .create_booking(
            context::current(),
            login.token.clone(),
            BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![resources[0].id],
                period: Period {
                    start,
                    end: start + TimeDelta::hours(1),
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");
    let status = status_when_sampled(&client, &login.token).await;
    let gpu0 = &status.resources[0];
    assert_eq!(
        gpu0.current.as_ref().map(|r| r.user.email.as_str()),
        Some("root-user@lab.kr")
    );
    let t = gpu0.telemetry.as_ref().expect("telemetry");
    assert_eq!(t.utilization_pct, Some(100));
    assert_eq!(t.memory_used_mib, Some(2787));
    let users: Vec<(u32, Option<&str>)> = t
        .processes
        .iter()
        .map(|p| (p.pid, p.unix_user.as_deref()))
        .collect();
    assert_eq!(
        users,
        vec![
            (root_proc.id(), Some("root")),
            (nobody_proc.id(), Some("nobody")),
            (INVISIBLE_PID, None)
        ],
        "processes with their users; the invisible pid kept as unknown"
    );
    assert_eq!(
        gpu0.flags,
        vec![GpuFlag::UnreservedUse {
            unix_user: "nobody".into(),
            pid: nobody_proc.id()
        }]
    );
    assert_eq!(status.hosts.len(), 1);
    assert_eq!(status.hosts[0].backend, "nvidia-smi");
    let _ = root_proc.kill();
    let _ = nobody_proc.kill();
    let _ = root_proc.wait();
    let _ = nobody_proc.wait();
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn without_gpu_tooling_status_says_no_gpu_telemetry() {
    let daemon = TestDaemon::start_with(|c| {
        c.gpu.backend = BackendChoice::NvidiaSmi;
        c.gpu.nvidia_smi = "/nonexistent/nvidia-smi".into();
    })
    .await
    .expect("daemon");
    let (client, login) = daemon.user("a@lab.kr", "A").await.expect("user");
    let mut status = None;
    for _ in 0..50 {
        let s = client
            .status(context::current(), login.token.clone(), None)
            .await
            .expect("rpc")
            .expect("status");
        if !s.hosts.is_empty() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("the host reported");
    assert_eq!(status.hosts[0].backend, "none");
    assert!(
        status.hosts[0]
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with("no GPU telemetry")),
        "{:?}",
        status.hosts
    );
    daemon.stop().await.expect("stop");
}

/// The host admin manages resources by name: disable, enable, rename (the
/// reservations follow), describe and remove (only if never booked); a taken
/// name is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_disabled_enabled_renamed_and_described() {
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let admin = daemon.host_admin().expect("host admin");
    let run = |action| admin.resource(action);
    run(ResourceAction::Disable {
        name: "gpu0".into(),
    })
    .await
    .expect("disable");
    let out = run(ResourceAction::Enable {
        name: "gpu0".into(),
    })
    .await
    .expect("enable a disabled resource");
    assert!(out.contains("gpu0 is enabled"), "{out}");
    let out = run(ResourceAction::Rename {
        name: "gpu0".into(),
        new_name: "h100-0".into(),
    })
    .await
    .expect("rename");
    assert!(out.contains("gpu0 is now h100-0"), "{out}");
    let taken = run(ResourceAction::Rename {
        name: "h100-0".into(),
        new_name: "gpu1".into(),
    })
    .await;
    assert!(taken.is_err(), "a taken name is refused: {taken:?}");
    let out = run(ResourceAction::Describe {
        name: "h100-0".into(),
        description: "NVIDIA H100 80GB HBM3".into(),
    })
    .await
    .expect("describe");
    assert!(out.contains("h100-0: NVIDIA H100 80GB HBM3"), "{out}");
    let list = run(ResourceAction::List).await.expect("list");
    assert!(list.contains("h100-0") && list.contains("gpu1"), "{list}");
    assert!(!list.contains("gpu0 "), "{list}");

    // Remove: only a resource never booked; one with history is refused
    // (disable it instead) and stays.
    let (c, login) = daemon.user("kim@lab.kr", "Kim").await.expect("user");
    let start = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::hours(2);
    let booked = c
        .create_booking(
            context::current(),
            login.token.clone(),
            BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![daemon.gpus[1]],
                period: Period {
                    start,
                    end: start + TimeDelta::hours(1),
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");
    c.cancel_booking(context::current(), login.token.clone(), booked.booking_id)
        .await
        .expect("rpc")
        .expect("cancel");
    let refused = run(ResourceAction::Remove {
        name: "gpu1".into(),
    })
    .await
    .expect_err("gpu1 has a (cancelled) reservation");
    assert!(
        refused.to_string().contains("disable it instead"),
        "{refused}"
    );
    let out = run(ResourceAction::Remove {
        name: "h100-0".into(),
    })
    .await
    .expect("remove");
    assert_eq!(out, "removed h100-0\n");
    let missing = run(ResourceAction::Remove {
        name: "h100-0".into(),
    })
    .await
    .expect_err("gone");
    assert!(missing.to_string().contains("not found"), "{missing}");
    let list = run(ResourceAction::List).await.expect("list");
    assert!(!list.contains("h100-0") && list.contains("gpu1"), "{list}");
    daemon.stop().await.expect("stop");
}
