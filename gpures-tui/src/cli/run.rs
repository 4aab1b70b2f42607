//! `gpures run | env`: the GPUs you hold on this host now, as
//! `CUDA_VISIBLE_DEVICES`.

use std::time::Duration;

use chrono::Utc;
use gpures_proto::{Period, ReservationFilter, ResourceKind, text};

use super::{CliResult, Ctx, Failure, exit};
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
        let dev = match (&res.gpu_uuid, res.gpu_index) {
            (Some(uuid), _) if !index => uuid.clone(),
            (_, Some(i)) => i.to_string(),
            (Some(uuid), None) => uuid.clone(),
            (None, None) => {
                return Err(Failure::new(
                    exit::ERROR,
                    format!(
                        "{} has no GPU index or UUID: ask an admin to run `gpures-daemon resource discover`",
                        text::sanitize(&res.name)
                    ),
                ));
            }
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
