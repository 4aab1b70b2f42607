//! The key help, drawn from the binding table: every key of every scope.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::component::{Component, Event, Popup};
use crate::tui::keys::{Action, BINDINGS, Scope, key_name};
use crate::tui::model::Ctx;
use crate::tui::style::centered;

/// The help overlay, scrolled by `scroll` lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Help {
    pub scroll: u16,
}

/// The help's lines: every binding of every scope the viewer can use.
fn lines(ctx: &Ctx) -> Vec<Line<'static>> {
    let mut lines: Vec<Line> = Vec::new();
    for scope in SCOPES {
        if scope == Scope::Admin && !ctx.is_admin() {
            continue;
        }
        lines.push(Line::from(Span::styled(
            scope.title(),
            Style::default().add_modifier(Modifier::BOLD),
        )));
        let mut seen: Vec<(&str, Vec<String>)> = Vec::new();
        for b in BINDINGS.iter().filter(|b| b.scope == scope) {
            let key = key_name(b.code, b.mods);
            match seen.iter_mut().find(|(h, _)| *h == b.help) {
                Some((_, keys)) => keys.push(key),
                None => seen.push((b.help, vec![key])),
            }
        }
        for (help, keys) in seen {
            lines.push(Line::from(format!("  {:<12} {help}", keys.join(" "))));
        }
    }
    lines.push(Line::from("  In forms and prompts, other keys type."));
    lines.push(Line::from(
        "  Mouse: a click selects a timeline cell, the wheel scrolls time.",
    ));
    lines.push(Line::from(Span::styled(
        "What the marks mean",
        Style::default().add_modifier(Modifier::BOLD),
    )));
    lines.extend(
        LEGEND
            .iter()
            .map(|(mark, meaning)| Line::from(format!("  {mark:<12} {meaning}"))),
    );
    lines
}

/// Every mark and colour the screens draw, and what it means.
const LEGEND: [(&str, &str); 15] = [
    (
        "*name",
        "a bar of your own reservation (others show the holder's name)",
    ),
    (
        "colour",
        "each person has one bar colour, the same on every screen",
    ),
    ("│", "now (red); cells to its left are dimmed: the past"),
    ("·", "a free half hour (or free cell at other zooms)"),
    (
        "▒ / inverse",
        "the cursor (inverse video on a bar or a Korean name)",
    ),
    (
        "+",
        "a marked resource: Enter books all marked ones together",
    ),
    (
        "~ on a bar",
        "past booked time the GPU sat idle (no process of the holder)",
    ),
    (
        "//reason",
        "a maintenance block: nobody can book these cells",
    ),
    (
        "── host",
        "the resources of one host, when several share this view",
    ),
    (
        "✓ synced",
        "the Google Calendar event matches the reservation",
    ),
    ("… pending", "the calendar event is being written"),
    (
        "! failed",
        "Google refused the event; `gpures status` says why",
    ),
    (
        "!UNRESERVED",
        "a process runs on the GPU without a reservation",
    ),
    (
        "!IDLE",
        "a running reservation with no GPU process for a while",
    ),
    (
        "!OVERRUN",
        "a process of the holder still runs after the reservation",
    ),
];

/// The scopes in the order the help lists them.
const SCOPES: [Scope; 11] = [
    Scope::Global,
    Scope::Timeline,
    Scope::List,
    Scope::Admin,
    Scope::Report,
    Scope::Form,
    Scope::Filter,
    Scope::Confirm,
    Scope::Settings,
    Scope::Login,
    Scope::Help,
];

impl Component for Help {
    fn scope(&self) -> Scope {
        Scope::Help
    }

    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event> {
        let last = u16::try_from(lines(ctx).len()).unwrap_or(u16::MAX);
        let events = scroll_or_close(&mut self.scroll, action);
        self.scroll = self.scroll.min(last);
        events
    }

    fn hints(&self) -> &'static str {
        "↑↓ PgUp PgDn scroll · any other key closes"
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let area = centered(size, 76.min(size.width), size.height.saturating_sub(2));
        frame.render_widget(Clear, area);
        let lines = lines(ctx);
        let inner_height = usize::from(area.height.saturating_sub(2));
        let max_scroll = lines.len().saturating_sub(inner_height);
        let scroll = usize::from(self.scroll).min(max_scroll);
        let title = if max_scroll > 0 {
            " Keys · any key closes (↑↓ PgUp PgDn scroll) "
        } else {
            " Keys · any key closes "
        };
        frame.render_widget(
            Paragraph::new(lines)
                .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0))
                .block(Block::default().borders(Borders::ALL).title(title)),
            area,
        );
    }
}

/// The keys of a scrolled overlay that any other key closes (the help, the
/// inbox): arrows and pages move `scroll`, quit quits.
pub fn scroll_or_close(scroll: &mut u16, action: Action) -> Vec<Event> {
    match action {
        Action::Quit => return vec![Event::Quit],
        Action::Down => *scroll = scroll.saturating_add(1),
        Action::Up => *scroll = scroll.saturating_sub(1),
        Action::PageRight => *scroll = scroll.saturating_add(10),
        Action::PageLeft => *scroll = scroll.saturating_sub(10),
        _ => return vec![Event::Close],
    }
    vec![]
}

impl Popup for Help {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
