//! Acting on unreserved use (`[enforce]`): after a grace, `stop` sends
//! SIGSTOP to a process on a GPU its owner does not hold (and SIGCONT once
//! the GPU is theirs or free), `kill` sends SIGTERM and, if it still runs
//! after [`TERM_WAIT`], SIGKILL. Only on this host, only on fresh telemetry,
//! only for a process whose pid, start time and uid still match what was
//! seen, never for root, system users or the exempt list; every signal is
//! audited and told to the process's owner. `dry_run` logs instead.
//!
//! The processes it stopped are also written to a journal in the state
//! directory before the signal is sent, so that when the daemon dies without
//! a clean shutdown (which continues them), the next start continues them
//! ([`resume_journal`]) instead of leaving someone's job stopped for good.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use gpures_proto::{NotificationKind, procfs};

use super::jobs::uid_of;
use super::notify;
use super::{Result, Service};
use crate::store::audit::{self, AuditAction, By, Target};
use crate::store::notifications::New;
use crate::store::users;

/// How long a process has after SIGTERM before SIGKILL.
pub const TERM_WAIT: TimeDelta = TimeDelta::seconds(10);

/// The Unix user the audit log names for enforcement.
pub const ENFORCE_ACTOR: &str = "gpures-enforce";

/// `[enforce] mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    Warn,
    Stop,
    Kill,
}

#[derive(Clone, Debug)]
pub struct EnforceRules {
    pub mode: Mode,
    pub grace: TimeDelta,
    /// How long after a booking ends its owner's processes on its GPUs are
    /// left alone (then they are unreserved use, held GPU or not).
    pub overrun_grace: TimeDelta,
    /// Unix users never acted on (root and system users never are).
    pub exempt: Vec<String>,
    /// Also act on processes on GPUs nobody holds.
    pub unheld: bool,
    pub dry_run: bool,
    /// Where the processes it stopped are written (`None`: nowhere).
    pub journal: Option<PathBuf>,
}

impl Default for EnforceRules {
    fn default() -> Self {
        EnforceRules {
            mode: Mode::Warn,
            grace: TimeDelta::minutes(10),
            overrun_grace: TimeDelta::minutes(10),
            exempt: Vec::new(),
            unheld: false,
            dry_run: false,
            journal: None,
        }
    }
}

/// A process on a GPU its owner does not hold, as this pass sees it.
#[derive(Clone, Debug)]
pub struct Intruder {
    pub pid: u32,
    pub name: String,
    pub unix_user: String,
    pub resource_id: i64,
    pub resource_name: String,
    /// Who holds the GPU, if anyone (display name).
    pub holder: Option<String>,
    /// When the intruder's own booking of this GPU ended, if it overran one.
    pub overran: Option<DateTime<Utc>>,
}

/// A process gpures acted on or watches, by pid and start time.
#[derive(Clone, Debug)]
struct Tracked {
    start_ticks: u64,
    since: DateTime<Utc>,
    intruder: Intruder,
}

/// What enforcement remembers between passes (in memory: a restart starts
/// every grace again, which only delays).
#[derive(Debug, Default)]
pub struct Enforcer {
    seen: HashMap<u32, Tracked>,
    stopped: HashMap<u32, Tracked>,
    /// Sent SIGTERM, when.
    terminated: HashMap<u32, Tracked>,
}

enum Act {
    Stop(Tracked),
    Continue(Tracked),
    Term(Tracked),
    Kill(Tracked),
}

/// Whether `t` is still the same process (pid, start time, owner).
fn same(pid: u32, t: &Tracked) -> bool {
    same_process(pid, t.start_ticks, &t.intruder.unix_user)
}

fn same_process(pid: u32, start_ticks: u64, unix_user: &str) -> bool {
    procfs::start_ticks(pid).ok() == Some(start_ticks)
        && crate::host::unix::user_by_name(unix_user).is_some_and(|u| uid_of(pid) == Some(u.uid))
}

/// A stopped process as the journal keeps it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Stopped {
    pub pid: u32,
    pub start_ticks: u64,
    pub unix_user: String,
}

/// Writes the stopped set to `path` (atomically: a new file renamed over
/// the old); an empty set removes it.
fn write_journal(path: &Path, stopped: &[Stopped]) -> std::io::Result<()> {
    if stopped.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec(stopped).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// Continues the processes a previous daemon stopped and did not continue
/// (it died without a clean shutdown): each one still the same process
/// (pid, start time, owner). Removes the journal; returns what it continued.
///
/// # Errors
/// The journal exists but cannot be read or removed.
pub fn resume_journal(path: &Path) -> std::io::Result<Vec<Stopped>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // A torn or foreign file continues nothing but is still removed.
    let listed: Vec<Stopped> = serde_json::from_slice(&text).unwrap_or_default();
    let mut continued = Vec::new();
    for s in listed {
        if same_process(s.pid, s.start_ticks, &s.unix_user) && signal(s.pid, libc::SIGCONT).is_ok()
        {
            tracing::info!(pid = s.pid, user = %s.unix_user, "enforce: continued a process the previous daemon stopped");
            continued.push(s);
        }
    }
    std::fs::remove_file(path)?;
    Ok(continued)
}

impl Enforcer {
    /// The stopped set as the journal keeps it.
    fn journal_entries(&self) -> Vec<Stopped> {
        self.stopped
            .iter()
            .map(|(pid, t)| Stopped {
                pid: *pid,
                start_ticks: t.start_ticks,
                unix_user: t.intruder.unix_user.clone(),
            })
            .collect()
    }
}

fn signal(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Service {
    /// One enforcement pass over this pass's `intruders` (fresh telemetry
    /// only) and the processes stopped before; `holders` maps a resource to
    /// the Unix user holding it now. Returns how many signals were sent.
    ///
    /// # Errors
    /// Store failures (the signals already sent stay sent).
    pub(super) async fn enforce(
        &self,
        intruders: Vec<Intruder>,
        holders: &HashMap<i64, String>,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let rules = self.settings().enforce.clone();
        if !matches!(rules.mode, Mode::Stop | Mode::Kill) {
            return Ok(0);
        }
        let acts = {
            let mut e = self
                .enforcer()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let e = &mut *e;
            let mut acts = Vec::new();
            e.seen
                .retain(|pid, _| intruders.iter().any(|i| i.pid == *pid));
            for i in intruders {
                let Ok(start_ticks) = procfs::start_ticks(i.pid) else {
                    continue;
                };
                let t = e.seen.entry(i.pid).or_insert_with(|| Tracked {
                    start_ticks,
                    since: now,
                    intruder: i.clone(),
                });
                if t.start_ticks != start_ticks {
                    *t = Tracked {
                        start_ticks,
                        since: now,
                        intruder: i.clone(),
                    };
                }
                t.intruder = i;
                let due = now - t.since >= rules.grace;
                let pid = t.intruder.pid;
                if due
                    && !e.stopped.contains_key(&pid)
                    && !e.terminated.contains_key(&pid)
                    && same(pid, t)
                {
                    acts.push(match rules.mode {
                        Mode::Stop => Act::Stop(t.clone()),
                        _ => Act::Term(t.clone()),
                    });
                }
            }
            // A stopped process goes on once its GPU is its owner's, or
            // free when it was stopped for someone else's booking (stopped
            // on a GPU nobody held, or after overrunning, it waits for its
            // owner to book or adopt it: going on would only be stopped
            // again).
            e.stopped.retain(|pid, t| {
                if !same(*pid, t) {
                    return false;
                }
                let go_on = match holders.get(&t.intruder.resource_id) {
                    Some(h) => *h == t.intruder.unix_user,
                    None => t.intruder.holder.is_some() && t.intruder.overran.is_none(),
                };
                if go_on {
                    acts.push(Act::Continue(t.clone()));
                }
                !go_on
            });
            e.terminated.retain(|pid, t| {
                if !same(*pid, t) {
                    return false;
                }
                if now - t.since >= TERM_WAIT {
                    acts.push(Act::Kill(t.clone()));
                    return false;
                }
                true
            });
            for act in &acts {
                match act {
                    Act::Stop(t) => {
                        e.stopped.insert(t.intruder.pid, t.clone());
                    }
                    Act::Term(t) => {
                        e.terminated.insert(
                            t.intruder.pid,
                            Tracked {
                                since: now,
                                ..t.clone()
                            },
                        );
                    }
                    Act::Continue(_) | Act::Kill(_) => {}
                }
            }
            if !rules.dry_run
                && let Some(path) = &rules.journal
                && let Err(err) = write_journal(path, &e.journal_entries())
            {
                // Better not to stop what a crash would leave stopped.
                tracing::warn!(error = %err, path = %path.display(), "enforce: cannot write the journal; stopping nothing this pass");
                let not_stopped: Vec<u32> = acts
                    .iter()
                    .filter_map(|a| match a {
                        Act::Stop(t) => Some(t.intruder.pid),
                        _ => None,
                    })
                    .collect();
                acts.retain(|a| !matches!(a, Act::Stop(_)));
                e.stopped.retain(|pid, _| !not_stopped.contains(pid));
            }
            if rules.dry_run {
                // Nothing was sent: nothing to continue or escalate later.
                e.stopped.clear();
                e.terminated.clear();
                for act in &acts {
                    if let Act::Stop(t) | Act::Term(t) = act {
                        e.seen.insert(
                            t.intruder.pid,
                            Tracked {
                                since: now,
                                ..t.clone()
                            },
                        );
                    }
                }
            }
            acts
        };
        let mut sent = 0;
        for act in acts {
            let (t, sig, verb, action) = match &act {
                Act::Stop(t) => (t, libc::SIGSTOP, "stopped", AuditAction::ProcessStop),
                Act::Continue(t) => (t, libc::SIGCONT, "continued", AuditAction::ProcessContinue),
                Act::Term(t) => (
                    t,
                    libc::SIGTERM,
                    "asked to end (SIGTERM)",
                    AuditAction::ProcessTerminate,
                ),
                Act::Kill(t) => (
                    t,
                    libc::SIGKILL,
                    "killed (SIGKILL)",
                    AuditAction::ProcessKill,
                ),
            };
            let i = &t.intruder;
            let why = match (&act, &i.holder) {
                (Act::Continue(_), _) => format!("{} is now yours or free", i.resource_name),
                (_, _) if i.overran.is_some() => format!(
                    "it still ran on {} {} min after your booking of it ended",
                    i.resource_name,
                    i.overran.map_or(0, |end| (now - end).num_minutes().max(0))
                ),
                (_, Some(h)) => format!(
                    "it ran on {} held by {h} for {} min after the warning",
                    i.resource_name,
                    (now - t.since).num_minutes().max(0)
                ),
                (_, None) => format!("it ran on {} without a booking", i.resource_name),
            };
            let what = format!("pid {} ({}) of {}", i.pid, i.name, i.unix_user);
            if rules.dry_run {
                tracing::info!(pid = i.pid, user = %i.unix_user, gpu = %i.resource_name, "enforce (dry run): would have {verb} {what}: {why}");
                continue;
            }
            if let Err(e) = signal(i.pid, sig) {
                tracing::warn!(pid = i.pid, error = %e, "enforce: the signal was refused (does the unit grant CAP_KILL?)");
                continue;
            }
            sent += 1;
            tracing::info!(pid = i.pid, user = %i.unix_user, gpu = %i.resource_name, "enforce: {verb} {what}: {why}");
            let reason = format!("{verb} {what}: {why}");
            let mut tx = self.store().begin().await?;
            let accounts = users::of_unix_user(&mut tx, &i.unix_user).await?;
            let by = By {
                user_id: None,
                unix_user: ENFORCE_ACTOR,
            };
            let target = Target {
                reservation: None,
                resource: Some(i.resource_id),
                user: accounts.first().map(|a| a.id),
            };
            audit::record_with(&mut tx, by, action, target, Some(&reason)).await?;
            for a in accounts.iter().filter(|a| !a.disabled) {
                let new = New {
                    user_id: a.id,
                    kind: NotificationKind::ActionTaken,
                    reservation_id: None,
                    dedupe: None,
                    title: format!(
                        "gpures {verb} your process {} on {}",
                        i.pid, i.resource_name
                    ),
                    body: format!(
                        "{why}; book a free GPU (gpures when --gpus 1 --for 2h) or adopt it on one (gpures adopt {})",
                        i.pid
                    ),
                };
                notify::push(&mut tx, &self.settings().notify, new).await?;
            }
            tx.commit().await?;
        }
        Ok(sent)
    }
}

impl Service {
    /// Continues every process this daemon stopped (at shutdown: the next
    /// daemon would not know it stopped them). Returns how many.
    pub fn continue_stopped(&self) -> usize {
        let stopped: Vec<(u32, Tracked)> = self
            .enforcer()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stopped
            .drain()
            .collect();
        let mut n = 0;
        for (pid, t) in stopped {
            if same(pid, &t) && signal(pid, libc::SIGCONT).is_ok() {
                tracing::info!(pid, user = %t.intruder.unix_user, "enforce: continued at shutdown");
                n += 1;
            }
        }
        if let Some(path) = &self.settings().enforce.journal
            && let Err(e) = write_journal(path, &[])
        {
            tracing::warn!(error = %e, "enforce: cannot remove the journal");
        }
        n
    }
}

/// Where [`Service`] keeps an [`Enforcer`].
pub(super) type EnforcerCell = Mutex<Enforcer>;

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    /// The state letter of `/proc/<pid>/stat` (`T`: stopped).
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.chars().next()
    }

    #[test]
    fn a_restart_continues_what_a_dead_daemon_left_stopped_and_nothing_else() {
        if crate::host::unix::euid() != 0 {
            eprintln!("skipped: needs root to run a process as nobody");
            return;
        }
        let mut job = std::process::Command::new("sleep")
            .arg("60")
            .uid(65534)
            .gid(65534)
            .spawn()
            .expect("sleep");
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .uid(65534)
            .gid(65534)
            .spawn()
            .expect("sleep");
        let (pid, other_pid) = (job.id(), other.id());
        signal(pid, libc::SIGSTOP).expect("stop");
        signal(other_pid, libc::SIGSTOP).expect("stop");
        for _ in 0..100 {
            if state(pid) == Some('T') && state(other_pid) == Some('T') {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("enforce-stopped.json");
        let entries = vec![
            Stopped {
                pid,
                start_ticks: procfs::start_ticks(pid).expect("ticks"),
                unix_user: "nobody".into(),
            },
            // A recycled pid (another start time) is not this process.
            Stopped {
                pid: other_pid,
                start_ticks: procfs::start_ticks(other_pid).expect("ticks") + 1,
                unix_user: "nobody".into(),
            },
        ];
        write_journal(&path, &entries).expect("journal");
        let continued = resume_journal(&path).expect("resume");
        assert_eq!(continued.len(), 1);
        assert_eq!(continued[0].pid, pid);
        for _ in 0..100 {
            if state(pid) != Some('T') {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_ne!(state(pid), Some('T'), "continued");
        assert_eq!(state(other_pid), Some('T'), "not the process it named");
        assert!(!path.exists(), "the journal is used once");
        assert!(resume_journal(&path).expect("none").is_empty());
        // A torn journal continues nothing and goes away.
        std::fs::write(&path, b"[{\"pid\": 1").expect("torn");
        assert!(resume_journal(&path).expect("torn").is_empty());
        assert!(!path.exists());
        let _ = job.kill();
        let _ = other.kill();
        let _ = job.wait();
        let _ = other.wait();
    }
}
