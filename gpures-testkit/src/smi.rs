//! A stand-in `nvidia-smi` for tests of what the daemon does with what its
//! GPUs run: two H100s (the captured fixture), running whatever processes
//! the test says, and failing on demand (no telemetry).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The fixture's GPU, and a second one made from it.
pub const GPU0: &str = "GPU-d823cc85-ff44-26ac-915e-cef58e038574";
pub const GPU1: &str = "GPU-5d2f6c1e-0b7a-4c39-9f0e-7a1b2c3d4e5f";

/// Writes the stand-in into `dir` and returns its path: two H100s; the
/// processes are whatever [`set_apps`] last wrote; `topo -m` prints what
/// [`set_topology`] wrote (and fails before); a file `broken` in `dir` makes
/// it fail.
///
/// # Panics
/// When `dir` cannot be written.
pub fn fake_smi(dir: &Path) -> PathBuf {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/nvidia-smi/h100-driver580/query-gpu-busy-nounits.csv"
    );
    let gpu0 = std::fs::read_to_string(fixture).expect("fixture");
    let gpu1 = gpu0
        .trim_end()
        .replacen("0, ", "1, ", 1)
        .replace(GPU0, GPU1)
        .replace("00000000:00:06.0", "00000000:00:07.0");
    std::fs::write(
        dir.join("gpus.csv"),
        format!("{}\n{gpu1}\n", gpu0.trim_end()),
    )
    .expect("gpus");
    std::fs::write(dir.join("apps.csv"), "").expect("apps");
    let d = dir.display();
    let script = format!(
        "#!/bin/sh\n[ -e '{d}/broken' ] && exit 9\ncase \"$1\" in\n  --query-gpu=*) cat '{d}/gpus.csv' ;;\n  --query-compute-apps=*) cat '{d}/apps.csv' ;;\n  topo) cat '{d}/topo.txt' ;;\n  *) exit 2 ;;\nesac\n"
    );
    let path = dir.join("nvidia-smi");
    std::fs::write(&path, script).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    path
}

/// The links `nvidia-smi topo -m` prints: the 4-GPU example matrix (0–3
/// and 1–2 by NVLink), or none.
///
/// # Panics
/// When `dir` cannot be written.
pub fn set_topology(dir: &Path, four_gpus: bool) {
    let path = dir.join("topo.txt");
    if four_gpus {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/nvidia-smi/topo-m-4gpu-example.txt"
        );
        std::fs::copy(example, path).expect("topology");
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// What the GPUs run: (GPU uuid, pid, name, MiB).
///
/// # Panics
/// When `dir` cannot be written.
pub fn set_apps(dir: &Path, apps: &[(&str, u32, &str, u64)]) {
    let text: String = apps
        .iter()
        .map(|(uuid, pid, name, mib)| format!("{uuid}, {pid}, {name}, {mib}\n"))
        .collect();
    let tmp = dir.join("apps.tmp");
    std::fs::write(&tmp, text).expect("apps");
    std::fs::rename(tmp, dir.join("apps.csv")).expect("rename");
}

/// A real process of Unix user `uid`: `sleep 300`.
///
/// # Panics
/// When it cannot start.
pub fn sleep_as(uid: u32, gid: u32) -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("300")
        .uid(uid)
        .gid(gid)
        .spawn()
        .expect("sleep")
}
