//! `gpures resources | ls | book | edit | extend | cancel | release`.

use gpures_proto::{
    BookingRequest, Period, Reservation, ReservationChange, ReservationFilter, limits,
};
use uuid::Uuid;

use super::{CliResult, Ctx, Failure, Target};
use crate::output::{self, ReservationJson, ResourceJson, table};
use crate::timefmt::{parse_duration, parse_time};

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
    print!(
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
            let end = match to {
                Some(t) => parse_time(&t, now, tz)?,
                None => start + chrono::TimeDelta::days(14),
            };
            if end <= start {
                return Err(Failure::usage("--to must be after --from"));
            }
            Some(Period { start, end })
        }
    };
    let rs = ctx
        .list(ReservationFilter {
            resources: resource_ids,
            user_email,
            window,
            include_cancelled: all,
        })
        .await?;
    ctx.print_reservations(&rs)?;
    Ok(())
}

/// Books resources, all or nothing.
pub(super) async fn book(
    ctx: &Ctx,
    resources: Vec<String>,
    from: String,
    to: Option<String>,
    r#for: Option<String>,
    note: String,
) -> CliResult<()> {
    let (tz, now) = (ctx.tz, ctx.now);
    let start = parse_time(&from, now, tz)?;
    let end = match (to, r#for) {
        (Some(t), _) => parse_time(&t, now, tz)?,
        (None, Some(d)) => parse_duration(&d)?.add_to(start, tz)?,
        (None, None) => return Err(Failure::usage("give --to or --for")),
    };
    if end <= start {
        return Err(Failure::usage("the end must be after the start"));
    }
    if note.chars().count() > limits::NOTE_MAX_CHARS {
        return Err(Failure::usage(format!(
            "the note may have at most {} characters",
            limits::NOTE_MAX_CHARS
        )));
    }
    let ids = ctx.resolve_resources(&resources).await?;
    let request = BookingRequest {
        request_id: Uuid::new_v4(),
        resources: ids,
        period: Period { start, end },
        note,
    };
    let booking = ctx.api(ctx.client.book(request).await)?;
    if ctx.json {
        return ctx.print_json(
            &booking
                .reservations
                .iter()
                .map(|r| ReservationJson::new(r, tz))
                .collect::<Vec<_>>(),
        );
    }
    println!("booked (booking {}):", &booking.booking_id.to_string()[..8]);
    print!("{}", output::reservations_table(&booking.reservations, tz));
    Ok(())
}

/// Moves, shortens, extends or re-notes a reservation, or a whole booking
/// given by its id.
pub(super) async fn edit(
    ctx: &Ctx,
    id: String,
    from: Option<String>,
    to: Option<String>,
    note: Option<String>,
) -> CliResult<()> {
    let (tz, now) = (ctx.tz, ctx.now);
    let change = ReservationChange {
        start: from.map(|f| parse_time(&f, now, tz)).transpose()?,
        end: to.map(|t| parse_time(&t, now, tz)).transpose()?,
        note,
    };
    if change.start.is_none() && change.end.is_none() && change.note.is_none() {
        return Err(Failure::usage(
            "nothing to change: give --from, --to or --note",
        ));
    }
    let changed = match ctx.find_target(&id).await? {
        Target::One(r) => vec![ctx.api(ctx.client.update(r.id, change).await)?],
        Target::Booking(b, _) => ctx.api(ctx.client.update_booking(b, change).await)?,
    };
    done(ctx, "changed", &changed)
}

/// Extends a reservation's end, or a whole booking's.
pub(super) async fn extend(ctx: &Ctx, id: String, by: String) -> CliResult<()> {
    let span = parse_duration(&by)?;
    let changed = match ctx.find_target(&id).await? {
        Target::One(r) => {
            let change = ReservationChange {
                end: Some(span.add_to(r.period.end, ctx.tz)?),
                ..Default::default()
            };
            vec![ctx.api(ctx.client.update(r.id, change).await)?]
        }
        Target::Booking(b, rs) => {
            let end = rs.iter().map(|r| r.period.end).max().unwrap_or(ctx.now);
            let change = ReservationChange {
                end: Some(span.add_to(end, ctx.tz)?),
                ..Default::default()
            };
            ctx.api(ctx.client.update_booking(b, change).await)?
        }
    };
    done(ctx, "extended", &changed)
}

/// Cancels a reservation, or a whole booking.
pub(super) async fn cancel(ctx: &Ctx, id: String) -> CliResult<()> {
    let changed = match ctx.find_target(&id).await? {
        Target::One(r) => vec![ctx.api(ctx.client.cancel(r.id).await)?],
        Target::Booking(b, _) => ctx.api(ctx.client.cancel_booking(b).await)?,
    };
    done(ctx, "cancelled", &changed)
}

/// Ends a running reservation now, or every running one of a booking.
pub(super) async fn release(ctx: &Ctx, id: String) -> CliResult<()> {
    let changed = match ctx.find_target(&id).await? {
        Target::One(r) => vec![ctx.api(ctx.client.release(r.id).await)?],
        Target::Booking(b, _) => ctx.api(ctx.client.release_booking(b).await)?,
    };
    done(ctx, "released", &changed)
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
    println!("{what}:");
    print!("{}", output::reservations_table(rs, ctx.tz));
    Ok(())
}
