//! The gpures contract: everything a client and the daemon must agree on.
//!
//! [`Gpures`] is the tarpc service the daemon serves on its Unix socket; the
//! types beside it are what travels in its frames, [`ApiError`] is the one error
//! every call can return, and [`limits`] holds the numbers both sides enforce.
//! [`text`] is the rule for which characters user-typed text may carry, applied
//! by the daemon when it stores text and by the TUI when it draws it.
//!
//! Frames are length-delimited bincode; see [`MAX_FRAME_BYTES`].

pub mod ics;
pub mod policy;
pub mod report;
pub mod text;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use report::{HeatRow, Report, ReportBy, ReportRequest, ReportRow, Usage};

pub use policy::{
    BookingPreview, Group, GroupChange, Policy, PolicyRefusal, PolicyRule, PolicyScope, PolicySet,
    PolicyTarget,
};

/// Version of the wire contract. A client sends it in [`Gpures::hello`] first;
/// the daemon answers [`ApiError::ProtocolMismatch`] unless it is equal to its
/// own. Bump it on any change to a call's arguments, a reply type or an enum's
/// variants: bincode encodes by position, so an old peer would misread the frame.
/// `hello` itself (request variant 0, a `u32` argument) never changes shape.
pub const PROTOCOL_VERSION: u32 = 9;

/// Largest frame either side accepts; a larger length prefix is hostile or
/// broken and closes the connection. Every reply fits: listings come in pages
/// of at most [`limits::PAGE_MAX`] reservations (about 1.6 KiB each with a
/// 500-character Korean note) and about [`limits::PAGE_BYTES_MAX`] bytes of
/// them, windows are bounded, and lookups return a bounded number of matches.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Limits the daemon enforces on input; clients use them to validate early.
pub mod limits {
    /// How many hours before now the timeline gets usage by the minute;
    /// before that, by the hour.
    pub const USAGE_MINUTES_MAX_HOURS: i64 = 6;
    /// Most used/idle runs one timeline reply carries (the newest first;
    /// older time goes unmarked), about 160 KB.
    pub const USAGE_SPANS_MAX: i64 = 4_000;
    /// Most occurrences one recurring booking may have.
    pub const SERIES_MAX: usize = 200;
    /// Longest note on a reservation, in characters.
    pub const NOTE_MAX_CHARS: usize = 500;
    /// Shortest accepted password, in characters.
    pub const PASSWORD_MIN_CHARS: usize = 12;
    /// Longest accepted password, in characters (bounds the hashing work).
    pub const PASSWORD_MAX_CHARS: usize = 128;
    /// Longest display name, in characters.
    pub const DISPLAY_NAME_MAX_CHARS: usize = 64;
    /// Longest email address (RFC 5321 path limit).
    pub const EMAIL_MAX_CHARS: usize = 254;
    /// Longest resource name.
    pub const RESOURCE_NAME_MAX_CHARS: usize = 64;
    /// Longest resource description.
    pub const DESCRIPTION_MAX_CHARS: usize = 500;
    /// Most resources in one booking (all or nothing).
    pub const BOOKING_MAX_RESOURCES: usize = 64;
    /// Widest window a timeline or listing may ask for, in days.
    pub const WINDOW_MAX_DAYS: i64 = 400;
    /// A `wait_for_changes` call returns after at most this many seconds even
    /// when nothing changed, so a client can tell a live daemon from a dead one.
    pub const LONG_POLL_MAX_SECS: u64 = 25;
    /// Most reservations (or users) in one page of a listing.
    pub const PAGE_MAX: u32 = 200;
    /// Most reservations in a timeline page after the first, which carries
    /// nothing else (the first also carries the resources, blocks and usage,
    /// and keeps [`PAGE_MAX`]): fewer round trips for a large window.
    pub const TIMELINE_PAGE_MAX: u32 = 1_000;
    /// About the most bytes of reservations one page carries: a page of long
    /// notes ends early, with a cursor, rather than outgrow the frame.
    pub const PAGE_BYTES_MAX: usize = 640 * 1024;
    /// The page size when a client asks for 0.
    pub const PAGE_DEFAULT: u32 = 100;
    /// Shortest id prefix a lookup accepts, in hex digits.
    pub const ID_PREFIX_MIN: usize = 6;
    /// Most reservations a prefix lookup returns; more means "give more digits".
    pub const LOOKUP_MAX: usize = 64;
}

/// A session token as returned by [`Gpures::login`]. Opaque to clients.
pub type Token = String;

/// A half-open time interval `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// True when the two periods share at least one instant (`[)` bounds, so
    /// back-to-back periods do not overlap).
    pub fn overlaps(&self, other: &Period) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// True when `t` lies inside the period.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// What a user may do: members book, admins also manage resources, users and
/// everyone's reservations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Member,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as others see them: enough to name the holder of a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: i64,
    pub email: String,
    pub display_name: String,
}

/// A user account, as its owner and admins see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// The Unix account the user registered from; tokens work only from it.
    pub unix_user: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Whether a password is set (an account made for peer sign-in has none
    /// until its owner runs `gpures passwd`).
    pub has_password: bool,
}

/// Registration form. `password` may be empty where the host signs members
/// in by their Unix user ([`HelloReply::peer_login`]).
#[derive(Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub email: String,
    pub display_name: String,
    pub password: String,
}

/// "Any `gpus` GPUs of one host for `length_minutes`, as soon as possible
/// from `not_before` (default now)", optionally on one `host`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotQuery {
    pub gpus: u32,
    pub length_minutes: u32,
    pub not_before: Option<DateTime<Utc>>,
    pub host: Option<String>,
}

/// One GPU of a [`SlotOption`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotGpu {
    pub id: i64,
    pub name: String,
    pub gpu_index: Option<i32>,
}

/// A time at which the GPUs asked for are free, which ones, and why those.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotOption {
    pub host: String,
    pub period: Period,
    pub gpus: Vec<SlotGpu>,
    /// In words: why this start and these GPUs.
    pub why: String,
}

/// Books what a [`SlotQuery`] finds first. `request_id` as in
/// [`BookingRequest`]: a retry returns the booking already made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyBookingRequest {
    pub request_id: Uuid,
    pub query: SlotQuery,
    pub note: String,
}

/// What [`Gpures::book_any`] booked, and why those GPUs at that time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnyBooking {
    pub booking: Booking,
    pub why: String,
}

/// A place in the queue: N GPUs of one host for a length, granted as a
/// reservation starting at once when they free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRequest {
    /// Chosen by the client: a retry returns the request already made.
    pub request_id: Uuid,
    pub gpus: u32,
    pub length_minutes: u32,
    pub host: Option<String>,
    /// Give up if not granted by then.
    pub until: Option<DateTime<Utc>>,
    pub note: String,
}

/// Where a queue request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueState {
    Waiting,
    Granted,
    Cancelled,
    Expired,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Waiting => "waiting",
            QueueState::Granted => "granted",
            QueueState::Cancelled => "cancelled",
            QueueState::Expired => "expired",
        }
    }
}

/// A queue request as members see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: Uuid,
    pub user: UserRef,
    pub gpus: u32,
    pub length_minutes: u32,
    pub host: Option<String>,
    pub until: Option<DateTime<Utc>>,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub state: QueueState,
    /// 1 for the head, while waiting.
    pub position: Option<u32>,
    /// While waiting: the earliest start current bookings allow (it may come
    /// sooner if someone releases early).
    pub estimated_start: Option<DateTime<Utc>>,
    /// When it left the queue.
    pub ended_at: Option<DateTime<Utc>>,
    /// The booking a grant made.
    pub booking_id: Option<Uuid>,
}

/// A process of a `gpures run` job: its pid and its start time in clock
/// ticks since boot (`/proc/<pid>/stat`, field 22), which tells it from a
/// later process given the same pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProcess {
    pub pid: u32,
    pub start_ticks: u64,
}

/// What [`Gpures::adopt`] ties to a booking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptRequest {
    /// As in [`BookingRequest`]: a retry returns the booking already made.
    pub request_id: Uuid,
    /// Processes of the caller running on GPUs of the daemon's host.
    pub pids: Vec<u32>,
    /// An existing running booking of the caller; `None`: book the GPUs the
    /// processes use.
    pub booking: Option<Uuid>,
    /// How long a new booking lasts.
    pub length_minutes: u32,
}

/// What [`Gpures::change_with_reason`] changes: one reservation or every
/// reservation of a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeTarget {
    Reservation(Uuid),
    Booking(Uuid),
}

/// The change [`Gpures::change_with_reason`] makes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChangeKind {
    Edit(ReservationChange),
    Cancel,
    Release,
}

/// A change of one's own account; `None` keeps a field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountChange {
    pub display_name: Option<String>,
    pub email: Option<String>,
}

/// One login session, as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: Uuid,
    /// The daemon host the login happened on.
    pub host: String,
    pub created_at: DateTime<Utc>,
    /// When it was last used (updated at most hourly).
    pub last_used_at: DateTime<Utc>,
    /// When it ends unless used again (the expiry slides on use).
    pub expires_at: DateTime<Utc>,
    /// The session of the token this call was made with.
    pub current: bool,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A successful login.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginReply {
    pub token: Token,
    pub expires_at: DateTime<Utc>,
    pub user: UserInfo,
}

impl fmt::Debug for LoginReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginReply")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("user", &self.user)
            .finish()
    }
}

/// The daemon's answer to [`Gpures::hello`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelloReply {
    pub protocol_version: u32,
    /// The daemon's package version, for `gpures --version` style diagnostics.
    pub daemon_version: String,
    /// The host name this daemon serves (resources carry theirs too).
    pub host: String,
    /// The Unix user the daemon sees on this connection (from `SO_PEERCRED`).
    pub peer_unix_user: String,
    /// Whether this host signs a Unix user with one account in by the
    /// connection itself (an empty token); if not, passwords are required.
    pub peer_login: bool,
}

/// What a bookable thing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceKind {
    Gpu,
    Server,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Gpu => "gpu",
            ResourceKind::Server => "server",
        }
    }
}

/// A bookable thing: one GPU, or a whole server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub id: i64,
    pub name: String,
    /// Host the resource lives on; several hosts may share one database.
    pub host: String,
    pub kind: ResourceKind,
    pub gpu_index: Option<i32>,
    pub gpu_uuid: Option<String>,
    pub description: String,
    /// Inactive resources cannot be booked and are hidden by default.
    pub active: bool,
}

/// A new resource (admin).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewResource {
    pub name: String,
    pub host: String,
    pub kind: ResourceKind,
    pub gpu_index: Option<i32>,
    pub gpu_uuid: Option<String>,
    pub description: String,
}

/// A change to a resource (admin); `None` leaves a field as it is.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResourceUpdate {
    pub name: Option<String>,
    pub host: Option<String>,
    pub gpu_index: Option<Option<i32>>,
    pub gpu_uuid: Option<Option<String>>,
    pub description: Option<String>,
    pub active: Option<bool>,
}

/// Whether a reservation still holds its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationStatus {
    Active,
    Cancelled,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Active => "active",
            ReservationStatus::Cancelled => "cancelled",
        }
    }
}

/// One resource held by one user for one period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: Uuid,
    /// Groups the reservations booked together (several GPUs at once).
    pub booking_id: Uuid,
    pub resource_id: i64,
    pub resource_name: String,
    pub user: UserRef,
    pub period: Period,
    pub note: String,
    pub status: ReservationStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether Google Calendar shows its latest state.
    pub sync: SyncState,
    /// Why an admin cancelled or ended it, if one did with a reason.
    pub change_reason: Option<String>,
    /// The recurring series it is an occurrence of.
    pub series_id: Option<Uuid>,
    /// Asked past lab policy and waiting for an admin: it holds its slot,
    /// and is cancelled if nobody approves it by `until`.
    pub pending: Option<Pending>,
}

/// A booking waiting for an admin's approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub until: DateTime<Utc>,
    /// Why the member asked.
    pub reason: String,
}

/// A reservation's state in Google Calendar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncState {
    /// Calendar sync is turned off on this daemon.
    Off,
    /// A change waits to be written (or is being retried).
    Pending,
    /// The calendar shows the latest state.
    Synced,
    /// Google refused the change; the reason. Retried after a daemon restart
    /// or `gpures-daemon calendar resync`.
    Failed(String),
}

impl SyncState {
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncState::Off => "off",
            SyncState::Pending => "pending",
            SyncState::Synced => "synced",
            SyncState::Failed(_) => "failed",
        }
    }
}

/// The calendar outbox as admins see it in `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarStatus {
    pub enabled: bool,
    /// Changes waiting to be written.
    pub queued: i64,
    /// Changes Google refused for good.
    pub failed: i64,
    /// Age of the oldest waiting change, in seconds.
    pub oldest_pending_secs: Option<i64>,
    pub last_error: Option<String>,
}

/// What a notification is about. The inbox gets every kind; a member may
/// mute kinds on the other channels (`gpures notify --mute KIND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationKind {
    /// Your booking starts in 10 minutes.
    StartsSoon,
    /// Your booking ends in 10 minutes.
    EndsSoon,
    /// A queue request of yours was granted.
    Granted,
    /// Your running booking shows no process of yours: it will be released.
    IdleWarning,
    /// Your booking was released for idleness or as a no-show.
    Reclaimed,
    /// Someone runs a process on GPUs you hold.
    RunsOnYours,
    /// You run a process on a GPU you do not hold.
    YouRunUnreserved,
    /// gpures stopped, continued or ended a process of yours.
    ActionTaken,
    /// An admin changed, cancelled or released your booking (with the reason).
    AdminChanged,
    /// A test sent with `gpures notify --test`.
    Test,
    /// An admin blocked GPUs you hold a reservation on (maintenance).
    Maintenance,
    /// Admins: a member asks to book past lab policy.
    ApprovalRequested,
    /// Your request was approved, denied, or expired undecided.
    ApprovalDecided,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 13] = [
        NotificationKind::StartsSoon,
        NotificationKind::EndsSoon,
        NotificationKind::Granted,
        NotificationKind::IdleWarning,
        NotificationKind::Reclaimed,
        NotificationKind::RunsOnYours,
        NotificationKind::YouRunUnreserved,
        NotificationKind::ActionTaken,
        NotificationKind::AdminChanged,
        NotificationKind::Test,
        NotificationKind::Maintenance,
        NotificationKind::ApprovalRequested,
        NotificationKind::ApprovalDecided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::StartsSoon => "starts-soon",
            NotificationKind::EndsSoon => "ends-soon",
            NotificationKind::Granted => "granted",
            NotificationKind::IdleWarning => "idle-warning",
            NotificationKind::Reclaimed => "reclaimed",
            NotificationKind::RunsOnYours => "runs-on-yours",
            NotificationKind::YouRunUnreserved => "you-run-unreserved",
            NotificationKind::ActionTaken => "action-taken",
            NotificationKind::AdminChanged => "admin-changed",
            NotificationKind::Test => "test",
            NotificationKind::Maintenance => "maintenance",
            NotificationKind::ApprovalRequested => "approval-requested",
            NotificationKind::ApprovalDecided => "approval-decided",
        }
    }

    /// What it tells, in words.
    pub fn meaning(self) -> &'static str {
        match self {
            NotificationKind::StartsSoon => "your booking starts soon",
            NotificationKind::EndsSoon => "your booking ends soon (with extend, if free)",
            NotificationKind::Granted => "a queue request of yours was granted",
            NotificationKind::IdleWarning => "your running booking is idle and will be released",
            NotificationKind::Reclaimed => "your booking was released for idleness",
            NotificationKind::RunsOnYours => "someone runs on GPUs you hold",
            NotificationKind::YouRunUnreserved => "you run on a GPU you do not hold",
            NotificationKind::ActionTaken => "gpures stopped or ended a process of yours",
            NotificationKind::AdminChanged => "an admin changed your booking (with the reason)",
            NotificationKind::Test => "gpures notify --test",
            NotificationKind::Maintenance => "an admin blocked GPUs during your booking",
            NotificationKind::ApprovalRequested => "admins: a member asks to book past lab policy",
            NotificationKind::ApprovalDecided => "your request was approved, denied or expired",
        }
    }

    /// The kind named `s` (as [`Self::as_str`] writes it).
    pub fn parse(s: &str) -> Option<NotificationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether it needs the member's attention now (written to their
    /// terminals where they opted in).
    pub fn urgent(self) -> bool {
        matches!(
            self,
            NotificationKind::IdleWarning
                | NotificationKind::Reclaimed
                | NotificationKind::ActionTaken
                | NotificationKind::YouRunUnreserved
                | NotificationKind::Test
        )
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a member's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub kind: NotificationKind,
    pub reservation_id: Option<Uuid>,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub read: bool,
}

/// The newest entries of an inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    /// Unread entries in all (not only those in `items`).
    pub unread: u32,
}

/// Where a member's notifications go besides the inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifySettings {
    /// A Slack-compatible incoming webhook.
    pub webhook_url: Option<String>,
    /// Email to the account's address.
    pub email: bool,
    /// Whether this host sends email at all (`[notify.smtp]`).
    pub email_available: bool,
    /// Urgent events written to the member's own terminals on the host.
    pub terminal: bool,
    /// Kinds kept to the inbox.
    pub muted: Vec<NotificationKind>,
}

/// A change to [`NotifySettings`]; `None` keeps a field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyChange {
    /// `Some(None)` removes the webhook.
    pub webhook_url: Option<Option<String>>,
    pub email: Option<bool>,
    pub terminal: Option<bool>,
    pub mute: Vec<NotificationKind>,
    pub unmute: Vec<NotificationKind>,
}

/// Who holds a slot that a booking or a change wanted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub reservation_id: Uuid,
    pub resource_id: i64,
    pub resource_name: String,
    pub user: UserRef,
    pub period: Period,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is held by {} <{}> from {} to {}",
            self.resource_name,
            self.user.display_name,
            self.user.email,
            self.period.start.to_rfc3339(),
            self.period.end.to_rfc3339()
        )
    }
}

/// A booking of one or more resources for one period, all or nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BookingRequest {
    /// Chosen by the client, once per booking the user meant to make. A retry
    /// with the same id (after a lost reply or a deadline) returns the booking
    /// that was made instead of conflicting with it.
    pub request_id: Uuid,
    pub resources: Vec<i64>,
    pub period: Period,
    pub note: String,
}

/// The reservations one booking created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Booking {
    pub booking_id: Uuid,
    pub reservations: Vec<Reservation>,
}

/// A change to one reservation; `None` leaves a field as it is. Moving,
/// shortening and extending are all changes of `start` and/or `end`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReservationChange {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub note: Option<String>,
}

/// Which reservations [`Gpures::list_reservations`] returns. Empty `resources`
/// means all; `user` is an email; `window` keeps those overlapping it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReservationFilter {
    pub resources: Vec<i64>,
    pub user_email: Option<String>,
    pub window: Option<Period>,
    pub include_cancelled: bool,
}

/// Where the next page of a reservation listing starts: after this
/// reservation, in the listing's order (start, resource name, id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub start: DateTime<Utc>,
    pub resource_name: String,
    pub id: Uuid,
}

/// Which page of a listing to return.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PageRequest {
    /// `None`: the first page.
    pub after: Option<Cursor>,
    /// Most items; 0 means [`limits::PAGE_DEFAULT`], more than
    /// [`limits::PAGE_MAX`] means that.
    pub limit: u32,
}

/// One page of reservations; `next` is where the following page starts,
/// `None` on the last.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReservationPage {
    pub reservations: Vec<Reservation>,
    pub next: Option<Cursor>,
}

/// One page of accounts, by id; `next` is the id to continue after.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserPage {
    pub users: Vec<UserInfo>,
    pub next: Option<i64>,
}

/// How to find reservations without listing history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lookup {
    /// One reservation by its full id.
    Id(Uuid),
    /// Reservations whose id, or whose booking's id, starts with these hex
    /// digits (at least [`limits::ID_PREFIX_MIN`]).
    Prefix(String),
    /// Every reservation of one booking.
    Booking(Uuid),
    /// Every active reservation of one recurring booking, in start order.
    Series(Uuid),
}

/// Everything a schedule view draws for one window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timeline {
    pub window: Period,
    /// The active resources (on the first page only; empty on later ones).
    pub resources: Vec<Resource>,
    /// Active reservations overlapping the window, ordered by start,
    /// resource name and id; one page of them.
    pub reservations: Vec<Reservation>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<Cursor>,
    /// Maintenance blocks overlapping the window (on the first page only).
    pub blocks: Vec<Block>,
    /// What the held GPUs really did in the window's past (first page only):
    /// runs of used or idle time; no span where telemetry had a gap.
    pub usage: Vec<UsageSpan>,
}

/// A run of held time on one GPU that was all used (the holder ran a
/// qualifying process) or all idle: by the minute over the last
/// [`limits::USAGE_MINUTES_MAX_HOURS`] before now, by the whole hour before
/// that (used when most of the hour was); at most
/// [`limits::USAGE_SPANS_MAX`], the newest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSpan {
    pub resource_id: i64,
    pub period: Period,
    pub used: bool,
}

/// A period in which an admin blocked one resource (maintenance, a
/// blackout): nobody can book into it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Shared by the resources one `gpures admin block` blocked together.
    pub block_id: Uuid,
    pub resource_id: i64,
    pub resource_name: String,
    pub period: Period,
    pub reason: String,
    /// Who blocked it (the audit name).
    pub created_by: String,
}

/// A recurring booking: the same resources for each of `periods` (the
/// client computes them in the member's zone, so wall-clock times survive a
/// DST change), each occurrence a booking of its own.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesRequest {
    /// Chosen by the client; a retry with the same id returns what it made.
    pub request_id: Uuid,
    pub resources: Vec<i64>,
    pub periods: Vec<Period>,
    pub note: String,
    /// Book the occurrences that can be and report the others; otherwise
    /// one that cannot be booked refuses the whole series.
    pub skip_conflicts: bool,
}

/// "This and following": each reservation of a series that starts at or
/// after `from` moves to its own new period (the client computes them in the
/// member's zone, keeping wall-clock times across a DST change), all or
/// nothing, checked like any edit (policy, blocks, overlaps).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesEdit {
    pub series_id: Uuid,
    pub from: DateTime<Utc>,
    /// The new period of every active, unfinished reservation from `from`
    /// on, by reservation id; one left out refuses the edit (the series
    /// changed since the client read it).
    pub periods: Vec<(Uuid, Period)>,
    /// A new note for each of them.
    pub note: Option<String>,
    /// Why, when an admin edits someone else's series; its owner is told.
    pub reason: Option<String>,
}

/// An occurrence that was not booked, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub period: Period,
    pub why: ApiError,
}

/// What a series booked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesReply {
    pub series_id: Uuid,
    pub booked: Vec<Booking>,
    pub skipped: Vec<Skipped>,
}

/// Blocks resources for a period (admins).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockRequest {
    pub resources: Vec<i64>,
    pub period: Period,
    pub reason: String,
    /// Cancel (or end) the reservations inside it; otherwise they are kept
    /// and their owners told.
    pub cancel_overlapping: bool,
}

/// What blocking did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockReply {
    pub blocks: Vec<Block>,
    /// The reservations inside the block: cancelled or ended if asked,
    /// else kept; their owners are told either way.
    pub overlapping: Vec<Reservation>,
    pub cancelled: bool,
}

/// The answer to [`Gpures::wait_for_changes`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Changes {
    /// The version to ask with next time.
    pub version: u64,
    /// What changed between the version asked with and `version`; `None`
    /// when that cannot be told (the first call, a new daemon, a gap longer
    /// than the daemon remembers, a change of resources, accounts or policy,
    /// a lost connection to the database): then refetch everything. Empty
    /// when `version` is the one asked with (nothing changed in time).
    pub delta: Option<Delta>,
}

/// What changed over some versions, to apply to what a client holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Every reservation that changed, as it is now (a cancelled one has
    /// status cancelled: it leaves the timeline and listings of active
    /// ones), in the order of the changes.
    pub reservations: Vec<Reservation>,
    /// The status now of the resources those reservations are on (who holds
    /// it now and next, its flags); replaces the same resource's entry.
    pub status: Vec<ResourceStatus>,
    /// The waiting queue changed: fetch it again.
    pub queue: bool,
    /// The caller has new notifications: fetch the inbox again.
    pub inbox: bool,
    /// The calendar outbox changed state (a delivery failed); for admins.
    pub calendar: bool,
}

impl Delta {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.reservations.is_empty() && !self.queue && !self.inbox && !self.calendar
    }
}

/// One resource in the status report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub resource: Resource,
    /// The reservation holding it at `generated_at`, if any.
    pub current: Option<Reservation>,
    /// The next reservation to start after `generated_at`, if any.
    pub next: Option<Reservation>,
    /// What the GPU is really doing, when its host samples it.
    pub telemetry: Option<GpuTelemetry>,
    /// Where reality and the schedule disagree.
    pub flags: Vec<GpuFlag>,
    /// The maintenance block in force now, or else the next one.
    pub block: Option<Block>,
}

/// Who holds what now and next, per active resource: one page of them, in
/// the order of [`StatusCursor::key`], ending early once about
/// [`limits::PAGE_BYTES_MAX`] bytes are in it (a thousand GPUs whose
/// holders wrote long notes do not fit one frame).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub generated_at: DateTime<Utc>,
    pub host: String,
    pub resources: Vec<ResourceStatus>,
    /// Per host sharing the database: how its GPUs are sampled, or why not
    /// ("no GPU telemetry"). On the first page only.
    pub hosts: Vec<HostTelemetry>,
    /// The calendar outbox; only for admins, on the first page only.
    pub calendar: Option<CalendarStatus>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<StatusCursor>,
}

/// One page of the resources, in the order of [`StatusCursor::key`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResourcePage {
    pub resources: Vec<Resource>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<StatusCursor>,
}

/// Where the next page of a status report (or of the resources) starts:
/// after this resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCursor {
    pub host: String,
    pub gpu_index: Option<i32>,
    pub name: String,
}

impl StatusCursor {
    /// The cursor after `r`.
    pub fn after(r: &Resource) -> StatusCursor {
        StatusCursor {
            host: r.host.clone(),
            gpu_index: r.gpu_index,
            name: r.name.clone(),
        }
    }

    /// The status order: by host, then GPU index (resources without one
    /// last), then name.
    pub fn key(&self) -> (&str, bool, i32, &str) {
        order_key(&self.host, self.gpu_index, &self.name)
    }

    /// [`Self::key`] of a resource.
    pub fn key_of(r: &Resource) -> (&str, bool, i32, &str) {
        order_key(&r.host, r.gpu_index, &r.name)
    }
}

fn order_key<'a>(
    host: &'a str,
    index: Option<i32>,
    name: &'a str,
) -> (&'a str, bool, i32, &'a str) {
    (host, index.is_none(), index.unwrap_or(0), name)
}

/// How one host samples its GPUs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostTelemetry {
    pub host: String,
    /// `nvml`, `nvidia-smi`, or `none`.
    pub backend: String,
    /// When the latest sample was taken; `None` if never.
    pub sampled_at: Option<DateTime<Utc>>,
    /// Why there is no telemetry, in words, when there is none.
    pub note: Option<String>,
}

/// One GPU as sampled by its host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuTelemetry {
    pub host: String,
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub sampled_at: DateTime<Utc>,
    pub utilization_pct: Option<u32>,
    pub memory_used_mib: Option<u64>,
    pub memory_total_mib: Option<u64>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f32>,
    /// Utilisation over the last 10 minutes, oldest first, one per sample.
    pub history: Vec<u8>,
    pub processes: Vec<GpuProcess>,
}

/// A process using a GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: u32,
    pub name: String,
    pub used_memory_mib: Option<u64>,
    /// The Unix user, or `None` when the host cannot see the process (it
    /// runs in another PID namespace): shown as unknown, never dropped.
    pub unix_user: Option<String>,
}

/// A disagreement between the schedule and the card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GpuFlag {
    /// A process of a user who holds no active reservation of this GPU.
    UnreservedUse { unix_user: String, pid: u32 },
    /// Reserved, and no process for at least `idle_minutes`.
    IdleReservation { idle_minutes: u32 },
    /// The holder's reservation ended and their process still runs.
    Overrun { unix_user: String, pid: u32 },
}

impl GpuFlag {
    /// A short marker that reads without colour.
    pub fn marker(&self) -> String {
        match self {
            GpuFlag::UnreservedUse { unix_user, pid } => {
                format!("!UNRESERVED {unix_user} (pid {pid})")
            }
            GpuFlag::IdleReservation { idle_minutes } => format!("!IDLE {idle_minutes} min"),
            GpuFlag::Overrun { unix_user, pid } => format!("!OVERRUN {unix_user} (pid {pid})"),
        }
    }
}

/// The one error every call can return. Messages never carry SQL, paths or
/// whether an email exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    /// No valid token: missing, expired, revoked, forged, or issued to another
    /// Unix user. The client should log in again.
    #[error("not signed in or the session expired: run `gpures login`")]
    Unauthenticated,
    /// Peer sign-in found no account bound to the caller's Unix user.
    #[error(
        "the Unix user {unix_user} has no gpures account yet: run \
         `gpures register --email you@example.org --name \"Your Name\"`"
    )]
    NoAccount { unix_user: String },
    /// The caller is known but may not do this.
    #[error("permission denied")]
    PermissionDenied,
    /// The thing named does not exist (or is not visible to the caller).
    #[error("{what} not found")]
    NotFound { what: String },
    /// The period is taken; `holders` says by whom.
    #[error("the slot is taken: {}", holders.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Conflict { holders: Vec<Holder> },
    /// Occurrences of a recurring booking cannot be booked (each with why);
    /// nothing was booked.
    #[error("{} occurrence(s) cannot be booked: {}", refused.len(), refused.iter().map(|s| format!("{}: {}", s.period.start.to_rfc3339(), s.why)).collect::<Vec<_>>().join("; "))]
    Series { refused: Vec<Skipped> },
    /// A lab policy refuses the booking or change; the refusal has the numbers.
    #[error("refused by lab policy: {0}")]
    Policy(Box<PolicyRefusal>),
    /// The period is blocked by an admin (maintenance); `blocks` says when
    /// and why.
    #[error("blocked: {}", blocks.iter().map(|b| format!("{} {} to {}: {}", b.resource_name, b.period.start.to_rfc3339(), b.period.end.to_rfc3339(), b.reason)).collect::<Vec<_>>().join("; "))]
    Blocked { blocks: Vec<Block> },
    /// An argument was rejected; `field` names it, `reason` says why.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// Too many attempts; try again after `retry_after_secs`.
    #[error("too many attempts: try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The daemon cannot serve right now (its database is down, or it is
    /// shutting down). Retrying later is safe.
    #[error("the daemon is temporarily unavailable")]
    Unavailable,
    /// A bug or an unexpected failure; `id` is in the daemon's log line.
    #[error("internal error (daemon log id {id})")]
    Internal { id: String },
    /// The client speaks another protocol version than the daemon.
    #[error("protocol mismatch: the daemon speaks version {daemon}, this client {client}")]
    ProtocolMismatch { daemon: u32, client: u32 },
}

impl ApiError {
    /// Shorthand for [`ApiError::InvalidArgument`].
    pub fn invalid(field: &str, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The gpures daemon's service. Calls other than `hello`, `register`,
/// `login` and `redeem_reset_code` take the session token first; an empty
/// token signs in by the connection's Unix user where the host allows it
/// (peer sign-in: the Unix user is bound to exactly one active account).
#[tarpc::service]
pub trait Gpures {
    /// Anyone, first call of every connection: checks [`PROTOCOL_VERSION`].
    async fn hello(client_protocol: u32) -> Result<HelloReply, ApiError>;
    /// Anyone: creates a member account bound to the caller's Unix user.
    async fn register(req: RegisterRequest) -> Result<UserInfo, ApiError>;
    /// Anyone, from the Unix user the account is bound to: returns a token
    /// of a new session. An empty `email` means the one account bound to
    /// the caller's Unix user.
    async fn login(email: String, password: String) -> Result<LoginReply, ApiError>;
    /// Any user: ends one of their sessions, or with `None` the session of
    /// this token (a copy of it stops working).
    async fn logout(token: Token, session: Option<Uuid>) -> Result<(), ApiError>;
    /// Any user: their live sessions, newest first.
    async fn sessions(token: Token) -> Result<Vec<SessionInfo>, ApiError>;
    /// Any user: sets a new password; `old` must be right when one is set.
    /// Their other sessions end.
    async fn change_password(token: Token, old: String, new: String) -> Result<(), ApiError>;
    /// Anyone, from the Unix user the account is bound to: sets a new
    /// password with a one-time code from the host admin.
    async fn redeem_reset_code(code: String, new: String) -> Result<UserInfo, ApiError>;
    /// Any user: changes their display name or email.
    async fn update_account(token: Token, change: AccountChange) -> Result<UserInfo, ApiError>;
    /// Any user: the account behind the token.
    async fn whoami(token: Token) -> Result<UserInfo, ApiError>;
    /// Any user: revokes every token of the caller, this one included.
    async fn logout_everywhere(token: Token) -> Result<(), ApiError>;
    /// Any user: one page of the resources (inactive ones too when asked),
    /// in status order from the start or after `after`, ending once about
    /// [`limits::PAGE_BYTES_MAX`] bytes are in it.
    async fn list_resources(
        token: Token,
        include_inactive: bool,
        after: Option<StatusCursor>,
    ) -> Result<ResourcePage, ApiError>;
    /// Admin: adds a resource.
    async fn create_resource(token: Token, resource: NewResource) -> Result<Resource, ApiError>;
    /// Admin: changes a resource (rename, describe, disable).
    async fn update_resource(
        token: Token,
        id: i64,
        update: ResourceUpdate,
    ) -> Result<Resource, ApiError>;
    /// Any user: active resources and one page of the active reservations
    /// overlapping `window` (at most [`limits::WINDOW_MAX_DAYS`] wide): the
    /// first page at most [`limits::PAGE_MAX`] with the resources, blocks and
    /// usage, later ones at most [`limits::TIMELINE_PAGE_MAX`] and nothing
    /// else; any page ends early before [`limits::PAGE_BYTES_MAX`].
    async fn timeline(
        token: Token,
        window: Period,
        page: PageRequest,
    ) -> Result<Timeline, ApiError>;
    /// Any user: one page of the reservations matching the filter, ordered by
    /// start, resource name and id.
    async fn list_reservations(
        token: Token,
        filter: ReservationFilter,
        page: PageRequest,
    ) -> Result<ReservationPage, ApiError>;
    /// Any user: reservations by full id, id prefix or booking id, without
    /// listing history (an index range scan); at most [`limits::LOOKUP_MAX`].
    async fn find_reservations(token: Token, lookup: Lookup) -> Result<Vec<Reservation>, ApiError>;
    /// Any user: books every resource named for the period, or none of them.
    async fn create_booking(token: Token, request: BookingRequest) -> Result<Booking, ApiError>;
    /// Any user: the earliest three starts per host at which the GPUs asked
    /// for are free, without booking.
    async fn find_slots(token: Token, query: SlotQuery) -> Result<Vec<SlotOption>, ApiError>;
    /// Any user: books any N GPUs of one host at the earliest start (all or
    /// nothing; a racing booker makes it search again).
    async fn book_any(token: Token, request: AnyBookingRequest) -> Result<AnyBooking, ApiError>;
    /// Any user: waits in the queue for N GPUs of one host.
    async fn enqueue(token: Token, request: QueueRequest) -> Result<QueueEntry, ApiError>;
    /// Any user: the requests waiting (everyone's, in order) and the
    /// caller's that left the queue in the last day.
    async fn queue(token: Token) -> Result<Vec<QueueEntry>, ApiError>;
    /// Owner or admin: leaves the queue.
    async fn cancel_queued(token: Token, id: Uuid) -> Result<QueueEntry, ApiError>;
    /// Owner, on the booking's host: ties a running booking to the caller's
    /// processes (each must be the caller's own and alive); when none of
    /// them is alive any more, the daemon releases the booking.
    async fn attach_job(
        token: Token,
        booking_id: Uuid,
        processes: Vec<JobProcess>,
    ) -> Result<(), ApiError>;
    /// Owner or admin: moves, shortens, extends or re-notes a reservation.
    async fn update_reservation(
        token: Token,
        id: Uuid,
        change: ReservationChange,
    ) -> Result<Reservation, ApiError>;
    /// Owner or admin: cancels a reservation (it stays in history).
    async fn cancel_reservation(token: Token, id: Uuid) -> Result<Reservation, ApiError>;
    /// Owner or admin: ends a running reservation now.
    async fn release_now(token: Token, id: Uuid) -> Result<Reservation, ApiError>;
    /// Owner or admin: moves, extends or re-notes every active reservation
    /// of a booking as one unit (all or nothing).
    async fn update_booking(
        token: Token,
        booking_id: Uuid,
        change: ReservationChange,
    ) -> Result<Vec<Reservation>, ApiError>;
    /// Owner or admin: cancels every active reservation of a booking.
    async fn cancel_booking(token: Token, booking_id: Uuid) -> Result<Vec<Reservation>, ApiError>;
    /// Owner or admin: ends every running reservation of a booking now.
    async fn release_booking(token: Token, booking_id: Uuid) -> Result<Vec<Reservation>, ApiError>;
    /// Owner or admin: edits, cancels or releases with a reason, which is
    /// kept on each reservation and shown to its owner. An admin changing
    /// someone else's reservation must use this call.
    async fn change_with_reason(
        token: Token,
        target: ChangeTarget,
        kind: ChangeKind,
        reason: String,
    ) -> Result<Vec<Reservation>, ApiError>;
    /// Any user: who holds any of `resources` during `period`; empty when all
    /// are free. `ignore` leaves one reservation out (the one being edited).
    async fn check_availability(
        token: Token,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    ) -> Result<Vec<Holder>, ApiError>;
    /// Any user: [`Gpures::check_availability`] plus the lab rule the
    /// caller's own booking (or change of `ignore`) would break, for forms
    /// that tell before Enter.
    async fn preview_booking(
        token: Token,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    ) -> Result<BookingPreview, ApiError>;
    /// Any user: per active resource, who holds it now and who is next; one
    /// page, from the start (`after: None`) or after a cursor the previous
    /// page gave ([`StatusReport::next`]).
    async fn status(token: Token, after: Option<StatusCursor>) -> Result<StatusReport, ApiError>;
    /// Any user: returns as soon as something changed after `since` (a
    /// version this call returned earlier; 0 at first), or after at most
    /// [`limits::LONG_POLL_MAX_SECS`] with the same version. With a new
    /// version comes what changed ([`Changes::delta`]), or `None` when the
    /// gap is too large to replay: then the client refetches everything.
    async fn wait_for_changes(token: Token, since: u64) -> Result<Changes, ApiError>;
    /// Admin: one page of the accounts, by id (`after`: the last id seen).
    async fn list_users(token: Token, after: Option<i64>, limit: u32)
    -> Result<UserPage, ApiError>;
    /// Admin: makes the account with `email` a member or an admin.
    async fn set_role(token: Token, email: String, role: Role) -> Result<UserInfo, ApiError>;
    /// Admin: disables the account with `email` and revokes its tokens; with
    /// `cancel_future`, also cancels its reservations to come and ends its
    /// running ones, recording `reason` on each (shown to the owner).
    async fn disable_user(
        token: Token,
        email: String,
        cancel_future: bool,
        reason: String,
    ) -> Result<UserInfo, ApiError>;
    /// Any user: the newest entries of their inbox (only the unread ones
    /// when asked), at most `limit` ([`limits::PAGE_MAX`]).
    async fn notifications(
        token: Token,
        unread_only: bool,
        limit: u32,
    ) -> Result<NotificationPage, ApiError>;
    /// Any user: marks their entries up to `up_to` (an id) read; returns
    /// how many were unread.
    async fn mark_read(token: Token, up_to: i64) -> Result<u32, ApiError>;
    /// Any user: where their notifications go, after applying `change`.
    async fn notify_settings(
        token: Token,
        change: Option<NotifyChange>,
    ) -> Result<NotifySettings, ApiError>;
    /// Any user: sends themselves a test notification on every channel.
    async fn test_notification(token: Token) -> Result<Notification, ApiError>;
    /// Owner or admin: protects a booking from idle reclaim for the host's
    /// keep time; returns until when.
    async fn keep(token: Token, booking_id: Uuid) -> Result<DateTime<Utc>, ApiError>;
    /// Any user, on the GPUs' host: ties running processes of the caller to
    /// a booking of theirs, a new one of the GPUs the processes use (from
    /// now for `length_minutes`) or `booking`; the booking ends when they do.
    async fn adopt(token: Token, request: AdoptRequest) -> Result<Booking, ApiError>;
    /// Anyone: every rule of lab policy in force, defaults included.
    async fn policies(token: Token) -> Result<Vec<Policy>, ApiError>;
    /// Admins: sets or removes one rule; returns every rule in force.
    async fn set_policy(token: Token, set: PolicySet) -> Result<Vec<Policy>, ApiError>;
    /// Anyone: the groups and their members.
    async fn groups(token: Token) -> Result<Vec<Group>, ApiError>;
    /// Admins: creates, deletes or changes the members of a group.
    async fn change_group(token: Token, change: GroupChange) -> Result<Group, ApiError>;
    /// Admins: blocks resources for a period; the reservations inside are
    /// listed, their owners told, and cancelled if asked.
    async fn block(token: Token, request: BlockRequest) -> Result<BlockReply, ApiError>;
    /// Admins: lifts a block (all its resources); returns what it was.
    async fn unblock(token: Token, block_id: Uuid) -> Result<Vec<Block>, ApiError>;
    /// Anyone: the blocks overlapping `window`.
    async fn blocks(token: Token, window: Period) -> Result<Vec<Block>, ApiError>;
    /// Any user: books past lab policy as a request for an admin's approval:
    /// it holds the slot until an admin decides, or is cancelled at
    /// `decide_by` (at the latest its start). Admins are told.
    async fn request_approval(
        token: Token,
        request: BookingRequest,
        reason: String,
        decide_by: Option<DateTime<Utc>>,
    ) -> Result<Booking, ApiError>;
    /// Admins: approves or denies (with a reason) a pending booking; its
    /// owner is told.
    async fn decide_approval(
        token: Token,
        booking_id: Uuid,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Vec<Reservation>, ApiError>;
    /// Admins: every booking waiting for approval; members: their own.
    async fn pending_approvals(token: Token) -> Result<Vec<Reservation>, ApiError>;
    /// Any user: a recurring booking, all or nothing unless
    /// `skip_conflicts`.
    async fn book_series(token: Token, request: SeriesRequest) -> Result<SeriesReply, ApiError>;
    /// Owner or admin: cancels the occurrences of a series that start at or
    /// after `from` (this one and the following).
    async fn cancel_series(
        token: Token,
        series_id: Uuid,
        from: DateTime<Utc>,
    ) -> Result<Vec<Reservation>, ApiError>;
    /// Owner, or an admin with a reason: edits an occurrence of a series and
    /// every later one ([`SeriesEdit`]).
    async fn edit_series(token: Token, edit: SeriesEdit) -> Result<Vec<Reservation>, ApiError>;
    /// Admins: books past lab policy, with a reason kept in the audit log.
    async fn book_override(
        token: Token,
        request: BookingRequest,
        reason: String,
    ) -> Result<Booking, ApiError>;
    /// Any user: usage in a window; members get their own rows and the lab
    /// totals, admins every row.
    async fn report(token: Token, request: ReportRequest) -> Result<Report, ApiError>;
}

/// Reading `/proc`: the start time that, with the pid, names a process in a
/// [`JobProcess`] (the client reads its own, the daemon checks it).
pub mod procfs {
    use std::io;

    /// The start time of `pid` in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`).
    ///
    /// # Errors
    /// `NotFound` when there is no such process; others when `/proc` cannot
    /// be read or the line is not what the kernel writes.
    pub fn start_ticks(pid: u32) -> io::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        parse_start_ticks(&stat)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc stat"))
    }

    /// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2)
    /// may hold spaces and parentheses, so fields are counted after its
    /// last `)`.
    pub fn parse_start_ticks(stat: &str) -> Option<u64> {
        let (_, rest) = stat.rsplit_once(')')?;
        rest.split_whitespace().nth(19)?.parse().ok()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn start_ticks_survive_odd_command_names() {
            let line = "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 98 0 0 0 1 0 0 0 20 0 1 0 987654 1000 10";
            assert_eq!(super::parse_start_ticks(line), Some(987_654));
            assert!(super::parse_start_ticks("garbage").is_none());
            let me = super::start_ticks(std::process::id()).expect("own stat");
            assert!(me > 0);
        }
    }
}

/// Where the daemon's socket is, one rule for the daemon and every client.
///
/// The system socket (`/run/gpures.sock`) is what the systemd socket unit
/// creates and what a daemon run as root binds. A daemon run by hand as a
/// normal user binds `$XDG_RUNTIME_DIR/gpures.sock` instead. A client uses
/// `--socket`, then `GPURES_SOCKET`, then the system socket if it exists,
/// then the user's one if that exists, else the system path (so the error
/// names the usual place).
pub mod paths {
    use std::path::{Path, PathBuf};

    /// The socket of the system daemon.
    pub const SYSTEM_SOCKET: &str = "/run/gpures.sock";
    /// The environment variable naming a socket for clients.
    pub const SOCKET_ENV: &str = "GPURES_SOCKET";
    /// The socket's file name inside `$XDG_RUNTIME_DIR`.
    const USER_SOCKET_NAME: &str = "gpures.sock";

    /// `$XDG_RUNTIME_DIR/gpures.sock`, when that variable is set.
    pub fn user_socket() -> Option<PathBuf> {
        std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(&d).join(USER_SOCKET_NAME))
    }

    /// Where a daemon binds when nothing is configured: the system socket
    /// as root, else the user's runtime dir (the system path without one).
    pub fn daemon_socket(is_root: bool) -> PathBuf {
        if is_root {
            return PathBuf::from(SYSTEM_SOCKET);
        }
        user_socket().unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET))
    }

    /// The socket a client uses: `flag`, then [`SOCKET_ENV`], then the
    /// system socket or the user's one, whichever exists first.
    pub fn client_socket(flag: Option<&Path>) -> PathBuf {
        if let Some(p) = flag {
            return p.to_owned();
        }
        if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let system = PathBuf::from(SYSTEM_SOCKET);
        if system.exists() {
            return system;
        }
        match user_socket() {
            Some(user) if user.exists() => user,
            _ => system,
        }
    }
}

/// The framing both sides use: length-delimited frames of at most
/// [`MAX_FRAME_BYTES`] carrying bincode. Defined once here so client and
/// daemon cannot disagree.
pub mod framing {
    use tarpc::tokio_serde::formats::Bincode;
    use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
    use tokio::net::UnixStream;

    use super::MAX_FRAME_BYTES;

    /// A framed, bincode-encoded transport over `stream`.
    pub fn transport<S, Item, SinkItem>(
        stream: S,
    ) -> tarpc::serde_transport::Transport<S, Item, SinkItem, Codec<Item, SinkItem>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
        Item: for<'de> serde::Deserialize<'de> + Unpin,
        SinkItem: serde::Serialize + Unpin,
    {
        let framed: Framed<S, LengthDelimitedCodec> = LengthDelimitedCodec::builder()
            .max_frame_length(MAX_FRAME_BYTES)
            .new_framed(stream);
        tarpc::serde_transport::new(framed, Codec::default())
    }

    /// bincode, with a panic while decoding turned into an error. tarpc
    /// decodes a request's deadline by adding a peer-chosen duration to
    /// `Instant::now()`, which panics on overflow: found by the `frames` fuzz
    /// target. A hostile frame must close its connection, not unwind a task.
    pub struct Codec<Item, SinkItem> {
        ghost: std::marker::PhantomData<fn() -> (Item, SinkItem)>,
    }

    impl<Item, SinkItem> Default for Codec<Item, SinkItem> {
        fn default() -> Self {
            Codec {
                ghost: std::marker::PhantomData,
            }
        }
    }

    impl<Item, SinkItem> tarpc::tokio_serde::Deserializer<Item> for Codec<Item, SinkItem>
    where
        Item: for<'de> serde::Deserialize<'de> + Unpin,
        SinkItem: Unpin,
    {
        type Error = std::io::Error;

        fn deserialize(
            self: std::pin::Pin<&mut Self>,
            src: &bytes::BytesMut,
        ) -> Result<Item, Self::Error> {
            if !deadline_fits(src) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a request deadline beyond the end of time",
                ));
            }
            // Any other panic in decoding closes the connection too.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut bincode = Bincode::<Item, SinkItem>::default();
                std::pin::Pin::new(&mut bincode).deserialize(src)
            }))
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a frame that cannot be decoded",
                ))
            })
        }
    }

    /// The bytes `value` takes in a frame (the options tarpc's transport
    /// uses): what a reply that must fit [`MAX_FRAME_BYTES`] is measured by.
    pub fn encoded_len<T: serde::Serialize>(value: &T) -> usize {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .serialized_size(value)
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// How many of `items`, from the first, fit in about `budget` bytes as
    /// `size` measures them; at least one (a single item always fits a
    /// frame), all when they fit.
    pub fn fitting<T>(items: &[T], budget: usize, mut size: impl FnMut(&T) -> usize) -> usize {
        let mut bytes = 0usize;
        items
            .iter()
            .position(|item| {
                bytes = bytes.saturating_add(size(item));
                bytes > budget
            })
            .map_or(items.len(), |over| over.max(1))
    }

    /// False when `frame` is a tarpc request whose deadline, added to now,
    /// does not fit an `Instant`. Reads only the frame's prefix, laid out as
    /// `ClientMessage::Request(Request { context: Context { deadline, .. }, .. })`
    /// with the bincode options tarpc's transport uses (varint, little endian).
    fn deadline_fits(frame: &[u8]) -> bool {
        use bincode::Options;
        #[derive(serde::Deserialize)]
        enum Message {
            Request(Prefix),
        }
        #[derive(serde::Deserialize)]
        struct Prefix {
            deadline: std::time::Duration,
        }
        let options = bincode::DefaultOptions::new().allow_trailing_bytes();
        match options.deserialize::<Message>(frame) {
            Ok(Message::Request(p)) => std::time::Instant::now().checked_add(p.deadline).is_some(),
            // Not a request (a cancel) or not decodable: tarpc decides.
            Err(_) => true,
        }
    }

    impl<Item, SinkItem> tarpc::tokio_serde::Serializer<SinkItem> for Codec<Item, SinkItem>
    where
        Item: Unpin,
        SinkItem: serde::Serialize + Unpin,
    {
        type Error = std::io::Error;

        fn serialize(
            self: std::pin::Pin<&mut Self>,
            item: &SinkItem,
        ) -> Result<bytes::Bytes, Self::Error> {
            let mut bincode = Bincode::<Item, SinkItem>::default();
            std::pin::Pin::new(&mut bincode).serialize(item)
        }
    }

    /// Connects to the daemon's socket and returns a client (no hello sent yet).
    ///
    /// # Errors
    /// The socket does not exist or refuses the connection.
    pub async fn connect(path: &std::path::Path) -> std::io::Result<super::GpuresClient> {
        let stream = UnixStream::connect(path).await?;
        Ok(super::GpuresClient::new(tarpc::client::Config::default(), transport(stream)).spawn())
    }

    #[cfg(test)]
    mod tests {
        use super::fitting;

        #[test]
        fn a_page_takes_what_fits_and_never_nothing() {
            let size = |x: &usize| *x;
            assert_eq!(fitting(&[3, 3, 3], 7, size), 2);
            assert_eq!(fitting(&[3, 3, 3], 9, size), 3, "all fit");
            assert_eq!(fitting(&[10, 1], 5, size), 1, "one always fits");
            assert_eq!(fitting(&[usize::MAX, 1], 5, size), 1);
            assert_eq!(fitting::<usize>(&[], 5, size), 0);
        }
    }
}
