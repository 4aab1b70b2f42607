//! The one way the CLI and the TUI talk to the daemon: [`Client`] holds the
//! connection (hello done) and the session token, has one typed method per
//! call, and fails with one error type ([`ClientError`]). Booking has the one
//! retry policy ([`Client::book`]): a lost reply is retried with the same
//! request id, which the daemon answers with the booking it already made.
//! After a daemon restart [`Client::reconnect`] gives every clone a new
//! connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gpures_proto::{
    AccountChange, AdoptRequest, AnyBooking, AnyBookingRequest, ApiError, Block, BlockReply,
    BlockRequest, Booking, BookingPreview, BookingRequest, ChangeKind, ChangeTarget, GpuresClient,
    Group, GroupChange, HelloReply, Holder, JobProcess, LoginReply, Lookup, NewResource,
    Notification, NotificationPage, NotifyChange, NotifySettings, PageRequest, Period, Policy,
    PolicySet, QueueEntry, QueueRequest, RegisterRequest, Report, ReportRequest, Reservation,
    ReservationChange, ReservationFilter, ReservationPage, Resource, Role, SeriesEdit, SeriesReply,
    SeriesRequest, SessionInfo, SlotOption, SlotQuery, StatusReport, Timeline, UserInfo, limits,
};
use tarpc::client::RpcError;
use tarpc::context;
use thiserror::Error;
use uuid::Uuid;

use crate::conn::{self, ConnError};

/// How often a booking whose reply was lost is sent again.
const BOOK_ATTEMPTS: u32 = 3;
/// The pause before sending a booking again.
const BOOK_RETRY_PAUSE: Duration = Duration::from_millis(300);

/// Why a call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The daemon could not be reached, or speaks another protocol.
    #[error(transparent)]
    Connect(#[from] ConnError),
    /// The connection broke during the call.
    #[error("lost the connection to the daemon ({0})")]
    Lost(String),
    /// The daemon refused.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<RpcError> for ClientError {
    fn from(e: RpcError) -> Self {
        ClientError::Lost(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A connection to the daemon and the token of whoever uses it. Cheap to
/// clone; clones share the token and the connection, and
/// [`reconnect`](Client::reconnect) replaces the connection for all of them.
#[derive(Clone)]
pub struct Client {
    path: PathBuf,
    rpc: Arc<RwLock<GpuresClient>>,
    hello: HelloReply,
    token: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.hello.host)
            .finish_non_exhaustive()
    }
}

/// Flattens a call's two layers of failure.
fn flat<T>(r: std::result::Result<std::result::Result<T, ApiError>, RpcError>) -> Result<T> {
    Ok(r??)
}

impl Client {
    /// Connects to `path` and says hello.
    ///
    /// # Errors
    /// [`ConnError`] with the reason in words.
    pub async fn connect(path: &Path) -> std::result::Result<Client, ConnError> {
        let (rpc, hello) = conn::connect(path).await?;
        Ok(Client {
            path: path.to_owned(),
            rpc: Arc::new(RwLock::new(rpc)),
            hello,
            token: Arc::new(Mutex::new(None)),
        })
    }

    /// Connects again (the daemon restarted, for an upgrade) and uses the
    /// new connection from the next call on; the token is kept, since the
    /// daemon's sessions outlive a restart.
    ///
    /// # Errors
    /// [`ConnError`]: the daemon is not back yet, or speaks another protocol.
    pub async fn reconnect(&self) -> std::result::Result<(), ConnError> {
        let (rpc, _) = conn::connect(&self.path).await?;
        if let Ok(mut current) = self.rpc.write() {
            *current = rpc;
        }
        Ok(())
    }

    /// The connection in use now.
    fn rpc(&self) -> GpuresClient {
        match self.rpc.read() {
            Ok(rpc) => rpc.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// What the daemon said on hello (its host, our Unix user).
    pub fn hello(&self) -> &HelloReply {
        &self.hello
    }

    /// Uses `token` for the calls that need one (`None` forgets it).
    pub fn set_token(&self, token: Option<String>) {
        if let Ok(mut t) = self.token.lock() {
            *t = token;
        }
    }

    /// The token in use, if any.
    pub fn token(&self) -> Option<String> {
        self.token.lock().ok().and_then(|t| t.clone())
    }

    /// The token to send: the session's, or empty for peer sign-in (the
    /// daemon signs in the Unix user at this end of the socket).
    fn need_token(&self) -> Result<String> {
        Ok(self.token().unwrap_or_default())
    }

    /// Whether a call refused with `Unauthenticated` may be made again by
    /// peer sign-in: a saved token was used (it expired or was revoked) and
    /// the daemon signs in by Unix user. Forgets the token when so.
    pub fn fall_back_to_peer(&self) -> bool {
        if self.hello.peer_login && self.token().is_some() {
            self.set_token(None);
            true
        } else {
            false
        }
    }

    /// Creates an account bound to this Unix user.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn register(&self, req: RegisterRequest) -> Result<UserInfo> {
        flat(self.rpc().register(context::current(), req).await)
    }

    /// Logs in; the token is used from now on.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn login(&self, email: String, password: String) -> Result<LoginReply> {
        let login = flat(self.rpc().login(context::current(), email, password).await)?;
        self.set_token(Some(login.token.clone()));
        Ok(login)
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn whoami(&self) -> Result<UserInfo> {
        let token = self.need_token()?;
        flat(self.rpc().whoami(context::current(), token).await)
    }

    /// Ends the session of this token (`None`) or the one named.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn logout(&self, session: Option<Uuid>) -> Result<()> {
        let token = self.need_token()?;
        flat(self.rpc().logout(context::current(), token, session).await)?;
        if session.is_none() {
            self.set_token(None);
        }
        Ok(())
    }

    /// The account's live sessions.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        let token = self.need_token()?;
        flat(self.rpc().sessions(context::current(), token).await)
    }

    /// Sets a new password (`old` is ignored when none is set).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn change_password(&self, old: String, new: String) -> Result<()> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .change_password(context::current(), token, old, new)
                .await,
        )
    }

    /// Sets a new password with a one-time code from the host admin.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn redeem_reset_code(&self, code: String, new: String) -> Result<UserInfo> {
        flat(
            self.rpc()
                .redeem_reset_code(context::current(), code, new)
                .await,
        )
    }

    /// Changes the display name or the email.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn update_account(&self, change: AccountChange) -> Result<UserInfo> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .update_account(context::current(), token, change)
                .await,
        )
    }

    /// Revokes every token of the account, this one included.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn logout_everywhere(&self) -> Result<()> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .logout_everywhere(context::current(), token)
                .await,
        )?;
        self.set_token(None);
        Ok(())
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn resources(&self, include_inactive: bool) -> Result<Vec<Resource>> {
        let token = self.need_token()?;
        let mut resources = Vec::new();
        let mut after = None;
        loop {
            let page = flat(
                self.rpc()
                    .list_resources(
                        context::current(),
                        token.clone(),
                        include_inactive,
                        after.clone(),
                    )
                    .await,
            )?;
            resources.extend(page.resources);
            // A daemon that does not move on would loop forever.
            if page.next.is_none() || page.next == after {
                return Ok(resources);
            }
            after = page.next;
        }
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn create_resource(&self, new: NewResource) -> Result<Resource> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .create_resource(context::current(), token, new)
                .await,
        )
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn update_resource(
        &self,
        id: i64,
        update: gpures_proto::ResourceUpdate,
    ) -> Result<Resource> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .update_resource(context::current(), token, id, update)
                .await,
        )
    }

    /// The timeline of `window`, every page of it.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn timeline(&self, window: Period) -> Result<Timeline> {
        let token = self.need_token()?;
        let mut page = PageRequest {
            after: None,
            limit: limits::PAGE_MAX,
        };
        let mut timeline = flat(
            self.rpc()
                .timeline(context::current(), token.clone(), window, page.clone())
                .await,
        )?;
        // Pages after the first carry only reservations, and may be larger.
        page.limit = limits::TIMELINE_PAGE_MAX;
        while let Some(after) = timeline.next.take() {
            page.after = Some(after);
            let more = flat(
                self.rpc()
                    .timeline(context::current(), token.clone(), window, page.clone())
                    .await,
            )?;
            timeline.reservations.extend(more.reservations);
            timeline.next = more.next;
        }
        Ok(timeline)
    }

    /// One page of the reservations matching `filter`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn reservations_page(
        &self,
        filter: ReservationFilter,
        page: PageRequest,
    ) -> Result<ReservationPage> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .list_reservations(context::current(), token, filter, page)
                .await,
        )
    }

    /// Every reservation matching `filter`, a page at a time.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn reservations(&self, filter: ReservationFilter) -> Result<Vec<Reservation>> {
        let mut all = Vec::new();
        let mut page = PageRequest {
            after: None,
            limit: limits::PAGE_MAX,
        };
        loop {
            let got = self.reservations_page(filter.clone(), page.clone()).await?;
            all.extend(got.reservations);
            match got.next {
                Some(next) => page.after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Reservations by id, id prefix or booking id, without listing history.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn find(&self, lookup: Lookup) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .find_reservations(context::current(), token, lookup)
                .await,
        )
    }

    /// Moves, extends or re-notes a whole booking.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn update_booking(
        &self,
        booking_id: Uuid,
        change: ReservationChange,
    ) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .update_booking(context::current(), token, booking_id, change)
                .await,
        )
    }

    /// Cancels a whole booking.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn cancel_booking(&self, booking_id: Uuid) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .cancel_booking(context::current(), token, booking_id)
                .await,
        )
    }

    /// Releases a whole booking now.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn release_booking(&self, booking_id: Uuid) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .release_booking(context::current(), token, booking_id)
                .await,
        )
    }

    /// Books, all or nothing. A reply lost on the way is asked for again
    /// with the same request id (up to [`BOOK_ATTEMPTS`] times): the daemon
    /// returns the booking it made rather than a conflict with it.
    ///
    /// # Errors
    /// [`ClientError`]; `Lost` only after every attempt.
    pub async fn book(&self, req: BookingRequest) -> Result<Booking> {
        let token = self.need_token()?;
        self.resending(|rpc| {
            let (token, req) = (token.clone(), req.clone());
            async move { rpc.create_booking(context::current(), token, req).await }
        })
        .await
    }

    /// Books any N GPUs of one host at the earliest start; a lost reply is
    /// asked for again with the same request id, as [`Client::book`] does.
    ///
    /// # Errors
    /// [`ClientError`]; `Lost` only after every attempt.
    pub async fn book_any(&self, req: AnyBookingRequest) -> Result<AnyBooking> {
        let token = self.need_token()?;
        self.resending(|rpc| {
            let (token, req) = (token.clone(), req.clone());
            async move { rpc.book_any(context::current(), token, req).await }
        })
        .await
    }

    /// The earliest starts per host at which the GPUs asked for are free.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn find_slots(&self, query: SlotQuery) -> Result<Vec<SlotOption>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .find_slots(context::current(), token, query)
                .await,
        )
    }

    /// Waits in the queue; a lost reply is asked for again with the same
    /// request id.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn enqueue(&self, req: QueueRequest) -> Result<QueueEntry> {
        let token = self.need_token()?;
        self.resending(|rpc| {
            let (token, req) = (token.clone(), req.clone());
            async move { rpc.enqueue(context::current(), token, req).await }
        })
        .await
    }

    /// The waiting requests and the caller's recent ones.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn queue(&self) -> Result<Vec<QueueEntry>> {
        let token = self.need_token()?;
        flat(self.rpc().queue(context::current(), token).await)
    }

    /// Leaves the queue.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn cancel_queued(&self, id: Uuid) -> Result<QueueEntry> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .cancel_queued(context::current(), token, id)
                .await,
        )
    }

    /// Edits, cancels or releases with a reason its owner is shown.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn change_with_reason(
        &self,
        target: ChangeTarget,
        kind: ChangeKind,
        reason: String,
    ) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .change_with_reason(context::current(), token, target, kind, reason)
                .await,
        )
    }

    /// Ties a running booking to this client's processes.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn attach_job(&self, booking_id: Uuid, processes: Vec<JobProcess>) -> Result<()> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .attach_job(context::current(), token, booking_id, processes)
                .await,
        )
    }

    /// The newest notifications (only unread ones when asked).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn notifications(&self, unread_only: bool, limit: u32) -> Result<NotificationPage> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .notifications(context::current(), token, unread_only, limit)
                .await,
        )
    }

    /// Marks notifications up to `up_to` read.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn mark_read(&self, up_to: i64) -> Result<u32> {
        let token = self.need_token()?;
        flat(self.rpc().mark_read(context::current(), token, up_to).await)
    }

    /// Where notifications go, after `change`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn notify_settings(&self, change: Option<NotifyChange>) -> Result<NotifySettings> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .notify_settings(context::current(), token, change)
                .await,
        )
    }

    /// Sends a test notification to every channel of the caller.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn test_notification(&self) -> Result<Notification> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .test_notification(context::current(), token)
                .await,
        )
    }

    /// Protects a booking from idle reclaim for a while.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn keep(&self, booking_id: Uuid) -> Result<DateTime<Utc>> {
        let token = self.need_token()?;
        flat(self.rpc().keep(context::current(), token, booking_id).await)
    }

    /// Books past lab policy (admins), with a reason for the audit log.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn book_override(&self, req: BookingRequest, reason: String) -> Result<Booking> {
        let token = self.need_token()?;
        self.resending(|rpc| {
            let (token, req, reason) = (token.clone(), req.clone(), reason.clone());
            async move {
                rpc.book_override(context::current(), token, req, reason)
                    .await
            }
        })
        .await
    }

    /// Books past lab policy as a request for an admin's approval.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn request_approval(
        &self,
        req: BookingRequest,
        reason: String,
        decide_by: Option<DateTime<Utc>>,
    ) -> Result<Booking> {
        let token = self.need_token()?;
        self.resending(|rpc| {
            let (token, req, reason) = (token.clone(), req.clone(), reason.clone());
            async move {
                rpc.request_approval(context::current(), token, req, reason, decide_by)
                    .await
            }
        })
        .await
    }

    /// Approves or denies a pending booking (admins).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn decide_approval(
        &self,
        booking_id: Uuid,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .decide_approval(context::current(), token, booking_id, approve, reason)
                .await,
        )
    }

    /// What waits for approval (admins: all; members: theirs).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn pending_approvals(&self) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .pending_approvals(context::current(), token)
                .await,
        )
    }

    /// Books a recurring series; a lost reply is asked for again with the
    /// same request id, which returns what was made.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn book_series(&self, req: SeriesRequest) -> Result<SeriesReply> {
        let token = self.need_token()?;
        self.resending(|rpc| {
            let (token, req) = (token.clone(), req.clone());
            async move { rpc.book_series(context::current(), token, req).await }
        })
        .await
    }

    /// Cancels the occurrences of a series from `from` on.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn cancel_series(
        &self,
        series_id: Uuid,
        from: DateTime<Utc>,
    ) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .cancel_series(context::current(), token, series_id, from)
                .await,
        )
    }

    /// Edits an occurrence of a series and every later one.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn edit_series(&self, edit: SeriesEdit) -> Result<Vec<Reservation>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .edit_series(context::current(), token, edit)
                .await,
        )
    }

    /// Blocks resources for a period (admins).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn block(&self, req: BlockRequest) -> Result<BlockReply> {
        let token = self.need_token()?;
        flat(self.rpc().block(context::current(), token, req).await)
    }

    /// Lifts a block (admins).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn unblock(&self, block_id: Uuid) -> Result<Vec<Block>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .unblock(context::current(), token, block_id)
                .await,
        )
    }

    /// The blocks overlapping `window`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn blocks(&self, window: Period) -> Result<Vec<Block>> {
        let token = self.need_token()?;
        flat(self.rpc().blocks(context::current(), token, window).await)
    }

    /// Usage figures of a window.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn report(&self, request: ReportRequest) -> Result<Report> {
        let token = self.need_token()?;
        flat(self.rpc().report(context::current(), token, request).await)
    }

    /// Every rule of lab policy in force.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn policies(&self) -> Result<Vec<Policy>> {
        let token = self.need_token()?;
        flat(self.rpc().policies(context::current(), token).await)
    }

    /// Sets or removes a rule (admins); every rule in force after it.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn set_policy(&self, set: PolicySet) -> Result<Vec<Policy>> {
        let token = self.need_token()?;
        flat(self.rpc().set_policy(context::current(), token, set).await)
    }

    /// The groups and their members.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn groups(&self) -> Result<Vec<Group>> {
        let token = self.need_token()?;
        flat(self.rpc().groups(context::current(), token).await)
    }

    /// Changes the groups (admins).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn change_group(&self, change: GroupChange) -> Result<Group> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .change_group(context::current(), token, change)
                .await,
        )
    }

    /// Ties running processes to a booking (a new one by default).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn adopt(&self, req: AdoptRequest) -> Result<Booking> {
        let token = self.need_token()?;
        self.resending(|rpc| {
            let (token, req) = (token.clone(), req.clone());
            async move { rpc.adopt(context::current(), token, req).await }
        })
        .await
    }

    /// Makes a call that carries a request id up to [`BOOK_ATTEMPTS`] times
    /// while its reply is lost, on a new connection if the daemon is there.
    async fn resending<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(GpuresClient) -> Fut,
        Fut: Future<Output = std::result::Result<std::result::Result<T, ApiError>, RpcError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call(self.rpc()).await {
                Ok(reply) => return Ok(reply?),
                Err(_) if attempt < BOOK_ATTEMPTS => {
                    tokio::time::sleep(BOOK_RETRY_PAUSE).await;
                    // The connection may be gone with the reply: ask again
                    // on a new one if the daemon is there.
                    let _ = self.reconnect().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn update(&self, id: Uuid, change: ReservationChange) -> Result<Reservation> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .update_reservation(context::current(), token, id, change)
                .await,
        )
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn cancel(&self, id: Uuid) -> Result<Reservation> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .cancel_reservation(context::current(), token, id)
                .await,
        )
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn release(&self, id: Uuid) -> Result<Reservation> {
        let token = self.need_token()?;
        flat(self.rpc().release_now(context::current(), token, id).await)
    }

    /// Who holds any of `resources` during `period` (besides `ignore`).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn availability(
        &self,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    ) -> Result<Vec<Holder>> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .check_availability(context::current(), token, resources, period, ignore)
                .await,
        )
    }

    /// Who holds any of `resources` during `period` (besides `ignore`), and
    /// the lab rule our own booking of it would break.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn preview(
        &self,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    ) -> Result<BookingPreview> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .preview_booking(context::current(), token, resources, period, ignore)
                .await,
        )
    }

    /// The status of every active resource, a page at a time.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn status(&self) -> Result<StatusReport> {
        let token = self.need_token()?;
        let mut report = flat(
            self.rpc()
                .status(context::current(), token.clone(), None)
                .await,
        )?;
        let mut next = report.next.take();
        while let Some(after) = next {
            let page = flat(
                self.rpc()
                    .status(context::current(), token.clone(), Some(after.clone()))
                    .await,
            )?;
            // A daemon that does not move on would loop forever.
            if page.next.as_ref() == Some(&after) {
                break;
            }
            report.resources.extend(page.resources);
            next = page.next;
        }
        Ok(report)
    }

    /// Waits (up to the daemon's long-poll limit) for a change after `since`;
    /// returns the current version and what changed since `since`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn wait_for_changes(&self, since: u64) -> Result<gpures_proto::Changes> {
        let token = self.need_token()?;
        let mut ctx = context::current();
        ctx.deadline =
            Instant::now() + Duration::from_secs(gpures_proto::limits::LONG_POLL_MAX_SECS + 10);
        flat(self.rpc().wait_for_changes(ctx, token, since).await)
    }

    /// Every account (admins), a page at a time.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn users(&self) -> Result<Vec<UserInfo>> {
        let token = self.need_token()?;
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = flat(
                self.rpc()
                    .list_users(context::current(), token.clone(), after, limits::PAGE_MAX)
                    .await,
            )?;
            all.extend(page.users);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn set_role(&self, email: String, role: Role) -> Result<UserInfo> {
        let token = self.need_token()?;
        flat(
            self.rpc()
                .set_role(context::current(), token, email, role)
                .await,
        )
    }

    /// # Errors
    /// [`ClientError`].
    pub async fn disable_user(
        &self,
        email: String,
        cancel_future: Option<String>,
    ) -> Result<UserInfo> {
        let token = self.need_token()?;
        let (cancel, reason) = match cancel_future {
            Some(reason) => (true, reason),
            None => (false, String::new()),
        };
        flat(
            self.rpc()
                .disable_user(context::current(), token, email, cancel, reason)
                .await,
        )
    }
}
