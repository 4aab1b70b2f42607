//! What every component draws with: the colours, [`style`] (which drops
//! colour under `NO_COLOR`), the screen's areas and the timeline's geometry.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};

use super::model::Ctx;

/// Narrowest resource-name column of the timeline (it widens to fit the
/// names, up to [`NAME_COL_MAX`]).
pub const NAME_COL: u16 = 12;
/// Widest resource-name column; longer names keep their end (`…gpu10`).
pub const NAME_COL_MAX: u16 = 28;

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

/// Where the timeline cells start on a screen of `size` with a name column
/// `name_col` wide, and how many columns and resource rows fit.
pub fn geometry(size: Rect, name_col: u16) -> ((u16, u16), usize, usize) {
    let main = main_area(size);
    let origin = (main.x + name_col, main.y + TIMELINE_HEADER);
    let cols = usize::from(main.width.saturating_sub(name_col));
    let rows = usize::from(main.height.saturating_sub(TIMELINE_HEADER));
    (origin, cols, rows)
}

/// The area between the title bar and the footer.
pub fn main_area(size: Rect) -> Rect {
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
