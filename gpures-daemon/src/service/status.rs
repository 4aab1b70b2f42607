//! The status report: per resource, who holds it now and until when, who is
//! next, live telemetry, and the flags that compare the card with its
//! schedule (unreserved use, idle reservation, overrun).

use std::collections::HashMap;

use chrono::{TimeDelta, Utc};
use gpures_proto::{Reservation, ResourceStatus, StatusCursor, StatusReport, limits};
use sqlx::PgConnection;

use super::{Actor, Result, Service};
use crate::gpu;
use crate::store::{outbox, reservations, resources, users};

/// How far back a reservation that ended may still explain a running process.
pub(super) const OVERRUN_LOOKBACK: TimeDelta = TimeDelta::hours(24);

/// Which resources a status is about.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scope<'a> {
    /// Those after the cursor (all from the start with `None`).
    After(Option<&'a StatusCursor>),
    /// These (the resources of a change).
    Only(&'a [i64]),
}

impl Service {
    /// One page of the status of the active resources, from the start or
    /// after `after`; admins also see the calendar queue (first page).
    ///
    /// # Errors
    /// Store failures.
    pub async fn status(
        &self,
        actor: &Actor,
        after: Option<&StatusCursor>,
    ) -> Result<StatusReport> {
        let mut conn = self.store().acquire().await?;
        let mut report = self.status_of(&mut conn, Scope::After(after)).await?;
        // Ends where about a page of bytes is reached (at least one).
        let fits = gpures_proto::framing::fitting(
            &report.resources,
            limits::PAGE_BYTES_MAX,
            gpures_proto::framing::encoded_len,
        );
        if fits < report.resources.len() {
            report.resources.truncate(fits);
            report.next = report
                .resources
                .last()
                .map(|s| StatusCursor::after(&s.resource));
        }
        if after.is_none() && actor.is_admin() {
            report.calendar =
                Some(outbox::status(&mut conn, self.settings().calendar_enabled).await?);
        }
        Ok(report)
    }

    /// The status of the active resources in `scope`, in status order,
    /// whole (not cut into pages) and without the calendar queue; the hosts'
    /// sampling only from the start.
    ///
    /// # Errors
    /// Store failures.
    pub(super) async fn status_of(
        &self,
        conn: &mut PgConnection,
        scope: Scope<'_>,
    ) -> Result<StatusReport> {
        let now = Utc::now();
        let mut resources = resources::list(&mut *conn, false).await?;
        resources.sort_by(|a, b| StatusCursor::key_of(a).cmp(&StatusCursor::key_of(b)));
        match scope {
            Scope::After(Some(c)) => resources.retain(|r| StatusCursor::key_of(r) > c.key()),
            Scope::Only(ids) => resources.retain(|r| ids.contains(&r.id)),
            Scope::After(None) => {}
        }
        // The queries below read only these resources' rows (empty: all).
        let on: Vec<i64> = match scope {
            Scope::After(None) => Vec::new(),
            _ => resources.iter().map(|r| r.id).collect(),
        };
        if on.is_empty() && !matches!(scope, Scope::After(None)) {
            // Nothing in scope: not "every resource".
            return Ok(StatusReport {
                generated_at: now,
                host: self.host().to_owned(),
                resources: Vec::new(),
                hosts: Vec::new(),
                calendar: None,
                next: None,
            });
        }
        let on = on.as_slice();
        let (current, next) = reservations::current_and_next(&mut *conn, now, on).await?;
        let records = self.telemetry().all(&mut *conn).await?;
        let recent = reservations::recently_ended(&mut *conn, now, OVERRUN_LOOKBACK, on).await?;
        let blocks = crate::store::blocks::current_or_next(&mut *conn, now, on).await?;
        // Only the owners of what is shown, and only their Unix users.
        let mut ids: Vec<i64> = current
            .iter()
            .chain(recent.iter())
            .map(|r| r.user.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let unix_users: HashMap<i64, String> = users::unix_users(&mut *conn, &ids)
            .await?
            .into_iter()
            .collect();
        let unix_user_of = |id: i64| unix_users.get(&id).cloned();
        let idle_after = self.settings().idle_after;
        // Per resource (at most one current, next and block each): a
        // thousand GPUs are a thousand lookups, not a million comparisons.
        let mut current: HashMap<i64, Reservation> =
            current.into_iter().map(|r| (r.resource_id, r)).collect();
        let mut next: HashMap<i64, Reservation> =
            next.into_iter().map(|r| (r.resource_id, r)).collect();
        let mut blocks: HashMap<i64, gpures_proto::Block> =
            blocks.into_iter().map(|b| (b.resource_id, b)).collect();
        let mut ended: HashMap<i64, Vec<&Reservation>> = HashMap::new();
        for r in &recent {
            ended.entry(r.resource_id).or_default().push(r);
        }
        let gpus = gpu::GpuIndex::new(&records);
        let resources = resources
            .into_iter()
            .map(|resource| {
                let current = current.remove(&resource.id);
                let gpu = gpus.get(&resource);
                let flags = match gpu {
                    Some(g) => {
                        let ended = ended.get(&resource.id).map_or(&[][..], Vec::as_slice);
                        gpu::flags(g, current.as_ref(), ended, &unix_user_of, now, idle_after)
                    }
                    None => Vec::new(),
                };
                ResourceStatus {
                    block: blocks.remove(&resource.id),
                    next: next.remove(&resource.id),
                    telemetry: gpu.map(|g| g.telemetry.clone()),
                    flags,
                    current,
                    resource,
                }
            })
            .collect();
        let hosts = match scope {
            Scope::After(None) => records.iter().map(|r| r.summary()).collect(),
            _ => Vec::new(),
        };
        Ok(StatusReport {
            generated_at: now,
            host: self.host().to_owned(),
            resources,
            hosts,
            calendar: None,
            next: None,
        })
    }
}
