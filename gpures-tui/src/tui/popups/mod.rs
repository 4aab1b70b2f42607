//! What opens over a screen: the booking or edit form ([`booking`]), a y/n
//! question ([`confirm`]), the key help ([`help`]) and the timeline's filter
//! prompt ([`filter`]). A popup has the keys while it is open. The shared
//! ways into them for a reservation (edit, cancel, release) are here, so the
//! timeline and the list ask the same questions.

pub mod booking;
pub mod confirm;
pub mod filter;
pub mod help;

use gpures_proto::{Reservation, text};
use ratatui::Frame;
use ratatui::layout::Rect;

use super::app::{Ctx, Effect, Event};
use super::keys::{Action, Scope};
use super::screens::Component;
use booking::BookingForm;
use confirm::Confirm;
use filter::FilterPrompt;
use help::Help;

/// The popup open over the screen.
#[derive(Clone, Debug)]
pub enum Popup {
    Booking(BookingForm),
    Confirm(Confirm),
    Filter(FilterPrompt),
    Help(Help),
}

impl Popup {
    fn component(&self) -> &dyn Component {
        match self {
            Popup::Booking(f) => f,
            Popup::Confirm(c) => c,
            Popup::Filter(f) => f,
            Popup::Help(h) => h,
        }
    }

    pub fn scope(&self) -> Scope {
        self.component().scope()
    }

    pub fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event> {
        match self {
            Popup::Booking(f) => f.update(action, ctx),
            Popup::Confirm(c) => c.update(action, ctx),
            Popup::Filter(f) => f.update(action, ctx),
            Popup::Help(h) => h.update(action, ctx),
        }
    }

    /// Draws the popup over the whole screen `area`.
    pub fn draw(&self, ctx: &Ctx, frame: &mut Frame, area: Rect) {
        self.component().draw(ctx, frame, area);
    }
}

/// The edit form for `target`, if the viewer may change it.
pub fn edit(target: Option<&Reservation>, ctx: &Ctx) -> Vec<Event> {
    match target {
        None => vec![Event::Fail("no reservation here".into())],
        Some(r) if !ctx.may_change(r) => vec![Event::Fail("that is not your reservation".into())],
        Some(r) => {
            let mut form = BookingForm::edit(r, ctx);
            let check = form.check(ctx);
            let mut events = vec![Event::open(Popup::Booking(form))];
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
        Some(r) => vec![Event::open(Popup::Confirm(Confirm {
            question: format!(
                "Cancel {} · {} · {}? (y/n)",
                text::sanitize(&r.resource_name),
                text::sanitize(&r.user.display_name),
                ctx.period_text(&r.period)
            ),
            effect: Effect::Cancel(r.id),
        }))],
    }
}

/// Releasing `target` now.
pub fn release(target: Option<&Reservation>, ctx: &Ctx) -> Vec<Event> {
    match target {
        None => vec![Event::Fail("no reservation here".into())],
        Some(r) if !ctx.may_change(r) => vec![Event::Fail("that is not your reservation".into())],
        Some(r) => vec![Event::Call(Effect::Release(r.id))],
    }
}
