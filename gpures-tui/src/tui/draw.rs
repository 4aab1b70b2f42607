//! Drawing: [`draw`] composes the screen from the components (title bar,
//! the active screen, the footer, the open popup) and only reads the app;
//! each component draws its own part with the shared pieces of
//! [`super::style`] ([`geometry`] says where the timeline's cells are, for
//! the mouse and for the number of visible cells).
//! All text from the daemon passes [`text::sanitize`] again when drawn;
//! widths come from `unicode-width` through ratatui, so Korean names take two
//! columns and stay aligned. With `NO_COLOR`, bars, the cursor and flags are
//! told apart by reverse video, bold and text markers instead.

use gpures_proto::text;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::App;
use super::model::Screen;
pub use super::style::geometry;
use super::style::{footer_area, main_area, style};

/// Renders the whole screen.
pub fn draw(app: &App, frame: &mut Frame) {
    let size = frame.area();
    if size.width < 20 || size.height < 8 {
        frame.render_widget(Paragraph::new("gpures needs at least 20×8"), size);
        return;
    }
    let ctx = app.ctx();
    draw_tabs(app, frame, Rect { height: 1, ..size });
    app.active().draw(ctx, frame, main_area(size));
    draw_footer(app, frame, footer_area(size));
    if let Some(popup) = app.popup() {
        popup.draw(ctx, frame, size);
    }
}

/// Where the tabs begin in the title bar: after ` gpures `. Each tab is
/// drawn as ` title │` ([`App::tab_at`] reads the same layout).
pub const TABS_START: u16 = 8;

fn draw_tabs(app: &App, frame: &mut Frame, area: Rect) {
    let ctx = app.ctx();
    let mut spans = vec![Span::styled(
        " gpures ",
        style(
            ctx,
            Style::default().fg(Color::Black).bg(Color::Cyan),
            Style::default().add_modifier(Modifier::REVERSED),
        ),
    )];
    for s in app.tabs() {
        let st = if s == app.screen() {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::default()
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(s.title(), st));
        spans.push(Span::raw(" │"));
    }
    if ctx.data.unread > 0 {
        spans.push(Span::styled(
            format!(" ● {} new (i)", ctx.data.unread),
            style(
                ctx,
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ));
    }
    if let Some(me) = &ctx.data.me {
        let who = format!(
            " {} · {}{}",
            text::sanitize(&me.display_name),
            text::sanitize(&ctx.data.host),
            if ctx.is_admin() { " · admin" } else { "" }
        );
        spans.push(Span::styled(
            who,
            Style::default().add_modifier(Modifier::DIM),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_footer(app: &App, frame: &mut Frame, area: Rect) {
    let ctx = app.ctx();
    let top = Rect { height: 1, ..area };
    let bottom = Rect {
        y: area.y + 1,
        height: 1,
        ..area
    };
    let line = if let Some(m) = &ctx.message {
        let st = if m.error {
            style(
                ctx,
                Style::default().fg(Color::Red),
                Style::default().add_modifier(Modifier::BOLD),
            )
        } else {
            Style::default()
        };
        let prefix = if m.error { "! " } else { "" };
        Line::from(Span::styled(
            format!("{prefix}{}", text::sanitize(&m.text)),
            st,
        ))
    } else if app.screen() == Screen::Timeline {
        Line::from(app.active().status_line(ctx))
    } else {
        Line::from("")
    };
    frame.render_widget(Paragraph::new(line), top);
    // The keys of whatever has them: an open popup, else the screen.
    let keys = app
        .popup()
        .map_or_else(|| app.active().hints(), |p| p.hints());
    let hints = fit_hints(keys, usize::from(bottom.width));
    frame.render_widget(
        Paragraph::new(Span::styled(
            hints,
            Style::default().add_modifier(Modifier::DIM),
        )),
        bottom,
    );
}

/// The key hints in `width` columns: whole when they fit, else the first
/// hints and the last two (`? help · q quit`, or a form's save and cancel)
/// with the middle left out, so the way to help and out is always shown.
pub fn fit_hints(hints: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    if hints.width() <= width {
        return hints.to_owned();
    }
    let parts: Vec<&str> = hints.split(" · ").collect();
    let keep_tail = parts.len().min(2);
    let tail = parts[parts.len() - keep_tail..].join(" · ");
    let mut head: Vec<&str> = Vec::new();
    for part in &parts[..parts.len() - keep_tail] {
        let mut candidate = head.clone();
        candidate.push(part);
        if format!("{} · … · {tail}", candidate.join(" · ")).width() > width {
            break;
        }
        head = candidate;
    }
    let fitted = if head.is_empty() {
        tail
    } else {
        format!("{} · … · {tail}", head.join(" · "))
    };
    if fitted.width() <= width {
        fitted
    } else {
        fitted.chars().take(width).collect()
    }
}
