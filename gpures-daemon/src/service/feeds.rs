//! iCalendar feeds for calendars that are not Google (`[feeds]`): the lab's
//! reservations in `lab.ics` and each member's in `users/<unix user>.ics`, in
//! the shape of [`gpures_proto::ics`].

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use gpures_proto::{Period, Reservation, ReservationFilter, ics};

use super::{Result, Service};
use crate::store::{reservations, users};

/// One page of the feed query.
const PAGE: i64 = 5_000;

/// Whether `name` is safe as a file name in the feed folder (a Unix user
/// name as `useradd` accepts it by default).
fn file_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Service {
    /// The feed files, by file name: the lab's and one per Unix user with
    /// an account (empty when they have nothing in the window, so a
    /// subscription never breaks), over `[now - past, now + ahead)`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn feeds(
        &self,
        now: DateTime<Utc>,
        past: TimeDelta,
        ahead: TimeDelta,
    ) -> Result<BTreeMap<String, String>> {
        let filter = ReservationFilter {
            resources: Vec::new(),
            user_email: None,
            window: Some(Period {
                start: now - past,
                end: now + ahead,
            }),
            include_cancelled: true,
        };
        let mut conn = self.store().acquire().await?;
        let mut all: Vec<Reservation> = Vec::new();
        loop {
            let after = all.last().map(|r| gpures_proto::Cursor {
                start: r.period.start,
                resource_name: r.resource_name.clone(),
                id: r.id,
            });
            let page = reservations::page(&mut conn, &filter, after.as_ref(), PAGE).await?;
            let done = i64::try_from(page.len()).unwrap_or(i64::MAX) < PAGE;
            all.extend(page);
            if done {
                break;
            }
        }
        let accounts = users::all_unix_users(&mut conn).await?;
        drop(conn);
        let unix_of: BTreeMap<i64, &str> =
            accounts.iter().map(|(id, u)| (*id, u.as_str())).collect();
        let mut per_user: BTreeMap<&str, Vec<Reservation>> = BTreeMap::new();
        for (_, unix) in &accounts {
            per_user.entry(unix.as_str()).or_default();
        }
        for r in &all {
            if let Some(unix) = unix_of.get(&r.user.id) {
                per_user.entry(unix).or_default().push(r.clone());
            }
        }
        let mut files = BTreeMap::new();
        files.insert("lab.ics".to_owned(), ics::calendar("gpures: the lab", &all));
        for (unix, rs) in per_user {
            if !file_safe(unix) {
                tracing::warn!(
                    unix_user = unix,
                    "no feed: the Unix user name is not a safe file name"
                );
                continue;
            }
            files.insert(
                format!("users/{unix}.ics"),
                ics::calendar(&format!("gpures: {unix}"), &rs),
            );
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::file_safe;

    #[test]
    fn only_plain_unix_names_become_file_names() {
        for ok in ["kim", "lee.jiwon", "user_2", "a-b"] {
            assert!(file_safe(ok), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            ".hidden",
            "-rf",
            "a/b",
            "김민수",
            "a b",
        ] {
            assert!(!file_safe(bad), "{bad}");
        }
    }
}
