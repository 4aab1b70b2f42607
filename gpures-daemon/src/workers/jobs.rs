//! Releases the bookings of `gpures run` jobs whose processes all ended
//! without releasing (the client was killed, its SSH session dropped). A job
//! must be seen gone twice, one interval apart, before its booking is
//! released; a `/proc` that cannot be read is never "gone".

use std::collections::HashSet;
use std::time::Duration;

use uuid::Uuid;

use super::{Shutdown, WorkerHandle};
use crate::service::Service;
use crate::service::jobs::Liveness;

pub struct JobWatcher {
    pub service: Service,
    /// How often to look (the GPU sampling interval).
    pub every: Duration,
}

impl JobWatcher {
    pub fn start(self, mut shutdown: Shutdown) -> WorkerHandle {
        let JobWatcher { service, every } = self;
        WorkerHandle::spawn("jobs", async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Jobs seen gone once: released when seen gone again.
            let mut suspects: HashSet<Uuid> = HashSet::new();
            loop {
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = tick.tick() => {}
                }
                let states = match service.job_states().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the jobs");
                        continue;
                    }
                };
                let mut gone_now = HashSet::new();
                for (row, state) in states {
                    if state != Liveness::Gone {
                        continue;
                    }
                    if suspects.contains(&row.booking_id) {
                        if let Err(e) = service.end_job(&row).await {
                            tracing::warn!(error = %e, booking = %row.booking_id, "cannot release a finished job");
                            gone_now.insert(row.booking_id);
                        }
                    } else {
                        gone_now.insert(row.booking_id);
                    }
                }
                suspects = gone_now;
            }
        })
    }
}
