//! Runs [`Service::watch`] after each sample of this host's GPUs: notices
//! of unreserved use, and idle reclaim where the host turned it on.

use std::time::Duration;

use super::{Shutdown, WorkerHandle};
use crate::service::Service;

pub struct Watcher {
    pub service: Service,
    pub every: Duration,
}

impl Watcher {
    pub fn start(self, mut shutdown: Shutdown) -> WorkerHandle {
        let Watcher { service, every } = self;
        WorkerHandle::spawn("watcher", async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = tick.tick() => {}
                }
                match service.watch().await {
                    Ok(r) if r == Default::default() => {}
                    Ok(r) => tracing::info!(
                        told = r.told,
                        warned = r.warned,
                        released = r.released,
                        "watch pass"
                    ),
                    Err(e) => tracing::warn!(error = %e, "watch pass failed"),
                }
            }
        })
    }
}
