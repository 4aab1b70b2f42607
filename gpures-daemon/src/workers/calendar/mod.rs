//! Google Calendar one-way sync: [`Calendar`] writes events with
//! `google-calendar3` and a service-account authenticator ([`token`]);
//! [`CalendarWorker`] delivers the `calendar_outbox`; [`google`] is the client and
//! [`reconcile`] the repair.
//!
//! Invariant 3: a booking never waits for Google. Every change commits an
//! outbox row with it; the worker wakes on every committed change (NOTIFY,
//! so any daemon on the database may deliver), claims one reservation (or
//! maintenance block) at a time under a transaction-scoped advisory lock plus `FOR UPDATE SKIP LOCKED`
//! on its rows (so daemons never write the same event at once), writes the
//! reservation's *current* state (several pending changes collapse into one
//! write), and deletes the rows only after Google accepted it. Event ids are
//! derived from the reservation id ([`event_id`]): a retry after a crash or a
//! lost reply updates the same event instead of adding one. Transient
//! failures (429, rate-limit 403s, 5xx, timeouts, connection errors) back off
//! exponentially with jitter from 1 s to 5 min; permanent ones (400, 401,
//! other 403s, a bad key) mark the rows failed with the reason and keep them
//! until the daemon restarts (a configuration change) or `calendar resync`.
//!
//! The connector is one concrete type ([`Connector`], rustls, https or plain
//! http) so the hub's generic code is compiled once.

pub mod google;
pub mod reconcile;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

pub use google::{Calendar, CalendarError, CheckFailed, SyncError, Written, event_id};
pub use reconcile::{Reconciled, RepairError, reconcile};

use crate::store::outbox::{self, Delivery, Subject};
use crate::store::{self, Store, StoreError};
use crate::workers::{Shutdown, WorkerHandle};

/// Delivers the outbox.
pub struct CalendarWorker {
    pub calendar: Arc<Calendar>,
    pub store: Store,
    /// The change counter: a committed change may have queued a row.
    pub changes: watch::Receiver<u64>,
    pub writes_per_sec: f64,
    pub reconcile_every: Duration,
    pub retry_first: Duration,
}

impl CalendarWorker {
    /// Starts delivering until `shutdown`. Wakes on every change, when the
    /// next retry is due, and for the periodic reconciliation.
    pub fn start(self, mut shutdown: Shutdown) -> WorkerHandle {
        let CalendarWorker {
            calendar: cal,
            store,
            mut changes,
            writes_per_sec,
            reconcile_every,
            retry_first,
        } = self;
        WorkerHandle::spawn("calendar", async move {
            // A restart is how configuration changes arrive: give failed rows
            // another chance.
            let reset = match store.acquire().await {
                Ok(mut conn) => outbox::retry_failed(&mut conn).await,
                Err(e) => Err(e),
            };
            if let Err(e) = reset {
                tracing::warn!(error = %e, "cannot reset failed calendar rows");
            }
            let spacing = Duration::from_secs_f64(1.0 / writes_per_sec.max(0.1));
            let mut last_write = tokio::time::Instant::now() - spacing;
            let mut next_reconcile = tokio::time::Instant::now() + reconcile_every;
            loop {
                let wait = match deliver_due(
                    &cal,
                    &store,
                    spacing,
                    retry_first,
                    &mut last_write,
                    &shutdown,
                )
                .await
                {
                    // Delivered something: there may be more right away.
                    Ok(Progress { delivered, .. }) if delivered > 0 => Duration::ZERO,
                    Ok(Progress { next_due, .. }) => next_due
                        .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                        .unwrap_or(Duration::from_secs(60))
                        // Rows another daemon holds: look again shortly.
                        .max(Duration::from_millis(200)),
                    Err(e) => {
                        tracing::warn!(error = %e, "calendar outbox unavailable");
                        Duration::from_secs(2)
                    }
                };
                let mut wait = wait;
                if tokio::time::Instant::now() >= next_reconcile {
                    let now = Utc::now();
                    match reconcile(
                        &cal,
                        &store,
                        now - TimeDelta::days(1),
                        now + TimeDelta::days(14),
                    )
                    .await
                    {
                        Ok(r) => {
                            tracing::info!(?r, "calendar reconciled");
                            if r.queued() > 0 {
                                // Deliver what the repair queued now.
                                wait = Duration::ZERO;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "Failed to reconcile the calendar"),
                    }
                    next_reconcile = tokio::time::Instant::now() + reconcile_every;
                }
                if wait.is_zero() {
                    if shutdown.is_requested() {
                        return;
                    }
                    continue;
                }
                let wait =
                    wait.min(next_reconcile.saturating_duration_since(tokio::time::Instant::now()));
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

/// Delivers the outbox until nothing is due (or `deadline` passes), as the
/// worker does: for `calendar resync`, which wants its repair on the calendar
/// before it reports. Several processes delivering at once is safe (claims).
///
/// # Errors
/// The database failed.
pub async fn deliver_all(
    cal: &Calendar,
    store: &Store,
    writes_per_sec: f64,
    retry_first: Duration,
    deadline: tokio::time::Instant,
) -> Result<usize, StoreError> {
    let spacing = Duration::from_secs_f64(1.0 / writes_per_sec.max(0.1));
    let mut last_write = tokio::time::Instant::now() - spacing;
    let (_trigger, never) = super::ShutdownTrigger::new();
    let mut total = 0;
    while tokio::time::Instant::now() < deadline {
        let p = deliver_due(cal, store, spacing, retry_first, &mut last_write, &never).await?;
        total += p.delivered;
        if p.delivered == 0 {
            match p.next_due {
                Some(t) if t <= Utc::now() + TimeDelta::seconds(2) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => break,
            }
        }
    }
    Ok(total)
}

/// What one delivery pass did.
struct Progress {
    delivered: usize,
    next_due: Option<DateTime<Utc>>,
}

/// Delivers every due subject once.
async fn deliver_due(
    cal: &Calendar,
    store: &Store,
    spacing: Duration,
    retry_first: Duration,
    last_write: &mut tokio::time::Instant,
    shutdown: &Shutdown,
) -> Result<Progress, StoreError> {
    let mut delivered = 0;
    let due = {
        let mut conn = store.acquire().await?;
        outbox::due(&mut conn, 100).await?
    };
    for subject in due {
        if shutdown.is_requested() {
            break;
        }
        let mut tx = store.begin().await?;
        let Some(claimed) = outbox::claim(&mut tx, subject).await? else {
            continue;
        };
        let outcome = match subject {
            Subject::Reservation(rid) => {
                let current = match store::reservations::get(&mut tx, rid).await {
                    Ok(r) => Some(r),
                    Err(StoreError::NotFound) => None,
                    Err(e) => return Err(e),
                };
                let known = outbox::event_known(&mut tx, rid).await?;
                rate_limit(last_write, spacing).await;
                match &current {
                    Some(r) => cal.apply(r, known).await,
                    None => cal.delete(rid).await,
                }
            }
            Subject::Block(bid) => {
                let parts = store::blocks::get(&mut tx, bid).await?;
                rate_limit(last_write, spacing).await;
                cal.apply_block(bid, &parts).await
            }
        };
        let id = event_id(subject.id());
        let written = outcome.as_ref().ok().copied();
        let delivery = match outcome {
            Ok(w) => {
                match w {
                    Written::Created => tracing::info!(event = %id, "Calendar event created: {id}"),
                    Written::Updated => tracing::info!(event = %id, "Calendar event updated: {id}"),
                    Written::Deleted => tracing::info!(event = %id, "Calendar event deleted: {id}"),
                }
                Delivery::Done
            }
            Err(SyncError::Retry(m)) => {
                tracing::warn!(event = %id, "Failed to sync calendar event {id}, will retry: {m}");
                Delivery::Retry(m, google::backoff(retry_first, claimed.attempts))
            }
            Err(SyncError::Permanent(m)) => {
                tracing::error!(event = %id, "Failed to sync calendar event {id}: {m}");
                Delivery::Failed(m)
            }
        };
        if let (Some(w), Subject::Reservation(rid)) = (written, subject) {
            outbox::set_event_known(&mut tx, rid, w != Written::Deleted).await?;
        }
        outbox::finish(&mut tx, &claimed, &delivery).await?;
        if matches!(delivery, Delivery::Failed(_)) {
            // Clients show the failure: tell them.
            store::notify(&mut tx, &store::Changed::Calendar).await?;
            if let Subject::Reservation(rid) = subject {
                store::notify(&mut tx, &store::Changed::Reservations(vec![rid])).await?;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        delivered += 1;
    }
    let next_due = {
        let mut conn = store.acquire().await?;
        outbox::next_due(&mut conn).await?
    };
    Ok(Progress {
        delivered,
        next_due,
    })
}

/// The client-side rate limit: waits until `spacing` after the last write.
async fn rate_limit(last_write: &mut tokio::time::Instant, spacing: Duration) {
    tokio::time::sleep_until(*last_write + spacing).await;
    *last_write = tokio::time::Instant::now();
}
