//! Delivers the notification outbox and sends the reminders.
//!
//! A delivery is claimed in a transaction (`FOR UPDATE SKIP LOCKED`, so two
//! daemons never send one row), sent, and deleted in that transaction once
//! the other side accepted it; a failure is retried with a doubling delay
//! (up to 10 minutes, 12 tries), and a refusal that retrying cannot fix
//! (a 4xx other than 408/429, an address the relay refuses) is kept as
//! failed. Every send carries the notification's id (`Idempotency-Key`,
//! `Message-ID`), so a receiver can drop the copy a crash between the send
//! and the commit makes.

use std::time::Duration;

use chrono::Utc;
use hyper::Request;
use hyper_util::client::legacy::Client;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use tokio::sync::watch;

use super::calendar::google::{Connector, connector};
use super::{Shutdown, WorkerHandle};
use crate::config::{NotifyConfig, SmtpConfig};
use crate::service::Service;
use crate::store::Store;
use crate::store::notifications::{self as store_n, Channel, Due};

/// Tries before a delivery is given up.
const MAX_ATTEMPTS: i32 = 12;
const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the reminders are looked for.
const REMIND_EVERY: Duration = Duration::from_secs(15);

/// Why a send failed.
#[derive(Debug)]
enum SendError {
    Retry(String),
    Permanent(String),
}

pub struct Notifier {
    pub service: Service,
    pub store: Store,
    pub config: NotifyConfig,
    /// The change counter: a new notification wakes the worker.
    pub changes: watch::Receiver<u64>,
}

struct Senders {
    http: Option<Client<Connector, String>>,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    lab_webhook: Option<String>,
    retry_base: Duration,
}

impl Notifier {
    pub fn start(self, mut shutdown: Shutdown) -> WorkerHandle {
        let Notifier {
            service,
            store,
            config,
            mut changes,
        } = self;
        WorkerHandle::spawn("notifier", async move {
            let senders = Senders::new(&config);
            let mut remind = tokio::time::interval(REMIND_EVERY);
            remind.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut poll = tokio::time::interval(Duration::from_secs(1));
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.requested() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = poll.tick() => {}
                    _ = remind.tick() => {
                        match service.remind().await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(told = n, "reminders"),
                            Err(e) => tracing::warn!(error = %e, "reminder pass failed"),
                        }
                    }
                }
                changes.borrow_and_update();
                if let Err(e) = senders.deliver_due(&store).await {
                    tracing::warn!(error = %e, "notification delivery pass failed");
                }
            }
        })
    }
}

impl Senders {
    fn new(config: &NotifyConfig) -> Senders {
        let http = match connector() {
            Ok(c) => Some(Client::builder(hyper_util::rt::TokioExecutor::new()).build(c)),
            Err(e) => {
                tracing::error!(error = %e, "webhooks cannot be sent");
                None
            }
        };
        let smtp = if config.smtp.enabled {
            match smtp(&config.smtp) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "email cannot be sent: check [notify.smtp]");
                    None
                }
            }
        } else {
            None
        };
        Senders {
            http,
            smtp,
            lab_webhook: config
                .lab_webhook_url
                .as_ref()
                .map(|s| s.expose().to_owned()),
            retry_base: Duration::from_millis(config.retry_base_ms.max(1)),
        }
    }

    /// Sends what is due, a batch at a time.
    async fn deliver_due(&self, store: &Store) -> crate::store::Result<()> {
        loop {
            let mut tx = store.begin().await?;
            let due = store_n::claim(&mut tx, 20).await?;
            if due.is_empty() {
                return Ok(());
            }
            for d in &due {
                match self.send(d).await {
                    Ok(()) => store_n::delivered(&mut tx, d.id).await?,
                    Err(SendError::Retry(e)) if d.attempts + 1 < MAX_ATTEMPTS => {
                        let delay = self
                            .retry_base
                            .saturating_mul(1 << d.attempts.clamp(0, 16))
                            .min(BACKOFF_MAX);
                        tracing::info!(channel = d.channel.as_str(), error = %e, ?delay, "notification delivery will be retried");
                        store_n::postpone(&mut tx, d.id, &e, delay, false).await?;
                    }
                    Err(SendError::Retry(e) | SendError::Permanent(e)) => {
                        tracing::warn!(channel = d.channel.as_str(), error = %e, "notification delivery failed for good");
                        store_n::postpone(&mut tx, d.id, &e, Duration::ZERO, true).await?;
                    }
                }
            }
            tx.commit().await?;
        }
    }

    async fn send(&self, d: &Due) -> Result<(), SendError> {
        match d.channel {
            Channel::Webhook => self.post(&d.target, d, false).await,
            Channel::LabWebhook => match &self.lab_webhook {
                Some(url) => self.post(url, d, true).await,
                None => Err(SendError::Permanent("no lab webhook is configured".into())),
            },
            Channel::Email => self.mail(d).await,
            Channel::Terminal => {
                write_terminals(&d.unix_user, &d.title);
                Ok(())
            }
        }
    }

    /// Posts Slack-compatible JSON: `text` for Slack, `gpures` for scripts.
    async fn post(&self, url: &str, d: &Due, lab: bool) -> Result<(), SendError> {
        let Some(http) = &self.http else {
            return Err(SendError::Retry("no HTTP client (CA certificates?)".into()));
        };
        let text = if lab {
            format!(
                "{} ({}): {}\n{}",
                d.display_name, d.unix_user, d.title, d.body
            )
        } else {
            format!("{}\n{}", d.title, d.body)
        };
        let body = json!({
            "text": text,
            "gpures": {
                "id": d.notification_id,
                "kind": d.kind,
                "user": d.unix_user,
                "title": d.title,
                "body": d.body,
                "reservation_id": d.reservation_id,
                "created_at": d.created_at,
            }
        })
        .to_string();
        let request = Request::post(url)
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                format!("gpures-{}-{}", d.notification_id, d.channel.as_str()),
            )
            .body(body)
            .map_err(|e| SendError::Permanent(format!("bad webhook URL: {e}")))?;
        let response = tokio::time::timeout(SEND_TIMEOUT, http.request(request))
            .await
            .map_err(|_| SendError::Retry("the webhook did not answer in time".into()))?
            .map_err(|e| SendError::Retry(format!("webhook: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(SendError::Retry(format!("webhook answered {status}")))
        } else {
            Err(SendError::Permanent(format!("webhook answered {status}")))
        }
    }

    async fn mail(&self, d: &Due) -> Result<(), SendError> {
        let Some((transport, from)) = &self.smtp else {
            return Err(SendError::Permanent("this host sends no email".into()));
        };
        let to: Mailbox = format!(
            "{} <{}>",
            d.display_name.replace(['<', '>', '"'], ""),
            d.email
        )
        .parse()
        .or_else(|_| d.email.parse())
        .map_err(|e| SendError::Permanent(format!("bad address {}: {e}", d.email)))?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .message_id(Some(format!(
                "<gpures-{}@{}>",
                d.notification_id,
                from.email.domain()
            )))
            .subject(format!("[gpures] {}", d.title))
            .date(d.created_at.into())
            .body(format!("{}\n\n{}\n", d.title, d.body))
            .map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))?;
        match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
            Err(_) => Err(SendError::Retry(
                "the mail relay did not answer in time".into(),
            )),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(format!("mail relay: {e}"))),
            Ok(Err(e)) => Err(SendError::Retry(format!("mail relay: {e}"))),
        }
    }
}

fn smtp(c: &SmtpConfig) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Mailbox), String> {
    let from: Mailbox = c
        .from
        .parse()
        .map_err(|e| format!("from {:?}: {e}", c.from))?;
    let mut builder = match c.security.as_str() {
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host).map_err(|e| e.to_string())?,
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host)
            .map_err(|e| e.to_string())?,
        _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host),
    }
    .port(c.port)
    .timeout(Some(SEND_TIMEOUT));
    if let (Some(user), Some(password)) = (&c.username, &c.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok((builder.build(), from))
}

/// Writes a one-line message to every terminal `unix_user` has open here
/// (the `/dev/pts` devices they own), like `write(1)`. Best effort: a
/// terminal that would block or refuses is skipped.
fn write_terminals(unix_user: &str, title: &str) {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Some(user) = crate::host::unix::user_by_name(unix_user) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir("/dev/pts") else {
        return;
    };
    let line = format!(
        "\r\n\x07[gpures {}] {}\r\n",
        Utc::now().format("%H:%M"),
        gpures_proto::text::sanitize(title)
    );
    for entry in entries.flatten() {
        let path = entry.path();
        let owned = std::fs::metadata(&path).is_ok_and(|m| m.uid() == user.uid);
        if !owned || path.file_name().is_some_and(|n| n == "ptmx") {
            continue;
        }
        if let Ok(mut tty) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(&path)
        {
            let _ = tty.write_all(line.as_bytes());
        }
    }
}
