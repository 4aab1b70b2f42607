//! `gpures export --ics`: the reservations of a window as an iCalendar
//! (RFC 5545) file, for any calendar that is not Google.

use std::io::Write as _;
use std::path::Path;

use chrono::TimeDelta;
use gpures_proto::{Period, ReservationFilter, ics, limits};

use super::{CliResult, Ctx, Failure, exit};
use crate::timefmt::parse_time;

/// How far back an export reaches by default.
const PAST_DAYS: i64 = 30;
/// How far ahead an export reaches by default.
const AHEAD_DAYS: i64 = 180;

/// What `gpures export` was asked.
pub(super) struct Asked {
    pub mine: bool,
    pub from: Option<String>,
    pub to: Option<String>,
    pub output: Option<std::path::PathBuf>,
}

/// `gpures export --ics [--mine] [--from T] [--to T] [-o FILE]`.
pub(super) async fn ics(ctx: &Ctx, a: Asked) -> CliResult<()> {
    let start = match &a.from {
        Some(f) => parse_time(f, ctx.now, ctx.tz)?,
        None => ctx.now - TimeDelta::days(PAST_DAYS),
    };
    let end = match &a.to {
        Some(t) => parse_time(t, ctx.now, ctx.tz)?,
        None => ctx.now + TimeDelta::days(AHEAD_DAYS),
    };
    if end <= start {
        return Err(Failure::usage("--to must be after --from"));
    }
    if end - start > TimeDelta::days(limits::WINDOW_MAX_DAYS) {
        return Err(Failure::usage(format!(
            "an export covers at most {} days",
            limits::WINDOW_MAX_DAYS
        )));
    }
    let (user_email, name) = if a.mine {
        let me = ctx.api(ctx.client.whoami().await)?;
        let name = format!("gpures: {}", me.display_name);
        (Some(me.email), name)
    } else {
        (None, "gpures: the lab".to_owned())
    };
    let rs = ctx
        .list(ReservationFilter {
            resources: Vec::new(),
            user_email,
            window: Some(Period { start, end }),
            include_cancelled: true,
        })
        .await?;
    let text = ics::calendar(&name, &rs);
    match &a.output {
        None => {
            out!("{text}");
            Ok(())
        }
        Some(path) => write_atomically(path, text.as_bytes()).map_err(|e| {
            Failure::new(exit::ERROR, format!("cannot write {}: {e}", path.display()))
        }),
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, so a
/// calendar reading the file never sees half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    // A calendar file is for others to read (a web server, a sync client).
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
