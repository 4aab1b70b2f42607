//! `gpures queue [--gpus N --for D …] | queue ls | queue cancel ID`.

use gpures_proto::{QueueEntry, QueueRequest, QueueState, text};
use uuid::Uuid;

use super::{CliResult, Ctx, Failure, QueueAction, QueueArgs, exit};
use crate::output::table;
use crate::timefmt::{format_local, parse_time, rfc3339};

pub(super) async fn queue(ctx: &Ctx, args: QueueArgs) -> CliResult<()> {
    match (args.action.clone(), args.gpus) {
        (Some(QueueAction::Cancel { id }), _) => cancel(ctx, &id).await,
        (Some(QueueAction::Ls), _) | (None, None) => list(ctx).await,
        (None, Some(gpus)) => enqueue(ctx, gpus, args).await,
    }
}

async fn enqueue(ctx: &Ctx, gpus: u32, args: QueueArgs) -> CliResult<()> {
    let (tz, now) = (ctx.tz, ctx.now);
    let length = args
        .r#for
        .as_deref()
        .ok_or_else(|| Failure::usage("give the length with --for 3h"))?;
    let minutes = super::length_minutes(length, now, tz)?;
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time(t, now, tz))
        .transpose()?;
    let note = args.note.unwrap_or_default();
    super::check_note(&note)?;
    let entry = ctx.api(
        ctx.client
            .enqueue(QueueRequest {
                request_id: Uuid::new_v4(),
                gpus,
                length_minutes: minutes,
                host: args.host,
                until,
                note,
            })
            .await,
    )?;
    if ctx.json {
        return ctx.print_json(&entry_json(&entry, ctx));
    }
    match entry.state {
        QueueState::Granted => outln!(
            "granted at once: booking {} starts now (`gpures ls --mine`)",
            entry
                .booking_id
                .map(|b| b.to_string()[..8].to_owned())
                .unwrap_or_default()
        ),
        _ => outln!(
            "queued {}: position {}{}; `gpures queue` shows where it stands, \
             `gpures queue cancel {}` leaves",
            short(entry.id),
            entry
                .position
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into()),
            entry
                .estimated_start
                .map(|t| format!(", expected from {} as booked now", format_local(t, tz)))
                .unwrap_or_default(),
            short(entry.id)
        ),
    }
    Ok(())
}

async fn list(ctx: &Ctx) -> CliResult<()> {
    let entries = ctx.api(ctx.client.queue().await)?;
    if ctx.json {
        return ctx.print_json(
            &entries
                .iter()
                .map(|e| entry_json(e, ctx))
                .collect::<Vec<_>>(),
        );
    }
    let tz = ctx.tz;
    let me = ctx.client.whoami().await.ok().map(|u| u.id);
    let waiting: Vec<&QueueEntry> = entries
        .iter()
        .filter(|e| e.state == QueueState::Waiting)
        .collect();
    if waiting.is_empty() {
        outln!("nobody is waiting");
    } else {
        let rows: Vec<Vec<String>> = waiting
            .iter()
            .map(|e| {
                vec![
                    e.position.map(|p| p.to_string()).unwrap_or_default(),
                    short(e.id),
                    format!(
                        "{}{}",
                        text::sanitize(&e.user.display_name),
                        if Some(e.user.id) == me { " (you)" } else { "" }
                    ),
                    e.gpus.to_string(),
                    minutes(e.length_minutes),
                    e.host
                        .as_deref()
                        .map(text::sanitize)
                        .unwrap_or_else(|| "any".into()),
                    e.estimated_start
                        .map(|t| format_local(t, tz))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out!(
            "{}",
            table(
                &["#", "ID", "WHO", "GPUS", "FOR", "HOST", "EXPECTED FROM"],
                &rows
            )
        );
    }
    for e in entries.iter().filter(|e| e.state != QueueState::Waiting) {
        let when = e.ended_at.map(|t| format_local(t, tz)).unwrap_or_default();
        match e.state {
            QueueState::Granted => outln!(
                "yours {} was granted at {when}: booking {}",
                short(e.id),
                e.booking_id
                    .map(|b| b.to_string()[..8].to_owned())
                    .unwrap_or_default()
            ),
            state => outln!("yours {} was {} at {when}", short(e.id), state.as_str()),
        }
    }
    Ok(())
}

async fn cancel(ctx: &Ctx, id: &str) -> CliResult<()> {
    let prefix = id.trim().to_lowercase();
    let entries = ctx.api(ctx.client.queue().await)?;
    let hits: Vec<Uuid> = entries
        .iter()
        .filter(|e| e.state == QueueState::Waiting)
        .map(|e| e.id)
        .filter(|i| prefix.len() >= 4 && i.to_string().starts_with(&prefix))
        .collect();
    let id = match hits.as_slice() {
        [one] => *one,
        [] => {
            return Err(Failure::new(
                exit::ERROR,
                format!("no waiting request starts with {prefix:?}: see `gpures queue`"),
            ));
        }
        _ => {
            return Err(Failure::usage(format!(
                "{prefix:?} names several requests: give more of the id"
            )));
        }
    };
    let entry = ctx.api(ctx.client.cancel_queued(id).await)?;
    if ctx.json {
        return ctx.print_json(&entry_json(&entry, ctx));
    }
    outln!("left the queue: {}", short(entry.id));
    Ok(())
}

fn short(id: Uuid) -> String {
    id.to_string()[..8].to_owned()
}

fn minutes(m: u32) -> String {
    match (m / 60, m % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

fn entry_json(e: &QueueEntry, ctx: &Ctx) -> serde_json::Value {
    let tz = ctx.tz;
    serde_json::json!({
        "id": e.id,
        "user": { "email": text::sanitize(&e.user.email), "name": text::sanitize(&e.user.display_name) },
        "gpus": e.gpus,
        "length_minutes": e.length_minutes,
        "host": e.host.as_deref().map(text::sanitize),
        "until": e.until.map(|t| rfc3339(t, tz)),
        "note": text::sanitize(&e.note),
        "state": e.state.as_str(),
        "position": e.position,
        "estimated_start": e.estimated_start.map(|t| rfc3339(t, tz)),
        "created_at": rfc3339(e.created_at, tz),
        "ended_at": e.ended_at.map(|t| rfc3339(t, tz)),
        "booking_id": e.booking_id,
    })
}
