//! The inbox: the member's newest notifications, unread ones marked `●`,
//! opened with `i` (which marks them read on the daemon).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use gpures_proto::text;

use crate::timefmt::format_local;
use crate::tui::component::{Component, Event, Popup};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::Ctx;
use crate::tui::style::centered;

/// The inbox overlay, scrolled by `scroll` lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inbox {
    pub scroll: u16,
}

fn lines(ctx: &Ctx) -> Vec<Line<'static>> {
    let items = &ctx.data.notifications;
    if items.is_empty() {
        return vec![Line::from(
            "  Nothing yet. gpures tells you here when your bookings start and end, when the \
             queue grants you GPUs, when a booking of yours is idle, and when someone changes it.",
        )];
    }
    let mut out = Vec::with_capacity(items.len() * 2);
    for n in items {
        let mark = if n.read { "  " } else { "● " };
        let title = Style::default().add_modifier(if n.read {
            Modifier::empty()
        } else {
            Modifier::BOLD
        });
        out.push(Line::from(vec![
            Span::raw(mark),
            Span::styled(
                format_local(n.created_at, ctx.tz),
                Style::default().add_modifier(Modifier::DIM),
            ),
            Span::raw("  "),
            Span::styled(text::sanitize(&n.title), title),
        ]));
        if !n.body.is_empty() {
            out.push(Line::from(format!("    {}", text::sanitize(&n.body))));
        }
    }
    out
}

impl Component for Inbox {
    fn scope(&self) -> Scope {
        Scope::Help
    }

    fn update(&mut self, action: Action, _ctx: &Ctx) -> Vec<Event> {
        super::help::scroll_or_close(&mut self.scroll, action)
    }

    fn hints(&self) -> &'static str {
        "↑↓ PgUp PgDn scroll · any other key closes · gpures notify: where else they go"
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let area = centered(size, 90.min(size.width), size.height.saturating_sub(2));
        frame.render_widget(Clear, area);
        let lines = lines(ctx);
        let max_scroll = lines.len().saturating_sub(1);
        let scroll = usize::from(self.scroll).min(max_scroll);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0))
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" Notifications · any key closes "),
                ),
            area,
        );
    }
}

impl Popup for Inbox {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
