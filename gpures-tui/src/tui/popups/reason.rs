//! The reason an admin gives before changing someone else's reservation:
//! typed into a small box, kept on the reservation and shown to its owner.

use gpures_proto::{ChangeKind, ChangeTarget, text};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::tui::component::{Component, Event, Popup};
use crate::tui::form::edit_line;
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::style::centered;

/// What will be done, and the reason typed so far.
#[derive(Clone, Debug)]
pub struct ReasonPrompt {
    /// "Cancel gpu0 · 이서연 · …".
    pub what: String,
    pub then: Then,
    pub input: String,
}

/// What the reason is for.
#[derive(Clone, Debug)]
pub enum Then {
    /// An admin's change of someone else's reservation.
    Change {
        target: ChangeTarget,
        kind: ChangeKind,
    },
    /// Denying the pending booking.
    Deny(uuid::Uuid),
}

impl Component for ReasonPrompt {
    fn scope(&self) -> Scope {
        Scope::Filter
    }

    fn update(&mut self, action: Action, _ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Submit => {
                let reason = text::sanitize_trimmed(&self.input);
                if reason.is_empty() {
                    return vec![Event::Fail("say why: the owner is shown the reason".into())];
                }
                let effect = match &self.then {
                    Then::Change { target, kind } => Effect::ChangeWithReason {
                        target: *target,
                        kind: kind.clone(),
                        reason,
                    },
                    Then::Deny(booking_id) => Effect::Decide {
                        booking_id: *booking_id,
                        approve: false,
                        reason: Some(reason),
                    },
                };
                vec![
                    Event::Close,
                    Event::Say("saving…".into()),
                    Event::Call(effect),
                ]
            }
            Action::Close => vec![Event::Close, Event::Say("not done".into())],
            Action::Quit => vec![Event::Quit],
            other => {
                edit_line(&mut self.input, &other);
                vec![]
            }
        }
    }

    fn hints(&self) -> &'static str {
        "Enter do it · Esc not now"
    }

    fn draw(&self, _ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let area = centered(size, 64.min(size.width), 6);
        frame.render_widget(Clear, area);
        let lines = vec![
            Line::from(self.what.clone()),
            Line::from(""),
            Line::from(format!("Why? {}▏", text::sanitize(&self.input))),
        ];
        frame.render_widget(
            Paragraph::new(lines)
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" Someone else's reservation: the owner sees the reason "),
                )
                .wrap(Wrap { trim: true }),
            area,
        );
    }
}

impl Popup for ReasonPrompt {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
