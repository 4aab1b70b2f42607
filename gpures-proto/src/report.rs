//! Usage reports (`gpures report`): how the GPU-minutes of a window were
//! booked, used, left idle or used without a booking.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Period;

/// What a report's rows are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportBy {
    #[default]
    User,
    Group,
    Resource,
    Host,
}

impl ReportBy {
    pub const ALL: [ReportBy; 4] = [
        ReportBy::User,
        ReportBy::Group,
        ReportBy::Resource,
        ReportBy::Host,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportBy::User => "user",
            ReportBy::Group => "group",
            ReportBy::Resource => "resource",
            ReportBy::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<ReportBy> {
        ReportBy::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// GPU-minutes of one row (or the lab) in a report's window.
///
/// `booked` counts held time up to the report's `until` (never the future);
/// of it, `used` had a qualifying process of the holder, `idle` had trusted
/// samples without one, and `unknown` had no trusted sample (a telemetry
/// gap, never counted as idle). `unreserved` is use of GPUs the user did not
/// hold. `released` and `reclaimed` are booked time given back before its
/// end by the owner (or `gpures run`) and by idle reclaim, with how many
/// reservations each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub booked: i64,
    pub used: i64,
    pub idle: i64,
    pub unknown: i64,
    pub unreserved: i64,
    pub released: i64,
    pub released_count: i64,
    pub reclaimed: i64,
    pub reclaimed_count: i64,
}

impl Usage {
    /// Used ÷ (used + idle): the share of the booked time we could see that
    /// was really used. `None` when nothing booked was seen.
    pub fn efficiency(&self) -> Option<f64> {
        let seen = self.used + self.idle;
        (seen > 0).then(|| self.used as f64 / seen as f64)
    }

    pub fn add(&mut self, o: &Usage) {
        self.booked += o.booked;
        self.used += o.used;
        self.idle += o.idle;
        self.unknown += o.unknown;
        self.unreserved += o.unreserved;
        self.released += o.released;
        self.released_count += o.released_count;
        self.reclaimed += o.reclaimed;
        self.reclaimed_count += o.reclaimed_count;
    }
}

/// One row of a report: a user, group, resource or host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    /// The display name, group, resource or host; a Unix user without an
    /// account is shown by its Unix name.
    pub key: String,
    pub usage: Usage,
}

/// What `report` returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The window, widened to whole hours.
    pub window: Period,
    /// Figures count up to here: the window's end or now, whichever is first.
    pub until: DateTime<Utc>,
    pub by: ReportBy,
    /// Sorted by booked time, most first. A member sees only their own
    /// share; an admin every row.
    pub rows: Vec<ReportRow>,
    /// The whole lab, for everyone.
    pub lab: Usage,
    /// Whether `rows` cover everyone (an admin asked).
    pub everyone: bool,
    /// Per GPU, its mean utilisation per day of the window (days are 24 h
    /// from the window's start; `None`: no sample that day).
    pub heat: Vec<HeatRow>,
    /// The asker's efficiency (used ÷ (used + idle), in percent) per day of
    /// the window; `None` on days without a sampled booking.
    pub trend: Vec<Option<u8>>,
}

/// One GPU's row of the heat strip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeatRow {
    pub resource: String,
    pub days: Vec<Option<u8>>,
}

/// What `report` is asked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportRequest {
    pub window: Period,
    pub by: ReportBy,
}
