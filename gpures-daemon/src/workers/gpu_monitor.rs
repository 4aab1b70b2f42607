//! The GPU monitor: samples this host's GPUs with the [`Probe`] every
//! `sample_interval`, keeps 10 minutes of utilisation per GPU, and writes this
//! host's latest [`HostRecord`] into `host_telemetry` so every daemon sharing
//! the database sees every host.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gpures_proto::GpuTelemetry;
use tokio::sync::watch;

use crate::gpu::{HostRecord, Probe, StoredGpu};
use crate::store::{self, Store};
use crate::workers::{Shutdown, WorkerHandle};

/// Samples kept for the utilisation history: 10 minutes at the default 5 s.
const HISTORY_WINDOW: Duration = Duration::from_secs(600);

/// Samples on a timer and publishes this host's record.
pub struct GpuMonitor {
    pub probe: Probe,
    pub store: Store,
    pub host: String,
    pub interval: Duration,
}

impl GpuMonitor {
    /// Starts sampling until `shutdown`. The latest record is also sent on
    /// the returned channel.
    pub fn start(
        self,
        mut shutdown: Shutdown,
    ) -> (watch::Receiver<Option<HostRecord>>, WorkerHandle) {
        let GpuMonitor {
            probe,
            store,
            host,
            interval,
        } = self;
        let (tx, rx) = watch::channel(None);
        let probe = Arc::new(probe);
        let task = WorkerHandle::spawn("gpu monitor", async move {
            let keep =
                usize::try_from((HISTORY_WINDOW.as_secs() / interval.as_secs().max(1)).max(1))
                    .unwrap_or(120);
            let mut history: HashMap<String, VecDeque<u8>> = HashMap::new();
            let mut last_process: HashMap<String, DateTime<Utc>> = HashMap::new();
            let started = Utc::now();
            // The links between GPUs do not change while the host runs.
            let topology = {
                let p = Arc::clone(&probe);
                tokio::task::spawn_blocking(move || p.topology())
                    .await
                    .unwrap_or_default()
            };
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = ticker.tick() => {}
                }
                let p = Arc::clone(&probe);
                let sampled = tokio::task::spawn_blocking(move || p.sample()).await;
                let now = Utc::now();
                let (gpus, note) = match sampled {
                    Ok(Ok(gpus)) => (gpus, probe.note()),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "GPU probe failed");
                        (Vec::new(), Some(format!("the GPU probe failed: {e}")))
                    }
                    Err(e) => (Vec::new(), Some(format!("the GPU probe failed: {e}"))),
                };
                let record = HostRecord {
                    host: host.clone(),
                    backend: probe.backend_name().to_owned(),
                    sampled_at: Some(now),
                    note,
                    topology: topology.clone(),
                    gpus: gpus
                        .into_iter()
                        .map(|g| {
                            let h = history.entry(g.uuid.clone()).or_default();
                            h.push_back(
                                u8::try_from(g.utilization_pct.unwrap_or(0).min(100))
                                    .unwrap_or(100),
                            );
                            while h.len() > keep {
                                h.pop_front();
                            }
                            if !g.processes.is_empty() {
                                last_process.insert(g.uuid.clone(), now);
                            }
                            StoredGpu {
                                last_process_at: last_process.get(&g.uuid).copied(),
                                watched_since: started,
                                telemetry: GpuTelemetry {
                                    host: host.clone(),
                                    index: g.index,
                                    uuid: g.uuid,
                                    name: g.name,
                                    sampled_at: now,
                                    utilization_pct: g.utilization_pct,
                                    memory_used_mib: g.memory_used_mib,
                                    memory_total_mib: g.memory_total_mib,
                                    temperature_c: g.temperature_c,
                                    power_w: g.power_w,
                                    history: h.iter().copied().collect(),
                                    processes: g.processes,
                                },
                            }
                        })
                        .collect(),
                };
                let stored = match store.acquire().await {
                    Ok(mut conn) => store::telemetry::put(&mut conn, &record).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = stored {
                    tracing::warn!(error = %e, "cannot store the GPU sample");
                }
                let _ = tx.send(Some(record));
            }
        });
        (rx, task)
    }
}
