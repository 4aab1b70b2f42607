//! What the daemon stores and shows of a host's GPUs: [`HostRecord`] (one
//! per host in `host_telemetry`), [`StoredGpu`], and the comparison of a card
//! with its schedule ([`flags`]). Plain data and pure functions: the probe
//! writes them, the status service reads them.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use gpures_proto::{GpuFlag, GpuTelemetry, HostTelemetry, Reservation};
use serde::{Deserialize, Serialize};

/// One GPU as stored for its host: the telemetry clients see, and when a
/// process was last seen on it (for `idle_reservation`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredGpu {
    pub telemetry: GpuTelemetry,
    pub last_process_at: Option<DateTime<Utc>>,
    /// When this daemon began watching the GPU: idleness is not claimed for
    /// time nobody watched.
    pub watched_since: DateTime<Utc>,
}

/// A host's latest record in `host_telemetry`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostRecord {
    pub host: String,
    pub backend: String,
    pub sampled_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub gpus: Vec<StoredGpu>,
    /// How the GPUs are linked, by index (empty: not known).
    #[serde(default)]
    pub topology: Vec<super::GpuLink>,
}

impl HostRecord {
    pub fn summary(&self) -> HostTelemetry {
        HostTelemetry {
            host: self.host.clone(),
            backend: self.backend.clone(),
            sampled_at: self.sampled_at,
            note: self.note.clone(),
        }
    }
}

/// The telemetry record of a resource: by UUID, else by host and index.
pub fn telemetry_for<'a>(
    records: &'a [HostRecord],
    resource: &gpures_proto::Resource,
) -> Option<&'a StoredGpu> {
    GpuIndex::new(records).get(resource)
}

/// [`telemetry_for`] for many resources: every GPU of `records` indexed
/// once, so a status of a thousand GPUs is a thousand lookups.
pub struct GpuIndex<'a> {
    by_uuid: HashMap<&'a str, &'a StoredGpu>,
    by_slot: HashMap<(&'a str, u32), &'a StoredGpu>,
}

impl<'a> GpuIndex<'a> {
    pub fn new(records: &'a [HostRecord]) -> GpuIndex<'a> {
        let mut index = GpuIndex {
            by_uuid: HashMap::new(),
            by_slot: HashMap::new(),
        };
        for r in records {
            for g in &r.gpus {
                // The first record wins, as a search in order would find.
                index.by_uuid.entry(g.telemetry.uuid.as_str()).or_insert(g);
                index
                    .by_slot
                    .entry((r.host.as_str(), g.telemetry.index))
                    .or_insert(g);
            }
        }
        index
    }

    /// The telemetry record of `resource`: by UUID when it has one, else by
    /// host and index.
    pub fn get(&self, resource: &gpures_proto::Resource) -> Option<&'a StoredGpu> {
        if let Some(uuid) = &resource.gpu_uuid {
            return self.by_uuid.get(uuid.as_str()).copied();
        }
        let index = u32::try_from(resource.gpu_index?).ok()?;
        self.by_slot.get(&(resource.host.as_str(), index)).copied()
    }
}

/// Compares a GPU with its schedule. `unix_user_of` maps a user id to the
/// Unix user its account is bound to; `recent` holds this GPU's reservations
/// that ended lately (for `overrun`).
pub fn flags(
    gpu: &StoredGpu,
    current: Option<&Reservation>,
    recent: &[&Reservation],
    unix_user_of: &dyn Fn(i64) -> Option<String>,
    now: DateTime<Utc>,
    idle_after: TimeDelta,
) -> Vec<GpuFlag> {
    let mut out = Vec::new();
    let holder = current.and_then(|r| unix_user_of(r.user.id));
    for p in &gpu.telemetry.processes {
        let Some(user) = &p.unix_user else {
            continue;
        };
        if holder.as_deref() == Some(user.as_str()) {
            continue;
        }
        let overran = recent.iter().any(|r| {
            r.period.end <= now && unix_user_of(r.user.id).as_deref() == Some(user.as_str())
        });
        if overran {
            out.push(GpuFlag::Overrun {
                unix_user: user.clone(),
                pid: p.pid,
            });
        } else {
            out.push(GpuFlag::UnreservedUse {
                unix_user: user.clone(),
                pid: p.pid,
            });
        }
    }
    if let Some(r) = current
        && gpu.telemetry.processes.is_empty()
    {
        let since = [
            Some(r.period.start),
            gpu.last_process_at,
            Some(gpu.watched_since),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(now);
        let idle = now - since;
        if idle >= idle_after {
            out.push(GpuFlag::IdleReservation {
                idle_minutes: u32::try_from(idle.num_minutes()).unwrap_or(u32::MAX),
            });
        }
    }
    out
}
