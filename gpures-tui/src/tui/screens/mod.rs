//! The screens, one component each: [`login`], [`timeline`], [`mine`],
//! [`status`], [`admin`]. A [`Component`] owns its state, turns actions into
//! changes of that state and [`Event`]s, and draws itself from its state and
//! the shared [`Ctx`].

pub mod admin;
pub mod login;
pub mod mine;
pub mod status;
pub mod timeline;

use ratatui::Frame;
use ratatui::layout::Rect;

use super::app::{Ctx, Event};
use super::keys::{Action, Scope};

/// One screen or popup of the TUI.
pub trait Component {
    /// Which bindings apply while it has the keys.
    fn scope(&self) -> Scope;
    /// Applies an action to its own state; what it asks of the app comes back.
    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event>;
    /// Draws it into `area`; only reads.
    fn draw(&self, ctx: &Ctx, frame: &mut Frame, area: Rect);
    /// The footer's first line when no message is shown.
    fn status_line(&self, _ctx: &Ctx) -> String {
        String::new()
    }
    /// The footer's key hints.
    fn hints(&self) -> &'static str;
}
