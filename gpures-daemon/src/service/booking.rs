//! Reservations: book, move, cancel, release, check availability, list and
//! draw the timeline.
//!
//! Every change runs in one transaction that locks the affected resource rows
//! in id order first, checks the rules and conflicts, writes the change, an
//! `audit_log` row and a `calendar_outbox` row, and sends `NOTIFY`.
//! Deadlocks and serialization failures are retried here and never reach the
//! user; an overlap caught by the exclusion constraint rather than the lock is
//! retried too, so the next attempt can name the holders.

use std::time::Duration;

use chrono::Utc;
use gpures_proto::{
    Booking, BookingRequest, ChangeKind, ChangeTarget, Cursor, Holder, Lookup, NotificationKind,
    PageRequest, Period, Reservation, ReservationChange, ReservationFilter, ReservationPage,
    ReservationStatus, Timeline, limits,
};
use uuid::Uuid;

use super::{Actor, Entity, Error, Result, Service, audit_by, blocks, policy, validate};
use crate::store::audit::{self, AuditAction, Target};
use crate::store::outbox::{self, Operation};
use crate::store::reservations::{self, NewReservation};
use crate::store::{self, StoreError, resources};

/// How often a transaction that hit a deadlock, a serialization failure or a
/// late overlap is tried again before the caller is told.
const MAX_ATTEMPTS: u32 = 8;

/// What a change applies to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Which {
    One(Uuid),
    Booking(Uuid),
    /// The occurrences of a series that start at or after `from`.
    Series {
        id: Uuid,
        from: chrono::DateTime<Utc>,
    },
}

/// The one reservation a single-reservation change returns.
fn one(mut changed: Vec<Reservation>) -> Result<Reservation> {
    changed.pop().ok_or(Error::NotFound(Entity::Reservation))
}

/// The first `limit` of `rows` (fetched with one extra), no more than
/// about `budget` bytes of them, and where the next page starts.
fn paged(mut rows: Vec<Reservation>, limit: i64, budget: usize) -> ReservationPage {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    // At most `limit` rows, and no more than fit the byte budget (at least
    // one: a single reservation always fits a frame).
    let fit = gpures_proto::framing::fitting(&rows, budget, wire_bytes);
    let keep = limit.min(fit);
    let next = if rows.len() > keep {
        rows.truncate(keep);
        rows.last().map(|r| Cursor {
            start: r.period.start,
            resource_name: r.resource_name.clone(),
            id: r.id,
        })
    } else {
        None
    };
    ReservationPage {
        reservations: rows,
        next,
    }
}

/// About the bytes a reservation takes on the wire: its text, and a
/// generous allowance for the ids, times and tags around it.
fn wire_bytes(r: &Reservation) -> usize {
    let text = [
        Some(&r.resource_name),
        Some(&r.user.email),
        Some(&r.user.display_name),
        Some(&r.note),
        r.change_reason.as_ref(),
        r.pending.as_ref().map(|p| &p.reason),
    ];
    let sync = match &r.sync {
        gpures_proto::SyncState::Failed(error) => error.len(),
        _ => 0,
    };
    256 + sync + text.iter().flatten().map(|s| s.len()).sum::<usize>()
}

/// One change of an existing reservation.
#[derive(Clone, Debug)]
pub(super) enum Change {
    Edit(ReservationChange),
    /// Each reservation to its own period (a series, this and following);
    /// every target must be named.
    EditEach {
        periods: std::collections::BTreeMap<Uuid, Period>,
        note: Option<String>,
    },
    Cancel,
    Release,
}

impl Change {
    /// The period and new note (`None`: kept) this change leaves `current`
    /// with; a cancel or release changes neither here.
    fn leaves(&self, current: &Reservation) -> Result<(Period, Option<&String>)> {
        match self {
            Change::Edit(edit) => Ok((
                Period {
                    start: edit.start.unwrap_or(current.period.start),
                    end: edit.end.unwrap_or(current.period.end),
                },
                edit.note.as_ref(),
            )),
            Change::EditEach { periods, note } => match periods.get(&current.id) {
                Some(period) => Ok((*period, note.as_ref())),
                None => Err(Error::invalid(
                    "periods",
                    "the series changed since it was read: try again",
                )),
            },
            Change::Cancel | Change::Release => Ok((current.period, None)),
        }
    }
}

/// Why someone changed another person's booking: kept on each reservation,
/// and told its owner as a notification of `kind`.
#[derive(Clone, Debug)]
pub(super) struct Reason {
    pub text: String,
    pub kind: NotificationKind,
}

impl Service {
    /// Books every resource of `req` for its period, or none. A retry with the
    /// same request id returns the booking already made.
    ///
    /// # Errors
    /// Rule violations, unknown or inactive resources, `Conflict` with the
    /// holders, store failures.
    pub async fn create_booking(&self, actor: &Actor, req: BookingRequest) -> Result<Booking> {
        self.book_checked(actor, req, true, PolicyMode::Check).await
    }

    /// Books past lab policy (admins), with `reason` kept in the audit log.
    ///
    /// # Errors
    /// Not allowed, an empty reason, and as [`Self::create_booking`].
    pub async fn book_override(
        &self,
        actor: &Actor,
        req: BookingRequest,
        reason: &str,
    ) -> Result<Booking> {
        actor.require_admin()?;
        let reason = validate::reason(reason)?;
        self.book_checked(actor, req, true, PolicyMode::Override(reason))
            .await
    }

    /// [`Self::create_booking`]; `sent`: the period came from the client
    /// (whole minutes), else the daemon chose it (from this second).
    pub(super) async fn book_checked(
        &self,
        actor: &Actor,
        req: BookingRequest,
        sent: bool,
        policy: PolicyMode,
    ) -> Result<Booking> {
        let user = actor.account()?.clone();
        let resources = validate::booking_resources(&req.resources)?;
        validate::booking_period(
            &self.settings().rules,
            req.period,
            Utc::now(),
            sent,
            sent,
            actor.is_admin(),
        )?;
        let clean = BookingRequest {
            request_id: req.request_id,
            resources,
            period: req.period,
            note: validate::note(&req.note)?,
        };
        let svc = self.clone();
        let name = actor.audit_name();
        self.transaction(async move {
            svc.retrying(&clean.resources, clean.period, &[], || {
                svc.book_once(&user, &name, &clean, &policy)
            })
            .await
        })
        .await
    }

    /// One attempt at booking `req` (already validated).
    async fn book_once(
        &self,
        user: &gpures_proto::UserInfo,
        audit_name: &str,
        req: &BookingRequest,
        policy: &PolicyMode,
    ) -> Attempt<Booking> {
        let mut tx = self.store().begin().await?;
        let new = NewBooking {
            user_id: user.id,
            audit_name,
            request_id: req.request_id,
            resources: &req.resources,
            period: req.period,
            note: &req.note,
            series_id: None,
            pending: match policy {
                PolicyMode::Request { reason, until } => Some((*until, reason.as_str())),
                _ => None,
            },
        };
        let booking = insert_booking(&mut tx, &self.settings().policy, policy, &new).await?;
        tx.commit().await?;
        Ok(booking)
    }

    /// Moves, shortens, extends or re-notes a reservation (owner or admin).
    ///
    /// # Errors
    /// Not found, not allowed, already over, rule violations, `Conflict`.
    pub async fn update_reservation(
        &self,
        actor: &Actor,
        id: Uuid,
        change: ReservationChange,
    ) -> Result<Reservation> {
        one(self
            .change(actor, Which::One(id), Change::Edit(change))
            .await?)
    }

    /// Cancels a reservation (owner or admin); it stays in history.
    ///
    /// # Errors
    /// Not found, not allowed, already over or cancelled.
    pub async fn cancel_reservation(&self, actor: &Actor, id: Uuid) -> Result<Reservation> {
        one(self.change(actor, Which::One(id), Change::Cancel).await?)
    }

    /// Ends a running reservation now (owner or admin).
    ///
    /// # Errors
    /// Not found, not allowed, not running.
    pub async fn release_now(&self, actor: &Actor, id: Uuid) -> Result<Reservation> {
        one(self.change(actor, Which::One(id), Change::Release).await?)
    }

    /// Moves, extends or re-notes every active reservation of a booking that
    /// is not over yet, as one unit (owner or admin).
    ///
    /// # Errors
    /// Not found, not allowed, nothing left to change, rule violations,
    /// `Conflict` (with holders outside the booking).
    pub async fn update_booking(
        &self,
        actor: &Actor,
        booking_id: Uuid,
        change: ReservationChange,
    ) -> Result<Vec<Reservation>> {
        self.change(actor, Which::Booking(booking_id), Change::Edit(change))
            .await
    }

    /// Cancels every active reservation of a booking that is not over yet.
    ///
    /// # Errors
    /// Not found, not allowed, nothing left to cancel.
    pub async fn cancel_booking(
        &self,
        actor: &Actor,
        booking_id: Uuid,
    ) -> Result<Vec<Reservation>> {
        self.change(actor, Which::Booking(booking_id), Change::Cancel)
            .await
    }

    /// Ends every running reservation of a booking now.
    ///
    /// # Errors
    /// Not found, not allowed, nothing running.
    pub async fn release_booking(
        &self,
        actor: &Actor,
        booking_id: Uuid,
    ) -> Result<Vec<Reservation>> {
        self.change(actor, Which::Booking(booking_id), Change::Release)
            .await
    }

    /// Edits, cancels or releases with `reason`, kept on each reservation
    /// and shown to its owner (the way an admin changes someone else's).
    ///
    /// # Errors
    /// As the change without a reason; an invalid reason.
    pub async fn change_with_reason(
        &self,
        actor: &Actor,
        target: ChangeTarget,
        kind: ChangeKind,
        reason: &str,
    ) -> Result<Vec<Reservation>> {
        let reason = validate::reason(reason)?;
        let which = match target {
            ChangeTarget::Reservation(id) => Which::One(id),
            ChangeTarget::Booking(id) => Which::Booking(id),
        };
        let change = match kind {
            ChangeKind::Edit(e) => Change::Edit(e),
            ChangeKind::Cancel => Change::Cancel,
            ChangeKind::Release => Change::Release,
        };
        let reason = Reason {
            text: reason,
            kind: NotificationKind::AdminChanged,
        };
        self.change_for(actor, which, change, Some(reason)).await
    }

    async fn change(
        &self,
        actor: &Actor,
        which: Which,
        change: Change,
    ) -> Result<Vec<Reservation>> {
        self.change_for(actor, which, change, None).await
    }

    /// A change; one of someone else's reservations needs a `reason`.
    pub(super) async fn change_for(
        &self,
        actor: &Actor,
        which: Which,
        change: Change,
        reason: Option<Reason>,
    ) -> Result<Vec<Reservation>> {
        let before = {
            let mut conn = self.store().acquire().await?;
            match which {
                Which::One(id) => vec![
                    reservations::get(&mut conn, id)
                        .await
                        .map_err(Error::not_found(Entity::Reservation))?,
                ],
                Which::Booking(id) => {
                    let all = reservations::by_booking(&mut conn, id).await?;
                    if all.is_empty() {
                        return Err(Error::NotFound(Entity::Booking));
                    }
                    all
                }
                Which::Series { id, from } => {
                    let all = reservations::by_series(&mut conn, id, from).await?;
                    if all.is_empty() {
                        return Err(Error::NotFound(Entity::Series));
                    }
                    all
                }
            }
        };
        if before.iter().any(|r| !actor.owns_or_admin(r.user.id)) {
            return Err(Error::Forbidden);
        }
        let someone_elses = before
            .iter()
            .any(|r| actor.user().map(|u| u.id) != Some(r.user.id));
        if someone_elses && reason.is_none() {
            return Err(Error::invalid(
                "reason",
                "changing someone else's reservation needs a reason, which its owner is shown \
                 (gpures cancel|edit|release|extend ID --reason TEXT)",
            ));
        }
        let mut resource_ids: Vec<i64> = before.iter().map(|r| r.resource_id).collect();
        resource_ids.sort_unstable();
        resource_ids.dedup();
        let ids: Vec<Uuid> = before.iter().map(|r| r.id).collect();
        let period = match &change {
            Change::Edit(e) => Period {
                start: e.start.unwrap_or(before[0].period.start),
                end: e.end.unwrap_or(before[0].period.end),
            },
            // Who holds anything in the whole span, if the edit keeps colliding.
            Change::EditEach { periods, .. } => Period {
                start: periods
                    .values()
                    .map(|p| p.start)
                    .min()
                    .unwrap_or(before[0].period.start),
                end: periods
                    .values()
                    .map(|p| p.end)
                    .max()
                    .unwrap_or(before[0].period.end),
            },
            _ => before[0].period,
        };
        if let Change::EditEach { periods, .. } = &change {
            if let Some(stranger) = periods
                .keys()
                .find(|id| !before.iter().any(|r| r.id == **id))
            {
                return Err(Error::invalid(
                    "periods",
                    format!(
                        "reservation {stranger} is not an occurrence of this series from that time"
                    ),
                ));
            }
            let mut moved: Vec<(i64, Period)> = before
                .iter()
                .filter_map(|r| periods.get(&r.id).map(|p| (r.resource_id, *p)))
                .collect();
            moved.sort_by_key(|(resource, p)| (*resource, p.start));
            if moved
                .windows(2)
                .any(|w| w[0].0 == w[1].0 && w[1].1.start < w[0].1.end)
            {
                return Err(Error::invalid(
                    "periods",
                    "the occurrences would overlap each other",
                ));
            }
        }
        let whole_booking = matches!(which, Which::Booking(_) | Which::Series { .. });
        // An admin changing someone else's booking gives a reason instead.
        let editing = matches!(change, Change::Edit(_) | Change::EditEach { .. });
        let policed = editing && !someone_elses;
        let owner = policed.then_some(before[0].user.id);
        let (svc, actor) = (self.clone(), actor.clone());
        self.transaction(async move {
            svc.retrying(&resource_ids, period, &ids, || {
                svc.change_once(
                    &actor,
                    owner,
                    &resource_ids,
                    &ids,
                    whole_booking,
                    change.clone(),
                    reason.as_ref(),
                )
            })
            .await
        })
        .await
    }

    /// One attempt at changing the reservations `ids` (on `resource_ids`).
    /// For a whole booking, reservations already cancelled or over are left
    /// alone (and for a release, those not started); for one reservation
    /// they are an error. An edit for `owner` passes lab policy.
    #[allow(clippy::too_many_arguments)]
    async fn change_once(
        &self,
        actor: &Actor,
        owner: Option<i64>,
        resource_ids: &[i64],
        ids: &[Uuid],
        whole_booking: bool,
        change: Change,
        why: Option<&Reason>,
    ) -> Attempt<Vec<Reservation>> {
        let reason = why.map(|r| r.text.as_str());
        let now = Utc::now();
        // Members never change the past; an admin may correct it, saying why.
        let past_fix = actor.is_admin() && why.is_some();
        let mut tx = self.store().begin().await?;
        let limits = match owner {
            Some(owner) => policy::lock_member(&mut tx, &self.settings().policy, owner).await?,
            None => Vec::new(),
        };
        let hosts: std::collections::BTreeMap<i64, String> = resources::lock(&mut tx, resource_ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r.host))
            .collect();
        let mut targets = Vec::with_capacity(ids.len());
        for id in ids {
            reservations::lock(&mut tx, *id).await?;
            let current = reservations::get(&mut tx, *id).await?;
            let refusal = if current.status != ReservationStatus::Active {
                Some("it is cancelled")
            } else if current.period.end <= now && (!past_fix || matches!(change, Change::Release))
            {
                Some(if actor.is_admin() {
                    "it is already over: an admin may cancel or edit it with --reason"
                } else {
                    "it is already over and cannot be changed"
                })
            } else if matches!(change, Change::Release) && current.period.start >= now {
                Some("it has not started yet: cancel it instead")
            } else {
                None
            };
            match refusal {
                Some(_) if whole_booking => {}
                Some(reason) => return Err(Error::invalid("reservation", reason).into()),
                None => targets.push(current),
            }
        }
        if let Change::EditEach { periods, .. } = &change {
            // One at a time in the order that never lets two occurrences
            // meet on the way (the exclusion constraint is not deferred):
            // the latest first when they move later.
            targets.sort_by_key(|t| t.period.start);
            if targets
                .iter()
                .any(|t| periods.get(&t.id).is_some_and(|p| p.start > t.period.start))
            {
                targets.reverse();
            }
        }
        if targets.is_empty() {
            let reason = match change {
                Change::Release => "nothing of this booking is running: cancel it instead",
                _ => "every reservation of this booking is cancelled or over",
            };
            return Err(Error::invalid("booking", reason).into());
        }
        let name = actor.audit_name();
        let mut after = Vec::with_capacity(targets.len());
        // What an edit makes of every target, and whether any grows.
        let mut proposed = Vec::new();
        let mut grows = false;
        for current in &targets {
            let id = current.id;
            let action = match &change {
                Change::Edit(_) | Change::EditEach { .. } => {
                    let (period, new_note) = change.leaves(current)?;
                    validate::booking_period(
                        &self.settings().rules,
                        period,
                        now,
                        period.start != current.period.start,
                        period.end != current.period.end,
                        actor.is_admin(),
                    )?;
                    if period.end <= now && !past_fix {
                        return Err(Error::invalid("end", "must be in the future").into());
                    }
                    let note = match new_note {
                        Some(n) => validate::note(n)?,
                        None => current.note.clone(),
                    };
                    let holders =
                        reservations::holders(&mut tx, &[current.resource_id], period, ids).await?;
                    if !holders.is_empty() {
                        return Err(Error::Conflict(holders).into());
                    }
                    if period.start < current.period.start || period.end > current.period.end {
                        blocks::check(&mut tx, &[current.resource_id], period).await?;
                    }
                    reservations::set_period_and_note(&mut tx, id, period, &note).await?;
                    outbox::enqueue(&mut tx, id, Operation::Upsert).await?;
                    grows |= period.start < current.period.start || period.end > current.period.end;
                    proposed.push(policy::Proposed {
                        booking: Some(current.booking_id),
                        host: hosts.get(&current.resource_id).cloned().unwrap_or_default(),
                        period,
                    });
                    AuditAction::ReservationUpdate
                }
                Change::Cancel => {
                    reservations::set_cancelled(&mut tx, id).await?;
                    outbox::enqueue(&mut tx, id, Operation::Delete).await?;
                    AuditAction::ReservationCancel
                }
                Change::Release => {
                    let reclaimed = why.is_some_and(|w| w.kind == NotificationKind::Reclaimed);
                    reservations::set_released(&mut tx, id, now, reclaimed).await?;
                    outbox::enqueue(&mut tx, id, Operation::Upsert).await?;
                    AuditAction::ReservationRelease
                }
            };
            let target = Target {
                reservation: Some(id),
                resource: Some(current.resource_id),
                user: None,
            };
            if let Some(reason) = reason {
                reservations::set_change_reason(&mut tx, id, reason).await?;
            }
            audit::record_with(&mut tx, audit_by(actor, &name), action, target, reason).await?;
            after.push(id);
        }
        if let Some(owner) = owner
            && grows
        {
            // Only a change that moves or grows a reservation is checked: a
            // member over a limit (the rule came later) may still shorten.
            let ids: Vec<Uuid> = targets.iter().map(|t| t.id).collect();
            policy::check(&mut tx, &limits, owner, &proposed, &ids, false).await?;
        }
        store::notify(&mut tx, &store::Changed::Reservations(after.clone())).await?;
        let mut changed = Vec::with_capacity(after.len());
        for id in after {
            changed.push(reservations::get(&mut tx, id).await?);
        }
        if let Some(why) = why {
            self.tell_owners(&mut tx, actor, &change, why, &changed)
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Tells each owner (but the actor) what was done to their booking and
    /// why, once per booking, in the change's transaction.
    async fn tell_owners(
        &self,
        tx: &mut sqlx::PgConnection,
        actor: &Actor,
        change: &Change,
        why: &Reason,
        changed: &[Reservation],
    ) -> Result<()> {
        let verb = match change {
            Change::Edit(_) | Change::EditEach { .. } => "changed",
            Change::Cancel => "cancelled",
            Change::Release => "ended",
        };
        let by = match why.kind {
            NotificationKind::Reclaimed => "gpures".to_owned(),
            _ => actor.audit_name(),
        };
        let mut seen = std::collections::BTreeMap::<(i64, Uuid), Vec<&Reservation>>::new();
        for r in changed {
            if actor.user().map(|u| u.id) != Some(r.user.id) {
                seen.entry((r.user.id, r.booking_id)).or_default().push(r);
            }
        }
        for ((user_id, booking_id), rs) in seen {
            let names: Vec<&str> = rs.iter().map(|r| r.resource_name.as_str()).collect();
            let names = names.join(", ");
            let title = match why.kind {
                NotificationKind::Reclaimed => {
                    format!("Your booking of {names} was released for idleness")
                }
                _ => format!("{by} {verb} your booking of {names}"),
            };
            let new = crate::store::notifications::New {
                user_id,
                kind: why.kind,
                reservation_id: Some(rs[0].id),
                dedupe: None,
                title,
                body: format!(
                    "{} · booking {}",
                    why.text,
                    super::notify::short(booking_id)
                ),
            };
            super::notify::push(tx, &self.settings().notify, new).await?;
        }
        Ok(())
    }

    /// Who holds any of `resources` during `period` (besides `ignore`).
    ///
    /// # Errors
    /// Too many resources, an empty period, store failures.
    pub async fn check_availability(
        &self,
        _actor: &Actor,
        resource_ids: &[i64],
        period: Period,
        ignore: Option<Uuid>,
    ) -> Result<Vec<Holder>> {
        validate::resource_count(resource_ids.len())?;
        validate::nonempty_period(&period)?;
        let mut conn = self.store().acquire().await?;
        let ignore: Vec<Uuid> = ignore.into_iter().collect();
        Ok(reservations::holders(&mut conn, resource_ids, period, &ignore).await?)
    }

    /// [`Self::check_availability`], plus the first lab rule the actor's own
    /// booking of it (or change of `ignore`, if that grows it) would break.
    /// Reads only: the booking itself checks again under the lock.
    ///
    /// # Errors
    /// As [`Self::check_availability`]; an unknown `ignore`.
    pub async fn preview_booking(
        &self,
        actor: &Actor,
        resource_ids: &[i64],
        period: Period,
        ignore: Option<Uuid>,
    ) -> Result<gpures_proto::BookingPreview> {
        validate::resource_count(resource_ids.len())?;
        validate::nonempty_period(&period)?;
        let mut conn = self.store().acquire().await?;
        let ignored: Vec<Uuid> = ignore.into_iter().collect();
        let holders = reservations::holders(&mut conn, resource_ids, period, &ignored).await?;
        let current = match ignore {
            Some(id) => Some(
                reservations::get(&mut conn, id)
                    .await
                    .map_err(Error::not_found(Entity::Reservation))?,
            ),
            None => None,
        };
        // A change is checked only where it moves or grows the reservation.
        let grows = current
            .as_ref()
            .is_none_or(|c| period.start < c.period.start || period.end > c.period.end);
        let mut preview = gpures_proto::BookingPreview {
            holders,
            ..Default::default()
        };
        if !grows {
            return Ok(preview);
        }
        preview.blocks = crate::store::blocks::overlapping(&mut conn, resource_ids, period).await?;
        let Some(user) = actor.user() else {
            return Ok(preview);
        };
        if current.as_ref().is_some_and(|c| c.user.id != user.id) {
            return Ok(preview);
        }
        let proposed: Vec<policy::Proposed> = crate::store::policy::hosts(&mut conn, resource_ids)
            .await?
            .into_iter()
            .map(|(_, host)| policy::Proposed {
                booking: current.as_ref().map(|c| c.booking_id),
                host,
                period,
            })
            .collect();
        preview.refusal = policy::preview(
            &mut conn,
            &self.settings().policy,
            user.id,
            &proposed,
            &ignored,
            current.is_none(),
        )
        .await?;
        Ok(preview)
    }

    /// One page of the reservations matching `filter`.
    ///
    /// # Errors
    /// An invalid filter or window, store failures.
    pub async fn list_reservations(
        &self,
        _actor: &Actor,
        filter: &ReservationFilter,
        page: &PageRequest,
    ) -> Result<ReservationPage> {
        if let Some(window) = &filter.window {
            validate::window(window)?;
        }
        if let Some(email) = &filter.user_email {
            validate::lookup_text("user_email", email)?;
        }
        validate::filter_resources(&filter.resources)?;
        validate::cursor(page.after.as_ref())?;
        let limit = validate::page_limit(page.limit);
        let mut conn = self.store().acquire().await?;
        let rows = reservations::page(&mut conn, filter, page.after.as_ref(), limit + 1).await?;
        Ok(paged(rows, limit, limits::PAGE_BYTES_MAX))
    }

    /// The active resources (first page only) and one page of the active
    /// reservations in `window`.
    ///
    /// # Errors
    /// An invalid window, store failures.
    pub async fn timeline(
        &self,
        _actor: &Actor,
        window: Period,
        page: &PageRequest,
    ) -> Result<Timeline> {
        validate::window(&window)?;
        validate::cursor(page.after.as_ref())?;
        // The first page also carries the resources, blocks and usage.
        let limit = if page.after.is_none() {
            validate::page_limit(page.limit)
        } else {
            validate::page_limit_up_to(page.limit, limits::TIMELINE_PAGE_MAX)
        };
        let mut conn = self.store().acquire().await?;
        let (resources, blocks, usage) = if page.after.is_none() {
            (
                resources::list(&mut conn, false).await?,
                crate::store::blocks::in_window(&mut conn, window).await?,
                usage_spans(&mut conn, window).await?,
            )
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        let rows =
            reservations::active_page(&mut conn, window, page.after.as_ref(), limit + 1).await?;
        // The first page's resources, blocks and usage share its frame.
        let extras = gpures_proto::framing::encoded_len(&resources)
            .saturating_add(gpures_proto::framing::encoded_len(&blocks))
            .saturating_add(gpures_proto::framing::encoded_len(&usage));
        let budget = limits::PAGE_BYTES_MAX
            .saturating_sub(extras)
            .max(limits::PAGE_BYTES_MAX / 8);
        let ReservationPage { reservations, next } = paged(rows, limit, budget);
        Ok(Timeline {
            window,
            resources,
            reservations,
            next,
            blocks,
            usage,
        })
    }

    /// Reservations by full id, id (or booking id) prefix, or booking id:
    /// index lookups, never a scan of history.
    ///
    /// # Errors
    /// A prefix that is too short or not hex, too many matches, store failures.
    pub async fn find_reservations(
        &self,
        _actor: &Actor,
        lookup: &Lookup,
    ) -> Result<Vec<Reservation>> {
        let mut conn = self.store().acquire().await?;
        match lookup {
            Lookup::Id(id) => match reservations::get(&mut conn, *id).await {
                Ok(r) => Ok(vec![r]),
                Err(StoreError::NotFound) => Ok(vec![]),
                Err(e) => Err(e.into()),
            },
            Lookup::Booking(id) => Ok(reservations::by_booking(&mut conn, *id).await?),
            Lookup::Series(id) => {
                // Before any booking (PostgreSQL cannot store `MIN_UTC`).
                let from = chrono::DateTime::<Utc>::UNIX_EPOCH;
                let mut all = reservations::by_series(&mut conn, *id, from).await?;
                all.retain(|r| r.status == ReservationStatus::Active);
                Ok(all)
            }
            Lookup::Prefix(prefix) => {
                let (lo, hi) = validate::id_prefix(prefix)?;
                let max = limits::LOOKUP_MAX;
                let found = reservations::by_id_range(
                    &mut conn,
                    lo,
                    hi,
                    i64::try_from(max + 1).unwrap_or(i64::MAX),
                )
                .await?;
                if found.len() > max {
                    return Err(Error::invalid(
                        "prefix",
                        format!("more than {max} reservations match: give more digits"),
                    ));
                }
                Ok(found)
            }
        }
    }

    /// Runs `attempt` until it does not fail with a retryable abort. When an
    /// overlap outlives every attempt, the caller is told who holds the slot
    /// (`resource_ids` over `period`, besides `ignore`); if nobody does any
    /// more, the database is reported as too busy.
    pub(super) async fn retrying<T, F, Fut>(
        &self,
        resource_ids: &[i64],
        period: Period,
        ignore: &[Uuid],
        attempt: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        for tries in 1..MAX_ATTEMPTS {
            match attempt().await {
                Ok(done) => return Ok(done),
                Err(Failed::Rule(e)) => return Err(e),
                Err(Failed::Abort) => {}
            }
            let jitter = rand::random::<u64>() % 20;
            tokio::time::sleep(Duration::from_millis(5 * u64::from(tries) + jitter)).await;
        }
        match attempt().await {
            Ok(done) => Ok(done),
            Err(Failed::Rule(e)) => Err(e),
            Err(Failed::Abort) => {
                let mut conn = self.store().acquire().await?;
                let holders =
                    reservations::holders(&mut conn, resource_ids, period, ignore).await?;
                if holders.is_empty() {
                    Err(Error::Unavailable(
                        "the booking kept colliding with other transactions".into(),
                    ))
                } else {
                    Err(Error::Conflict(holders))
                }
            }
        }
    }
}

/// One booking to make: whose, its request id, what, when.
#[derive(Clone, Copy, Debug)]
pub(super) struct NewBooking<'a> {
    pub user_id: i64,
    pub audit_name: &'a str,
    pub request_id: Uuid,
    pub resources: &'a [i64],
    pub period: Period,
    pub note: &'a str,
    /// The recurring series it is an occurrence of.
    pub series_id: Option<Uuid>,
    /// Waiting for an admin until then (a request past lab policy).
    pub pending: Option<(chrono::DateTime<Utc>, &'a str)>,
}

/// Makes `new` in the caller's transaction: locks the member (and reads the
/// rules that apply to them), returns the booking `request_id` already made
/// if there is one, locks the resources in id order, refuses disabled
/// resources, taken slots, maintenance blocks and (`mode`) what lab policy
/// forbids, and writes the reservations with their outbox and audit rows
/// and the NOTIFY. The caller
/// commits (a queue grant writes its request's state in the same
/// transaction).
pub(super) async fn insert_booking(
    tx: &mut sqlx::PgConnection,
    defaults: &[gpures_proto::Policy],
    mode: &PolicyMode,
    new: &NewBooking<'_>,
) -> Attempt<Booking> {
    let NewBooking {
        user_id,
        audit_name,
        request_id,
        resources: resource_ids,
        period,
        note,
        series_id,
        pending,
    } = *new;
    // The member first, then the resources: the one lock order.
    let limits = policy::lock_member(tx, defaults, user_id).await?;
    // The common case in one round trip: no rule of lab policy to check
    // (a rule is checked before anything is written, which a series that
    // skips refused occurrences relies on) and no override to audit.
    let checked = matches!(mode, PolicyMode::Check) && !limits.is_empty();
    if !checked && !matches!(mode, PolicyMode::Override(_)) {
        let booking_id = Uuid::new_v4();
        let ids: Vec<Uuid> = resource_ids.iter().map(|_| Uuid::new_v4()).collect();
        let announce = store::Changed::Reservations(ids.clone()).payload();
        let rows = reservations::NewBookingRows {
            booking_id,
            request_id,
            user_id,
            unix_user: audit_name,
            ids: &ids,
            resources: resource_ids,
            period,
            note,
            series_id,
            pending,
            announce: &announce,
        };
        if reservations::book(tx, &rows).await? {
            let reservations = reservations::by_ids(tx, &ids).await?;
            return Ok(Booking {
                booking_id,
                reservations,
            });
        }
    }
    let existing = reservations::by_request(tx, user_id, request_id).await?;
    if let Some(first) = existing.first() {
        // A retry of a booking that already happened: give it back.
        return Ok(Booking {
            booking_id: first.booking_id,
            reservations: existing,
        });
    }
    let locked = resources::lock(tx, resource_ids).await?;
    if locked.len() != resource_ids.len() {
        return Err(Error::NotFound(Entity::Resource).into());
    }
    if let Some(inactive) = locked.iter().find(|r| !r.active) {
        return Err(Error::invalid("resources", format!("{} is disabled", inactive.name)).into());
    }
    let mut holders = reservations::holders(tx, resource_ids, period, &[]).await?;
    // A booking from now (its minute, a moment in the past) meets what was
    // released since (a release ends on the second, a booking starts on the
    // minute): it starts where the last of those ended instead of being
    // refused, so that `gpures run` right after a release gets the GPUs.
    let mut period = period;
    let now = Utc::now();
    if !holders.is_empty()
        && period.start <= now
        && let Some(ended) = holders
            .iter()
            .map(|h| h.period.end)
            .max()
            .filter(|end| *end <= now && *end < period.end)
    {
        period.start = ended;
        holders = reservations::holders(tx, resource_ids, period, &[]).await?;
    }
    if !holders.is_empty() {
        return Err(Error::Conflict(holders).into());
    }
    blocks::check(tx, resource_ids, period).await?;
    if let PolicyMode::Check = mode {
        let proposed: Vec<policy::Proposed> = locked
            .iter()
            .map(|r| policy::Proposed {
                booking: None,
                host: r.host.clone(),
                period,
            })
            .collect();
        policy::check(tx, &limits, user_id, &proposed, &[], true).await?;
    }
    let booking_id = Uuid::new_v4();
    let by = audit::By {
        user_id: Some(user_id),
        unix_user: audit_name,
    };
    let mut ids = Vec::with_capacity(resource_ids.len());
    for resource_id in resource_ids {
        let id = Uuid::new_v4();
        let row = NewReservation {
            id,
            booking_id,
            request_id,
            user_id,
            resource_id: *resource_id,
            period,
            note,
            series_id,
            pending,
        };
        reservations::insert(tx, &row).await?;
        outbox::enqueue(tx, id, Operation::Upsert).await?;
        let target = Target {
            reservation: Some(id),
            resource: Some(*resource_id),
            user: None,
        };
        audit::record(tx, by, AuditAction::ReservationCreate, target).await?;
        if let PolicyMode::Override(reason) = mode {
            audit::record_with(
                tx,
                by,
                AuditAction::ReservationPolicyOverride,
                target,
                Some(reason),
            )
            .await?;
        }
        ids.push(id);
    }
    store::notify(tx, &store::Changed::Reservations(ids.clone())).await?;
    let mut booked = Vec::with_capacity(ids.len());
    for id in ids {
        booked.push(reservations::get(tx, id).await?);
    }
    Ok(Booking {
        booking_id,
        reservations: booked,
    })
}

/// Whether a booking passes lab policy.
#[derive(Clone, Debug)]
pub(super) enum PolicyMode {
    Check,
    /// An admin books past it; the reason is audited.
    Override(String),
    /// A member asks an admin to allow it: booked pending until `until`.
    Request {
        reason: String,
        until: chrono::DateTime<Utc>,
    },
}

/// How one attempt of a writing transaction ended, when it did not succeed.
pub(super) enum Failed {
    /// A rule or a lasting failure: the caller is told.
    Rule(Error),
    /// A deadlock, a serialization failure, or an overlap caught by the
    /// exclusion constraint instead of the lock: worth another attempt.
    Abort,
}

pub(super) type Attempt<T> = std::result::Result<T, Failed>;

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Rule(e)
    }
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Retry | StoreError::Overlap => Failed::Abort,
            e => Failed::Rule(e.into()),
        }
    }
}

impl From<sqlx::Error> for Failed {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// What the held GPUs did in the past part of `window` (see
/// [`gpures_proto::UsageSpan`]).
async fn usage_spans(
    conn: &mut sqlx::PgConnection,
    window: Period,
) -> Result<Vec<gpures_proto::UsageSpan>> {
    let now = Utc::now();
    let end = window.end.min(now);
    if end <= window.start {
        return Ok(Vec::new());
    }
    let hour = |t: chrono::DateTime<Utc>| {
        chrono::DurationRound::duration_trunc(t, chrono::TimeDelta::hours(1)).unwrap_or(t)
    };
    // The recent past by the minute, what is older by the whole hour.
    let recent =
        hour(now - chrono::TimeDelta::hours(gpures_proto::limits::USAGE_MINUTES_MAX_HOURS));
    let mut left = gpures_proto::limits::USAGE_SPANS_MAX;
    let mut spans = Vec::new();
    let from = window.start.max(recent);
    if from < end {
        spans = crate::store::usage::spans(conn, from, end, true, left).await?;
        left -= i64::try_from(spans.len()).unwrap_or(left);
    }
    if window.start < recent && left > 0 {
        let older =
            crate::store::usage::spans(conn, hour(window.start), recent.min(end), false, left);
        spans.extend(older.await?);
    }
    // In resource and time order for the client.
    spans.sort_by_key(|s| (s.0, s.1));
    Ok(spans
        .into_iter()
        .map(|(resource_id, start, end, used)| gpures_proto::UsageSpan {
            resource_id,
            period: Period { start, end },
            used,
        })
        .collect())
}
