//! The terminal UI. [`app`] routes keys and results to the components
//! ([`screens`] and [`popups`], each owning its state and drawing itself;
//! [`component`] is how they talk), [`model`] is the data they share,
//! [`keys`] the key table, [`form`] the text fields, [`style`] what they
//! draw with, [`draw`] composes the frame, [`term`] the real terminal. This module connects them: [`Session`] performs an app's [`Effect`]s against the daemon and
//! turns the answers into [`Msg`]s; [`run`] is the event loop, generic over
//! the ratatui backend; [`Driver`] runs the same pieces step by step for tests.
//!
//! The loop sleeps until a key, a mouse event, a resize, a daemon answer, a
//! live change (`wait_for_changes`) or the 30-second clock tick arrives, and
//! redraws only then: no busy loop.

pub mod app;
pub mod component;
pub mod draw;
pub mod form;
pub mod keys;
pub mod model;
pub mod popups;
pub mod screens;
pub mod style;
pub mod term;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::Utc;
use crossterm::event::{Event, KeyEvent, KeyEventKind};
use futures::{Stream, StreamExt};
use gpures_proto::{ApiError, Period, ReservationFilter, text};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;

use crate::client::{Client, ClientError};
use crate::conn::{SavedSession, TokenStore};
use app::{App, Effect, Msg, Snapshot};

/// The client and where a new login is kept, shared by the loop's tasks.
#[derive(Clone)]
pub struct Session {
    client: Client,
    store: Option<TokenStore>,
}

fn lost(e: &ClientError) -> Msg {
    Msg::Disconnected(format!(
        "{e}; reconnecting… (F5 tries now; `systemctl status gpures-daemon` says why)"
    ))
}

/// A change of our reservations, done: `what` it was, and the reservations
/// as the daemon's reply has them.
fn applied(what: String, changed: Vec<gpures_proto::Reservation>) -> Msg {
    Msg::Applied { what, changed }
}

/// `gpu0, gpu1`: the resources of `rs`.
fn names(rs: &[gpures_proto::Reservation]) -> String {
    let names: Vec<String> = rs
        .iter()
        .map(|r| text::sanitize(&r.resource_name))
        .collect();
    names.join(", ")
}

/// The pauses between attempts to reach a daemon that went away (restarted
/// for an upgrade): about 10 s in all before a call gives up.
const RECONNECT_PAUSES_MS: [u64; 6] = [100, 300, 600, 1_000, 3_000, 5_000];

impl Session {
    /// A session on `client` signed in with `token`; `store` is where a new
    /// login is saved (`None` keeps it in memory).
    pub fn new(client: Client, token: Option<String>, store: Option<TokenStore>) -> Session {
        client.set_token(token);
        Session { client, store }
    }

    /// Performs one effect and returns what came of it. When the
    /// connection broke, it connects again and makes the call once more:
    /// reads and checks are safe to repeat, a booking is repeated with its
    /// request id (the daemon answers with the booking it made), and a
    /// change already made is refused the second time with the reason.
    pub async fn execute(&self, effect: Effect) -> Msg {
        // Each attempt is boxed: one effect's future (a refresh runs six
        // calls at once) is large, and three of them would otherwise sit in
        // this one, on the stack of whoever polls it.
        let result = match Box::pin(self.try_execute(effect.clone())).await {
            Err(ClientError::Lost(_) | ClientError::Connect(_)) if self.reconnect().await => {
                Box::pin(self.try_execute(effect)).await
            }
            Err(ClientError::Api(ApiError::Unauthenticated)) if self.fall_back_to_peer() => {
                Box::pin(self.try_execute(effect)).await
            }
            other => other,
        };
        match result {
            Ok(msg) => msg,
            Err(ClientError::Api(api)) => Msg::Failed(api),
            Err(e) => lost(&e),
        }
    }

    /// A saved token was refused (it expired, or was revoked by a logout
    /// elsewhere): where the daemon signs in by Unix user, forget the token
    /// and its file and go on without one.
    fn fall_back_to_peer(&self) -> bool {
        let fell = self.client.fall_back_to_peer();
        if fell && let Some(store) = &self.store {
            store.clear();
        }
        fell
    }

    /// Tries to connect again for about 10 s; true once connected.
    async fn reconnect(&self) -> bool {
        for pause in RECONNECT_PAUSES_MS {
            if self.client.reconnect().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        self.client.reconnect().await.is_ok()
    }

    async fn try_execute(&self, effect: Effect) -> Result<Msg, ClientError> {
        let c = &self.client;
        Ok(match effect {
            Effect::Watch => Msg::Tick(Utc::now()),
            Effect::LoadReport(window) => {
                let request = gpures_proto::ReportRequest {
                    window,
                    by: gpures_proto::ReportBy::User,
                };
                Msg::ReportLoaded(Box::new(c.report(request).await?))
            }
            Effect::Notify(change) => {
                let changed = change.is_some();
                Msg::NotifyLoaded(Box::new(c.notify_settings(change).await?), changed)
            }
            Effect::Login { email, password } => {
                let login = c.login(email, password).await?;
                if let Some(store) = &self.store {
                    let _ = store.save(&SavedSession {
                        token: login.token.clone(),
                        email: login.user.email.clone(),
                        expires_at: login.expires_at,
                    });
                }
                Msg::LoggedIn(Box::new(login))
            }
            Effect::Register(req) => {
                let (email, password) = (req.email.clone(), req.password.clone());
                c.register(req).await?;
                Msg::Registered { email, password }
            }
            Effect::Refresh { window } => {
                let me = c.whoami().await?;
                let now = Utc::now();
                let mine_filter = ReservationFilter {
                    user_email: Some(me.email.clone()),
                    window: Some(Period {
                        start: now,
                        end: now + model::MINE_AHEAD,
                    }),
                    ..ReservationFilter::default()
                };
                let admin = me.role == gpures_proto::Role::Admin;
                let (timeline, mine, status, users, queue, inbox) = futures::join!(
                    c.timeline(window),
                    c.reservations(mine_filter),
                    c.status(),
                    async {
                        if admin {
                            // Boxed: the calls' state would otherwise sit on
                            // the stack of whoever polls the refresh.
                            let four = Box::pin(async {
                                futures::join!(
                                    c.users(),
                                    c.policies(),
                                    c.groups(),
                                    c.resources(true)
                                )
                            });
                            Some(four.await)
                        } else {
                            None
                        }
                    },
                    c.queue(),
                    c.notifications(false, 30)
                );
                let inbox = inbox?;
                let timeline = timeline?;
                let (users, policies, groups, disabled) = match users {
                    Some((u, p, g, r)) => {
                        let mut disabled = r?;
                        disabled.retain(|r| !r.active);
                        (u?, p?, g?, disabled)
                    }
                    None => Default::default(),
                };
                Msg::Loaded(Box::new(Snapshot {
                    me: Some(me),
                    resources: timeline.resources,
                    reservations: timeline.reservations,
                    window: Some(timeline.window),
                    mine: mine?,
                    status: Some(status?),
                    users,
                    queue: queue?,
                    notifications: inbox.items,
                    unread: inbox.unread,
                    blocks: timeline.blocks,
                    usage: timeline.usage,
                    policies,
                    groups,
                    disabled,
                }))
            }
            Effect::Reload {
                queue,
                inbox,
                status,
            } => {
                let (q, i, s) = futures::join!(
                    async {
                        match queue {
                            true => c.queue().await.map(Some),
                            false => Ok(None),
                        }
                    },
                    async {
                        match inbox {
                            true => c.notifications(false, 30).await.map(Some),
                            false => Ok(None),
                        }
                    },
                    async {
                        match status {
                            true => c.status().await.map(Some),
                            false => Ok(None),
                        }
                    }
                );
                Msg::Reloaded {
                    queue: q?,
                    inbox: i?,
                    status: s?,
                }
            }
            Effect::Book(req) => {
                let b = c.book(req).await?;
                applied(format!("booked {}", names(&b.reservations)), b.reservations)
            }
            Effect::Update(id, change) => {
                let r = c.update(id, change).await?;
                applied(
                    format!("changed {}", text::sanitize(&r.resource_name)),
                    vec![r],
                )
            }
            Effect::MarkRead(up_to) => {
                c.mark_read(up_to).await?;
                Msg::Read(up_to)
            }
            Effect::Cancel(id) => {
                let r = c.cancel(id).await?;
                applied(
                    format!("cancelled {}", text::sanitize(&r.resource_name)),
                    vec![r],
                )
            }
            Effect::Release(id) => {
                let r = c.release(id).await?;
                applied(
                    format!("released {}", text::sanitize(&r.resource_name)),
                    vec![r],
                )
            }
            Effect::CancelBooking(id) => {
                let rs = c.cancel_booking(id).await?;
                applied(format!("cancelled {}", names(&rs)), rs)
            }
            Effect::ReleaseBooking(id) => {
                let rs = c.release_booking(id).await?;
                applied(format!("released {}", names(&rs)), rs)
            }
            Effect::Check {
                seq,
                resources,
                period,
                ignore,
            } => {
                let preview = c.preview(resources, period, ignore).await?;
                Msg::Checked {
                    seq,
                    holders: preview.holders,
                    refusal: preview.refusal,
                    blocks: preview.blocks,
                }
            }
            Effect::FindSlots { seq, query } => Msg::SlotsFound {
                seq,
                options: c.find_slots(query).await?,
            },
            Effect::BookAny(req) => {
                let got = c.book_any(req).await?;
                let rs = got.booking.reservations;
                applied(format!("booked {}", names(&rs)), rs)
            }
            Effect::CancelSeries { series_id, from } => {
                let rs = c.cancel_series(series_id, from).await?;
                applied(
                    format!("cancelled {} reservation(s) of the series", rs.len()),
                    rs,
                )
            }
            Effect::EditSeries {
                series_id,
                this,
                new,
                note,
                tz,
            } => {
                let all = c.find(gpures_proto::Lookup::Series(series_id)).await?;
                let periods = crate::timefmt::shift_following(&all, this, new, tz, Utc::now())
                    .map_err(|e| ApiError::InvalidArgument {
                        field: "start".into(),
                        reason: e.to_string(),
                    })?;
                let edit = gpures_proto::SeriesEdit {
                    series_id,
                    from: this.start,
                    periods,
                    note,
                    reason: None,
                };
                let rs = c.edit_series(edit).await?;
                applied(
                    format!("changed {} reservation(s) of the series", rs.len()),
                    rs,
                )
            }
            Effect::Decide {
                booking_id,
                approve,
                reason,
            } => {
                let rs = c.decide_approval(booking_id, approve, reason).await?;
                let what = if approve {
                    format!("approved {} (the owner is told)", names(&rs))
                } else {
                    format!("denied {} (the owner sees why)", names(&rs))
                };
                applied(what, rs)
            }
            Effect::ChangeWithReason {
                target,
                kind,
                reason,
            } => {
                let what = match kind {
                    gpures_proto::ChangeKind::Cancel => "cancelled",
                    gpures_proto::ChangeKind::Release => "released",
                    gpures_proto::ChangeKind::Edit(_) => "changed",
                };
                let rs = c.change_with_reason(target, kind, reason).await?;
                applied(format!("{what} {} (the owner sees why)", names(&rs)), rs)
            }
            Effect::SetRole(email, role) => {
                let u = c.set_role(email, role).await?;
                Msg::Done(format!("{} is now {}", text::sanitize(&u.email), u.role))
            }
            Effect::DisableUser(email) => {
                let u = c.disable_user(email, None).await?;
                Msg::Done(format!("{} is disabled", text::sanitize(&u.email)))
            }
            Effect::SetPolicy(set) => {
                let what = match set.value {
                    Some(_) => "set",
                    None => "lifted",
                };
                let rule = set.rule;
                c.set_policy(set).await?;
                Msg::Done(format!("rule {rule} {what}"))
            }
            Effect::ChangeGroup(change) => {
                let what = match &change {
                    gpures_proto::GroupChange::Create { .. } => "created",
                    gpures_proto::GroupChange::Delete { .. } => "removed",
                    gpures_proto::GroupChange::AddMember { .. }
                    | gpures_proto::GroupChange::RemoveMember { .. } => "changed",
                };
                let g = c.change_group(change).await?;
                Msg::Done(format!("group {} {what}", text::sanitize(&g.name)))
            }
            Effect::AddResource(new) => {
                let r = c.create_resource(new).await?;
                Msg::Done(format!("added {}", text::sanitize(&r.name)))
            }
            Effect::UpdateResource { name, update } => {
                let all = c.resources(true).await?;
                let Some(r) = all.iter().find(|r| r.name.eq_ignore_ascii_case(&name)) else {
                    return Ok(Msg::Failed(gpures_proto::ApiError::NotFound {
                        what: format!("resource {}", text::sanitize(&name)),
                    }));
                };
                let r = c.update_resource(r.id, update).await?;
                Msg::Done(format!(
                    "{} {}",
                    text::sanitize(&r.name),
                    if r.active { "saved" } else { "disabled" }
                ))
            }
        })
    }

    /// Follows `wait_for_changes`, sending [`Msg::Changed`] for each change
    /// (the delta, or `None`: reload). When the daemon goes away it says so once, connects again
    /// every second until the daemon is back, and then sends
    /// [`Msg::Reconnected`] (the app reloads).
    fn spawn_watch(&self, tx: mpsc::UnboundedSender<Msg>) {
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut since = 0u64;
            loop {
                match client.wait_for_changes(since).await {
                    Ok(changes) => {
                        if changes.version != since {
                            // The first answer only sets where to follow
                            // from: what it would say was just loaded.
                            let first = since == 0;
                            since = changes.version;
                            let delta = changes.delta.map(Box::new);
                            if !first && tx.send(Msg::Changed(delta)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(ClientError::Api(ApiError::Unauthenticated))
                        if client.fall_back_to_peer() => {}
                    Err(ClientError::Api(ApiError::Unauthenticated)) => {
                        let _ = tx.send(Msg::Failed(ApiError::Unauthenticated));
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    Err(ClientError::Api(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
                    Err(e) => {
                        if tx.send(lost(&e)).is_err() {
                            return;
                        }
                        while client.reconnect().await.is_err() {
                            if tx.is_closed() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        // A new daemon counts changes from its start.
                        since = 0;
                        if tx.send(Msg::Reconnected).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// The event loop: draws, then waits for the next thing to happen.
///
/// # Errors
/// Drawing to the terminal or reading its events failed.
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    mut app: App,
    session: Session,
    mut events: impl Stream<Item = std::io::Result<Event>> + Unpin,
    initial: Vec<Effect>,
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    let mut pending: VecDeque<Effect> = initial.into();
    loop {
        for effect in pending.drain(..) {
            if matches!(effect, Effect::Watch) {
                session.spawn_watch(tx.clone());
                continue;
            }
            let (s, tx) = (session.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(s.execute(effect).await);
            });
        }
        let size = terminal.size()?;
        let (origin, cols, rows) = draw::geometry(
            ratatui::layout::Rect::new(0, 0, size.width, size.height),
            app.timeline().name_col,
        );
        if (cols, rows) != (app.timeline().visible_cols, app.timeline().visible_rows) {
            pending.extend(app.apply(Msg::Resized { cols, rows }));
        }
        terminal.draw(|f| draw::draw(&app, f))?;
        if app.should_quit() {
            return Ok(());
        }
        let effects = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind != KeyEventKind::Release => app.key(k),
                Some(Ok(Event::Mouse(m))) => app.mouse(m, origin),
                Some(Ok(_)) => vec![],
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            Some(msg) = rx.recv() => app.apply(msg),
            _ = tick.tick() => app.apply(Msg::Tick(Utc::now())),
        };
        pending.extend(effects);
    }
}

/// Runs an [`App`] against a daemon one key at a time, performing every
/// effect before the next key: what the event loop does, minus the terminal.
pub struct Driver {
    pub app: App,
    pub session: Session,
}

impl Driver {
    /// Performs effects and the effects their results ask for, until none
    /// is left. `Watch` is skipped: a test applies remote changes itself.
    pub async fn settle(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            if matches!(effect, Effect::Watch) {
                continue;
            }
            let msg = self.session.execute(effect).await;
            queue.extend(self.app.apply(msg));
        }
    }

    pub async fn press(&mut self, key: KeyEvent) {
        let effects = self.app.key(key);
        self.settle(effects).await;
    }

    pub async fn press_char(&mut self, c: char) {
        self.press(KeyEvent::from(crossterm::event::KeyCode::Char(c)))
            .await;
    }

    pub async fn press_code(&mut self, code: crossterm::event::KeyCode) {
        self.press(KeyEvent::from(code)).await;
    }

    pub async fn type_text(&mut self, s: &str) {
        for c in s.chars() {
            self.press_char(c).await;
        }
    }

    /// The screen as text at `width`×`height`.
    pub fn render(&mut self, width: u16, height: u16) -> String {
        render(&mut self.app, width, height)
    }
}

/// Draws `app` on a test backend and returns the screen as text.
pub fn render(app: &mut App, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut terminal = Terminal::new(backend).unwrap_or_else(|never| match never {});
    let (_, cols, rows) = draw::geometry(
        ratatui::layout::Rect::new(0, 0, width, height),
        app.timeline().name_col,
    );
    app.apply(Msg::Resized { cols, rows });
    let _ = terminal.draw(|f| draw::draw(app, f));
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let mut skip = 0;
        for x in 0..width {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let sym = buf[(x, y)].symbol();
            out.push_str(sym);
            skip = unicode_width::UnicodeWidthStr::width(sym).saturating_sub(1);
        }
        out.push('\n');
    }
    out
}
