//! Every check of client input, in one place: emails, names, passwords,
//! notes, descriptions, periods, windows and resource lists. Each returns the
//! cleaned value or [`Error::Invalid`] naming the field.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{Period, limits, text};

use super::{Error, Result, Rules};

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
    if period.end <= period.start {
        return Err(Error::invalid("period", "the end must be after the start"));
    }
    Ok(())
}

/// A period to book or move to. `start_set` says whether the start is being
/// set (and so must not lie in the past unless `admin`).
pub fn booking_period(
    rules: &Rules,
    period: Period,
    now: DateTime<Utc>,
    start_set: bool,
    admin: bool,
) -> Result<()> {
    nonempty_period(&period)?;
    for (field, t) in [("start", period.start), ("end", period.end)] {
        if t.duration_trunc(TimeDelta::minutes(1)).ok() != Some(t) {
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
    Ok(())
}

/// A note: sanitized and at most [`limits::NOTE_MAX_CHARS`] characters.
pub fn note(note: &str) -> Result<String> {
    limited(note, "note", limits::NOTE_MAX_CHARS)
}

/// A resource description.
pub fn description(d: &str) -> Result<String> {
    limited(d, "description", limits::DESCRIPTION_MAX_CHARS)
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

/// Free text of one line (host names, GPU UUIDs): sanitized and trimmed.
pub fn plain(s: &str) -> String {
    text::sanitize_trimmed(s)
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
    fn resource_lists_are_bounded_and_sorted() {
        assert_eq!(booking_resources(&[3, 1, 3]).ok(), Some(vec![1, 3]));
        assert!(booking_resources(&[]).is_err());
        let many: Vec<i64> =
            (0..=i64::try_from(limits::BOOKING_MAX_RESOURCES).unwrap_or(64)).collect();
        assert!(booking_resources(&many).is_err());
    }
}
