//! Keeps the embedded PostgreSQL running: [`DbSupervisor`] notices when the
//! server this daemon started has exited (killed, out of memory, crashed) and
//! starts it again with backoff; the pool reconnects by itself. If the server
//! does not come back, it reports the failure so that the daemon exits
//! non-zero and systemd restarts the whole service.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::host::pg::Cluster;
use crate::workers::{Shutdown, WorkerHandle};

/// How often the server is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Restarts tried, 1 s apart doubling, before the daemon gives up.
const ATTEMPTS: u32 = 5;

/// The embedded cluster's supervisor.
pub struct DbSupervisor {
    pub cluster: Arc<Cluster>,
    /// Where to say that the database is gone for good.
    pub fatal: mpsc::Sender<String>,
}

impl DbSupervisor {
    pub fn start(self, mut shutdown: Shutdown) -> WorkerHandle {
        let DbSupervisor { cluster, fatal } = self;
        WorkerHandle::spawn("database supervisor", async move {
            loop {
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                }
                if !cluster.has_exited() {
                    continue;
                }
                tracing::error!(
                    log = %cluster.log_path().display(),
                    "the embedded PostgreSQL exited; restarting it"
                );
                let mut delay = Duration::from_secs(1);
                let mut last_error = String::new();
                let mut restarted = false;
                for attempt in 1..=ATTEMPTS {
                    let c = Arc::clone(&cluster);
                    match tokio::task::spawn_blocking(move || c.restart()).await {
                        Ok(Ok(())) => {
                            tracing::info!(attempt, "the embedded PostgreSQL is running again");
                            restarted = true;
                            break;
                        }
                        Ok(Err(e)) => last_error = e.to_string(),
                        Err(e) => last_error = e.to_string(),
                    }
                    tracing::warn!(attempt, error = %last_error, "restarting the embedded PostgreSQL failed");
                    tokio::select! {
                        _ = shutdown.requested() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay *= 2;
                }
                if !restarted {
                    let _ = fatal
                        .send(format!(
                            "the embedded PostgreSQL exited and could not be restarted ({last_error}); see {}",
                            cluster.log_path().display()
                        ))
                        .await;
                    return;
                }
            }
        })
    }
}
