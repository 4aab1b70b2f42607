//! A question waiting for y/n; yes makes its call.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::tui::component::{Component, Event, Popup};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::style::centered;

/// A question waiting for y/n.
#[derive(Clone, Debug)]
pub struct Confirm {
    pub question: String,
    /// The call a yes makes.
    pub effect: Effect,
}

impl Component for Confirm {
    fn scope(&self) -> Scope {
        Scope::Confirm
    }

    fn update(&mut self, action: Action, _ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Yes => vec![Event::Close, Event::Call(self.effect.clone())],
            Action::Quit => vec![Event::Quit],
            _ => vec![Event::Close, Event::Say("not done".into())],
        }
    }

    fn hints(&self) -> &'static str {
        "y yes · any other key no"
    }

    fn draw(&self, _ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let area = centered(size, 64.min(size.width), 3);
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
