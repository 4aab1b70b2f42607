//! Repair: [`reconcile`] makes the calendar equal to the database over a
//! window (used by `calendar resync` and the worker's periodic pass).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use google_calendar3::api::{Event, EventDateTime};
use thiserror::Error;
use uuid::Uuid;

use super::google::{Calendar, PROP_RESERVATION, SyncError, event_id};
use crate::store::{self, Store, StoreError};

/// Why a repair stopped.
#[derive(Debug, Error)]
pub enum RepairError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Google Calendar: {0}")]
    Google(#[from] SyncError),
}

/// What a reconciliation changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

fn same_event(have: &Event, want: &Event) -> bool {
    let t = |e: &Option<EventDateTime>| e.as_ref().and_then(|d| d.date_time);
    have.summary == want.summary
        && have.description == want.description
        && t(&have.start) == t(&want.start)
        && t(&have.end) == t(&want.end)
        && have.status.as_deref().unwrap_or("confirmed") == "confirmed"
}

/// Makes the calendar equal to the database over `[from, to)`: missing events
/// created, changed ones updated, events of cancelled or unknown
/// reservations deleted.
///
/// # Errors
/// The first write or read that failed.
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
    let active = {
        let mut conn = store.acquire().await?;
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = store::reservations::active_page(
                &mut conn,
                window,
                after.as_ref(),
                i64::from(gpures_proto::limits::PAGE_MAX),
            )
            .await?;
            let full = page.len() == gpures_proto::limits::PAGE_MAX as usize;
            after = page.last().map(|r| gpures_proto::Cursor {
                start: r.period.start,
                resource_name: r.resource_name.clone(),
                id: r.id,
            });
            all.extend(page);
            if !full {
                break all;
            }
        }
    };
    let events = cal.list_managed(from, to).await?;
    let mut report = Reconciled::default();
    let mut seen = HashSet::new();
    for ev in &events {
        let rid = ev
            .extended_properties
            .as_ref()
            .and_then(|p| p.private.as_ref())
            .and_then(|p| p.get(PROP_RESERVATION))
            .and_then(|s| Uuid::parse_str(s).ok());
        match rid.and_then(|id| active.iter().find(|r| r.id == id)) {
            Some(r) if ev.id.as_deref() == Some(event_id(r.id).as_str()) => {
                seen.insert(r.id);
                if same_event(ev, &cal.event_for(r)) {
                    report.unchanged += 1;
                } else {
                    cal.upsert(r).await?;
                    tracing::info!(event = %event_id(r.id), "Calendar event updated: {}", event_id(r.id));
                    report.updated += 1;
                }
            }
            _ => {
                let Some(id) = ev.id.clone() else { continue };
                cal.delete_event(&id).await?;
                tracing::info!(event = %id, "Calendar event deleted: {id}");
                report.deleted += 1;
            }
        }
    }
    // Missing from the calendar (never written, or deleted by hand: then the
    // insert meets the deleted event's id and revives it by an update).
    for r in active.iter().filter(|r| !seen.contains(&r.id)) {
        cal.upsert(r).await?;
        report.created += 1;
        tracing::info!(event = %event_id(r.id), "Calendar event created: {}", event_id(r.id));
    }
    Ok(report)
}
