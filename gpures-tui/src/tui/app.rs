//! The TUI's state and how it changes. [`App`] routes: a key becomes an
//! [`Action`] through the binding table and goes to the open popup, else to
//! the active screen; each component changes only its own state and answers
//! with [`Event`]s, which the app applies in one place ([`App::key`]). Calls
//! to the daemon leave as [`Effect`]s; their results come back as [`Msg`]s
//! through [`App::apply`], the only other way state changes. Nothing here
//! does I/O or draws (see [`super::draw`]), so the whole app is driven by
//! tests without a terminal.
//!
//! What every component may read is [`Ctx`]: the clock, the zone, the
//! daemon's data and the footer message.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use crossterm::event::{KeyEvent, MouseEvent};
use gpures_proto::{
    ApiError, BookingRequest, Holder, LoginReply, Period, RegisterRequest, Reservation,
    ReservationChange, Resource, Role, StatusReport, UserInfo, text,
};
use uuid::Uuid;

use super::keys::{Action, action_for};
use super::popups::Popup;
use super::popups::booking::BookingForm;
use super::popups::confirm::Confirm;
use super::popups::help::Help;
use super::screens::Component;
use super::screens::admin::Admin;
use super::screens::login::Login;
use super::screens::mine::Mine;
use super::screens::status::Status;
use super::screens::timeline::Timeline;

pub use super::form::Field;
pub use super::popups::booking::Preview;
pub use super::screens::timeline::{NAME_COL, Zoom};

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

/// A line in the footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// What every component reads: the clock, the zone, the data, the footer.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub tz: Tz,
    pub now: DateTime<Utc>,
    pub data: Data,
    pub message: Option<Message>,
    /// `NO_COLOR`: tell things apart by reverse video, bold and markers.
    pub no_color: bool,
}

impl Ctx {
    pub fn is_admin(&self) -> bool {
        self.data.me.as_ref().is_some_and(|m| m.role == Role::Admin)
    }

    /// Whether the viewer may change `r` (their own, or any as an admin).
    pub fn may_change(&self, r: &Reservation) -> bool {
        self.is_admin() || self.data.me.as_ref().is_some_and(|m| m.id == r.user.id)
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
    /// The terminal now shows `cols` timeline cells.
    Resized {
        cols: usize,
    },
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

/// What a component asks of the app: the queue panels talk through.
#[derive(Clone, Debug)]
pub enum Event {
    /// Make a call to the daemon.
    Call(Effect),
    /// Open a popup over the screen.
    Open(Box<Popup>),
    /// Close the open popup.
    Close,
    /// Show a line in the footer.
    Say(String),
    /// Show an error in the footer.
    Fail(String),
    /// Filter the timeline (`None`: no filter).
    SetFilter(Option<String>),
    Quit,
}

/// One component per screen.
#[derive(Clone, Debug)]
struct Screens {
    login: Login,
    timeline: Timeline,
    mine: Mine,
    status: Status,
    admin: Admin,
}

impl Screens {
    fn get(&self, screen: Screen) -> &dyn Component {
        match screen {
            Screen::Login => &self.login,
            Screen::Timeline => &self.timeline,
            Screen::Mine => &self.mine,
            Screen::Status => &self.status,
            Screen::Admin => &self.admin,
        }
    }

    fn get_mut(&mut self, screen: Screen) -> &mut dyn Component {
        match screen {
            Screen::Login => &mut self.login,
            Screen::Timeline => &mut self.timeline,
            Screen::Mine => &mut self.mine,
            Screen::Status => &mut self.status,
            Screen::Admin => &mut self.admin,
        }
    }
}

impl Event {
    /// Opens `popup`.
    pub fn open(popup: Popup) -> Event {
        Event::Open(Box::new(popup))
    }
}

/// The whole TUI: the shared context, one component per screen, and the
/// popup open over them.
#[derive(Clone, Debug)]
pub struct App {
    ctx: Ctx,
    screen: Screen,
    screens: Screens,
    popup: Option<Popup>,
    quit: bool,
    watching: bool,
}

impl App {
    pub fn new(tz: Tz, now: DateTime<Utc>, logged_in: bool, email: &str) -> App {
        App {
            ctx: Ctx {
                tz,
                now,
                data: Data::default(),
                message: None,
                no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            },
            screen: if logged_in {
                Screen::Timeline
            } else {
                Screen::Login
            },
            screens: Screens {
                login: Login::new(false, email),
                timeline: Timeline::new(now),
                mine: Mine::default(),
                status: Status,
                admin: Admin::default(),
            },
            popup: None,
            quit: false,
            watching: false,
        }
    }

    /// The same app for the daemon of `host` (shown in the title bar).
    pub fn with_host(mut self, host: &str) -> App {
        host.clone_into(&mut self.ctx.data.host);
        self
    }

    /// The same app with colours on or off (`NO_COLOR` decides by default).
    pub fn with_no_color(mut self, no_color: bool) -> App {
        self.ctx.no_color = no_color;
        self
    }

    // ---- reading ----

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn data(&self) -> &Data {
        &self.ctx.data
    }

    pub fn message(&self) -> Option<&Message> {
        self.ctx.message.as_ref()
    }

    pub fn screen(&self) -> Screen {
        self.screen
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn login(&self) -> &Login {
        &self.screens.login
    }

    pub fn timeline(&self) -> &Timeline {
        &self.screens.timeline
    }

    pub fn popup(&self) -> Option<&Popup> {
        self.popup.as_ref()
    }

    /// The booking or edit form, when it is open.
    pub fn booking_form(&self) -> Option<&BookingForm> {
        match &self.popup {
            Some(Popup::Booking(form)) => Some(form),
            _ => None,
        }
    }

    /// The question waiting for y/n, if any.
    pub fn confirm(&self) -> Option<&Confirm> {
        match &self.popup {
            Some(Popup::Confirm(c)) => Some(c),
            _ => None,
        }
    }

    pub fn help_open(&self) -> bool {
        matches!(self.popup, Some(Popup::Help(_)))
    }

    /// The reservation covering the timeline's cursor cell, if any.
    pub fn reservation_at_cursor(&self) -> Option<&Reservation> {
        self.screens.timeline.reservation_at_cursor(&self.ctx)
    }

    /// The screens reachable with Tab.
    pub fn tabs(&self) -> Vec<Screen> {
        if self.screen == Screen::Login {
            return vec![Screen::Login];
        }
        let mut order = vec![Screen::Timeline, Screen::Mine, Screen::Status];
        if self.ctx.is_admin() {
            order.push(Screen::Admin);
        }
        order
    }

    /// The active screen's component.
    pub fn active(&self) -> &dyn Component {
        self.screens.get(self.screen)
    }

    /// The reload of everything shown.
    pub fn refresh(&self) -> Effect {
        Effect::Refresh {
            window: self.screens.timeline.fetch_window(),
        }
    }

    // ---- input ----

    /// Handles a key press: the open popup gets it, else the active screen;
    /// the screen-wide keys (quit, help, reload, Tab) are handled here.
    pub fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let scope = match &self.popup {
            Some(p) => p.scope(),
            None => self.active().scope(),
        };
        let Some(action) = action_for(scope, &key) else {
            return vec![];
        };
        self.update(action)
    }

    /// Handles a mouse event (the timeline's cells); `origin` is where they start.
    pub fn mouse(&mut self, ev: MouseEvent, origin: (u16, u16)) -> Vec<Effect> {
        if self.screen != Screen::Timeline || self.popup.is_some() {
            return vec![];
        }
        let events = self.screens.timeline.mouse(ev, origin, &self.ctx);
        self.handle(events)
    }

    /// Applies an action to the popup, else the screen.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        if let Some(popup) = &mut self.popup {
            let events = popup.update(action, &self.ctx);
            return self.handle(events);
        }
        if self.screen != Screen::Login {
            self.ctx.message = None;
        }
        let events = match action {
            Action::Quit => vec![Event::Quit],
            Action::Help => vec![Event::open(Popup::Help(Help::default()))],
            Action::Refresh => vec![Event::Call(self.refresh())],
            Action::NextScreen | Action::PrevScreen => {
                let order = self.tabs();
                let i = order.iter().position(|s| *s == self.screen).unwrap_or(0);
                let n = order.len();
                let j = if action == Action::NextScreen {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.screen = order[j];
                vec![]
            }
            action => self.screens.get_mut(self.screen).update(action, &self.ctx),
        };
        self.handle(events)
    }

    /// Applies the events components asked for; returns the calls to make.
    fn handle(&mut self, events: Vec<Event>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for event in events {
            match event {
                Event::Call(effect) => effects.push(effect),
                Event::Open(popup) => self.popup = Some(*popup),
                Event::Close => self.popup = None,
                Event::Say(text) => self.say(text),
                Event::Fail(text) => self.fail(text),
                Event::SetFilter(filter) => self.screens.timeline.set_filter(filter),
                Event::Quit => self.quit = true,
            }
        }
        effects
    }

    fn say(&mut self, text: impl Into<String>) {
        self.ctx.message = Some(Message {
            text: text.into(),
            error: false,
        });
    }

    fn fail(&mut self, text: impl Into<String>) {
        self.ctx.message = Some(Message {
            text: text.into(),
            error: true,
        });
    }

    // ---- results ----

    /// Applies a result or an outside event.
    pub fn apply(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::LoggedIn(login) => {
                self.ctx.data.me = Some(login.user.clone());
                self.screen = Screen::Timeline;
                self.screens.login = Login::new(false, &login.user.email);
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
                let data = &mut self.ctx.data;
                if s.me.is_some() {
                    data.me = s.me;
                }
                data.resources = s.resources;
                data.reservations = s.reservations;
                data.fetched = s.window;
                data.mine = s.mine;
                data.status = s.status;
                data.users = s.users;
                self.screens.timeline.loaded(&self.ctx);
                self.screens.mine.loaded(&self.ctx);
                self.screens.admin.loaded(&self.ctx);
                if self.screen == Screen::Admin && !self.ctx.is_admin() {
                    self.screen = Screen::Timeline;
                }
                if !self.watching && self.ctx.data.me.is_some() {
                    self.watching = true;
                    return vec![Effect::Watch];
                }
                vec![]
            }
            Msg::Done(what) => {
                self.popup = None;
                self.screens.timeline.clear_marks();
                self.say(what);
                vec![self.refresh()]
            }
            Msg::Checked { seq, holders } => {
                if let Some(Popup::Booking(form)) = &mut self.popup {
                    form.checked(seq, holders);
                }
                vec![]
            }
            Msg::Failed(ApiError::Unauthenticated) => {
                if self.screen == Screen::Login {
                    self.screens.login.failed();
                    self.fail("wrong email or password");
                    return vec![];
                }
                let email = self
                    .ctx
                    .data
                    .me
                    .as_ref()
                    .map(|m| m.email.clone())
                    .unwrap_or_default();
                self.screen = Screen::Login;
                self.popup = None;
                self.screens.login = Login::new(false, &email);
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
                            self.ctx.period_text(&h.period)
                        )
                    })
                    .collect();
                if let Some(Popup::Booking(form)) = &mut self.popup {
                    form.taken(holders);
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
                if self.ctx.data.me.is_some() {
                    vec![self.refresh()]
                } else {
                    vec![]
                }
            }
            Msg::Tick(now) => {
                self.ctx.now = now;
                vec![]
            }
            Msg::Resized { cols } => {
                self.screens.timeline.resize(cols);
                vec![]
            }
        }
    }
}
