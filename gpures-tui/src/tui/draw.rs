//! Drawing: [`draw`] renders an [`App`] into a frame and only reads it.
//! [`geometry`] says where the timeline's cells are, for the mouse and for the
//! number of visible cells. All text from the daemon passes
//! [`text::sanitize`] again here; widths come from `unicode-width` through
//! ratatui, so Korean names take two columns and stay aligned. With
//! `NO_COLOR`, colours are dropped and bars, the cursor and flags are told
//! apart by reverse video, bold and text markers instead.

use chrono::Timelike;
use gpures_proto::{Reservation, text};
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap};

use super::app::{App, NAME_COL, Preview, Screen};
use super::keys::{BINDINGS, Scope, key_name};
use crate::timefmt::format_span;

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
const TIMELINE_HEADER: u16 = 3;

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

fn style(app: &App, colored: Style, plain: Style) -> Style {
    if app.no_color { plain } else { colored }
}

/// A user's stable colour.
fn user_color(id: i64) -> Color {
    PALETTE[usize::try_from(id.rem_euclid(PALETTE.len() as i64)).unwrap_or(0)]
}

/// Renders the whole screen.
pub fn draw(app: &App, frame: &mut Frame) {
    let size = frame.area();
    if size.width < 20 || size.height < 8 {
        frame.render_widget(Paragraph::new("gpures needs at least 20×8"), size);
        return;
    }
    draw_tabs(app, frame, Rect { height: 1, ..size });
    let main = main_area(size);
    match app.screen {
        Screen::Login => draw_login(app, frame, main),
        Screen::Timeline => draw_timeline(app, frame.buffer_mut(), main),
        Screen::Mine => draw_mine(app, frame, main),
        Screen::Status => draw_status(app, frame, main),
        Screen::Admin => draw_admin(app, frame, main),
    }
    let footer = Rect {
        y: size.y + size.height - 2,
        height: 2,
        ..size
    };
    draw_footer(app, frame, footer);
    if app.form.is_some() {
        draw_form(app, frame, size);
    }
    if let Some(confirm) = &app.confirm {
        let area = centered(size, 64.min(size.width), 3);
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(confirm.question.as_str())
                .block(Block::default().borders(Borders::ALL).title(" Confirm "))
                .wrap(Wrap { trim: true }),
            area,
        );
    }
    if app.help {
        draw_help(app, frame, size);
    }
}

fn draw_tabs(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled(
        " gpures ",
        style(
            app,
            Style::default().fg(Color::Black).bg(Color::Cyan),
            Style::default().add_modifier(Modifier::REVERSED),
        ),
    )];
    let mut screens = vec![Screen::Timeline, Screen::Mine, Screen::Status];
    if app.is_admin() {
        screens.push(Screen::Admin);
    }
    if app.screen == Screen::Login {
        screens = vec![Screen::Login];
    }
    for s in screens {
        let st = if s == app.screen {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::default()
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(s.title(), st));
        spans.push(Span::raw(" │"));
    }
    if let Some(me) = &app.data.me {
        let who = format!(
            " {} · {}{}",
            text::sanitize(&me.display_name),
            text::sanitize(&app.data.host),
            if app.is_admin() { " · admin" } else { "" }
        );
        spans.push(Span::styled(
            who,
            Style::default().add_modifier(Modifier::DIM),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_footer(app: &App, frame: &mut Frame, area: Rect) {
    let top = Rect { height: 1, ..area };
    let bottom = Rect {
        y: area.y + 1,
        height: 1,
        ..area
    };
    let line = if let Some(input) = &app.filter_input {
        Line::from(format!(
            "filter by user: {}▏ (Enter apply · Esc clear)",
            text::sanitize(input)
        ))
    } else if let Some(m) = &app.message {
        let st = if m.error {
            style(
                app,
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
    } else if app.screen == Screen::Timeline {
        Line::from(cursor_details(app))
    } else {
        Line::from("")
    };
    frame.render_widget(Paragraph::new(line), top);
    let hints = match app.screen {
        Screen::Login => "Enter next/submit · Tab field · Ctrl-R register/login · Esc quit",
        Screen::Timeline => {
            "←→↑↓ move · Enter/n book · Space mark · e edit · x cancel · r release · +/- zoom · t now · / filter · Tab · ? help · q quit"
        }
        Screen::Mine => "↑↓ select · e edit · x cancel · r release · Tab screens · ? help · q quit",
        Screen::Status => "Tab screens · F5 reload · ? help · q quit",
        Screen::Admin => "↑↓ user · p admin/member · d disable · Tab screens · ? help · q quit",
    };
    frame.render_widget(
        Paragraph::new(Span::styled(
            hints,
            Style::default().add_modifier(Modifier::DIM),
        )),
        bottom,
    );
}

/// What the footer says about the cell under the cursor.
fn cursor_details(app: &App) -> String {
    let Some(res) = app.cursor_resource() else {
        return "no resources yet: an admin adds them with `gpures-daemon resource add`".into();
    };
    let t = app.cell_start(app.cursor_col).with_timezone(&app.tz);
    match app.reservation_at_cursor() {
        Some(r) => format!(
            "{} · {} <{}> · {} ({}){}",
            text::sanitize(&res.name),
            text::sanitize(&r.user.display_name),
            text::sanitize(&r.user.email),
            app.period_text(&r.period),
            format_span(r.period.end - r.period.start),
            if r.note.is_empty() {
                String::new()
            } else {
                format!(" · {}", text::sanitize(&r.note))
            }
        ),
        None => format!(
            "{} · free · {}",
            text::sanitize(&res.name),
            t.format("%a %m-%d %H:%M")
        ),
    }
}

/// A reservation's Google Calendar state as a short mark that reads without colour.
fn sync_mark(s: &gpures_proto::SyncState) -> &'static str {
    match s {
        gpures_proto::SyncState::Off => "",
        gpures_proto::SyncState::Pending => "… pending",
        gpures_proto::SyncState::Synced => "✓ synced",
        gpures_proto::SyncState::Failed(_) => "! failed",
    }
}

fn draw_timeline(app: &App, buf: &mut Buffer, area: Rect) {
    let cell = app.zoom.cell();
    let cols = usize::from(area.width.saturating_sub(NAME_COL));
    let x0 = area.x + NAME_COL;
    let dim = Style::default().add_modifier(Modifier::DIM);
    let filter = app
        .filter
        .as_ref()
        .map(|f| format!(" · filter: {}", text::sanitize(f)))
        .unwrap_or_default();
    let marked = if app.marked.is_empty() {
        String::new()
    } else {
        format!(" · {} marked", app.marked.len())
    };
    let title = format!("Timeline · {}{}{}", app.zoom.label(), filter, marked);
    buf.set_stringn(
        area.x,
        area.y,
        title,
        usize::from(area.width),
        Style::default().add_modifier(Modifier::BOLD),
    );

    // Day labels where a local day starts; hour labels at every `step` hours.
    let step_hours: u32 = match app.zoom {
        super::app::Zoom::Day => 2,
        super::app::Zoom::ThreeDays => 6,
        super::app::Zoom::Week => 12,
    };
    let mut last_day = None;
    let mut day_label_end = 0usize;
    let mut hour_label_end = 0usize;
    for c in 0..cols {
        let t0 = app.cell_start(c).with_timezone(&app.tz);
        let t1 = app.cell_start(c + 1).with_timezone(&app.tz);
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
        let offset = (app.now - app.view_start).num_minutes();
        (offset >= 0).then(|| usize::try_from(offset / cell.num_minutes()).unwrap_or(usize::MAX))
    };
    let rows = usize::from(area.height.saturating_sub(TIMELINE_HEADER));
    let me = app.data.me.as_ref().map(|m| m.id);
    for (i, res) in app.visible_resources().into_iter().enumerate().take(rows) {
        let y = area.y + TIMELINE_HEADER + u16::try_from(i).unwrap_or(0);
        let mark = if app.marked.contains(&res.id) {
            "+"
        } else {
            " "
        };
        let name_style = if i == app.cursor_row {
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
        let name = if res.host.is_empty() || res.host == app.data.host {
            text::sanitize(&res.name)
        } else {
            format!(
                "{}@{}",
                text::sanitize(&res.name),
                text::sanitize(&res.host)
            )
        };
        buf.set_stringn(area.x + 1, y, name, usize::from(NAME_COL - 2), name_style);
        // Free cells.
        for c in 0..cols {
            let x = x0 + u16::try_from(c).unwrap_or(u16::MAX);
            let t1 = app.cell_start(c + 1);
            let mut st = Style::default();
            let mut sym = if c % 2 == 0 { "·" } else { " " };
            if t1 <= app.now {
                st = st.add_modifier(Modifier::DIM);
            }
            if Some(c) == now_col {
                sym = "│";
                st = style(app, st.fg(Color::Red), st.add_modifier(Modifier::BOLD));
            }
            buf.set_string(x, y, sym, st);
        }
        // Bars.
        for r in app.shown().filter(|r| r.resource_id == res.id) {
            draw_bar(app, buf, r, x0, y, cols, me == Some(r.user.id));
        }
        // Cursor.
        if i == app.cursor_row && app.cursor_col < cols {
            let x = x0 + u16::try_from(app.cursor_col).unwrap_or(0);
            if let Some(c) = buf.cell_mut((x, y)) {
                let st = style(
                    app,
                    Style::default()
                        .fg(Color::Black)
                        .bg(Color::White)
                        .add_modifier(Modifier::BOLD),
                    Style::default()
                        .add_modifier(Modifier::REVERSED | Modifier::BOLD | Modifier::UNDERLINED),
                );
                c.set_style(st);
                if c.symbol() == " " || c.symbol() == "·" {
                    c.set_symbol("▒");
                }
            }
        }
    }
    if app.data.resources.is_empty() {
        buf.set_stringn(
            area.x + 1,
            area.y + TIMELINE_HEADER,
            "No resources yet. A host admin adds them: gpures-daemon resource add gpu0 --gpu-index 0",
            usize::from(area.width.saturating_sub(2)),
            dim,
        );
    }
}

fn draw_bar(
    app: &App,
    buf: &mut Buffer,
    r: &Reservation,
    x0: u16,
    y: u16,
    cols: usize,
    mine: bool,
) {
    let cell_min = app.zoom.cell().num_minutes().max(1);
    let from = (r.period.start - app.view_start).num_minutes();
    let to = (r.period.end - app.view_start).num_minutes();
    if to <= 0 {
        return;
    }
    let c0 = usize::try_from(from.max(0) / cell_min).unwrap_or(0);
    let c1 = usize::try_from((to + cell_min - 1) / cell_min)
        .unwrap_or(usize::MAX)
        .min(cols);
    if c0 >= c1 {
        return;
    }
    let mut st = style(
        app,
        Style::default().fg(Color::Black).bg(user_color(r.user.id)),
        Style::default().add_modifier(Modifier::REVERSED),
    );
    if mine {
        st = st.add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
    }
    let past = r.period.end <= app.now;
    if past {
        st = st.add_modifier(Modifier::DIM);
    }
    for c in c0..c1 {
        let x = x0 + u16::try_from(c).unwrap_or(0);
        buf.set_string(x, y, " ", st);
    }
    // The name at the bar's first visible cell; `*` marks your own.
    let label = format!(
        "{}{}",
        if mine { "*" } else { "" },
        text::sanitize(&r.user.display_name)
    );
    let x = x0 + u16::try_from(c0).unwrap_or(0);
    buf.set_stringn(x, y, label, c1 - c0, st);
}

fn draw_mine(app: &App, frame: &mut Frame, area: Rect) {
    let rows: Vec<Row> = app
        .data
        .mine
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let state = if r.period.contains(app.now) {
                "now"
            } else if r.period.end <= app.now {
                "past"
            } else {
                "upcoming"
            };
            let st = if i == app.list_selected {
                style(
                    app,
                    Style::default().bg(Color::DarkGray),
                    Style::default().add_modifier(Modifier::REVERSED),
                )
            } else {
                Style::default()
            };
            Row::new(vec![
                Cell::from(text::sanitize(&r.resource_name)),
                Cell::from(app.period_text(&r.period)),
                Cell::from(format_span(r.period.end - r.period.start)),
                Cell::from(state),
                Cell::from(sync_mark(&r.sync)),
                Cell::from(text::sanitize(&r.note)),
            ])
            .style(st)
        })
        .collect();
    let empty = rows.is_empty();
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(32),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec!["GPU", "WHEN", "LENGTH", "STATE", "CALENDAR", "NOTE"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(" My reservations (now and coming) "),
    );
    frame.render_widget(table, area);
    if empty {
        let inner = Rect {
            x: area.x + 2,
            y: area.y + 2,
            width: area.width.saturating_sub(4),
            height: 1,
        };
        frame.render_widget(
            Paragraph::new("none: book one on the Timeline (Tab) with Enter"),
            inner,
        );
    }
}

fn draw_status(app: &App, frame: &mut Frame, area: Rect) {
    let Some(report) = &app.data.status else {
        frame.render_widget(
            Paragraph::new("loading…")
                .block(Block::default().borders(Borders::ALL).title(" Status ")),
            area,
        );
        return;
    };
    let flag_style = style(
        app,
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        Style::default().add_modifier(Modifier::BOLD),
    );
    let rows: Vec<Row> = report
        .resources
        .iter()
        .map(|s| {
            let now = match &s.current {
                Some(r) => format!(
                    "{} →{}",
                    text::sanitize(&r.user.display_name),
                    r.period.end.with_timezone(&app.tz).format("%a %H:%M")
                ),
                None => "free".into(),
            };
            let next = match &s.next {
                Some(r) => format!(
                    "{} {}",
                    text::sanitize(&r.user.display_name),
                    r.period.start.with_timezone(&app.tz).format("%a %H:%M")
                ),
                None => "-".into(),
            };
            let (load, procs) = match &s.telemetry {
                Some(t) => {
                    let util = t
                        .utilization_pct
                        .map(|u| format!("{u:>3}%"))
                        .unwrap_or_else(|| "  ?%".into());
                    let mem = match (t.memory_used_mib, t.memory_total_mib) {
                        (Some(u), Some(m)) => {
                            format!("{:.1}/{:.0}G", u as f64 / 1024.0, m as f64 / 1024.0)
                        }
                        _ => "?".into(),
                    };
                    let procs: Vec<String> = t
                        .processes
                        .iter()
                        .map(|p| {
                            format!(
                                "{}:{}",
                                text::sanitize(p.unix_user.as_deref().unwrap_or("unknown")),
                                p.pid
                            )
                        })
                        .collect();
                    (
                        format!("{util} {mem} {}", crate::cli::sparkline(&t.history, 12)),
                        if procs.is_empty() {
                            "no processes".to_owned()
                        } else {
                            procs.join(" ")
                        },
                    )
                }
                None => ("no GPU telemetry".to_owned(), String::new()),
            };
            let flags: Vec<String> = s
                .flags
                .iter()
                .map(|f| text::sanitize(&f.marker()))
                .collect();
            let free = s.current.is_none();
            let now_style = if free {
                style(app, Style::default().fg(Color::Green), Style::default())
            } else {
                Style::default()
            };
            // Flags first, so that a narrow terminal still shows them.
            let second = if flags.is_empty() {
                Line::from(Span::styled(
                    procs,
                    Style::default().add_modifier(Modifier::DIM),
                ))
            } else {
                Line::from(vec![
                    Span::styled(flags.join(" "), flag_style),
                    Span::raw(" "),
                    Span::styled(procs, Style::default().add_modifier(Modifier::DIM)),
                ])
            };
            Row::new(vec![
                Cell::from(text::sanitize(&s.resource.name)),
                Cell::from(Line::from(Span::styled(now, now_style))),
                Cell::from(next),
                Cell::from(ratatui::text::Text::from(vec![Line::from(load), second])),
            ])
            .height(2)
        })
        .collect();
    let notes: Vec<String> = report
        .hosts
        .iter()
        .filter_map(|h| {
            h.note
                .as_ref()
                .map(|n| format!("{}: {}", text::sanitize(&h.host), text::sanitize(n)))
        })
        .collect();
    let title = format!(
        " Status · {}{} ",
        report.generated_at.with_timezone(&app.tz).format("%H:%M"),
        if report.hosts.is_empty() {
            " · no GPU telemetry".to_owned()
        } else {
            String::new()
        }
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(7),
            Constraint::Length(20),
            Constraint::Length(17),
            Constraint::Min(20),
        ],
    )
    .header(
        Row::new(vec!["GPU", "NOW", "NEXT", "LOAD · WHO RUNS WHAT"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(table, area);
    let mut notes = notes;
    if let Some(c) = &report.calendar {
        notes.push(crate::output::calendar_line(c));
    }
    if !notes.is_empty() && area.height > 3 {
        let line = Rect {
            x: area.x + 1,
            y: area.y + area.height - 2,
            width: area.width.saturating_sub(2),
            height: 1,
        };
        frame.render_widget(
            Paragraph::new(Span::styled(
                notes.join(" · "),
                Style::default().add_modifier(Modifier::DIM),
            )),
            line,
        );
    }
}

fn draw_admin(app: &App, frame: &mut Frame, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let users: Vec<Row> = app
        .data
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let st = if i == app.admin_selected {
                style(
                    app,
                    Style::default().bg(Color::DarkGray),
                    Style::default().add_modifier(Modifier::REVERSED),
                )
            } else {
                Style::default()
            };
            Row::new(vec![
                text::sanitize(&u.email),
                text::sanitize(&u.display_name),
                u.role.to_string(),
                text::sanitize(&u.unix_user),
                if u.disabled {
                    "disabled".into()
                } else {
                    "active".into()
                },
            ])
            .style(st)
        })
        .collect();
    frame.render_widget(
        Table::new(
            users,
            [
                Constraint::Length(24),
                Constraint::Length(16),
                Constraint::Length(7),
                Constraint::Length(10),
                Constraint::Min(8),
            ],
        )
        .header(
            Row::new(vec!["EMAIL", "NAME", "ROLE", "UNIX", "STATE"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::default().borders(Borders::ALL).title(" Users ")),
        top,
    );
    let resources: Vec<Row> = app
        .data
        .resources
        .iter()
        .map(|r| {
            Row::new(vec![
                text::sanitize(&r.name),
                text::sanitize(&r.host),
                r.gpu_index
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                text::sanitize(r.gpu_uuid.as_deref().unwrap_or("-")),
                text::sanitize(&r.description),
            ])
        })
        .collect();
    frame.render_widget(
        Table::new(
            resources,
            [
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(4),
                Constraint::Length(20),
                Constraint::Min(8),
            ],
        )
        .header(
            Row::new(vec!["NAME", "HOST", "GPU", "UUID", "DESCRIPTION"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Resources (add with gpures admin resource add) "),
        ),
        bottom,
    );
}

fn draw_login(app: &App, frame: &mut Frame, area: Rect) {
    let form = &app.login;
    let height = u16::try_from(form.fields.len()).unwrap_or(3) * 2 + 4;
    let box_area = centered(area, 56.min(area.width), height.min(area.height));
    frame.render_widget(Clear, box_area);
    let title = if form.register {
        " Register · Ctrl-R to log in "
    } else {
        " Log in · Ctrl-R to register "
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(box_area);
    frame.render_widget(block, box_area);
    let mut lines = vec![Line::from("")];
    for (i, f) in form.fields.iter().enumerate() {
        let value = if f.secret {
            "•".repeat(f.value.chars().count())
        } else {
            text::sanitize(&f.value)
        };
        let cursor = if i == form.focus { "▏" } else { "" };
        let st = if i == form.focus {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<9} ", f.label), st),
            Span::raw(format!("{value}{cursor}")),
        ]));
        lines.push(Line::from(""));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_form(app: &App, frame: &mut Frame, size: Rect) {
    let Some(form) = &app.form else {
        return;
    };
    let area = centered(size, 70.min(size.width), 12.min(size.height));
    frame.render_widget(Clear, area);
    let title = if form.editing.is_some() {
        " Edit reservation "
    } else {
        " New booking "
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = Vec::new();
    for (i, f) in form.fields.iter().enumerate() {
        let cursor = if i == form.focus { "▏" } else { "" };
        let st = if i == form.focus {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        let ro = if f.read_only { " (fixed)" } else { "" };
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<14}", f.label), st),
            Span::raw(format!("{}{cursor}{ro}", text::sanitize(&f.value))),
        ]));
    }
    lines.push(Line::from(""));
    let (msg, st) = match &form.preview {
        Preview::Idle => (String::new(), Style::default()),
        Preview::Checking => (
            "checking…".into(),
            Style::default().add_modifier(Modifier::DIM),
        ),
        Preview::Free => (
            "✓ free".into(),
            style(
                app,
                Style::default()
                    .fg(Color::Green)
                    .add_modifier(Modifier::BOLD),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ),
        Preview::Taken(holders) => (
            format!(
                "✗ taken: {}",
                holders
                    .iter()
                    .map(|h| format!(
                        "{} by {} {}",
                        text::sanitize(&h.resource_name),
                        text::sanitize(&h.user.display_name),
                        app.period_text(&h.period)
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            style(
                app,
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ),
        Preview::Invalid(why) => (
            format!("? {why}"),
            style(app, Style::default().fg(Color::Yellow), Style::default()),
        ),
    };
    lines.push(Line::from(Span::styled(format!(" {msg}"), st)));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        " Tab/↑↓ field · Enter save · Esc cancel · end: 14:00 or 2h, 1d",
        Style::default().add_modifier(Modifier::DIM),
    )));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn draw_help(app: &App, frame: &mut Frame, size: Rect) {
    let area = centered(size, 76.min(size.width), size.height.saturating_sub(2));
    frame.render_widget(Clear, area);
    let mut lines: Vec<Line> = Vec::new();
    for (scope, title) in [
        (Scope::Global, "Everywhere"),
        (Scope::Timeline, "Timeline"),
        (Scope::List, "My reservations"),
        (Scope::Admin, "Admin"),
    ] {
        if scope == Scope::Admin && !app.is_admin() {
            continue;
        }
        lines.push(Line::from(Span::styled(
            title,
            Style::default().add_modifier(Modifier::BOLD),
        )));
        let mut seen: Vec<(&str, Vec<String>)> = Vec::new();
        for b in BINDINGS.iter().filter(|b| b.scope == scope) {
            match seen.iter_mut().find(|(h, _)| *h == b.help) {
                Some((_, keys)) => keys.push(key_name(b.code)),
                None => seen.push((b.help, vec![key_name(b.code)])),
            }
        }
        for (help, keys) in seen {
            lines.push(Line::from(format!("  {:<12} {help}", keys.join(" "))));
        }
    }
    lines.push(Line::from(
        "  Mouse: click selects a cell, the wheel scrolls time. Ctrl-C quits anywhere.",
    ));
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Keys · any key closes "),
        ),
        area,
    );
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    Rect {
        x: area.x + area.width.saturating_sub(width) / 2,
        y: area.y + area.height.saturating_sub(height) / 2,
        width,
        height,
    }
}
