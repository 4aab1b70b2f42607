//! A question waiting for y/n; yes makes its call.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::tui::component::{Component, Event, Popup};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::style::centered;

/// A question waiting for y/n (and `a` when it offers all of a booking).
#[derive(Clone, Debug)]
pub struct Confirm {
    pub question: String,
    /// The call a yes makes.
    pub effect: Effect,
    /// The call `a` makes: the same for every GPU of the booking.
    pub all: Option<Effect>,
}

impl Component for Confirm {
    fn scope(&self) -> Scope {
        Scope::Confirm
    }

    fn update(&mut self, action: Action, _ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Yes => vec![Event::Close, Event::Call(self.effect.clone())],
            Action::All => match &self.all {
                Some(all) => vec![Event::Close, Event::Call(all.clone())],
                None => vec![Event::Close, Event::Say("not done".into())],
            },
            Action::Quit => vec![Event::Quit],
            _ => vec![Event::Close, Event::Say("not done".into())],
        }
    }

    fn hints(&self) -> &'static str {
        if self.all.is_some() {
            "y this GPU · a all GPUs of the booking · any other key no"
        } else {
            "y yes · any other key no"
        }
    }

    fn draw(&self, _ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let area = centered(size, 64.min(size.width), 4);
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(self.question.as_str())
                .block(Block::default().borders(Borders::ALL).title(" Confirm "))
                .wrap(Wrap { trim: true }),
            area,
        );
    }
}

impl Popup for Confirm {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
