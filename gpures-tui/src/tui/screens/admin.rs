//! The Admin screen: the accounts (make admin or member, disable), lab
//! policy and groups, and the resources.

use gpures_proto::{Role, text};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders, Row, Table};

use crate::tui::component::{Component, Event};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::popups::confirm::Confirm;
use crate::tui::style::style;

/// The Admin screen: which user row is selected.
#[derive(Clone, Debug, Default)]
pub struct Admin {
    pub selected: usize,
}

impl Admin {
    /// Keeps the selection on a row after new data.
    pub fn loaded(&mut self, ctx: &Ctx) {
        self.selected = self.selected.min(ctx.data.users.len().saturating_sub(1));
    }
}

impl Component for Admin {
    fn scope(&self) -> Scope {
        Scope::Admin
    }

    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down if self.selected + 1 < ctx.data.users.len() => self.selected += 1,
            Action::ToggleRole => {
                if let Some(u) = ctx.data.users.get(self.selected) {
                    let role = if u.role == Role::Admin {
                        Role::Member
                    } else {
                        Role::Admin
                    };
                    return vec![Event::Call(Effect::SetRole(u.email.clone(), role))];
                }
            }
            Action::Command => {
                return vec![Event::open(
                    crate::tui::popups::command::CommandPrompt::default(),
                )];
            }
            Action::DisableUser => {
                if let Some(u) = ctx.data.users.get(self.selected) {
                    return vec![Event::open(Confirm {
                        question: format!(
                            "Disable {} and revoke their sessions? (y/n)",
                            text::sanitize(&u.email)
                        ),
                        effect: Effect::DisableUser(u.email.clone()),
                        all: None,
                    })];
                }
            }
            _ => {}
        }
        vec![]
    }

    fn hints(&self) -> &'static str {
        "↑↓ user · p admin/member · d disable · : policy/group · Tab screens · ? help · q quit"
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, area: Rect) {
        let [top, middle, bottom] = Layout::vertical([
            Constraint::Percentage(45),
            Constraint::Percentage(25),
            Constraint::Percentage(30),
        ])
        .areas(area);
        let users: Vec<Row> = ctx
            .data
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| {
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
        // Lab policy, then one row per group with its members.
        let mut policy: Vec<Row> = ctx
            .data
            .policies
            .iter()
            .map(|p| Row::new(p.cells().map(|c| text::sanitize(&c)).to_vec()))
            .collect();
        policy.extend(ctx.data.groups.iter().map(|g| {
            let members: Vec<String> = g
                .members
                .iter()
                .map(|m| text::sanitize(&m.display_name))
                .collect();
            Row::new(vec![
                "group".to_owned(),
                text::sanitize(&g.name),
                members.join(", "),
                text::sanitize(&g.description),
            ])
        }));
        let title = if policy.is_empty() {
            " Lab policy: none (: policy set RULE VALUE) "
        } else {
            " Lab policy and groups (: policy set … / group …) "
        };
        frame.render_widget(
            Table::new(
                policy,
                [
                    Constraint::Length(15),
                    Constraint::Length(20),
                    Constraint::Length(26),
                    Constraint::Min(8),
                ],
            )
            .header(
                Row::new(vec!["RULE", "LIMIT", "FOR", "WHERE"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(Block::default().borders(Borders::ALL).title(title)),
            middle,
        );
        let dim = Style::default().add_modifier(Modifier::DIM);
        let resources: Vec<Row> = ctx
            .data
            .resources
            .iter()
            .chain(&ctx.data.disabled)
            .map(|r| {
                Row::new(vec![
                    text::sanitize(&r.name),
                    text::sanitize(&r.host),
                    r.gpu_index
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                    if r.active { "active" } else { "disabled" }.to_owned(),
                    text::sanitize(r.gpu_uuid.as_deref().unwrap_or("-")),
                    text::sanitize(&r.description),
                ])
                .style(if r.active { Style::default() } else { dim })
            })
            .collect();
        frame.render_widget(
            Table::new(
                resources,
                [
                    Constraint::Length(8),
                    Constraint::Length(10),
                    Constraint::Length(4),
                    Constraint::Length(9),
                    Constraint::Length(20),
                    Constraint::Min(8),
                ],
            )
            .header(
                Row::new(vec!["NAME", "HOST", "GPU", "STATE", "UUID", "DESCRIPTION"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Resources (: resource add/rename/describe/disable/enable) "),
            ),
            bottom,
        );
    }
}
