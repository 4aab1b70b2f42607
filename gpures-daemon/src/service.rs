//! The booking rules: [`Service`] turns requests of an authenticated [`Actor`]
//! into store transactions.
//!
//! Every change runs in one transaction that locks the affected resource rows
//! in id order first, checks the rules and conflicts, writes the change, an
//! `audit_log` row and a `calendar_outbox` row, and sends `NOTIFY`. The
//! transaction runs in its own task, so a client deadline that drops the RPC
//! handler never cuts it off between statements; deadlocks and serialization
//! failures are retried here and never reach the user.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{
    ApiError, Booking, BookingRequest, Holder, NewResource, Period, Reservation, ReservationChange,
    ReservationStatus, Resource, ResourceUpdate, Role, UserInfo, limits, text,
};
use thiserror::Error;
use uuid::Uuid;

use crate::store::{self, NewReservation, Store, StoreError, UserChange};

/// How often a transaction that hit a deadlock or serialization failure is
/// tried again before the caller sees `Unavailable`.
const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, Error)]
pub enum ServiceError {
    /// A rule refused the request: reported to the caller as it is.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(StoreError),
    #[error("task failed: {0}")]
    Join(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServiceError::Api(ApiError::NotFound {
                what: "record".into(),
            }),
            e => ServiceError::Store(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// Who is asking, as established by the token and the connection.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user: UserInfo,
}

impl Actor {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    fn require_admin(&self) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied.into())
        }
    }
}

/// Limits from the configuration that the rules apply.
#[derive(Clone, Debug)]
pub struct Rules {
    pub max_length: TimeDelta,
    pub past_grace: TimeDelta,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_length: TimeDelta::days(14),
            past_grace: TimeDelta::minutes(5),
        }
    }
}

/// The booking service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Service {
    store: Store,
    rules: Rules,
}

impl Service {
    pub fn new(store: Store, rules: Rules) -> Service {
        Service { store, rules }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    // ---- reservations ----

    /// Books every resource of `req` for its period, or none.
    ///
    /// # Errors
    /// Rule violations, unknown or inactive resources, `Conflict` with the
    /// holders, or store failures.
    pub async fn create_booking(&self, actor: &Actor, req: BookingRequest) -> Result<Booking> {
        let now = Utc::now();
        let mut resources = req.resources.clone();
        resources.sort_unstable();
        resources.dedup();
        if resources.is_empty() {
            return Err(ApiError::invalid("resources", "name at least one resource").into());
        }
        if resources.len() > limits::BOOKING_MAX_RESOURCES {
            return Err(ApiError::invalid(
                "resources",
                format!(
                    "at most {} resources in one booking",
                    limits::BOOKING_MAX_RESOURCES
                ),
            )
            .into());
        }
        self.check_period(actor, req.period, now, true)?;
        let note = clean_note(&req.note)?;
        let (svc, actor, request_id, period) =
            (self.clone(), actor.clone(), req.request_id, req.period);
        spawn(async move {
            svc.retrying(|| svc.book_once(&actor, request_id, &resources, period, &note))
                .await
        })
        .await
    }

    async fn book_once(
        &self,
        actor: &Actor,
        request_id: Uuid,
        resources: &[i64],
        period: Period,
        note: &str,
    ) -> Result<Booking> {
        let mut tx = self.store.begin().await?;
        let locked = store::lock_resources(&mut tx, resources).await?;
        let existing = store::by_request(&mut tx, actor.user.id, request_id).await?;
        if let Some(first) = existing.first() {
            // A retry of a booking that already happened: give it back.
            return Ok(Booking {
                booking_id: first.booking_id,
                reservations: existing,
            });
        }
        if locked.len() != resources.len() {
            return Err(ApiError::NotFound {
                what: "resource".into(),
            }
            .into());
        }
        if let Some(inactive) = locked.iter().find(|r| !r.active) {
            return Err(
                ApiError::invalid("resources", format!("{} is disabled", inactive.name)).into(),
            );
        }
        let holders = store::holders(&mut tx, resources, period, None).await?;
        if !holders.is_empty() {
            return Err(ApiError::Conflict { holders }.into());
        }
        let booking_id = Uuid::new_v4();
        let mut ids = Vec::with_capacity(resources.len());
        for resource_id in resources {
            let id = Uuid::new_v4();
            let row = NewReservation {
                id,
                booking_id,
                request_id,
                user_id: actor.user.id,
                resource_id: *resource_id,
                period,
                note,
            };
            store::insert_reservation(&mut tx, &row).await?;
            store::enqueue_calendar(&mut tx, id, false).await?;
            store::audit(
                &mut tx,
                Some(actor.user.id),
                &actor.user.unix_user,
                "reservation.create",
                Some(id),
                Some(*resource_id),
                None,
            )
            .await?;
            ids.push(id);
        }
        store::notify_change(&mut tx).await?;
        let mut reservations = Vec::with_capacity(ids.len());
        for id in ids {
            reservations.push(store::reservation(&mut tx, id).await?);
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Booking {
            booking_id,
            reservations,
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
        let (svc, actor) = (self.clone(), actor.clone());
        spawn(async move {
            svc.retrying(|| svc.change_once(&actor, id, Change::Edit(change.clone())))
                .await
        })
        .await
    }

    /// Cancels a reservation (owner or admin); it stays in history.
    ///
    /// # Errors
    /// Not found, not allowed, already over or cancelled.
    pub async fn cancel_reservation(&self, actor: &Actor, id: Uuid) -> Result<Reservation> {
        let (svc, actor) = (self.clone(), actor.clone());
        spawn(async move {
            svc.retrying(|| svc.change_once(&actor, id, Change::Cancel))
                .await
        })
        .await
    }

    /// Ends a running reservation now (owner or admin).
    ///
    /// # Errors
    /// Not found, not allowed, not running.
    pub async fn release_now(&self, actor: &Actor, id: Uuid) -> Result<Reservation> {
        let (svc, actor) = (self.clone(), actor.clone());
        spawn(async move {
            svc.retrying(|| svc.change_once(&actor, id, Change::Release))
                .await
        })
        .await
    }

    async fn change_once(&self, actor: &Actor, id: Uuid, change: Change) -> Result<Reservation> {
        let now = Utc::now();
        let before = self
            .store
            .reservation(id)
            .await
            .map_err(not_found("reservation"))?;
        if before.user.id != actor.user.id && !actor.is_admin() {
            return Err(ApiError::PermissionDenied.into());
        }
        let mut tx = self.store.begin().await?;
        store::lock_resources(&mut tx, &[before.resource_id]).await?;
        store::lock_reservation(&mut tx, id).await?;
        let current = store::reservation(&mut tx, id).await?;
        if current.status != ReservationStatus::Active {
            return Err(ApiError::invalid("reservation", "it is cancelled").into());
        }
        if current.period.end <= now {
            return Err(ApiError::invalid(
                "reservation",
                "it is already over and cannot be changed",
            )
            .into());
        }
        let action = match &change {
            Change::Edit(edit) => {
                let period = Period {
                    start: edit.start.unwrap_or(current.period.start),
                    end: edit.end.unwrap_or(current.period.end),
                };
                let start_moved = period.start != current.period.start;
                self.check_period(actor, period, now, start_moved)?;
                if period.end <= now {
                    return Err(ApiError::invalid("end", "must be in the future").into());
                }
                let note = match &edit.note {
                    Some(n) => clean_note(n)?,
                    None => current.note.clone(),
                };
                let holders =
                    store::holders(&mut tx, &[current.resource_id], period, Some(id)).await?;
                if !holders.is_empty() {
                    return Err(ApiError::Conflict { holders }.into());
                }
                store::set_period_and_note(&mut tx, id, period, &note).await?;
                store::enqueue_calendar(&mut tx, id, false).await?;
                "reservation.update"
            }
            Change::Cancel => {
                store::set_cancelled(&mut tx, id).await?;
                store::enqueue_calendar(&mut tx, id, true).await?;
                "reservation.cancel"
            }
            Change::Release => {
                if current.period.start >= now {
                    return Err(ApiError::invalid(
                        "reservation",
                        "it has not started yet: cancel it instead",
                    )
                    .into());
                }
                let period = Period {
                    start: current.period.start,
                    end: now,
                };
                store::set_period_and_note(&mut tx, id, period, &current.note).await?;
                store::enqueue_calendar(&mut tx, id, false).await?;
                "reservation.release"
            }
        };
        store::audit(
            &mut tx,
            Some(actor.user.id),
            &actor.user.unix_user,
            action,
            Some(id),
            Some(current.resource_id),
            None,
        )
        .await?;
        store::notify_change(&mut tx).await?;
        let after = store::reservation(&mut tx, id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(after)
    }

    /// Who holds any of `resources` during `period` (besides `ignore`).
    ///
    /// # Errors
    /// An invalid period or store failures.
    pub async fn check_availability(
        &self,
        resources: &[i64],
        period: Period,
        ignore: Option<Uuid>,
    ) -> Result<Vec<Holder>> {
        if period.end <= period.start {
            return Err(ApiError::invalid("period", "the end must be after the start").into());
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        Ok(store::holders(&mut conn, resources, period, ignore).await?)
    }

    /// Validates a period for a booking or a change. `starts_now` says whether
    /// the start is being set (and so must not lie in the past).
    fn check_period(
        &self,
        actor: &Actor,
        period: Period,
        now: DateTime<Utc>,
        start_set: bool,
    ) -> Result<()> {
        if period.end <= period.start {
            return Err(ApiError::invalid("period", "the end must be after the start").into());
        }
        for (field, t) in [("start", period.start), ("end", period.end)] {
            if t.duration_trunc(TimeDelta::minutes(1)).ok() != Some(t) {
                return Err(ApiError::invalid(field, "must be a whole minute").into());
            }
        }
        if period.end - period.start > self.rules.max_length {
            return Err(ApiError::invalid(
                "period",
                format!(
                    "a reservation may last at most {} days",
                    self.rules.max_length.num_days()
                ),
            )
            .into());
        }
        if start_set && !actor.is_admin() && period.start < now - self.rules.past_grace {
            return Err(ApiError::invalid("start", "must not be in the past").into());
        }
        Ok(())
    }

    /// Runs `attempt` until it does not fail with a retryable store error.
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                // An overlap caught by the constraint rather than the lock is
                // retried too: the next attempt reports the holders.
                Err(ServiceError::Store(StoreError::Retry | StoreError::Overlap))
                    if tries < MAX_ATTEMPTS =>
                {
                    let jitter = rand::random::<u64>() % 20;
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(tries) + jitter)).await;
                }
                Err(ServiceError::Store(StoreError::Overlap)) => {
                    return Err(ApiError::Conflict { holders: vec![] }.into());
                }
                other => return other,
            }
        }
    }

    // ---- resources ----

    /// Adds a resource (admin).
    ///
    /// # Errors
    /// Not an admin, invalid fields, duplicate name.
    pub async fn create_resource(
        &self,
        actor: Option<&Actor>,
        new: NewResource,
    ) -> Result<Resource> {
        if let Some(a) = actor {
            a.require_admin()?;
        }
        let new = NewResource {
            name: clean_name(&new.name, "name")?,
            host: text::sanitize_trimmed(&new.host),
            description: clean_limited(
                &new.description,
                "description",
                limits::DESCRIPTION_MAX_CHARS,
            )?,
            gpu_uuid: new.gpu_uuid.map(|u| text::sanitize_trimmed(&u)),
            ..new
        };
        if new.gpu_index.is_some_and(|i| i < 0) {
            return Err(ApiError::invalid("gpu_index", "must be 0 or more").into());
        }
        let (id, who) = actor_names(actor);
        self.store
            .insert_resource(&new, id, &who)
            .await
            .map_err(duplicate("name", "a resource with this name exists"))
    }

    /// Changes a resource (admin).
    ///
    /// # Errors
    /// Not an admin, unknown id, invalid fields, duplicate name.
    pub async fn update_resource(
        &self,
        actor: Option<&Actor>,
        id: i64,
        mut update: ResourceUpdate,
    ) -> Result<Resource> {
        if let Some(a) = actor {
            a.require_admin()?;
        }
        if let Some(name) = &update.name {
            update.name = Some(clean_name(name, "name")?);
        }
        if let Some(d) = &update.description {
            update.description = Some(clean_limited(
                d,
                "description",
                limits::DESCRIPTION_MAX_CHARS,
            )?);
        }
        if let Some(h) = &update.host {
            update.host = Some(text::sanitize_trimmed(h));
        }
        let (actor_id, who) = actor_names(actor);
        self.store
            .update_resource(id, &update, actor_id, &who)
            .await
            .map_err(duplicate("name", "a resource with this name exists"))
            .map_err(|e| match e {
                ServiceError::Api(ApiError::NotFound { .. }) => ApiError::NotFound {
                    what: "resource".into(),
                }
                .into(),
                e => e,
            })
    }

    // ---- users (admin) ----

    /// Changes an account (admin over RPC, or the host admin with `actor` None).
    ///
    /// # Errors
    /// Not an admin, unknown email.
    pub async fn change_user(
        &self,
        actor: Option<&Actor>,
        email: &str,
        change: UserChange<'_>,
    ) -> Result<UserInfo> {
        if let Some(a) = actor {
            a.require_admin()?;
        }
        let (id, who) = actor_names(actor);
        let row = self
            .store
            .change_user(email, change, id, &who)
            .await
            .map_err(not_found("user"))?;
        Ok(row.info())
    }
}

enum Change {
    Edit(ReservationChange),
    Cancel,
    Release,
}

/// Runs a transaction in its own task so a dropped RPC handler cannot cut it off.
async fn spawn<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(fut)
        .await
        .map_err(|e| ServiceError::Join(e.to_string()))?
}

fn actor_names(actor: Option<&Actor>) -> (Option<i64>, String) {
    match actor {
        Some(a) => (Some(a.user.id), a.user.unix_user.clone()),
        None => (
            None,
            format!("host:{}", crate::unix::name_of_uid(crate::unix::euid())),
        ),
    }
}

fn not_found(what: &'static str) -> impl Fn(StoreError) -> ServiceError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound { what: what.into() }.into(),
        e => e.into(),
    }
}

fn duplicate(field: &'static str, reason: &'static str) -> impl Fn(StoreError) -> ServiceError {
    move |e| match e {
        StoreError::Duplicate(_) => ApiError::invalid(field, reason).into(),
        e => e.into(),
    }
}

/// A note: sanitized and at most [`limits::NOTE_MAX_CHARS`] characters.
fn clean_note(note: &str) -> Result<String> {
    clean_limited(note, "note", limits::NOTE_MAX_CHARS)
}

fn clean_limited(s: &str, field: &str, max: usize) -> Result<String> {
    if s.chars().count() > max.saturating_mul(4) {
        return Err(ApiError::invalid(field, format!("at most {max} characters")).into());
    }
    let clean = text::sanitize_trimmed(s);
    if clean.chars().count() > max {
        return Err(ApiError::invalid(field, format!("at most {max} characters")).into());
    }
    Ok(clean)
}

/// A resource name: short, no spaces, no control characters.
fn clean_name(name: &str, field: &str) -> Result<String> {
    let clean = clean_limited(name, field, limits::RESOURCE_NAME_MAX_CHARS)?;
    if clean.is_empty() || clean.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(field, "must be non-empty and without spaces").into());
    }
    Ok(clean)
}
