//! Turns at the database, shared round-robin between Unix users: a call
//! takes a [`Turn`] before it runs and gives it back when it ends. While
//! turns are free a call takes one at once; when they are all taken, calls
//! wait per Unix user and each freed turn goes to the next user in line, so
//! a member with one call waits for at most one call of each other busy
//! member, not for everything a flood has queued.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// The turns of one daemon.
#[derive(Debug)]
pub struct Turns {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Users with calls waiting, in the order they get the next turns.
    ring: VecDeque<u32>,
    waiting: HashMap<u32, VecDeque<oneshot::Sender<Turn>>>,
}

/// One call's turn; given back on drop.
#[derive(Debug)]
pub struct Turn {
    turns: Arc<Turns>,
}

impl Turns {
    /// `n` turns (at least one).
    pub fn new(n: usize) -> Arc<Turns> {
        Arc::new(Turns {
            state: Mutex::new(State {
                free: n.max(1),
                ring: VecDeque::new(),
                waiting: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change below leaves the state whole: a panic elsewhere
        // cannot poison it half-way.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn for a call of `uid`, when its place in line comes.
    pub async fn take(self: &Arc<Self>, uid: u32) -> Turn {
        let waiting = {
            let mut s = self.lock();
            if s.free > 0 && s.ring.is_empty() {
                s.free -= 1;
                return Turn {
                    turns: Arc::clone(self),
                };
            }
            let (tx, rx) = oneshot::channel();
            let State { ring, waiting, .. } = &mut *s;
            let queue = waiting.entry(uid).or_default();
            if queue.is_empty() {
                ring.push_back(uid);
            }
            queue.push_back(tx);
            rx
        };
        match waiting.await {
            Ok(turn) => turn,
            // Never: a sender is only dropped after its turn was sent, and
            // the state lives as long as `self`. Wait in line again.
            Err(_) => Box::pin(self.take(uid)).await,
        }
    }

    /// Hands a freed turn to the next user in line, or keeps it.
    fn release(self: &Arc<Self>) {
        let mut s = self.lock();
        loop {
            let Some(uid) = s.ring.pop_front() else {
                s.free += 1;
                return;
            };
            let State { ring, waiting, .. } = &mut *s;
            let Some(queue) = waiting.get_mut(&uid) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                waiting.remove(&uid);
            } else {
                ring.push_back(uid);
            }
            let Some(next) = next else {
                continue;
            };
            let turn = Turn {
                turns: Arc::clone(self),
            };
            match next.send(turn) {
                Ok(()) => return,
                // That call went away while waiting: the next one.
                Err(turn) => std::mem::forget(turn),
            }
        }
    }

    /// Turns free now (for tests and diagnostics).
    pub fn free(&self) -> usize {
        self.lock().free
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turns.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_freed_turn_goes_to_the_next_user_not_the_next_call() {
        let turns = Turns::new(2);
        let held = [turns.take(1).await, turns.take(1).await];
        assert_eq!(turns.free(), 0);
        // User 1 queues four more calls, then user 2 one.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (uid, label) in [(1, "a1"), (1, "a2"), (1, "a3"), (1, "a4"), (2, "b1")] {
            let (turns, tx) = (Arc::clone(&turns), tx.clone());
            tasks.push(tokio::spawn(async move {
                let turn = turns.take(uid).await;
                let _ = tx.send((label, turn));
            }));
            tokio::task::yield_now().await;
        }
        drop(tx);
        // Each turn given back goes to the next user in line.
        let mut order = Vec::new();
        drop(held);
        for _ in 0..5 {
            let (label, turn) = rx.recv().await.expect("a turn");
            order.push(label);
            drop(turn);
        }
        assert_eq!(order, ["a1", "b1", "a2", "a3", "a4"]);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(turns.free(), 2, "every turn came back");
    }

    #[tokio::test]
    async fn a_call_that_gives_up_waiting_loses_no_turn() {
        let turns = Turns::new(1);
        let held = turns.take(7).await;
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(20), turns.take(8)).await;
        assert!(gave_up.is_err(), "still waiting when it gave up");
        drop(held);
        assert_eq!(turns.free(), 1);
        let again = turns.take(8).await;
        assert_eq!(turns.free(), 0);
        drop(again);
        assert_eq!(turns.free(), 1);
    }
}
