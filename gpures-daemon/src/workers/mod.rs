//! Long-lived background work beside the RPC server, each in one shape: a
//! struct built from its configuration and dependencies, and
//! `start(self, Shutdown) -> WorkerHandle`. The daemon keeps the handles and
//! [`WorkerHandle::join`]s them all on shutdown.
//!
//! - [`changes`]: LISTEN/NOTIFY into a change counter and the account cache.
//! - [`calendar`]: delivers the calendar outbox to Google, and repairs.
//! - [`feeds`]: keeps the iCalendar feeds in `[feeds] dir` up to date.
//! - [`gpu_monitor`]: samples this host's GPUs into `host_telemetry`.
//! - [`db_supervisor`]: restarts the embedded PostgreSQL when it dies.
//! - [`granter`]: grants the queue as capacity frees.
//! - [`jobs`]: releases the bookings of `gpures run` jobs whose processes ended.
//! - [`notifier`]: delivers notifications (webhooks, email, terminals) and
//!   sends the reminders.
//! - [`watcher`]: notices of unreserved use and idle reclaim, after each
//!   GPU sample.

pub mod calendar;
pub mod changes;
pub mod db_supervisor;
pub mod feeds;
pub mod gpu_monitor;
pub mod granter;
pub mod jobs;
pub mod notifier;
pub mod watcher;

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The daemon-wide shutdown signal: turns true once and stays true.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side of [`Shutdown`], kept by whoever runs the daemon.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Tells every holder of a [`Shutdown`] to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Resolves once shutdown was triggered (or its trigger is gone).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|down| *down).await;
    }

    /// Whether shutdown was triggered.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// A started worker.
#[derive(Debug)]
pub struct WorkerHandle {
    name: &'static str,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Runs `work` as the worker called `name`.
    pub fn spawn(name: &'static str, work: impl Future<Output = ()> + Send + 'static) -> Self {
        WorkerHandle {
            name,
            task: tokio::spawn(work),
        }
    }

    /// Waits for the worker to end (after shutdown was triggered).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(worker = self.name, error = %e, "worker failed");
        }
    }
}
