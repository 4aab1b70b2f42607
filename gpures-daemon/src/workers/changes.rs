//! Live updates: [`ChangeListener`] `LISTEN`s on
//! [`CHANGES_CHANNEL`](crate::store::CHANGES_CHANNEL) and bumps a counter in a
//! `watch` channel on every notification, so `wait_for_changes` wakes for
//! changes made through any daemon sharing the database. Account changes
//! ([`USERS_CHANNEL`](crate::store::USERS_CHANNEL)) drop the account from the
//! [`AccountCache`].
//!
//! The counter starts at a random value per daemon start, so a client still
//! holding a value from an earlier daemon sees a difference and refetches.
//! After a lost connection the counter is bumped too: notifications may have
//! been missed while it was down.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::service::AccountCache;
use crate::store::{CHANGES_CHANNEL, USERS_CHANNEL};
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
    /// change counter.
    pub fn start(self, mut shutdown: Shutdown) -> (watch::Receiver<u64>, WorkerHandle) {
        let ChangeListener { pool, accounts } = self;
        let (tx, rx) = watch::channel(rand::random::<u64>() | 1);
        let task = WorkerHandle::spawn("change listener", async move {
            let mut backoff = FIRST_RETRY;
            loop {
                tokio::select! {
                    _ = shutdown.requested() => return,
                    ended = listen(&pool, &tx, &accounts, &mut backoff) => {
                        if let Err(e) = ended {
                            tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                        }
                    }
                }
                accounts.set_listening(false);
                tx.send_modify(|v| *v = v.wrapping_add(1));
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        (rx, task)
    }
}

/// Listens until the connection is lost; `backoff` starts again from its
/// shortest once listening works, so the next outage is retried quickly.
async fn listen(
    pool: &PgPool,
    tx: &watch::Sender<u64>,
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
    tx.send_modify(|v| *v = v.wrapping_add(1));
    loop {
        match listener.try_recv().await? {
            Some(n) if n.channel() == USERS_CHANNEL => match n.payload().parse::<i64>() {
                Ok(id) => accounts.forget(id),
                Err(_) => accounts.set_listening(true),
            },
            Some(_) => tx.send_modify(|v| *v = v.wrapping_add(1)),
            None => return Ok(()),
        }
    }
}
