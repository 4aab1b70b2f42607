//! The login screen: log in, or (Ctrl-R) register. A new Unix user meets the
//! registration first ([`Login::first_run`]); where the host signs members in
//! by Unix user it asks no password, else the password twice, with its rules
//! shown before it is typed.

use gpures_proto::{RegisterRequest, limits, text};
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
    /// Whether registering needs a password: the host signs nobody in by
    /// Unix user (`peer_login = false`).
    pub password_required: bool,
}

impl Login {
    pub fn new(register: bool, email: &str) -> Login {
        Login::with(register, email, "", true)
    }

    /// The registration a new Unix user meets first: the name filled in
    /// (from the account's GECOS field), a password only where the host
    /// requires one.
    pub fn first_run(name: &str, password_required: bool) -> Login {
        let mut login = Login::with(true, "", name, password_required);
        login.form.focus = 0;
        login
    }

    /// The form for logging in or (`register`) registering.
    pub fn with(register: bool, email: &str, name: &str, password_required: bool) -> Login {
        let mut fields = vec![Field::new("Email", email)];
        if register {
            fields.push(Field::new("Name", name));
        }
        if !register || password_required {
            fields.push(Field {
                secret: true,
                ..Field::new("Password", "")
            });
        }
        if register && password_required {
            fields.push(Field {
                secret: true,
                ..Field::new("Again", "")
            });
        }
        let focus = if email.is_empty() {
            0
        } else {
            fields.len() - 1
        };
        Login {
            register,
            form: Fields { fields, focus },
            password_required,
        }
    }

    /// The fields, for reading.
    pub fn fields(&self) -> &[Field] {
        &self.form.fields
    }

    /// A failed login: keep what was typed but the passwords.
    pub fn failed(&mut self) {
        let mut first_secret = None;
        for (i, f) in self.form.fields.iter_mut().enumerate() {
            if f.secret {
                f.value.clear();
                first_secret.get_or_insert(i);
            }
        }
        self.form.focus = first_secret.unwrap_or(self.form.fields.len() - 1);
    }

    fn has(&self, label: &str) -> bool {
        self.form.fields.iter().any(|f| f.label == label)
    }

    fn submit(&mut self) -> Vec<Event> {
        if !self.form.on_last() {
            self.form.focus += 1;
            return vec![];
        }
        let email = self.form.value("Email").trim().to_owned();
        let password = self.form.value("Password");
        if email.is_empty() || (self.has("Password") && password.is_empty()) {
            return vec![Event::Fail(if self.has("Password") {
                "enter your email and password".into()
            } else {
                "enter your email".into()
            })];
        }
        if self.register {
            if self.has("Again") && self.form.value("Again") != password {
                self.failed();
                return vec![Event::Fail("the passwords differ: type them again".into())];
            }
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

    /// The lines under the fields: what a password must be, stated before
    /// it is typed, or why none is needed.
    fn notes(&self) -> Vec<Line<'static>> {
        if !self.register {
            return vec![];
        }
        let dim = Style::default().add_modifier(Modifier::DIM);
        let text = if self.password_required {
            format!(
                " The password: {} to {} characters, typed twice.",
                limits::PASSWORD_MIN_CHARS,
                limits::PASSWORD_MAX_CHARS
            )
        } else {
            " No password: this host signs you in by your Unix user.".to_owned()
        };
        vec![Line::styled(text, dim), Line::from("")]
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
                *self = Login::with(!self.register, &email, "", self.password_required);
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
        let notes = self.notes();
        let height = u16::try_from(form.fields.len() * 2 + notes.len()).unwrap_or(8) + 4;
        let box_area = centered(area, 60.min(area.width), height.min(area.height));
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
        lines.extend(notes);
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
