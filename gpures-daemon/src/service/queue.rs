//! The fair queue: members wait for N GPUs of one host ([`Service::enqueue`])
//! and [`Service::grant_queue`] turns requests into reservations starting at
//! once as capacity frees. First come first served: the head request is
//! granted as soon as its GPUs are free; a later request only if its
//! reservation ends before the head could start (backfill that cannot
//! delay the head). A grant locks the request row (only while it still
//! waits) and books in the same transaction, with the request's id as the
//! booking's request id, under one advisory lock for all daemons: exactly
//! one grant per request, however many daemons share the database.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{NotificationKind, QueueEntry, QueueRequest, SlotOption, SlotQuery};
use uuid::Uuid;

use super::booking::{Failed, NewBooking, PolicyMode, insert_booking};
use super::notify::{self, short};
use super::slots::search::Need;
use super::{Actor, Entity, Error, Result, Service, audit_user, validate};
use crate::store::audit::{self, AuditAction, Target};
use crate::store::notifications::New;
use crate::store::queue::{self, DbQueueState, NewRequest, QueueRow};
use crate::store::{self, StoreError};

/// Waiting requests listed and considered for a grant, in queue order.
const QUEUE_MAX: i64 = 200;
/// Waiting requests whose estimated start a listing computes (each is a
/// search).
const ESTIMATES_MAX: usize = 20;
/// How the audit log names the queue when it books for a member.
const QUEUE_ACTOR: &str = "gpures-queue";

/// How one grant attempt ended.
enum Grant {
    Done,
    /// Another daemon granted it, or it was cancelled meanwhile.
    Gone,
    /// The GPUs were taken first: try again on the next change.
    Taken,
    /// Its owner's lab policy refuses it now (a quota frees later).
    Refused,
}

impl Service {
    /// Puts the actor in the queue for `req.gpus` GPUs of one host. A
    /// request that can never be granted (more GPUs than any host has, an
    /// unknown host, longer than the rules allow, a deadline passed) is
    /// refused and nothing is queued. Granted at once if the GPUs are free.
    ///
    /// # Errors
    /// `Invalid` naming the field; store failures.
    pub async fn enqueue(&self, actor: &Actor, req: QueueRequest) -> Result<QueueEntry> {
        let user = actor.account()?.clone();
        let query = SlotQuery {
            gpus: req.gpus,
            length_minutes: req.length_minutes,
            not_before: None,
            host: req.host.clone(),
        };
        let need = self.need(&Actor::Member(user.clone()), &query)?;
        if let Some(until) = req.until
            && until <= Utc::now()
        {
            return Err(Error::invalid("until", "the deadline has already passed"));
        }
        let note = validate::note(&req.note)?;
        // Names what can never be granted (too many GPUs, no such host).
        self.search(&need, 1).await?;
        let mut tx = self.store().begin().await?;
        let new = NewRequest {
            id: req.request_id,
            user_id: user.id,
            gpus: i32::try_from(need.n).unwrap_or(i32::MAX),
            length_minutes: i32::try_from(req.length_minutes).unwrap_or(i32::MAX),
            host: req.host.as_deref(),
            until: req.until,
            note: &note,
        };
        if queue::insert(&mut tx, &new).await? {
            audit_user(&mut tx, actor, AuditAction::QueueEnqueue, user.id).await?;
            store::notify(&mut tx, &store::Changed::Queue).await?;
        }
        let row = queue::get(&mut tx, req.request_id).await?;
        tx.commit().await?;
        if row.user_id != user.id {
            return Err(Error::invalid("request_id", "already used"));
        }
        self.grant_queue().await?;
        let mut conn = self.store().acquire().await?;
        let row = queue::get(&mut conn, row.id).await?;
        let position = if row.state == DbQueueState::Waiting {
            queue::waiting(&mut conn, QUEUE_MAX)
                .await?
                .iter()
                .position(|r| r.id == row.id)
                .and_then(|p| u32::try_from(p + 1).ok())
        } else {
            None
        };
        drop(conn);
        let estimate = match position {
            Some(_) => self.estimate(&row).await,
            None => None,
        };
        Ok(row.entry(position, estimate))
    }

    /// The waiting requests in order, with positions and estimated starts,
    /// then the actor's requests that left the queue in the last day.
    ///
    /// # Errors
    /// Store failures.
    pub async fn queue(&self, actor: &Actor) -> Result<Vec<QueueEntry>> {
        let (waiting, ended) = {
            let mut conn = self.store().acquire().await?;
            let waiting = queue::waiting(&mut conn, QUEUE_MAX).await?;
            let ended = match actor.user() {
                Some(u) => {
                    queue::ended_of(&mut conn, u.id, Utc::now() - TimeDelta::days(1)).await?
                }
                None => vec![],
            };
            (waiting, ended)
        };
        let mut out = Vec::with_capacity(waiting.len() + ended.len());
        for (i, row) in waiting.iter().enumerate() {
            let estimate = if i < ESTIMATES_MAX {
                self.estimate(row).await
            } else {
                None
            };
            out.push(row.entry(u32::try_from(i + 1).ok(), estimate));
        }
        out.extend(ended.iter().map(|r| r.entry(None, None)));
        Ok(out)
    }

    /// Leaves the queue (owner or admin).
    ///
    /// # Errors
    /// `NotFound` for an unknown id or one that no longer waits,
    /// `Forbidden` for someone else's.
    pub async fn cancel_queued(&self, actor: &Actor, id: Uuid) -> Result<QueueEntry> {
        let mut tx = self.store().begin().await?;
        let row = queue::lock_waiting(&mut tx, id)
            .await?
            .ok_or(Error::NotFound(Entity::QueueRequest))?;
        if !actor.owns_or_admin(row.user_id) {
            return Err(Error::Forbidden);
        }
        queue::end(&mut tx, id, DbQueueState::Cancelled, None).await?;
        audit_user(&mut tx, actor, AuditAction::QueueCancel, row.user_id).await?;
        store::notify(&mut tx, &store::Changed::Queue).await?;
        let row = queue::get(&mut tx, id).await?;
        tx.commit().await?;
        Ok(row.entry(None, None))
    }

    /// Grants what the queue allows now: expires requests past their
    /// deadline, then walks the waiting requests in order. The head is
    /// granted when its GPUs are free now; a later request only when its
    /// reservation ends before the head could start. Returns how many were
    /// granted. Called on every change any daemon announces and every few
    /// seconds (reservations also end by the clock).
    ///
    /// # Errors
    /// Store failures.
    pub async fn grant_queue(&self) -> Result<usize> {
        let waiting = {
            let mut conn = self.store().acquire().await?;
            let expired = queue::expire(&mut conn, Utc::now()).await?;
            if !expired.is_empty() {
                store::notify(&mut conn, &store::Changed::Queue).await?;
            }
            queue::waiting(&mut conn, QUEUE_MAX).await?
        };
        let mut granted = 0;
        // When the head could start; `None` until the head is found (a
        // granted head makes the next request the head).
        let mut head_start: Option<DateTime<Utc>> = None;
        for row in waiting {
            let Some(need) = self.need_of(&row, true) else {
                continue;
            };
            let best = match self.search(&need, 1).await {
                Ok(found) => found.into_iter().min_by(|a, b| {
                    a.period
                        .start
                        .cmp(&b.period.start)
                        .then(a.host.cmp(&b.host))
                }),
                // The host lost its GPUs meanwhile: it waits, blocking no one.
                Err(Error::Invalid { .. }) => continue,
                Err(e) => return Err(e),
            };
            let now_free = best.as_ref().filter(|b| b.period.start == need.from);
            if let Some(option) = now_free
                && head_start.is_none_or(|head| option.period.end <= head)
            {
                match self.grant(&row, option).await? {
                    Grant::Done => {
                        granted += 1;
                        tracing::info!(request = %row.id, user_id = row.user_id, "queue request granted");
                        continue;
                    }
                    // Its owner's policy refuses it for now: it waits,
                    // blocking no one.
                    Grant::Gone | Grant::Refused => continue,
                    Grant::Taken => break,
                }
            }
            if head_start.is_none() {
                head_start = Some(
                    best.map(|b| b.period.start)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                );
            }
        }
        Ok(granted)
    }

    /// The search a waiting request stands for: a grant starts this second
    /// (a release ends a reservation at any second), an estimate on a whole
    /// minute.
    fn need_of(&self, row: &QueueRow, grant: bool) -> Option<Need> {
        let now = Utc::now();
        let from = if grant {
            now
        } else {
            now.duration_trunc(TimeDelta::minutes(1)).ok()?
        };
        let length = TimeDelta::minutes(i64::from(row.length_minutes));
        Some(Need {
            n: usize::try_from(row.gpus).ok()?,
            length,
            from,
            latest: now + self.settings().rules.horizon - length,
            host: row.host.clone(),
            whole_minutes: !grant,
        })
    }

    /// The earliest start current bookings allow a waiting request.
    async fn estimate(&self, row: &QueueRow) -> Option<DateTime<Utc>> {
        let need = self.need_of(row, false)?;
        self.search(&need, 1)
            .await
            .ok()?
            .into_iter()
            .map(|o| o.period.start)
            .min()
    }

    /// Books `option` for `row` and marks it granted, in one transaction.
    async fn grant(&self, row: &QueueRow, option: &SlotOption) -> Result<Grant> {
        let mut tx = self.store().begin().await?;
        crate::store::queue::lock_all(&mut tx).await?;
        if queue::lock_waiting(&mut tx, row.id).await?.is_none() {
            return Ok(Grant::Gone);
        }
        let ids: Vec<i64> = option.gpus.iter().map(|g| g.id).collect();
        let new = NewBooking {
            user_id: row.user_id,
            audit_name: QUEUE_ACTOR,
            request_id: row.id,
            resources: &ids,
            period: option.period,
            note: &row.note,
            series_id: None,
            pending: None,
        };
        let booking = match insert_booking(
            &mut tx,
            &self.settings().policy,
            &PolicyMode::Check,
            &new,
        )
        .await
        {
            Ok(b) => b,
            Err(Failed::Abort | Failed::Rule(Error::Conflict(_))) => return Ok(Grant::Taken),
            Err(Failed::Rule(Error::Policy(refusal))) => {
                tracing::info!(request = %row.id, user_id = row.user_id, %refusal, "queue request waits for its owner's policy");
                return Ok(Grant::Refused);
            }
            Err(Failed::Rule(e)) => return Err(e),
        };
        queue::end(
            &mut tx,
            row.id,
            DbQueueState::Granted,
            Some(booking.booking_id),
        )
        .await?;
        let by = audit::By {
            user_id: None,
            unix_user: QUEUE_ACTOR,
        };
        let target = Target {
            user: Some(row.user_id),
            ..Target::default()
        };
        audit::record(&mut tx, by, AuditAction::QueueGrant, target).await?;
        let names: Vec<&str> = booking
            .reservations
            .iter()
            .map(|r| r.resource_name.as_str())
            .collect();
        let granted = New {
            user_id: row.user_id,
            kind: NotificationKind::Granted,
            reservation_id: booking.reservations.first().map(|r| r.id),
            dedupe: Some(format!("granted:{}", row.id)),
            title: format!(
                "Granted from the queue: {} until {}",
                names.join(", "),
                option.period.end.format("%Y-%m-%d %H:%M UTC")
            ),
            body: format!(
                "booking {} · gpures release {} when you are done",
                short(booking.booking_id),
                short(booking.booking_id)
            ),
        };
        notify::push(&mut tx, &self.settings().notify, granted).await?;
        store::notify(&mut tx, &store::Changed::Queue).await?;
        match tx.commit().await {
            Ok(()) => Ok(Grant::Done),
            Err(e) => match StoreError::from(e) {
                StoreError::Retry | StoreError::Overlap => Ok(Grant::Taken),
                e => Err(e.into()),
            },
        }
    }
}
