//! Usage accounting: after each trusted sample of this host's GPUs, the
//! meter adds what each GPU showed to its current minute; finished minutes
//! go to the database in one statement (see [`crate::store::usage`]).
//!
//! What a sample says about a GPU, per [`Seen`]: its holder ran a qualifying
//! process on it (used), or did not (idle), or the sample cannot tell (stale
//! or missing telemetry, a process of an owner the host cannot see, a holder
//! without a Unix user). Unknown samples are not counted at all, so a
//! telemetry gap is reported as unknown, never as idle.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use gpures_proto::GpuProcess;

use super::reclaim::ReclaimRules;
use crate::store::usage::Minute;

/// What one trusted sample showed of one GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub resource_id: i64,
    /// Its holder at the sample.
    pub reservation_id: Option<Uuid>,
    /// Whether the holder ran a qualifying process on it.
    pub used: bool,
    pub util_pct: Option<u8>,
    pub memory_used_mib: Option<u64>,
    /// Unix users with a qualifying process who do not hold it.
    pub unreserved: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Open {
    reservation_id: Option<Uuid>,
    samples: i16,
    used: i16,
    util_sum: u32,
    util_n: u32,
    util_peak: Option<u8>,
    mem_peak: Option<u64>,
    unreserved: BTreeSet<String>,
}

/// The minutes still open, per GPU.
#[derive(Debug, Default)]
pub struct Meter {
    /// The last sample counted (one sample is read by several passes).
    last: Option<DateTime<Utc>>,
    open: BTreeMap<(DateTime<Utc>, i64), Open>,
    /// When per-minute rows were last pruned.
    pub(super) pruned: Option<DateTime<Utc>>,
}

fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

impl Meter {
    /// Counts the samples taken `at`; a sample already counted is ignored.
    pub fn observe(&mut self, at: DateTime<Utc>, samples: Vec<Sample>) {
        if self.last.is_some_and(|l| at <= l) {
            return;
        }
        self.last = Some(at);
        let minute = minute_of(at);
        for s in samples {
            let o = self
                .open
                .entry((minute, s.resource_id))
                .or_insert_with(|| Open {
                    reservation_id: s.reservation_id,
                    ..Open::default()
                });
            // A new holder within the minute: the minute stays the first's.
            if o.reservation_id != s.reservation_id {
                continue;
            }
            o.samples = o.samples.saturating_add(1);
            if s.used {
                o.used = o.used.saturating_add(1);
            }
            if let Some(u) = s.util_pct {
                o.util_sum += u32::from(u.min(100));
                o.util_n += 1;
                o.util_peak = o.util_peak.max(Some(u.min(100)));
            }
            o.mem_peak = o.mem_peak.max(s.memory_used_mib);
            o.unreserved.extend(s.unreserved);
        }
    }

    /// Takes the minutes that ended by `now`.
    pub fn finished(&mut self, now: DateTime<Utc>) -> Vec<Minute> {
        let current = minute_of(now);
        let open = std::mem::take(&mut self.open);
        let (done, still): (BTreeMap<_, _>, BTreeMap<_, _>) =
            open.into_iter().partition(|((m, _), _)| *m < current);
        self.open = still;
        done.into_iter()
            .map(|((minute, resource_id), o)| Minute {
                resource_id,
                minute,
                reservation_id: o.reservation_id,
                samples: o.samples,
                used_samples: o.used,
                util_mean: (o.util_n > 0)
                    .then(|| i16::try_from(o.util_sum / o.util_n).unwrap_or(100)),
                util_peak: o.util_peak.map(i16::from),
                mem_peak_mib: o.mem_peak.map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
                unreserved: o.unreserved.into_iter().collect(),
            })
            .collect()
    }
}

/// What one trusted sample shows of one GPU: its load and processes, and
/// its holder then (reservation, the holder's Unix user). `None` when the
/// sample cannot tell (a process whose owner the host cannot see).
pub fn sample_of(
    resource_id: i64,
    utilization_pct: Option<u32>,
    memory_used_mib: Option<u64>,
    processes: &[GpuProcess],
    holder: Option<(Uuid, &str)>,
    rules: &ReclaimRules,
) -> Option<Sample> {
    if processes.iter().any(|p| p.unix_user.is_none()) {
        return None;
    }
    let owner = holder.map(|(_, unix)| unix);
    let (mine, others): (Vec<&GpuProcess>, Vec<&GpuProcess>) = processes
        .iter()
        .filter(|p| rules.counts(p))
        .partition(|p| owner.is_some() && p.unix_user.as_deref() == owner);
    Some(Sample {
        resource_id,
        reservation_id: holder.map(|(id, _)| id),
        used: !mine.is_empty(),
        util_pct: utilization_pct.map(|u| u8::try_from(u.min(100)).unwrap_or(100)),
        memory_used_mib,
        unreserved: others.iter().filter_map(|p| p.unix_user.clone()).collect(),
    })
}

/// The meter, shared by the watch passes.
pub type MeterCell = std::sync::Mutex<Meter>;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn sample(resource_id: i64, holder: Option<u128>, used: bool, util: u8) -> Sample {
        Sample {
            resource_id,
            reservation_id: holder.map(Uuid::from_u128),
            used,
            util_pct: Some(util),
            memory_used_mib: Some(u64::from(util) * 10),
            unreserved: BTreeSet::new(),
        }
    }

    #[test]
    fn a_minute_is_used_if_any_sample_saw_the_holder_and_closes_only_when_over() {
        let mut m = Meter::default();
        m.observe(
            at("2026-11-02T10:00:05Z"),
            vec![sample(1, Some(7), false, 0)],
        );
        m.observe(
            at("2026-11-02T10:00:35Z"),
            vec![sample(1, Some(7), true, 80)],
        );
        // The same sample read by a second pass is not counted again.
        m.observe(
            at("2026-11-02T10:00:35Z"),
            vec![sample(1, Some(7), true, 80)],
        );
        assert!(m.finished(at("2026-11-02T10:00:59Z")).is_empty());
        let done = m.finished(at("2026-11-02T10:01:00Z"));
        assert_eq!(done.len(), 1);
        let d = &done[0];
        assert_eq!(d.minute, at("2026-11-02T10:00:00Z"));
        assert_eq!((d.samples, d.used_samples), (2, 1));
        assert_eq!(
            (d.util_mean, d.util_peak, d.mem_peak_mib),
            (Some(40), Some(80), Some(800))
        );
        assert!(m.finished(at("2026-11-02T10:05:00Z")).is_empty());
    }

    #[test]
    fn a_gap_writes_no_minute_and_a_new_holder_waits_for_its_own_minute() {
        let mut m = Meter::default();
        m.observe(
            at("2026-11-02T10:00:05Z"),
            vec![sample(1, Some(7), true, 50)],
        );
        // 10:01 and 10:02: no trusted sample (a gap).
        m.observe(
            at("2026-11-02T10:03:10Z"),
            vec![sample(1, Some(7), false, 0), sample(2, None, false, 0)],
        );
        m.observe(
            at("2026-11-02T10:03:40Z"),
            vec![sample(1, Some(8), true, 90)],
        );
        let done = m.finished(at("2026-11-02T10:04:00Z"));
        let minutes: Vec<_> = done
            .iter()
            .map(|d| {
                (
                    d.minute.format("%H:%M").to_string(),
                    d.resource_id,
                    d.samples,
                )
            })
            .collect();
        assert_eq!(
            minutes,
            [
                ("10:00".into(), 1, 1),
                ("10:03".into(), 1, 1),
                ("10:03".into(), 2, 1)
            ]
        );
        assert_eq!(done[1].reservation_id, Some(Uuid::from_u128(7)));
        assert_eq!(done[1].used_samples, 0);
    }
}
