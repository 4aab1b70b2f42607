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
    Booking, BookingRequest, Holder, Period, Reservation, ReservationChange, ReservationFilter,
    ReservationStatus, Timeline,
};
use uuid::Uuid;

use super::{Actor, Entity, Error, Result, Service, audit_by, validate};
use crate::store::audit::{self, AuditAction, Target};
use crate::store::outbox::{self, Operation};
use crate::store::reservations::{self, NewReservation};
use crate::store::{self, StoreError, resources};

/// How often a transaction that hit a deadlock, a serialization failure or a
/// late overlap is tried again before the caller is told.
const MAX_ATTEMPTS: u32 = 8;

/// One change of an existing reservation.
#[derive(Clone, Debug)]
enum Change {
    Edit(ReservationChange),
    Cancel,
    Release,
}

impl Service {
    /// Books every resource of `req` for its period, or none. A retry with the
    /// same request id returns the booking already made.
    ///
    /// # Errors
    /// Rule violations, unknown or inactive resources, `Conflict` with the
    /// holders, store failures.
    pub async fn create_booking(&self, actor: &Actor, req: BookingRequest) -> Result<Booking> {
        let user = actor.account()?.clone();
        let resources = validate::booking_resources(&req.resources)?;
        validate::booking_period(
            &self.settings().rules,
            req.period,
            Utc::now(),
            true,
            actor.is_admin(),
        )?;
        let note = validate::note(&req.note)?;
        let svc = self.clone();
        let name = actor.audit_name();
        self.transaction(async move {
            svc.retrying(&resources, req.period, None, || {
                svc.book_once(&user, &name, req.request_id, &resources, req.period, &note)
            })
            .await
        })
        .await
    }

    async fn book_once(
        &self,
        user: &gpures_proto::UserInfo,
        audit_name: &str,
        request_id: Uuid,
        resource_ids: &[i64],
        period: Period,
        note: &str,
    ) -> Attempt<Booking> {
        let mut tx = self.store().begin().await?;
        let locked = resources::lock(&mut tx, resource_ids).await?;
        let existing = reservations::by_request(&mut tx, user.id, request_id).await?;
        if let Some(first) = existing.first() {
            // A retry of a booking that already happened: give it back.
            return Ok(Booking {
                booking_id: first.booking_id,
                reservations: existing,
            });
        }
        if locked.len() != resource_ids.len() {
            return Err(Error::NotFound(Entity::Resource).into());
        }
        if let Some(inactive) = locked.iter().find(|r| !r.active) {
            return Err(
                Error::invalid("resources", format!("{} is disabled", inactive.name)).into(),
            );
        }
        let holders = reservations::holders(&mut tx, resource_ids, period, None).await?;
        if !holders.is_empty() {
            return Err(Error::Conflict(holders).into());
        }
        let booking_id = Uuid::new_v4();
        let by = audit::By {
            user_id: Some(user.id),
            unix_user: audit_name,
        };
        let mut ids = Vec::with_capacity(resource_ids.len());
        for resource_id in resource_ids {
            let id = Uuid::new_v4();
            let row = NewReservation {
                id,
                booking_id,
                request_id,
                user_id: user.id,
                resource_id: *resource_id,
                period,
                note,
            };
            reservations::insert(&mut tx, &row).await?;
            outbox::enqueue(&mut tx, id, Operation::Upsert).await?;
            let target = Target {
                reservation: Some(id),
                resource: Some(*resource_id),
                user: None,
            };
            audit::record(&mut tx, by, AuditAction::ReservationCreate, target).await?;
            ids.push(id);
        }
        store::notify_change(&mut tx).await?;
        let mut booked = Vec::with_capacity(ids.len());
        for id in ids {
            booked.push(reservations::get(&mut tx, id).await?);
        }
        tx.commit().await?;
        Ok(Booking {
            booking_id,
            reservations: booked,
        })
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
        self.change(actor, id, Change::Edit(change)).await
    }

    /// Cancels a reservation (owner or admin); it stays in history.
    ///
    /// # Errors
    /// Not found, not allowed, already over or cancelled.
    pub async fn cancel_reservation(&self, actor: &Actor, id: Uuid) -> Result<Reservation> {
        self.change(actor, id, Change::Cancel).await
    }

    /// Ends a running reservation now (owner or admin).
    ///
    /// # Errors
    /// Not found, not allowed, not running.
    pub async fn release_now(&self, actor: &Actor, id: Uuid) -> Result<Reservation> {
        self.change(actor, id, Change::Release).await
    }

    async fn change(&self, actor: &Actor, id: Uuid, change: Change) -> Result<Reservation> {
        let before = {
            let mut conn = self.store().acquire().await?;
            reservations::get(&mut conn, id)
                .await
                .map_err(Error::not_found(Entity::Reservation))?
        };
        if !actor.owns_or_admin(before.user.id) {
            return Err(Error::Forbidden);
        }
        let (svc, actor) = (self.clone(), actor.clone());
        let period = match &change {
            Change::Edit(e) => Period {
                start: e.start.unwrap_or(before.period.start),
                end: e.end.unwrap_or(before.period.end),
            },
            _ => before.period,
        };
        self.transaction(async move {
            svc.retrying(&[before.resource_id], period, Some(id), || {
                svc.change_once(&actor, &before, change.clone())
            })
            .await
        })
        .await
    }

    async fn change_once(
        &self,
        actor: &Actor,
        before: &Reservation,
        change: Change,
    ) -> Attempt<Reservation> {
        let now = Utc::now();
        let id = before.id;
        let mut tx = self.store().begin().await?;
        resources::lock(&mut tx, &[before.resource_id]).await?;
        reservations::lock(&mut tx, id).await?;
        let current = reservations::get(&mut tx, id).await?;
        if current.status != ReservationStatus::Active {
            return Err(Error::invalid("reservation", "it is cancelled").into());
        }
        if current.period.end <= now {
            return Err(
                Error::invalid("reservation", "it is already over and cannot be changed").into(),
            );
        }
        let action = match &change {
            Change::Edit(edit) => {
                let period = Period {
                    start: edit.start.unwrap_or(current.period.start),
                    end: edit.end.unwrap_or(current.period.end),
                };
                let start_moved = period.start != current.period.start;
                validate::booking_period(
                    &self.settings().rules,
                    period,
                    now,
                    start_moved,
                    actor.is_admin(),
                )?;
                if period.end <= now {
                    return Err(Error::invalid("end", "must be in the future").into());
                }
                let note = match &edit.note {
                    Some(n) => validate::note(n)?,
                    None => current.note.clone(),
                };
                let holders =
                    reservations::holders(&mut tx, &[current.resource_id], period, Some(id))
                        .await?;
                if !holders.is_empty() {
                    return Err(Error::Conflict(holders).into());
                }
                reservations::set_period_and_note(&mut tx, id, period, &note).await?;
                outbox::enqueue(&mut tx, id, Operation::Upsert).await?;
                AuditAction::ReservationUpdate
            }
            Change::Cancel => {
                reservations::set_cancelled(&mut tx, id).await?;
                outbox::enqueue(&mut tx, id, Operation::Delete).await?;
                AuditAction::ReservationCancel
            }
            Change::Release => {
                if current.period.start >= now {
                    return Err(Error::invalid(
                        "reservation",
                        "it has not started yet: cancel it instead",
                    )
                    .into());
                }
                let period = Period {
                    start: current.period.start,
                    end: now,
                };
                reservations::set_period_and_note(&mut tx, id, period, &current.note).await?;
                outbox::enqueue(&mut tx, id, Operation::Upsert).await?;
                AuditAction::ReservationRelease
            }
        };
        let name = actor.audit_name();
        let target = Target {
            reservation: Some(id),
            resource: Some(current.resource_id),
            user: None,
        };
        audit::record(&mut tx, audit_by(actor, &name), action, target).await?;
        store::notify_change(&mut tx).await?;
        let after = reservations::get(&mut tx, id).await?;
        tx.commit().await?;
        Ok(after)
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
        Ok(reservations::holders(&mut conn, resource_ids, period, ignore).await?)
    }

    /// Reservations matching `filter`.
    ///
    /// # Errors
    /// An invalid window, store failures.
    pub async fn list_reservations(
        &self,
        _actor: &Actor,
        filter: &ReservationFilter,
    ) -> Result<Vec<Reservation>> {
        if let Some(window) = &filter.window {
            validate::window(window)?;
        }
        if let Some(email) = &filter.user_email {
            validate::lookup_text("user_email", email)?;
        }
        validate::filter_resources(&filter.resources)?;
        let mut conn = self.store().acquire().await?;
        Ok(reservations::list(&mut conn, filter).await?)
    }

    /// The active resources and the active reservations in `window`.
    ///
    /// # Errors
    /// An invalid window, store failures.
    pub async fn timeline(&self, _actor: &Actor, window: Period) -> Result<Timeline> {
        validate::window(&window)?;
        let mut conn = self.store().acquire().await?;
        let resources = resources::list(&mut conn, false).await?;
        let reservations = reservations::active_in_window(&mut conn, window).await?;
        Ok(Timeline {
            window,
            resources,
            reservations,
        })
    }

    /// Runs `attempt` until it does not fail with a retryable abort. When an
    /// overlap outlives every attempt, the caller is told who holds the slot
    /// (`resource_ids` over `period`, besides `ignore`); if nobody does any
    /// more, the database is reported as too busy.
    async fn retrying<T, F, Fut>(
        &self,
        resource_ids: &[i64],
        period: Period,
        ignore: Option<Uuid>,
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

/// How one attempt of a writing transaction ended, when it did not succeed.
enum Failed {
    /// A rule or a lasting failure: the caller is told.
    Rule(Error),
    /// A deadlock, a serialization failure, or an overlap caught by the
    /// exclusion constraint instead of the lock: worth another attempt.
    Abort,
}

type Attempt<T> = std::result::Result<T, Failed>;

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
