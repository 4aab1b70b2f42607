//! Exceptions to lab policy: a member books past a rule as a request
//! (`gpures book … --request-approval --reason …`). The booking is made at
//! once, pending: it holds its slot (it is an active reservation, so the
//! exclusion constraint keeps everyone else out) until an admin approves it
//! or denies it, and one nobody decided by its deadline (at the latest its
//! start) is cancelled by [`Service::expire_pending`]. Admins are told of
//! each request, the member of each decision.

use chrono::{DateTime, TimeDelta, Utc};
use gpures_proto::{Booking, BookingRequest, NotificationKind, Reservation};
use uuid::Uuid;

use super::booking::{Change, PolicyMode, Reason, Which};
use super::{Actor, Entity, Error, Result, Service, audit_by, validate};
use crate::store::audit::{self, AuditAction, Target};
use crate::store::notifications::New;
use crate::store::outbox::{self, Operation};
use crate::store::{self, reservations, users};

/// Who cancels a request nobody decided in time (audited as `host:` it).
pub const EXPIRY_ACTOR: &str = "gpures-approval";

impl Service {
    /// Books `req` pending an admin's approval until `decide_by` (default
    /// and at the latest its start), telling every admin.
    ///
    /// # Errors
    /// As a booking (conflicts, blocks, the booking limits; not lab
    /// policy), an empty reason, a deadline less than a minute ahead.
    pub async fn request_approval(
        &self,
        actor: &Actor,
        req: BookingRequest,
        reason: &str,
        decide_by: Option<DateTime<Utc>>,
    ) -> Result<Booking> {
        let user = actor.account()?.clone();
        let reason = validate::reason(reason)?;
        let until = decide_by.unwrap_or(req.period.start).min(req.period.start);
        if until < Utc::now() + TimeDelta::minutes(1) {
            return Err(Error::invalid(
                "decide_by",
                "an admin needs at least a minute before the start to decide",
            ));
        }
        let mode = PolicyMode::Request {
            reason: reason.clone(),
            until,
        };
        let booking = self.book_checked(actor, req, true, mode).await?;
        // Tell the admins (after the booking: a failure here loses a
        // notice, never the booking; they also see `gpures admin pending`).
        let names: Vec<&str> = booking
            .reservations
            .iter()
            .map(|r| r.resource_name.as_str())
            .collect();
        let mut conn = self.store().acquire().await?;
        for admin in users::admin_ids(&mut conn).await? {
            if admin == user.id {
                continue;
            }
            let new = New {
                user_id: admin,
                kind: NotificationKind::ApprovalRequested,
                reservation_id: booking.reservations.first().map(|r| r.id),
                dedupe: Some(format!("approval:{}", booking.booking_id)),
                title: format!(
                    "{} asks to book {} past lab policy",
                    user.display_name,
                    names.join(", ")
                ),
                body: format!(
                    "{reason} · decide by {} UTC: gpures admin approve|deny {}",
                    until.format("%Y-%m-%d %H:%M"),
                    super::notify::short(booking.booking_id)
                ),
            };
            super::notify::push(&mut conn, &self.settings().notify, new).await?;
        }
        Ok(booking)
    }

    /// Approves (or denies, with `reason`) the pending booking `booking_id`
    /// (admins); its owner is told.
    ///
    /// # Errors
    /// Not allowed, not found, not pending, a denial without a reason.
    pub async fn decide_approval(
        &self,
        actor: &Actor,
        booking_id: Uuid,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Vec<Reservation>> {
        actor.require_admin()?;
        let current = {
            let mut conn = self.store().acquire().await?;
            reservations::by_booking(&mut conn, booking_id).await?
        };
        if current.is_empty() {
            return Err(Error::NotFound(Entity::Booking));
        }
        if !current
            .iter()
            .any(|r| r.pending.is_some() && r.status == gpures_proto::ReservationStatus::Active)
        {
            return Err(Error::invalid("booking", "it is not waiting for approval"));
        }
        if !approve {
            let why = validate::reason(reason.unwrap_or_default())?;
            let reason = Reason {
                text: format!("approval denied: {why}"),
                kind: NotificationKind::ApprovalDecided,
            };
            return self
                .change_for(
                    actor,
                    Which::Booking(booking_id),
                    Change::Cancel,
                    Some(reason),
                )
                .await;
        }
        let mut tx = self.store().begin().await?;
        let ids = reservations::approve(&mut tx, booking_id).await?;
        if ids.is_empty() {
            return Err(Error::invalid("booking", "it is not waiting for approval"));
        }
        let name = actor.audit_name();
        let why = reason.map(validate::reason).transpose()?;
        for id in &ids {
            outbox::enqueue(&mut tx, *id, Operation::Upsert).await?;
            let target = Target {
                reservation: Some(*id),
                ..Target::default()
            };
            audit::record_with(
                &mut tx,
                audit_by(actor, &name),
                AuditAction::ReservationApprove,
                target,
                why.as_deref(),
            )
            .await?;
        }
        let owner = current[0].user.id;
        let names: Vec<&str> = current.iter().map(|r| r.resource_name.as_str()).collect();
        let new = New {
            user_id: owner,
            kind: NotificationKind::ApprovalDecided,
            reservation_id: Some(ids[0]),
            dedupe: Some(format!("approved:{booking_id}")),
            title: format!("Approved: your booking of {}", names.join(", ")),
            body: format!(
                "{}booking {}",
                why.map(|w| format!("{w} · ")).unwrap_or_default(),
                super::notify::short(booking_id)
            ),
        };
        super::notify::push(&mut tx, &self.settings().notify, new).await?;
        store::notify(&mut tx, &store::Changed::Reservations(ids.clone())).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(reservations::get(&mut tx, id).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// What waits for approval: every request for admins, one's own for
    /// members.
    ///
    /// # Errors
    /// Store failures.
    pub async fn pending_approvals(&self, actor: &Actor) -> Result<Vec<Reservation>> {
        let mut conn = self.store().acquire().await?;
        let all = reservations::pending(&mut conn, None).await?;
        Ok(match actor {
            Actor::Member(u) => all.into_iter().filter(|r| r.user.id == u.id).collect(),
            _ => all,
        })
    }

    /// Cancels every request nobody decided by its deadline (the owner is
    /// told why); how many bookings.
    ///
    /// # Errors
    /// Store failures.
    pub async fn expire_pending(&self) -> Result<usize> {
        let now = Utc::now();
        let due = {
            let mut conn = self.store().acquire().await?;
            reservations::pending(&mut conn, Some(now)).await?
        };
        let mut bookings: Vec<Uuid> = due.iter().map(|r| r.booking_id).collect();
        bookings.sort_unstable();
        bookings.dedup();
        let actor = Actor::HostAdmin {
            unix_user: EXPIRY_ACTOR.to_owned(),
        };
        let mut n = 0;
        for b in bookings {
            let reason = Reason {
                text: "no admin approved it before its deadline".into(),
                kind: NotificationKind::ApprovalDecided,
            };
            match self
                .change_for(&actor, Which::Booking(b), Change::Cancel, Some(reason))
                .await
            {
                Ok(_) => n += 1,
                // Decided or cancelled meanwhile.
                Err(Error::Invalid { .. } | Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}
