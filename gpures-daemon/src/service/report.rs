//! Usage reports: the figures of [`crate::store::usage`] for a window,
//! grouped by user, group, resource or host. A member sees their own rows
//! and the lab's totals; an admin sees every row.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{Period, Report, ReportBy, ReportRequest, ReportRow, Usage};

use super::{Actor, Result, Service, validate};
use crate::store::{resources, usage};

/// The row of members in no group, in `--by group`.
pub const NO_GROUP: &str = "(no group)";

fn hour_floor(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

fn hour_ceil(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = hour_floor(at);
    if floor == at {
        at
    } else {
        floor + TimeDelta::hours(1)
    }
}

impl Service {
    /// The usage report of `request.window` (widened to whole hours).
    ///
    /// # Errors
    /// An invalid window; store failures.
    pub async fn report(&self, actor: &Actor, request: ReportRequest) -> Result<Report> {
        validate::window(&request.window)?;
        let from = hour_floor(request.window.start);
        let to = hour_ceil(request.window.end);
        let now = Utc::now();
        let until = to.min(now).max(from);
        let mut conn = self.store().acquire().await?;
        let facts = usage::facts(&mut conn, from, to, until).await?;
        let unreserved = usage::unreserved(&mut conn, from, to).await?;
        let mut ids: Vec<i64> = facts.iter().map(|f| f.user_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut unix_users: Vec<String> = unreserved.iter().map(|u| u.0.clone()).collect();
        unix_users.sort_unstable();
        unix_users.dedup();
        let people = usage::people(&mut conn, &ids, &unix_users).await?;
        let all_resources = resources::list(&mut conn, true).await?;
        // Whole days of 24 h from the start (a window of hours is one day).
        let days = usize::try_from(((to - from).num_hours() + 23) / 24)
            .unwrap_or(1)
            .max(1);
        let heat_rows = usage::heat(&mut conn, from, to).await?;
        let trend_rows = match actor.user() {
            Some(u) => usage::trend(&mut conn, u.id, from, to).await?,
            None => Vec::new(),
        };
        drop(conn);
        let day_index = |d: i32| usize::try_from(d).ok().filter(|d| *d < days);
        let mut trend = vec![None; days];
        for (day, used, idle) in trend_rows {
            if let Some(d) = day_index(day)
                && used + idle > 0
            {
                trend[d] = u8::try_from(used * 100 / (used + idle)).ok();
            }
        }
        let mut heat_of: HashMap<i64, Vec<Option<u8>>> = HashMap::new();
        for (resource_id, day, sum, n) in heat_rows {
            if let Some(d) = day_index(day)
                && n > 0
            {
                heat_of
                    .entry(resource_id)
                    .or_insert_with(|| vec![None; days])[d] =
                    u8::try_from((sum / n).clamp(0, 100)).ok();
            }
        }
        // Every active GPU, and a removed one that has data in the window.
        let heat = all_resources
            .iter()
            .filter(|r| r.active || heat_of.contains_key(&r.id))
            .filter(|r| r.kind == gpures_proto::ResourceKind::Gpu)
            .map(|r| gpures_proto::HeatRow {
                resource: r.name.clone(),
                days: heat_of
                    .get(&r.id)
                    .cloned()
                    .unwrap_or_else(|| vec![None; days]),
            })
            .collect();
        let resources: HashMap<i64, (String, String)> = all_resources
            .into_iter()
            .map(|r| (r.id, (r.name, r.host)))
            .collect();

        let person: HashMap<i64, &usage::Person> = people.iter().map(|p| (p.id, p)).collect();
        let speaker: HashMap<&str, &usage::Person> = people
            .iter()
            .filter(|p| p.speaks)
            .map(|p| (p.unix_user.as_str(), p))
            .collect();
        let me = actor.user().map(|u| u.id);
        let my_unix = me
            .and_then(|id| person.get(&id))
            .map(|p| p.unix_user.clone());
        // Rows a member may see: their own account's, and their Unix user's
        // unreserved use.
        let everyone = actor.is_admin();
        let mut rows: BTreeMap<String, Usage> = BTreeMap::new();
        let mut lab = Usage::default();
        let keys = |user: Option<&usage::Person>, unix: &str, resource_id: i64| -> Vec<String> {
            let (name, host) = resources
                .get(&resource_id)
                .cloned()
                .unwrap_or_else(|| (format!("#{resource_id}"), String::new()));
            match request.by {
                ReportBy::User => {
                    vec![user.map_or_else(|| unix.to_owned(), |p| p.display_name.clone())]
                }
                ReportBy::Group => match user {
                    Some(p) if !p.groups.is_empty() => p.groups.clone(),
                    _ => vec![NO_GROUP.to_owned()],
                },
                ReportBy::Resource => vec![name],
                ReportBy::Host => vec![host],
            }
        };
        for f in &facts {
            let u = Usage {
                booked: f.booked,
                used: f.used.min(f.booked),
                idle: f.idle.min((f.booked - f.used).max(0)),
                unknown: (f.booked - f.used - f.idle).max(0),
                released: f.released,
                released_count: f.released_count,
                reclaimed: f.reclaimed,
                reclaimed_count: f.reclaimed_count,
                unreserved: 0,
            };
            lab.add(&u);
            if !everyone && me != Some(f.user_id) {
                continue;
            }
            let p = person.get(&f.user_id).copied();
            let unix = p.map_or("", |p| p.unix_user.as_str());
            for key in keys(p, unix, f.resource_id) {
                rows.entry(key).or_default().add(&u);
            }
        }
        for (unix, resource_id, minutes) in &unreserved {
            let u = Usage {
                unreserved: *minutes,
                ..Usage::default()
            };
            lab.add(&u);
            if !everyone && my_unix.as_deref() != Some(unix.as_str()) {
                continue;
            }
            let p = speaker.get(unix.as_str()).copied();
            for key in keys(p, unix, *resource_id) {
                rows.entry(key).or_default().add(&u);
            }
        }
        let mut rows: Vec<ReportRow> = rows
            .into_iter()
            .map(|(key, usage)| ReportRow { key, usage })
            .collect();
        rows.sort_by(|a, b| {
            b.usage
                .booked
                .cmp(&a.usage.booked)
                .then(b.usage.unreserved.cmp(&a.usage.unreserved))
                .then(a.key.cmp(&b.key))
        });
        Ok(Report {
            window: Period {
                start: from,
                end: to,
            },
            until,
            by: request.by,
            rows,
            lab,
            everyone,
            heat,
            trend,
        })
    }
}
