//! Live updates: [`spawn`] runs a task that `LISTEN`s on
//! [`CHANGES_CHANNEL`](crate::store::CHANGES_CHANNEL) and bumps a counter in a
//! `watch` channel on every notification, so `wait_for_changes` wakes for
//! changes made through any daemon sharing the database.
//!
//! The counter starts at a random value per daemon start, so a client still
//! holding a value from an earlier daemon sees a difference and refetches.
//! After a lost connection the counter is bumped too: notifications may have
//! been missed while it was down.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use std::sync::Arc;

use crate::store::{CHANGES_CHANNEL, USERS_CHANNEL, UserCache};

/// Starts the listener task; it ends when `shutdown` turns true. Account
/// changes (`gpures_users`) drop the account from `users`.
pub fn spawn(
    pool: PgPool,
    users: Arc<UserCache>,
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<u64>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(rand::random::<u64>() | 1);
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                _ = crate::shutdown_requested(&mut shutdown) => return,
                ended = listen(&pool, &tx, &users) => {
                    if let Err(e) = ended {
                        tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                    }
                }
            }
            users.set_listening(false);
            tx.send_modify(|v| *v = v.wrapping_add(1));
            tokio::select! {
                _ = crate::shutdown_requested(&mut shutdown) => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    (rx, task)
}

async fn listen(
    pool: &PgPool,
    tx: &watch::Sender<u64>,
    users: &UserCache,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([CHANGES_CHANNEL, USERS_CHANNEL])
        .await?;
    // Whatever happened before we were listening is unknown to the clients.
    users.set_listening(true);
    tx.send_modify(|v| *v = v.wrapping_add(1));
    loop {
        match listener.try_recv().await? {
            Some(n) if n.channel() == USERS_CHANNEL => match n.payload().parse::<i64>() {
                Ok(id) => users.forget(id),
                Err(_) => users.set_listening(true),
            },
            Some(_) => tx.send_modify(|v| *v = v.wrapping_add(1)),
            None => return Ok(()),
        }
    }
}
