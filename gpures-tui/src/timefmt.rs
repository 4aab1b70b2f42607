//! Times as people type them, in their own zone: [`parse_time`] and
//! [`parse_duration`], and [`Span::add_to`] for `--for`. Day arithmetic goes
//! through the IANA zone database (`chrono-tz`): "tomorrow 9:00" is 9:00 on the
//! next calendar day, and `--for 1d` ends at the same wall-clock time the next
//! day even when a DST change makes that day 23 or 25 hours long.
//!
//! Accepted times: `now`, `+2h` (from now), `14:00` (today), `tomorrow 9:00`,
//! `today 9:00`, `9:00 tomorrow`, `mon 10:30` or `monday 10:30` (the next
//! Monday, or today if it is Monday and the time is still ahead), `next mon`
//! (the next Monday, never today), `2026-12-01 09:00`, `2026-12-01T09:00`, and
//! RFC 3339. Clocks: `14:00`, `9`, `9am`, `9pm`, `9:30pm`, `noon`, `midnight`
//! (alone: the coming midnight, the end of today).
//! Durations: `90m`, `3h`, `1d2h`, `1h30m`. Everything is rounded to the minute.

use chrono::{
    DateTime, Datelike, Days, DurationRound, LocalResult, NaiveDate, NaiveDateTime, NaiveTime,
    TimeDelta, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TimeError {
    #[error(
        "cannot read {0:?} as a time: try 14:00, 9pm, tomorrow 9:00, next mon 10:30, 2026-12-01 09:00, now or +2h"
    )]
    Time(String),
    #[error("cannot read {0:?} as a duration: try 90m, 3h, 1d2h")]
    Duration(String),
    #[error("{0} does not exist in {1} (the clocks skip it for daylight saving time)")]
    Gap(NaiveDateTime, Tz),
    #[error("unknown time zone {0:?}: set TZ to an IANA name such as Asia/Seoul")]
    Zone(String),
    #[error("that moves past the end of the calendar")]
    OutOfRange,
}

/// The viewer's zone: `TZ` if it names an IANA zone, else the system zone,
/// else UTC.
///
/// # Errors
/// `TZ` is set but names no zone.
pub fn local_zone() -> Result<Tz, TimeError> {
    if let Ok(tz) = std::env::var("TZ")
        && !tz.is_empty()
    {
        let name = tz.trim_start_matches(':');
        return name.parse::<Tz>().map_err(|_| TimeError::Zone(tz.clone()));
    }
    Ok(iana_time_zone::get_timezone()
        .ok()
        .and_then(|n| n.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC))
}

/// A length of time with whole days kept apart, so that days are added on the
/// calendar and the rest as elapsed time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub days: u32,
    pub minutes: u32,
}

impl Span {
    /// `start` plus this span: days on the calendar of `tz`, then minutes.
    ///
    /// # Errors
    /// The wall-clock time falls into a DST gap.
    pub fn add_to(&self, start: DateTime<Utc>, tz: Tz) -> Result<DateTime<Utc>, TimeError> {
        let local = start.with_timezone(&tz).naive_local();
        let shifted = local
            .checked_add_days(Days::new(u64::from(self.days)))
            .ok_or_else(|| TimeError::Duration(format!("{} days", self.days)))?;
        let base = resolve(shifted, tz)?;
        Ok(base + TimeDelta::minutes(i64::from(self.minutes)))
    }

    pub fn is_zero(&self) -> bool {
        self.days == 0 && self.minutes == 0
    }
}

/// Reads `90m`, `3h`, `1d2h`, `1h30m`, `2d`.
///
/// # Errors
/// Anything else, or a zero duration.
pub fn parse_duration(s: &str) -> Result<Span, TimeError> {
    let err = || TimeError::Duration(s.to_owned());
    let t = s.trim().to_lowercase();
    if t.is_empty() {
        return Err(err());
    }
    let (mut days, mut minutes, mut num) = (0u32, 0u32, String::new());
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u32 = num.parse().map_err(|_| err())?;
        num.clear();
        match c {
            'd' => days = days.checked_add(n).ok_or_else(err)?,
            'h' => {
                minutes = minutes
                    .checked_add(n.checked_mul(60).ok_or_else(err)?)
                    .ok_or_else(err)?
            }
            'm' => minutes = minutes.checked_add(n).ok_or_else(err)?,
            _ => return Err(err()),
        }
    }
    if !num.is_empty() {
        return Err(err());
    }
    let span = Span { days, minutes };
    if span.is_zero() || days > 3660 {
        return Err(err());
    }
    Ok(span)
}

/// Reads a time as typed, relative to `now`, in zone `tz`; rounds down to the
/// minute.
///
/// # Errors
/// Unreadable input, or a wall-clock time that does not exist in `tz`.
pub fn parse_time(s: &str, now: DateTime<Utc>, tz: Tz) -> Result<DateTime<Utc>, TimeError> {
    let t = s.trim();
    let err = || TimeError::Time(s.to_owned());
    let minute = |d: DateTime<Utc>| d.duration_trunc(TimeDelta::minutes(1)).unwrap_or(d);
    let lower = t.to_lowercase();
    if lower == "now" {
        return Ok(minute(now));
    }
    if let Some(rest) = lower.strip_prefix('+') {
        let span = parse_duration(rest)?;
        return Ok(minute(span.add_to(now, tz)?));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(minute(dt.with_timezone(&Utc)));
    }
    for fmt in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(minute(resolve(naive, tz)?));
        }
    }
    let today = now.with_timezone(&tz).date_naive();
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return resolve(date.and_time(NaiveTime::MIN), tz);
    }
    if lower == "midnight" {
        // The coming midnight: the end of today.
        let date = today.checked_add_days(Days::new(1)).ok_or_else(err)?;
        return resolve(date.and_time(NaiveTime::MIN), tz);
    }
    let mut words: Vec<&str> = lower.split_whitespace().collect();
    let next = words.first() == Some(&"next");
    if next {
        words.remove(0);
    }
    // A day and a clock in either order: "tomorrow 9pm", "9:00 tomorrow".
    let (day, clock) = match words.as_slice() {
        [w] if parse_clock(w).is_some() => (None, Some(*w)),
        [w] => (Some(*w), None),
        [a, b] if parse_clock(a).is_some() && parse_clock(b).is_none() => (Some(*b), Some(*a)),
        [a, b] => (Some(*a), Some(*b)),
        _ => return Err(err()),
    };
    let time = match clock {
        Some(c) => parse_clock(c).ok_or_else(err)?,
        None => NaiveTime::MIN,
    };
    if next && day.and_then(parse_weekday).is_none() {
        return Err(err()); // "next" names a weekday
    }
    let date = match day {
        None => today,
        Some("today") => today,
        Some("tomorrow") => today.checked_add_days(Days::new(1)).ok_or_else(err)?,
        Some(d) => {
            let weekday = parse_weekday(d).ok_or_else(err)?;
            let mut ahead =
                (7 + weekday.num_days_from_monday() - today.weekday().num_days_from_monday()) % 7;
            // Today only when the time is still ahead and "next" was not said.
            if ahead == 0 && (next || resolve(today.and_time(time), tz)? <= now) {
                ahead = 7;
            }
            today
                .checked_add_days(Days::new(u64::from(ahead)))
                .ok_or_else(err)?
        }
    };
    resolve(date.and_time(time), tz)
}

/// `14:00`, `9`, `9am`, `9pm`, `9:30pm`, `12am` (midnight), `12pm`, `noon`,
/// `midnight` (the start of the day it is on).
fn parse_clock(s: &str) -> Option<NaiveTime> {
    match s {
        "noon" => return NaiveTime::from_hms_opt(12, 0, 0),
        "midnight" => return Some(NaiveTime::MIN),
        _ => {}
    }
    let (body, pm) = match (s.strip_suffix("am"), s.strip_suffix("pm")) {
        (Some(b), _) => (b, Some(false)),
        (_, Some(b)) => (b, Some(true)),
        _ => (s, None),
    };
    let (h, m) = match body.split_once(':') {
        Some((h, m)) if m.len() == 2 => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        Some(_) => return None,
        None => (body.parse::<u32>().ok()?, 0),
    };
    let h = match pm {
        None if h < 24 => h,
        Some(_) if !(1..=12).contains(&h) => return None,
        Some(false) => h % 12,
        Some(true) => h % 12 + 12,
        None => return None,
    };
    NaiveTime::from_hms_opt(h, m, 0)
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tues" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

/// A wall-clock time in `tz` as an instant: the earlier one when the clocks
/// go back, an error when they skip it.
///
/// # Errors
/// [`TimeError::Gap`].
pub fn resolve(naive: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, TimeError> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, _) => Ok(a.with_timezone(&Utc)),
        LocalResult::None => Err(TimeError::Gap(naive, tz)),
    }
}

/// "This and following": each unfinished reservation of `series` from
/// `this` on, moved as `this` moves to `new` by the same wall-clock shift in
/// `tz` (its start by the start's shift, its end by the end's), so a weekly
/// 14:00 moved to 15:00 stays 15:00 across a DST change.
///
/// # Errors
/// A moved time the clocks skip ([`TimeError::Gap`]), or past the calendar.
pub fn shift_following(
    series: &[gpures_proto::Reservation],
    this: gpures_proto::Period,
    new: gpures_proto::Period,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Vec<(uuid::Uuid, gpures_proto::Period)>, TimeError> {
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    let (by_start, by_end) = (
        local(new.start) - local(this.start),
        local(new.end) - local(this.end),
    );
    let shift = |t: DateTime<Utc>, by: TimeDelta| {
        let moved = local(t)
            .checked_add_signed(by)
            .ok_or(TimeError::OutOfRange)?;
        resolve(moved, tz)
    };
    series
        .iter()
        .filter(|r| r.period.start >= this.start && r.period.end > now)
        .map(|r| {
            Ok((
                r.id,
                gpures_proto::Period {
                    start: shift(r.period.start, by_start)?,
                    end: shift(r.period.end, by_end)?,
                },
            ))
        })
        .collect()
}

/// `2026-12-01 09:00` in `tz`.
pub fn format_local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// RFC 3339 with the zone's offset, for `--json`.
pub fn rfc3339(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339()
}

/// A short human duration: `2h`, `1d 3h`, `45m`.
pub fn format_span(d: TimeDelta) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, minutes) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 || parts.is_empty() {
        parts.push(format!("{minutes}m"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seoul() -> Tz {
        "Asia/Seoul".parse().expect("zone")
    }

    fn at(tz: Tz, s: &str) -> DateTime<Utc> {
        resolve(
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("naive"),
            tz,
        )
        .expect("resolve")
    }

    #[test]
    fn reads_every_documented_form() {
        let tz = seoul();
        // Thursday 2026-11-26 10:17 in Seoul.
        let now = at(tz, "2026-11-26 10:17") + TimeDelta::seconds(42);
        let cases = [
            ("now", "2026-11-26 10:17"),
            ("+2h", "2026-11-26 12:17"),
            ("+1d2h", "2026-11-27 12:17"),
            ("14:00", "2026-11-26 14:00"),
            ("9", "2026-11-26 09:00"),
            ("9am", "2026-11-26 09:00"),
            ("9pm", "2026-11-26 21:00"),
            ("9:30pm", "2026-11-26 21:30"),
            ("12am", "2026-11-26 00:00"),
            ("12pm", "2026-11-26 12:00"),
            ("noon", "2026-11-26 12:00"),
            ("midnight", "2026-11-27 00:00"),
            ("tomorrow 9pm", "2026-11-27 21:00"),
            ("9:00 tomorrow", "2026-11-27 09:00"),
            ("9pm tomorrow", "2026-11-27 21:00"),
            ("tomorrow noon", "2026-11-27 12:00"),
            ("monday 9am", "2026-11-30 09:00"),
            ("next mon", "2026-11-30 00:00"),
            ("next thu 11:00", "2026-12-03 11:00"),
            ("next thursday", "2026-12-03 00:00"),
            ("today 18:30", "2026-11-26 18:30"),
            ("tomorrow 9:00", "2026-11-27 09:00"),
            ("Tomorrow 09:00", "2026-11-27 09:00"),
            ("mon 10:30", "2026-11-30 10:30"),
            ("thu 11:00", "2026-11-26 11:00"),
            ("thu 09:00", "2026-12-03 09:00"),
            ("friday", "2026-11-27 00:00"),
            ("2026-12-01 09:00", "2026-12-01 09:00"),
            ("2026-12-01T09:00", "2026-12-01 09:00"),
            ("2026-12-01", "2026-12-01 00:00"),
            ("2026-12-01T00:00:00Z", "2026-12-01 09:00"),
            ("2026-12-01T09:00:59+09:00", "2026-12-01 09:00"),
        ];
        for (input, want) in cases {
            let got = parse_time(input, now, tz).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(format_local(got, tz), want, "{input}");
        }
    }

    #[test]
    fn refuses_nonsense() {
        let now = Utc::now();
        for bad in [
            "",
            "soon",
            "25:00",
            "tomorrow at 9",
            "2026-13-01 09:00",
            "+",
            "+2x",
            "mon 10:30 extra",
            "13pm",
            "0am",
            "9:5",
            "next tomorrow",
            "next 9pm",
            "9pm 10pm",
        ] {
            assert!(parse_time(bad, now, seoul()).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reads_durations() {
        assert_eq!(
            parse_duration("90m"),
            Ok(Span {
                days: 0,
                minutes: 90
            })
        );
        assert_eq!(
            parse_duration("3h"),
            Ok(Span {
                days: 0,
                minutes: 180
            })
        );
        assert_eq!(
            parse_duration("1d2h"),
            Ok(Span {
                days: 1,
                minutes: 120
            })
        );
        assert_eq!(
            parse_duration("1h30m"),
            Ok(Span {
                days: 0,
                minutes: 90
            })
        );
        for bad in ["", "0h", "h", "3", "2w", "-1h", "99999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn days_follow_the_calendar_across_dst() {
        // Europe/Berlin springs forward on 2026-03-29 (02:00 -> 03:00) and
        // falls back on 2026-10-25 (03:00 -> 02:00).
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let start = at(berlin, "2026-03-28 09:00");
        let end = Span {
            days: 1,
            minutes: 0,
        }
        .add_to(start, berlin)
        .expect("add");
        assert_eq!(format_local(end, berlin), "2026-03-29 09:00");
        assert_eq!(end - start, TimeDelta::hours(23), "a 23-hour day");
        let start = at(berlin, "2026-10-24 09:00");
        let end = Span {
            days: 1,
            minutes: 0,
        }
        .add_to(start, berlin)
        .expect("add");
        assert_eq!(end - start, TimeDelta::hours(25), "a 25-hour day");
        // "tomorrow 9:00" the evening before the change is 9:00 local too.
        let now = at(berlin, "2026-03-28 20:00");
        let t = parse_time("tomorrow 9:00", now, berlin).expect("parse");
        assert_eq!(format_local(t, berlin), "2026-03-29 09:00");
        // A time the clocks skip is refused with a reason.
        let err = parse_time("2026-03-29 02:30", now, berlin).expect_err("gap");
        assert!(matches!(err, TimeError::Gap(..)));
    }

    #[test]
    fn formats_spans() {
        assert_eq!(format_span(TimeDelta::minutes(45)), "45m");
        assert_eq!(format_span(TimeDelta::minutes(150)), "2h 30m");
        assert_eq!(format_span(TimeDelta::hours(27)), "1d 3h");
    }
}
