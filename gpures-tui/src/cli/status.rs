//! `gpures status`: who holds each GPU, who is next, live load, who runs.

use gpures_proto::text;
use serde::Serialize;

use super::{CliResult, Ctx};
use crate::output::{self, ReservationJson, ResourceJson, table};
use crate::timefmt::format_local;

/// The status table (or JSON).
pub(super) async fn status(ctx: &Ctx) -> CliResult<()> {
    let tz = ctx.tz;
    let report = ctx.api(ctx.client.status().await)?;
    if ctx.json {
        #[derive(Serialize)]
        struct Row<'a> {
            resource: ResourceJson,
            current: Option<ReservationJson>,
            next: Option<ReservationJson>,
            telemetry: Option<&'a gpures_proto::GpuTelemetry>,
            flags: Vec<String>,
            /// The maintenance block in force now, or else the next one.
            block: Option<super::blocks::BlockJson>,
        }
        let rows: Vec<Row> = report
            .resources
            .iter()
            .map(|s| Row {
                resource: ResourceJson::from(&s.resource),
                current: s.current.as_ref().map(|r| ReservationJson::new(r, tz)),
                next: s.next.as_ref().map(|r| ReservationJson::new(r, tz)),
                telemetry: s.telemetry.as_ref(),
                flags: s.flags.iter().map(flag_name).collect(),
                block: s
                    .block
                    .as_ref()
                    .map(|b| super::blocks::BlockJson::new(b, tz)),
            })
            .collect();
        return ctx.print_json(&rows);
    }
    let rows: Vec<Vec<String>> = report
        .resources
        .iter()
        .map(|s| {
            let blocked_now = s
                .block
                .as_ref()
                .filter(|b| b.period.contains(report.generated_at));
            let (now_holder, until) = match (&s.current, blocked_now) {
                (Some(r), _) => (r.user.display_name.clone(), format_local(r.period.end, tz)),
                (None, Some(b)) => ("blocked".into(), format_local(b.period.end, tz)),
                (None, None) => ("free".into(), "-".into()),
            };
            let (next, from) = match &s.next {
                Some(r) => (
                    r.user.display_name.clone(),
                    format_local(r.period.start, tz),
                ),
                None => ("-".into(), "-".into()),
            };
            let (load, procs) = match &s.telemetry {
                Some(t) => (crate::output::load_text(t, 10), processes_text(t)),
                None => ("no GPU telemetry".into(), "-".into()),
            };
            let flags: Vec<String> = s.flags.iter().map(|f| f.marker()).collect();
            vec![
                s.resource.name.clone(),
                s.resource.host.clone(),
                now_holder,
                until,
                next,
                from,
                load,
                procs,
                if flags.is_empty() {
                    "-".into()
                } else {
                    flags.join(" ")
                },
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "RESOURCE",
                "HOST",
                "NOW",
                "UNTIL",
                "NEXT",
                "FROM",
                "LOAD",
                "PROCESSES",
                "FLAGS"
            ],
            &rows
        )
    );
    let blocks: Vec<gpures_proto::Block> = report
        .resources
        .iter()
        .filter_map(|s| s.block.clone())
        .collect();
    if !blocks.is_empty() {
        outln!("maintenance (nobody can book these):");
        out!("{}", super::blocks::lines(&blocks, tz));
    }
    for h in &report.hosts {
        if let Some(note) = &h.note {
            outln!("{}: {}", text::sanitize(&h.host), text::sanitize(note));
        }
    }
    if report.hosts.is_empty() {
        outln!("no GPU telemetry yet");
    }
    if let Some(c) = &report.calendar {
        outln!("{}", output::calendar_line(c));
    }
    Ok(())
}

/// A flag's stable name in `--json`, with its detail.
fn flag_name(f: &gpures_proto::GpuFlag) -> String {
    match f {
        gpures_proto::GpuFlag::UnreservedUse { unix_user, pid } => {
            format!("unreserved_use:{unix_user}:{pid}")
        }
        gpures_proto::GpuFlag::IdleReservation { idle_minutes } => {
            format!("idle_reservation:{idle_minutes}")
        }
        gpures_proto::GpuFlag::Overrun { unix_user, pid } => format!("overrun:{unix_user}:{pid}"),
    }
}

/// `root:634 labuser1:638`, unknown users as `?`.
fn processes_text(t: &gpures_proto::GpuTelemetry) -> String {
    if t.processes.is_empty() {
        return "-".into();
    }
    t.processes
        .iter()
        .map(|p| format!("{}:{}", p.unix_user.as_deref().unwrap_or("?"), p.pid))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `width` values of `history` (0–100) as block characters.
pub fn sparkline(history: &[u8], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = history.len().saturating_sub(width);
    history[start..]
        .iter()
        .map(|v| BARS[usize::from((*v).min(100)) * 7 / 100])
        .collect()
}
