//! Acting on what the GPUs show, on this daemon's host only (where the
//! telemetry comes from): [`Service::watch`] tells people about processes on
//! GPUs they do not hold, and releases running bookings nobody uses (idle
//! reclaim, off by default).
//!
//! Safeguards: telemetry older than three samples, a GPU missing from the
//! sample, or a process whose owner the host cannot see makes a booking
//! "unknown", which resets its idle time; processes under the memory floor
//! or on the ignore list are not use; a warning always comes first, and
//! `gpures keep` or any qualifying process stops the release.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use gpures_proto::{GpuProcess, NotificationKind, Reservation};
use uuid::Uuid;

use super::booking::{Change, Reason, Which};
use super::enforce::{Intruder, Mode};
use super::notify::{self, short};
use super::status::OVERRUN_LOOKBACK;
use super::{Actor, Entity, Error, Result, Service};
use crate::gpu::{self, HostRecord, StoredGpu};
use crate::store::notifications::New;
use crate::store::{reclaim, reservations, resources, telemetry, users};

/// The Unix user the audit log names for reclaim's releases.
pub const RECLAIM_ACTOR: &str = "gpures-reclaim";

/// `[reclaim]`, in the service's units.
#[derive(Clone, Debug)]
pub struct ReclaimRules {
    pub enabled: bool,
    pub dry_run: bool,
    pub idle: TimeDelta,
    pub startup_grace: TimeDelta,
    pub no_show: TimeDelta,
    pub warn: TimeDelta,
    pub keep: TimeDelta,
    pub memory_floor_mib: u64,
    pub ignore: Vec<String>,
    /// Telemetry older than this is not trusted.
    pub stale_after: TimeDelta,
}

impl Default for ReclaimRules {
    fn default() -> Self {
        ReclaimRules {
            enabled: false,
            dry_run: false,
            idle: TimeDelta::minutes(60),
            startup_grace: TimeDelta::minutes(15),
            no_show: TimeDelta::minutes(30),
            warn: TimeDelta::minutes(15),
            keep: TimeDelta::minutes(240),
            memory_floor_mib: 256,
            ignore: Vec::new(),
            stale_after: TimeDelta::seconds(15),
        }
    }
}

impl ReclaimRules {
    /// Whether a process is real use of a GPU (not a desktop session, a
    /// monitor, or a context under the memory floor).
    pub fn counts(&self, p: &GpuProcess) -> bool {
        let base = p.name.rsplit('/').next().unwrap_or(&p.name);
        !self.ignore.iter().any(|i| i == base || i == &p.name)
            && p.used_memory_mib.is_none_or(|m| m >= self.memory_floor_mib)
    }
}

/// One GPU of this host: its fresh telemetry (if any) and its holder now.
type PerGpu<'a> = (
    gpures_proto::Resource,
    Option<&'a StoredGpu>,
    Option<&'a Reservation>,
);

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchReport {
    pub told: usize,
    pub warned: usize,
    pub released: usize,
    /// Signals sent by enforcement.
    pub signalled: usize,
}

/// What the GPUs of one running booking show about its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Busy,
    Idle,
    /// Stale or missing telemetry, or a process of an unknown owner.
    Unknown,
}

impl Service {
    /// One pass over this host's GPUs: notices of unreserved use, then idle
    /// reclaim when it is on.
    ///
    /// # Errors
    /// Store failures.
    pub async fn watch(&self) -> Result<WatchReport> {
        let now = Utc::now();
        let rules = self.settings().reclaim.clone();
        let (own, gpus, running, ended) = {
            let mut conn = self.store().acquire().await?;
            let own: Option<HostRecord> = telemetry::of_host(&mut conn, self.host()).await?;
            let all = resources::list(&mut conn, false).await?;
            let mine: Vec<_> = all.into_iter().filter(|r| r.host == self.host()).collect();
            let (current, _) = reservations::current_and_next(&mut conn, now, &[]).await?;
            let ended = reservations::recently_ended(&mut conn, now, OVERRUN_LOOKBACK, &[]).await?;
            (own, mine, current, ended)
        };
        let sampled_at = own
            .as_ref()
            .and_then(|o| o.sampled_at)
            .filter(|at| now - *at <= rules.stale_after);
        let fresh = sampled_at.is_some();
        let records: Vec<HostRecord> = own.into_iter().collect();
        let mut owners: Vec<i64> = running.iter().chain(&ended).map(|r| r.user.id).collect();
        owners.sort_unstable();
        owners.dedup();
        let unix_of: HashMap<i64, String> = {
            let mut conn = self.store().acquire().await?;
            users::unix_users(&mut conn, &owners)
                .await?
                .into_iter()
                .collect()
        };
        // Per GPU of this host: its telemetry (when fresh) and its holder.
        let mut per_gpu: Vec<PerGpu<'_>> = Vec::new();
        for resource in gpus {
            let telemetry = if fresh {
                gpu::telemetry_for(&records, &resource)
            } else {
                None
            };
            let holder = running.iter().find(|r| r.resource_id == resource.id);
            per_gpu.push((resource, telemetry, holder));
        }
        if let Err(e) = self
            .meter(sampled_at, &per_gpu, &unix_of, &rules, now)
            .await
        {
            tracing::warn!(error = %e, "cannot store usage minutes (counted as unknown)");
        }
        let enforce = self.settings().enforce.clone();
        let mut report = WatchReport::default();
        if enforce.mode != Mode::Off {
            report.told = self
                .tell_unreserved(&per_gpu, &unix_of, &rules, now)
                .await?;
        }
        let mut holders = HashMap::new();
        let mut intruders = Vec::new();
        for (resource, telemetry, holder) in &per_gpu {
            let holder_unix = holder.and_then(|h| unix_of.get(&h.user.id));
            if let Some(u) = holder_unix {
                holders.insert(resource.id, u.clone());
            }
            let Some(g) = telemetry else { continue };
            for p in &g.telemetry.processes {
                let Some(user) = &p.unix_user else { continue };
                if Some(user) == holder_unix
                    || !rules.counts(p)
                    || exempt(user)
                    || enforce.exempt.iter().any(|e| e == user)
                {
                    continue;
                }
                // Its owner's own booking of this GPU ended lately: left
                // alone for the overrun grace, then unreserved use (also on
                // a GPU nobody holds).
                let overran = ended
                    .iter()
                    .filter(|r| {
                        r.resource_id == resource.id
                            && unix_of.get(&r.user.id).is_some_and(|u| u == user)
                    })
                    .map(|r| r.period.end)
                    .max();
                match overran {
                    Some(end) if now - end < enforce.overrun_grace => continue,
                    None if holder.is_none() && !enforce.unheld => continue,
                    _ => {}
                }
                intruders.push(Intruder {
                    pid: p.pid,
                    name: p.name.clone(),
                    unix_user: user.clone(),
                    resource_id: resource.id,
                    resource_name: resource.name.clone(),
                    holder: holder.map(|h| h.user.display_name.clone()),
                    overran,
                });
            }
        }
        report.signalled = self.enforce(intruders, &holders, now).await?;
        if rules.enabled {
            self.reclaim(&per_gpu, &unix_of, &rules, now, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Adds this pass's sample (when trusted and not counted yet) to the
    /// usage meter and writes the minutes it finished; prunes old minutes
    /// once an hour.
    async fn meter(
        &self,
        sampled_at: Option<DateTime<Utc>>,
        per_gpu: &[PerGpu<'_>],
        unix_of: &HashMap<i64, String>,
        rules: &ReclaimRules,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (finished, prune) = {
            let mut meter = self
                .usage_meter()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(at) = sampled_at {
                let samples = per_gpu
                    .iter()
                    .filter_map(|(resource, telemetry, holder)| {
                        let owner = match holder {
                            // A holder whose Unix user we cannot tell: unknown.
                            Some(h) => Some(unix_of.get(&h.user.id)?.as_str()),
                            None => None,
                        };
                        let gpu = &(*telemetry)?.telemetry;
                        super::usage::sample_of(
                            resource.id,
                            gpu.utilization_pct,
                            gpu.memory_used_mib,
                            &gpu.processes,
                            holder.map(|h| (h.id, owner.unwrap_or_default())),
                            rules,
                        )
                    })
                    .collect();
                meter.observe(at, samples);
            }
            let prune = meter.pruned.is_none_or(|p| now - p >= TimeDelta::hours(1));
            if prune {
                meter.pruned = Some(now);
            }
            (meter.finished(now), prune)
        };
        if finished.is_empty() && !prune {
            return Ok(());
        }
        let mut conn = self.store().acquire().await?;
        crate::store::usage::put(&mut conn, &finished).await?;
        if prune {
            crate::store::usage::prune(&mut conn, now - self.settings().usage_keep).await?;
        }
        Ok(())
    }

    /// Tells the owner of a process on a GPU they do not hold, and the GPU's
    /// holder, once per process and day.
    async fn tell_unreserved(
        &self,
        per_gpu: &[PerGpu<'_>],
        unix_of: &HashMap<i64, String>,
        rules: &ReclaimRules,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let notify_rules = self.settings().notify.clone();
        let day = now.format("%Y-%m-%d");
        let mut out = Vec::new();
        let mut accounts_of: HashMap<String, Vec<users::UserRow>> = HashMap::new();
        let mut conn = self.store().acquire().await?;
        for (resource, telemetry, holder) in per_gpu {
            let Some(g) = telemetry else { continue };
            let holder_unix = holder.and_then(|h| unix_of.get(&h.user.id));
            for p in &g.telemetry.processes {
                let Some(user) = &p.unix_user else { continue };
                if Some(user) == holder_unix || !rules.counts(p) || exempt(user) {
                    continue;
                }
                let what = format!("{} (pid {})", p.name, p.pid);
                let key = format!("{}:{}:{}", g.telemetry.uuid, p.pid, day);
                // One lookup per Unix user per pass, however many processes.
                if !accounts_of.contains_key(user) {
                    let found = users::of_unix_user(&mut conn, user).await?;
                    accounts_of.insert(user.clone(), found);
                }
                let accounts = accounts_of.get(user).map_or(&[][..], Vec::as_slice);
                for a in accounts.iter().filter(|a| !a.disabled) {
                    let (title, body) = match holder {
                        Some(h) => (
                            format!(
                                "You run on {}, which {} holds",
                                resource.name, h.user.display_name
                            ),
                            format!(
                                "{what} runs on {} held by {} until {}: stop it or book a free GPU",
                                resource.name,
                                h.user.display_name,
                                h.period.end.format("%Y-%m-%d %H:%M UTC")
                            ),
                        ),
                        None => (
                            format!("You run on {} without a booking", resource.name),
                            format!(
                                "{what} runs on {}, which nobody booked: gpures adopt {} --for 2h",
                                resource.name, p.pid
                            ),
                        ),
                    };
                    out.push(New {
                        user_id: a.id,
                        kind: NotificationKind::YouRunUnreserved,
                        reservation_id: holder.map(|h| h.id),
                        dedupe: Some(format!("unreserved:{key}")),
                        title,
                        body,
                    });
                }
                if let Some(h) = holder {
                    out.push(New {
                        user_id: h.user.id,
                        kind: NotificationKind::RunsOnYours,
                        reservation_id: Some(h.id),
                        dedupe: Some(format!("runs-on:{}:{key}", h.id)),
                        title: format!("{user} runs on {}, which you hold", resource.name),
                        body: format!("{what} of {user} on {} during your booking", resource.name),
                    });
                }
            }
        }
        drop(conn);
        if out.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store().begin().await?;
        let mut told = 0;
        for new in out {
            if notify::push(&mut tx, &notify_rules, new).await?.is_some() {
                told += 1;
            }
        }
        tx.commit().await?;
        Ok(told)
    }

    /// Warns about, then releases, running bookings of this host whose
    /// owner runs nothing on them.
    async fn reclaim(
        &self,
        per_gpu: &[PerGpu<'_>],
        unix_of: &HashMap<i64, String>,
        rules: &ReclaimRules,
        now: DateTime<Utc>,
        report: &mut WatchReport,
    ) -> Result<()> {
        // Per running booking: what its GPUs on this host show.
        let mut bookings: BTreeMap<Uuid, (Reservation, Vec<String>, Seen)> = BTreeMap::new();
        for (resource, telemetry, holder) in per_gpu {
            let Some(h) = holder else { continue };
            let owner = unix_of.get(&h.user.id);
            let seen = match telemetry {
                None => Seen::Unknown,
                Some(g) if g.telemetry.processes.iter().any(|p| p.unix_user.is_none()) => {
                    Seen::Unknown
                }
                Some(g) => {
                    let busy = g.telemetry.processes.iter().any(|p| {
                        p.unix_user.as_ref() == owner && owner.is_some() && rules.counts(p)
                    });
                    if busy { Seen::Busy } else { Seen::Idle }
                }
            };
            let entry = bookings
                .entry(h.booking_id)
                .or_insert_with(|| ((*h).clone(), Vec::new(), Seen::Idle));
            entry.1.push(resource.name.clone());
            entry.2 = match (entry.2, seen) {
                (Seen::Busy, _) | (_, Seen::Busy) => Seen::Busy,
                (Seen::Unknown, _) | (_, Seen::Unknown) => Seen::Unknown,
                _ => Seen::Idle,
            };
        }
        let ids: Vec<Uuid> = bookings.keys().copied().collect();
        let mut conn = self.store().acquire().await?;
        reclaim::forget_ended(&mut conn).await?;
        let states: HashMap<Uuid, reclaim::State> = reclaim::of(&mut conn, &ids)
            .await?
            .into_iter()
            .map(|s| (s.booking_id, s))
            .collect();
        drop(conn);
        for (booking_id, (first, names, seen)) in bookings {
            let mut s = states
                .get(&booking_id)
                .cloned()
                .unwrap_or_else(|| reclaim::State::new(booking_id));
            let before = s.clone();
            match seen {
                Seen::Busy => {
                    if s.last_busy_at
                        .is_none_or(|t| now - t >= TimeDelta::minutes(1))
                    {
                        s.last_busy_at = Some(now);
                    }
                    s.idle_since = None;
                    s.warned_at = None;
                }
                Seen::Unknown => {
                    s.idle_since = None;
                    s.warned_at = None;
                }
                Seen::Idle => {
                    s.idle_since.get_or_insert(now);
                }
            }
            let kept = s.kept_until.is_some_and(|k| k > now);
            let start = first.period.start;
            let names = names.join(", ");
            if let (Some(idle_since), false) = (s.idle_since, kept) {
                let no_show = s.last_busy_at.is_none();
                let eligible = if no_show {
                    idle_since + rules.no_show
                } else {
                    (idle_since + rules.idle).max(start + rules.startup_grace)
                };
                match s.warned_at {
                    None if now >= eligible => {
                        s.warned_at = Some(now);
                        let release_at = now + rules.warn;
                        let idle_min = (now - idle_since).num_minutes();
                        if rules.dry_run {
                            tracing::info!(booking = %booking_id, gpus = %names, idle_min, "reclaim (dry run): would warn");
                        } else {
                            self.warn_idle(&first, &names, no_show, idle_min, release_at, &s)
                                .await?;
                            report.warned += 1;
                        }
                    }
                    Some(warned) if now >= warned + rules.warn && idle_since <= warned => {
                        let idle_min = (now - idle_since).num_minutes();
                        let why = if no_show {
                            format!(
                                "reclaimed by gpures: no process of its owner in the {idle_min} min since it started ({names})"
                            )
                        } else {
                            format!(
                                "reclaimed by gpures: no process of its owner for {idle_min} min ({names})"
                            )
                        };
                        if rules.dry_run {
                            tracing::info!(booking = %booking_id, gpus = %names, idle_min, "reclaim (dry run): would release");
                            s = reclaim::State::new(booking_id);
                        } else {
                            match self
                                .change_for(
                                    &Actor::HostAdmin {
                                        unix_user: RECLAIM_ACTOR.to_owned(),
                                    },
                                    Which::Booking(booking_id),
                                    Change::Release,
                                    Some(Reason {
                                        text: why,
                                        kind: NotificationKind::Reclaimed,
                                    }),
                                )
                                .await
                            {
                                Ok(_) => {
                                    tracing::info!(booking = %booking_id, gpus = %names, "reclaimed an idle booking");
                                    report.released += 1;
                                }
                                // Ended or changed meanwhile: nothing to take.
                                Err(Error::Invalid { .. } | Error::NotFound(_)) => {}
                                Err(e) => return Err(e),
                            }
                            continue;
                        }
                    }
                    _ => {}
                }
            }
            if s != before {
                let mut conn = self.store().acquire().await?;
                reclaim::save(&mut conn, &s).await?;
            }
        }
        Ok(())
    }

    /// Records the warning and tells the owner, in one transaction.
    async fn warn_idle(
        &self,
        first: &Reservation,
        names: &str,
        no_show: bool,
        idle_min: i64,
        release_at: DateTime<Utc>,
        state: &reclaim::State,
    ) -> Result<()> {
        let id = short(first.booking_id);
        let title = if no_show {
            format!("Your booking of {names} is unused since it started")
        } else {
            format!("Your booking of {names} has been idle for {idle_min} min")
        };
        let body = format!(
            "No process of yours on {names}; it will be released at {} unless you run something \
             on it or keep it: gpures keep {id}",
            release_at.format("%H:%M UTC")
        );
        let mut tx = self.store().begin().await?;
        reclaim::save(&mut tx, state).await?;
        notify::push(
            &mut tx,
            &self.settings().notify,
            New {
                user_id: first.user.id,
                kind: NotificationKind::IdleWarning,
                reservation_id: Some(first.id),
                dedupe: Some(format!(
                    "idle:{}:{}",
                    first.booking_id,
                    state.warned_at.map_or(0, |t| t.timestamp())
                )),
                title,
                body,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Owner or admin: protects a booking from idle reclaim for the host's
    /// keep time (and withdraws a warning). Returns until when.
    ///
    /// # Errors
    /// Unknown booking, someone else's, over or cancelled; store failures.
    pub async fn keep(&self, actor: &Actor, booking_id: Uuid) -> Result<DateTime<Utc>> {
        let now = Utc::now();
        let mut tx = self.store().begin().await?;
        let all = reservations::by_booking(&mut tx, booking_id).await?;
        if all.is_empty() {
            return Err(Error::NotFound(Entity::Booking));
        }
        if all.iter().any(|r| !actor.owns_or_admin(r.user.id)) {
            return Err(Error::Forbidden);
        }
        let live = all
            .iter()
            .any(|r| r.status == gpures_proto::ReservationStatus::Active && r.period.end > now);
        if !live {
            return Err(Error::invalid("booking", "it is over or cancelled"));
        }
        let until = now + self.settings().reclaim.keep;
        let mut s = reclaim::of(&mut tx, &[booking_id])
            .await?
            .pop()
            .unwrap_or_else(|| reclaim::State::new(booking_id));
        s.kept_until = Some(until);
        s.warned_at = None;
        s.idle_since = None;
        reclaim::save(&mut tx, &s).await?;
        let ids: Vec<Uuid> = all.iter().map(|r| r.id).collect();
        crate::store::notify(&mut tx, &crate::store::Changed::Reservations(ids)).await?;
        tx.commit().await?;
        Ok(until)
    }
}

/// Root and system users (uid below 1000, `nobody` aside) are never told
/// or acted on, nor a user this host does not know.
fn exempt(unix_user: &str) -> bool {
    match crate::host::unix::user_by_name(unix_user) {
        // `nobody` (65534) runs what nobody owns: never exempt.
        Some(u) => u.uid < 1000 && u.uid != 65534,
        None => true,
    }
}
