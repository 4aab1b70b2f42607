//! How the app and its parts talk: a [`Component`] (a screen or a popup)
//! owns its state, turns an [`Action`] into changes of that state and
//! [`Event`]s for the app, takes the results of calls meant for it
//! ([`Component::apply`]) and draws itself. A [`Popup`] is a component that
//! opens over a screen.

use std::any::Any;
use std::fmt::Debug;

use ratatui::Frame;
use ratatui::layout::Rect;

use super::keys::{Action, Scope};
use super::model::{Ctx, Effect, Msg};

/// One screen or popup of the TUI.
pub trait Component {
    /// Which bindings apply while it has the keys.
    fn scope(&self) -> Scope;
    /// Applies an action to its own state; what it asks of the app comes back.
    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event>;
    /// Takes a call's result meant for it (the app decides which).
    fn apply(&mut self, _msg: &Msg, _ctx: &Ctx) -> Vec<Event> {
        vec![]
    }
    /// Draws it into `area`; only reads.
    fn draw(&self, ctx: &Ctx, frame: &mut Frame, area: Rect);
    /// The footer's first line when no message is shown.
    fn status_line(&self, _ctx: &Ctx) -> String {
        String::new()
    }
    /// The footer's key hints.
    fn hints(&self) -> &'static str;
}

/// A component that opens over a screen (it draws over the whole screen).
pub trait Popup: Component + Debug + Send {
    /// For reading a popup of a known kind (tests, the app's accessors).
    fn as_any(&self) -> &dyn Any;
}

/// What a component asks of the app: the queue panels talk through.
#[derive(Debug)]
pub enum Event {
    /// Make a call to the daemon.
    Call(Effect),
    /// Open a popup over the screen.
    Open(Box<dyn Popup>),
    /// Close the open popup.
    Close,
    /// Show a line in the footer.
    Say(String),
    /// Show an error in the footer.
    Fail(String),
    /// Filter the timeline (`None`: no filter).
    SetFilter(Option<String>),
    Quit,
}

impl Event {
    /// Opens `popup`.
    pub fn open(popup: impl Popup + 'static) -> Event {
        Event::Open(Box::new(popup))
    }
}
