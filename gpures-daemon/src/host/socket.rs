//! Binding the daemon's Unix socket.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context as _, Result};
use tokio::net::UnixListener;

use crate::config::Config;
use crate::host::unix;

/// Binds the configured socket: removes a stale file, binds, and applies the
/// configured mode and group.
///
/// # Errors
/// The path is in use by a live daemon, or cannot be bound or chmod'ed.
pub fn bind_socket(config: &Config) -> Result<UnixListener> {
    let path = config.socket_path();
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            anyhow::bail!("another daemon is serving {}", path.display());
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(
        &path,
        std::fs::Permissions::from_mode(config.socket_mode_bits()?),
    )
    .with_context(|| format!("setting the mode of {}", path.display()))?;
    if let Some(group) = &config.socket_group {
        let gid = unix::group_by_name(group)
            .with_context(|| format!("socket_group {group:?} does not exist"))?;
        unix::chown(&path, u32::MAX, gid)
            .with_context(|| format!("setting the group of {}", path.display()))?;
    }
    Ok(listener)
}
