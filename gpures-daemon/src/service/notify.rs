//! Notifications: every member's inbox and the deliveries beyond it.
//!
//! [`push`] writes an inbox entry and queues its deliveries (the member's
//! webhook, email, terminals; the lab webhook) in the caller's transaction,
//! so a notification exists exactly when its cause committed. The notifier
//! worker delivers the queue ([`Service::deliver_due`]) and sends the
//! reminders ([`Service::remind`]).

use chrono::{TimeDelta, Utc};
use gpures_proto::{
    Notification, NotificationKind, NotificationPage, NotifyChange, NotifySettings, limits, text,
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Actor, Error, Result, Service};
use crate::store::notifications::{self as store_n, Channel, New};
use crate::store::{self, reservations};

/// What the configuration says about channels.
#[derive(Clone, Debug)]
pub struct NotifyRules {
    /// Whether a lab webhook is configured.
    pub lab_webhook: bool,
    /// The kinds the lab webhook gets.
    pub lab_kinds: Vec<NotificationKind>,
    /// Whether the host sends email.
    pub email: bool,
    pub member_webhooks: bool,
    /// How long before a start or an end its owner is told.
    pub remind: TimeDelta,
}

impl Default for NotifyRules {
    fn default() -> Self {
        NotifyRules {
            lab_webhook: false,
            lab_kinds: Vec::new(),
            email: false,
            member_webhooks: true,
            remind: TimeDelta::minutes(10),
        }
    }
}

/// Longest webhook URL a member may set.
const WEBHOOK_MAX_CHARS: usize = 500;

/// Writes `new` to its member's inbox and queues its deliveries, in the
/// caller's transaction; `None` when the same event was already told.
///
/// # Errors
/// Store failures.
pub async fn push(
    conn: &mut PgConnection,
    rules: &NotifyRules,
    mut new: New,
) -> Result<Option<Notification>> {
    new.title = text::sanitize(&new.title);
    new.title.truncate(new.title.floor_char_boundary(300));
    new.body = text::sanitize(&new.body);
    new.body.truncate(new.body.floor_char_boundary(2000));
    let Some(n) = store_n::insert(conn, &new).await? else {
        return Ok(None);
    };
    let mine = store_n::settings(conn, new.user_id).await?;
    let muted = mine.muted.iter().any(|m| m == new.kind.as_str());
    if !muted {
        if let Some(url) = mine
            .webhook_url
            .as_deref()
            .filter(|_| rules.member_webhooks)
        {
            store_n::enqueue(conn, n.id, Channel::Webhook, url).await?;
        }
        if mine.email && rules.email {
            store_n::enqueue(conn, n.id, Channel::Email, "").await?;
        }
        if mine.terminal && new.kind.urgent() {
            store_n::enqueue(conn, n.id, Channel::Terminal, "").await?;
        }
    }
    if rules.lab_webhook && rules.lab_kinds.contains(&new.kind) {
        store_n::enqueue(conn, n.id, Channel::LabWebhook, "").await?;
    }
    store::notify(conn, &store::Changed::Inbox(new.user_id)).await?;
    Ok(Some(n))
}

impl Service {
    /// The caller's newest notifications and how many are unread.
    ///
    /// # Errors
    /// Not a member; store failures.
    pub async fn notifications(
        &self,
        actor: &Actor,
        unread_only: bool,
        limit: u32,
    ) -> Result<NotificationPage> {
        let user = actor.account()?;
        let limit = match limit {
            0 => limits::PAGE_DEFAULT,
            n => n.min(limits::PAGE_MAX),
        };
        let mut conn = self.store().acquire().await?;
        let items = store_n::newest(&mut conn, user.id, unread_only, i64::from(limit)).await?;
        let unread = store_n::unread(&mut conn, user.id).await?;
        Ok(NotificationPage {
            items,
            unread: u32::try_from(unread).unwrap_or(u32::MAX),
        })
    }

    /// Marks the caller's notifications up to `up_to` read.
    ///
    /// # Errors
    /// Not a member; store failures.
    pub async fn mark_read(&self, actor: &Actor, up_to: i64) -> Result<u32> {
        let user = actor.account()?;
        let mut conn = self.store().acquire().await?;
        let n = store_n::mark_read(&mut conn, user.id, up_to).await?;
        if n > 0 {
            store::notify(&mut conn, &store::Changed::Inbox(user.id)).await?;
        }
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The caller's channels, after applying `change`.
    ///
    /// # Errors
    /// A webhook that is not an http(s) URL, or webhooks are off on this
    /// host; email asked for where the host sends none; store failures.
    pub async fn notify_settings(
        &self,
        actor: &Actor,
        change: Option<NotifyChange>,
    ) -> Result<NotifySettings> {
        let user = actor.account()?.clone();
        let rules = self.settings().notify.clone();
        let mut tx = self.store().begin().await?;
        let mut s = store_n::settings(&mut tx, user.id).await?;
        if let Some(change) = change {
            if let Some(url) = change.webhook_url {
                s.webhook_url = match url {
                    Some(_) if !rules.member_webhooks => {
                        return Err(Error::invalid(
                            "webhook",
                            "this host does not allow member webhooks ([notify] member_webhooks)",
                        ));
                    }
                    Some(url) => Some(webhook_url(&url)?),
                    None => None,
                };
            }
            if let Some(email) = change.email {
                if email && !rules.email {
                    return Err(Error::invalid(
                        "email",
                        "this host sends no email (its admin sets [notify.smtp])",
                    ));
                }
                s.email = email;
            }
            if let Some(terminal) = change.terminal {
                s.terminal = terminal;
            }
            for kind in change.mute {
                if !s.muted.iter().any(|m| m == kind.as_str()) {
                    s.muted.push(kind.as_str().to_owned());
                }
            }
            s.muted
                .retain(|m| !change.unmute.iter().any(|k| k.as_str() == m));
            store_n::save_settings(&mut tx, user.id, &s).await?;
        }
        tx.commit().await?;
        Ok(NotifySettings {
            webhook_url: s.webhook_url,
            email: s.email,
            email_available: rules.email,
            terminal: s.terminal,
            muted: s
                .muted
                .iter()
                .filter_map(|m| NotificationKind::parse(m))
                .collect(),
        })
    }

    /// Sends the caller a test notification on each of their channels.
    ///
    /// # Errors
    /// Not a member; store failures.
    pub async fn test_notification(&self, actor: &Actor) -> Result<Notification> {
        let user = actor.account()?.clone();
        let rules = self.settings().notify.clone();
        let mut tx = self.store().begin().await?;
        let n = push(
            &mut tx,
            &rules,
            New {
                user_id: user.id,
                kind: NotificationKind::Test,
                reservation_id: None,
                dedupe: None,
                title: "Test notification from gpures".to_owned(),
                body: format!(
                    "{} asked for a test on {}; if you read this here, this channel works.",
                    user.unix_user,
                    self.host()
                ),
            },
        )
        .await?
        .ok_or_else(|| Error::Internal("a test notification was deduplicated".into()))?;
        tx.commit().await?;
        Ok(n)
    }

    /// Tells owners whose bookings start or end within the reminder time,
    /// once per start and end (a moved booking is told again). Bookings made
    /// or changed within that time are not told (their owner just acted).
    /// Returns how many were told.
    ///
    /// # Errors
    /// Store failures.
    pub async fn remind(&self) -> Result<usize> {
        let rules = self.settings().notify.clone();
        let now = Utc::now();
        let mut tx = self.store().begin().await?;
        let due = reservations::due_reminders(&mut tx, now, rules.remind).await?;
        let mut told = 0;
        for d in due {
            let (kind, at, verb) = if d.starting {
                (NotificationKind::StartsSoon, d.start, "starts")
            } else {
                (NotificationKind::EndsSoon, d.end, "ends")
            };
            let minutes = (at - now).num_minutes().max(1);
            let mut body = format!("{} · booking {}", d.names, short(d.booking_id));
            if !d.starting {
                let free = reservations::holders(
                    &mut tx,
                    &d.resource_ids,
                    gpures_proto::Period {
                        start: d.end,
                        end: d.end + TimeDelta::hours(1),
                    },
                    &[],
                )
                .await?
                .is_empty();
                if free {
                    body.push_str(&format!(
                        " · free for another hour: gpures extend {} --by 1h",
                        short(d.booking_id)
                    ));
                }
            }
            let new = New {
                user_id: d.user_id,
                kind,
                reservation_id: Some(d.first_id),
                dedupe: Some(format!("{kind}:{}:{}", d.booking_id, at.timestamp())),
                title: format!("Your booking of {} {verb} in {minutes} min", d.names),
                body,
            };
            if push(&mut tx, &rules, new).await?.is_some() {
                told += 1;
            }
        }
        tx.commit().await?;
        Ok(told)
    }
}

/// The first 8 hex digits of an id, as the CLI shows and accepts it.
pub fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// A webhook URL a member may set.
fn webhook_url(url: &str) -> Result<String> {
    let url = url.trim();
    let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
    if !ok_scheme
        || url.chars().count() > WEBHOOK_MAX_CHARS
        || url.chars().any(|c| c.is_control() || c.is_whitespace())
        || url.parse::<hyper::Uri>().is_err()
    {
        return Err(Error::invalid(
            "webhook",
            format!("must be an http(s) URL of at most {WEBHOOK_MAX_CHARS} characters"),
        ));
    }
    Ok(url.to_owned())
}
