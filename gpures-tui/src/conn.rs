//! Reaching the daemon and remembering who we are: [`connect`] resolves the
//! socket (`--socket`, then `GPURES_SOCKET`, then the daemon's default), says
//! hello and turns every failure into one sentence ([`ConnError`]);
//! [`TokenStore`] keeps the session token in the user's config dir, mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use gpures_proto::{ApiError, GpuresClient, HelloReply, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use tarpc::context;
use thiserror::Error;

/// Why we could not talk to the daemon; each prints as one sentence.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error(
        "cannot reach the gpures daemon at {path}: {reason}. Is it running? \
         (`systemctl status gpures-daemon`, or set --socket / GPURES_SOCKET)"
    )]
    Unreachable { path: PathBuf, reason: String },
    #[error(
        "this gpures speaks protocol {client} but the daemon speaks {daemon}: \
         update gpures or the daemon so that they match"
    )]
    Mismatch { client: u32, daemon: u32 },
    #[error("the daemon at {path} did not answer the hello: {reason}")]
    Hello { path: PathBuf, reason: String },
}

/// The socket to use: the flag, then `GPURES_SOCKET`, then the default
/// (one rule, in [`gpures_proto::paths`]).
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    gpures_proto::paths::client_socket(flag)
}

/// Connects to `path` and says hello.
///
/// # Errors
/// [`ConnError`] with the reason in words.
pub async fn connect(path: &Path) -> Result<(GpuresClient, HelloReply), ConnError> {
    let client =
        gpures_proto::framing::connect(path)
            .await
            .map_err(|e| ConnError::Unreachable {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
    match client.hello(context::current(), PROTOCOL_VERSION).await {
        Ok(Ok(hello)) => Ok((client, hello)),
        Ok(Err(ApiError::ProtocolMismatch { daemon, client })) => {
            Err(ConnError::Mismatch { client, daemon })
        }
        Ok(Err(e)) => Err(ConnError::Hello {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) => Err(ConnError::Hello {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// The person's name from this Unix user's GECOS field (`/etc/passwd`'s
/// fifth field up to the first comma), the default display name when
/// registering. `None` when it is empty.
pub fn gecos_name() -> Option<String> {
    // SAFETY: getuid cannot fail; getpwuid_r writes into the buffers we own
    // and sets `result` to `pwd` or null.
    let gecos = unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &raw mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &raw mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_gecos.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(pwd.pw_gecos)
            .to_string_lossy()
            .into_owned()
    };
    let name = gecos
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    (!name.is_empty()).then_some(name)
}

/// What is saved after a login.
#[derive(Clone, Serialize, Deserialize)]
pub struct SavedSession {
    pub token: String,
    pub email: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for SavedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedSession")
            .field("token", &"<redacted>")
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The token file: `$XDG_CONFIG_HOME/gpures/session-<host>.json` (or the
/// platform's config dir), written with mode 0600. One per daemon host: each
/// host's daemon signs its own tokens, and home directories are often shared
/// between the hosts of a lab.
#[derive(Clone, Debug)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    /// The store for the daemon of `host` in the user's config dir.
    pub fn for_host(host: &str) -> Option<TokenStore> {
        let dir = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join("gpures"))
            .or_else(|| {
                directories::ProjectDirs::from("", "", "gpures").map(|p| p.config_dir().to_owned())
            })?;
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(TokenStore {
            path: dir.join(format!("session-{host}.json")),
        })
    }

    pub fn at(path: PathBuf) -> TokenStore {
        TokenStore { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved session, if there is one that has not expired.
    pub fn load(&self) -> Option<SavedSession> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let saved: SavedSession = serde_json::from_str(&text).ok()?;
        (saved.expires_at > Utc::now()).then_some(saved)
    }

    /// Saves a session, readable by its owner only.
    ///
    /// # Errors
    /// The config dir or the file cannot be written.
    pub fn save(&self, session: &SavedSession) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(session)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    /// Forgets the session.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sessions_are_saved_private_and_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TokenStore::at(dir.path().join("gpures/session.json"));
        assert!(store.load().is_none());
        let s = SavedSession {
            token: "t0k3n".into(),
            email: "a@b.kr".into(),
            expires_at: Utc::now() + chrono::TimeDelta::hours(1),
        };
        store.save(&s).expect("save");
        let mode = std::fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(store.load().map(|s| s.token).as_deref(), Some("t0k3n"));
        assert!(!format!("{s:?}").contains("t0k3n"));
        store
            .save(&SavedSession {
                expires_at: Utc::now() - chrono::TimeDelta::hours(1),
                ..s
            })
            .expect("save");
        assert!(store.load().is_none(), "an expired token is not used");
        store.clear();
        assert!(!store.path().exists());
    }
}
