//! Repair: [`reconcile`] makes the calendar equal to the database over a
//! window (used by `calendar resync` and the worker's periodic pass) by
//! queueing work for the outbox worker, never by writing from its own
//! snapshot.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use google_calendar3::api::{Event, EventDateTime};
use gpures_proto::{Block, Cursor, Reservation, ReservationStatus, limits};
use thiserror::Error;
use uuid::Uuid;

use super::google::{Calendar, PROP_BLOCK, PROP_RESERVATION, SyncError, event_id};
use crate::store::outbox::{self, Operation, Subject};
use crate::store::{self, Store, StoreError};

/// Why a repair stopped.
#[derive(Debug, Error)]
pub enum RepairError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Google Calendar: {0}")]
    Google(#[from] SyncError),
}

/// What a repair found and did. `created` and `updated` were queued for the
/// worker, which writes each reservation's current state under its claim;
/// `deleted` events carried gpures' mark but belong to no reservation at all
/// (or duplicate one) and were deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

impl Reconciled {
    /// Changes queued for the worker.
    pub fn queued(&self) -> usize {
        self.created + self.updated
    }
}

fn same_event(have: &Event, want: &Event) -> bool {
    let t = |e: &Option<EventDateTime>| e.as_ref().and_then(|d| d.date_time);
    have.summary == want.summary
        && have.description == want.description
        && t(&have.start) == t(&want.start)
        && t(&have.end) == t(&want.end)
        && have.status.as_deref().unwrap_or("confirmed")
            == want.status.as_deref().unwrap_or("confirmed")
}

/// What an event of ours mirrors, by the id it carries.
fn subject_of(ev: &Event) -> Option<Subject> {
    let private = ev.extended_properties.as_ref()?.private.as_ref()?;
    let id = |key: &str| private.get(key).and_then(|s| Uuid::parse_str(s).ok());
    id(PROP_RESERVATION)
        .map(Subject::Reservation)
        .or_else(|| id(PROP_BLOCK).map(Subject::Block))
}

/// Makes the calendar equal to the database over `[from, to)` without ever
/// writing from a stale snapshot: an event that is missing, differs, or
/// belongs to a reservation outside the window or no longer active is queued
/// in the outbox, and the worker writes the reservation's state as it is
/// when it claims it (so a change made during the repair always wins, and an
/// event moved out of its place is moved back, never deleted). Only events
/// carrying gpures' mark whose reservation does not exist at all, or that
/// duplicate one, are deleted here; other events are never touched. A second
/// repair finds nothing to do. Maintenance blocks are repaired the same way
/// (a lifted block never comes back, so its event is deleted here).
///
/// # Errors
/// The database failed, or Google kept failing a page (after retries).
pub async fn reconcile(
    cal: &Calendar,
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Reconciled, RepairError> {
    let window = gpures_proto::Period {
        start: from,
        end: to,
    };
    let active = active_in(store, window).await?;
    let blocks = blocks_in(store, window).await?;
    let events = cal.list_managed(from, to).await?;
    let mut report = Reconciled::default();
    let mut seen = HashSet::new();
    let mut seen_blocks = HashSet::new();
    let mut queue: Vec<(Subject, Operation)> = Vec::new();
    let mut listed = HashSet::new();
    for ev in &events {
        let Some(id) = ev.id.clone() else { continue };
        // Pages can shift while events are written: an event listed twice
        // is one event.
        if !listed.insert(id.clone()) {
            continue;
        }
        let Some(subject) = subject_of(ev) else {
            cal.delete_event(&id).await?;
            report.deleted += 1;
            continue;
        };
        if id != event_id(subject.id()) {
            // Not the reservation's own event id: a copy.
            cal.delete_event(&id).await?;
            report.deleted += 1;
            continue;
        }
        let rid = match subject {
            Subject::Reservation(rid) => rid,
            Subject::Block(bid) => {
                seen_blocks.insert(bid);
                let want = match blocks.get(&bid) {
                    Some(parts) => parts.clone(),
                    // Outside the window or created since: ask now.
                    None => {
                        let mut conn = store.acquire().await?;
                        store::blocks::get(&mut conn, bid).await?
                    }
                };
                match cal.event_for_block(&want) {
                    Some(e) if same_event(ev, &e) => report.unchanged += 1,
                    Some(_) => {
                        queue.push((subject, Operation::Upsert));
                        report.updated += 1;
                    }
                    None => {
                        cal.delete_event(&id).await?;
                        report.deleted += 1;
                    }
                }
                continue;
            }
        };
        seen.insert(rid);
        match active.get(&rid) {
            Some(r) if same_event(ev, &cal.event_for(r)) => report.unchanged += 1,
            Some(_) => {
                queue.push((subject, Operation::Upsert));
                report.updated += 1;
            }
            None => {
                // Outside the window, cancelled, or created since the
                // snapshot: ask the database now.
                let current = {
                    let mut conn = store.acquire().await?;
                    match store::reservations::get(&mut conn, rid).await {
                        Ok(r) => Some(r),
                        Err(StoreError::NotFound) => None,
                        Err(e) => return Err(e.into()),
                    }
                };
                match current {
                    Some(r) if r.status == ReservationStatus::Active => {
                        queue.push((subject, Operation::Upsert));
                        report.updated += 1;
                    }
                    Some(_) => {
                        queue.push((subject, Operation::Delete));
                        report.deleted += 1;
                    }
                    None => {
                        cal.delete_event(&id).await?;
                        report.deleted += 1;
                    }
                }
            }
        }
    }
    // Missing from the calendar (never written, or deleted by hand: the
    // worker's insert then meets the deleted event's id and revives it).
    for r in active.values().filter(|r| !seen.contains(&r.id)) {
        queue.push((Subject::Reservation(r.id), Operation::Upsert));
        report.created += 1;
    }
    for bid in blocks.keys().filter(|b| !seen_blocks.contains(*b)) {
        queue.push((Subject::Block(*bid), Operation::Upsert));
        report.created += 1;
    }
    if !queue.is_empty() {
        let mut tx = store.begin().await?;
        for (subject, op) in &queue {
            outbox::enqueue_subject(&mut tx, *subject, *op).await?;
        }
        store::notify(&mut tx, &store::Changed::Everything).await?;
        tx.commit().await.map_err(StoreError::from)?;
    }
    Ok(report)
}

/// The blocks in force overlapping `window`, by block id (each with the
/// rows of all its resources).
async fn blocks_in(
    store: &Store,
    window: gpures_proto::Period,
) -> Result<HashMap<Uuid, Vec<Block>>, StoreError> {
    let mut conn = store.acquire().await?;
    let mut by_id: HashMap<Uuid, Vec<Block>> = HashMap::new();
    for b in store::blocks::in_window(&mut conn, window).await? {
        by_id.entry(b.block_id).or_default().push(b);
    }
    Ok(by_id)
}

/// The active reservations overlapping `window`, every page.
async fn active_in(
    store: &Store,
    window: gpures_proto::Period,
) -> Result<HashMap<Uuid, Reservation>, StoreError> {
    let mut conn = store.acquire().await?;
    let mut all = HashMap::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store::reservations::active_page(
            &mut conn,
            window,
            after.as_ref(),
            i64::from(limits::PAGE_MAX),
        )
        .await?;
        let full = page.len() == limits::PAGE_MAX as usize;
        after = page.last().map(|r| Cursor {
            start: r.period.start,
            resource_name: r.resource_name.clone(),
            id: r.id,
        });
        all.extend(page.into_iter().map(|r| (r.id, r)));
        if !full {
            return Ok(all);
        }
    }
}
