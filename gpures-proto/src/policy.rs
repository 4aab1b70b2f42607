//! Lab policy on the wire: groups, the rules admins set, and the refusal a
//! booking gets when it would break one.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Period, UserRef};

/// One kind of limit a policy sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyRule {
    /// GPUs one member holds at any one moment (a count).
    MaxGpus,
    /// GPU-minutes booked in any 7 days (shown as GPU-hours).
    GpuHoursWeek,
    /// Longest single reservation (minutes).
    MaxLength,
    /// How far ahead of now a reservation may end (minutes).
    Horizon,
    /// Bookings not yet over, at once (a count).
    MaxFuture,
    /// Minutes after a long reservation in which its owner starts no other.
    Cooldown,
}

impl PolicyRule {
    pub const ALL: [PolicyRule; 6] = [
        PolicyRule::MaxGpus,
        PolicyRule::GpuHoursWeek,
        PolicyRule::MaxLength,
        PolicyRule::Horizon,
        PolicyRule::MaxFuture,
        PolicyRule::Cooldown,
    ];

    /// The rule's name in the CLI, the database and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyRule::MaxGpus => "max-gpus",
            PolicyRule::GpuHoursWeek => "gpu-hours-week",
            PolicyRule::MaxLength => "max-length",
            PolicyRule::Horizon => "horizon",
            PolicyRule::MaxFuture => "max-future",
            PolicyRule::Cooldown => "cooldown",
        }
    }

    pub fn parse(s: &str) -> Option<PolicyRule> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the value is a count (else minutes).
    pub fn is_count(self) -> bool {
        matches!(self, PolicyRule::MaxGpus | PolicyRule::MaxFuture)
    }

    /// What the rule limits, for people.
    pub fn describe(self) -> &'static str {
        match self {
            PolicyRule::MaxGpus => "GPUs held at once",
            PolicyRule::GpuHoursWeek => "GPU-hours booked in any 7 days",
            PolicyRule::MaxLength => "longest reservation",
            PolicyRule::Horizon => "how far ahead a reservation may end",
            PolicyRule::MaxFuture => "bookings not yet over",
            PolicyRule::Cooldown => "pause after a long reservation",
        }
    }

    /// A value of this rule for people: `3 GPUs`, `48 h`, `90 min`.
    pub fn format_value(self, value: i64) -> String {
        match self {
            PolicyRule::MaxGpus => format!("{value} GPU{}", if value == 1 { "" } else { "s" }),
            PolicyRule::MaxFuture => {
                format!("{value} booking{}", if value == 1 { "" } else { "s" })
            }
            PolicyRule::GpuHoursWeek => format!("{} GPU-hours", hours(value)),
            _ => format_minutes(value),
        }
    }
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Minutes as people read them: `90 min`, `4 h`, `4 h 30 min`, `14 d`.
pub fn format_minutes(minutes: i64) -> String {
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    match (d, h, m) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, 0) => format!("{d} d"),
        _ if m == 0 => format!("{} h", minutes / 60),
        _ => format!("{} h {m} min", minutes / 60),
    }
}

/// Whom a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyScope {
    Everyone,
    /// Members of the group (its name).
    Group(String),
    /// One member.
    User(UserRef),
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyScope::Everyone => f.write_str("everyone"),
            PolicyScope::Group(name) => write!(f, "group {name}"),
            PolicyScope::User(u) => write!(f, "{}", u.email),
        }
    }
}

/// One rule in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// 0 for a default from the daemon's configuration.
    pub id: i64,
    pub rule: PolicyRule,
    pub scope: PolicyScope,
    /// Only the resources of this host (and only they count).
    pub host: Option<String>,
    pub value: i64,
    /// Cooldown: how many minutes make a reservation long.
    pub threshold: Option<i64>,
}

impl Policy {
    /// The rule as table cells: rule, limit, whom it applies to, host.
    pub fn cells(&self) -> [String; 4] {
        let mut value = self.rule.format_value(self.value);
        if let Some(t) = self.threshold {
            value.push_str(&format!(" after {}", format_minutes(t)));
        }
        let mut scope = self.scope.to_string();
        if self.id == 0 {
            scope.push_str(" (gpures.toml)");
        }
        [
            self.rule.to_string(),
            value,
            scope,
            self.host.clone().unwrap_or_else(|| "every host".into()),
        ]
    }
}

/// A rule's value as typed: a count for max-gpus and max-future; for the
/// time rules a length (`90m`, `4h`, `2d`, `1w`; a bare number is hours).
///
/// # Errors
/// What is wrong with it, for people.
pub fn parse_value(rule: PolicyRule, s: &str) -> Result<i64, String> {
    let s = s.trim();
    if rule.is_count() {
        return s
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| format!("{rule} takes a count, like 2 (got {s:?})"));
    }
    parse_minutes(s).ok_or_else(|| {
        format!("{rule} takes a length like 90m, 4h, 2d or 1w; a bare number is hours (got {s:?})")
    })
}

/// `90m`, `4h`, `2.5h`, `2d`, `1w`, or a bare number of hours, in minutes.
pub fn parse_minutes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let per = match unit.trim() {
        "m" | "min" | "mins" | "minutes" => 1.0,
        "" | "h" | "hour" | "hours" => 60.0,
        "d" | "day" | "days" => 1440.0,
        "w" | "week" | "weeks" => 10_080.0,
        _ => return None,
    };
    let minutes = (number * per).round();
    (number.is_finite() && (0.0..1e12).contains(&minutes)).then_some(minutes as i64)
}

/// Whom an admin sets a rule for: a group's name or a member's email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyTarget {
    Everyone,
    Group(String),
    User(String),
}

/// Sets (or with `value: None` removes) one rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicySet {
    pub rule: PolicyRule,
    pub target: PolicyTarget,
    pub host: Option<String>,
    pub value: Option<i64>,
    pub threshold: Option<i64>,
}

/// A `policy set|unset` command line, as both CLIs take it.
#[derive(Clone, Debug, Default)]
pub struct PolicyWords<'a> {
    pub rule: &'a str,
    /// `None`: unset.
    pub value: Option<&'a str>,
    /// Cooldown: the length that makes a reservation long.
    pub after: Option<&'a str>,
    pub group: Option<String>,
    pub user: Option<String>,
    pub host: Option<String>,
}

impl PolicySet {
    /// The change a command line asks for.
    ///
    /// # Errors
    /// An unknown rule or a value that does not read, for people.
    pub fn from_words(w: PolicyWords<'_>) -> Result<PolicySet, String> {
        let rule = PolicyRule::parse(w.rule).ok_or_else(|| {
            let names: Vec<&str> = PolicyRule::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown rule {:?}: one of {}", w.rule, names.join(", "))
        })?;
        Ok(PolicySet {
            rule,
            target: match (w.group, w.user) {
                (Some(g), _) => PolicyTarget::Group(g),
                (None, Some(u)) => PolicyTarget::User(u),
                (None, None) => PolicyTarget::Everyone,
            },
            host: w.host,
            value: w.value.map(|v| parse_value(rule, v)).transpose()?,
            threshold: w
                .after
                .map(|a| parse_value(PolicyRule::MaxLength, a))
                .transpose()?,
        })
    }
}

/// Why a booking or a change was refused by a policy, with the numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRefusal {
    pub rule: PolicyRule,
    /// Whose rule it is (everyone, a group, the member).
    pub scope: PolicyScope,
    pub host: Option<String>,
    pub limit: i64,
    /// What the booking would make it.
    pub would_be: i64,
    /// The stretch of time the numbers are about.
    pub window: Option<Period>,
    /// When booking becomes possible again, where one time says it.
    pub free_from: Option<DateTime<Utc>>,
}

impl PolicyRefusal {
    /// The refusal in a sentence, times written by `time`.
    pub fn sentence(&self, time: impl Fn(DateTime<Utc>) -> String) -> String {
        let rule = self.rule;
        let whose = match &self.scope {
            PolicyScope::Everyone => "the lab's".to_owned(),
            PolicyScope::Group(g) => format!("group {g}'s"),
            PolicyScope::User(_) => "your".to_owned(),
        };
        let on = self
            .host
            .as_deref()
            .map(|h| format!(" on {h}"))
            .unwrap_or_default();
        let window = self
            .window
            .map(|w| format!(" ({} to {})", time(w.start), time(w.end)))
            .unwrap_or_default();
        let mut s = match rule {
            PolicyRule::MaxGpus => format!(
                "this makes {} GPUs held at once{on}{window}; {whose} limit is {}",
                self.would_be, self.limit
            ),
            PolicyRule::GpuHoursWeek => format!(
                "this makes {} of {whose} {} GPU-hours in 7 days{on}{window}",
                hours(self.would_be),
                hours(self.limit)
            ),
            PolicyRule::MaxLength => format!(
                "a reservation of {} is longer than {whose} limit of {}{on}",
                format_minutes(self.would_be),
                format_minutes(self.limit)
            ),
            PolicyRule::Horizon => format!(
                "this ends {} ahead; {whose} limit is {} ahead{on}",
                format_minutes(self.would_be),
                format_minutes(self.limit)
            ),
            PolicyRule::MaxFuture => format!(
                "this makes {} bookings not yet over{on}; {whose} limit is {}",
                self.would_be, self.limit
            ),
            PolicyRule::Cooldown => format!(
                "this starts {} after a long reservation ended{on}; {whose} cooldown is {}",
                format_minutes(self.would_be),
                format_minutes(self.limit)
            ),
        };
        if let Some(t) = self.free_from {
            s.push_str(&format!("; possible again from {}", time(t)));
        }
        s.push_str(&format!(" (policy {rule})"));
        s
    }
}

impl PolicyRefusal {
    /// The numbers in a few words, for a form's one line:
    /// `2 GPUs at once, limit 1 (…)`.
    pub fn brief(&self, time: impl Fn(DateTime<Utc>) -> String) -> String {
        let (would, limit) = (self.would_be, self.limit);
        let mut s = match self.rule {
            PolicyRule::MaxGpus => format!("{would} GPUs at once, limit {limit}"),
            PolicyRule::GpuHoursWeek => {
                format!("{} of {} GPU-hours in 7 days", hours(would), hours(limit))
            }
            PolicyRule::MaxLength => {
                format!("{}, limit {}", format_minutes(would), format_minutes(limit))
            }
            PolicyRule::Horizon => format!(
                "ends {} ahead, limit {}",
                format_minutes(would),
                format_minutes(limit)
            ),
            PolicyRule::MaxFuture => format!("{would} bookings to come, limit {limit}"),
            PolicyRule::Cooldown => format!("{} cooldown after a long one", format_minutes(limit)),
        };
        if let Some(w) = self.window {
            s.push_str(&format!(" ({} to {})", time(w.start), time(w.end)));
        }
        if let Some(t) = self.free_from {
            s.push_str(&format!("; possible from {}", time(t)));
        }
        s
    }
}

/// GPU-minutes as GPU-hours, one decimal where it matters.
fn hours(minutes: i64) -> String {
    if minutes % 60 == 0 {
        format!("{}", minutes / 60)
    } else {
        format!("{:.1}", minutes as f64 / 60.0)
    }
}

impl fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()))
    }
}

/// What a booking would meet, checked before it is made: who holds the
/// slot, and the first lab rule it would break.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingPreview {
    pub holders: Vec<crate::Holder>,
    pub refusal: Option<Box<PolicyRefusal>>,
    /// Maintenance blocks in the way.
    pub blocks: Vec<crate::Block>,
}

/// A group of members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub members: Vec<UserRef>,
}

/// A change to the groups (admin).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GroupChange {
    Create { name: String, description: String },
    Delete { name: String },
    AddMember { name: String, email: String },
    RemoveMember { name: String, email: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_read_naturally() {
        assert_eq!(format_minutes(45), "45 min");
        assert_eq!(format_minutes(240), "4 h");
        assert_eq!(format_minutes(270), "4 h 30 min");
        assert_eq!(format_minutes(2 * 1440), "2 d");
        assert_eq!(format_minutes(1440 + 120), "26 h");
    }

    #[test]
    fn values_parse_with_units() {
        assert_eq!(parse_value(PolicyRule::MaxGpus, "2"), Ok(2));
        assert!(parse_value(PolicyRule::MaxGpus, "2h").is_err());
        assert!(parse_value(PolicyRule::MaxGpus, "-1").is_err());
        assert_eq!(parse_value(PolicyRule::GpuHoursWeek, "48"), Ok(48 * 60));
        assert_eq!(parse_value(PolicyRule::MaxLength, "90m"), Ok(90));
        assert_eq!(parse_value(PolicyRule::Horizon, "2w"), Ok(2 * 10_080));
        assert_eq!(parse_value(PolicyRule::Cooldown, "1.5h"), Ok(90));
        assert!(parse_value(PolicyRule::Cooldown, "soon").is_err());
        assert!(parse_value(PolicyRule::Cooldown, "inf").is_err());
    }

    #[test]
    fn every_rule_round_trips_its_name() {
        for rule in PolicyRule::ALL {
            assert_eq!(PolicyRule::parse(rule.as_str()), Some(rule));
        }
        assert_eq!(PolicyRule::parse("max-gpu"), None);
    }
}
