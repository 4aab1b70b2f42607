//! `gpures run | env`: the GPUs you hold on this host now, as
//! `CUDA_VISIBLE_DEVICES`; `run --gpus N` books them for the command and
//! gives them back when it exits.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use chrono::{DurationRound, Utc};
use gpures_proto::{
    ApiError, JobProcess, Lookup, Period, QueueRequest, QueueState, ReservationFilter,
    ResourceKind, procfs, text,
};
use uuid::Uuid;

use super::{CliResult, Ctx, Failure, exit};
use crate::client::ClientError;
use crate::timefmt::format_local;

/// Runs a command on the GPUs held now (replaces this process).
pub(super) async fn run(ctx: &Ctx, wait: bool, index: bool, command: Vec<String>) -> CliResult<()> {
    let devices = loop {
        match held_devices(ctx, index, &ctx.client.hello().host).await? {
            Held::Now(devices) => break devices,
            Held::Next(text) if wait => {
                eprintln!("gpures: {text}; waiting for it");
                tokio::time::sleep(Duration::from_secs(15)).await;
            }
            Held::Next(text) => return Err(Failure::new(exit::CONFLICT, text)),
            Held::Nothing(text) => return Err(Failure::new(exit::CONFLICT, text)),
        }
    };
    use std::os::unix::process::CommandExt;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::usage("give a command after --"))?;
    let err = std::process::Command::new(program)
        .args(args)
        .env("CUDA_VISIBLE_DEVICES", &devices)
        .exec();
    // As a shell says it: 127 when there is no such command, 126 when it
    // cannot be run.
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => exit::NOT_FOUND,
        _ => exit::CANNOT_RUN,
    };
    Err(Failure::new(code, format!("cannot run {program}: {err}")))
}

/// How CUDA_VISIBLE_DEVICES names `res`: its UUID, or its index when asked
/// (or when it has no UUID); `None` when it has neither.
fn device_of(res: &gpures_proto::Resource, index: bool) -> Option<String> {
    match (&res.gpu_uuid, res.gpu_index) {
        (Some(uuid), _) if !index => Some(uuid.clone()),
        (_, Some(i)) => Some(i.to_string()),
        (Some(uuid), None) => Some(uuid.clone()),
        (None, None) => None,
    }
}

/// Prints `export CUDA_VISIBLE_DEVICES=…`.
pub(super) async fn env(ctx: &Ctx, index: bool) -> CliResult<()> {
    match held_devices(ctx, index, &ctx.client.hello().host).await? {
        Held::Now(devices) => outln!("export CUDA_VISIBLE_DEVICES={devices}"),
        Held::Next(text) | Held::Nothing(text) => {
            return Err(Failure::new(exit::CONFLICT, text));
        }
    }
    Ok(())
}

enum Held {
    /// The value for CUDA_VISIBLE_DEVICES.
    Now(String),
    /// Nothing now; when the next reservation starts.
    Next(String),
    Nothing(String),
}

/// The GPUs of this host the caller holds right now, as UUIDs (or indices).
async fn held_devices(ctx: &Ctx, index: bool, host: &str) -> CliResult<Held> {
    let index = index || std::env::var("GPURES_CUDA_DEVICES").is_ok_and(|v| v == "index");
    let me = ctx.api(ctx.client.whoami().await)?;
    let resources = ctx.resources().await?;
    let now = Utc::now();
    let mine = ctx
        .list(ReservationFilter {
            user_email: Some(me.email),
            window: Some(Period {
                start: now,
                end: now + chrono::TimeDelta::days(60),
            }),
            ..Default::default()
        })
        .await?;
    let here = |id: i64| {
        resources
            .iter()
            .find(|r| r.id == id && r.host == host && r.kind == ResourceKind::Gpu)
    };
    // In GPU index order, as CUDA numbers them, whatever order they were booked in.
    let mut devices: Vec<(Option<i32>, String)> = Vec::new();
    for r in mine.iter().filter(|r| r.period.contains(now)) {
        let Some(res) = here(r.resource_id) else {
            continue;
        };
        let Some(dev) = device_of(res, index) else {
            return Err(Failure::new(
                exit::ERROR,
                format!(
                    "{} has no GPU index or UUID: ask an admin to run `gpures-daemon resource discover`",
                    text::sanitize(&res.name)
                ),
            ));
        };
        if !devices.iter().any(|(_, d)| *d == dev) {
            devices.push((res.gpu_index, dev));
        }
    }
    if !devices.is_empty() {
        devices.sort();
        let list: Vec<String> = devices.into_iter().map(|(_, d)| d).collect();
        return Ok(Held::Now(list.join(",")));
    }
    Ok(
        match mine
            .iter()
            .filter(|r| r.period.start > now && here(r.resource_id).is_some())
            .min_by_key(|r| r.period.start)
        {
            Some(next) => Held::Next(format!(
                "you hold no GPU on {host} now; your next reservation ({}) starts {}",
                text::sanitize(&next.resource_name),
                format_local(next.period.start, ctx.tz)
            )),
            None => Held::Nothing(format!(
                "you hold no GPU on {host} now and have no reservation coming: book one with `gpures book`"
            )),
        },
    )
}

/// `run --gpus N --for D -- CMD`: books N GPUs of this host now (through
/// the queue, so `--wait` can wait for them), runs CMD on them, forwards
/// SIGTERM and SIGHUP to it, releases the booking the moment it exits, and
/// exits with its code. The daemon is told the client's and CMD's pids, so
/// it releases the booking itself if both die without releasing (`kill -9`
/// of the session). Ctrl-C reaches CMD from the terminal directly.
/// How `run --gpus` books: N GPUs for `length`, waiting in the queue or
/// not, extending while the command runs or not.
pub(super) struct Managed {
    pub gpus: u32,
    pub length: String,
    pub wait: bool,
    pub extend: bool,
    pub index: bool,
}

/// How much `--extend` adds at a time, and how long before the end.
const EXTEND_STEP: chrono::TimeDelta = chrono::TimeDelta::minutes(15);
const EXTEND_AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

pub(super) async fn run_booked(ctx: &Ctx, how: Managed, command: Vec<String>) -> CliResult<()> {
    let Managed {
        gpus,
        length,
        wait,
        extend,
        index,
    } = how;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::usage("give a command after --"))?;
    let (tz, now) = (ctx.tz, Utc::now());
    let minutes = super::length_minutes(&length, now, tz)?;
    let end = now + chrono::TimeDelta::minutes(i64::from(minutes));
    let host = ctx.client.hello().host.clone();
    let entry = ctx.api(
        ctx.client
            .enqueue(QueueRequest {
                request_id: Uuid::new_v4(),
                gpus,
                length_minutes: minutes,
                host: Some(host.clone()),
                until: None,
                note: text::sanitize(&format!("gpures run {program}")),
            })
            .await,
    )?;
    let booking_id = match (entry.state, entry.booking_id) {
        (QueueState::Granted, Some(id)) => id,
        (QueueState::Waiting, _) if wait => wait_for_grant(ctx, entry.id).await?,
        (QueueState::Waiting, _) => {
            let _ = ctx.client.cancel_queued(entry.id).await;
            return Err(Failure::new(
                exit::CONFLICT,
                format!(
                    "{gpus} GPU{} of {host} are not free now{}; --wait queues for them",
                    if gpus == 1 { "" } else { "s" },
                    entry
                        .estimated_start
                        .map(|t| format!(" (expected from {})", format_local(t, tz)))
                        .unwrap_or_default()
                ),
            ));
        }
        (state, _) => {
            return Err(Failure::new(
                exit::ERROR,
                format!("the request was {}", state.as_str()),
            ));
        }
    };
    let held = ctx.api(ctx.client.find(Lookup::Booking(booking_id)).await)?;
    let booked_until = held.first().map_or(end, |r| r.period.end);
    let resources = ctx.resources().await?;
    let index = index || std::env::var("GPURES_CUDA_DEVICES").is_ok_and(|v| v == "index");
    let mut devices: Vec<(Option<i32>, String, String)> = held
        .iter()
        .filter_map(|r| resources.iter().find(|x| x.id == r.resource_id))
        .map(|res| {
            let dev = device_of(res, index).unwrap_or_else(|| res.name.clone());
            (res.gpu_index, dev, text::sanitize(&res.name))
        })
        .collect();
    devices.sort();
    let visible: Vec<&str> = devices.iter().map(|(_, d, _)| d.as_str()).collect();
    let names: Vec<&str> = devices.iter().map(|(_, _, n)| n.as_str()).collect();
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .env("CUDA_VISIBLE_DEVICES", visible.join(","))
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = ctx.client.release_booking(booking_id).await;
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_RUN,
            };
            return Err(Failure::new(code, format!("cannot run {program}: {e}")));
        }
    };
    let mut processes = Vec::new();
    for pid in [Some(std::process::id()), child.id()].into_iter().flatten() {
        if let Ok(start_ticks) = procfs::start_ticks(pid) {
            processes.push(JobProcess { pid, start_ticks });
        }
    }
    if let Err(e) = ctx.client.attach_job(booking_id, processes).await {
        eprintln!(
            "gpures: the daemon cannot watch this job ({e}); if this client is killed, \
             release booking {} yourself",
            &booking_id.to_string()[..8]
        );
    }
    eprintln!(
        "gpures: running {program} on {} until {} (booking {}); released when it exits",
        names.join(", "),
        format_local(end, tz),
        &booking_id.to_string()[..8]
    );
    let status = if extend {
        tokio::select! {
            status = wait_forwarding(&mut child) => status,
            () = keep_extending(ctx, booking_id, booked_until) => wait_forwarding(&mut child).await,
        }
    } else {
        wait_forwarding(&mut child).await
    };
    match ctx.client.release_booking(booking_id).await {
        Ok(_) | Err(ClientError::Api(ApiError::InvalidArgument { .. })) => {}
        Err(e) => eprintln!(
            "gpures: could not release booking {}: {e}",
            &booking_id.to_string()[..8]
        ),
    }
    let code = match status {
        Ok(s) => s
            .code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(1),
        Err(e) => {
            eprintln!("gpures: lost track of {program}: {e}");
            1
        }
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// Extends `booking_id` (ending at `end`) by [`EXTEND_STEP`] whenever less
/// than [`EXTEND_AHEAD`] is left, until the daemon refuses (the next holder,
/// the booking limit); says why once and returns.
async fn keep_extending(ctx: &Ctx, booking_id: Uuid, mut end: chrono::DateTime<Utc>) {
    loop {
        let wake = end - EXTEND_AHEAD;
        let pause = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(pause.max(Duration::from_secs(1))).await;
        // A granted booking ends at any second; bookings move by whole
        // minutes: the next whole minute after the step.
        let minute = chrono::TimeDelta::minutes(1);
        let wanted = end + EXTEND_STEP;
        let next = match wanted.duration_trunc(minute) {
            Ok(t) if t < wanted => t + minute,
            _ => wanted,
        };
        let change = gpures_proto::ReservationChange {
            start: None,
            end: Some(next),
            note: None,
        };
        match ctx.client.update_booking(booking_id, change).await {
            Ok(_) => end = next,
            Err(e) => {
                eprintln!(
                    "gpures: no longer extending: the booking ends {} ({})",
                    format_local(end, ctx.tz),
                    super::client_failure(e, ctx.tz).message
                );
                return;
            }
        }
    }
}

/// Waits for the queue request `id` to be granted, saying where it stands
/// when that changes; returns the booking.
async fn wait_for_grant(ctx: &Ctx, id: Uuid) -> CliResult<Uuid> {
    let mut since = 0;
    let mut said = None;
    loop {
        let entries = ctx.api(ctx.client.queue().await)?;
        let Some(e) = entries.into_iter().find(|e| e.id == id) else {
            return Err(Failure::new(exit::ERROR, "the queue request disappeared"));
        };
        match (e.state, e.booking_id) {
            (QueueState::Granted, Some(b)) => return Ok(b),
            (QueueState::Waiting, _) => {
                let now = (e.position, e.estimated_start);
                if said != Some(now) {
                    eprintln!(
                        "gpures: waiting in the queue, position {}{}",
                        e.position
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "?".into()),
                        e.estimated_start
                            .map(|t| format!(", expected from {}", format_local(t, ctx.tz)))
                            .unwrap_or_default()
                    );
                    said = Some(now);
                }
            }
            (state, _) => {
                return Err(Failure::new(
                    exit::ERROR,
                    format!("the queue request was {}", state.as_str()),
                ));
            }
        }
        since = ctx.api(ctx.client.wait_for_changes(since).await)?.version;
    }
}

/// Waits for `child`, passing on SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent
/// to this client; SIGINT and SIGQUIT are ignored here (a terminal sends
/// them to CMD too, and CMD decides).
async fn wait_forwarding(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut kinds = Vec::new();
    for (kind, number) in [
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::user_defined1(), libc::SIGUSR1),
        (SignalKind::user_defined2(), libc::SIGUSR2),
        (SignalKind::interrupt(), 0),
        (SignalKind::quit(), 0),
    ] {
        if let Ok(s) = signal(kind) {
            kinds.push((s, number));
        }
    }
    let pid = child.id();
    loop {
        let received = futures::future::select_all(
            kinds
                .iter_mut()
                .map(|(s, n)| Box::pin(async move { s.recv().await.map(|_| *n) })),
        );
        tokio::select! {
            status = child.wait() => return status,
            (Some(number), _, _) = received => {
                if let (Some(pid), true) = (pid, number != 0) {
                    // SAFETY: signalling our own child by its pid.
                    unsafe {
                        libc::kill(libc::pid_t::try_from(pid).unwrap_or(0), number);
                    }
                }
            }
        }
    }
}
