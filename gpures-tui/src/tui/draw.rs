//! Drawing: [`draw`] composes the screen from the components (title bar,
//! the active screen, the footer, the open popup) and only reads the app;
//! each component draws its own part. The shared pieces live here:
//! [`geometry`] says where the timeline's cells are, for the mouse and for
//! the number of visible cells; [`style`] drops colour under `NO_COLOR`.
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

use super::app::{App, Ctx, Screen};
use super::screens::timeline::NAME_COL;

const PALETTE: [Color; 8] = [
    Color::Cyan,
    Color::Green,
    Color::Magenta,
    Color::Yellow,
    Color::Blue,
    Color::LightRed,
    Color::LightGreen,
    Color::LightMagenta,
];

/// Rows above the first resource inside the main area (title, days, hours).
pub const TIMELINE_HEADER: u16 = 3;

/// Where the timeline cells start on screen and how many fit, for `size`.
pub fn geometry(size: Rect) -> ((u16, u16), usize) {
    let main = main_area(size);
    let origin = (main.x + NAME_COL, main.y + TIMELINE_HEADER);
    let cols = usize::from(main.width.saturating_sub(NAME_COL));
    (origin, cols)
}

fn main_area(size: Rect) -> Rect {
    Rect {
        x: size.x,
        y: size.y + 1,
        width: size.width,
        height: size.height.saturating_sub(3),
    }
}

/// The two footer lines of a screen of `size`.
pub fn footer_area(size: Rect) -> Rect {
    Rect {
        y: size.y + size.height.saturating_sub(2),
        height: 2.min(size.height),
        ..size
    }
}

/// `colored`, or `plain` under `NO_COLOR`.
pub fn style(ctx: &Ctx, colored: Style, plain: Style) -> Style {
    if ctx.no_color { plain } else { colored }
}

/// A user's stable colour.
pub fn user_color(id: i64) -> Color {
    PALETTE[usize::try_from(id.rem_euclid(PALETTE.len() as i64)).unwrap_or(0)]
}

/// A reservation's Google Calendar state as a short mark that reads without colour.
pub fn sync_mark(s: &gpures_proto::SyncState) -> &'static str {
    match s {
        gpures_proto::SyncState::Off => "",
        gpures_proto::SyncState::Pending => "… pending",
        gpures_proto::SyncState::Synced => "✓ synced",
        gpures_proto::SyncState::Failed(_) => "! failed",
    }
}

/// A `width`×`height` rectangle in the middle of `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    Rect {
        x: area.x + area.width.saturating_sub(width) / 2,
        y: area.y + area.height.saturating_sub(height) / 2,
        width,
        height,
    }
}

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
    let hints = app.active().hints();
    frame.render_widget(
        Paragraph::new(Span::styled(
            hints,
            Style::default().add_modifier(Modifier::DIM),
        )),
        bottom,
    );
}
