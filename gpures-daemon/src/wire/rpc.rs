//! The tarpc glue: [`Connection`] implements [`Gpures`] for one client
//! connection, whose Unix user ([`Peer`]) was read from `SO_PEERCRED` when it
//! was accepted. Each method checks the hello, authenticates, makes one
//! service call, and converts its error with the one
//! `From<service::Error> for ApiError` below, which logs internal errors with
//! an id the client is shown and never leaks their text.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gpures_proto::{
    AccountChange, AdoptRequest, AnyBooking, AnyBookingRequest, ApiError, Block, BlockReply,
    BlockRequest, Booking, BookingPreview, BookingRequest, ChangeKind, ChangeTarget, Changes,
    Gpures, Group, GroupChange, HelloReply, Holder, JobProcess, LoginReply, Lookup, NewResource,
    Notification, NotificationPage, NotifyChange, NotifySettings, PROTOCOL_VERSION, PageRequest,
    Period, Policy, PolicySet, QueueEntry, QueueRequest, RegisterRequest, Report, ReportRequest,
    Reservation, ReservationChange, ReservationFilter, ReservationPage, Resource, ResourcePage,
    ResourceUpdate, Role, SeriesEdit, SeriesReply, SeriesRequest, SessionInfo, Skipped, SlotOption,
    SlotQuery, StatusCursor, StatusReport, Timeline, Token, UserInfo, UserPage, limits,
};
use tarpc::context::Context;
use tokio::sync::watch;
use uuid::Uuid;

use crate::service::changes::{ChangeLog, Entry};
use crate::service::{self, Actor, Peer, Service};
use crate::store::users::UserChange;
use crate::workers::Shutdown;

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> ApiError {
        use service::Error as E;
        match e {
            E::NotFound(what) => ApiError::NotFound {
                what: what.as_str().to_owned(),
            },
            E::Conflict(holders) => ApiError::Conflict { holders },
            E::Policy(refusal) => ApiError::Policy(refusal),
            E::Blocked(blocks) => ApiError::Blocked { blocks },
            E::Series(refused) => ApiError::Series {
                refused: skipped(refused),
            },
            E::Invalid { field, reason } => ApiError::InvalidArgument { field, reason },
            E::Forbidden => ApiError::PermissionDenied,
            E::Unauthenticated => ApiError::Unauthenticated,
            E::NoAccount(unix_user) => ApiError::NoAccount { unix_user },
            E::Throttled { retry_after } => ApiError::RateLimited {
                retry_after_secs: retry_after.as_secs().max(1),
            },
            E::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                ApiError::Unavailable
            }
            E::Internal(source) => {
                let id = format!("{:08x}", rand::random::<u32>());
                tracing::error!(error_id = %id, error = %source, "internal error");
                ApiError::Internal { id }
            }
        }
    }
}

/// Occurrences of a series that were not booked, each with its reason.
fn skipped(refused: Vec<(Period, service::Error)>) -> Vec<Skipped> {
    refused
        .into_iter()
        .map(|(period, e)| Skipped {
            period,
            why: e.into(),
        })
        .collect()
}

/// State shared by every connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shared {
    pub service: Service,
    /// The newest version of `log`, moved on every committed change any
    /// daemon announces.
    pub changes: watch::Receiver<u64>,
    /// What changed, by version.
    pub log: Arc<ChangeLog>,
    /// Long polls return at once when the daemon shuts down.
    pub shutdown: Shutdown,
}

/// One client connection. tarpc clones it for every request.
#[derive(Clone, Debug)]
pub struct Connection {
    shared: Shared,
    peer: Arc<Peer>,
    greeted: Arc<AtomicBool>,
}

type Reply<T> = Result<T, ApiError>;

impl Connection {
    pub fn new(shared: Shared, peer: Peer) -> Connection {
        Connection {
            shared,
            peer: Arc::new(peer),
            greeted: Arc::new(AtomicBool::new(false)),
        }
    }

    fn service(&self) -> &Service {
        &self.shared.service
    }

    /// Refuses every call before a successful hello: a client of another
    /// protocol version must not have its frames misread.
    fn greeted(&self) -> Reply<()> {
        if self.greeted.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(ApiError::ProtocolMismatch {
                daemon: PROTOCOL_VERSION,
                client: 0,
            })
        }
    }

    /// The actor behind `token` on this connection.
    async fn actor(&self, token: &str) -> Reply<Actor> {
        self.greeted()?;
        Ok(self.service().authenticate(&self.peer, token).await?)
    }

    /// The answer to a `wait_for_changes` that found `version`, with the
    /// log's entries since the client's version when the log has them.
    async fn changes(
        &self,
        actor: &Actor,
        version: u64,
        entries: Option<Vec<Arc<Entry>>>,
    ) -> service::Result<Changes> {
        let delta = match entries {
            Some(entries) => self.service().delta(actor, &entries).await?,
            None => None,
        };
        Ok(Changes { version, delta })
    }
}

impl Gpures for Connection {
    async fn hello(self, _: Context, client_protocol: u32) -> Reply<HelloReply> {
        if client_protocol != PROTOCOL_VERSION {
            return Err(ApiError::ProtocolMismatch {
                daemon: PROTOCOL_VERSION,
                client: client_protocol,
            });
        }
        self.greeted.store(true, Ordering::Release);
        Ok(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            host: self.service().host().to_owned(),
            peer_unix_user: self.peer.unix_user.clone(),
            peer_login: self.service().peer_login(),
        })
    }

    async fn register(self, _: Context, req: RegisterRequest) -> Reply<UserInfo> {
        self.greeted()?;
        Ok(self.service().register(&self.peer, req).await?)
    }

    async fn login(self, _: Context, email: String, password: String) -> Reply<LoginReply> {
        self.greeted()?;
        Ok(self.service().login(&self.peer, email, password).await?)
    }

    async fn whoami(self, _: Context, token: Token) -> Reply<UserInfo> {
        let actor = self.actor(&token).await?;
        actor.user().cloned().ok_or(ApiError::Unauthenticated)
    }

    async fn find_slots(
        self,
        _: Context,
        token: Token,
        query: SlotQuery,
    ) -> Reply<Vec<SlotOption>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().find_slots(&actor, query).await?)
    }

    async fn book_any(
        self,
        _: Context,
        token: Token,
        request: AnyBookingRequest,
    ) -> Reply<AnyBooking> {
        let actor = self.actor(&token).await?;
        Ok(self.service().book_any(&actor, request).await?)
    }

    async fn enqueue(self, _: Context, token: Token, request: QueueRequest) -> Reply<QueueEntry> {
        let actor = self.actor(&token).await?;
        Ok(self.service().enqueue(&actor, request).await?)
    }

    async fn queue(self, _: Context, token: Token) -> Reply<Vec<QueueEntry>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().queue(&actor).await?)
    }

    async fn cancel_queued(self, _: Context, token: Token, id: Uuid) -> Reply<QueueEntry> {
        let actor = self.actor(&token).await?;
        Ok(self.service().cancel_queued(&actor, id).await?)
    }

    async fn change_with_reason(
        self,
        _: Context,
        token: Token,
        target: ChangeTarget,
        kind: ChangeKind,
        reason: String,
    ) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .change_with_reason(&actor, target, kind, &reason)
            .await?)
    }

    async fn attach_job(
        self,
        _: Context,
        token: Token,
        booking_id: Uuid,
        processes: Vec<JobProcess>,
    ) -> Reply<()> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .attach_job(&actor, &self.peer, booking_id, processes)
            .await?)
    }

    async fn logout(self, _: Context, token: Token, session: Option<Uuid>) -> Reply<()> {
        let actor = self.actor(&token).await?;
        let current = self.service().session_of(&token).await;
        Ok(self.service().end_session(&actor, current, session).await?)
    }

    async fn sessions(self, _: Context, token: Token) -> Reply<Vec<SessionInfo>> {
        let actor = self.actor(&token).await?;
        let current = self.service().session_of(&token).await;
        Ok(self.service().sessions(&actor, current).await?)
    }

    async fn change_password(
        self,
        _: Context,
        token: Token,
        old: String,
        new: String,
    ) -> Reply<()> {
        let actor = self.actor(&token).await?;
        let current = self.service().session_of(&token).await;
        Ok(self
            .service()
            .change_password(&actor, &self.peer, current, old, new)
            .await?)
    }

    async fn redeem_reset_code(self, _: Context, code: String, new: String) -> Reply<UserInfo> {
        self.greeted()?;
        Ok(self
            .service()
            .redeem_reset_code(&self.peer, code, new)
            .await?)
    }

    async fn update_account(
        self,
        _: Context,
        token: Token,
        change: AccountChange,
    ) -> Reply<UserInfo> {
        let actor = self.actor(&token).await?;
        Ok(self.service().update_account(&actor, change).await?)
    }

    async fn logout_everywhere(self, _: Context, token: Token) -> Reply<()> {
        let actor = self.actor(&token).await?;
        Ok(self.service().logout_everywhere(&actor).await?)
    }

    async fn list_resources(
        self,
        _: Context,
        token: Token,
        include_inactive: bool,
        after: Option<StatusCursor>,
    ) -> Reply<ResourcePage> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .resources_page(&actor, include_inactive, after.as_ref())
            .await?)
    }

    async fn create_resource(
        self,
        _: Context,
        token: Token,
        resource: NewResource,
    ) -> Reply<Resource> {
        let actor = self.actor(&token).await?;
        Ok(self.service().create_resource(&actor, resource).await?)
    }

    async fn update_resource(
        self,
        _: Context,
        token: Token,
        id: i64,
        update: ResourceUpdate,
    ) -> Reply<Resource> {
        let actor = self.actor(&token).await?;
        Ok(self.service().update_resource(&actor, id, update).await?)
    }

    async fn timeline(
        self,
        _: Context,
        token: Token,
        window: Period,
        page: PageRequest,
    ) -> Reply<Timeline> {
        let actor = self.actor(&token).await?;
        Ok(self.service().timeline(&actor, window, &page).await?)
    }

    async fn list_reservations(
        self,
        _: Context,
        token: Token,
        filter: ReservationFilter,
        page: PageRequest,
    ) -> Reply<ReservationPage> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .list_reservations(&actor, &filter, &page)
            .await?)
    }

    async fn find_reservations(
        self,
        _: Context,
        token: Token,
        lookup: Lookup,
    ) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().find_reservations(&actor, &lookup).await?)
    }

    async fn create_booking(
        self,
        _: Context,
        token: Token,
        request: BookingRequest,
    ) -> Reply<Booking> {
        let actor = self.actor(&token).await?;
        Ok(self.service().create_booking(&actor, request).await?)
    }

    async fn update_reservation(
        self,
        _: Context,
        token: Token,
        id: Uuid,
        change: ReservationChange,
    ) -> Reply<Reservation> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .update_reservation(&actor, id, change)
            .await?)
    }

    async fn cancel_reservation(self, _: Context, token: Token, id: Uuid) -> Reply<Reservation> {
        let actor = self.actor(&token).await?;
        Ok(self.service().cancel_reservation(&actor, id).await?)
    }

    async fn release_now(self, _: Context, token: Token, id: Uuid) -> Reply<Reservation> {
        let actor = self.actor(&token).await?;
        Ok(self.service().release_now(&actor, id).await?)
    }

    async fn update_booking(
        self,
        _: Context,
        token: Token,
        booking_id: Uuid,
        change: ReservationChange,
    ) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .update_booking(&actor, booking_id, change)
            .await?)
    }

    async fn cancel_booking(
        self,
        _: Context,
        token: Token,
        booking_id: Uuid,
    ) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().cancel_booking(&actor, booking_id).await?)
    }

    async fn release_booking(
        self,
        _: Context,
        token: Token,
        booking_id: Uuid,
    ) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().release_booking(&actor, booking_id).await?)
    }

    async fn check_availability(
        self,
        _: Context,
        token: Token,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    ) -> Reply<Vec<Holder>> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .check_availability(&actor, &resources, period, ignore)
            .await?)
    }

    async fn status(
        self,
        _: Context,
        token: Token,
        after: Option<StatusCursor>,
    ) -> Reply<StatusReport> {
        let actor = self.actor(&token).await?;
        Ok(self.service().status(&actor, after.as_ref()).await?)
    }

    async fn wait_for_changes(self, ctx: Context, token: Token, since: u64) -> Reply<Changes> {
        let actor = self.actor(&token).await?;
        let mut changes = self.shared.changes.clone();
        // Seen before the log is read: a change appended after the read
        // wakes the wait below.
        changes.borrow_and_update();
        let (version, entries) = self.shared.log.since(since);
        if version != since {
            return Ok(self.changes(&actor, version, entries).await?);
        }
        // Answer before the client's deadline, and never hold a call longer
        // than the documented maximum.
        let until_deadline = ctx
            .deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default()
            .saturating_sub(Duration::from_millis(500));
        let budget = until_deadline.min(Duration::from_secs(limits::LONG_POLL_MAX_SECS));
        let mut shutdown = self.shared.shutdown.clone();
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(budget) => {}
            _ = shutdown.requested() => {}
        }
        let (version, entries) = self.shared.log.since(since);
        Ok(self.changes(&actor, version, entries).await?)
    }

    async fn list_users(
        self,
        _: Context,
        token: Token,
        after: Option<i64>,
        limit: u32,
    ) -> Reply<UserPage> {
        let actor = self.actor(&token).await?;
        Ok(self.service().list_users(&actor, after, limit).await?)
    }

    async fn set_role(
        self,
        _: Context,
        token: Token,
        email: String,
        role: Role,
    ) -> Reply<UserInfo> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .change_user(&actor, &email, UserChange::Role(role))
            .await?)
    }

    async fn disable_user(
        self,
        _: Context,
        token: Token,
        email: String,
        cancel_future: bool,
        reason: String,
    ) -> Reply<UserInfo> {
        let actor = self.actor(&token).await?;
        let change = UserChange::Disable(cancel_future.then_some(reason));
        Ok(self.service().change_user(&actor, &email, change).await?)
    }

    async fn notifications(
        self,
        _: Context,
        token: Token,
        unread_only: bool,
        limit: u32,
    ) -> Reply<NotificationPage> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .notifications(&actor, unread_only, limit)
            .await?)
    }

    async fn mark_read(self, _: Context, token: Token, up_to: i64) -> Reply<u32> {
        let actor = self.actor(&token).await?;
        Ok(self.service().mark_read(&actor, up_to).await?)
    }

    async fn notify_settings(
        self,
        _: Context,
        token: Token,
        change: Option<NotifyChange>,
    ) -> Reply<NotifySettings> {
        let actor = self.actor(&token).await?;
        Ok(self.service().notify_settings(&actor, change).await?)
    }

    async fn test_notification(self, _: Context, token: Token) -> Reply<Notification> {
        let actor = self.actor(&token).await?;
        Ok(self.service().test_notification(&actor).await?)
    }

    async fn keep(self, _: Context, token: Token, booking_id: Uuid) -> Reply<DateTime<Utc>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().keep(&actor, booking_id).await?)
    }

    async fn adopt(self, _: Context, token: Token, request: AdoptRequest) -> Reply<Booking> {
        let actor = self.actor(&token).await?;
        Ok(self.service().adopt(&actor, &self.peer, request).await?)
    }

    async fn preview_booking(
        self,
        _: Context,
        token: Token,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    ) -> Reply<BookingPreview> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .preview_booking(&actor, &resources, period, ignore)
            .await?)
    }

    async fn request_approval(
        self,
        _: Context,
        token: Token,
        request: BookingRequest,
        reason: String,
        decide_by: Option<DateTime<Utc>>,
    ) -> Reply<Booking> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .request_approval(&actor, request, &reason, decide_by)
            .await?)
    }

    async fn decide_approval(
        self,
        _: Context,
        token: Token,
        booking_id: Uuid,
        approve: bool,
        reason: Option<String>,
    ) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .decide_approval(&actor, booking_id, approve, reason.as_deref())
            .await?)
    }

    async fn pending_approvals(self, _: Context, token: Token) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().pending_approvals(&actor).await?)
    }

    async fn book_series(
        self,
        _: Context,
        token: Token,
        request: SeriesRequest,
    ) -> Reply<SeriesReply> {
        let actor = self.actor(&token).await?;
        let made = self.service().book_series(&actor, request).await?;
        Ok(SeriesReply {
            series_id: made.series_id,
            booked: made.booked,
            skipped: skipped(made.skipped),
        })
    }

    async fn cancel_series(
        self,
        _: Context,
        token: Token,
        series_id: Uuid,
        from: DateTime<Utc>,
    ) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .cancel_series(&actor, series_id, from, None)
            .await?)
    }

    async fn edit_series(
        self,
        _: Context,
        token: Token,
        edit: SeriesEdit,
    ) -> Reply<Vec<Reservation>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().edit_series(&actor, edit).await?)
    }

    async fn block(self, _: Context, token: Token, request: BlockRequest) -> Reply<BlockReply> {
        let actor = self.actor(&token).await?;
        Ok(self.service().block(&actor, request).await?)
    }

    async fn unblock(self, _: Context, token: Token, block_id: Uuid) -> Reply<Vec<Block>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().unblock(&actor, block_id).await?)
    }

    async fn blocks(self, _: Context, token: Token, window: Period) -> Reply<Vec<Block>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().blocks(&actor, window).await?)
    }

    async fn policies(self, _: Context, token: Token) -> Reply<Vec<Policy>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().policies(&actor).await?)
    }

    async fn set_policy(self, _: Context, token: Token, set: PolicySet) -> Reply<Vec<Policy>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().set_policy(&actor, set).await?)
    }

    async fn groups(self, _: Context, token: Token) -> Reply<Vec<Group>> {
        let actor = self.actor(&token).await?;
        Ok(self.service().groups(&actor).await?)
    }

    async fn change_group(self, _: Context, token: Token, change: GroupChange) -> Reply<Group> {
        let actor = self.actor(&token).await?;
        Ok(self.service().change_group(&actor, change).await?)
    }

    async fn book_override(
        self,
        _: Context,
        token: Token,
        request: BookingRequest,
        reason: String,
    ) -> Reply<Booking> {
        let actor = self.actor(&token).await?;
        Ok(self
            .service()
            .book_override(&actor, request, &reason)
            .await?)
    }

    async fn report(self, _: Context, token: Token, request: ReportRequest) -> Reply<Report> {
        let actor = self.actor(&token).await?;
        Ok(self.service().report(&actor, request).await?)
    }
}
