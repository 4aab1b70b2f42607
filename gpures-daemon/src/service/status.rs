//! The status report: per resource, who holds it now and until when, who is
//! next, live telemetry, and the flags that compare the card with its
//! schedule (unreserved use, idle reservation, overrun).

use std::collections::HashMap;

use chrono::{TimeDelta, Utc};
use gpures_proto::{Reservation, ResourceStatus, StatusReport};
use sqlx::PgConnection;

use super::{Actor, Result, Service};
use crate::gpu;
use crate::store::{outbox, reservations, resources, users};

/// How far back a reservation that ended may still explain a running process.
pub(super) const OVERRUN_LOOKBACK: TimeDelta = TimeDelta::hours(24);

impl Service {
    /// The status of every active resource; admins also see the calendar queue.
    ///
    /// # Errors
    /// Store failures.
    pub async fn status(&self, actor: &Actor) -> Result<StatusReport> {
        let mut conn = self.store().acquire().await?;
        let mut report = self.status_of(&mut conn, None).await?;
        if actor.is_admin() {
            report.calendar =
                Some(outbox::status(&mut conn, self.settings().calendar_enabled).await?);
        }
        Ok(report)
    }

    /// The status of the active resources `only` names (all with `None`),
    /// without the calendar queue.
    ///
    /// # Errors
    /// Store failures.
    pub(super) async fn status_of(
        &self,
        conn: &mut PgConnection,
        only: Option<&[i64]>,
    ) -> Result<StatusReport> {
        let now = Utc::now();
        let mut resources = resources::list(&mut *conn, false).await?;
        if let Some(only) = only {
            resources.retain(|r| only.contains(&r.id));
        }
        // Empty: every resource.
        let on = only.unwrap_or_default();
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
        Ok(StatusReport {
            generated_at: now,
            host: self.host().to_owned(),
            resources,
            hosts: records.iter().map(|r| r.summary()).collect(),
            calendar: None,
        })
    }
}
