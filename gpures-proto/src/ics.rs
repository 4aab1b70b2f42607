//! iCalendar (RFC 5545) feeds of reservations, for calendars that are not
//! Google: `gpures export --ics` and the daemon's feed folder.
//!
//! One event per reservation (one GPU), its UID the reservation's id, so a
//! calendar that subscribes sees the same event move or get cancelled; a
//! cancelled reservation stays in the feed as `STATUS:CANCELLED`, a pending
//! request as `TENTATIVE`. `DTSTAMP` and `LAST-MODIFIED` are the
//! reservation's last change, not the time of export, so an unchanged
//! reservation writes the same lines on every run. Lines end in CRLF and are
//! folded at 75 octets, never inside a UTF-8 character.

use chrono::{DateTime, Utc};

use crate::{Reservation, ReservationStatus, text};

/// The longest line in octets, without its CRLF (RFC 5545 3.1).
const LINE_OCTETS: usize = 75;

/// A calendar named `name` with one event per reservation, in start order.
pub fn calendar(name: &str, reservations: &[Reservation]) -> String {
    let mut sorted: Vec<&Reservation> = reservations.iter().collect();
    sorted.sort_by_key(|r| (r.period.start, r.id));
    let mut out = String::new();
    for line in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//gpures//gpures GPU reservations//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ] {
        push(&mut out, line);
    }
    push(&mut out, &format!("X-WR-CALNAME:{}", escape(name)));
    for r in sorted {
        event(&mut out, r);
    }
    push(&mut out, "END:VCALENDAR");
    out
}

/// The UID of a reservation's event.
pub fn uid(r: &Reservation) -> String {
    format!("{}@gpures", r.id)
}

fn event(out: &mut String, r: &Reservation) {
    let status = match (r.status, &r.pending) {
        (ReservationStatus::Cancelled, _) => "CANCELLED",
        (ReservationStatus::Active, Some(_)) => "TENTATIVE",
        (ReservationStatus::Active, None) => "CONFIRMED",
    };
    let mut summary = format!("{} · {}", r.resource_name, r.user.display_name);
    if r.pending.is_some() {
        summary.push_str(" (waiting for approval)");
    }
    let mut description = format!("Booking {}", r.booking_id);
    if !r.note.is_empty() {
        description.push('\n');
        description.push_str(&r.note);
    }
    if let Some(why) = &r.change_reason {
        description.push_str("\nChanged by an admin: ");
        description.push_str(why);
    }
    push(out, "BEGIN:VEVENT");
    push(out, &format!("UID:{}", uid(r)));
    push(out, &format!("DTSTAMP:{}", stamp(r.updated_at)));
    push(out, &format!("CREATED:{}", stamp(r.created_at)));
    push(out, &format!("LAST-MODIFIED:{}", stamp(r.updated_at)));
    push(out, &format!("DTSTART:{}", stamp(r.period.start)));
    push(out, &format!("DTEND:{}", stamp(r.period.end)));
    push(out, &format!("SUMMARY:{}", escape(&summary)));
    push(out, &format!("LOCATION:{}", escape(&r.resource_name)));
    push(out, &format!("DESCRIPTION:{}", escape(&description)));
    push(out, &format!("STATUS:{status}"));
    push(out, "TRANSP:OPAQUE");
    push(out, "END:VEVENT");
}

/// A UTC date-time: `20261127T090000Z`.
fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// TEXT as RFC 5545 3.3.11 escapes it, each line sanitized of control
/// characters and escape sequences first.
fn escape(s: &str) -> String {
    let lines: Vec<String> = s.split('\n').map(text::sanitize).collect();
    let mut out = String::with_capacity(s.len());
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str("\\n");
        }
        for c in line.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                ';' => out.push_str("\\;"),
                ',' => out.push_str("\\,"),
                c => out.push(c),
            }
        }
    }
    out
}

/// Appends `line` folded at [`LINE_OCTETS`] octets, with CRLFs.
fn push(out: &mut String, line: &str) {
    let mut used = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if used + len > LINE_OCTETS {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += len;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_korean_lines_fold_at_75_octets_between_characters() {
        let mut out = String::new();
        let line = format!("SUMMARY:{}", "가".repeat(60));
        push(&mut out, &line);
        let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= LINE_OCTETS), "{lines:?}");
        assert!(lines[1..].iter().all(|l| l.starts_with(' ')));
        // Unfolding gives the line back.
        let unfolded: String = out.replace("\r\n ", "");
        assert_eq!(unfolded.trim_end(), line);
    }

    #[test]
    fn text_is_escaped_and_controls_are_dropped() {
        assert_eq!(
            escape("a;b,c\\d\nsecond\u{1b}[31m line"),
            "a\\;b\\,c\\\\d\\nsecond line"
        );
    }
}
