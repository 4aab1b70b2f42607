//! Jobs of `gpures run --gpus N`: [`Service::attach_job`] ties a running
//! booking to the member's processes on this host; [`Service::job_states`]
//! tells the job watcher which jobs have no process left, and
//! [`Service::end_job`] releases such a booking as its owner would have.
//! A process counts as the job's only with the same pid and start time, so a
//! reused pid is not mistaken for it; a `/proc` that cannot be read means
//! "unknown", never "gone".

use chrono::Utc;
use gpures_proto::{JobProcess, ReservationStatus, procfs};
use uuid::Uuid;

use super::{Actor, Error, Peer, Result, Service};
use crate::store::jobs::{self, JobRow};
use crate::store::{reservations, resources, users};

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
fn uid_of(pid: u32) -> Option<u32> {
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
