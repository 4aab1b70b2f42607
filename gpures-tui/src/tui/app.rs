//! The TUI's state and how it changes: [`App`]. Keys become [`Action`]s
//! through the binding table, [`App::update`] changes the state and returns
//! [`Effect`]s (calls to make on the daemon), and the results come back as
//! [`Msg`]s through [`App::apply`]. Nothing here does I/O or draws, so the
//! whole app is driven by tests without a terminal.

use std::collections::BTreeSet;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use chrono_tz::Tz;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use gpures_proto::{
    ApiError, BookingRequest, Holder, LoginReply, Period, RegisterRequest, Reservation,
    ReservationChange, Resource, Role, StatusReport, UserInfo, text,
};
use uuid::Uuid;

use super::keys::{Action, Scope, action_for};
use crate::timefmt::{format_local, parse_duration, parse_time};

/// The screens, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Login,
    Timeline,
    Mine,
    Status,
    Admin,
}

impl Screen {
    pub fn title(self) -> &'static str {
        match self {
            Screen::Login => "Login",
            Screen::Timeline => "Timeline",
            Screen::Mine => "My reservations",
            Screen::Status => "Status",
            Screen::Admin => "Admin",
        }
    }
}

/// Timeline zoom: the length of one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zoom {
    Day,
    ThreeDays,
    Week,
}

impl Zoom {
    /// One cell: 48 cells span the zoom's period.
    pub fn cell(self) -> TimeDelta {
        match self {
            Zoom::Day => TimeDelta::minutes(30),
            Zoom::ThreeDays => TimeDelta::minutes(90),
            Zoom::Week => TimeDelta::minutes(210),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Zoom::Day => "day · 30 min cells",
            Zoom::ThreeDays => "3 days · 90 min cells",
            Zoom::Week => "week · 3½ h cells",
        }
    }
}

/// What the daemon told us last.
#[derive(Clone, Debug, Default)]
pub struct Data {
    pub me: Option<UserInfo>,
    pub host: String,
    pub resources: Vec<Resource>,
    /// Active reservations in `fetched`.
    pub reservations: Vec<Reservation>,
    pub fetched: Option<Period>,
    pub mine: Vec<Reservation>,
    pub status: Option<StatusReport>,
    pub users: Vec<UserInfo>,
}

/// A text field of a form.
#[derive(Clone, Debug, Default)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    pub secret: bool,
    pub read_only: bool,
}

impl Field {
    fn new(label: &'static str, value: impl Into<String>) -> Field {
        Field {
            label,
            value: value.into(),
            ..Field::default()
        }
    }
}

/// The login or registration form.
#[derive(Clone, Debug)]
pub struct LoginForm {
    pub register: bool,
    pub fields: Vec<Field>,
    pub focus: usize,
}

impl LoginForm {
    pub fn new(register: bool, email: &str) -> LoginForm {
        let mut fields = vec![Field::new("Email", email)];
        if register {
            fields.push(Field::new("Name", ""));
        }
        fields.push(Field {
            secret: true,
            ..Field::new("Password", "")
        });
        LoginForm {
            register,
            fields,
            focus: usize::from(!email.is_empty()) * (fields_len(register) - 1),
        }
    }
}

fn fields_len(register: bool) -> usize {
    if register { 3 } else { 2 }
}

/// What the booking form's live preview says.
#[derive(Clone, Debug)]
pub enum Preview {
    Idle,
    Checking,
    Free,
    Taken(Vec<Holder>),
    Invalid(String),
}

/// The booking (or edit) form.
#[derive(Clone, Debug)]
pub struct BookingForm {
    /// `Some` when editing that reservation.
    pub editing: Option<Reservation>,
    pub fields: Vec<Field>,
    pub focus: usize,
    pub preview: Preview,
    /// Sequence number of the availability check whose answer we await.
    pub check_seq: u64,
    /// One request id per booking the user means to make: a retry after a
    /// lost reply gets the same booking back.
    pub request_id: Uuid,
}

const F_RESOURCES: usize = 0;
const F_START: usize = 1;
const F_END: usize = 2;
const F_NOTE: usize = 3;

/// A question waiting for y/n.
#[derive(Clone, Debug)]
pub struct Confirm {
    pub question: String,
    pub effect: Effect,
}

/// A line in the footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// A call the app wants made.
#[derive(Clone, Debug)]
pub enum Effect {
    Login {
        email: String,
        password: String,
    },
    Register(RegisterRequest),
    /// Reload everything shown, with the timeline window to fetch.
    Refresh {
        window: Period,
    },
    Book(BookingRequest),
    Update(Uuid, ReservationChange),
    Cancel(Uuid),
    Release(Uuid),
    Check {
        seq: u64,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    },
    SetRole(String, Role),
    DisableUser(String),
    /// Start following `wait_for_changes`.
    Watch,
}

/// A result of an effect, or something that happened.
#[derive(Clone, Debug)]
pub enum Msg {
    LoggedIn(Box<LoginReply>),
    Registered {
        email: String,
        password: String,
    },
    Loaded(Box<Snapshot>),
    Done(String),
    Checked {
        seq: u64,
        holders: Vec<Holder>,
    },
    Failed(ApiError),
    /// The connection is gone; the sentence says why.
    Disconnected(String),
    /// Another client changed the schedule.
    RemoteChange,
    Tick(DateTime<Utc>),
}

/// Everything a refresh loads.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub me: Option<UserInfo>,
    pub resources: Vec<Resource>,
    pub reservations: Vec<Reservation>,
    pub window: Option<Period>,
    pub mine: Vec<Reservation>,
    pub status: Option<StatusReport>,
    pub users: Vec<UserInfo>,
}

/// The whole TUI state.
#[derive(Clone, Debug)]
pub struct App {
    pub screen: Screen,
    pub tz: Tz,
    pub now: DateTime<Utc>,
    pub data: Data,
    pub view_start: DateTime<Utc>,
    pub zoom: Zoom,
    pub cursor_row: usize,
    pub cursor_col: usize,
    /// Timeline cells visible at the last draw's width.
    pub visible_cols: usize,
    pub marked: BTreeSet<i64>,
    pub filter: Option<String>,
    /// `Some` while the filter prompt is open.
    pub filter_input: Option<String>,
    pub login: LoginForm,
    pub form: Option<BookingForm>,
    pub confirm: Option<Confirm>,
    pub help: bool,
    pub message: Option<Message>,
    pub list_selected: usize,
    pub admin_selected: usize,
    pub no_color: bool,
    pub quit: bool,
    next_check: u64,
    watching: bool,
}

/// Width of the resource-name column of the timeline.
pub const NAME_COL: u16 = 12;

impl App {
    pub fn new(tz: Tz, now: DateTime<Utc>, logged_in: bool, email: &str) -> App {
        let mut app = App {
            screen: if logged_in {
                Screen::Timeline
            } else {
                Screen::Login
            },
            tz,
            now,
            data: Data::default(),
            view_start: now,
            zoom: Zoom::Day,
            cursor_row: 0,
            cursor_col: 0,
            visible_cols: 48,
            marked: BTreeSet::new(),
            filter: None,
            filter_input: None,
            login: LoginForm::new(false, email),
            form: None,
            confirm: None,
            help: false,
            message: None,
            list_selected: 0,
            admin_selected: 0,
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            quit: false,
            next_check: 0,
            watching: false,
        };
        app.jump_to_now();
        app
    }

    pub fn is_admin(&self) -> bool {
        self.data.me.as_ref().is_some_and(|m| m.role == Role::Admin)
    }

    /// The window the timeline loads: a day before the view to two weeks after.
    pub fn fetch_window(&self) -> Period {
        Period {
            start: self.view_start - TimeDelta::days(1),
            end: self.view_start + TimeDelta::days(14),
        }
    }

    pub fn refresh(&self) -> Effect {
        Effect::Refresh {
            window: self.fetch_window(),
        }
    }

    /// The start of cell `col`.
    pub fn cell_start(&self, col: usize) -> DateTime<Utc> {
        self.view_start + self.zoom.cell() * i32::try_from(col).unwrap_or(i32::MAX)
    }

    /// The resources shown as timeline rows: all, or those of one host when
    /// the filter is `@host`.
    pub fn visible_resources(&self) -> Vec<&Resource> {
        match self.filter.as_deref().and_then(|f| f.strip_prefix('@')) {
            Some(host) => self
                .data
                .resources
                .iter()
                .filter(|r| r.host.contains(host))
                .collect(),
            None => self.data.resources.iter().collect(),
        }
    }

    /// The resource under the cursor row.
    pub fn cursor_resource(&self) -> Option<&Resource> {
        self.visible_resources().get(self.cursor_row).copied()
    }

    /// Reservations shown on the timeline (a user filter applied).
    pub fn shown(&self) -> impl Iterator<Item = &Reservation> {
        let filter = self
            .filter
            .as_deref()
            .filter(|f| !f.starts_with('@'))
            .map(str::to_lowercase);
        self.data
            .reservations
            .iter()
            .filter(move |r| match &filter {
                None => true,
                Some(f) => {
                    r.user.display_name.to_lowercase().contains(f)
                        || r.user.email.to_lowercase().contains(f)
                }
            })
    }

    /// The reservation covering the cursor cell, if any.
    pub fn reservation_at_cursor(&self) -> Option<&Reservation> {
        let res = self.cursor_resource()?;
        let t0 = self.cell_start(self.cursor_col);
        let cell = Period {
            start: t0,
            end: t0 + self.zoom.cell(),
        };
        self.shown()
            .find(|r| r.resource_id == res.id && r.period.overlaps(&cell))
    }

    /// The reservation an edit/cancel/release key applies to.
    fn target(&self) -> Option<Reservation> {
        match self.screen {
            Screen::Timeline => self.reservation_at_cursor().cloned(),
            Screen::Mine => self.data.mine.get(self.list_selected).cloned(),
            _ => None,
        }
    }

    fn jump_to_now(&mut self) {
        let cell = self.zoom.cell();
        // Start the view an hour before now, on a cell boundary.
        let start = (self.now - TimeDelta::hours(1))
            .duration_trunc(TimeDelta::minutes(30))
            .unwrap_or(self.now);
        self.view_start = start;
        let offset = (self.now - start).num_minutes() / cell.num_minutes().max(1);
        self.cursor_col = usize::try_from(offset).unwrap_or(0);
    }

    fn say(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: false,
        });
    }

    fn fail(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
        });
    }

    // ---- input ----

    /// Handles a key press.
    pub fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return vec![];
        }
        if self.help {
            self.help = false;
            return vec![];
        }
        if let Some(confirm) = self.confirm.take() {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => vec![confirm.effect],
                _ => {
                    self.say("not done");
                    vec![]
                }
            };
        }
        if self.screen == Screen::Login {
            return self.login_key(key);
        }
        if self.form.is_some() {
            return self.form_key(key);
        }
        if let Some(input) = &mut self.filter_input {
            match key.code {
                KeyCode::Enter => {
                    let f = text::sanitize_trimmed(input);
                    self.filter = (!f.is_empty()).then_some(f);
                    self.filter_input = None;
                    self.cursor_row = 0;
                }
                KeyCode::Esc => {
                    self.filter = None;
                    self.filter_input = None;
                }
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Char(c) => input.push(c),
                _ => {}
            }
            return vec![];
        }
        let scope = match self.screen {
            Screen::Timeline => Scope::Timeline,
            Screen::Mine => Scope::List,
            Screen::Admin => Scope::Admin,
            _ => Scope::Global,
        };
        match action_for(scope, &key) {
            Some(action) => self.update(action),
            None => vec![],
        }
    }

    /// Handles a mouse event: a click selects a timeline cell, the wheel
    /// scrolls time. `origin` is the top-left of the timeline's cell area.
    pub fn mouse(&mut self, ev: MouseEvent, origin: (u16, u16)) -> Vec<Effect> {
        if self.screen != Screen::Timeline || self.form.is_some() {
            return vec![];
        }
        match ev.kind {
            MouseEventKind::ScrollDown => self.update(Action::Right),
            MouseEventKind::ScrollUp => self.update(Action::Left),
            MouseEventKind::Down(MouseButton::Left) => {
                let (x0, y0) = origin;
                if ev.column >= x0 && ev.row >= y0 {
                    let col = usize::from(ev.column - x0);
                    let row = usize::from(ev.row - y0);
                    if col < self.visible_cols && row < self.visible_resources().len() {
                        self.cursor_col = col;
                        self.cursor_row = row;
                    }
                }
                vec![]
            }
            _ => vec![],
        }
    }

    /// Applies an action.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        self.message = None;
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.help = true,
            Action::Refresh => return vec![self.refresh()],
            Action::NextScreen | Action::PrevScreen => {
                let mut order = vec![Screen::Timeline, Screen::Mine, Screen::Status];
                if self.is_admin() {
                    order.push(Screen::Admin);
                }
                let i = order.iter().position(|s| *s == self.screen).unwrap_or(0);
                let n = order.len();
                let j = if action == Action::NextScreen {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.screen = order[j];
            }
            Action::Left => {
                if self.cursor_col > 0 {
                    self.cursor_col -= 1;
                } else {
                    self.view_start -= self.zoom.cell();
                    return self.maybe_refetch();
                }
            }
            Action::Right => {
                if self.cursor_col + 1 < self.visible_cols {
                    self.cursor_col += 1;
                } else {
                    self.view_start += self.zoom.cell();
                    return self.maybe_refetch();
                }
            }
            Action::PageLeft | Action::PageRight => {
                let step = self.zoom.cell() * i32::try_from(self.visible_cols.max(1)).unwrap_or(48);
                if action == Action::PageLeft {
                    self.view_start -= step;
                } else {
                    self.view_start += step;
                }
                return self.maybe_refetch();
            }
            Action::Up => match self.screen {
                Screen::Timeline => self.cursor_row = self.cursor_row.saturating_sub(1),
                Screen::Mine => self.list_selected = self.list_selected.saturating_sub(1),
                Screen::Admin => self.admin_selected = self.admin_selected.saturating_sub(1),
                _ => {}
            },
            Action::Down => match self.screen {
                Screen::Timeline if self.cursor_row + 1 < self.data.resources.len() => {
                    self.cursor_row += 1
                }
                Screen::Mine if self.list_selected + 1 < self.data.mine.len() => {
                    self.list_selected += 1
                }
                Screen::Admin if self.admin_selected + 1 < self.data.users.len() => {
                    self.admin_selected += 1
                }
                _ => {}
            },
            Action::JumpNow => {
                self.jump_to_now();
                return self.maybe_refetch();
            }
            Action::ZoomIn | Action::ZoomOut => {
                let at = self.cell_start(self.cursor_col);
                self.zoom = match (self.zoom, action) {
                    (Zoom::Week, Action::ZoomIn) => Zoom::ThreeDays,
                    (Zoom::ThreeDays, Action::ZoomIn) => Zoom::Day,
                    (Zoom::Day, Action::ZoomOut) => Zoom::ThreeDays,
                    (Zoom::ThreeDays, Action::ZoomOut) => Zoom::Week,
                    (z, _) => z,
                };
                // Keep the cursor's time in view, a few cells from the left.
                let cell = self.zoom.cell();
                let back = cell * i32::try_from(self.cursor_col.min(4)).unwrap_or(0);
                self.view_start = (at - back)
                    .duration_trunc(TimeDelta::minutes(30))
                    .unwrap_or(at);
                self.cursor_col =
                    usize::try_from((at - self.view_start).num_minutes() / cell.num_minutes())
                        .unwrap_or(0);
                return self.maybe_refetch();
            }
            Action::ToggleMark => {
                if let Some(id) = self.cursor_resource().map(|r| r.id)
                    && !self.marked.remove(&id)
                {
                    self.marked.insert(id);
                }
            }
            Action::NewBooking => {
                if self.screen == Screen::Timeline {
                    return self.open_booking_form();
                }
            }
            Action::Edit => return self.open_edit_form(),
            Action::Cancel => {
                if let Some(r) = self.target() {
                    if !self.may_change(&r) {
                        self.fail("that is not your reservation");
                    } else {
                        self.confirm = Some(Confirm {
                            question: format!(
                                "Cancel {} · {} · {}? (y/n)",
                                text::sanitize(&r.resource_name),
                                text::sanitize(&r.user.display_name),
                                self.period_text(&r.period)
                            ),
                            effect: Effect::Cancel(r.id),
                        });
                    }
                } else {
                    self.fail("no reservation here");
                }
            }
            Action::Release => match self.target() {
                Some(r) if !self.may_change(&r) => self.fail("that is not your reservation"),
                Some(r) => return vec![Effect::Release(r.id)],
                None => self.fail("no reservation here"),
            },
            Action::Filter => self.filter_input = Some(self.filter.clone().unwrap_or_default()),
            Action::ToggleRole => {
                if let Some(u) = self.data.users.get(self.admin_selected) {
                    let role = if u.role == Role::Admin {
                        Role::Member
                    } else {
                        Role::Admin
                    };
                    return vec![Effect::SetRole(u.email.clone(), role)];
                }
            }
            Action::DisableUser => {
                if let Some(u) = self.data.users.get(self.admin_selected) {
                    self.confirm = Some(Confirm {
                        question: format!(
                            "Disable {} and revoke their sessions? (y/n)",
                            text::sanitize(&u.email)
                        ),
                        effect: Effect::DisableUser(u.email.clone()),
                    });
                }
            }
        }
        vec![]
    }

    fn may_change(&self, r: &Reservation) -> bool {
        self.is_admin() || self.data.me.as_ref().is_some_and(|m| m.id == r.user.id)
    }

    fn maybe_refetch(&mut self) -> Vec<Effect> {
        let span = self.zoom.cell() * i32::try_from(self.visible_cols.max(1)).unwrap_or(48);
        let visible = Period {
            start: self.view_start,
            end: self.view_start + span,
        };
        match self.data.fetched {
            Some(f) if f.start <= visible.start && visible.end <= f.end => vec![],
            _ => vec![self.refresh()],
        }
    }

    /// `Thu 11-26 10:00–12:00` (or both dates when it spans days), in the viewer's zone.
    pub fn period_text(&self, p: &Period) -> String {
        let start = p.start.with_timezone(&self.tz);
        let end = p.end.with_timezone(&self.tz);
        if start.date_naive() == end.date_naive() {
            format!("{}–{}", start.format("%a %m-%d %H:%M"), end.format("%H:%M"))
        } else {
            format!(
                "{}–{}",
                start.format("%a %m-%d %H:%M"),
                end.format("%a %m-%d %H:%M")
            )
        }
    }

    // ---- login ----

    fn login_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let form = &mut self.login;
        match key.code {
            KeyCode::Esc => self.quit = true,
            KeyCode::Char('r') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                let email = form.fields[0].value.clone();
                self.login = LoginForm::new(!form.register, &email);
                self.login.focus = 0;
            }
            KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % form.fields.len(),
            KeyCode::BackTab | KeyCode::Up => {
                form.focus = (form.focus + form.fields.len() - 1) % form.fields.len()
            }
            KeyCode::Backspace => {
                form.fields[form.focus].value.pop();
            }
            KeyCode::Char(c) => form.fields[form.focus].value.push(c),
            KeyCode::Enter => {
                if form.focus + 1 < form.fields.len() {
                    form.focus += 1;
                    return vec![];
                }
                let value = |label: &str| {
                    form.fields
                        .iter()
                        .find(|f| f.label == label)
                        .map(|f| f.value.clone())
                        .unwrap_or_default()
                };
                let (email, password, name) = (
                    value("Email").trim().to_owned(),
                    value("Password"),
                    value("Name"),
                );
                let register = form.register;
                if email.is_empty() || password.is_empty() {
                    self.fail("enter your email and password");
                    return vec![];
                }
                self.say(if register {
                    "registering…"
                } else {
                    "logging in…"
                });
                if register {
                    return vec![Effect::Register(RegisterRequest {
                        email,
                        display_name: name,
                        password,
                    })];
                }
                return vec![Effect::Login { email, password }];
            }
            _ => {}
        }
        vec![]
    }

    // ---- booking form ----

    fn open_booking_form(&mut self) -> Vec<Effect> {
        let Some(cursor_res) = self.cursor_resource().cloned() else {
            self.fail("no resources yet: an admin adds them with `gpures-daemon resource add`");
            return vec![];
        };
        let mut names: Vec<String> = self
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
            self.now
                .duration_trunc(TimeDelta::minutes(1))
                .unwrap_or(self.now),
        );
        let fields = vec![
            Field::new("GPUs", names.join(" ")),
            Field::new("Start", format_local(start, self.tz)),
            Field::new("End or length", "2h"),
            Field::new("Note", ""),
        ];
        self.form = Some(BookingForm {
            editing: None,
            fields,
            focus: F_START,
            preview: Preview::Idle,
            check_seq: 0,
            request_id: Uuid::new_v4(),
        });
        self.form_changed()
    }

    fn open_edit_form(&mut self) -> Vec<Effect> {
        let Some(r) = self.target() else {
            self.fail("no reservation here");
            return vec![];
        };
        if !self.may_change(&r) {
            self.fail("that is not your reservation");
            return vec![];
        }
        let fields = vec![
            Field {
                read_only: true,
                ..Field::new("GPUs", r.resource_name.clone())
            },
            Field::new("Start", format_local(r.period.start, self.tz)),
            Field::new("End or length", format_local(r.period.end, self.tz)),
            Field::new("Note", text::sanitize(&r.note)),
        ];
        self.form = Some(BookingForm {
            editing: Some(r),
            fields,
            focus: F_END,
            preview: Preview::Idle,
            check_seq: 0,
            request_id: Uuid::new_v4(),
        });
        self.form_changed()
    }

    fn form_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(form) = &mut self.form else {
            return vec![];
        };
        match key.code {
            KeyCode::Esc => {
                self.form = None;
                self.say("not booked");
            }
            KeyCode::Tab | KeyCode::Down => {
                form.focus = (form.focus + 1) % form.fields.len();
            }
            KeyCode::BackTab | KeyCode::Up => {
                form.focus = (form.focus + form.fields.len() - 1) % form.fields.len();
            }
            KeyCode::Backspace if !form.fields[form.focus].read_only => {
                form.fields[form.focus].value.pop();
                return self.form_changed();
            }
            KeyCode::Char(c) if !form.fields[form.focus].read_only => {
                form.fields[form.focus].value.push(c);
                return self.form_changed();
            }
            KeyCode::Enter => return self.submit_form(),
            _ => {}
        }
        vec![]
    }

    /// The form's resources and period, or why they cannot be read.
    fn form_request(&self) -> Result<(Vec<i64>, Period), String> {
        let form = self.form.as_ref().ok_or("no form")?;
        let mut ids = Vec::new();
        match &form.editing {
            Some(r) => ids.push(r.resource_id),
            None => {
                for name in form.fields[F_RESOURCES]
                    .value
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                {
                    let r = self
                        .data
                        .resources
                        .iter()
                        .find(|r| r.name == name)
                        .ok_or_else(|| format!("no GPU named {}", text::sanitize(name)))?;
                    ids.push(r.id);
                }
            }
        }
        if ids.is_empty() {
            return Err("name at least one GPU".into());
        }
        let start = parse_time(&form.fields[F_START].value, self.now, self.tz)
            .map_err(|e| e.to_string())?;
        let end_text = form.fields[F_END].value.trim();
        let end = match parse_duration(end_text) {
            Ok(span) => span.add_to(start, self.tz).map_err(|e| e.to_string())?,
            Err(_) => parse_time(end_text, self.now, self.tz).map_err(|_| {
                format!("cannot read {end_text:?} as an end or a length (2h, 14:00)")
            })?,
        };
        if end <= start {
            return Err("the end must be after the start".into());
        }
        Ok((ids, Period { start, end }))
    }

    fn form_changed(&mut self) -> Vec<Effect> {
        let request = self.form_request();
        self.next_check += 1;
        let seq = self.next_check;
        let Some(form) = &mut self.form else {
            return vec![];
        };
        match request {
            Ok((resources, period)) => {
                form.preview = Preview::Checking;
                form.check_seq = seq;
                vec![Effect::Check {
                    seq,
                    resources,
                    period,
                    ignore: form.editing.as_ref().map(|r| r.id),
                }]
            }
            Err(why) => {
                form.preview = Preview::Invalid(why);
                vec![]
            }
        }
    }

    fn submit_form(&mut self) -> Vec<Effect> {
        let request = self.form_request();
        let Some(form) = &self.form else {
            return vec![];
        };
        let (resources, period) = match request {
            Ok(r) => r,
            Err(why) => {
                self.fail(why);
                return vec![];
            }
        };
        let note = form.fields[F_NOTE].value.clone();
        let effect = match &form.editing {
            Some(r) => Effect::Update(
                r.id,
                ReservationChange {
                    start: (period.start != r.period.start).then_some(period.start),
                    end: (period.end != r.period.end).then_some(period.end),
                    note: (note != r.note).then_some(note),
                },
            ),
            None => Effect::Book(BookingRequest {
                request_id: form.request_id,
                resources,
                period,
                note,
            }),
        };
        self.say("saving…");
        vec![effect]
    }

    // ---- results ----

    /// Applies a result or an outside event.
    pub fn apply(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::LoggedIn(login) => {
                self.data.me = Some(login.user.clone());
                self.screen = Screen::Timeline;
                self.login = LoginForm::new(false, &login.user.email);
                self.say(format!(
                    "welcome, {}",
                    text::sanitize(&login.user.display_name)
                ));
                let mut effects = vec![self.refresh()];
                if !self.watching {
                    self.watching = true;
                    effects.push(Effect::Watch);
                }
                effects
            }
            Msg::Registered { email, password } => vec![Effect::Login { email, password }],
            Msg::Loaded(snapshot) => {
                let s = *snapshot;
                if s.me.is_some() {
                    self.data.me = s.me;
                }
                self.data.resources = s.resources;
                self.data.reservations = s.reservations;
                self.data.fetched = s.window;
                self.data.mine = s.mine;
                self.data.status = s.status;
                self.data.users = s.users;
                self.cursor_row = self
                    .cursor_row
                    .min(self.data.resources.len().saturating_sub(1));
                self.list_selected = self
                    .list_selected
                    .min(self.data.mine.len().saturating_sub(1));
                self.admin_selected = self
                    .admin_selected
                    .min(self.data.users.len().saturating_sub(1));
                let live: BTreeSet<i64> = self.data.resources.iter().map(|r| r.id).collect();
                self.marked.retain(|id| live.contains(id));
                if self.screen == Screen::Admin && !self.is_admin() {
                    self.screen = Screen::Timeline;
                }
                if !self.watching && self.data.me.is_some() {
                    self.watching = true;
                    return vec![Effect::Watch];
                }
                vec![]
            }
            Msg::Done(what) => {
                self.form = None;
                self.marked.clear();
                self.say(what);
                vec![self.refresh()]
            }
            Msg::Checked { seq, holders } => {
                if let Some(form) = &mut self.form
                    && form.check_seq == seq
                {
                    form.preview = if holders.is_empty() {
                        Preview::Free
                    } else {
                        Preview::Taken(holders)
                    };
                }
                vec![]
            }
            Msg::Failed(ApiError::Unauthenticated) => {
                if self.screen == Screen::Login {
                    // A failed login: keep what was typed but the password.
                    if let Some(pw) = self.login.fields.iter_mut().find(|f| f.secret) {
                        pw.value.clear();
                    }
                    self.login.focus = self.login.fields.len() - 1;
                    self.fail("wrong email or password");
                    return vec![];
                }
                let email = self
                    .data
                    .me
                    .as_ref()
                    .map(|m| m.email.clone())
                    .unwrap_or_default();
                self.screen = Screen::Login;
                self.form = None;
                self.confirm = None;
                self.login = LoginForm::new(false, &email);
                self.fail("your session ended: log in again");
                vec![]
            }
            Msg::Failed(ApiError::Conflict { holders }) => {
                let who: Vec<String> = holders
                    .iter()
                    .map(|h| {
                        format!(
                            "{} by {} {}",
                            text::sanitize(&h.resource_name),
                            text::sanitize(&h.user.display_name),
                            self.period_text(&h.period)
                        )
                    })
                    .collect();
                if let Some(form) = &mut self.form {
                    form.preview = Preview::Taken(holders);
                }
                self.fail(format!("taken: {}", who.join("; ")));
                vec![]
            }
            Msg::Failed(e) => {
                self.fail(e.to_string());
                vec![]
            }
            Msg::Disconnected(why) => {
                self.fail(why);
                vec![]
            }
            Msg::RemoteChange => {
                if self.data.me.is_some() {
                    vec![self.refresh()]
                } else {
                    vec![]
                }
            }
            Msg::Tick(now) => {
                self.now = now;
                vec![]
            }
        }
    }
}
