//! `gpures notifications | motd | notify | keep | adopt`: the inbox, the
//! login message, where notifications go, and the answers to idle reclaim
//! and unreserved use.

use std::time::Duration;

use gpures_proto::{AdoptRequest, NotificationKind, NotifyChange, text};
use serde::Serialize;
use uuid::Uuid;

use super::{CliResult, Ctx, Failure, NotifyArgs, Target};
use crate::client::Client;
use crate::conn::{self, TokenStore};
use crate::output::table;
use crate::timefmt::{format_local, rfc3339};

/// One notification as `--json` prints it.
#[derive(Serialize)]
struct NotificationJson {
    id: i64,
    kind: &'static str,
    reservation_id: Option<Uuid>,
    title: String,
    body: String,
    created_at: String,
    read: bool,
}

pub(super) async fn notifications(ctx: &Ctx, all: bool, peek: bool, limit: u32) -> CliResult<()> {
    let page = ctx.api(ctx.client.notifications(!all, limit).await)?;
    if let Some(newest) = page.items.first().filter(|_| !peek) {
        ctx.api(ctx.client.mark_read(newest.id).await)?;
    }
    if ctx.json {
        let v: Vec<NotificationJson> = page
            .items
            .iter()
            .map(|n| NotificationJson {
                id: n.id,
                kind: n.kind.as_str(),
                reservation_id: n.reservation_id,
                title: text::sanitize(&n.title),
                body: text::sanitize(&n.body),
                created_at: rfc3339(n.created_at, ctx.tz),
                read: n.read,
            })
            .collect();
        return ctx.print_json(&v);
    }
    if page.items.is_empty() {
        outln!(
            "{}",
            if all {
                "no notifications yet"
            } else {
                "no unread notifications (`gpures notifications --all` shows the read ones)"
            }
        );
        return Ok(());
    }
    for n in &page.items {
        outln!(
            "{}{}  {}",
            if n.read { "  " } else { "• " },
            format_local(n.created_at, ctx.tz),
            text::sanitize(&n.title)
        );
        if !n.body.is_empty() {
            outln!("    {}", text::sanitize(&n.body));
        }
    }
    Ok(())
}

/// The login message: the newest unread notifications, or nothing at all.
/// Never asks anything, never fails loudly, gives up after 300 ms.
pub async fn motd(socket: Option<&std::path::Path>) {
    let work = async {
        let path = conn::socket_path(socket);
        let client = Client::connect(&path).await.ok()?;
        let store = TokenStore::for_host(&client.hello().host);
        client.set_token(store.as_ref().and_then(TokenStore::load).map(|s| s.token));
        let page = match client.notifications(true, 3).await {
            Ok(p) => p,
            Err(_) if client.fall_back_to_peer() => client.notifications(true, 3).await.ok()?,
            Err(_) => return None,
        };
        Some(page)
    };
    let Ok(Some(page)) = tokio::time::timeout(Duration::from_millis(300), work).await else {
        return;
    };
    if page.unread == 0 {
        return;
    }
    let mut out = String::new();
    for n in &page.items {
        out.push_str(&format!("gpures: {}\n", text::sanitize(&n.title)));
    }
    let more = page.unread as usize - page.items.len().min(page.unread as usize);
    if more > 0 {
        out.push_str(&format!("gpures: … and {more} more\n"));
    }
    out.push_str(&format!(
        "gpures: {} unread · `gpures notifications` to read them\n",
        page.unread
    ));
    out!("{out}");
}

fn kinds_of(names: &[String]) -> CliResult<Vec<NotificationKind>> {
    names
        .iter()
        .flat_map(|n| n.split(','))
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n == "all" {
                return Ok(NotificationKind::ALL.to_vec());
            }
            NotificationKind::parse(n.trim())
                .map(|k| vec![k])
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "no notification kind {:?}: `gpures notify --kinds` lists them",
                        text::sanitize(n)
                    ))
                })
        })
        .collect::<CliResult<Vec<_>>>()
        .map(|v| v.into_iter().flatten().collect())
}

pub(super) async fn notify(ctx: &Ctx, args: NotifyArgs) -> CliResult<()> {
    if args.kinds {
        let rows: Vec<Vec<String>> = NotificationKind::ALL
            .iter()
            .map(|k| vec![k.as_str().to_owned(), k.meaning().to_owned()])
            .collect();
        out!("{}", table(&["KIND", "WHEN"], &rows));
        return Ok(());
    }
    let change = NotifyChange {
        webhook_url: match (args.webhook, args.no_webhook) {
            (Some(url), _) => Some(Some(url)),
            (None, true) => Some(None),
            (None, false) => None,
        },
        email: args.email,
        terminal: args.terminal,
        mute: kinds_of(&args.mute)?,
        unmute: kinds_of(&args.unmute)?,
    };
    let changing = change != NotifyChange::default();
    let s = ctx.api(ctx.client.notify_settings(changing.then_some(change)).await)?;
    if args.test {
        ctx.api(ctx.client.test_notification().await)?;
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "webhook_url": s.webhook_url,
            "email": s.email,
            "email_available": s.email_available,
            "terminal": s.terminal,
            "muted": s.muted.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        }));
    }
    let onoff = |b: bool| if b { "on" } else { "off" };
    outln!("inbox       on (the TUI, `gpures notifications`, the login message)");
    outln!(
        "webhook     {}",
        s.webhook_url
            .as_deref()
            .map_or("off".to_owned(), text::sanitize)
    );
    outln!(
        "email       {}{}",
        onoff(s.email),
        if s.email_available {
            ""
        } else {
            " (this host sends no email)"
        }
    );
    outln!(
        "terminal    {} (urgent ones written to your terminals here)",
        onoff(s.terminal)
    );
    let muted: Vec<&str> = s.muted.iter().map(|k| k.as_str()).collect();
    outln!(
        "muted       {}",
        if muted.is_empty() {
            "none".to_owned()
        } else {
            muted.join(", ")
        }
    );
    if args.test {
        outln!("sent a test notification to each channel that is on");
    }
    Ok(())
}

/// The booking an id on the command line names.
async fn booking_of(ctx: &Ctx, id: &str) -> CliResult<Uuid> {
    Ok(match ctx.find_target(id).await? {
        Target::One(r) => r.booking_id,
        Target::Booking(b, _) => b,
    })
}

pub(super) async fn keep(ctx: &Ctx, id: &str) -> CliResult<()> {
    let booking = booking_of(ctx, id).await?;
    let until = ctx.api(ctx.client.keep(booking).await)?;
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "booking_id": booking,
            "kept_until": rfc3339(until, ctx.tz),
        }));
    }
    outln!(
        "kept: idle reclaim leaves booking {} alone until {}",
        &booking.simple().to_string()[..8],
        format_local(until, ctx.tz)
    );
    Ok(())
}

pub(super) async fn adopt(
    ctx: &Ctx,
    pids: Vec<u32>,
    length: Option<String>,
    booking: Option<String>,
) -> CliResult<()> {
    let booking = match &booking {
        Some(id) => Some(booking_of(ctx, id).await?),
        None => None,
    };
    let length_minutes = match (&length, booking) {
        (Some(l), _) => super::length_minutes(l, ctx.now, ctx.tz)?,
        (None, Some(_)) => 0,
        (None, None) => {
            return Err(Failure::usage(
                "give the booking's length with --for 2h, or an existing booking with --booking ID",
            ));
        }
    };
    let made = ctx.api(
        ctx.client
            .adopt(AdoptRequest {
                request_id: Uuid::new_v4(),
                pids: pids.clone(),
                booking,
                length_minutes,
            })
            .await,
    )?;
    if ctx.json {
        let v: Vec<_> = made
            .reservations
            .iter()
            .map(|r| crate::output::ReservationJson::new(r, ctx.tz))
            .collect();
        return ctx.print_json(&serde_json::json!({
            "booking_id": made.booking_id,
            "pids": pids,
            "reservations": v,
        }));
    }
    let names: Vec<String> = made
        .reservations
        .iter()
        .map(|r| text::sanitize(&r.resource_name))
        .collect();
    let end = made.reservations.iter().map(|r| r.period.end).max();
    outln!(
        "adopted pid {} into booking {} ({}{}); it ends when they do",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        &made.booking_id.simple().to_string()[..8],
        names.join(", "),
        end.map(|e| format!(" until {}", format_local(e, ctx.tz)))
            .unwrap_or_default()
    );
    Ok(())
}
