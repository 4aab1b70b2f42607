//! What the CLI prints: aligned tables for people ([`table`], aware of wide
//! characters such as Korean) and the stable `--json` shapes documented in
//! `docs/CLI.md` ([`ReservationJson`] and friends). Every string from the
//! daemon passes [`text::sanitize`] before it reaches the terminal.

use chrono_tz::Tz;
use gpures_proto::{Holder, Reservation, Resource, UserInfo, text};
use serde::Serialize;
use unicode_width::UnicodeWidthStr;

use crate::timefmt::{format_local, rfc3339};

/// Lays out rows under headers, padding by display width.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| text::sanitize(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.width()).collect();
    for row in &clean {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.width());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let mut parts = Vec::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.width());
            parts.push(format!("{cell}{}", " ".repeat(pad)));
        }
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied(), &mut out);
    for row in &clean {
        line(&mut row.iter().map(String::as_str), &mut out);
    }
    out
}

#[derive(Serialize)]
pub struct UserJson {
    pub email: String,
    pub name: String,
}

/// `active`, `cancelled`, or `pending` (active, waiting for an admin).
pub fn status_word(r: &Reservation) -> &'static str {
    match (&r.pending, r.status) {
        (Some(_), gpures_proto::ReservationStatus::Active) => "pending",
        (_, s) => s.as_str(),
    }
}

/// A reservation in `--json` output.
#[derive(Serialize)]
pub struct ReservationJson {
    pub id: String,
    pub booking_id: String,
    pub resource: String,
    pub user: UserJson,
    pub start: String,
    pub end: String,
    pub note: String,
    pub status: String,
    /// Google Calendar: `off`, `pending`, `synced` or `failed`.
    pub sync: String,
    /// Why Google refused it, when `sync` is `failed`.
    pub sync_error: Option<String>,
    /// Why an admin cancelled or ended it, if one said.
    pub change_reason: Option<String>,
    /// The recurring series it is an occurrence of.
    pub series_id: Option<String>,
    /// Waiting for an admin's approval until then (status `pending`).
    pub pending_until: Option<String>,
    pub pending_reason: Option<String>,
}

impl ReservationJson {
    pub fn new(r: &Reservation, tz: Tz) -> ReservationJson {
        ReservationJson {
            id: r.id.to_string(),
            booking_id: r.booking_id.to_string(),
            resource: text::sanitize(&r.resource_name),
            user: UserJson {
                email: text::sanitize(&r.user.email),
                name: text::sanitize(&r.user.display_name),
            },
            start: rfc3339(r.period.start, tz),
            end: rfc3339(r.period.end, tz),
            note: text::sanitize(&r.note),
            status: status_word(r).to_owned(),
            sync: r.sync.as_str().to_owned(),
            sync_error: match &r.sync {
                gpures_proto::SyncState::Failed(e) => Some(text::sanitize(e)),
                _ => None,
            },
            change_reason: r.change_reason.as_deref().map(text::sanitize),
            series_id: r.series_id.map(|s| s.to_string()),
            pending_until: r.pending.as_ref().map(|p| rfc3339(p.until, tz)),
            pending_reason: r.pending.as_ref().map(|p| text::sanitize(&p.reason)),
        }
    }
}

#[derive(Serialize)]
pub struct HolderJson {
    pub reservation_id: String,
    pub resource: String,
    pub user: UserJson,
    pub start: String,
    pub end: String,
}

impl HolderJson {
    pub fn new(h: &Holder, tz: Tz) -> HolderJson {
        HolderJson {
            reservation_id: h.reservation_id.to_string(),
            resource: text::sanitize(&h.resource_name),
            user: UserJson {
                email: text::sanitize(&h.user.email),
                name: text::sanitize(&h.user.display_name),
            },
            start: rfc3339(h.period.start, tz),
            end: rfc3339(h.period.end, tz),
        }
    }
}

#[derive(Serialize)]
pub struct ResourceJson {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub kind: String,
    pub gpu_index: Option<i32>,
    pub gpu_uuid: Option<String>,
    pub description: String,
    pub active: bool,
}

impl From<&Resource> for ResourceJson {
    fn from(r: &Resource) -> Self {
        ResourceJson {
            id: r.id,
            name: text::sanitize(&r.name),
            host: text::sanitize(&r.host),
            kind: r.kind.as_str().to_owned(),
            gpu_index: r.gpu_index,
            gpu_uuid: r.gpu_uuid.as_deref().map(text::sanitize),
            description: text::sanitize(&r.description),
            active: r.active,
        }
    }
}

#[derive(Serialize)]
pub struct AccountJson {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: String,
    pub unix_user: String,
    pub disabled: bool,
    pub has_password: bool,
}

impl From<&UserInfo> for AccountJson {
    fn from(u: &UserInfo) -> Self {
        AccountJson {
            id: u.id,
            email: text::sanitize(&u.email),
            name: text::sanitize(&u.display_name),
            role: u.role.as_str().to_owned(),
            unix_user: text::sanitize(&u.unix_user),
            disabled: u.disabled,
            has_password: u.has_password,
        }
    }
}

/// The calendar queue in one line: `calendar: 3 queued, oldest 42 s, 1 failed, last error: …`.
pub fn calendar_line(c: &gpures_proto::CalendarStatus) -> String {
    if !c.enabled {
        return "calendar: sync off".into();
    }
    format!(
        "calendar: {} queued{}{}{}",
        c.queued,
        c.oldest_pending_secs
            .map(|s| format!(", oldest {s} s"))
            .unwrap_or_default(),
        if c.failed > 0 {
            format!(", {} failed", c.failed)
        } else {
            String::new()
        },
        c.last_error
            .as_ref()
            .map(|e| format!(", last error: {}", text::sanitize(e)))
            .unwrap_or_default()
    )
}

/// Reservations as a table.
pub fn reservations_table(rs: &[Reservation], tz: Tz) -> String {
    if rs.is_empty() {
        return "no reservations\n".to_owned();
    }
    let rows: Vec<Vec<String>> = rs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string()[..8].to_owned(),
                r.booking_id.to_string()[..8].to_owned(),
                r.resource_name.clone(),
                r.user.display_name.clone(),
                format_local(r.period.start, tz),
                format_local(r.period.end, tz),
                status_word(r).to_owned(),
                match &r.change_reason {
                    Some(why) if r.note.is_empty() => format!("[by an admin: {why}]"),
                    Some(why) => format!("{} [by an admin: {why}]", r.note),
                    None => r.note.clone(),
                },
            ]
        })
        .collect();
    table(
        &[
            "ID", "BOOKING", "RESOURCE", "USER", "START", "END", "STATUS", "NOTE",
        ],
        &rows,
    )
}

/// Who holds the slot, one line each, for conflicts.
pub fn holders_lines(holders: &[Holder], tz: Tz) -> String {
    let mut out = String::new();
    for h in holders {
        out.push_str(&format!(
            "  {} is held by {} <{}> from {} to {}\n",
            text::sanitize(&h.resource_name),
            text::sanitize(&h.user.display_name),
            text::sanitize(&h.user.email),
            format_local(h.period.start, tz),
            format_local(h.period.end, tz)
        ));
    }
    out
}

/// A GPU's load as the CLI and the TUI both write it:
/// `97% 2787/81559 MiB ▁▃▇` (the sparkline `spark` samples wide).
pub fn load_text(t: &gpures_proto::GpuTelemetry, spark: usize) -> String {
    let util = t
        .utilization_pct
        .map(|u| format!("{u}%"))
        .unwrap_or_else(|| "?%".into());
    let mem = match (t.memory_used_mib, t.memory_total_mib) {
        (Some(u), Some(m)) => format!("{u}/{m} MiB"),
        _ => "? MiB".into(),
    };
    format!("{util} {mem} {}", crate::cli::sparkline(&t.history, spark))
}

/// One GPU process: `python3 (kim, pid 638)`; a process the host cannot
/// see is `(unknown user)`.
pub fn process_label(p: &gpures_proto::GpuProcess) -> String {
    format!(
        "{} ({}, pid {})",
        text::sanitize(&p.name),
        text::sanitize(p.unix_user.as_deref().unwrap_or("unknown user")),
        p.pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_wide_characters_and_strip_escapes() {
        let out = table(
            &["NAME", "GPU"],
            &[
                vec!["김민수".into(), "gpu0".into()],
                vec!["Bob".into(), "gpu1".into()],
                vec!["\u{1b}[31mEve\u{1b}[0m".into(), "gpu2".into()],
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "NAME    GPU");
        assert_eq!(lines[1], "김민수  gpu0");
        assert_eq!(lines[2], "Bob     gpu1");
        assert_eq!(lines[3], "Eve     gpu2");
    }
}
