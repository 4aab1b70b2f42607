//! `gpures resources | ls | book | edit | extend | cancel | release`.

use chrono::{DateTime, TimeDelta, Utc};
use gpures_proto::{
    AnyBookingRequest, BookingRequest, ChangeKind, ChangeTarget, Lookup, Period, Reservation,
    ReservationChange, ReservationFilter, SeriesEdit, SlotQuery, limits, text,
};
use uuid::Uuid;

use super::{CliResult, Ctx, Failure, Target};
use crate::output::{self, ReservationJson, ResourceJson, table};
use crate::timefmt::{self, format_local, parse_duration, parse_time};

/// The bookable resources.
pub(super) async fn resources(ctx: &Ctx) -> CliResult<()> {
    let rs = ctx.resources().await?;
    if ctx.json {
        return ctx.print_json(&rs.iter().map(ResourceJson::from).collect::<Vec<_>>());
    }
    let rows: Vec<Vec<String>> = rs
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.host.clone(),
                r.kind.as_str().into(),
                r.gpu_index
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.description.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(&["NAME", "HOST", "KIND", "GPU", "DESCRIPTION"], &rows)
    );
    Ok(())
}

/// Lists reservations.
pub(super) async fn ls(
    ctx: &Ctx,
    resources: Vec<String>,
    mine: bool,
    user: Option<String>,
    from: Option<String>,
    to: Option<String>,
    all: bool,
) -> CliResult<()> {
    let (tz, now) = (ctx.tz, ctx.now);
    let resource_ids = ctx.resolve_resources(&resources).await?;
    let user_email = if mine {
        Some(ctx.api(ctx.client.whoami().await)?.email)
    } else {
        user
    };
    let window = match (from, to, all) {
        (None, None, true) => None,
        (from, to, _) => {
            let start = match from {
                Some(f) => parse_time(&f, now, tz)?,
                None => now,
            };
            // Yours: every one to come (as far as a query may reach, past
            // any booking horizon); everyone's: two weeks.
            let span = if mine && !all {
                limits::WINDOW_MAX_DAYS
            } else {
                14
            };
            let end = match to {
                Some(t) => parse_time(&t, now, tz)?,
                None => start + chrono::TimeDelta::days(span),
            };
            if end <= start {
                return Err(Failure::usage("--to must be after --from"));
            }
            Some(Period { start, end })
        }
    };
    let rs = ctx
        .list(ReservationFilter {
            resources: resource_ids.clone(),
            user_email,
            window,
            include_cancelled: all,
        })
        .await?;
    ctx.print_reservations(&rs)?;
    // Maintenance blocks in the same window, after the table (JSON keeps
    // its shape: `gpures blocks --json` has them).
    if let Some(window) =
        window.filter(|w| !ctx.json && w.end - w.start <= TimeDelta::days(limits::WINDOW_MAX_DAYS))
    {
        let blocks: Vec<gpures_proto::Block> = ctx
            .api(ctx.client.blocks(window).await)?
            .into_iter()
            .filter(|b| resource_ids.is_empty() || resource_ids.contains(&b.resource_id))
            .collect();
        if !blocks.is_empty() {
            outln!("blocked for maintenance:");
            out!("{}", super::blocks::lines(&blocks, tz));
        }
    }
    Ok(())
}

/// How a command gives an end: `--to` a time or `--for` a length.
pub(super) struct Length {
    pub to: Option<String>,
    pub r#for: Option<String>,
}

impl Length {
    /// The end for a period starting at `start`, if one was given.
    pub(super) fn end(&self, ctx: &Ctx, start: DateTime<Utc>) -> CliResult<Option<DateTime<Utc>>> {
        Ok(match (&self.to, &self.r#for) {
            (Some(t), _) => Some(parse_time(t, ctx.now, ctx.tz)?),
            (None, Some(d)) => Some(parse_duration(d)?.add_to(start, ctx.tz)?),
            (None, None) => None,
        })
    }

    /// The period from `from` (default now) to this end, which must be
    /// given and after the start.
    pub(super) fn period(&self, ctx: &Ctx, from: Option<&str>) -> CliResult<Period> {
        let start = parse_time(from.unwrap_or("now"), ctx.now, ctx.tz)?;
        let end = self.end(ctx, start)?.ok_or_else(|| {
            Failure::usage("give the end with --to TIME or the length with --for 3h")
        })?;
        if end <= start {
            return Err(Failure::usage("the end must be after the start"));
        }
        Ok(Period { start, end })
    }
}

/// Books resources, all or nothing, from `from` (default now).
pub(super) async fn book(
    ctx: &Ctx,
    resources: Vec<String>,
    from: Option<String>,
    length: Length,
    note: String,
    how: How,
) -> CliResult<()> {
    let (tz, now) = (ctx.tz, ctx.now);
    let Period { start, end } = length.period(ctx, from.as_deref())?;
    super::check_note(&note)?;
    let ids = ctx.resolve_resources(&resources).await?;
    let request = BookingRequest {
        request_id: Uuid::new_v4(),
        resources: ids,
        period: Period { start, end },
        note,
    };
    let pending = matches!(how, How::Request { .. });
    let booking = match how {
        How::Override(reason) => ctx.api(ctx.client.book_override(request, reason).await)?,
        How::Request { reason, decide_by } => {
            let decide_by = decide_by.map(|t| parse_time(&t, now, tz)).transpose()?;
            ctx.api(
                ctx.client
                    .request_approval(request, reason, decide_by)
                    .await,
            )?
        }
        How::Plain => ctx.api(ctx.client.book(request).await)?,
    };
    warn_if_busy(ctx, &booking.reservations).await;
    if ctx.json {
        return ctx.print_json(
            &booking
                .reservations
                .iter()
                .map(|r| ReservationJson::new(r, tz))
                .collect::<Vec<_>>(),
        );
    }
    if pending {
        let until = booking
            .reservations
            .first()
            .and_then(|r| r.pending.as_ref())
            .map(|p| format_local(p.until, tz))
            .unwrap_or_default();
        outln!(
            "asked for approval (booking {}): it holds the slot, pending, until an admin decides or {until}; you will be told",
            &booking.booking_id.to_string()[..8]
        );
        out!("{}", output::reservations_table(&booking.reservations, tz));
        return Ok(());
    }
    outln!("booked (booking {}):", &booking.booking_id.to_string()[..8]);
    out!("{}", output::reservations_table(&booking.reservations, tz));
    Ok(())
}

/// How recent a sample must be for a warning to trust it.
const FRESH_SAMPLE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// Warns (on stderr) about processes of other users running now, without a
/// reservation, on GPUs just booked from now: the booking stands, but the
/// GPU is not idle. Only fresh samples count; without telemetry it is silent.
async fn warn_if_busy(ctx: &Ctx, booked: &[Reservation]) {
    let now = chrono::Utc::now();
    if !booked.iter().any(|r| r.period.contains(now)) {
        return;
    }
    let (Ok(status), Ok(me)) = (ctx.client.status().await, ctx.client.whoami().await) else {
        return;
    };
    for r in booked.iter().filter(|r| r.period.contains(now)) {
        let Some(t) = status
            .resources
            .iter()
            .find(|s| s.resource.id == r.resource_id)
            .and_then(|s| s.telemetry.as_ref())
        else {
            continue;
        };
        if now - t.sampled_at > FRESH_SAMPLE {
            continue;
        }
        for p in &t.processes {
            let user = p.unix_user.as_deref().unwrap_or("an unknown user");
            if p.unix_user.as_deref() == Some(me.unix_user.as_str()) {
                continue;
            }
            eprintln!(
                "gpures: warning: {} is in use right now by {} ({}, pid {}) without a reservation;                  `gpures status` shows it",
                text::sanitize(&r.resource_name),
                text::sanitize(user),
                text::sanitize(&p.name),
                p.pid
            );
        }
    }
}

/// "Any N GPUs" as the command line gives it.
pub(super) struct Need {
    pub gpus: u32,
    pub host: Option<String>,
    pub from: Option<String>,
}

impl Need {
    /// The daemon's query: the start asked for and the length in minutes.
    fn query(&self, ctx: &Ctx, length: &Length) -> CliResult<SlotQuery> {
        let start = parse_time(self.from.as_deref().unwrap_or("now"), ctx.now, ctx.tz)?;
        let end = length.end(ctx, start)?.ok_or_else(|| {
            Failure::usage("give the length with --for 3h (or the end with --to)")
        })?;
        if end <= start {
            return Err(Failure::usage("the end must be after the start"));
        }
        let minutes = u32::try_from((end - start).num_minutes())
            .map_err(|_| Failure::usage("that is too long"))?;
        Ok(SlotQuery {
            gpus: self.gpus,
            length_minutes: minutes.max(1),
            not_before: self.from.is_some().then_some(start),
            host: self.host.clone(),
        })
    }
}

/// Books any N GPUs of one host at the earliest time they are all free, and
/// says which and why.
pub(super) async fn book_any(ctx: &Ctx, need: Need, length: Length, note: String) -> CliResult<()> {
    let query = need.query(ctx, &length)?;
    super::check_note(&note)?;
    let request = AnyBookingRequest {
        request_id: Uuid::new_v4(),
        query,
        note,
    };
    let got = ctx.api(ctx.client.book_any(request).await)?;
    warn_if_busy(ctx, &got.booking.reservations).await;
    let tz = ctx.tz;
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "booking_id": got.booking.booking_id,
            "why": got.why,
            "reservations": got
                .booking
                .reservations
                .iter()
                .map(|r| ReservationJson::new(r, tz))
                .collect::<Vec<_>>(),
        }));
    }
    let names: Vec<String> = got
        .booking
        .reservations
        .iter()
        .map(|r| text::sanitize(&r.resource_name))
        .collect();
    if let Some(first) = got.booking.reservations.first() {
        outln!(
            "booked {} from {} to {} (booking {}): {}",
            names.join(", "),
            format_local(first.period.start, tz),
            format_local(first.period.end, tz),
            &got.booking.booking_id.to_string()[..8],
            got.why
        );
    }
    out!(
        "{}",
        output::reservations_table(&got.booking.reservations, tz)
    );
    Ok(())
}

/// The earliest three starts per host for N GPUs, without booking.
pub(super) async fn when(ctx: &Ctx, need: Need, length: Length) -> CliResult<()> {
    let query = need.query(ctx, &length)?;
    let options = ctx.api(ctx.client.find_slots(query).await)?;
    let tz = ctx.tz;
    if ctx.json {
        let json: Vec<serde_json::Value> = options
            .iter()
            .map(|o| {
                serde_json::json!({
                    "host": text::sanitize(&o.host),
                    "start": timefmt::rfc3339(o.period.start, tz),
                    "end": timefmt::rfc3339(o.period.end, tz),
                    "gpus": o.gpus.iter().map(|g| text::sanitize(&g.name)).collect::<Vec<_>>(),
                    "why": o.why,
                })
            })
            .collect();
        return ctx.print_json(&json);
    }
    if options.is_empty() {
        outln!("nothing fits before the booking horizon");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = options
        .iter()
        .map(|o| {
            vec![
                text::sanitize(&o.host),
                format_local(o.period.start, tz),
                format_local(o.period.end, tz),
                o.gpus
                    .iter()
                    .map(|g| text::sanitize(&g.name))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    out!("{}", table(&["HOST", "FROM", "TO", "GPUS"], &rows));
    outln!(
        "book one: gpures book --gpus {} --for … [--from …] [--host …]",
        need.gpus
    );
    Ok(())
}

/// What `edit` was asked to change.
pub(super) struct Edit {
    pub from: Option<String>,
    pub length: Length,
    pub note: Option<String>,
    pub reason: Option<String>,
    /// This occurrence of a series and every later one.
    pub following: bool,
}

/// Moves, shortens, extends or re-notes a reservation, or a whole booking
/// given by its id, or an occurrence of a series and the later ones.
pub(super) async fn edit(ctx: &Ctx, id: String, edit: Edit) -> CliResult<()> {
    let Edit {
        from,
        length,
        note,
        reason,
        following,
    } = edit;
    let (tz, now) = (ctx.tz, ctx.now);
    let start = from.map(|f| parse_time(&f, now, tz)).transpose()?;
    if start.is_none() && length.to.is_none() && length.r#for.is_none() && note.is_none() {
        return Err(Failure::usage(
            "nothing to change: give --from, --to, --for or --note",
        ));
    }
    let target = ctx.find_target(&id).await?;
    // The period as it is now (a booking's GPUs share one).
    let current = match &target {
        Target::One(r) => r.period,
        Target::Booking(_, rs) => rs.first().map_or(
            Period {
                start: now,
                end: now,
            },
            |r| r.period,
        ),
    };
    let new_start = start.unwrap_or(current.start);
    // A move keeps the length unless a new end or length is given.
    let end = match length.end(ctx, new_start)? {
        Some(end) => Some(end),
        None => start.map(|s| s + (current.end - current.start)),
    };
    if following {
        let new = Period {
            start: new_start,
            end: end.unwrap_or(current.end),
        };
        return edit_following(ctx, &target, current, new, note, reason).await;
    }
    let change = ReservationChange {
        start: start.filter(|s| *s != current.start),
        end: end.filter(|e| *e != current.end),
        note,
    };
    let changed = change_target(ctx, &target, ChangeKind::Edit(change), reason).await?;
    done(ctx, "changed", &changed)
}

/// `edit ID --following`: the occurrence `target` names moves from `this`
/// to `new`, and every later one of its series by the same wall-clock shift.
async fn edit_following(
    ctx: &Ctx,
    target: &Target,
    this: Period,
    new: Period,
    note: Option<String>,
    reason: Option<String>,
) -> CliResult<()> {
    let series = match target {
        Target::One(r) => r.series_id,
        Target::Booking(_, rs) => rs.first().and_then(|r| r.series_id),
    };
    let Some(series_id) = series else {
        return Err(Failure::usage(
            "--following: this reservation is not part of a recurring booking",
        ));
    };
    let all = ctx.api(ctx.client.find(Lookup::Series(series_id)).await)?;
    let periods = timefmt::shift_following(&all, this, new, ctx.tz, ctx.now)?;
    let edit = SeriesEdit {
        series_id,
        from: this.start,
        periods,
        note,
        reason,
    };
    let changed = ctx.api(ctx.client.edit_series(edit).await)?;
    done(ctx, "changed", &changed)
}

/// Extends a reservation's end, or a whole booking's.
pub(super) async fn extend(
    ctx: &Ctx,
    id: String,
    by: String,
    reason: Option<String>,
) -> CliResult<()> {
    let span = parse_duration(&by)?;
    let target = ctx.find_target(&id).await?;
    let end = match &target {
        Target::One(r) => r.period.end,
        Target::Booking(_, rs) => rs.iter().map(|r| r.period.end).max().unwrap_or(ctx.now),
    };
    let change = ReservationChange {
        end: Some(span.add_to(end, ctx.tz)?),
        ..Default::default()
    };
    let changed = change_target(ctx, &target, ChangeKind::Edit(change), reason).await?;
    done(ctx, "extended", &changed)
}

/// Cancels or releases a reservation, or a whole booking, and says so.
pub(super) async fn apply(
    ctx: &Ctx,
    id: &str,
    kind: ChangeKind,
    reason: Option<String>,
    what: &str,
) -> CliResult<()> {
    let target = ctx.find_target(id).await?;
    let changed = change_target(ctx, &target, kind, reason).await?;
    done(ctx, what, &changed)
}

/// Makes `kind` of change to `target`; with a reason (an admin changing
/// someone else's reservation), through the call that records it.
async fn change_target(
    ctx: &Ctx,
    target: &Target,
    kind: ChangeKind,
    reason: Option<String>,
) -> CliResult<Vec<Reservation>> {
    let c = &ctx.client;
    let result = match (reason, target, kind) {
        (Some(reason), target, kind) => {
            let target = match target {
                Target::One(r) => ChangeTarget::Reservation(r.id),
                Target::Booking(b, _) => ChangeTarget::Booking(*b),
            };
            c.change_with_reason(target, kind, reason).await
        }
        (None, Target::One(r), ChangeKind::Edit(change)) => {
            c.update(r.id, change).await.map(|r| vec![r])
        }
        (None, Target::Booking(b, _), ChangeKind::Edit(change)) => {
            c.update_booking(*b, change).await
        }
        (None, Target::One(r), ChangeKind::Cancel) => c.cancel(r.id).await.map(|r| vec![r]),
        (None, Target::Booking(b, _), ChangeKind::Cancel) => c.cancel_booking(*b).await,
        (None, Target::One(r), ChangeKind::Release) => c.release(r.id).await.map(|r| vec![r]),
        (None, Target::Booking(b, _), ChangeKind::Release) => c.release_booking(*b).await,
    };
    ctx.api(result)
}

/// Prints what a change did: one reservation as a JSON object (as before),
/// several (a booking) as an array.
fn done(ctx: &Ctx, what: &str, rs: &[Reservation]) -> CliResult<()> {
    if ctx.json {
        return match rs {
            [r] => ctx.print_json(&ReservationJson::new(r, ctx.tz)),
            rs => ctx.print_json(
                &rs.iter()
                    .map(|r| ReservationJson::new(r, ctx.tz))
                    .collect::<Vec<_>>(),
            ),
        };
    }
    outln!("{what}:");
    out!("{}", output::reservations_table(rs, ctx.tz));
    Ok(())
}

/// How `book --every` repeats.
pub(super) struct Repeat {
    pub every: String,
    pub until: String,
    pub skip_conflicts: bool,
}

/// `day`, `daily`, `week`, `weekly`, `2 weeks`, `3d`, `1w`: days between
/// occurrences.
fn every_days(s: &str) -> CliResult<u64> {
    let s = s.trim().to_ascii_lowercase();
    let bad = || {
        Failure::usage(format!(
            "--every takes day, week, 2 weeks, 3d or 1w (got {s:?})"
        ))
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = if n.is_empty() {
        1
    } else {
        n.parse().map_err(|_| bad())?
    };
    let per = match unit.trim() {
        "d" | "day" | "days" | "daily" => 1,
        "w" | "week" | "weeks" | "weekly" => 7,
        _ => return Err(bad()),
    };
    match n * per {
        0 => Err(bad()),
        d if d > 366 => Err(Failure::usage("--every: at most a year")),
        d => Ok(d),
    }
}

/// The occurrences of `first` every `days` days whose start falls on or
/// before the day of `until`, keeping the wall-clock start and end in `tz`
/// (so 14:00 stays 14:00 across a DST change).
pub(super) fn occurrences(
    first: Period,
    days: u64,
    until: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> CliResult<Vec<Period>> {
    let start = first.start.with_timezone(&tz).naive_local();
    let end = first.end.with_timezone(&tz).naive_local();
    let last_day = until.with_timezone(&tz).date_naive();
    let mut out = Vec::new();
    for k in 0u64.. {
        let shift = chrono::Days::new(k * days);
        let (Some(s), Some(e)) = (start.checked_add_days(shift), end.checked_add_days(shift))
        else {
            break;
        };
        if s.date() > last_day {
            break;
        }
        if out.len() >= limits::SERIES_MAX {
            return Err(Failure::usage(format!(
                "at most {} occurrences: choose an earlier --until",
                limits::SERIES_MAX
            )));
        }
        out.push(Period {
            start: timefmt::resolve(s, tz)?,
            end: timefmt::resolve(e, tz)?,
        });
    }
    if out.is_empty() {
        return Err(Failure::usage("--until is before the first occurrence"));
    }
    Ok(out)
}

/// `book NAME… --from … --for … --every … --until … [--skip-conflicts]`.
pub(super) async fn book_series(
    ctx: &Ctx,
    resources: Vec<String>,
    from: Option<String>,
    length: Length,
    note: String,
    repeat: Repeat,
) -> CliResult<()> {
    let (tz, now) = (ctx.tz, ctx.now);
    let Period { start, end } = length.period(ctx, from.as_deref())?;
    let days = every_days(&repeat.every)?;
    if end - start > TimeDelta::days(i64::try_from(days).unwrap_or(i64::MAX)) {
        return Err(Failure::usage(
            "each occurrence must end before the next starts",
        ));
    }
    let until = parse_time(&repeat.until, now, tz)?;
    let periods = occurrences(Period { start, end }, days, until, tz)?;
    super::check_note(&note)?;
    let ids = ctx.resolve_resources(&resources).await?;
    let reply = ctx.api(
        ctx.client
            .book_series(gpures_proto::SeriesRequest {
                request_id: Uuid::new_v4(),
                resources: ids,
                periods,
                note,
                skip_conflicts: repeat.skip_conflicts,
            })
            .await,
    )?;
    let booked: Vec<Reservation> = reply
        .booked
        .iter()
        .flat_map(|b| b.reservations.iter().cloned())
        .collect();
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "series_id": reply.series_id.to_string(),
            "booked": booked.iter().map(|r| ReservationJson::new(r, tz)).collect::<Vec<_>>(),
            "skipped": skipped_json(&reply.skipped, tz),
        }));
    }
    outln!(
        "booked {} occurrence(s) (series {}; cancel one and the rest with `gpures cancel ID --following`):",
        reply.booked.len(),
        &reply.series_id.simple().to_string()[..8]
    );
    out!("{}", output::reservations_table(&booked, tz));
    if !reply.skipped.is_empty() {
        outln!("skipped {}:", reply.skipped.len());
        out!("{}", skipped_lines(&reply.skipped, tz));
    }
    Ok(())
}

/// One line per occurrence not booked: when, and why.
pub(super) fn skipped_lines(skipped: &[gpures_proto::Skipped], tz: chrono_tz::Tz) -> String {
    let mut out = String::new();
    for s in skipped {
        out.push_str(&format!(
            "  {} to {}: {}\n",
            format_local(s.period.start, tz),
            format_local(s.period.end, tz),
            why_text(&s.why, tz)
        ));
    }
    out
}

/// Why an occurrence was not booked, times in `tz`.
fn why_text(e: &gpures_proto::ApiError, tz: chrono_tz::Tz) -> String {
    use gpures_proto::ApiError;
    match e {
        ApiError::Conflict { holders } => format!(
            "taken by {}",
            holders
                .iter()
                .map(|h| format!(
                    "{} <{}> on {}",
                    text::sanitize(&h.user.display_name),
                    text::sanitize(&h.user.email),
                    text::sanitize(&h.resource_name)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ApiError::Blocked { blocks } => format!(
            "blocked for maintenance: {}",
            blocks
                .iter()
                .map(|b| text::sanitize(&b.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        ApiError::Policy(r) => format!(
            "refused by lab policy: {}",
            r.sentence(|t| format_local(t, tz))
        ),
        e => text::sanitize(&e.to_string()),
    }
}

/// The occurrences not booked, for `--json`.
pub(super) fn skipped_json(
    skipped: &[gpures_proto::Skipped],
    tz: chrono_tz::Tz,
) -> serde_json::Value {
    serde_json::Value::Array(
        skipped
            .iter()
            .map(|s| {
                serde_json::json!({
                    "start": timefmt::rfc3339(s.period.start, tz),
                    "end": timefmt::rfc3339(s.period.end, tz),
                    "why": why_text(&s.why, tz),
                })
            })
            .collect(),
    )
}

/// `cancel ID --following`: the occurrence `id` names and every later one
/// of its series.
pub(super) async fn cancel_following(ctx: &Ctx, id: &str) -> CliResult<()> {
    let first = match ctx.find_target(id).await? {
        Target::One(r) => *r,
        Target::Booking(_, rs) => rs
            .into_iter()
            .next()
            .ok_or_else(|| Failure::new(super::exit::ERROR, "no such booking"))?,
    };
    let Some(series) = first.series_id else {
        return Err(Failure::usage(
            "--following: this reservation is not part of a recurring booking",
        ));
    };
    let cancelled = ctx.api(ctx.client.cancel_series(series, first.period.start).await)?;
    done(ctx, "cancelled", &cancelled)
}

/// How `book` asks: plainly, past policy as an admin, or as a request.
pub(super) enum How {
    Plain,
    Override(String),
    Request {
        reason: String,
        decide_by: Option<String>,
    },
}

/// `admin approve|deny ID`.
pub(super) async fn decide(
    ctx: &Ctx,
    id: &str,
    approve: bool,
    reason: Option<String>,
) -> CliResult<()> {
    let booking = match ctx.find_target(id).await? {
        Target::One(r) => r.booking_id,
        Target::Booking(b, _) => b,
    };
    let changed = ctx.api(ctx.client.decide_approval(booking, approve, reason).await)?;
    done(ctx, if approve { "approved" } else { "denied" }, &changed)
}

#[cfg(test)]
mod series_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_reads_what_people_type() {
        assert_eq!(every_days("week").ok(), Some(7));
        assert_eq!(every_days("2 weeks").ok(), Some(14));
        assert_eq!(every_days("3d").ok(), Some(3));
        assert_eq!(every_days("daily").ok(), Some(1));
        assert!(every_days("0d").is_err());
        assert!(every_days("fortnight").is_err());
    }

    #[test]
    fn weekly_occurrences_keep_the_wall_clock_across_dst() {
        let tz: chrono_tz::Tz = "America/New_York".parse().expect("zone");
        // Sundays 10:00–14:00 from 2027-03-07; DST starts 2027-03-14.
        let first = Period {
            start: tz
                .with_ymd_and_hms(2027, 3, 7, 10, 0, 0)
                .single()
                .expect("time")
                .with_timezone(&Utc),
            end: tz
                .with_ymd_and_hms(2027, 3, 7, 14, 0, 0)
                .single()
                .expect("time")
                .with_timezone(&Utc),
        };
        let until = tz
            .with_ymd_and_hms(2027, 3, 21, 0, 0, 0)
            .single()
            .expect("time")
            .with_timezone(&Utc);
        let ps = occurrences(first, 7, until, tz).expect("occurrences");
        assert_eq!(ps.len(), 3, "the 7th, 14th and 21st");
        for p in &ps {
            let local = p.start.with_timezone(&tz);
            assert_eq!(local.format("%H:%M").to_string(), "10:00");
            assert_eq!(p.end - p.start, TimeDelta::hours(4));
        }
        assert_eq!(ps[1].start - ps[0].start, TimeDelta::hours(24 * 7 - 1));
    }
}
