//! Where notifications go, from the TUI (`N`): a Slack-compatible webhook,
//! email, the member's own terminals, and which kinds stay in the inbox
//! only. Each switch is sent at once ([`Effect::Notify`]) and the daemon's
//! answer redraws the list, as `gpures notify` does from the shell.

use gpures_proto::{NotificationKind, NotifyChange, text};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::component::{Component, Event, Popup};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::style::centered;

/// Rows before the kinds: the webhook, email, terminals.
const CHANNELS: usize = 3;

/// The settings overlay: the selected row, and the webhook being typed.
#[derive(Clone, Debug, Default)]
pub struct NotifySettings {
    pub selected: usize,
    pub editing: Option<String>,
}

fn rows() -> usize {
    CHANNELS + NotificationKind::ALL.len()
}

impl NotifySettings {
    fn change(change: NotifyChange) -> Vec<Event> {
        vec![
            Event::Say("saving…".into()),
            Event::Call(Effect::Notify(Some(change))),
        ]
    }

    /// Space or Enter on the selected row.
    fn switch(&mut self, ctx: &Ctx) -> Vec<Event> {
        let Some(now) = &ctx.data.notify else {
            return vec![Event::Fail("still loading".into())];
        };
        match self.selected {
            0 => {
                self.editing = Some(now.webhook_url.clone().unwrap_or_default());
                vec![]
            }
            1 if !now.email_available => vec![Event::Fail(
                "this host sends no email: its admin sets [notify.smtp]".into(),
            )],
            1 => Self::change(NotifyChange {
                email: Some(!now.email),
                ..NotifyChange::default()
            }),
            2 => Self::change(NotifyChange {
                terminal: Some(!now.terminal),
                ..NotifyChange::default()
            }),
            k => {
                let Some(kind) = NotificationKind::ALL.get(k - CHANNELS).copied() else {
                    return vec![];
                };
                let muted = now.muted.contains(&kind);
                Self::change(NotifyChange {
                    mute: if muted { vec![] } else { vec![kind] },
                    unmute: if muted { vec![kind] } else { vec![] },
                    ..NotifyChange::default()
                })
            }
        }
    }

    fn lines(&self, ctx: &Ctx) -> Vec<Line<'static>> {
        let Some(s) = &ctx.data.notify else {
            return vec![Line::from("  loading…")];
        };
        let on = |b: bool| if b { "[x]" } else { "[ ]" };
        let webhook = match (&self.editing, &s.webhook_url) {
            (Some(typed), _) => format!("{}▏  (Enter saves; empty removes)", text::sanitize(typed)),
            (None, Some(url)) => text::sanitize(url),
            (None, None) => "none (Enter to add a Slack-compatible URL)".into(),
        };
        let email = if s.email_available {
            format!("{} email to your address", on(s.email))
        } else {
            "[-] email: this host sends none".into()
        };
        let mut rows = vec![
            format!("Webhook: {webhook}"),
            email,
            format!(
                "{} urgent ones written to your terminals on this host",
                on(s.terminal)
            ),
        ];
        rows.extend(NotificationKind::ALL.iter().map(|k| {
            format!(
                "{} {:<20} {}",
                on(!s.muted.contains(k)),
                k.as_str(),
                k.meaning()
            )
        }));
        let mut out = vec![Line::from(
            "  Everything lands in your inbox (i); these say where else it goes.",
        )];
        for (i, row) in rows.into_iter().enumerate() {
            if i == CHANNELS {
                out.push(Line::from(
                    "  Kinds sent to the channels above ([ ] = inbox only):",
                ));
            }
            let style = if i == self.selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            out.push(Line::styled(format!("  {row}"), style));
        }
        out
    }
}

impl Component for NotifySettings {
    fn scope(&self) -> Scope {
        if self.editing.is_some() {
            Scope::Filter
        } else {
            Scope::Settings
        }
    }

    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event> {
        if let Some(typed) = &mut self.editing {
            return match action {
                Action::Type(c) => {
                    typed.push(c);
                    vec![]
                }
                Action::Backspace => {
                    typed.pop();
                    vec![]
                }
                Action::Submit => {
                    let url = typed.trim().to_owned();
                    self.editing = None;
                    Self::change(NotifyChange {
                        webhook_url: Some((!url.is_empty()).then_some(url)),
                        ..NotifyChange::default()
                    })
                }
                Action::Close => {
                    self.editing = None;
                    vec![]
                }
                _ => vec![],
            };
        }
        match action {
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(rows() - 1),
            Action::ToggleMark | Action::Submit => return self.switch(ctx),
            Action::Close => return vec![Event::Close],
            Action::Quit => return vec![Event::Quit],
            _ => {}
        }
        vec![]
    }

    fn hints(&self) -> &'static str {
        if self.editing.is_some() {
            "type the webhook URL · Enter save · Esc keep the old one"
        } else {
            "↑↓ choose · Space/Enter switch (Enter on the webhook edits it) · Esc close"
        }
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let lines = self.lines(ctx);
        let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
        let area = centered(size, 96.min(size.width), height.min(size.height));
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Where notifications go · Esc closes "),
            ),
            area,
        );
    }
}

impl Popup for NotifySettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
