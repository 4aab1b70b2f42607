//! `gpures report`: booked, used, idle and unreserved GPU-hours of a month
//! or a window, per user, group, resource or host, as a table, CSV or JSON.

use chrono::{Datelike, Months, NaiveDate, NaiveTime};
use gpures_proto::{Period, Report, ReportBy, ReportRequest, Usage, limits, text};
use serde::Serialize;

use super::{CliResult, Ctx, Failure};
use crate::output::table;
use crate::timefmt::{format_local, parse_time, resolve, rfc3339};

/// What `gpures report` was asked.
pub(super) struct Asked {
    pub month: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub by: String,
    pub csv: bool,
}

/// GPU-hours from GPU-minutes, to the hundredth.
fn hours(minutes: i64) -> f64 {
    (minutes as f64 / 60.0 * 100.0).round() / 100.0
}

/// One row (or the lab) as `--json` prints it.
#[derive(Serialize)]
struct UsageJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    booked_gpu_hours: f64,
    used_gpu_hours: f64,
    idle_gpu_hours: f64,
    unknown_gpu_hours: f64,
    unreserved_gpu_hours: f64,
    released_gpu_hours: f64,
    released_count: i64,
    reclaimed_gpu_hours: f64,
    reclaimed_count: i64,
    /// Used ÷ (used + idle); null when nothing booked was seen.
    efficiency: Option<f64>,
}

impl UsageJson {
    fn new(key: Option<&str>, u: &Usage) -> UsageJson {
        UsageJson {
            key: key.map(text::sanitize),
            booked_gpu_hours: hours(u.booked),
            used_gpu_hours: hours(u.used),
            idle_gpu_hours: hours(u.idle),
            unknown_gpu_hours: hours(u.unknown),
            unreserved_gpu_hours: hours(u.unreserved),
            released_gpu_hours: hours(u.released),
            released_count: u.released_count,
            reclaimed_gpu_hours: hours(u.reclaimed),
            reclaimed_count: u.reclaimed_count,
            efficiency: u.efficiency().map(|e| (e * 1000.0).round() / 1000.0),
        }
    }
}

#[derive(Serialize)]
struct ReportJson {
    from: String,
    to: String,
    /// Figures count up to here (the end, or now if sooner).
    until: String,
    by: &'static str,
    /// Whether `rows` cover everyone (admins) or only you.
    everyone: bool,
    rows: Vec<UsageJson>,
    lab: UsageJson,
}

/// The window asked: `--month YYYY-MM`, `--from/--to`, or this month.
fn window(ctx: &Ctx, a: &Asked) -> CliResult<Period> {
    let month_start = |d: NaiveDate| -> CliResult<Period> {
        let first = d
            .with_day(1)
            .ok_or_else(|| Failure::usage("no such month"))?;
        let next = first
            .checked_add_months(Months::new(1))
            .ok_or_else(|| Failure::usage("no such month"))?;
        Ok(Period {
            start: resolve(first.and_time(NaiveTime::MIN), ctx.tz)?,
            end: resolve(next.and_time(NaiveTime::MIN), ctx.tz)?,
        })
    };
    match (&a.month, &a.from, &a.to) {
        (Some(m), None, None) => {
            let d = NaiveDate::parse_from_str(&format!("{}-01", m.trim()), "%Y-%m-%d")
                .map_err(|_| Failure::usage(format!("--month {m}: write it as 2026-11")))?;
            month_start(d)
        }
        (None, Some(from), to) => {
            let start = parse_time(from, ctx.now, ctx.tz)?;
            let end = match to {
                Some(t) => parse_time(t, ctx.now, ctx.tz)?,
                None => ctx.now,
            };
            if end <= start {
                return Err(Failure::usage("--to must be after --from"));
            }
            if end - start > chrono::TimeDelta::days(limits::WINDOW_MAX_DAYS) {
                return Err(Failure::usage(format!(
                    "a report covers at most {} days",
                    limits::WINDOW_MAX_DAYS
                )));
            }
            Ok(Period { start, end })
        }
        (None, None, None) => month_start(ctx.now.with_timezone(&ctx.tz).date_naive()),
        (Some(_), _, _) => Err(Failure::usage("give --month or --from/--to, not both")),
        (None, None, Some(_)) => Err(Failure::usage("--to needs --from")),
    }
}

/// `gpures report`.
pub(super) async fn report(ctx: &Ctx, a: Asked) -> CliResult<()> {
    let by = ReportBy::parse(&a.by).ok_or_else(|| {
        Failure::usage(format!(
            "--by {}: one of user, group, resource, host",
            text::sanitize(&a.by)
        ))
    })?;
    if a.csv && ctx.json {
        return Err(Failure::usage("give --csv or --json, not both"));
    }
    let window = window(ctx, &a)?;
    let r = ctx.api(ctx.client.report(ReportRequest { window, by }).await)?;
    if ctx.json {
        return ctx.print_json(&ReportJson {
            from: rfc3339(r.window.start, ctx.tz),
            to: rfc3339(r.window.end, ctx.tz),
            until: rfc3339(r.until, ctx.tz),
            by: r.by.as_str(),
            everyone: r.everyone,
            rows: r
                .rows
                .iter()
                .map(|row| UsageJson::new(Some(&row.key), &row.usage))
                .collect(),
            lab: UsageJson::new(None, &r.lab),
        });
    }
    if a.csv {
        out!("{}", csv(&r));
        return Ok(());
    }
    out!("{}", text_report(ctx, &r));
    Ok(())
}

/// A CSV field: quoted when needed, and never read as a formula.
fn field(s: &str) -> String {
    let mut s = text::sanitize(s);
    if s.starts_with(['=', '+', '-', '@']) {
        s.insert(0, '\'');
    }
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn figures(u: &Usage) -> String {
    format!(
        "{:.2},{:.2},{:.2},{:.2},{:.2},{:.2},{},{:.2},{},{}",
        hours(u.booked),
        hours(u.used),
        hours(u.idle),
        hours(u.unknown),
        hours(u.unreserved),
        hours(u.released),
        u.released_count,
        hours(u.reclaimed),
        u.reclaimed_count,
        u.efficiency()
            .map(|e| format!("{e:.3}"))
            .unwrap_or_default()
    )
}

/// The report as CSV: a header, one line per row, and the lab's line last.
fn csv(r: &Report) -> String {
    let mut out = format!(
        "{},booked_gpu_hours,used_gpu_hours,idle_gpu_hours,unknown_gpu_hours,unreserved_gpu_hours,released_gpu_hours,released_count,reclaimed_gpu_hours,reclaimed_count,efficiency\n",
        r.by.as_str()
    );
    for row in &r.rows {
        out.push_str(&format!("{},{}\n", field(&row.key), figures(&row.usage)));
    }
    out.push_str(&format!("(lab),{}\n", figures(&r.lab)));
    out
}

fn cells(u: &Usage) -> Vec<String> {
    let h = |m: i64| format!("{:.2}", hours(m));
    vec![
        h(u.booked),
        h(u.used),
        h(u.idle),
        h(u.unknown),
        h(u.unreserved),
        h(u.released),
        h(u.reclaimed),
        u.efficiency()
            .map(|e| format!("{:.0}%", e * 100.0))
            .unwrap_or_else(|| "-".to_owned()),
    ]
}

fn text_report(ctx: &Ctx, r: &Report) -> String {
    let so_far = if r.until < r.window.end {
        format!(", counted up to {}", format_local(r.until, ctx.tz))
    } else {
        String::new()
    };
    let mut out = format!(
        "Usage {} to {} ({}){so_far}, by {}\n",
        format_local(r.window.start, ctx.tz),
        format_local(r.window.end, ctx.tz),
        ctx.tz.name(),
        r.by.as_str()
    );
    let head = match r.by {
        ReportBy::User => "USER",
        ReportBy::Group => "GROUP",
        ReportBy::Resource => "RESOURCE",
        ReportBy::Host => "HOST",
    };
    let mut rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let mut c = vec![row.key.clone()];
            c.extend(cells(&row.usage));
            c
        })
        .collect();
    let mut lab = vec!["(lab)".to_owned()];
    lab.extend(cells(&r.lab));
    rows.push(lab);
    out.push_str(&table(
        &[
            head,
            "BOOKED",
            "USED",
            "IDLE",
            "UNKNOWN",
            "UNRESERVED",
            "RELEASED",
            "RECLAIMED",
            "EFFICIENCY",
        ],
        &rows,
    ));
    out.push_str(
        "GPU-hours. Efficiency is used ÷ (used + idle); unknown is booked time without telemetry, never counted as idle.\n",
    );
    if !r.everyone {
        out.push_str("You see your own rows; (lab) is everyone's total.\n");
    }
    out
}
