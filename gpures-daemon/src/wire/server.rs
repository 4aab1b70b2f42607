//! The accept loop: [`serve`] takes connections on the Unix socket, reads each
//! peer's uid with `SO_PEERCRED`, enforces the connection limits
//! ([`Limiter`]), and runs the tarpc channel of each connection in its own
//! task with length-delimited bincode frames of at most
//! [`MAX_FRAME_BYTES`](gpures_proto::MAX_FRAME_BYTES). A broken or hostile
//! frame ends only its own connection.
//!
//! Calls are shared fairly: one connection has at most
//! `max_calls_per_connection` calls in flight (further frames stay unread in
//! the socket), and one Unix user at most `max_calls_per_user` over all their
//! connections, so that one user never holds more than that many database
//! connections. While another Unix user is connected, one user's calls run
//! at most `shared_calls_per_user` at once (half the cores by default), so
//! the work done for one member never fills every core and another member's
//! call finds one free. All calls share as many [`Turns`] as the database
//! pool has connections, handed round-robin between Unix users when they are
//! scarce. Long polls (`wait_for_changes`) hold no database connection
//! while they wait and do not count against the user's calls; what a change
//! means is read from the database once per change for all of them
//! ([`Service::delta`](crate::service::Service::delta)), not per poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gpures_proto::{Gpures, GpuresRequest};
use tarpc::server::{BaseChannel, Channel};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::host::unix;
use crate::service::Peer;
use crate::wire::rpc::{Connection, Shared};
use crate::wire::turns::Turns;
use crate::workers::Shutdown;

/// How long connections get to finish their calls after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection keeps serving once shutdown begins.
const CALL_GRACE: Duration = Duration::from_secs(2);

/// The limits every connection is held to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections across all users.
    pub max_connections: usize,
    /// Open connections of one Unix user.
    pub max_connections_per_user: usize,
    /// Calls in flight on one connection. Must stay below tarpc's response
    /// buffer (100): a connection at its limit is not read until one of its
    /// calls has put its reply in that buffer.
    pub max_calls_per_connection: usize,
    /// Calls in flight of one Unix user over all their connections.
    pub max_calls_per_user: usize,
    /// Calls of one Unix user that run at once while another Unix user is
    /// connected (at most `max_calls_per_user`).
    pub shared_calls_per_user: usize,
    /// Calls running at once over all users (the database pool's size);
    /// the rest wait, served round-robin by Unix user.
    pub db_turns: usize,
    /// How long a frame may take once its first byte arrived.
    pub frame_timeout: Duration,
}

/// Counts open connections, in total and per Unix uid, and holds each uid's
/// share of calls.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    open: Mutex<Open>,
    /// Unix users with a connection open (the entries of `Open::per_user`),
    /// read by every call without the lock.
    users: AtomicUsize,
    turns: Arc<Turns>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Per uid: open connections, and the calls they may make at once.
    per_user: HashMap<u32, (usize, Arc<UserCalls>)>,
}

/// The calls one Unix user may run at once, shared by all their connections.
#[derive(Debug)]
struct UserCalls {
    /// `max_calls_per_user`: taken by every call.
    all: Arc<Semaphore>,
    /// `shared_calls_per_user`: taken as well while another user is connected.
    shared: Arc<Semaphore>,
}

/// One open connection's place; released on drop.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    uid: u32,
    calls: Arc<UserCalls>,
}

/// Admits the calls of one connection's Unix user ([`Calls::admit`]).
#[derive(Clone, Debug)]
pub struct Calls {
    limiter: Arc<Limiter>,
    mine: Arc<UserCalls>,
}

/// One admitted call's share of its user's calls; given back on drop.
#[derive(Debug)]
pub struct Admitted {
    _all: OwnedSemaphorePermit,
    _shared: Option<OwnedSemaphorePermit>,
}

impl Calls {
    /// Waits until one more call of this user may run: within
    /// `max_calls_per_user`, and within `shared_calls_per_user` while another
    /// Unix user is connected. `None` only if the daemon is going away.
    pub async fn admit(&self) -> Option<Admitted> {
        let all = Arc::clone(&self.mine.all).acquire_owned().await.ok()?;
        // Counted now, not when the call was read: a user who connects while
        // this call waited is already given room.
        let shared = if self.limiter.users.load(Ordering::Acquire) > 1 {
            Some(Arc::clone(&self.mine.shared).acquire_owned().await.ok()?)
        } else {
            None
        };
        Some(Admitted {
            _all: all,
            _shared: shared,
        })
    }
}

impl Limiter {
    pub fn new(limits: Limits) -> Arc<Limiter> {
        Arc::new(Limiter {
            limits: Limits {
                max_calls_per_connection: limits.max_calls_per_connection.clamp(1, 64),
                ..limits
            },
            open: Mutex::new(Open::default()),
            users: AtomicUsize::new(0),
            turns: Turns::new(limits.db_turns),
        })
    }

    /// A place for one more connection of `uid`, if the limits allow it.
    pub fn try_acquire(self: &Arc<Self>, uid: u32) -> Option<Permit> {
        let mut open = self.open.lock().ok()?;
        let Open { total, per_user } = &mut *open;
        let open_of_uid = per_user.get(&uid).map_or(0, |(n, _)| *n);
        if *total >= self.limits.max_connections
            || open_of_uid >= self.limits.max_connections_per_user
        {
            return None;
        }
        let max_calls = self.limits.max_calls_per_user.max(1);
        let shared_calls = self.limits.shared_calls_per_user.clamp(1, max_calls);
        let (mine, calls) = per_user.entry(uid).or_insert_with(|| {
            let calls = UserCalls {
                all: Arc::new(Semaphore::new(max_calls)),
                shared: Arc::new(Semaphore::new(shared_calls)),
            };
            (0, Arc::new(calls))
        });
        *total += 1;
        *mine += 1;
        let calls = Arc::clone(calls);
        self.users.store(per_user.len(), Ordering::Release);
        Some(Permit {
            limiter: Arc::clone(self),
            uid,
            calls,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limiter.open.lock() {
            let Open { total, per_user } = &mut *open;
            *total = total.saturating_sub(1);
            if let Some((mine, _)) = per_user.get_mut(&self.uid) {
                *mine = mine.saturating_sub(1);
                if *mine == 0 {
                    per_user.remove(&self.uid);
                }
            }
            self.limiter.users.store(per_user.len(), Ordering::Release);
        }
    }
}

impl Permit {
    /// What admits this connection's calls.
    pub fn calls(&self) -> Calls {
        Calls {
            limiter: Arc::clone(&self.limiter),
            mine: Arc::clone(&self.calls),
        }
    }
}

/// Serves `listener` until `shutdown` turns true, then stops accepting and
/// waits (up to [`DRAIN_TIMEOUT`]) for open connections to end.
pub async fn serve(
    listener: UnixListener,
    shared: Shared,
    limiter: Arc<Limiter>,
    mut shutdown: Shutdown,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.requested() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(task) = accept(stream, &shared, &limiter) {
                        connections.spawn(task);
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "closing connections that did not finish in time"
        );
        connections.shutdown().await;
    }
}

fn accept(
    stream: UnixStream,
    shared: &Shared,
    limiter: &Arc<Limiter>,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the peer's credentials; closing");
            return None;
        }
    };
    let Some(permit) = limiter.try_acquire(uid) else {
        tracing::warn!(uid, "connection limit reached; closing");
        return None;
    };
    let peer = Peer {
        uid,
        unix_user: unix::name_of_uid(uid),
    };
    tracing::debug!(uid, user = %peer.unix_user, "connection accepted");
    let connection = Connection::new(shared.clone(), peer);
    let limits = limiter.limits;
    let turns = Arc::clone(&limiter.turns);
    let mut shutdown = shared.shutdown.clone();
    Some(async move {
        let user_calls = permit.calls();
        let _permit = permit;
        let transport =
            gpures_proto::framing::transport(FrameDeadline::new(stream, limits.frame_timeout));
        let requests = BaseChannel::with_defaults(transport)
            .requests()
            .take_while(|r| {
                if let Err(e) = r {
                    tracing::debug!(error = ?e, "connection ended");
                }
                std::future::ready(r.is_ok())
            })
            .filter_map(|r| std::future::ready(r.ok()))
            .for_each_concurrent(limits.max_calls_per_connection, move |request| {
                let long_poll =
                    matches!(request.get().message, GpuresRequest::WaitForChanges { .. });
                let (serve, user_calls) = (connection.clone().serve(), user_calls.clone());
                let turns = Arc::clone(&turns);
                async move {
                    // A long poll waits for a change, not for the database.
                    let _turn = if long_poll {
                        None
                    } else {
                        let Some(mine) = user_calls.admit().await else {
                            return;
                        };
                        Some((mine, turns.take(uid).await))
                    };
                    request.execute(serve).await;
                }
            });
        tokio::pin!(requests);
        tokio::select! {
            _ = &mut requests => return,
            _ = shutdown.requested() => {}
        }
        // Shutting down: long polls return at once; give calls in flight a
        // moment to send their replies. Writes run in their own tasks and
        // finish regardless, and a client's retry (same request id) is safe.
        let _ = tokio::time::timeout(CALL_GRACE, &mut requests).await;
    })
}

/// A stream that fails reads when a frame started but did not finish within
/// its timeout. It follows the length-delimited framing (a 4-byte big-endian
/// length, then that many bytes) to know where frames begin and end; idle
/// time between frames is not limited (a TUI may wait for minutes).
pub struct FrameDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Header bytes seen of the current frame (0..4).
    header: [u8; 4],
    header_len: usize,
    /// Payload bytes still to come of the current frame.
    remaining: u64,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> FrameDeadline<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        FrameDeadline {
            inner,
            timeout,
            header: [0; 4],
            header_len: 0,
            remaining: 0,
            deadline: None,
        }
    }

    fn mid_frame(&self) -> bool {
        self.header_len > 0 || self.remaining > 0
    }

    fn consume(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            let take = (4 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == 4 {
                self.remaining = u64::from(u32::from_be_bytes(self.header));
                self.header_len = 0;
            }
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FrameDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let was_mid = this.mid_frame();
                this.consume(&buf.filled()[before..]);
                if !this.mid_frame() {
                    this.deadline = None;
                } else if !was_mid || this.deadline.is_none() {
                    this.deadline = Some(Box::pin(tokio::time::sleep(this.timeout)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "a frame did not arrive in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FrameDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_calls_per_user: usize, shared_calls_per_user: usize) -> Limits {
        Limits {
            max_connections: 2,
            max_connections_per_user: 2,
            max_calls_per_connection: 32,
            max_calls_per_user,
            shared_calls_per_user,
            db_turns: 16,
            frame_timeout: Duration::from_secs(1),
        }
    }

    /// Whether one more call of `calls` is admitted within a moment.
    async fn admitted_now(calls: &Calls) -> Option<Admitted> {
        tokio::time::timeout(Duration::from_millis(20), calls.admit())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn a_user_alone_runs_their_full_share_and_the_shared_one_while_another_is_connected() {
        let limiter = Limiter::new(limits(4, 1));
        let alice = limiter.try_acquire(1000).expect("room for alice");
        let calls = alice.calls();
        let mut running = Vec::new();
        for _ in 0..4 {
            running.push(admitted_now(&calls).await.expect("alone: four at once"));
        }
        assert!(admitted_now(&calls).await.is_none(), "max_calls_per_user");
        running.clear();
        // Bob connects: Alice's calls run one at a time, and Bob's are not
        // held up by hers.
        let bob = limiter.try_acquire(1001).expect("room for bob");
        let first = admitted_now(&calls).await.expect("one call");
        assert!(admitted_now(&calls).await.is_none(), "one at a time");
        let bobs = admitted_now(&bob.calls()).await.expect("bob's call runs");
        drop(first);
        let next = admitted_now(&calls).await.expect("the next once one ended");
        drop((next, bobs));
        // Bob leaves: Alice has her full share again.
        drop(bob);
        for _ in 0..4 {
            running.push(admitted_now(&calls).await.expect("alone again"));
        }
    }

    #[tokio::test]
    async fn a_refused_connection_counts_as_no_user() {
        let limiter = Limiter::new(limits(4, 1));
        let alice = [
            limiter.try_acquire(1000).expect("first"),
            limiter.try_acquire(1000).expect("second"),
        ];
        assert!(limiter.try_acquire(1001).is_none(), "max_connections");
        // Bob was refused, so Alice is still alone.
        let calls = alice[0].calls();
        let first = admitted_now(&calls).await.expect("one");
        let second = admitted_now(&calls).await.expect("two: still alone");
        drop((first, second));
    }
}
