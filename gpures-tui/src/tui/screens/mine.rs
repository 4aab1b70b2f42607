//! The My reservations screen: the viewer's reservations from now on, with
//! their calendar state; edit, cancel and release the selected one. Under
//! them, the viewer's requests waiting in the queue, with their position and
//! expected start.

use chrono::TimeDelta;
use gpures_proto::{QueueEntry, QueueState, text};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use crate::timefmt::{format_local, format_span};
use crate::tui::component::{Component, Event};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::Ctx;
use crate::tui::popups;
use crate::tui::style::{style, sync_mark};

/// The list screen: which row is selected.
#[derive(Clone, Debug, Default)]
pub struct Mine {
    pub selected: usize,
}

impl Mine {
    /// Keeps the selection on a row after new data.
    pub fn loaded(&mut self, ctx: &Ctx) {
        self.selected = self.selected.min(ctx.data.mine.len().saturating_sub(1));
    }
}

impl Component for Mine {
    fn scope(&self) -> Scope {
        Scope::List
    }

    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event> {
        let target = ctx.data.mine.get(self.selected);
        match action {
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down if self.selected + 1 < ctx.data.mine.len() => self.selected += 1,
            Action::Edit => return popups::edit(target, ctx),
            Action::Cancel => return popups::cancel(target, ctx),
            Action::Release => return popups::release(target, ctx),
            _ => {}
        }
        vec![]
    }

    fn hints(&self) -> &'static str {
        "↑↓ select · e edit · x cancel · r release · Tab screens · ? help · q quit"
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, area: Rect) {
        // The viewer's waiting queue requests, under the reservations.
        let me = ctx.data.me.as_ref().map(|m| m.id);
        let waiting: Vec<&QueueEntry> = ctx
            .data
            .queue
            .iter()
            .filter(|e| e.state == QueueState::Waiting && Some(e.user.id) == me)
            .collect();
        let area = if waiting.is_empty() {
            area
        } else {
            let shown = waiting.len().min(4);
            let height = u16::try_from(shown + 2).unwrap_or(6).min(area.height / 2);
            let queue_area = Rect {
                y: area.y + area.height - height,
                height,
                ..area
            };
            let lines: Vec<Line> = waiting
                .iter()
                .take(shown)
                .map(|e| {
                    Line::from(format!(
                        " #{}  {} GPU{} for {}  on {}  expected from {}  (id {})",
                        e.position.unwrap_or(0),
                        e.gpus,
                        if e.gpus == 1 { "" } else { "s" },
                        format_span(TimeDelta::minutes(i64::from(e.length_minutes))),
                        e.host
                            .as_deref()
                            .map(text::sanitize)
                            .unwrap_or_else(|| "any host".into()),
                        e.estimated_start
                            .map(|t| format_local(t, ctx.tz))
                            .unwrap_or_else(|| "?".into()),
                        &e.id.to_string()[..8]
                    ))
                })
                .collect();
            frame.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" Waiting in the queue (`gpures queue cancel ID` leaves) "),
                ),
                queue_area,
            );
            Rect {
                height: area.height - height,
                ..area
            }
        };
        let rows: Vec<Row> = ctx
            .data
            .mine
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let state = if r.period.contains(ctx.now) {
                    "now"
                } else if r.period.end <= ctx.now {
                    "past"
                } else {
                    "upcoming"
                };
                let st = if i == self.selected {
                    style(
                        ctx,
                        Style::default().bg(Color::DarkGray),
                        Style::default().add_modifier(Modifier::REVERSED),
                    )
                } else {
                    Style::default()
                };
                Row::new(vec![
                    Cell::from(text::sanitize(&r.resource_name)),
                    Cell::from(ctx.period_text(&r.period)),
                    Cell::from(format_span(r.period.end - r.period.start)),
                    Cell::from(state),
                    Cell::from(sync_mark(&r.sync)),
                    Cell::from(match &r.change_reason {
                        Some(why) => format!(
                            "{} [by an admin: {}]",
                            text::sanitize(&r.note),
                            text::sanitize(why)
                        )
                        .trim_start()
                        .to_owned(),
                        None => text::sanitize(&r.note),
                    }),
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
}
