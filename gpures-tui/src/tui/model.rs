//! The TUI's data: what the daemon told us ([`Data`], and how a change the
//! daemon reports is applied to it), what every component may read
//! ([`Ctx`]), the calls the app makes ([`Effect`]) and what comes back
//! ([`Msg`]).

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use gpures_proto::{
    AnyBookingRequest, ApiError, Block, BookingRequest, ChangeKind, ChangeTarget, Holder,
    LoginReply, Notification, NotificationPage, Period, QueueEntry, RegisterRequest, Reservation,
    ReservationChange, ReservationStatus, Resource, ResourceStatus, Role, SlotOption, SlotQuery,
    StatusReport, UserInfo,
};
use uuid::Uuid;

/// The screens, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Login,
    Timeline,
    Mine,
    Status,
    Report,
    Admin,
}

impl Screen {
    pub fn title(self) -> &'static str {
        match self {
            Screen::Login => "Login",
            Screen::Timeline => "Timeline",
            Screen::Mine => "My reservations",
            Screen::Status => "Status",
            Screen::Report => "Report",
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
    /// The waiting queue in order, and the viewer's requests that left it
    /// in the last day.
    pub queue: Vec<QueueEntry>,
    /// The newest notifications, read or not, newest first.
    pub notifications: Vec<Notification>,
    /// Unread notifications in all.
    pub unread: u32,
    /// Maintenance blocks in `fetched`.
    pub blocks: Vec<Block>,
    /// What held GPUs really did in the past part of `fetched`.
    pub usage: Vec<gpures_proto::UsageSpan>,
    /// Lab policy and the groups (loaded for admins).
    pub policies: Vec<gpures_proto::Policy>,
    pub groups: Vec<gpures_proto::Group>,
    /// Disabled resources (loaded for admins, who can enable them again).
    pub disabled: Vec<Resource>,
    /// Where the viewer's notifications go (loaded when the settings open).
    pub notify: Option<gpures_proto::NotifySettings>,
    /// The month the Report screen shows (loaded when it opens).
    pub report: Option<gpures_proto::Report>,
}

/// How far ahead "My reservations" lists.
pub const MINE_AHEAD: TimeDelta = TimeDelta::days(60);

impl Data {
    /// Puts `changed` (each as it is now) where a reload would have put
    /// it: an active reservation in the loaded window on a shown resource
    /// in the timeline, the viewer's own active ones not over yet in
    /// "My reservations"; a cancelled one leaves both.
    pub fn apply_reservations(&mut self, changed: &[Reservation], now: DateTime<Utc>) {
        let me = self.me.as_ref().map(|m| m.id);
        for r in changed {
            let active = r.status == ReservationStatus::Active;
            self.reservations.retain(|o| o.id != r.id);
            let in_window = self
                .fetched
                .is_some_and(|w| r.period.start < w.end && w.start < r.period.end);
            let shown = self.resources.iter().any(|res| res.id == r.resource_id);
            if active && in_window && shown {
                self.reservations.push(r.clone());
            }
            self.mine.retain(|o| o.id != r.id);
            if active
                && me == Some(r.user.id)
                && r.period.end > now
                && r.period.start < now + MINE_AHEAD
            {
                self.mine.push(r.clone());
            }
        }
        // The daemon's order: start, resource name, id.
        let order = |a: &Reservation, b: &Reservation| {
            (a.period.start, &a.resource_name, a.id).cmp(&(b.period.start, &b.resource_name, b.id))
        };
        self.reservations.sort_by(order);
        self.mine.sort_by(order);
    }

    /// Replaces the status of the resources `changed` is about.
    pub fn apply_status(&mut self, changed: &[ResourceStatus]) {
        let Some(report) = &mut self.status else {
            return;
        };
        for s in changed {
            if let Some(slot) = report
                .resources
                .iter_mut()
                .find(|o| o.resource.id == s.resource.id)
            {
                *slot = s.clone();
            }
        }
    }
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

    /// Whether `r` is the viewer's own.
    pub fn owns(&self, r: &Reservation) -> bool {
        self.data.me.as_ref().is_some_and(|m| m.id == r.user.id)
    }

    /// Whether the viewer may change `r` (their own, or any as an admin).
    pub fn may_change(&self, r: &Reservation) -> bool {
        self.is_admin() || self.data.me.as_ref().is_some_and(|m| m.id == r.user.id)
    }

    /// How many GPUs of `r`'s booking are loaded and not over yet
    /// (`r` itself included).
    pub fn booking_size(&self, r: &Reservation) -> usize {
        self.data
            .reservations
            .iter()
            .filter(|o| o.booking_id == r.booking_id && o.period.end > self.now)
            .count()
            .max(1)
    }

    /// `Thu 11-26 10:00`, in the viewer's zone.
    pub fn time_text(&self, t: chrono::DateTime<chrono::Utc>) -> String {
        t.with_timezone(&self.tz)
            .format("%a %m-%d %H:%M")
            .to_string()
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
    /// Marks the notifications up to this id read.
    MarkRead(i64),
    /// Reload everything shown, with the timeline window to fetch.
    Refresh {
        window: Period,
    },
    /// Reload only these parts (a change the daemon reported as a delta).
    Reload {
        queue: bool,
        inbox: bool,
        status: bool,
    },
    Book(BookingRequest),
    Update(Uuid, ReservationChange),
    Cancel(Uuid),
    Release(Uuid),
    /// Every GPU of a booking, as one unit.
    CancelBooking(Uuid),
    ReleaseBooking(Uuid),
    Check {
        seq: u64,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    },
    /// Where "any N GPUs" would go first (the form's live preview).
    FindSlots {
        seq: u64,
        query: SlotQuery,
    },
    /// Books "any N GPUs" at the earliest start.
    BookAny(AnyBookingRequest),
    /// An admin's change of someone else's reservation, with the reason.
    ChangeWithReason {
        target: ChangeTarget,
        kind: ChangeKind,
        reason: String,
    },
    SetRole(String, Role),
    DisableUser(String),
    /// An admin sets or lifts a rule of lab policy.
    SetPolicy(gpures_proto::PolicySet),
    /// An admin changes a group.
    ChangeGroup(gpures_proto::GroupChange),
    /// An admin adds a resource.
    AddResource(gpures_proto::NewResource),
    /// An admin changes the resource called `name` (enabled or not).
    UpdateResource {
        name: String,
        update: gpures_proto::ResourceUpdate,
    },
    /// Cancels the occurrences of a series from `from` on.
    CancelSeries {
        series_id: uuid::Uuid,
        from: chrono::DateTime<chrono::Utc>,
    },
    /// Moves an occurrence of a series from `this` to `new` and every later
    /// one by the same wall-clock change in `tz`.
    EditSeries {
        series_id: uuid::Uuid,
        this: Period,
        new: Period,
        note: Option<String>,
        tz: chrono_tz::Tz,
    },
    /// An admin's decision on a booking waiting for approval.
    Decide {
        booking_id: uuid::Uuid,
        approve: bool,
        reason: Option<String>,
    },
    /// The usage report of a window (the Report screen's month).
    LoadReport(Period),
    /// Where notifications go: read, or changed and read back.
    Notify(Option<gpures_proto::NotifyChange>),
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
    /// The answer to [`Effect::LoadReport`].
    ReportLoaded(Box<gpures_proto::Report>),
    /// The answer to [`Effect::Notify`]: the settings, and whether they
    /// were changed.
    NotifyLoaded(Box<gpures_proto::NotifySettings>, bool),
    /// The notifications up to this id are read.
    Read(i64),
    /// A change of ours that needs a reload to show (accounts, policy…).
    Done(String),
    /// A change of our reservations, done: they are shown as the reply
    /// has them; the rest (their GPUs' status) comes with the change the
    /// daemon reports to every client, ours included.
    Applied {
        what: String,
        changed: Vec<Reservation>,
    },
    /// The parts [`Effect::Reload`] asked for.
    Reloaded {
        queue: Option<Vec<QueueEntry>>,
        inbox: Option<NotificationPage>,
        status: Option<StatusReport>,
    },
    Checked {
        seq: u64,
        holders: Vec<Holder>,
        /// The lab rule our booking would break, if any.
        refusal: Option<Box<gpures_proto::PolicyRefusal>>,
        /// Maintenance blocks in the way.
        blocks: Vec<Block>,
    },
    /// The answer to [`Effect::FindSlots`] number `seq`.
    SlotsFound {
        seq: u64,
        options: Vec<SlotOption>,
    },
    Failed(ApiError),
    /// The connection is gone; the sentence says why.
    Disconnected(String),
    /// The connection is back after the daemon went away.
    Reconnected,
    /// Something changed (through any client, this one too): what, or
    /// `None` when everything must be reloaded.
    Changed(Option<Box<gpures_proto::Delta>>),
    Tick(DateTime<Utc>),
    /// The terminal now shows `cols` timeline cells and `rows` resources.
    Resized {
        cols: usize,
        rows: usize,
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
    /// The waiting queue in order, and the viewer's requests that left it
    /// in the last day.
    pub queue: Vec<QueueEntry>,
    pub notifications: Vec<Notification>,
    pub unread: u32,
    /// Maintenance blocks in the window.
    pub blocks: Vec<Block>,
    /// Used and idle runs in the window's past.
    pub usage: Vec<gpures_proto::UsageSpan>,
    /// Lab policy, the groups and the disabled resources (for admins;
    /// empty for members).
    pub policies: Vec<gpures_proto::Policy>,
    pub groups: Vec<gpures_proto::Group>,
    pub disabled: Vec<Resource>,
}
