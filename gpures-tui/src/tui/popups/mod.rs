//! What opens over a screen, each a [`Popup`](super::component::Popup): the
//! booking or edit form ([`booking`]), a y/n question ([`confirm`]), the key
//! help ([`help`]) and the timeline's filter prompt ([`filter`]). A popup has
//! the keys while it is open. The shared ways into them for a reservation
//! (edit, cancel, release) are here, so the timeline and the list ask the
//! same questions.

pub mod booking;
pub mod confirm;
pub mod filter;
pub mod help;

use gpures_proto::{Reservation, text};

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

/// The question before cancelling `target`.
pub fn cancel(target: Option<&Reservation>, ctx: &Ctx) -> Vec<Event> {
    match target {
        None => vec![Event::Fail("no reservation here".into())],
        Some(r) if !ctx.may_change(r) => vec![Event::Fail("that is not your reservation".into())],
        Some(r) => vec![Event::open(Confirm {
            question: format!(
                "Cancel {} · {} · {}? (y/n)",
                text::sanitize(&r.resource_name),
                text::sanitize(&r.user.display_name),
                ctx.period_text(&r.period)
            ),
            effect: Effect::Cancel(r.id),
        })],
    }
}

/// The question before releasing `target` now (it cannot be undone, like
/// a cancel).
pub fn release(target: Option<&Reservation>, ctx: &Ctx) -> Vec<Event> {
    match target {
        None => vec![Event::Fail("no reservation here".into())],
        Some(r) if !ctx.may_change(r) => vec![Event::Fail("that is not your reservation".into())],
        Some(r) => vec![Event::open(Confirm {
            question: format!(
                "Release {} · {} now (it ends at once)? (y/n)",
                text::sanitize(&r.resource_name),
                text::sanitize(&r.user.display_name),
            ),
            effect: Effect::Release(r.id),
        })],
    }
}
