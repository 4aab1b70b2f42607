//! What changed since a client's version: the [`ChangeLog`] the change
//! listener appends to, and [`Service::delta`], which turns a stretch of it
//! into the [`Delta`] a client applies instead of reloading.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use gpures_proto::{Delta, limits};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::{Actor, Result, Service};
use crate::store::{Changed, reservations};

/// How many changes the log remembers: a client further behind reloads.
pub const LOG_LEN: usize = 1024;

/// One change in the log. What it means for a client (the reservations'
/// rows, the status of their resources) is read once, by the first
/// `wait_for_changes` that needs it, and shared by every client after.
#[derive(Debug)]
pub struct Entry {
    pub version: u64,
    pub changed: Changed,
    pub resolved: OnceCell<Arc<gpures_proto::Delta>>,
}

/// The last [`LOG_LEN`] changes this daemon heard, in order; versions are
/// consecutive.
#[derive(Debug)]
pub struct ChangeLog {
    inner: Mutex<Log>,
}

#[derive(Debug)]
struct Log {
    version: u64,
    entries: VecDeque<Arc<Entry>>,
}

impl ChangeLog {
    pub(crate) fn new() -> ChangeLog {
        ChangeLog {
            inner: Mutex::new(Log {
                // Never 0, the version a client asks with first.
                version: rand::random::<u64>() | 1,
                entries: VecDeque::with_capacity(LOG_LEN),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // The log is only appended to and read: a panic elsewhere leaves it whole.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest version.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// Appends `changed` and returns its version.
    pub(crate) fn push(&self, changed: Changed) -> u64 {
        let mut log = self.lock();
        log.version = log.version.wrapping_add(1).max(1);
        let version = log.version;
        if log.entries.len() == LOG_LEN {
            log.entries.pop_front();
        }
        log.entries.push_back(Arc::new(Entry {
            version,
            changed,
            resolved: OnceCell::new(),
        }));
        version
    }

    /// The newest version and the changes after `since`; `None` for the
    /// changes when the log cannot tell them (a version it never gave, or
    /// one older than it remembers).
    pub fn since(&self, since: u64) -> (u64, Option<Vec<Arc<Entry>>>) {
        let log = self.lock();
        if since == log.version {
            return (since, Some(Vec::new()));
        }
        // Versions are consecutive, so `since` sits at a known place (the
        // one wrap past 0 aside, after which such a client reloads).
        let after = log.entries.front().and_then(|first| {
            let i = usize::try_from(since.wrapping_sub(first.version)).ok()?;
            (log.entries.get(i)?.version == since)
                .then(|| log.entries.iter().skip(i + 1).cloned().collect())
        });
        (log.version, after)
    }
}

impl Service {
    /// What `entries` changed, as `actor` sees it; `None` when the client
    /// must reload instead (a change the log does not detail, or more than
    /// one reply carries).
    ///
    /// # Errors
    /// Store failures while reading the changed reservations.
    pub async fn delta(&self, actor: &Actor, entries: &[Arc<Entry>]) -> Result<Option<Delta>> {
        let me = actor.user().map(|u| u.id);
        let mut delta = Delta::default();
        for entry in entries {
            match &entry.changed {
                Changed::Everything => return Ok(None),
                Changed::Queue => delta.queue = true,
                Changed::Inbox(user) => delta.inbox |= me == Some(*user),
                Changed::Calendar => delta.calendar |= actor.is_admin(),
                Changed::Reservations(ids) => {
                    let part = entry.resolved.get_or_try_init(|| self.resolve(ids)).await?;
                    merge(&mut delta, part);
                }
            }
        }
        if gpures_proto::framing::encoded_len(&delta) > limits::PAGE_BYTES_MAX {
            return Ok(None);
        }
        Ok(Some(delta))
    }

    /// The reservations `ids` as they are now, and the status of their
    /// resources.
    async fn resolve(&self, ids: &[Uuid]) -> Result<Arc<Delta>> {
        let mut conn = self.store().acquire().await?;
        let rows = reservations::by_ids(&mut conn, ids).await?;
        let mut on: Vec<i64> = rows.iter().map(|r| r.resource_id).collect();
        on.sort_unstable();
        on.dedup();
        let status = if on.is_empty() {
            Vec::new()
        } else {
            self.status_of(&mut conn, super::status::Scope::Only(&on))
                .await?
                .resources
        };
        Ok(Arc::new(Delta {
            reservations: rows,
            status,
            ..Delta::default()
        }))
    }
}

/// Adds `part` to `delta`: a later row of the same reservation (or status of
/// the same resource) replaces the earlier one.
fn merge(delta: &mut Delta, part: &Delta) {
    for r in &part.reservations {
        delta.reservations.retain(|old| old.id != r.id);
        delta.reservations.push(r.clone());
    }
    for s in &part.status {
        delta.status.retain(|old| old.resource.id != s.resource.id);
        delta.status.push(s.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(entries: &[Arc<Entry>]) -> Vec<u64> {
        entries.iter().map(|e| e.version).collect()
    }

    #[test]
    fn the_log_tells_what_came_after_a_version_it_still_holds() {
        let log = ChangeLog::new();
        let start = log.version();
        let (now, after) = log.since(start);
        assert_eq!((now, after.map(|a| a.len())), (start, Some(0)));
        let v1 = log.push(Changed::Queue);
        let v2 = log.push(Changed::Inbox(7));
        assert_eq!((v1, v2), (start.wrapping_add(1), start.wrapping_add(2)));
        let (now, after) = log.since(v1);
        assert_eq!(now, v2);
        assert_eq!(versions(&after.expect("held")), vec![v2]);
        // The start version was never an entry: the log cannot tell.
        assert!(log.since(start).1.is_none());
        assert!(log.since(0).1.is_none());
        // Past its length the oldest are forgotten.
        for _ in 0..LOG_LEN {
            log.push(Changed::Queue);
        }
        assert!(log.since(v2).1.is_none(), "older than the log");
        let newest = log.version();
        let (_, after) = log.since(newest - 3);
        assert_eq!(after.expect("held").len(), 3);
    }
}
