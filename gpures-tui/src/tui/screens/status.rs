//! The Status screen: per GPU, who holds it now and until when, who is next,
//! live load, who really runs on it, and the flags.

use gpures_proto::{ResourceStatus, text};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use crate::tui::component::{Component, Event};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::Ctx;
use crate::tui::style::style;

/// The Status screen (it keeps no state of its own).
#[derive(Clone, Copy, Debug, Default)]
pub struct Status;

impl Component for Status {
    fn scope(&self) -> Scope {
        Scope::Global
    }

    fn update(&mut self, _action: Action, _ctx: &Ctx) -> Vec<Event> {
        vec![]
    }

    fn hints(&self) -> &'static str {
        "Tab screens · F5 reload · ? help · q quit"
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, area: Rect) {
        let Some(report) = &ctx.data.status else {
            frame.render_widget(
                Paragraph::new("loading…")
                    .block(Block::default().borders(Borders::ALL).title(" Status ")),
                area,
            );
            return;
        };
        let flag_style = style(
            ctx,
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD),
        );
        // Columns as wide as what they hold (names and holders unclipped),
        // the rest for the load and the processes.
        let width =
            |t: &str| u16::try_from(unicode_width::UnicodeWidthStr::width(t)).unwrap_or(u16::MAX);
        let name_w = report
            .resources
            .iter()
            .map(|s| width(&text::sanitize(&s.resource.name)))
            .max()
            .unwrap_or(3)
            .clamp(3, 28);
        let holder_w =
            |pick: fn(&gpures_proto::ResourceStatus) -> Option<&gpures_proto::Reservation>| {
                report
                    .resources
                    .iter()
                    .filter_map(pick)
                    .map(|r| width(&text::sanitize(&r.user.display_name)) + 12)
                    .max()
                    .unwrap_or(4)
                    .clamp(4, 32)
            };
        let generated = report.generated_at;
        let block_now = |s: &ResourceStatus| {
            s.block
                .as_ref()
                .filter(|b| b.period.contains(generated))
                .cloned()
        };
        let block_next = |s: &ResourceStatus| {
            s.block
                .as_ref()
                .filter(|b| b.period.start > generated)
                .filter(|b| {
                    s.next
                        .as_ref()
                        .is_none_or(|n| b.period.start < n.period.start)
                })
                .cloned()
        };
        // "blocked →Fri 22:00" and "maintenance Fri 18:00" need room too.
        let room = |w: u16, need: u16, shown: bool| if shown { w.max(need) } else { w };
        let now_w = room(
            holder_w(|s| s.current.as_ref()),
            18,
            report.resources.iter().any(|s| block_now(s).is_some()),
        );
        let next_w = room(
            holder_w(|s| s.next.as_ref()),
            22,
            report.resources.iter().any(|s| block_next(s).is_some()),
        );
        let rows: Vec<Row> = report
            .resources
            .iter()
            .map(|s| {
                let at = |t: chrono::DateTime<chrono::Utc>| {
                    t.with_timezone(&ctx.tz).format("%a %H:%M").to_string()
                };
                let (block_now, block_next) = (block_now(s), block_next(s));
                let now = match (&s.current, &block_now) {
                    (Some(r), _) => format!(
                        "{} →{}",
                        text::sanitize(&r.user.display_name),
                        at(r.period.end)
                    ),
                    (None, Some(b)) => format!("blocked →{}", at(b.period.end)),
                    (None, None) => "free".into(),
                };
                let next = match (&s.next, block_next) {
                    (_, Some(b)) => format!("maintenance {}", at(b.period.start)),
                    (Some(r), None) => format!(
                        "{} {}",
                        text::sanitize(&r.user.display_name),
                        at(r.period.start)
                    ),
                    (None, None) => "-".into(),
                };
                let (load, procs) = match &s.telemetry {
                    Some(t) => {
                        let procs: Vec<String> = t
                            .processes
                            .iter()
                            .map(crate::output::process_label)
                            .collect();
                        (
                            crate::output::load_text(t, 12),
                            if procs.is_empty() {
                                "no processes".to_owned()
                            } else {
                                procs.join(" · ")
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
                let free = s.current.is_none() && block_now.is_none();
                let now_style = if free {
                    style(ctx, Style::default().fg(Color::Green), Style::default())
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
            report.generated_at.with_timezone(&ctx.tz).format("%H:%M"),
            if report.hosts.is_empty() {
                " · no GPU telemetry".to_owned()
            } else {
                String::new()
            }
        );
        let table = Table::new(
            rows,
            [
                Constraint::Length(name_w),
                Constraint::Length(now_w),
                Constraint::Length(next_w),
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
}
