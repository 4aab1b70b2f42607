//! Every check of client input, in one place: emails, names, passwords,
//! notes, descriptions, periods, windows and resource lists. Each returns the
//! cleaned value or [`Error::Invalid`] naming the field.

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use gpures_proto::{Period, limits, text};

use super::{Error, Result, Rules};

/// The first year gpures accepts in any time a client sends.
const FIRST_YEAR: i32 = 2000;
/// The first year it no longer accepts (far below chrono's and PostgreSQL's
/// limits, so no arithmetic on a time can overflow).
const END_YEAR: i32 = 2200;

fn year_start(year: i32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(year, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A time inside the range gpures handles at all.
fn in_range(field: &str, t: DateTime<Utc>) -> Result<()> {
    if t < year_start(FIRST_YEAR) || t >= year_start(END_YEAR) {
        return Err(Error::invalid(
            field,
            format!("out of range: times must lie between {FIRST_YEAR} and {END_YEAR}"),
        ));
    }
    Ok(())
}

/// Text that will be compared in SQL (a filter, an email to look up): no
/// NUL or other control characters, and not absurdly long.
pub fn lookup_text(field: &str, value: &str) -> Result<()> {
    if value.chars().count() > limits::EMAIL_MAX_CHARS.max(limits::RESOURCE_NAME_MAX_CHARS) {
        return Err(Error::invalid(field, "too long"));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// A plausible email: one `@`, a non-empty local part, a dotted domain, no
/// spaces or control characters. Deliverability is not our business.
pub fn email(email: &str) -> Result<String> {
    let email = email.trim();
    let bad = |reason: &str| Err(Error::invalid("email", reason));
    if email.chars().count() > limits::EMAIL_MAX_CHARS {
        return bad("too long");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) || text::needs_sanitizing(email) {
        return bad("must not contain spaces or control characters");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad("must look like name@example.org");
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return bad("must look like name@example.org");
    }
    Ok(email.to_owned())
}

/// A display name: sanitized, 1 to [`limits::DISPLAY_NAME_MAX_CHARS`] characters.
pub fn display_name(name: &str) -> Result<String> {
    let name = text::sanitize_trimmed(name);
    let len = name.chars().count();
    if len == 0 || len > limits::DISPLAY_NAME_MAX_CHARS {
        return Err(Error::invalid(
            "display_name",
            format!("1 to {} characters", limits::DISPLAY_NAME_MAX_CHARS),
        ));
    }
    Ok(name)
}

/// A new password's length.
pub fn new_password(password: &str) -> Result<()> {
    let len = password.chars().count();
    if !(limits::PASSWORD_MIN_CHARS..=limits::PASSWORD_MAX_CHARS).contains(&len) {
        return Err(Error::invalid(
            "password",
            format!(
                "{} to {} characters",
                limits::PASSWORD_MIN_CHARS,
                limits::PASSWORD_MAX_CHARS
            ),
        ));
    }
    Ok(())
}

/// Whether a login attempt's email and password are short enough to look at.
pub fn login_fits(email: &str, password: &str) -> bool {
    email.chars().count() <= limits::EMAIL_MAX_CHARS
        && password.chars().count() <= limits::PASSWORD_MAX_CHARS
}

/// A query window: ends after it starts, at most [`limits::WINDOW_MAX_DAYS`].
pub fn window(window: &Period) -> Result<()> {
    in_range("window", window.start)?;
    in_range("window", window.end)?;
    if window.end <= window.start {
        return Err(Error::invalid("window", "the end must be after the start"));
    }
    if window.end - window.start > TimeDelta::days(limits::WINDOW_MAX_DAYS) {
        return Err(Error::invalid(
            "window",
            format!("at most {} days", limits::WINDOW_MAX_DAYS),
        ));
    }
    Ok(())
}

/// The resources of a booking: deduplicated, sorted (the lock order), at
/// least one and at most [`limits::BOOKING_MAX_RESOURCES`].
pub fn booking_resources(resources: &[i64]) -> Result<Vec<i64>> {
    let mut ids = resources.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(Error::invalid("resources", "name at least one resource"));
    }
    resource_count(ids.len())?;
    Ok(ids)
}

/// Where a page starts, as a client sent it back: a sane time and a name
/// that could be a resource's.
pub fn cursor(cursor: Option<&gpures_proto::Cursor>) -> Result<()> {
    if let Some(c) = cursor {
        in_range("cursor", c.start)?;
        if c.resource_name.chars().count() > limits::RESOURCE_NAME_MAX_CHARS
            || c.resource_name.contains('\0')
        {
            return Err(Error::invalid(
                "cursor",
                "not a cursor this daemon gave out",
            ));
        }
    }
    Ok(())
}

/// A page size: 0 means the default, more than the maximum means that.
pub fn page_limit(limit: u32) -> i64 {
    page_limit_up_to(limit, limits::PAGE_MAX)
}

/// A page size of at most `max`: 0 means the default.
pub fn page_limit_up_to(limit: u32, max: u32) -> i64 {
    let limit = if limit == 0 {
        limits::PAGE_DEFAULT
    } else {
        limit.min(max)
    };
    i64::from(limit)
}

/// An id prefix as the range of UUIDs it covers: at least
/// [`limits::ID_PREFIX_MIN`] hex digits (dashes ignored), at most 32.
pub fn id_prefix(prefix: &str) -> Result<(uuid::Uuid, uuid::Uuid)> {
    let hex: String = prefix
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() < limits::ID_PREFIX_MIN
        || hex.len() > 32
        || !hex.chars().all(|c| c.is_ascii_hexdigit())
    {
        return Err(Error::invalid(
            "prefix",
            format!("give {} to 32 hex digits of the id", limits::ID_PREFIX_MIN),
        ));
    }
    let bound = |fill: char| {
        let full: String = hex
            .chars()
            .chain(std::iter::repeat(fill))
            .take(32)
            .collect();
        u128::from_str_radix(&full, 16).map(uuid::Uuid::from_u128)
    };
    match (bound('0'), bound('f')) {
        (Ok(lo), Ok(hi)) => Ok((lo, hi)),
        _ => Err(Error::invalid("prefix", "not hex digits")),
    }
}

/// The most resources a listing filter may name.
const FILTER_MAX_RESOURCES: usize = 1024;

/// The resources a listing is filtered by.
pub fn filter_resources(ids: &[i64]) -> Result<()> {
    if ids.len() > FILTER_MAX_RESOURCES {
        return Err(Error::invalid(
            "resources",
            format!("filter by at most {FILTER_MAX_RESOURCES} resources"),
        ));
    }
    Ok(())
}

/// At most [`limits::BOOKING_MAX_RESOURCES`] resources in one call.
pub fn resource_count(n: usize) -> Result<()> {
    if n > limits::BOOKING_MAX_RESOURCES {
        return Err(Error::invalid(
            "resources",
            format!(
                "at most {} resources in one booking",
                limits::BOOKING_MAX_RESOURCES
            ),
        ));
    }
    Ok(())
}

/// A period that merely has to be non-empty (availability checks).
pub fn nonempty_period(period: &Period) -> Result<()> {
    in_range("start", period.start)?;
    in_range("end", period.end)?;
    if period.end <= period.start {
        return Err(Error::invalid("period", "the end must be after the start"));
    }
    Ok(())
}

/// A period to book or move to: inside the range of sane times, whole
/// minutes, at most the longest booking, and for members not further ahead
/// than the horizon. `start_set` says whether the start is being set (and so
/// must not lie in the past unless `admin`).
pub fn booking_period(
    rules: &Rules,
    period: Period,
    now: DateTime<Utc>,
    start_set: bool,
    end_set: bool,
    admin: bool,
) -> Result<()> {
    nonempty_period(&period)?;
    // Whole minutes for what the client sent; a reservation released or
    // granted by the daemon may end or start at any second.
    for (field, t, sent) in [
        ("start", period.start, start_set),
        ("end", period.end, end_set),
    ] {
        if sent && t.duration_trunc(TimeDelta::minutes(1)).ok() != Some(t) {
            return Err(Error::invalid(field, "must be a whole minute"));
        }
    }
    if period.end - period.start > rules.max_length {
        return Err(Error::invalid(
            "period",
            format!(
                "a reservation may last at most {} days",
                rules.max_length.num_days()
            ),
        ));
    }
    if start_set && !admin && period.start < now - rules.past_grace {
        return Err(Error::invalid("start", "must not be in the past"));
    }
    if !admin && period.end > now + rules.horizon {
        return Err(Error::invalid(
            "end",
            format!(
                "members may book at most {} days ahead (an admin may book further)",
                rules.horizon.num_days()
            ),
        ));
    }
    Ok(())
}

/// A note: sanitized and at most [`limits::NOTE_MAX_CHARS`] characters.
pub fn note(note: &str) -> Result<String> {
    limited(note, "note", limits::NOTE_MAX_CHARS)
}

/// Why an admin did something to someone's reservations: like a note, and
/// never empty.
pub fn reason(reason: &str) -> Result<String> {
    let clean = limited(reason, "reason", limits::NOTE_MAX_CHARS)?;
    if clean.is_empty() {
        return Err(Error::invalid("reason", "say why"));
    }
    Ok(clean)
}

/// A resource description.
pub fn description(d: &str) -> Result<String> {
    limited(d, "description", limits::DESCRIPTION_MAX_CHARS)
}

/// A group name: like a resource name (short, no spaces).
pub fn group_name(name: &str) -> Result<String> {
    resource_name(name)
}

/// A resource name: short, no spaces, no control characters.
pub fn resource_name(name: &str) -> Result<String> {
    let clean = limited(name, "name", limits::RESOURCE_NAME_MAX_CHARS)?;
    if clean.is_empty() || clean.chars().any(char::is_whitespace) {
        return Err(Error::invalid(
            "name",
            "must be non-empty and without spaces",
        ));
    }
    Ok(clean)
}

/// The longest host name (DNS allows 253 characters).
const HOST_MAX_CHARS: usize = 253;
/// The longest GPU UUID kept (NVIDIA's are 40).
const GPU_UUID_MAX_CHARS: usize = 128;

/// A host name: sanitized, trimmed, at most 253 characters.
pub fn host(s: &str) -> Result<String> {
    limited(s, "host", HOST_MAX_CHARS)
}

/// A GPU UUID: sanitized, trimmed, at most 128 characters.
pub fn gpu_uuid(s: &str) -> Result<String> {
    limited(s, "gpu_uuid", GPU_UUID_MAX_CHARS)
}

/// A GPU index: 0 or more.
pub fn gpu_index(i: Option<i32>) -> Result<()> {
    if i.is_some_and(|i| i < 0) {
        return Err(Error::invalid("gpu_index", "must be 0 or more"));
    }
    Ok(())
}

fn limited(s: &str, field: &str, max: usize) -> Result<String> {
    if s.chars().count() > max.saturating_mul(4) {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    let clean = text::sanitize_trimmed(s);
    if clean.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked() {
        assert!(email("kim@lab.example.kr").is_ok());
        assert_eq!(email("  a@b.co ").ok().as_deref(), Some("a@b.co"));
        for bad in [
            "",
            "no-at.example",
            "@x.org",
            "a@nodot",
            "a b@x.org",
            "a@x.org\u{1b}[2J",
            "a@@x.org",
            "a@x.",
        ] {
            assert!(email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn times_are_bounded_with_a_reason() {
        let rules = Rules::default();
        let now = year_start(2026);
        let at = |y: i32| year_start(y);
        let far = Period {
            start: at(2261),
            end: at(2261) + TimeDelta::hours(1),
        };
        let e = booking_period(&rules, far, now, true, true, true).expect_err("2261");
        assert!(e.to_string().contains("out of range"), "{e}");
        let overflow = Period {
            start: DateTime::<Utc>::MAX_UTC - TimeDelta::hours(1),
            end: DateTime::<Utc>::MAX_UTC,
        };
        assert!(booking_period(&rules, overflow, now, true, true, true).is_err());
        let ancient = Period {
            start: DateTime::<Utc>::MIN_UTC,
            end: now,
        };
        assert!(window(&ancient).is_err());
        let next_year = Period {
            start: now + TimeDelta::days(200),
            end: now + TimeDelta::days(200) + TimeDelta::hours(2),
        };
        let e = booking_period(&rules, next_year, now, true, true, false).expect_err("horizon");
        assert!(e.to_string().contains("90 days ahead"), "{e}");
        assert!(
            booking_period(&rules, next_year, now, true, true, true).is_ok(),
            "admins may book past the horizon"
        );
        assert!(lookup_text("user_email", "a\0b").is_err());
        let (lo, hi) = id_prefix("1A2b3C").expect("prefix");
        assert_eq!(lo.to_string(), "1a2b3c00-0000-0000-0000-000000000000");
        assert_eq!(hi.to_string(), "1a2b3cff-ffff-ffff-ffff-ffffffffffff");
        for bad in [
            "12345",
            "xyzxyz",
            "",
            "1a2b3c4d-1a2b-1a2b-1a2b-1a2b3c4d5e6f7",
        ] {
            assert!(id_prefix(bad).is_err(), "{bad:?}");
        }
        assert_eq!(page_limit(0), 100);
        assert_eq!(page_limit(100_000), 200);
        assert!(lookup_text("user_email", "kim@lab.kr").is_ok());
    }

    #[test]
    fn resource_lists_are_bounded_and_sorted() {
        assert_eq!(booking_resources(&[3, 1, 3]).ok(), Some(vec![1, 3]));
        assert!(booking_resources(&[]).is_err());
        let many: Vec<i64> =
            (0..=i64::try_from(limits::BOOKING_MAX_RESOURCES).unwrap_or(64)).collect();
        assert!(booking_resources(&many).is_err());
    }
}
