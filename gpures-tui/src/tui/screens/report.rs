//! The Report screen: a month of usage. Per user (members: themselves and
//! the lab), a bar of the GPU-hours booked split into used, idle and
//! unknown; per GPU a heat strip of its mean utilisation per day; and the
//! viewer's own efficiency per day. ← → change the month.

use chrono::{Datelike, Months, NaiveDate, NaiveTime};
use gpures_proto::{Period, Report, Usage, text};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::tui::component::{Component, Event};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::style::style;

/// The Report screen: which month it shows (its first day, in the viewer's
/// zone).
#[derive(Clone, Debug)]
pub struct ReportScreen {
    pub month: NaiveDate,
}

impl ReportScreen {
    pub fn new(ctx_now: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> ReportScreen {
        let today = ctx_now.with_timezone(&tz).date_naive();
        ReportScreen {
            month: today.with_day(1).unwrap_or(today),
        }
    }

    /// The month shown, as a window in the viewer's zone.
    pub fn window(&self, ctx: &Ctx) -> Period {
        let local = |d: NaiveDate| {
            crate::timefmt::resolve(d.and_time(NaiveTime::MIN), ctx.tz)
                .unwrap_or_else(|_| d.and_time(NaiveTime::MIN).and_utc())
        };
        let next = self
            .month
            .checked_add_months(Months::new(1))
            .unwrap_or(self.month);
        Period {
            start: local(self.month),
            end: local(next),
        }
    }

    /// The call that loads the month shown.
    pub fn load(&self, ctx: &Ctx) -> Effect {
        Effect::LoadReport(self.window(ctx))
    }
}

/// `s` in exactly `width` columns: clipped (wide characters whole) or padded.
fn fit(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push_str(&" ".repeat(width - used));
    out
}

fn hours(minutes: i64) -> String {
    format!("{:.1}h", minutes as f64 / 60.0)
}

fn percent(u: &Usage) -> String {
    u.efficiency()
        .map(|e| format!("{:>3.0}%", e * 100.0))
        .unwrap_or_else(|| "   -".to_owned())
}

/// The heat of a day's mean utilisation: blank without samples.
fn heat_char(util: Option<u8>) -> char {
    match util {
        None => '·',
        Some(0) => ' ',
        Some(1..=24) => '░',
        Some(25..=49) => '▒',
        Some(50..=74) => '▓',
        Some(_) => '█',
    }
}

/// A day's efficiency as a bar of eight heights.
fn trend_char(pct: Option<u8>) -> char {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    match pct {
        None => '·',
        Some(p) => BARS[usize::from(p.min(100)) * 7 / 100],
    }
}

impl Component for ReportScreen {
    fn scope(&self) -> Scope {
        Scope::Report
    }

    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event> {
        let moved = match action {
            Action::Left => self.month.checked_sub_months(Months::new(1)),
            Action::Right => self.month.checked_add_months(Months::new(1)),
            _ => None,
        };
        match moved {
            Some(m) => {
                self.month = m;
                vec![Event::Call(self.load(ctx))]
            }
            None => vec![],
        }
    }

    fn hints(&self) -> &'static str {
        "←→ month · Tab screens · F5 reload · ? help · q quit"
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, area: Rect) {
        let title = format!(" Usage {} ", self.month.format("%Y-%m"));
        let report = ctx
            .data
            .report
            .as_ref()
            .filter(|r| r.window == self.window(ctx));
        let Some(report) = report else {
            frame.render_widget(
                Paragraph::new("loading…")
                    .block(Block::default().borders(Borders::ALL).title(title)),
                area,
            );
            return;
        };
        // The bars as tall as their rows (legend, rows, the lab, a note,
        // borders), the heat strip the rest, the trend three lines.
        let bar_lines = u16::try_from(report.rows.len() + 5).unwrap_or(u16::MAX);
        let [bars, heat, trend] = Layout::vertical([
            Constraint::Length(bar_lines.min(area.height.saturating_sub(8))),
            Constraint::Min(3),
            Constraint::Length(3),
        ])
        .areas(area);
        self.draw_bars(ctx, report, frame, bars, &title);
        draw_heat(ctx, report, frame, heat);
        draw_trend(ctx, report, frame, trend);
    }
}

impl ReportScreen {
    /// One line per row and the lab: name, the bar, the figures.
    fn draw_bars(&self, ctx: &Ctx, r: &Report, frame: &mut Frame, area: Rect, title: &str) {
        let used = style(
            ctx,
            Style::default().fg(Color::Green),
            Style::default().add_modifier(Modifier::BOLD),
        );
        let idle = style(ctx, Style::default().fg(Color::Yellow), Style::default());
        let unknown = style(
            ctx,
            Style::default().fg(Color::DarkGray),
            Style::default().add_modifier(Modifier::DIM),
        );
        let inner = usize::from(area.width.saturating_sub(2));
        let name_w = r
            .rows
            .iter()
            .map(|row| text::sanitize(&row.key).width())
            .chain([5])
            .max()
            .unwrap_or(5)
            .min(14);
        // name, space, bar, space, "123.4h 100%"
        let figures_w = 18;
        let bar_w = inner.saturating_sub(name_w + 2 + figures_w).max(4);
        let mut rows: Vec<(String, &Usage)> = r
            .rows
            .iter()
            .map(|row| (text::sanitize(&row.key), &row.usage))
            .collect();
        rows.push(("(lab)".to_owned(), &r.lab));
        let most = rows.iter().map(|(_, u)| u.booked).max().unwrap_or(0).max(1);
        let mut lines = vec![Line::from(vec![
            Span::raw(fit("", name_w + 1)),
            Span::styled("█ used ", used),
            Span::styled("▒ idle ", idle),
            Span::styled("░ unknown", unknown),
            Span::raw("   booked · efficiency"),
        ])];
        for (name, u) in rows {
            let scale =
                |m: i64| usize::try_from(m * i64::try_from(bar_w).unwrap_or(0) / most).unwrap_or(0);
            let (a, b) = (scale(u.used), scale(u.used + u.idle));
            let c = scale(u.booked).max(b);
            let mut spans = vec![
                Span::raw(fit(&name, name_w)),
                Span::raw(" "),
                Span::styled("█".repeat(a), used),
                Span::styled("▒".repeat(b - a), idle),
                Span::styled("░".repeat(c - b), unknown),
                Span::raw(" ".repeat(bar_w.saturating_sub(c))),
                Span::raw(format!(" {:>7} {}", hours(u.booked), percent(u))),
            ];
            if u.unreserved > 0 {
                spans.push(Span::raw(format!(" +{} unres.", hours(u.unreserved))));
            }
            lines.push(Line::from(spans));
        }
        if !r.everyone {
            lines.push(Line::from("you see your own row and the lab's total"));
        }
        frame.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
            area,
        );
    }
}

/// One line per GPU: its name and a character per day.
fn draw_heat(ctx: &Ctx, r: &Report, frame: &mut Frame, area: Rect) {
    let name_w = r
        .heat
        .iter()
        .map(|h| text::sanitize(&h.resource).width())
        .max()
        .unwrap_or(3)
        .clamp(3, 12);
    let days = r.heat.first().map_or(0, |h| h.days.len());
    // Up to three columns a day where the terminal is wide.
    let room = usize::from(area.width.saturating_sub(2)).saturating_sub(name_w + 1);
    let cell = (room / days.max(1)).clamp(1, 3);
    let start = r.window.start.with_timezone(&ctx.tz);
    // Day numbers on the 1st and every 5th: " 1   5    10 …".
    let mut ruler = vec![' '; days * cell];
    let mut free_from = 0;
    for d in 0..days {
        let day = (start + chrono::TimeDelta::days(i64::try_from(d).unwrap_or(0))).day();
        let at = d * cell;
        let label = day.to_string();
        if (d == 0 || day.is_multiple_of(5)) && at >= free_from && at + label.len() <= ruler.len() {
            for (i, c) in label.chars().enumerate() {
                ruler[at + i] = c;
            }
            free_from = at + label.len() + 1;
        }
    }
    let ruler: String = ruler.into_iter().collect();
    let mut lines = vec![Line::from(format!("{}{ruler}", fit("", name_w + 1)))];
    for h in &r.heat {
        let strip: String = h
            .days
            .iter()
            .flat_map(|u| std::iter::repeat_n(heat_char(*u), cell))
            .collect();
        lines.push(Line::from(format!(
            "{} {strip}",
            fit(&text::sanitize(&h.resource), name_w)
        )));
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Mean load per GPU and day (░▒▓█ by quarter, · no data) "),
        ),
        area,
    );
}

/// The viewer's efficiency per day.
fn draw_trend(ctx: &Ctx, r: &Report, frame: &mut Frame, area: Rect) {
    let me = ctx
        .data
        .me
        .as_ref()
        .map(|m| text::sanitize(&m.display_name))
        .unwrap_or_default();
    let strip: String = r.trend.iter().map(|p| trend_char(*p)).collect();
    let mine = r.rows.iter().find(|row| text::sanitize(&row.key) == me);
    let total = mine
        .map(|row| percent(&row.usage))
        .unwrap_or_else(|| "   -".to_owned());
    frame.render_widget(
        Paragraph::new(Line::from(format!("{strip}  month:{total}"))).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Your efficiency per day (used ÷ seen) "),
        ),
        area,
    );
}
