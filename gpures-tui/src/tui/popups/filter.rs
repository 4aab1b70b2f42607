//! The timeline's filter prompt, drawn in the footer: a user name or email
//! part, or `@host`.

use gpures_proto::text;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use crate::tui::component::{Component, Event, Popup};
use crate::tui::form::edit_line;
use crate::tui::keys::{Action, Scope};
use crate::tui::model::Ctx;
use crate::tui::style::footer_area;

/// The prompt and what has been typed.
#[derive(Clone, Debug)]
pub struct FilterPrompt {
    pub input: String,
}

impl FilterPrompt {
    pub fn new(input: String) -> FilterPrompt {
        FilterPrompt { input }
    }
}

impl Component for FilterPrompt {
    fn scope(&self) -> Scope {
        Scope::Filter
    }

    fn update(&mut self, action: Action, _ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Submit => {
                let f = text::sanitize_trimmed(&self.input);
                vec![Event::Close, Event::SetFilter((!f.is_empty()).then_some(f))]
            }
            Action::Close => vec![Event::Close, Event::SetFilter(None)],
            Action::Quit => vec![Event::Quit],
            other => {
                edit_line(&mut self.input, &other);
                vec![]
            }
        }
    }

    fn hints(&self) -> &'static str {
        "Enter apply · Esc clear"
    }

    /// The prompt replaces the footer's first line.
    fn draw(&self, _ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let line = Line::from(format!(
            "filter by user: {}▏ (Enter apply · Esc clear)",
            text::sanitize(&self.input)
        ));
        let top = Rect {
            height: 1,
            ..footer_area(size)
        };
        frame.render_widget(Paragraph::new(line), top);
    }
}

impl Popup for FilterPrompt {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
