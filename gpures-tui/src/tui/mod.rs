//! The terminal UI. [`app`] holds state and rules, [`keys`] the key table,
//! [`draw`] the rendering, [`term`] the real terminal. This module connects
//! them: [`Session`] performs an app's [`Effect`]s against the daemon and
//! turns the answers into [`Msg`]s; [`run`] is the event loop, generic over
//! the ratatui backend; [`Driver`] runs the same pieces step by step for tests.
//!
//! The loop sleeps until a key, a mouse event, a resize, a daemon answer, a
//! live change (`wait_for_changes`) or the 30-second clock tick arrives, and
//! redraws only then: no busy loop.

pub mod app;
pub mod draw;
pub mod keys;
pub mod term;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use crossterm::event::{Event, KeyEvent, KeyEventKind};
use futures::{Stream, StreamExt};
use gpures_proto::{ApiError, GpuresClient, Period, ReservationFilter, text};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tarpc::client::RpcError;
use tarpc::context;
use tokio::sync::mpsc;

use crate::conn::{SavedSession, TokenStore};
use app::{App, Effect, Msg, Snapshot};

/// The connection and the current token, shared by the loop's tasks.
#[derive(Clone)]
pub struct Session {
    client: GpuresClient,
    token: Arc<Mutex<Option<String>>>,
    store: Option<TokenStore>,
}

/// Flattens a call's two layers of failure.
fn call<T>(r: Result<Result<T, ApiError>, RpcError>) -> Result<T, Result<ApiError, RpcError>> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Ok(e)),
        Err(e) => Err(Err(e)),
    }
}

fn lost(e: RpcError) -> Msg {
    Msg::Disconnected(format!(
        "lost the connection to the daemon ({e}); restart gpures, or check `systemctl status gpures-daemon`"
    ))
}

impl Session {
    /// A session; `store` is where a new login is saved (`None` keeps it in memory).
    pub fn new(client: GpuresClient, token: Option<String>, store: Option<TokenStore>) -> Session {
        Session {
            client,
            token: Arc::new(Mutex::new(token)),
            store,
        }
    }

    fn token(&self) -> Option<String> {
        self.token.lock().ok().and_then(|t| t.clone())
    }

    /// Performs one effect and returns what came of it.
    pub async fn execute(&self, effect: Effect) -> Msg {
        match self.try_execute(effect).await {
            Ok(msg) => msg,
            Err(Ok(api)) => Msg::Failed(api),
            Err(Err(rpc)) => lost(rpc),
        }
    }

    async fn try_execute(&self, effect: Effect) -> Result<Msg, Result<ApiError, RpcError>> {
        let c = &self.client;
        let ctx = context::current;
        if let Effect::Login { email, password } = &effect {
            let login = call(c.login(ctx(), email.clone(), password.clone()).await)?;
            if let Ok(mut t) = self.token.lock() {
                *t = Some(login.token.clone());
            }
            if let Some(store) = &self.store {
                let _ = store.save(&SavedSession {
                    token: login.token.clone(),
                    email: login.user.email.clone(),
                    expires_at: login.expires_at,
                });
            }
            return Ok(Msg::LoggedIn(Box::new(login)));
        }
        if let Effect::Register(req) = &effect {
            let (email, password) = (req.email.clone(), req.password.clone());
            call(c.register(ctx(), req.clone()).await)?;
            return Ok(Msg::Registered { email, password });
        }
        let token = self.token().ok_or(Ok(ApiError::Unauthenticated))?;
        Ok(match effect {
            Effect::Login { .. } | Effect::Register(_) | Effect::Watch => Msg::Tick(Utc::now()),
            Effect::Refresh { window } => {
                let me = call(c.whoami(ctx(), token.clone()).await)?;
                let now = Utc::now();
                let mine_filter = ReservationFilter {
                    user_email: Some(me.email.clone()),
                    window: Some(Period {
                        start: now,
                        end: now + TimeDelta::days(60),
                    }),
                    ..ReservationFilter::default()
                };
                let admin = me.role == gpures_proto::Role::Admin;
                let (timeline, mine, status, users) = futures::join!(
                    c.timeline(ctx(), token.clone(), window),
                    c.list_reservations(ctx(), token.clone(), mine_filter),
                    c.status(ctx(), token.clone()),
                    async {
                        if admin {
                            Some(c.list_users(ctx(), token.clone()).await)
                        } else {
                            None
                        }
                    }
                );
                let timeline = call(timeline)?;
                let users = match users {
                    Some(u) => call(u)?,
                    None => Vec::new(),
                };
                Msg::Loaded(Box::new(Snapshot {
                    me: Some(me),
                    resources: timeline.resources,
                    reservations: timeline.reservations,
                    window: Some(timeline.window),
                    mine: call(mine)?,
                    status: Some(call(status)?),
                    users,
                }))
            }
            Effect::Book(req) => {
                let b = call(c.create_booking(ctx(), token, req).await)?;
                let names: Vec<String> = b
                    .reservations
                    .iter()
                    .map(|r| text::sanitize(&r.resource_name))
                    .collect();
                Msg::Done(format!("booked {}", names.join(", ")))
            }
            Effect::Update(id, change) => {
                let r = call(c.update_reservation(ctx(), token, id, change).await)?;
                Msg::Done(format!("changed {}", text::sanitize(&r.resource_name)))
            }
            Effect::Cancel(id) => {
                let r = call(c.cancel_reservation(ctx(), token, id).await)?;
                Msg::Done(format!("cancelled {}", text::sanitize(&r.resource_name)))
            }
            Effect::Release(id) => {
                let r = call(c.release_now(ctx(), token, id).await)?;
                Msg::Done(format!("released {}", text::sanitize(&r.resource_name)))
            }
            Effect::Check {
                seq,
                resources,
                period,
                ignore,
            } => Msg::Checked {
                seq,
                holders: call(
                    c.check_availability(ctx(), token, resources, period, ignore)
                        .await,
                )?,
            },
            Effect::SetRole(email, role) => {
                let u = call(c.set_role(ctx(), token, email, role).await)?;
                Msg::Done(format!("{} is now {}", text::sanitize(&u.email), u.role))
            }
            Effect::DisableUser(email) => {
                let u = call(c.disable_user(ctx(), token, email).await)?;
                Msg::Done(format!("{} is disabled", text::sanitize(&u.email)))
            }
        })
    }

    /// Follows `wait_for_changes` until the connection ends, sending
    /// [`Msg::RemoteChange`] for each change.
    fn spawn_watch(&self, tx: mpsc::UnboundedSender<Msg>) {
        let session = self.clone();
        tokio::spawn(async move {
            let mut since = 0u64;
            loop {
                let Some(token) = session.token() else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let mut ctx = context::current();
                ctx.deadline = Instant::now()
                    + Duration::from_secs(gpures_proto::limits::LONG_POLL_MAX_SECS + 10);
                match session.client.wait_for_changes(ctx, token, since).await {
                    Ok(Ok(value)) => {
                        if value != since {
                            let first = since == 0;
                            since = value;
                            if !first && tx.send(Msg::RemoteChange).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(Err(ApiError::Unauthenticated)) => {
                        let _ = tx.send(Msg::Failed(ApiError::Unauthenticated));
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    Ok(Err(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
                    Err(e) => {
                        let _ = tx.send(lost(e));
                        return;
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
        let (origin, cols) =
            draw::geometry(ratatui::layout::Rect::new(0, 0, size.width, size.height));
        app.visible_cols = cols.max(1);
        app.cursor_col = app.cursor_col.min(app.visible_cols - 1);
        terminal.draw(|f| draw::draw(&app, f))?;
        if app.quit {
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
    let (_, cols) = draw::geometry(ratatui::layout::Rect::new(0, 0, width, height));
    app.visible_cols = cols.max(1);
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
