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
    /// The call `a` makes: the same for every GPU of the booking, or for
    /// this and every later occurrence of a series.
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
        match &self.all {
            Some(Effect::CancelSeries { .. } | Effect::EditSeries { .. }) => {
                "y this one · a this and every later one · any other key no"
            }
            Some(_) => "y this GPU · a all GPUs of the booking · any other key no",
            None => "y yes · any other key no",
        }
    }

    fn draw(&self, _ctx: &Ctx, frame: &mut Frame, size: Rect) {
        // As many lines as the question needs (it wraps), in a box 64 wide.
        let width = 64.min(size.width);
        let text_width = usize::from(width.saturating_sub(2)).max(1);
        let lines =
            unicode_width::UnicodeWidthStr::width(self.question.as_str()).div_ceil(text_width);
        let height = u16::try_from(lines + 3).unwrap_or(u16::MAX).max(4);
        let area = centered(size, width, height.min(size.height));
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
