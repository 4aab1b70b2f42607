//! Live updates: [`ChangeListener`] `LISTEN`s on
//! [`CHANGES_CHANNEL`](crate::store::CHANGES_CHANNEL), appends what each
//! notification says changed ([`Changed`]) to the [`ChangeLog`] under the
//! next version, and publishes that version in a `watch` channel, so
//! `wait_for_changes` wakes for changes made through any daemon sharing the
//! database and answers with what changed since the client's version.
//! Account changes ([`USERS_CHANNEL`](crate::store::USERS_CHANNEL)) drop the
//! account from the [`AccountCache`].
//!
//! Versions start at a random value per daemon start, so a client still
//! holding a version from an earlier daemon is told to reload. After a lost
//! connection the log records a gap ([`Changed::Everything`]): notifications
//! may have been missed while it was down.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::service::AccountCache;
use crate::service::changes::ChangeLog;
use crate::store::{CHANGES_CHANNEL, Changed, USERS_CHANNEL};
use crate::workers::{Shutdown, WorkerHandle};

/// How long the listener waits before its first retry after a lost
/// connection; it doubles up to 5 s while the database stays away.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The LISTEN/NOTIFY task.
pub struct ChangeListener {
    pub pool: PgPool,
    pub accounts: Arc<AccountCache>,
}

impl ChangeListener {
    /// Starts listening until `shutdown`; the returned channel carries the
    /// newest version of the returned log.
    pub fn start(
        self,
        mut shutdown: Shutdown,
    ) -> (watch::Receiver<u64>, Arc<ChangeLog>, WorkerHandle) {
        let ChangeListener { pool, accounts } = self;
        let log = Arc::new(ChangeLog::new());
        let (tx, rx) = watch::channel(log.version());
        let feed = Feed {
            log: log.clone(),
            tx,
        };
        let task = WorkerHandle::spawn("change listener", async move {
            let mut backoff = FIRST_RETRY;
            loop {
                tokio::select! {
                    _ = shutdown.requested() => return,
                    ended = listen(&pool, &feed, &accounts, &mut backoff) => {
                        if let Err(e) = ended {
                            tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                        }
                    }
                }
                accounts.set_listening(false);
                feed.push(Changed::Everything);
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        (rx, log, task)
    }
}

/// The log and the channel that announces its versions.
struct Feed {
    log: Arc<ChangeLog>,
    tx: watch::Sender<u64>,
}

impl Feed {
    fn push(&self, changed: Changed) {
        let version = self.log.push(changed);
        self.tx.send_replace(version);
    }
}

/// Listens until the connection is lost; `backoff` starts again from its
/// shortest once listening works, so the next outage is retried quickly.
async fn listen(
    pool: &PgPool,
    feed: &Feed,
    accounts: &AccountCache,
    backoff: &mut Duration,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([CHANGES_CHANNEL, USERS_CHANNEL])
        .await?;
    *backoff = FIRST_RETRY;
    // Whatever happened before we were listening is unknown to the clients.
    accounts.set_listening(true);
    feed.push(Changed::Everything);
    loop {
        match listener.try_recv().await? {
            Some(n) if n.channel() == USERS_CHANNEL => match n.payload().parse::<i64>() {
                Ok(id) => accounts.forget(id),
                Err(_) => accounts.set_listening(true),
            },
            Some(n) => feed.push(Changed::parse(n.payload())),
            None => return Ok(()),
        }
    }
}
