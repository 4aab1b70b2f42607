//! The two systemd protocols the daemon speaks, without a library:
//! socket activation ([`take_listener`]: the listening socket arrives as fd 3
//! with `LISTEN_FDS=1` and `LISTEN_PID` set to our pid) and readiness and
//! watchdog notification ([`Notifier`]: datagrams to `$NOTIFY_SOCKET`).

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The socket systemd passed us, if it passed one for this process. Clears
/// the variables so that children (the embedded PostgreSQL) do not inherit
/// them. Call it before any thread starts.
pub fn take_listener() -> Option<std::os::unix::net::UnixListener> {
    let fds = std::env::var("LISTEN_FDS").ok()?;
    let pid = std::env::var("LISTEN_PID").ok();
    // SAFETY: called from `main` before the runtime and its threads exist.
    unsafe {
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return None;
    }
    if fds.trim() != "1" {
        tracing::warn!(%fds, "systemd passed several sockets; serving the first");
    }
    // SAFETY: systemd passed us this fd; nothing else in the process owns it.
    Some(unsafe { std::os::unix::net::UnixListener::from_raw_fd(LISTEN_FDS_START) })
}

/// Sends `READY=1`, `STOPPING=1` and `WATCHDOG=1` to systemd when it asked
/// for them (`NOTIFY_SOCKET`, `WATCHDOG_USEC`); does nothing otherwise.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    /// An abstract socket name (`@` in the variable).
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads the environment and clears it, so that children do not notify.
    /// Call it before any thread starts.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").map(|s| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(s.as_os_str()).to_vec();
            match bytes.strip_prefix(b"@") {
                Some(name) => Target::Abstract(name.to_vec()),
                None => Target::Path(PathBuf::from(s)),
            }
        });
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| {
                std::env::var("WATCHDOG_PID")
                    .ok()
                    .is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()))
            })
            .map(Duration::from_micros);
        // SAFETY: called from `main` before the runtime and its threads exist.
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
        }
        Notifier { target, watchdog }
    }

    /// A notifier for the same target without the watchdog (for the ping task).
    pub fn clone_target(&self) -> Notifier {
        Notifier {
            target: match &self.target {
                Some(Target::Path(p)) => Some(Target::Path(p.clone())),
                Some(Target::Abstract(n)) => Some(Target::Abstract(n.clone())),
                None => None,
            },
            watchdog: None,
        }
    }

    /// How often to ping the watchdog (half its timeout), if it is on.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Sends one notification; failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        let result = UnixDatagram::unbound().and_then(|sock| match target {
            Target::Path(p) => sock.send_to(state.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}
