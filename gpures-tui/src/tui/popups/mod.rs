//! What opens over a screen, each a [`Popup`](super::component::Popup): the
//! booking or edit form ([`booking`]), a y/n question ([`confirm`]), the key
//! help ([`help`]), the timeline's filter prompt ([`filter`]), the Admin
//! screen's policy and group command line ([`command`]) and the reason
//! an admin gives for changing someone else's reservation ([`reason`]). A popup has
//! the keys while it is open. The shared ways into them for a reservation
//! (edit, cancel, release) are here, so the timeline and the list ask the
//! same questions.

pub mod booking;
pub mod command;
pub mod confirm;
pub mod filter;
pub mod help;
pub mod inbox;
pub mod notify;
pub mod reason;

use gpures_proto::{ChangeKind, ChangeTarget, Reservation, text};

use super::component::Event;
use super::model::{Ctx, Effect};
use booking::BookingForm;
use confirm::Confirm;

/// The edit form for `target`, if the viewer may change it.
pub fn edit(target: Option<&Reservation>, ctx: &Ctx) -> Vec<Event> {
    match target {
        None => vec![Event::Fail("no reservation here".into())],
        Some(r) if !ctx.may_change(r) => vec![Event::Fail("that is not your reservation".into())],
        Some(r) => {
            let mut form = BookingForm::edit(r, ctx);
            let check = form.check(ctx);
            let mut events = vec![Event::open(form)];
            events.extend(check.map(Event::Call));
            events
        }
    }
}

/// The question before cancelling `target`; for one GPU of a booking of
/// several, "this GPU or all N".
pub fn cancel(target: Option<&Reservation>, ctx: &Ctx) -> Vec<Event> {
    match target {
        None => vec![Event::Fail("no reservation here".into())],
        Some(r) if !ctx.may_change(r) => vec![Event::Fail("that is not your reservation".into())],
        Some(r) => {
            let what = format!(
                "Cancel {} · {} · {}",
                text::sanitize(&r.resource_name),
                text::sanitize(&r.user.display_name),
                ctx.period_text(&r.period)
            );
            if !ctx.owns(r) {
                return vec![Event::open(reason::ReasonPrompt {
                    what,
                    then: reason::Then::Change {
                        target: ChangeTarget::Reservation(r.id),
                        kind: ChangeKind::Cancel,
                    },
                    input: String::new(),
                })];
            }
            if let Some(series_id) = r.series_id {
                // An occurrence: this one (all its GPUs), or it and every
                // later one of its series.
                return vec![Event::open(Confirm {
                    question: format!(
                        "{what}? It is an occurrence of a recurring booking: y this one · a this and every later one · n no"
                    ),
                    effect: Effect::CancelBooking(r.booking_id),
                    all: Some(Effect::CancelSeries {
                        series_id,
                        from: r.period.start,
                    }),
                })];
            }
            vec![Event::open(question(
                what,
                r,
                ctx,
                Effect::Cancel(r.id),
                Effect::CancelBooking(r.booking_id),
            ))]
        }
    }
}

/// The question before releasing `target` now (it cannot be undone, like
/// a cancel); for one GPU of a booking of several, "this GPU or all N".
pub fn release(target: Option<&Reservation>, ctx: &Ctx) -> Vec<Event> {
    match target {
        None => vec![Event::Fail("no reservation here".into())],
        Some(r) if !ctx.may_change(r) => vec![Event::Fail("that is not your reservation".into())],
        Some(r) => {
            let what = format!(
                "Release {} · {} now (it ends at once)",
                text::sanitize(&r.resource_name),
                text::sanitize(&r.user.display_name),
            );
            if !ctx.owns(r) {
                return vec![Event::open(reason::ReasonPrompt {
                    what,
                    then: reason::Then::Change {
                        target: ChangeTarget::Reservation(r.id),
                        kind: ChangeKind::Release,
                    },
                    input: String::new(),
                })];
            }
            vec![Event::open(question(
                what,
                r,
                ctx,
                Effect::Release(r.id),
                Effect::ReleaseBooking(r.booking_id),
            ))]
        }
    }
}

/// An admin's decision on the pending booking of `target`: approve (after
/// a y/n question) or deny (after the reason, which its owner is shown).
pub fn decide(target: Option<&Reservation>, ctx: &Ctx, approve: bool) -> Vec<Event> {
    let Some(r) = target else {
        return vec![Event::Fail("no reservation here".into())];
    };
    if !ctx.is_admin() {
        return vec![Event::Fail("only an admin approves or denies".into())];
    }
    let Some(p) = &r.pending else {
        return vec![Event::Fail(
            "this booking is not waiting for approval".into(),
        )];
    };
    let what = format!(
        "{} {} · {} · {} (asked: {})",
        if approve { "Approve" } else { "Deny" },
        text::sanitize(&r.user.display_name),
        text::sanitize(&r.resource_name),
        ctx.period_text(&r.period),
        text::sanitize(&p.reason)
    );
    if approve {
        vec![Event::open(Confirm {
            question: format!("{what}? (y/n)"),
            effect: Effect::Decide {
                booking_id: r.booking_id,
                approve: true,
                reason: None,
            },
            all: None,
        })]
    } else {
        vec![Event::open(reason::ReasonPrompt {
            what,
            then: reason::Then::Deny(r.booking_id),
            input: String::new(),
        })]
    }
}

/// `what`? as a y/n question, or as "this GPU or all N" when `r` is one
/// GPU of a booking that holds others not over yet.
fn question(what: String, r: &Reservation, ctx: &Ctx, one: Effect, all: Effect) -> Confirm {
    let n = ctx.booking_size(r);
    if n > 1 {
        Confirm {
            question: format!(
                "{what}? It is one of {n} GPUs of booking {}: y this GPU · a all {n} · n no",
                short_id(r.booking_id)
            ),
            effect: one,
            all: Some(all),
        }
    } else {
        Confirm {
            question: format!("{what}? (y/n)"),
            effect: one,
            all: None,
        }
    }
}

/// The first 8 hex digits of an id, as `ls` and `book` print it.
pub fn short_id(id: uuid::Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}
