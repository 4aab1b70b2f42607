//! The login screen: log in, or (Ctrl-R) register, with email and password.

use gpures_proto::{RegisterRequest, text};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::component::{Component, Event};
use crate::tui::form::{Field, Fields};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::style::centered;

/// The login or registration form.
#[derive(Clone, Debug)]
pub struct Login {
    pub register: bool,
    pub form: Fields,
}

impl Login {
    pub fn new(register: bool, email: &str) -> Login {
        let mut fields = vec![Field::new("Email", email)];
        if register {
            fields.push(Field::new("Name", ""));
        }
        fields.push(Field {
            secret: true,
            ..Field::new("Password", "")
        });
        let focus = if email.is_empty() {
            0
        } else {
            fields.len() - 1
        };
        Login {
            register,
            form: Fields { fields, focus },
        }
    }

    /// The fields, for reading.
    pub fn fields(&self) -> &[Field] {
        &self.form.fields
    }

    /// A failed login: keep what was typed but the password.
    pub fn failed(&mut self) {
        if let Some(pw) = self.form.fields.iter_mut().find(|f| f.secret) {
            pw.value.clear();
        }
        self.form.focus = self.form.fields.len() - 1;
    }

    fn submit(&mut self) -> Vec<Event> {
        if !self.form.on_last() {
            self.form.focus += 1;
            return vec![];
        }
        let email = self.form.value("Email").trim().to_owned();
        let password = self.form.value("Password");
        if email.is_empty() || password.is_empty() {
            return vec![Event::Fail("enter your email and password".into())];
        }
        if self.register {
            let display_name = self.form.value("Name");
            return vec![
                Event::Say("registering…".into()),
                Event::Call(Effect::Register(RegisterRequest {
                    email,
                    display_name,
                    password,
                })),
            ];
        }
        vec![
            Event::Say("logging in…".into()),
            Event::Call(Effect::Login { email, password }),
        ]
    }
}

impl Component for Login {
    fn scope(&self) -> Scope {
        Scope::Login
    }

    fn update(&mut self, action: Action, _ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Close => vec![Event::Quit],
            Action::ToggleRegister => {
                let email = self.form.value("Email");
                *self = Login::new(!self.register, &email);
                self.form.focus = 0;
                vec![]
            }
            Action::Submit => self.submit(),
            other => {
                self.form.edit(other);
                vec![]
            }
        }
    }

    fn hints(&self) -> &'static str {
        "Enter next/submit · Tab field · Ctrl-R register/login · Esc quit"
    }

    fn draw(&self, _ctx: &Ctx, frame: &mut Frame, area: Rect) {
        let form = &self.form;
        let height = u16::try_from(form.fields.len()).unwrap_or(3) * 2 + 4;
        let box_area = centered(area, 56.min(area.width), height.min(area.height));
        frame.render_widget(Clear, box_area);
        let title = if self.register {
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
}
