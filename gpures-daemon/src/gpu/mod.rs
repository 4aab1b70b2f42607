//! What is really running on the GPUs: [`Probe`] samples them through NVML
//! (`nvml-wrapper`, when `libnvidia-ml.so.1` loads at run time) or
//! `nvidia-smi` (CSV without units, parsed by [`smi`]), or not at all; a
//! missing driver or tool is a normal state ([`Backend::None`]), never an
//! error. The monitor worker
//! (`workers::gpu_monitor`) samples on a timer; [`record`] holds what is
//! stored per host and [`flags`] compares the cards with the schedule.
//!
//! Process owners come from `/proc/<pid>/status` (the real uid, resolved to
//! a name); a pid this host cannot see (another PID namespace) keeps
//! `unix_user: None` and is shown as unknown.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gpures_proto::GpuProcess;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod record;
pub mod topology;

pub use record::{GpuIndex, HostRecord, StoredGpu, flags, telemetry_for};
pub use topology::GpuLink;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("nvidia-smi failed: {0}")]
    Smi(String),
    #[error("cannot read nvidia-smi output: {0}")]
    Parse(String),
    #[error("NVML: {0}")]
    Nvml(String),
}

/// Which way the GPUs are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// NVML if it loads, else `nvidia-smi` if it runs, else none.
    Auto,
    Nvml,
    NvidiaSmi,
    None,
}

/// The backend in use.
pub enum Backend {
    Nvml(Box<nvml_wrapper::Nvml>),
    NvidiaSmi(PathBuf),
    /// No telemetry; the reason in words.
    None(String),
}

/// One sample of one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub utilization_pct: Option<u32>,
    pub memory_used_mib: Option<u64>,
    pub memory_total_mib: Option<u64>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f32>,
    pub processes: Vec<GpuProcess>,
}

/// Reads the GPUs of this host.
pub struct Probe {
    backend: Backend,
    /// `nvidia-smi`, when it runs here: the topology comes from it whatever
    /// the backend (NVML has no matrix of links).
    smi: Option<PathBuf>,
}

impl Probe {
    /// Chooses the backend. `nvidia_smi` is the program to run (a name is
    /// looked up on PATH).
    pub fn new(choice: BackendChoice, nvidia_smi: &Path) -> Probe {
        let nvml = || {
            nvml_wrapper::Nvml::builder()
                .lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"))
                .init()
        };
        let smi = || find_program(nvidia_smi);
        let topology_smi = match choice {
            BackendChoice::None => None,
            _ => smi(),
        };
        let backend = match choice {
            BackendChoice::None => {
                Backend::None("GPU telemetry is turned off ([gpu] backend = \"none\")".into())
            }
            BackendChoice::Nvml => match nvml() {
                Ok(n) => Backend::Nvml(Box::new(n)),
                Err(e) => Backend::None(format!("NVML did not load: {e}")),
            },
            BackendChoice::NvidiaSmi => match smi() {
                Some(p) => Backend::NvidiaSmi(p),
                None => Backend::None(format!("{} was not found", nvidia_smi.display())),
            },
            BackendChoice::Auto => match nvml() {
                Ok(n) => Backend::Nvml(Box::new(n)),
                Err(_) => match smi() {
                    Some(p) => Backend::NvidiaSmi(p),
                    None => Backend::None("no NVIDIA driver or nvidia-smi on this host".into()),
                },
            },
        };
        Probe {
            backend,
            smi: topology_smi,
        }
    }

    /// How the GPUs are linked (`nvidia-smi topo -m`); empty without
    /// `nvidia-smi` or when it fails. Blocking; read once, at start.
    pub fn topology(&self) -> Vec<GpuLink> {
        let Some(smi) = &self.smi else {
            return Vec::new();
        };
        match Command::new(smi).args(["topo", "-m"]).output() {
            Ok(out) if out.status.success() => {
                topology::parse(&String::from_utf8_lossy(&out.stdout))
            }
            Ok(out) => {
                tracing::info!(
                    status = %out.status,
                    "no GPU topology: nvidia-smi topo -m failed"
                );
                Vec::new()
            }
            Err(e) => {
                tracing::info!(error = %e, "no GPU topology: nvidia-smi topo -m did not run");
                Vec::new()
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Nvml(_) => "nvml",
            Backend::NvidiaSmi(_) => "nvidia-smi",
            Backend::None(_) => "none",
        }
    }

    /// Why there is no telemetry, if there is none.
    pub fn note(&self) -> Option<String> {
        match &self.backend {
            Backend::None(why) => Some(format!("no GPU telemetry: {why}")),
            _ => None,
        }
    }

    /// Takes one sample. Blocking (runs a program or calls the driver).
    ///
    /// # Errors
    /// The tool failed or printed something unreadable.
    pub fn sample(&self) -> Result<Vec<GpuSample>, ProbeError> {
        match &self.backend {
            Backend::None(_) => Ok(Vec::new()),
            Backend::NvidiaSmi(path) => sample_smi(path),
            Backend::Nvml(nvml) => sample_nvml(nvml),
        }
    }
}

fn find_program(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

/// The columns asked of `--query-gpu`, in this order.
pub const QUERY_GPU: &str = "index,uuid,name,pci.bus_id,utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu,power.draw,power.limit";
/// The columns asked of `--query-compute-apps`, in this order.
pub const QUERY_APPS: &str = "gpu_uuid,pid,process_name,used_gpu_memory";

fn run_smi(path: &Path, query: &str) -> Result<String, ProbeError> {
    let out = Command::new(path)
        .arg(query)
        .arg("--format=csv,noheader,nounits")
        .output()
        .map_err(|e| ProbeError::Smi(e.to_string()))?;
    if !out.status.success() {
        return Err(ProbeError::Smi(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| ProbeError::Parse(e.to_string()))
}

fn sample_smi(path: &Path) -> Result<Vec<GpuSample>, ProbeError> {
    let gpus = smi::parse_gpus(&run_smi(path, &format!("--query-gpu={QUERY_GPU}"))?)?;
    let apps = smi::parse_apps(&run_smi(
        path,
        &format!("--query-compute-apps={QUERY_APPS}"),
    )?)?;
    Ok(smi::join(gpus, apps, &user_of_pid))
}

fn sample_nvml(nvml: &nvml_wrapper::Nvml) -> Result<Vec<GpuSample>, ProbeError> {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    use nvml_wrapper::enums::device::UsedGpuMemory;
    let err = |e: nvml_wrapper::error::NvmlError| ProbeError::Nvml(e.to_string());
    let count = nvml.device_count().map_err(err)?;
    let mut out = Vec::new();
    for i in 0..count {
        let d = nvml.device_by_index(i).map_err(err)?;
        let mem = d.memory_info().ok();
        let processes = d
            .running_compute_processes()
            .unwrap_or_default()
            .into_iter()
            .map(|p| GpuProcess {
                pid: p.pid,
                name: process_name(p.pid).unwrap_or_else(|| "?".into()),
                used_memory_mib: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b / (1024 * 1024)),
                    UsedGpuMemory::Unavailable => None,
                },
                unix_user: user_of_pid(p.pid),
            })
            .collect();
        out.push(GpuSample {
            index: d.index().unwrap_or(i),
            uuid: d.uuid().map_err(err)?,
            name: d.name().unwrap_or_default(),
            utilization_pct: d.utilization_rates().ok().map(|u| u.gpu),
            memory_used_mib: mem.as_ref().map(|m| m.used / (1024 * 1024)),
            memory_total_mib: mem.as_ref().map(|m| m.total / (1024 * 1024)),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            power_w: d.power_usage().ok().map(|mw| mw as f32 / 1000.0),
            processes,
        });
    }
    Ok(out)
}

fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The Unix user running `pid` (its real uid), if this host can see it.
pub fn user_of_pid(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(crate::host::unix::name_of_uid(uid))
}

/// `nvidia-smi` CSV parsing, with or without units.
pub mod smi {
    use super::{GpuSample, ProbeError};
    use gpures_proto::GpuProcess;

    /// One `--query-gpu` row.
    #[derive(Clone, Debug, PartialEq)]
    pub struct GpuRow {
        pub index: u32,
        pub uuid: String,
        pub name: String,
        pub utilization_pct: Option<u32>,
        pub memory_used_mib: Option<u64>,
        pub memory_total_mib: Option<u64>,
        pub temperature_c: Option<u32>,
        pub power_w: Option<f32>,
    }

    /// One `--query-compute-apps` row.
    #[derive(Clone, Debug, PartialEq)]
    pub struct AppRow {
        pub gpu_uuid: String,
        pub pid: u32,
        pub name: String,
        pub used_memory_mib: Option<u64>,
    }

    /// A number, ignoring a unit (`100 %`, `2787 MiB`, `633.42 W`) and
    /// treating `[N/A]`, `[Not Supported]` and the like as unknown.
    fn number(field: &str) -> Option<f64> {
        let f = field.trim();
        if f.starts_with('[') || f.eq_ignore_ascii_case("n/a") {
            return None;
        }
        f.split_whitespace().next()?.parse::<f64>().ok()
    }

    fn is_header(line: &str) -> bool {
        line.starts_with("index") || line.starts_with("gpu_uuid")
    }

    /// Parses `--query-gpu=`[`QUERY_GPU`](super::QUERY_GPU) output.
    ///
    /// # Errors
    /// A row with too few fields or no index.
    pub fn parse_gpus(text: &str) -> Result<Vec<GpuRow>, ProbeError> {
        csv_rows(text, 11)
            .map(|row| {
                let (line, f) = row?;
                let index = f[0]
                    .parse()
                    .map_err(|_| ProbeError::Parse(format!("bad index: {line}")))?;
                Ok(GpuRow {
                    index,
                    uuid: f[1].to_owned(),
                    name: f[2].to_owned(),
                    utilization_pct: number(f[4]).map(|v| v as u32),
                    memory_used_mib: number(f[6]).map(|v| v as u64),
                    memory_total_mib: number(f[7]).map(|v| v as u64),
                    temperature_c: number(f[8]).map(|v| v as u32),
                    power_w: number(f[9]).map(|v| v as f32),
                })
            })
            .collect()
    }

    /// Parses `--query-compute-apps=`[`QUERY_APPS`](super::QUERY_APPS) output.
    ///
    /// # Errors
    /// A row with too few fields or no pid.
    pub fn parse_apps(text: &str) -> Result<Vec<AppRow>, ProbeError> {
        csv_rows(text, 4)
            .map(|row| {
                let (line, f) = row?;
                let pid = f[1]
                    .parse()
                    .map_err(|_| ProbeError::Parse(format!("bad pid: {line}")))?;
                Ok(AppRow {
                    gpu_uuid: f[0].to_owned(),
                    pid,
                    name: f[2].to_owned(),
                    used_memory_mib: number(f[3]).map(|v| v as u64),
                })
            })
            .collect()
    }

    /// The data rows of nvidia-smi CSV output (blank and header lines
    /// skipped) as trimmed fields, each with its line; a row with fewer than
    /// `fields` fields is an error.
    fn csv_rows(
        text: &str,
        fields: usize,
    ) -> impl Iterator<Item = Result<(&str, Vec<&str>), ProbeError>> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !is_header(l))
            .map(move |line| {
                let f: Vec<&str> = line.split(',').map(str::trim).collect();
                if f.len() < fields {
                    return Err(ProbeError::Parse(format!(
                        "expected {fields} fields: {line}"
                    )));
                }
                Ok((line, f))
            })
    }

    /// Puts each process under its GPU, resolving its user with `user_of`.
    pub fn join(
        gpus: Vec<GpuRow>,
        apps: Vec<AppRow>,
        user_of: &dyn Fn(u32) -> Option<String>,
    ) -> Vec<GpuSample> {
        gpus.into_iter()
            .map(|g| GpuSample {
                processes: apps
                    .iter()
                    .filter(|a| a.gpu_uuid == g.uuid)
                    .map(|a| GpuProcess {
                        pid: a.pid,
                        name: a.name.clone(),
                        used_memory_mib: a.used_memory_mib,
                        unix_user: user_of(a.pid),
                    })
                    .collect(),
                index: g.index,
                uuid: g.uuid,
                name: g.name,
                utilization_pct: g.utilization_pct,
                memory_used_mib: g.memory_used_mib,
                memory_total_mib: g.memory_total_mib,
                temperature_c: g.temperature_c,
                power_w: g.power_w,
            })
            .collect()
    }
}

/// CPU time used so far by this process and its waited-for children.
fn cpu_time() -> Duration {
    let get = |who| {
        // SAFETY: getrusage fills the zeroed struct we pass.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a rusage.
        if unsafe { libc::getrusage(who, &mut u) } != 0 {
            return Duration::ZERO;
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// `gpures-daemon gpu probe` output: takes `repeat` samples and prints the
/// last, as a table or as JSON, with the backend and the wall-clock and CPU
/// time per sample (this process plus the nvidia-smi it runs).
///
/// # Errors
/// The probe failed, or JSON serialization failed.
pub fn probe_report(probe: &Probe, repeat: u32, json: bool) -> Result<String, ProbeError> {
    let (cpu0, wall0) = (cpu_time(), std::time::Instant::now());
    let mut gpus = Vec::new();
    for _ in 0..repeat {
        gpus = probe.sample()?;
    }
    let n = f64::from(repeat);
    let wall_ms = wall0.elapsed().as_secs_f64() * 1000.0 / n;
    let cpu_ms = (cpu_time().saturating_sub(cpu0)).as_secs_f64() * 1000.0 / n;
    let note = probe.note();
    let links = probe.topology();
    if json {
        #[derive(Serialize)]
        struct Report<'a> {
            host: String,
            backend: &'a str,
            note: Option<String>,
            sampled_at: DateTime<Utc>,
            samples: u32,
            wall_ms_per_sample: f64,
            cpu_ms_per_sample: f64,
            gpus: &'a [GpuSample],
            topology: &'a [GpuLink],
        }
        let r = Report {
            host: crate::host::unix::system_host_name(),
            backend: probe.backend_name(),
            note,
            sampled_at: Utc::now(),
            samples: repeat,
            wall_ms_per_sample: wall_ms,
            cpu_ms_per_sample: cpu_ms,
            gpus: &gpus,
            topology: &links,
        };
        return serde_json::to_string_pretty(&r)
            .map(|s| s + "\n")
            .map_err(|e| ProbeError::Parse(e.to_string()));
    }
    let mut out = format!(
        "backend: {} · {repeat} sample(s) · {wall_ms:.1} ms wall and {cpu_ms:.1} ms CPU per sample\n",
        probe.backend_name()
    );
    if let Some(n) = note {
        out.push_str(&n);
        out.push('\n');
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for g in &gpus {
        out.push_str(&format!(
            "GPU {} {} {}: {}% util, {}/{} MiB, {} C, {} W\n",
            g.index,
            g.name,
            g.uuid,
            opt(g.utilization_pct.map(|v| v.to_string())),
            opt(g.memory_used_mib.map(|v| v.to_string())),
            opt(g.memory_total_mib.map(|v| v.to_string())),
            opt(g.temperature_c.map(|v| v.to_string())),
            opt(g.power_w.map(|v| format!("{v:.0}"))),
        ));
        for p in &g.processes {
            out.push_str(&format!(
                "  pid {} {} user {} {} MiB\n",
                p.pid,
                p.name,
                p.unix_user.as_deref().unwrap_or("unknown"),
                opt(p.used_memory_mib.map(|v| v.to_string()))
            ));
        }
    }
    if links.is_empty() {
        out.push_str("links between GPUs: not known (one GPU, or no nvidia-smi topo -m)\n");
    } else {
        let pairs: Vec<String> = links
            .iter()
            .map(|l| format!("{}-{} {}", l.a, l.b, l.link))
            .collect();
        out.push_str(&format!("links between GPUs: {}\n", pairs.join(", ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gpures-testkit/data/nvidia-smi/h100-driver580"
    );

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIX}/{name}")).expect("fixture")
    }

    #[test]
    fn parses_busy_and_idle_gpus_with_and_without_units() {
        let busy = smi::parse_gpus(&fixture("query-gpu-busy-nounits.csv")).expect("parse");
        let units = smi::parse_gpus(&fixture("query-gpu-busy.csv")).expect("parse");
        assert_eq!(busy.len(), 1);
        let g = &busy[0];
        assert_eq!(g.index, 0);
        assert_eq!(g.uuid, "GPU-d823cc85-ff44-26ac-915e-cef58e038574");
        assert_eq!(g.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(g.utilization_pct, Some(100));
        assert_eq!(g.memory_used_mib, Some(2787));
        assert_eq!(g.memory_total_mib, Some(81559));
        assert_eq!(g.temperature_c, Some(55));
        assert!(g.power_w.is_some_and(|w| (w - 633.68).abs() < 0.01));
        assert_eq!(units[0].utilization_pct, Some(100), "units are ignored");
        assert_eq!(units[0].memory_used_mib, Some(2787));
        let idle = smi::parse_gpus(&fixture("query-gpu-idle-nounits.csv")).expect("parse");
        assert_eq!(idle[0].utilization_pct, Some(0));
        assert_eq!(idle[0].memory_used_mib, Some(0));
        let idle_units = smi::parse_gpus(&fixture("query-gpu-idle.csv")).expect("parse");
        assert_eq!(idle_units[0].temperature_c, Some(36));
    }

    #[test]
    fn parses_processes_of_two_users() {
        let apps = smi::parse_apps(&fixture("compute-apps-busy-nounits.csv")).expect("parse");
        let with_units = smi::parse_apps(&fixture("compute-apps-busy.csv")).expect("parse");
        assert_eq!(apps, with_units);
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].pid, 634);
        assert_eq!(apps[1].pid, 638);
        assert_eq!(apps[0].used_memory_mib, Some(1386));
        assert!(
            smi::parse_apps(&fixture("compute-apps-idle.csv"))
                .expect("parse")
                .is_empty()
        );
        // The capture's `ps`: pid 634 ran as root, pid 638 as uid 1001 (labuser1).
        let users = |pid: u32| match pid {
            634 => Some("root".to_owned()),
            638 => Some("labuser1".to_owned()),
            _ => None,
        };
        let gpus = smi::join(
            smi::parse_gpus(&fixture("query-gpu-busy-nounits.csv")).expect("gpus"),
            apps,
            &users,
        );
        let procs = &gpus[0].processes;
        assert_eq!(procs.len(), 2);
        assert_eq!(procs[0].unix_user.as_deref(), Some("root"));
        assert_eq!(procs[1].unix_user.as_deref(), Some("labuser1"));
        // A pid the host cannot see stays, as unknown.
        let hidden = smi::join(
            smi::parse_gpus(&fixture("query-gpu-busy-nounits.csv")).expect("gpus"),
            smi::parse_apps("GPU-d823cc85-ff44-26ac-915e-cef58e038574, 99999, python3, 10")
                .expect("apps"),
            &|_| None,
        );
        assert_eq!(hidden[0].processes.len(), 1);
        assert_eq!(hidden[0].processes[0].unix_user, None);
    }

    #[test]
    fn unsupported_fields_are_unknown_and_garbage_is_an_error() {
        let g = smi::parse_gpus(
            "0, GPU-x, Tesla T4, 0:0, [N/A], [N/A], 10, 100, [Not Supported], [N/A], 70",
        )
        .expect("parse");
        assert_eq!(g[0].utilization_pct, None);
        assert_eq!(g[0].power_w, None);
        assert!(smi::parse_gpus("zero, GPU-x").is_err());
        assert!(smi::parse_apps("GPU-x, notapid, p, 1").is_err());
    }

    #[test]
    fn reads_the_user_of_a_live_pid() {
        let me = user_of_pid(std::process::id()).expect("own pid");
        assert_eq!(
            me,
            crate::host::unix::name_of_uid(crate::host::unix::euid())
        );
        assert_eq!(user_of_pid(u32::MAX - 1), None);
    }

    #[test]
    fn no_tooling_is_a_normal_state() {
        let p = Probe::new(
            BackendChoice::NvidiaSmi,
            Path::new("/nonexistent/nvidia-smi"),
        );
        assert_eq!(p.backend_name(), "none");
        assert!(p.note().is_some_and(|n| n.starts_with("no GPU telemetry")));
        assert!(p.sample().expect("sample").is_empty());
        let off = Probe::new(BackendChoice::None, Path::new("nvidia-smi"));
        assert_eq!(off.backend_name(), "none");
    }
}
