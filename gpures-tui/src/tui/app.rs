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
use crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use gpures_proto::{ApiError, Reservation, text};

use super::component::{Component, Event, Popup};
use super::keys::{Action, action_for};
use super::popups::booking::BookingForm;
use super::popups::confirm::Confirm;
use super::popups::help::Help;
use super::popups::inbox::Inbox;
use super::screens::admin::Admin;
use super::screens::login::Login;
use super::screens::mine::Mine;
use super::screens::report::ReportScreen;
use super::screens::status::Status;
use super::screens::timeline::Timeline;

pub use super::form::Field;
pub use super::model::{Ctx, Data, Effect, Message, Msg, Screen, Snapshot};
pub use super::popups::booking::Preview;
pub use super::screens::timeline::Zoom;
pub use super::style::NAME_COL;

/// One component per screen.
#[derive(Clone, Debug)]
struct Screens {
    login: Login,
    timeline: Timeline,
    mine: Mine,
    status: Status,
    report: ReportScreen,
    admin: Admin,
}

impl Screens {
    fn get(&self, screen: Screen) -> &dyn Component {
        match screen {
            Screen::Login => &self.login,
            Screen::Timeline => &self.timeline,
            Screen::Mine => &self.mine,
            Screen::Status => &self.status,
            Screen::Report => &self.report,
            Screen::Admin => &self.admin,
        }
    }

    fn get_mut(&mut self, screen: Screen) -> &mut dyn Component {
        match screen {
            Screen::Login => &mut self.login,
            Screen::Timeline => &mut self.timeline,
            Screen::Mine => &mut self.mine,
            Screen::Status => &mut self.status,
            Screen::Report => &mut self.report,
            Screen::Admin => &mut self.admin,
        }
    }
}

/// The whole TUI: the shared context, one component per screen, and the
/// popup open over them.
#[derive(Debug)]
pub struct App {
    ctx: Ctx,
    screen: Screen,
    screens: Screens,
    popup: Option<Box<dyn Popup>>,
    quit: bool,
    watching: bool,
    /// Whether the daemon signs this Unix user in without a password.
    peer_login: bool,
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
                report: ReportScreen::new(now, tz),
                admin: Admin::default(),
            },
            popup: None,
            quit: false,
            watching: false,
            peer_login: false,
        }
    }

    /// The same app for the daemon of `host` (shown in the title bar).
    pub fn with_host(mut self, host: &str) -> App {
        host.clone_into(&mut self.ctx.data.host);
        self
    }

    /// The same app for a daemon that signs Unix users in by the connection
    /// (registering then asks no password).
    pub fn with_peer_login(mut self, on: bool) -> App {
        self.peer_login = on;
        self.screens.login.password_required = !on;
        self
    }

    /// The same app opening on the registration: the Unix user has no
    /// account yet. `name` fills the name field; `password_required` when
    /// the host signs nobody in by Unix user.
    pub fn first_run(mut self, name: &str, password_required: bool) -> App {
        self.screen = Screen::Login;
        self.screens.login = Login::first_run(name, password_required);
        self.say(if password_required {
            "welcome to gpures: register to start".to_owned()
        } else {
            "welcome to gpures: register once, and this Unix user is signed in from then on"
                .to_owned()
        });
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

    /// The popup open over the screen, if any.
    pub fn popup(&self) -> Option<&dyn Popup> {
        self.popup.as_deref()
    }

    /// The open popup, if it is a `T`.
    fn popup_as<T: 'static>(&self) -> Option<&T> {
        self.popup.as_deref()?.as_any().downcast_ref::<T>()
    }

    /// The booking or edit form, when it is open.
    pub fn booking_form(&self) -> Option<&BookingForm> {
        self.popup_as()
    }

    /// The question waiting for y/n, if any.
    pub fn confirm(&self) -> Option<&Confirm> {
        self.popup_as()
    }

    pub fn help_open(&self) -> bool {
        self.popup_as::<Help>().is_some()
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
        let mut order = vec![
            Screen::Timeline,
            Screen::Mine,
            Screen::Status,
            Screen::Report,
        ];
        if self.ctx.is_admin() {
            order.push(Screen::Admin);
        }
        order
    }

    /// The tab drawn at `column` of the title bar (laid out as
    /// [`super::draw`] draws it: the name, then ` title │` per tab).
    pub fn tab_at(&self, column: u16) -> Option<Screen> {
        let mut x = super::draw::TABS_START;
        for s in self.tabs() {
            let start = x + 1;
            let width = u16::try_from(s.title().chars().count()).unwrap_or(0);
            if (start..start + width).contains(&column) {
                return Some(s);
            }
            x = start + width + 2;
        }
        None
    }

    /// The active screen's component.
    pub fn active(&self) -> &dyn Component {
        self.screens.get(self.screen)
    }

    /// The screens that show loaded data catch up with it.
    fn loaded(&mut self) {
        self.screens.timeline.loaded(&self.ctx);
        self.screens.mine.loaded(&self.ctx);
        self.screens.admin.loaded(&self.ctx);
    }

    /// Keeps `queue`; the banner for a request of ours that was waiting
    /// and is granted now, if any.
    fn take_queue(&mut self, queue: Vec<gpures_proto::QueueEntry>) -> Option<String> {
        let data = &mut self.ctx.data;
        let me = data.me.as_ref().map(|m| m.id);
        let granted = queue
            .iter()
            .find(|e| {
                e.state == gpures_proto::QueueState::Granted
                    && Some(e.user.id) == me
                    && data
                        .queue
                        .iter()
                        .any(|old| old.id == e.id && old.state == gpures_proto::QueueState::Waiting)
            })
            .map(|e| {
                format!(
                    "granted from the queue: {} GPU{} for {} min, starting now (booking {})",
                    e.gpus,
                    if e.gpus == 1 { "" } else { "s" },
                    e.length_minutes,
                    e.booking_id
                        .map(|b| b.to_string()[..8].to_owned())
                        .unwrap_or_default()
                )
            });
        data.queue = queue;
        granted
    }

    /// Keeps the newest notifications; the banner for one that arrived
    /// since the last load (not the ones waiting at start: the inbox has
    /// them), if any.
    fn take_inbox(
        &mut self,
        items: Vec<gpures_proto::Notification>,
        unread: u32,
    ) -> Option<String> {
        let data = &mut self.ctx.data;
        let seen = data.notifications.first().map(|n| n.id);
        let fresh = items
            .iter()
            .find(|n| !n.read && seen.is_some_and(|id| n.id > id))
            .map(|n| format!("● {} (i: inbox)", n.title));
        data.notifications = items;
        data.unread = unread;
        fresh
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
        if self.popup.is_some() {
            return vec![];
        }
        // A click on a tab of the title bar opens that screen.
        if ev.row == 0
            && matches!(ev.kind, MouseEventKind::Down(MouseButton::Left))
            && self.screen != Screen::Login
        {
            if let Some(screen) = self.tab_at(ev.column) {
                self.ctx.message = None;
                return self.open(screen);
            }
            return vec![];
        }
        if self.screen != Screen::Timeline {
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
            Action::Help => vec![Event::open(Help::default())],
            Action::NotifySettings => vec![
                Event::open(crate::tui::popups::notify::NotifySettings::default()),
                Event::Call(Effect::Notify(None)),
            ],
            Action::Inbox => {
                let mut events = vec![Event::open(Inbox::default())];
                if let Some(newest) = self.ctx.data.notifications.first()
                    && self.ctx.data.unread > 0
                {
                    events.push(Event::Call(Effect::MarkRead(newest.id)));
                }
                events
            }
            Action::Refresh => {
                let mut events = vec![Event::Call(self.refresh())];
                if self.screen == Screen::Report {
                    events.push(Event::Call(self.screens.report.load(&self.ctx)));
                }
                events
            }
            Action::NextScreen | Action::PrevScreen => {
                let order = self.tabs();
                let i = order.iter().position(|s| *s == self.screen).unwrap_or(0);
                let n = order.len();
                let j = if action == Action::NextScreen {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                return self.open(order[j]);
            }
            action => self.screens.get_mut(self.screen).update(action, &self.ctx),
        };
        self.handle(events)
    }

    /// Switches to `screen`; the Report screen loads its month on opening.
    fn open(&mut self, screen: Screen) -> Vec<Effect> {
        self.screen = screen;
        match screen {
            Screen::Report => vec![self.screens.report.load(&self.ctx)],
            // What the GPUs do now: samples are not announced as changes.
            Screen::Status => vec![Self::reload_status()],
            _ => vec![],
        }
    }

    fn reload_status() -> Effect {
        Effect::Reload {
            queue: false,
            inbox: false,
            status: true,
        }
    }

    /// Applies the events components asked for; returns the calls to make.
    fn handle(&mut self, events: Vec<Event>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for event in events {
            match event {
                Event::Call(effect) => effects.push(effect),
                Event::Open(popup) => self.popup = Some(popup),
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
                self.screens.login = Login::with(false, &login.user.email, "", !self.peer_login);
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
            Msg::Registered { email, password } if password.is_empty() => {
                // Peer sign-in: the account is in use as soon as it exists.
                self.screen = Screen::Timeline;
                self.screens.login = Login::with(false, &email, "", !self.peer_login);
                self.say("registered: you are signed in by your Unix user".to_owned());
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
                data.blocks = s.blocks;
                data.usage = s.usage;
                data.policies = s.policies;
                data.groups = s.groups;
                data.disabled = s.disabled;
                data.fetched = s.window;
                data.mine = s.mine;
                data.status = s.status;
                data.users = s.users;
                let granted = self.take_queue(s.queue);
                let first_load = self.ctx.data.me.is_some()
                    && self.ctx.data.notifications.is_empty()
                    && self.ctx.data.unread == 0;
                let fresh = self.take_inbox(s.notifications, s.unread);
                if let Some(banner) = fresh.or(granted) {
                    self.say(banner);
                } else if first_load && self.ctx.data.unread > 0 {
                    let n = self.ctx.data.unread;
                    self.say(format!(
                        "{n} unread notification{} (i: inbox)",
                        if n == 1 { "" } else { "s" }
                    ));
                }
                self.loaded();
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
            Msg::Applied { what, changed } => {
                self.popup = None;
                self.screens.timeline.clear_marks();
                self.say(what);
                let now = self.ctx.now.max(Utc::now());
                self.ctx.data.apply_reservations(&changed, now);
                self.loaded();
                vec![]
            }
            Msg::Reloaded {
                queue,
                inbox,
                status,
            } => {
                let granted = queue.and_then(|q| self.take_queue(q));
                let fresh = inbox.and_then(|page| self.take_inbox(page.items, page.unread));
                if let Some(status) = status {
                    self.ctx.data.status = Some(status);
                }
                if let Some(banner) = fresh.or(granted) {
                    self.say(banner);
                }
                self.loaded();
                vec![]
            }
            Msg::Changed(delta) => {
                if self.ctx.data.me.is_none() {
                    return vec![];
                }
                let Some(delta) = delta else {
                    return match self.screen {
                        Screen::Report => vec![self.refresh(), self.screens.report.load(&self.ctx)],
                        _ => vec![self.refresh()],
                    };
                };
                let now = self.ctx.now.max(Utc::now());
                self.ctx.data.apply_reservations(&delta.reservations, now);
                self.ctx.data.apply_status(&delta.status);
                self.loaded();
                let mut effects = Vec::new();
                if delta.queue || delta.inbox || delta.calendar {
                    effects.push(Effect::Reload {
                        queue: delta.queue,
                        inbox: delta.inbox,
                        status: delta.calendar,
                    });
                }
                if self.screen == Screen::Report && !delta.reservations.is_empty() {
                    effects.push(self.screens.report.load(&self.ctx));
                }
                effects
            }
            Msg::Checked { .. } | Msg::SlotsFound { .. } => {
                let events = match &mut self.popup {
                    Some(popup) => popup.apply(&msg, &self.ctx),
                    None => vec![],
                };
                self.handle(events)
            }
            Msg::Failed(ApiError::NoAccount { .. }) => {
                self.popup = None;
                self.screen = Screen::Login;
                self.screens.login = Login::first_run("", !self.peer_login);
                self.fail("this Unix user has no gpures account yet: register");
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
                self.screens.login = Login::with(false, &email, "", !self.peer_login);
                self.fail("your session ended: log in again");
                vec![]
            }
            Msg::Failed(ApiError::Conflict { ref holders }) => {
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
                let events = match &mut self.popup {
                    Some(popup) => popup.apply(&msg, &self.ctx),
                    None => vec![],
                };
                self.fail(format!("taken: {}", who.join("; ")));
                self.handle(events)
            }
            Msg::Failed(ApiError::Policy(ref refusal)) => {
                let said = refusal.sentence(|t| self.ctx.time_text(t));
                self.fail(format!("refused by lab policy: {said}"));
                vec![]
            }
            Msg::Failed(e) => {
                self.fail(e.to_string());
                vec![]
            }
            Msg::Disconnected(ref why) => {
                // A check that cannot be answered says so instead of
                // "checking…" forever.
                let events = match &mut self.popup {
                    Some(popup) => popup.apply(&msg, &self.ctx),
                    None => vec![],
                };
                self.fail(why.clone());
                self.handle(events)
            }
            Msg::Reconnected => {
                self.say("reconnected to the daemon");
                if self.ctx.data.me.is_none() {
                    return vec![];
                }
                // An open form asks again what it could not check.
                let events = match &mut self.popup {
                    Some(popup) => popup.apply(&msg, &self.ctx),
                    None => vec![],
                };
                let mut effects = vec![self.refresh()];
                effects.extend(self.handle(events));
                effects
            }
            Msg::ReportLoaded(report) => {
                self.ctx.data.report = Some(*report);
                vec![]
            }
            Msg::NotifyLoaded(settings, changed) => {
                self.ctx.data.notify = Some(*settings);
                if changed {
                    self.say("saved");
                }
                vec![]
            }
            Msg::Read(up_to) => {
                let data = &mut self.ctx.data;
                for n in data.notifications.iter_mut().filter(|n| n.id <= up_to) {
                    n.read = true;
                }
                data.unread = u32::try_from(data.notifications.iter().filter(|n| !n.read).count())
                    .unwrap_or(0)
                    .min(data.unread);
                vec![]
            }
            Msg::Tick(now) => {
                self.ctx.now = now;
                // The Status screen follows the GPUs' samples while shown.
                if self.screen == Screen::Status && self.ctx.data.me.is_some() {
                    vec![Self::reload_status()]
                } else {
                    vec![]
                }
            }
            Msg::Resized { cols, rows } => {
                self.screens.timeline.resize(cols, rows, &self.ctx);
                vec![]
            }
        }
    }
}
