//! Grants the queue: [`Granter`] runs [`Service::grant_queue`] after every
//! change any daemon announces (a release, a cancellation, a shortened
//! booking, a new request) and every few seconds, since reservations also
//! end by the clock. A burst of changes makes one pass.

use std::time::Duration;

use tokio::sync::watch;

use super::{Shutdown, WorkerHandle};
use crate::service::Service;

/// How long a burst of changes may take to settle into one pass.
const SETTLE: Duration = Duration::from_millis(20);

pub struct Granter {
    pub service: Service,
    /// The change counter of the change listener.
    pub changes: watch::Receiver<u64>,
    /// A pass at least this often.
    pub every: Duration,
}

impl Granter {
    pub fn start(self, mut shutdown: Shutdown) -> WorkerHandle {
        let Granter {
            service,
            mut changes,
            every,
        } = self;
        WorkerHandle::spawn("granter", async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.requested() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tick.tick() => {}
                }
                tokio::time::sleep(SETTLE).await;
                changes.borrow_and_update();
                // Requests nobody approved in time free their slots first.
                if let Err(e) = service.expire_pending().await {
                    tracing::warn!(error = %e, "expiring approval requests failed");
                }
                match service.grant_queue().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(granted = n, "queue pass"),
                    Err(e) => {
                        tracing::warn!(error = %e, "queue pass failed; retrying on the next change")
                    }
                }
            }
        })
    }
}
