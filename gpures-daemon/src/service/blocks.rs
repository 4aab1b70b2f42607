//! Maintenance and blackout windows: an admin blocks resources for a period
//! with a reason; nobody can book into it ([`check`] runs in every booking
//! and every change that moves a reservation, after the resources are
//! locked). The reservations already inside are listed and their owners
//! told; the admin chooses to keep them or to cancel them (those that
//! started before the block are cut at its start instead).

use std::collections::BTreeMap;

use chrono::Utc;
use gpures_proto::{Block, BlockReply, BlockRequest, NotificationKind, Period, Reservation};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Actor, Entity, Error, Result, Service, audit_by, validate};
use crate::store::audit::{self, AuditAction, Target};
use crate::store::blocks::{self as store, NewBlock};
use crate::store::outbox::{self, Operation};
use crate::store::{self as db, StoreError, reservations, resources};

impl Service {
    /// Blocks `req.resources` for `req.period` (admins), audited.
    ///
    /// # Errors
    /// Not allowed, unknown resources, a period that is over, an empty
    /// reason, store failures.
    pub async fn block(&self, actor: &Actor, req: BlockRequest) -> Result<BlockReply> {
        actor.require_admin()?;
        let ids = validate::booking_resources(&req.resources)?;
        validate::nonempty_period(&req.period)?;
        if req.period.end <= Utc::now() {
            return Err(Error::invalid("end", "must be in the future"));
        }
        let reason = validate::reason(&req.reason)?;
        let (svc, actor) = (self.clone(), actor.clone());
        self.transaction(async move {
            let mut tx = svc.store().begin().await?;
            let locked = resources::lock(&mut tx, &ids).await?;
            if locked.len() != ids.len() {
                return Err(Error::NotFound(Entity::Resource));
            }
            let name = actor.audit_name();
            let block_id = Uuid::new_v4();
            for id in &ids {
                let new = NewBlock {
                    block_id,
                    resource_id: *id,
                    period: req.period,
                    reason: &reason,
                    created_by: &name,
                };
                store::insert(&mut tx, new).await?;
                let target = Target {
                    resource: Some(*id),
                    ..Target::default()
                };
                audit::record_with(
                    &mut tx,
                    audit_by(&actor, &name),
                    AuditAction::BlockCreate,
                    target,
                    Some(&reason),
                )
                .await?;
            }
            outbox::enqueue_block(&mut tx, block_id, Operation::Upsert).await?;
            let holders = reservations::holders(&mut tx, &ids, req.period, &[]).await?;
            let mut overlapping = Vec::with_capacity(holders.len());
            for h in &holders {
                let r = reservations::get(&mut tx, h.reservation_id).await?;
                overlapping.push(if req.cancel_overlapping {
                    cut(&mut tx, &actor, &name, &r, req.period, &reason).await?
                } else {
                    r
                });
            }
            svc.tell_blocked(
                &mut tx,
                &overlapping,
                req.period,
                &reason,
                req.cancel_overlapping,
            )
            .await?;
            db::notify(&mut tx, &db::Changed::Everything).await?;
            let blocks = store::overlapping(&mut tx, &ids, req.period)
                .await?
                .into_iter()
                .filter(|b| b.block_id == block_id)
                .collect();
            tx.commit().await?;
            Ok(BlockReply {
                blocks,
                overlapping,
                cancelled: req.cancel_overlapping,
            })
        })
        .await
    }

    /// Lifts a block (admins), audited.
    ///
    /// # Errors
    /// Not allowed, an unknown or lifted block, store failures.
    pub async fn unblock(&self, actor: &Actor, block_id: Uuid) -> Result<Vec<Block>> {
        actor.require_admin()?;
        let mut tx = self.store().begin().await?;
        let gone = store::remove(&mut tx, block_id).await?;
        if gone.is_empty() {
            return Err(Error::NotFound(Entity::Block));
        }
        let name = actor.audit_name();
        for b in &gone {
            let target = Target {
                resource: Some(b.resource_id),
                ..Target::default()
            };
            audit::record(
                &mut tx,
                audit_by(actor, &name),
                AuditAction::BlockRemove,
                target,
            )
            .await?;
        }
        outbox::enqueue_block(&mut tx, block_id, Operation::Delete).await?;
        db::notify(&mut tx, &db::Changed::Everything).await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// The blocks overlapping `window`.
    ///
    /// # Errors
    /// An invalid window, store failures.
    pub async fn blocks(&self, _actor: &Actor, window: Period) -> Result<Vec<Block>> {
        validate::window(&window)?;
        let mut conn = self.store().acquire().await?;
        Ok(store::in_window(&mut conn, window).await?)
    }

    /// Tells each owner of `rs` once per booking that their GPUs are blocked.
    async fn tell_blocked(
        &self,
        tx: &mut PgConnection,
        rs: &[Reservation],
        period: Period,
        reason: &str,
        cancelled: bool,
    ) -> Result<()> {
        let mut per_booking: BTreeMap<(i64, Uuid), Vec<&Reservation>> = BTreeMap::new();
        for r in rs {
            per_booking
                .entry((r.user.id, r.booking_id))
                .or_default()
                .push(r);
        }
        for ((user_id, booking_id), rs) in per_booking {
            let names: Vec<&str> = rs.iter().map(|r| r.resource_name.as_str()).collect();
            let names = names.join(", ");
            let (kind, title) = if cancelled {
                (
                    NotificationKind::AdminChanged,
                    format!("Your booking of {names} was cancelled for maintenance"),
                )
            } else {
                (
                    NotificationKind::Maintenance,
                    format!("{names}: maintenance during your booking; it is kept for now"),
                )
            };
            let new = crate::store::notifications::New {
                user_id,
                kind,
                reservation_id: Some(rs[0].id),
                dedupe: None,
                title,
                body: format!(
                    "{reason} · blocked {} to {} UTC · booking {}",
                    period.start.format("%Y-%m-%d %H:%M"),
                    period.end.format("%Y-%m-%d %H:%M"),
                    super::notify::short(booking_id)
                ),
            };
            super::notify::push(tx, &self.settings().notify, new).await?;
        }
        Ok(())
    }
}

/// Takes the block's period out of `r`: cancelled if it starts inside the
/// block, else cut to end where the block starts. Audited with the reason.
async fn cut(
    tx: &mut PgConnection,
    actor: &Actor,
    name: &str,
    r: &Reservation,
    block: Period,
    reason: &str,
) -> Result<Reservation> {
    let now = Utc::now();
    let action = if r.period.start >= block.start || block.start <= now && r.period.start >= now {
        reservations::set_cancelled(tx, r.id).await?;
        outbox::enqueue(tx, r.id, Operation::Delete).await?;
        AuditAction::ReservationCancel
    } else {
        let period = Period {
            start: r.period.start,
            end: block.start.max(now),
        };
        reservations::set_period_and_note(tx, r.id, period, &r.note).await?;
        outbox::enqueue(tx, r.id, Operation::Upsert).await?;
        if period.end <= now {
            AuditAction::ReservationRelease
        } else {
            AuditAction::ReservationUpdate
        }
    };
    reservations::set_change_reason(tx, r.id, reason).await?;
    let target = Target {
        reservation: Some(r.id),
        resource: Some(r.resource_id),
        user: None,
    };
    audit::record_with(tx, audit_by(actor, name), action, target, Some(reason)).await?;
    Ok(reservations::get(tx, r.id).await?)
}

/// Refuses `period` on `resources` where a block is in force (in the
/// caller's transaction, after the resources are locked).
///
/// # Errors
/// [`Error::Blocked`]; store failures.
pub(super) async fn check(
    tx: &mut PgConnection,
    resources: &[i64],
    period: Period,
) -> std::result::Result<(), super::booking::Failed> {
    let blocks = store::overlapping(tx, resources, period)
        .await
        .map_err(|e: StoreError| super::booking::Failed::from(e))?;
    if blocks.is_empty() {
        Ok(())
    } else {
        Err(Error::Blocked(blocks).into())
    }
}
