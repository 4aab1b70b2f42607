//! Keeps the iCalendar feeds in `[feeds] dir` up to date: rewritten a
//! second after each change (any daemon's, through the change counter) and
//! every ten minutes (the window moves), each file only when its content
//! changed, through a temporary file and a rename so a web server never
//! serves half of one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::watch;

use super::{Shutdown, WorkerHandle};
use crate::service::Service;

/// How long after a change the feeds are written (changes come in bursts).
const SETTLE: Duration = Duration::from_secs(1);
/// How often they are written without a change.
const EVERY: Duration = Duration::from_secs(600);

pub struct FeedWriter {
    pub service: Service,
    pub dir: PathBuf,
    pub past: TimeDelta,
    pub ahead: TimeDelta,
    pub changes: watch::Receiver<u64>,
}

impl FeedWriter {
    pub fn start(self, mut shutdown: Shutdown) -> WorkerHandle {
        let FeedWriter {
            service,
            dir,
            past,
            ahead,
            mut changes,
        } = self;
        WorkerHandle::spawn("feed writer", async move {
            loop {
                match service.feeds(Utc::now(), past, ahead).await {
                    Ok(files) => {
                        let dir = dir.clone();
                        let written =
                            tokio::task::spawn_blocking(move || write_all(&dir, &files)).await;
                        match written {
                            Ok(Ok(0)) => {}
                            Ok(Ok(n)) => tracing::debug!(files = n, "feeds written"),
                            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the feeds"),
                            Err(e) => tracing::warn!(error = %e, "cannot write the feeds"),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the feeds"),
                }
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(EVERY) => {}
                }
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = tokio::time::sleep(SETTLE) => {}
                }
            }
        })
    }
}

/// Writes each file whose content differs; returns how many were written.
fn write_all(
    dir: &Path,
    files: &std::collections::BTreeMap<String, String>,
) -> std::io::Result<usize> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut written = 0;
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(".{}.tmp", std::process::id()));
        std::fs::write(&tmp, text)?;
        // Feeds are for a web server or a sync client to read.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, &path)?;
        written += 1;
    }
    Ok(written)
}
