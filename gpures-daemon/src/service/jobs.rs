//! Jobs of `gpures run --gpus N`: [`Service::attach_job`] ties a running
//! booking to the member's processes on this host; [`Service::job_states`]
//! tells the job watcher which jobs have no process left, and
//! [`Service::end_job`] releases such a booking as its owner would have.
//! A process counts as the job's only with the same pid and start time, so a
//! reused pid is not mistaken for it; a `/proc` that cannot be read means
//! "unknown", never "gone".

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_proto::{
    AdoptRequest, Booking, BookingRequest, JobProcess, Period, ReservationStatus, procfs,
};
use uuid::Uuid;

use super::{Actor, Error, Peer, Result, Service};
use crate::store::jobs::{self, JobRow};
use crate::store::{reservations, resources, telemetry, users};

/// Processes one job may name.
const PROCESSES_MAX: usize = 8;

/// What `/proc` says of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// At least one of its processes runs.
    Alive,
    /// None of them runs (each is absent, or its pid belongs to a later
    /// process).
    Gone,
    /// `/proc` could not be read for one of them: do nothing.
    Unknown,
}

/// Whether process `p` still runs, as far as `/proc` says.
fn liveness(p: JobProcess) -> Liveness {
    match procfs::start_ticks(p.pid) {
        Ok(t) if t == p.start_ticks => Liveness::Alive,
        Ok(_) => Liveness::Gone,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Gone,
        Err(_) => Liveness::Unknown,
    }
}

/// The real uid of `pid`, from `/proc/<pid>/status`.
pub(super) fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Service {
    /// Ties the actor's running booking to `processes`: each must be alive
    /// and the caller's own (the connection's uid), and the booking's GPUs on
    /// this daemon's host.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden` for someone else's booking, `Invalid` for a
    /// booking not running here or a process that is not the caller's.
    pub async fn attach_job(
        &self,
        actor: &Actor,
        peer: &Peer,
        booking_id: Uuid,
        processes: Vec<JobProcess>,
    ) -> Result<()> {
        let user = actor.account()?.clone();
        if processes.is_empty() || processes.len() > PROCESSES_MAX {
            return Err(Error::invalid(
                "processes",
                format!("1 to {PROCESSES_MAX} processes"),
            ));
        }
        for p in &processes {
            if liveness(*p) != Liveness::Alive || uid_of(p.pid) != Some(peer.uid) {
                return Err(Error::invalid(
                    "processes",
                    format!(
                        "pid {} is not a running process of yours on this host",
                        p.pid
                    ),
                ));
            }
        }
        let mut conn = self.store().acquire().await?;
        let rs = reservations::by_booking(&mut conn, booking_id).await?;
        let Some(first) = rs.first() else {
            return Err(Error::NotFound(super::Entity::Booking));
        };
        if first.user.id != user.id {
            return Err(Error::Forbidden);
        }
        let now = Utc::now();
        let running: Vec<i64> = rs
            .iter()
            .filter(|r| r.status == ReservationStatus::Active && r.period.contains(now))
            .map(|r| r.resource_id)
            .collect();
        if running.is_empty() {
            return Err(Error::invalid(
                "booking",
                "nothing of this booking is running",
            ));
        }
        let host = self.host().to_owned();
        let here = resources::list(&mut conn, true)
            .await?
            .into_iter()
            .filter(|r| running.contains(&r.id))
            .all(|r| r.host == host);
        if !here {
            return Err(Error::invalid(
                "booking",
                format!("its GPUs are not on {host}, the host of this daemon"),
            ));
        }
        let pids: Vec<i32> = processes
            .iter()
            .map(|p| i32::try_from(p.pid).unwrap_or(i32::MAX))
            .collect();
        let starts: Vec<i64> = processes
            .iter()
            .map(|p| i64::try_from(p.start_ticks).unwrap_or(i64::MAX))
            .collect();
        jobs::upsert(&mut conn, booking_id, &host, user.id, &pids, &starts).await?;
        Ok(())
    }

    /// The jobs of running bookings on this host and whether their
    /// processes run.
    ///
    /// # Errors
    /// Store failures.
    pub async fn job_states(&self) -> Result<Vec<(JobRow, Liveness)>> {
        let mut conn = self.store().acquire().await?;
        let rows = jobs::running_on(&mut conn, self.host()).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let states: Vec<Liveness> = row
                    .pids
                    .iter()
                    .zip(&row.starts)
                    .map(|(pid, start)| {
                        liveness(JobProcess {
                            pid: u32::try_from(*pid).unwrap_or(0),
                            start_ticks: u64::try_from(*start).unwrap_or(0),
                        })
                    })
                    .collect();
                let state = if states.contains(&Liveness::Alive) {
                    Liveness::Alive
                } else if states.contains(&Liveness::Unknown) {
                    Liveness::Unknown
                } else {
                    Liveness::Gone
                };
                (row, state)
            })
            .collect())
    }

    /// Releases the booking of a job whose processes are gone, audited as
    /// its owner's release (the owner's `gpures run` would have released it
    /// had it not been killed), and forgets the job.
    ///
    /// # Errors
    /// Store failures; a booking that ended meanwhile is not an error.
    pub async fn end_job(&self, row: &JobRow) -> Result<()> {
        let owner = {
            let mut conn = self.store().acquire().await?;
            users::by_id(&mut conn, row.user_id).await?.info()
        };
        match self
            .release_booking(&Actor::signed_in(owner), row.booking_id)
            .await
        {
            Ok(_) | Err(Error::Invalid { .. } | Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let mut conn = self.store().acquire().await?;
        jobs::delete(&mut conn, row.booking_id).await?;
        tracing::info!(booking = %row.booking_id, "released: the job's processes ended");
        Ok(())
    }
}

impl Service {
    /// Ties running processes of the caller to a booking: `req.booking`, or
    /// a new one of the GPUs the processes use in this host's latest fresh
    /// sample, from now for `req.length_minutes`. The booking then ends when
    /// the processes do, as a `gpures run` job's would.
    ///
    /// # Errors
    /// A process that is not the caller's or uses no GPU here, stale
    /// telemetry, GPUs outside the booking, a conflict with another holder.
    pub async fn adopt(&self, actor: &Actor, peer: &Peer, req: AdoptRequest) -> Result<Booking> {
        actor.account()?;
        if req.pids.is_empty() || req.pids.len() > PROCESSES_MAX {
            return Err(Error::invalid(
                "pids",
                format!("1 to {PROCESSES_MAX} processes"),
            ));
        }
        let mut processes = Vec::with_capacity(req.pids.len());
        for &pid in &req.pids {
            let start_ticks = procfs::start_ticks(pid).ok();
            match start_ticks {
                Some(start_ticks) if uid_of(pid) == Some(peer.uid) => {
                    processes.push(JobProcess { pid, start_ticks });
                }
                _ => {
                    return Err(Error::invalid(
                        "pids",
                        format!("pid {pid} is not a running process of yours on this host"),
                    ));
                }
            }
        }
        let now = Utc::now();
        let (gpus, stale) = {
            let mut conn = self.store().acquire().await?;
            let own = telemetry::of_host(&mut conn, self.host()).await?;
            let stale = own
                .as_ref()
                .and_then(|o| o.sampled_at)
                .is_none_or(|at| now - at > self.settings().reclaim.stale_after);
            let records: Vec<_> = own.into_iter().collect();
            let mut gpus = Vec::new();
            for r in resources::list(&mut conn, false).await? {
                if r.host != self.host() {
                    continue;
                }
                if let Some(g) = crate::gpu::telemetry_for(&records, &r)
                    && g.telemetry
                        .processes
                        .iter()
                        .any(|p| req.pids.contains(&p.pid))
                {
                    gpus.push((r.id, r.name.clone(), g.telemetry.processes.clone()));
                }
            }
            (gpus, stale)
        };
        if stale {
            return Err(Error::invalid(
                "pids",
                "this host's GPU telemetry is missing or stale, so which GPUs they use is unknown",
            ));
        }
        for pid in &req.pids {
            if !gpus
                .iter()
                .any(|(_, _, ps)| ps.iter().any(|p| p.pid == *pid))
            {
                return Err(Error::invalid(
                    "pids",
                    format!(
                        "pid {pid} uses no GPU in the latest sample; try again in a few seconds"
                    ),
                ));
            }
        }
        let booking = match req.booking {
            Some(booking_id) => {
                let mut conn = self.store().acquire().await?;
                let rs = reservations::by_booking(&mut conn, booking_id).await?;
                let held: Vec<i64> = rs
                    .iter()
                    .filter(|r| r.status == ReservationStatus::Active && r.period.contains(now))
                    .map(|r| r.resource_id)
                    .collect();
                if let Some((_, name, _)) = gpus.iter().find(|(id, _, _)| !held.contains(id)) {
                    return Err(Error::invalid(
                        "booking",
                        format!("the processes use {name}, which this booking does not hold now"),
                    ));
                }
                Booking {
                    booking_id,
                    reservations: rs,
                }
            }
            None => {
                if req.length_minutes == 0 {
                    return Err(Error::invalid("for", "must be at least 1 minute"));
                }
                // From this second: the GPU may have been released a moment ago.
                let start = now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now);
                let request = BookingRequest {
                    request_id: req.request_id,
                    resources: gpus.iter().map(|(id, _, _)| *id).collect(),
                    period: Period {
                        start,
                        end: start + TimeDelta::minutes(i64::from(req.length_minutes)),
                    },
                    note: format!(
                        "adopted pid {}",
                        req.pids
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.book_checked(actor, request, false, super::booking::PolicyMode::Check)
                    .await?
            }
        };
        // Processes already tied to the booking (a `gpures run`) stay tied.
        let mut conn = self.store().acquire().await?;
        if let Some(job) = jobs::of_booking(&mut conn, booking.booking_id).await? {
            for (pid, start) in job.pids.iter().zip(&job.starts) {
                let p = JobProcess {
                    pid: u32::try_from(*pid).unwrap_or(0),
                    start_ticks: u64::try_from(*start).unwrap_or(0),
                };
                if !processes.contains(&p) && processes.len() < PROCESSES_MAX {
                    processes.push(p);
                }
            }
        }
        drop(conn);
        self.attach_job(actor, peer, booking.booking_id, processes)
            .await?;
        Ok(booking)
    }
}
