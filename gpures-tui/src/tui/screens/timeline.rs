//! The Timeline screen: every resource a row (grouped by host under a header
//! line when there are several hosts), time across, reservations as bars in
//! their owner's colour. The cursor picks a cell; Enter books it (or
//! the marked GPUs), `e`/`x`/`r` act on the reservation under it; the view
//! scrolls in time and zooms from a day to a week. [`Timeline`] holds the
//! view; the data it draws is the app's.

use std::collections::BTreeSet;

use chrono::{DateTime, DurationRound, TimeDelta, Timelike, Utc};
use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use gpures_proto::{Period, Reservation, Resource, text};
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};

use crate::timefmt::{format_local, format_span};
use crate::tui::component::{Component, Event};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::popups;
use crate::tui::popups::booking::BookingForm;
use crate::tui::popups::filter::FilterPrompt;
use crate::tui::style::{NAME_COL, NAME_COL_MAX, TIMELINE_HEADER, style, user_color};

/// How far before the view the timeline loads.
const FETCH_BEHIND: TimeDelta = TimeDelta::days(1);
/// How far after the view's start the timeline loads.
const FETCH_AHEAD: TimeDelta = TimeDelta::days(14);

/// Timeline zoom: how much time the width shows (at least).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zoom {
    Day,
    ThreeDays,
    Week,
}

/// Cell lengths in minutes, round ones a person reads at a glance.
const CELL_MINUTES: [i64; 12] = [10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 360, 720];

impl Zoom {
    fn span(self) -> TimeDelta {
        match self {
            Zoom::Day => TimeDelta::days(1),
            Zoom::ThreeDays => TimeDelta::days(3),
            Zoom::Week => TimeDelta::days(7),
        }
    }

    /// One cell when `cols` cells are shown: the shortest round length at
    /// which they cover the zoom's span, so "day" shows a whole day on any
    /// terminal and a wide one shows it finer.
    pub fn cell_for(self, cols: usize) -> TimeDelta {
        let cols = i64::try_from(cols.max(1)).unwrap_or(i64::MAX);
        let need = (self.span().num_minutes() + cols - 1) / cols;
        let minutes = CELL_MINUTES
            .iter()
            .copied()
            .find(|m| *m >= need)
            .unwrap_or(CELL_MINUTES[CELL_MINUTES.len() - 1]);
        TimeDelta::minutes(minutes)
    }

    fn name(self) -> &'static str {
        match self {
            Zoom::Day => "day",
            Zoom::ThreeDays => "3 days",
            Zoom::Week => "week",
        }
    }

    /// `day · 10 min cells`.
    pub fn label(self, cell: TimeDelta) -> String {
        let m = cell.num_minutes();
        let length = match (m / 60, m % 60) {
            (0, m) => format!("{m} min"),
            (h, 0) => format!("{h} h"),
            (h, 30) => format!("{h}½ h"),
            (h, m) => format!("{h} h {m} min"),
        };
        format!("{} · {length} cells", self.name())
    }
}

/// Hours between hour labels: at least four cells apart.
fn label_step_hours(cell: TimeDelta) -> u32 {
    [1, 2, 3, 4, 6, 12, 24]
        .into_iter()
        .find(|h| i64::from(*h) * 60 >= 4 * cell.num_minutes())
        .unwrap_or(24)
}

/// The host a resource is on (an empty host is the daemon's own).
fn host_of<'a>(res: &'a Resource, ctx: &'a Ctx) -> &'a str {
    if res.host.is_empty() {
        &ctx.data.host
    } else {
        &res.host
    }
}

/// One line of the timeline's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The header of a host's resources, when they span several hosts.
    Host { host: &'a str, resources: usize },
    /// A resource, by its index among the visible ones.
    Resource(usize, &'a Resource),
}

/// A resource's row name: its name, with its host when that is not the
/// daemon's own and no host header names it.
fn row_name(res: &Resource, ctx: &Ctx, under_header: bool) -> String {
    if under_header || host_of(res, ctx) == ctx.data.host {
        text::sanitize(&res.name)
    } else {
        format!(
            "{}@{}",
            text::sanitize(&res.name),
            text::sanitize(&res.host)
        )
    }
}

/// `name` in at most `room` columns: whole if it fits, else its end behind
/// an ellipsis (`…gpu10`), because names differ at the end.
fn keep_end(name: &str, room: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if unicode_width::UnicodeWidthStr::width(name) <= room {
        return name.to_owned();
    }
    let mut kept = Vec::new();
    let mut width = 1;
    for c in name.chars().rev() {
        let w = c.width().unwrap_or(0);
        if width + w > room {
            break;
        }
        width += w;
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// The timeline's view: where it starts, its zoom, the cursor, the marks and
/// the filter.
#[derive(Clone, Debug)]
pub struct Timeline {
    pub view_start: DateTime<Utc>,
    pub zoom: Zoom,
    pub cursor_row: usize,
    pub cursor_col: usize,
    /// Cells visible at the last draw's width.
    pub visible_cols: usize,
    /// Lines (resources and host headers) visible at the last draw's height.
    pub visible_rows: usize,
    /// The first line shown (the view scrolls to keep the cursor).
    pub top_row: usize,
    /// Width of the name column: fits the names, within limits.
    pub name_col: u16,
    pub marked: BTreeSet<i64>,
    /// A user filter, or `@host`.
    pub filter: Option<String>,
}

impl Timeline {
    pub fn new(now: DateTime<Utc>) -> Timeline {
        let mut t = Timeline {
            view_start: now,
            zoom: Zoom::Day,
            cursor_row: 0,
            cursor_col: 0,
            visible_cols: 48,
            visible_rows: usize::MAX,
            top_row: 0,
            name_col: NAME_COL,
            marked: BTreeSet::new(),
            filter: None,
        };
        t.jump_to(now);
        t
    }

    /// The window the timeline loads: a day before the view to two weeks after.
    pub fn fetch_window(&self) -> Period {
        Period {
            start: self.view_start - FETCH_BEHIND,
            end: self.view_start + FETCH_AHEAD,
        }
    }

    /// One cell at the zoom and the last draw's width.
    pub fn cell(&self) -> TimeDelta {
        self.zoom.cell_for(self.visible_cols)
    }

    /// The start of cell `col`.
    pub fn cell_start(&self, col: usize) -> DateTime<Utc> {
        self.view_start + self.cell() * i32::try_from(col).unwrap_or(i32::MAX)
    }

    /// The resources shown as rows: all, or those of one host when the
    /// filter is `@host`; grouped by host, this daemon's first.
    pub fn visible_resources<'a>(&self, ctx: &'a Ctx) -> Vec<&'a Resource> {
        let mut shown: Vec<&Resource> =
            match self.filter.as_deref().and_then(|f| f.strip_prefix('@')) {
                Some(host) => ctx
                    .data
                    .resources
                    .iter()
                    .filter(|r| host_of(r, ctx).contains(host))
                    .collect(),
                None => ctx.data.resources.iter().collect(),
            };
        // Stable: the daemon's order within a host.
        shown.sort_by_key(|r| {
            let host = host_of(r, ctx);
            (host != ctx.data.host, host)
        });
        shown
    }

    /// The lines drawn: the visible resources, with a header before each
    /// host's when they are on more than one host.
    pub fn lines<'a>(&self, ctx: &'a Ctx) -> Vec<Line<'a>> {
        let shown = self.visible_resources(ctx);
        let several = shown
            .windows(2)
            .any(|w| host_of(w[0], ctx) != host_of(w[1], ctx));
        let mut lines = Vec::with_capacity(shown.len() + 8);
        for (i, res) in shown.iter().enumerate() {
            let host = host_of(res, ctx);
            if several && (i == 0 || host_of(shown[i - 1], ctx) != host) {
                let resources = shown[i..]
                    .iter()
                    .take_while(|r| host_of(r, ctx) == host)
                    .count();
                lines.push(Line::Host { host, resources });
            }
            lines.push(Line::Resource(i, res));
        }
        lines
    }

    /// The resource under the cursor row.
    pub fn cursor_resource<'a>(&self, ctx: &'a Ctx) -> Option<&'a Resource> {
        self.visible_resources(ctx).get(self.cursor_row).copied()
    }

    /// Reservations shown (a user filter applied).
    pub fn shown<'a>(&self, ctx: &'a Ctx) -> impl Iterator<Item = &'a Reservation> + use<'a> {
        let filter = self
            .filter
            .as_deref()
            .filter(|f| !f.starts_with('@'))
            .map(str::to_lowercase);
        ctx.data.reservations.iter().filter(move |r| match &filter {
            None => true,
            Some(f) => {
                r.user.display_name.to_lowercase().contains(f)
                    || r.user.email.to_lowercase().contains(f)
            }
        })
    }

    /// The reservation holding the cursor cell, if any: whoever holds it,
    /// a filter only hides bars (the cell is not free because its holder is
    /// filtered out). Of several in one cell, the one holding most of it
    /// (then the one ending last), so a reservation released a moment after
    /// it began never hides the real booking in the same cell.
    pub fn reservation_at_cursor<'a>(&self, ctx: &'a Ctx) -> Option<&'a Reservation> {
        let res = self.cursor_resource(ctx)?;
        let t0 = self.cell_start(self.cursor_col);
        let cell = Period {
            start: t0,
            end: t0 + self.cell(),
        };
        let held = |r: &Reservation| r.period.end.min(cell.end) - r.period.start.max(cell.start);
        ctx.data
            .reservations
            .iter()
            .filter(|r| r.resource_id == res.id && r.period.overlaps(&cell))
            .filter(|r| r.period.end > r.period.start)
            .max_by_key(|r| (held(r), r.period.end))
    }

    fn jump_to(&mut self, now: DateTime<Utc>) {
        let cell = self.cell();
        // Start the view an hour before now, on a cell boundary.
        let start = (now - TimeDelta::hours(1))
            .duration_trunc(TimeDelta::minutes(30))
            .unwrap_or(now);
        self.view_start = start;
        let offset = (now - start).num_minutes() / cell.num_minutes().max(1);
        self.cursor_col = usize::try_from(offset).unwrap_or(0);
    }

    /// A reload when the view left the loaded window.
    fn maybe_refetch(&self, ctx: &Ctx) -> Vec<Event> {
        let span = self.cell() * i32::try_from(self.visible_cols.max(1)).unwrap_or(48);
        let visible = Period {
            start: self.view_start,
            end: self.view_start + span,
        };
        match ctx.data.fetched {
            Some(f) if f.start <= visible.start && visible.end <= f.end => vec![],
            _ => vec![Event::Call(Effect::Refresh {
                window: self.fetch_window(),
            })],
        }
    }

    /// Keeps the cursor on a row and the marks on live resources after new
    /// data, and fits the name column to the names.
    pub fn loaded(&mut self, ctx: &Ctx) {
        self.cursor_row = self
            .cursor_row
            .min(ctx.data.resources.len().saturating_sub(1));
        let live: BTreeSet<i64> = ctx.data.resources.iter().map(|r| r.id).collect();
        self.marked.retain(|id| live.contains(id));
        let headers = self
            .lines(ctx)
            .iter()
            .any(|l| matches!(l, Line::Host { .. }));
        let widest = ctx
            .data
            .resources
            .iter()
            .map(|r| unicode_width::UnicodeWidthStr::width(row_name(r, ctx, headers).as_str()))
            .max()
            .unwrap_or(0);
        self.name_col = u16::try_from(widest + 2)
            .unwrap_or(NAME_COL_MAX)
            .clamp(NAME_COL, NAME_COL_MAX);
        self.follow(ctx);
    }

    /// The terminal now shows `cols` cells and `rows` lines.
    pub fn resize(&mut self, cols: usize, rows: usize, ctx: &Ctx) {
        let now = ctx.now;
        // The cell may change with the width: keep the cursor's time (on
        // now, if it was on now).
        let (start, end) = (
            self.cell_start(self.cursor_col),
            self.cell_start(self.cursor_col + 1),
        );
        let at = if (start..end).contains(&now) {
            now
        } else {
            start
        };
        self.visible_cols = cols.max(1);
        let cell = self.cell();
        self.cursor_col =
            usize::try_from((at - self.view_start).num_minutes() / cell.num_minutes())
                .unwrap_or(0)
                .min(self.visible_cols - 1);
        self.visible_rows = rows.max(1);
        self.follow(ctx);
    }

    /// Scrolls so that the cursor's line is shown (with its host's header
    /// when it is the host's first resource).
    fn follow(&mut self, ctx: &Ctx) {
        let lines = self.lines(ctx);
        let at = lines
            .iter()
            .position(|l| matches!(l, Line::Resource(i, _) if *i == self.cursor_row))
            .unwrap_or(0);
        let first = match at.checked_sub(1).map(|k| lines[k]) {
            Some(Line::Host { .. }) => at - 1,
            _ => at,
        };
        let rows = self.visible_rows.max(1);
        if first < self.top_row {
            self.top_row = first;
        } else if at >= self.top_row + rows {
            self.top_row = at + 1 - rows;
        }
    }

    pub fn set_filter(&mut self, filter: Option<String>) {
        if filter.is_some() {
            self.cursor_row = 0;
            self.top_row = 0;
        }
        self.filter = filter;
    }

    pub fn clear_marks(&mut self) {
        self.marked.clear();
    }

    /// A click selects a cell, the wheel scrolls time.
    pub fn mouse(&mut self, ev: MouseEvent, origin: (u16, u16), ctx: &Ctx) -> Vec<Event> {
        match ev.kind {
            MouseEventKind::ScrollDown => self.update(Action::Right, ctx),
            MouseEventKind::ScrollUp => self.update(Action::Left, ctx),
            MouseEventKind::Down(MouseButton::Left) => {
                let (x0, y0) = origin;
                if ev.column >= x0 && ev.row >= y0 {
                    let col = usize::from(ev.column - x0);
                    let line = self.top_row + usize::from(ev.row - y0);
                    // A host's header selects nothing.
                    if let Some(Line::Resource(row, _)) = self.lines(ctx).get(line)
                        && col < self.visible_cols
                    {
                        self.cursor_col = col;
                        self.cursor_row = *row;
                    }
                }
                vec![]
            }
            _ => vec![],
        }
    }

    /// The booking form for the cursor cell (or the marked GPUs).
    fn new_booking(&self, ctx: &Ctx) -> Vec<Event> {
        let Some(cursor_res) = self.cursor_resource(ctx) else {
            return vec![Event::Fail(
                "no resources yet: an admin adds them with `gpures-daemon resource add`".into(),
            )];
        };
        let mut names: Vec<String> = ctx
            .data
            .resources
            .iter()
            .filter(|r| self.marked.contains(&r.id))
            .map(|r| r.name.clone())
            .collect();
        if names.is_empty() {
            names.push(cursor_res.name.clone());
        }
        let start = self.cell_start(self.cursor_col).max(
            ctx.now
                .duration_trunc(TimeDelta::minutes(1))
                .unwrap_or(ctx.now),
        );
        let mut form = BookingForm::new_booking(&names.join(" "), &format_local(start, ctx.tz));
        let check = form.check(ctx);
        let mut events = vec![Event::open(form)];
        events.extend(check.map(Event::Call));
        events
    }

    fn zoom_to(&mut self, zoom: Zoom) {
        let at = self.cell_start(self.cursor_col);
        self.zoom = zoom;
        // Keep the cursor's time in view, a few cells from the left.
        let cell = self.cell();
        let back = cell * i32::try_from(self.cursor_col.min(4)).unwrap_or(0);
        self.view_start = (at - back)
            .duration_trunc(TimeDelta::minutes(30))
            .unwrap_or(at);
        self.cursor_col =
            usize::try_from((at - self.view_start).num_minutes() / cell.num_minutes()).unwrap_or(0);
    }
}

impl Component for Timeline {
    fn scope(&self) -> Scope {
        Scope::Timeline
    }

    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Left => {
                if self.cursor_col > 0 {
                    self.cursor_col -= 1;
                } else {
                    self.view_start -= self.cell();
                    return self.maybe_refetch(ctx);
                }
            }
            Action::Right => {
                if self.cursor_col + 1 < self.visible_cols {
                    self.cursor_col += 1;
                } else {
                    self.view_start += self.cell();
                    return self.maybe_refetch(ctx);
                }
            }
            Action::PageLeft | Action::PageRight => {
                let step = self.cell() * i32::try_from(self.visible_cols.max(1)).unwrap_or(48);
                if action == Action::PageLeft {
                    self.view_start -= step;
                } else {
                    self.view_start += step;
                }
                return self.maybe_refetch(ctx);
            }
            Action::Up => {
                self.cursor_row = self.cursor_row.saturating_sub(1);
                self.follow(ctx);
            }
            Action::Down if self.cursor_row + 1 < self.visible_resources(ctx).len() => {
                self.cursor_row += 1;
                self.follow(ctx);
            }
            Action::JumpNow => {
                self.jump_to(ctx.now);
                return self.maybe_refetch(ctx);
            }
            Action::ZoomIn | Action::ZoomOut => {
                let zoom = match (self.zoom, action) {
                    (Zoom::Week, Action::ZoomIn) => Zoom::ThreeDays,
                    (Zoom::ThreeDays, Action::ZoomIn) => Zoom::Day,
                    (Zoom::Day, Action::ZoomOut) => Zoom::ThreeDays,
                    (Zoom::ThreeDays, Action::ZoomOut) => Zoom::Week,
                    (z, _) => z,
                };
                self.zoom_to(zoom);
                return self.maybe_refetch(ctx);
            }
            Action::ToggleMark => {
                if let Some(id) = self.cursor_resource(ctx).map(|r| r.id)
                    && !self.marked.remove(&id)
                {
                    self.marked.insert(id);
                }
            }
            Action::NewBooking => return self.new_booking(ctx),
            Action::Edit => return popups::edit(self.reservation_at_cursor(ctx), ctx),
            Action::Cancel => return popups::cancel(self.reservation_at_cursor(ctx), ctx),
            Action::Release => return popups::release(self.reservation_at_cursor(ctx), ctx),
            Action::Approve => return popups::decide(self.reservation_at_cursor(ctx), ctx, true),
            Action::Deny => return popups::decide(self.reservation_at_cursor(ctx), ctx, false),
            Action::Filter => {
                return vec![Event::open(FilterPrompt::new(
                    self.filter.clone().unwrap_or_default(),
                ))];
            }
            _ => {}
        }
        vec![]
    }

    fn hints(&self) -> &'static str {
        "←→↑↓ move · Enter/n book · Space mark · e edit · x cancel · r release · +/- zoom · t now · / filter · Tab · ? help · q quit"
    }

    /// What the footer says about the cell under the cursor.
    fn status_line(&self, ctx: &Ctx) -> String {
        let Some(res) = self.cursor_resource(ctx) else {
            return "no resources yet: an admin adds them with `gpures-daemon resource add`".into();
        };
        let t = self.cell_start(self.cursor_col).with_timezone(&ctx.tz);
        match self.reservation_at_cursor(ctx) {
            Some(r) => format!(
                "{} · {} <{}> · {} ({}){} · booking {}{}",
                text::sanitize(&res.name),
                text::sanitize(&r.user.display_name),
                text::sanitize(&r.user.email),
                ctx.period_text(&r.period),
                format_span(r.period.end - r.period.start),
                match (r.note.is_empty(), &r.change_reason) {
                    (_, Some(why)) if r.note.is_empty() => {
                        format!(" · [by an admin: {}]", text::sanitize(why))
                    }
                    (_, Some(why)) => format!(
                        " · {} [by an admin: {}]",
                        text::sanitize(&r.note),
                        text::sanitize(why)
                    ),
                    (true, None) => String::new(),
                    (false, None) => format!(" · {}", text::sanitize(&r.note)),
                },
                popups::short_id(r.booking_id),
                match (ctx.booking_size(r), &r.pending) {
                    (1, None) => String::new(),
                    (n, None) => format!(" ({n} GPUs)"),
                    (n, Some(p)) => format!(
                        "{} · pending approval until {}",
                        if n > 1 {
                            format!(" ({n} GPUs)")
                        } else {
                            String::new()
                        },
                        ctx.time_text(p.until)
                    ),
                },
            ),
            None => match ctx.data.blocks.iter().find(|b| {
                b.resource_id == res.id && b.period.contains(self.cell_start(self.cursor_col))
            }) {
                Some(b) => format!(
                    "{} · blocked for maintenance {} · {} · by {}",
                    text::sanitize(&res.name),
                    ctx.period_text(&b.period),
                    text::sanitize(&b.reason),
                    text::sanitize(&b.created_by)
                ),
                None => format!(
                    "{} · free · {}",
                    text::sanitize(&res.name),
                    t.format("%a %m-%d %H:%M")
                ),
            },
        }
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, area: Rect) {
        self.draw_buf(ctx, frame.buffer_mut(), area);
    }
}

impl Timeline {
    fn draw_buf(&self, ctx: &Ctx, buf: &mut Buffer, area: Rect) {
        let cell = self.cell();
        let name_col = self.name_col;
        let cols = usize::from(area.width.saturating_sub(name_col));
        let x0 = area.x + name_col;
        let dim = Style::default().add_modifier(Modifier::DIM);
        let filter = self
            .filter
            .as_ref()
            .map(|f| format!(" · filter: {}", text::sanitize(f)))
            .unwrap_or_default();
        let marked = if self.marked.is_empty() {
            String::new()
        } else {
            format!(" · {} marked", self.marked.len())
        };
        let title = format!("Timeline · {}{}{}", self.zoom.label(cell), filter, marked);
        buf.set_stringn(
            area.x,
            area.y,
            title,
            usize::from(area.width),
            Style::default().add_modifier(Modifier::BOLD),
        );

        // Day labels where a local day starts; hour labels at every `step` hours.
        let step_hours = label_step_hours(cell);
        let mut last_day = None;
        let mut day_label_end = 0usize;
        let mut hour_label_end = 0usize;
        for c in 0..cols {
            let t0 = self.cell_start(c).with_timezone(&ctx.tz);
            let t1 = self.cell_start(c + 1).with_timezone(&ctx.tz);
            let x = x0 + u16::try_from(c).unwrap_or(u16::MAX);
            // A day label at the first cell, and at each cell where a day begins.
            let starts_day = last_day != Some(t0.date_naive());
            if starts_day && c >= day_label_end {
                let day = t0.date_naive();
                let room = cols - c;
                buf.set_stringn(
                    x,
                    area.y + 1,
                    day.format("%a %m-%d").to_string(),
                    room.min(10),
                    Style::default().add_modifier(Modifier::BOLD),
                );
                day_label_end = c + 10;
            }
            last_day = Some(t0.date_naive());
            // An hour label where a multiple of `step_hours` falls in this cell.
            let mut h = if t0.minute() == 0 {
                t0
            } else {
                t0 + chrono::TimeDelta::minutes(i64::from(60 - t0.minute()))
            };
            while h < t1 {
                if h.hour() % step_hours == 0 && c >= hour_label_end {
                    buf.set_stringn(
                        x,
                        area.y + 2,
                        format!("{:02}", h.hour()),
                        2.min(cols - c),
                        dim,
                    );
                    hour_label_end = c + 3;
                    break;
                }
                h += chrono::TimeDelta::hours(1);
            }
        }

        let now_col = {
            let offset = (ctx.now - self.view_start).num_minutes();
            (offset >= 0)
                .then(|| usize::try_from(offset / cell.num_minutes()).unwrap_or(usize::MAX))
        };
        let rows = usize::from(area.height.saturating_sub(TIMELINE_HEADER));
        let me = ctx.data.me.as_ref().map(|m| m.id);
        let lines = self.lines(ctx);
        let headers = lines.iter().any(|l| matches!(l, Line::Host { .. }));
        for (k, line) in lines.iter().skip(self.top_row).take(rows).enumerate() {
            let y = area.y + TIMELINE_HEADER + u16::try_from(k).unwrap_or(0);
            let (i, res) = match *line {
                Line::Resource(i, res) => (i, res),
                Line::Host { host, resources } => {
                    let here = if host == ctx.data.host {
                        " (this host)"
                    } else {
                        ""
                    };
                    let title = format!(
                        "── {}{here} · {resources} resource{} ",
                        text::sanitize(host),
                        if resources == 1 { "" } else { "s" }
                    );
                    let width = usize::from(area.width);
                    let rule = "─".repeat(
                        width.saturating_sub(unicode_width::UnicodeWidthStr::width(title.as_str())),
                    );
                    buf.set_stringn(
                        area.x,
                        y,
                        format!("{title}{rule}"),
                        width,
                        Style::default().add_modifier(Modifier::BOLD),
                    );
                    continue;
                }
            };
            let mark = if self.marked.contains(&res.id) {
                "+"
            } else {
                " "
            };
            let name_style = if i == self.cursor_row {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            buf.set_stringn(
                area.x,
                y,
                mark,
                1,
                Style::default().add_modifier(Modifier::BOLD),
            );
            let room = usize::from(name_col - 2);
            let name = keep_end(&row_name(res, ctx, headers), room);
            buf.set_stringn(area.x + 1, y, name, room, name_style);
            // Free cells.
            for c in 0..cols {
                let x = x0 + u16::try_from(c).unwrap_or(u16::MAX);
                let t1 = self.cell_start(c + 1);
                let mut st = Style::default();
                let mut sym = if c % 2 == 0 { "·" } else { " " };
                if t1 <= ctx.now {
                    st = st.add_modifier(Modifier::DIM);
                }
                if Some(c) == now_col {
                    sym = "│";
                    st = style(ctx, st.fg(Color::Red), st.add_modifier(Modifier::BOLD));
                }
                buf.set_string(x, y, sym, st);
            }
            // Maintenance blocks, under any bar kept inside them.
            for b in ctx.data.blocks.iter().filter(|b| b.resource_id == res.id) {
                self.draw_block(ctx, buf, b, x0, y, cols);
            }
            // Bars.
            for r in self.shown(ctx).filter(|r| r.resource_id == res.id) {
                self.draw_bar(ctx, buf, r, x0, y, cols, me == Some(r.user.id));
            }
            // Cursor.
            if i == self.cursor_row && self.cursor_col < cols {
                let x = x0 + u16::try_from(self.cursor_col).unwrap_or(0);
                let cursor_style = style(
                    ctx,
                    Style::default()
                        .fg(Color::Black)
                        .bg(Color::White)
                        .add_modifier(Modifier::BOLD),
                    Style::default()
                        .add_modifier(Modifier::REVERSED | Modifier::BOLD | Modifier::UNDERLINED),
                );
                if let Some(c) = buf.cell_mut((x, y)) {
                    c.set_style(cursor_style);
                }
                // The second column of a wide character (a Korean name) is
                // drawn by the character itself: mark the character instead.
                let under_wide = x > x0
                    && buf.cell((x - 1, y)).is_some_and(|left| {
                        unicode_width::UnicodeWidthStr::width(left.symbol()) > 1
                    });
                if under_wide {
                    if let Some(wide) = buf.cell_mut((x - 1, y)) {
                        let st = wide.style().patch(cursor_style);
                        wide.set_style(st);
                    }
                } else if let Some(c) = buf.cell_mut((x, y))
                    && (c.symbol() == " " || c.symbol() == "·")
                {
                    c.set_symbol("▒");
                }
            }
        }
        if ctx.data.resources.is_empty() {
            buf.set_stringn(
                area.x + 1,
                area.y + TIMELINE_HEADER,
                "No resources yet. A host admin adds them: gpures-daemon resource add gpu0 --gpu-index 0",
                usize::from(area.width.saturating_sub(2)),
                dim,
            );
        }
    }

    /// Whether cell `c` of reservation `r` is past and was more idle than
    /// used (minutes of the usage runs that fall in both).
    fn idle_cell(&self, ctx: &Ctx, r: &Reservation, c: usize) -> bool {
        let (t0, t1) = (self.cell_start(c), self.cell_start(c + 1));
        if t1 > ctx.now {
            return false;
        }
        let (t0, t1) = (t0.max(r.period.start), t1.min(r.period.end));
        let (mut used, mut idle) = (0, 0);
        for s in ctx
            .data
            .usage
            .iter()
            .filter(|s| s.resource_id == r.resource_id)
        {
            let overlap = (s.period.end.min(t1) - s.period.start.max(t0)).num_minutes();
            if overlap > 0 {
                if s.used {
                    used += overlap;
                } else {
                    idle += overlap;
                }
            }
        }
        idle > used
    }

    /// Cells `c0..c1` that `period` covers in a row `cols` wide, if any.
    fn cells(&self, period: &gpures_proto::Period, cols: usize) -> Option<(usize, usize)> {
        let cell_min = self.cell().num_minutes().max(1);
        let from = (period.start - self.view_start).num_minutes();
        let to = (period.end - self.view_start).num_minutes();
        if to <= 0 {
            return None;
        }
        let c0 = usize::try_from(from.max(0) / cell_min).unwrap_or(0);
        let c1 = usize::try_from((to + cell_min - 1) / cell_min)
            .unwrap_or(usize::MAX)
            .min(cols);
        (c0 < c1).then_some((c0, c1))
    }

    /// A maintenance block: hatched cells and its reason, distinct from any
    /// booking in colour and without colour.
    fn draw_block(
        &self,
        ctx: &Ctx,
        buf: &mut Buffer,
        b: &gpures_proto::Block,
        x0: u16,
        y: u16,
        cols: usize,
    ) {
        let Some((c0, c1)) = self.cells(&b.period, cols) else {
            return;
        };
        let st = style(
            ctx,
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD),
        );
        for c in c0..c1 {
            let x = x0 + u16::try_from(c).unwrap_or(0);
            // ASCII: a hatch no terminal draws twice as wide.
            buf.set_string(x, y, "/", st);
        }
        let x = x0 + u16::try_from(c0).unwrap_or(0);
        let label = format!("//{}", text::sanitize(&b.reason));
        buf.set_stringn(x, y, label, c1 - c0, st);
    }

    #[allow(clippy::too_many_arguments)]
    fn draw_bar(
        &self,
        ctx: &Ctx,
        buf: &mut Buffer,
        r: &Reservation,
        x0: u16,
        y: u16,
        cols: usize,
        mine: bool,
    ) {
        let Some((c0, c1)) = self.cells(&r.period, cols) else {
            return;
        };
        let mut st = style(
            ctx,
            Style::default().fg(Color::Black).bg(user_color(r.user.id)),
            Style::default().add_modifier(Modifier::REVERSED),
        );
        if mine {
            st = st.add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
        }
        let past = r.period.end <= ctx.now;
        if past {
            st = st.add_modifier(Modifier::DIM);
        }
        // Booked against used: a past cell where the GPU sat idle more than
        // it was used is hatched with `~` (ASCII: never drawn wide) and, under
        // the name, struck through; used and unseen time stay solid.
        let idle: Vec<bool> = (c0..c1).map(|c| self.idle_cell(ctx, r, c)).collect();
        for (c, idle) in (c0..c1).zip(&idle) {
            let x = x0 + u16::try_from(c).unwrap_or(0);
            buf.set_string(x, y, if *idle { "~" } else { " " }, st);
        }
        // The name at the bar's first visible cell; `*` marks your own.
        // `*` marks your own; `?` one waiting for an admin's approval.
        let label = format!(
            "{}{}{}",
            if mine { "*" } else { "" },
            if r.pending.is_some() { "?" } else { "" },
            text::sanitize(&r.user.display_name)
        );
        let x = x0 + u16::try_from(c0).unwrap_or(0);
        buf.set_stringn(x, y, label, c1 - c0, st);
        for (c, idle) in (c0..c1).zip(&idle) {
            if *idle && let Some(cell) = buf.cell_mut((x0 + u16::try_from(c).unwrap_or(0), y)) {
                let st = cell.style().add_modifier(Modifier::CROSSED_OUT);
                cell.set_style(st);
            }
        }
    }
}
