//! `gpures-daemon calendar check|resync`.

use anyhow::{Context as _, Result};

use crate::cli::CalendarCommand;
use crate::config::Config;
use crate::store::outbox;
use crate::workers::calendar::{Calendar, deliver_all, reconcile};

/// Runs a `calendar` command.
///
/// # Errors
/// The calendar or the database failed; the message says how to fix it.
pub async fn run(config: &Config, cmd: CalendarCommand) -> Result<()> {
    match cmd {
        CalendarCommand::Check => check(config).await,
        CalendarCommand::Resync { from, to } => {
            resync(config, from.as_deref(), to.as_deref()).await
        }
    }
}

/// `calendar check`: each failure comes with its fix.
async fn check(config: &Config) -> Result<()> {
    let cal = Calendar::connect(&config.calendar, &config.host_name()).await?;
    println!("key: service account {}", cal.client_email);
    cal.check().await?;
    println!(
        "OK: wrote, read back, listed and deleted a test event in {}",
        config.calendar.calendar_id.as_deref().unwrap_or("?")
    );
    Ok(())
}

fn parse_when(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("{s:?} is not RFC 3339 or YYYY-MM-DD"))?;
    Ok(d.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// `calendar resync`: the calendar made equal to the database.
async fn resync(config: &Config, from: Option<&str>, to: Option<&str>) -> Result<()> {
    let now = chrono::Utc::now();
    let from = from
        .map(parse_when)
        .transpose()?
        .unwrap_or(now - chrono::TimeDelta::days(30));
    let to = to
        .map(parse_when)
        .transpose()?
        .unwrap_or(now + chrono::TimeDelta::days(90));
    if to <= from {
        anyhow::bail!("--to must be after --from");
    }
    let cal = Calendar::connect(&config.calendar, &config.host_name()).await?;
    let database = crate::open_database(config, Default::default()).await?;
    let result = async {
        database.store.migrate().await?;
        let retried = {
            let mut conn = database.store.acquire().await?;
            outbox::retry_failed(&mut conn).await?
        };
        let r = reconcile(&cal, &database.store, from, to).await?;
        // Deliver what the repair queued (a running daemon may too: claims
        // keep each write single).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
        deliver_all(
            &cal,
            &database.store,
            config.calendar.writes_per_sec,
            std::time::Duration::from_millis(config.calendar.retry_base_ms.max(1)),
            deadline,
        )
        .await?;
        println!(
            "calendar resynced from {from} to {to}: {} created, {} updated, {} deleted, {} already right; {retried} refused changes queued again",
            r.created, r.updated, r.deleted, r.unchanged
        );
        anyhow::Ok(())
    }
    .await;
    database.close().await;
    result
}
