//! The daemon's configuration: [`Config`] and how it is layered.
//!
//! Built-in defaults, then the TOML file (`/etc/gpures/gpures.toml` unless
//! `--config` names another), then `GPURES_*` environment variables, then
//! command-line flags ([`Overrides`]). [`EXAMPLE`] is the documented example file
//! shipped in the package; a test below keeps it parseable and complete.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The example configuration, every key documented. Installed as the conffile.
pub const EXAMPLE: &str = include_str!("../gpures.example.toml");

/// Where the config file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/gpures/gpures.toml";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: String, reason: String },
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// A string that never prints: database URLs carry passwords.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Printed (by `check-config`) as `<redacted>`, never the value.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything the daemon and its admin commands need to know.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Unix socket the daemon serves on. `None`: `/run/gpures.sock` as root,
    /// `$XDG_RUNTIME_DIR/gpures.sock` otherwise.
    pub socket: Option<PathBuf>,
    /// Octal permission bits of the socket. 0666: identity comes from tokens
    /// and the peer uid, not from file permissions.
    pub socket_mode: String,
    /// Group of the socket, to limit gpures to one group with mode 0660.
    pub socket_group: Option<String>,
    /// Where the daemon keeps its JWT secret and the embedded PostgreSQL.
    pub state_dir: Option<PathBuf>,
    /// An external PostgreSQL. `None`: run the embedded cluster in the state dir.
    pub database_url: Option<Secret>,
    /// Where the change listener connects, when `database_url` goes through
    /// a pooler in transaction mode (`LISTEN` needs a session of its own).
    /// `None`: the same as `database_url`.
    pub database_listen_url: Option<Secret>,
    /// Host name this daemon serves; `None`: the machine's host name.
    pub host: Option<String>,
    pub booking: BookingConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub gpu: GpuConfig,
    pub calendar: CalendarConfig,
    pub notify: NotifyConfig,
    pub reclaim: ReclaimConfig,
    pub enforce: EnforceConfig,
    pub policy: PolicyConfig,
    pub usage: UsageConfig,
    pub feeds: FeedsConfig,
}

/// iCalendar feeds for calendars that are not Google: `lab.ics` and
/// `users/<unix user>.ics` in `dir`, kept up to date on every change.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedsConfig {
    /// The folder (for a web server or a sync client to serve); `None`: off.
    pub dir: Option<PathBuf>,
    /// Days of past reservations the feeds keep.
    pub past_days: u32,
    /// Days ahead the feeds reach.
    pub ahead_days: u32,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        FeedsConfig {
            dir: None,
            past_days: 30,
            ahead_days: 180,
        }
    }
}

/// Usage accounting (`gpures report`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// Days the per-minute rows are kept; hourly rollups and per-booking
    /// totals are kept forever.
    pub keep_minutes_days: u32,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            keep_minutes_days: 90,
        }
    }
}

/// Lab policy for everyone, until an admin sets a rule for everyone in the
/// database (`gpures admin policy set`), which replaces the same rule here.
/// Absent: no limit. Groups and members get their own rules in the database.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// GPUs one member holds at any one moment.
    pub max_gpus: Option<u32>,
    /// GPU-hours one member may book in any 7 days.
    pub gpu_hours_week: Option<f64>,
    /// Longest single reservation, in hours (below `booking.max_days`).
    pub max_length_hours: Option<f64>,
    /// How far ahead a reservation may end, in days (below
    /// `booking.horizon_days`).
    pub horizon_days: Option<f64>,
    /// Bookings not yet over that one member may have.
    pub max_future: Option<u32>,
    /// Hours after a long reservation in which its owner starts no other.
    pub cooldown_hours: Option<f64>,
    /// How many hours make a reservation long (with `cooldown_hours`).
    pub cooldown_after_hours: Option<f64>,
}

impl PolicyConfig {
    /// The rules as everyone's defaults (id 0).
    pub fn rules(&self) -> Vec<gpures_proto::Policy> {
        use gpures_proto::{Policy, PolicyRule, PolicyScope};
        let minutes = |hours: f64| (hours * 60.0).round() as i64;
        let mut out = Vec::new();
        let mut push = |rule, value: Option<i64>, threshold| {
            if let Some(value) = value {
                out.push(Policy {
                    id: 0,
                    rule,
                    scope: PolicyScope::Everyone,
                    host: None,
                    value,
                    threshold,
                });
            }
        };
        push(PolicyRule::MaxGpus, self.max_gpus.map(i64::from), None);
        push(
            PolicyRule::GpuHoursWeek,
            self.gpu_hours_week.map(minutes),
            None,
        );
        push(
            PolicyRule::MaxLength,
            self.max_length_hours.map(minutes),
            None,
        );
        push(
            PolicyRule::Horizon,
            self.horizon_days.map(|d| minutes(d * 24.0)),
            None,
        );
        push(PolicyRule::MaxFuture, self.max_future.map(i64::from), None);
        push(
            PolicyRule::Cooldown,
            self.cooldown_hours.map(minutes),
            self.cooldown_after_hours.map(minutes),
        );
        out
    }
}

/// Acting on processes that run on GPUs their owner does not hold.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnforceConfig {
    /// `off` (not even told), `warn` (the owner and the holder are told),
    /// `stop` (SIGSTOP after the grace, SIGCONT once the GPU is theirs or
    /// free) or `kill` (SIGTERM after the grace, SIGKILL 10 s later).
    pub mode: String,
    /// Minutes a process may run unreserved before it is acted on.
    pub grace_minutes: f64,
    /// Minutes after a booking ends that its owner's processes on its GPUs
    /// are left alone; after that they are unreserved use (also on a GPU
    /// nobody holds now).
    pub overrun_grace_minutes: f64,
    /// Unix users never acted on (root and system users never are).
    pub exempt_users: Vec<String>,
    /// Also act on processes on GPUs nobody holds.
    pub unheld: bool,
    /// Log what would be done, send no signal.
    pub dry_run: bool,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        EnforceConfig {
            mode: "warn".to_owned(),
            grace_minutes: 10.0,
            overrun_grace_minutes: 10.0,
            exempt_users: Vec::new(),
            unheld: false,
            dry_run: false,
        }
    }
}

/// Notifications beyond each member's inbox: a lab webhook and email.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// A Slack-compatible incoming webhook for the whole lab.
    pub lab_webhook_url: Option<Secret>,
    /// The kinds posted to the lab webhook (`gpures notify --kinds` lists them).
    pub lab_events: Vec<String>,
    /// Minutes before a booking starts or ends that its owner is told.
    pub remind_minutes: u32,
    /// Whether members may set a webhook of their own.
    pub member_webhooks: bool,
    pub smtp: SmtpConfig,
    /// Test only: the first retry's delay in milliseconds (it doubles up to
    /// 10 minutes). Default 1000.
    pub retry_base_ms: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            lab_webhook_url: None,
            lab_events: [
                "granted",
                "reclaimed",
                "runs-on-yours",
                "action-taken",
                "admin-changed",
            ]
            .map(String::from)
            .to_vec(),
            remind_minutes: 10,
            member_webhooks: true,
            smtp: SmtpConfig::default(),
            retry_base_ms: 1000,
        }
    }
}

/// Email over SMTP, for members who turn it on (`gpures notify --email on`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub enabled: bool,
    /// The relay; usually the host's own MTA.
    pub host: String,
    pub port: u16,
    /// `none` (a local relay), `starttls` or `tls`.
    pub security: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sender, e.g. `gpures <gpures@lab.example>`.
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            enabled: false,
            host: "localhost".to_owned(),
            port: 25,
            security: "none".to_owned(),
            username: None,
            password: None,
            from: "gpures <gpures@localhost>".to_owned(),
        }
    }
}

/// Idle reclaim: releasing running bookings nobody uses. Off by default.
/// Fractions of minutes are allowed (tests use seconds).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReclaimConfig {
    pub enabled: bool,
    /// Log what would be done, do nothing (no warning, no release).
    pub dry_run: bool,
    /// Minutes without a qualifying process of the owner before the warning.
    pub idle_minutes: f64,
    /// Minutes after the start before idleness counts at all.
    pub startup_grace_minutes: f64,
    /// A booking whose owner never ran anything on it is warned this many
    /// minutes after its start (a no-show).
    pub no_show_minutes: f64,
    /// Minutes between the warning and the release; `gpures keep ID` stops it.
    pub warn_minutes: f64,
    /// How long `gpures keep` protects a booking, in minutes.
    pub keep_minutes: f64,
    /// Processes using less GPU memory than this (MiB) do not count as use.
    pub memory_floor_mib: u64,
    /// Process names that never count as use (desktop sessions, monitors).
    pub ignore_processes: Vec<String>,
}

impl Default for ReclaimConfig {
    fn default() -> Self {
        ReclaimConfig {
            enabled: false,
            dry_run: false,
            idle_minutes: 60.0,
            startup_grace_minutes: 15.0,
            no_show_minutes: 30.0,
            warn_minutes: 15.0,
            keep_minutes: 240.0,
            memory_floor_mib: 256,
            ignore_processes: ["Xorg", "gnome-shell", "nvtop", "nvidia-smi"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Google Calendar sync (one way: the daemon is the calendar's only writer).
/// The same names as the web design it replaces, as environment variables:
/// `GOOGLE_CALENDAR_ENABLED`, `GOOGLE_SERVICE_ACCOUNT_FILE`, `GOOGLE_CALENDAR_ID`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarConfig {
    pub enabled: bool,
    /// The service account's JSON key; relative to the config file's folder.
    pub service_account_file: Option<PathBuf>,
    /// The calendar to write (Settings and sharing → Integrate calendar).
    pub calendar_id: Option<String>,
    /// Client-side rate limit on writes.
    pub writes_per_sec: f64,
    /// Seconds between reconciliations of the coming two weeks.
    pub reconcile_interval_secs: u64,
    /// Seconds a call to Google may take.
    pub request_timeout_secs: u64,
    /// Test only: where the Calendar API is (default Google's). The token
    /// endpoint comes from the key file's `token_uri`.
    pub api_base_url: Option<String>,
    /// Test only: the first retry's delay in milliseconds (it doubles up to
    /// 5 minutes). Default 1000.
    pub retry_base_ms: u64,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            enabled: false,
            service_account_file: None,
            calendar_id: None,
            writes_per_sec: 5.0,
            reconcile_interval_secs: 3600,
            request_timeout_secs: 10,
            api_base_url: None,
            retry_base_ms: 1000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// `auto` (NVML, else nvidia-smi, else none), `nvml`, `nvidia-smi`, `none`.
    pub backend: crate::gpu::BackendChoice,
    /// Seconds between samples.
    pub sample_interval_secs: u64,
    /// The nvidia-smi program (a name is looked up on PATH).
    pub nvidia_smi: PathBuf,
    /// Minutes without a process before a running reservation is flagged idle.
    pub idle_minutes: u32,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            backend: crate::gpu::BackendChoice::Auto,
            sample_interval_secs: 5,
            nvidia_smi: PathBuf::from("nvidia-smi"),
            idle_minutes: 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookingConfig {
    /// Longest reservation members may make, in days.
    pub max_days: u32,
    /// How far in the past a member's booking may start, in minutes: covers the
    /// time between filling in "now" and pressing Enter.
    pub past_grace_minutes: u32,
    /// How far ahead a member may book, in days (admins may go further).
    pub horizon_days: u32,
}

impl Default for BookingConfig {
    fn default() -> Self {
        BookingConfig {
            max_days: 14,
            past_grace_minutes: 5,
            horizon_days: 90,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Peer sign-in: a Unix user bound to exactly one active account is
    /// signed in by the connection itself, no token or password needed. Off:
    /// every member logs in with a password.
    pub peer_login: bool,
    /// A session unused this many days ends (each use moves the end).
    pub session_idle_days: u32,
    /// A session ends this many days after its login, however often used.
    pub session_max_days: u32,
    /// Replaced by `session_idle_days`; accepted so that old files still
    /// load, and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ttl_hours: Option<u32>,
    /// Accounts one Unix user may register: 1 makes the Unix account the
    /// person (a disabled account then also keeps its Unix user from
    /// registering again); raise it for a shared lab account.
    pub accounts_per_unix_user: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            peer_login: true,
            session_idle_days: 30,
            session_max_days: 365,
            token_ttl_hours: None,
            accounts_per_unix_user: 1,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open connections across all users; further ones are closed at once.
    pub max_connections: usize,
    /// Open connections of one Unix user, so one user cannot starve others.
    pub max_connections_per_user: usize,
    /// Database connections this daemon opens at most (it opens them as
    /// calls need them).
    pub db_pool_size: u32,
    /// Seconds an unused database connection is kept before it is closed,
    /// so an idle daemon holds almost none.
    pub db_idle_secs: u64,
    /// Seconds a frame may take once its first byte arrived; a peer that
    /// sends half a frame and waits is disconnected after this.
    pub frame_timeout_secs: u64,
    /// Calls one connection may have in flight; further frames wait unread.
    pub max_calls_per_connection: usize,
    /// Calls one Unix user may have in flight over all their connections, so
    /// that one user never holds more than this many database connections.
    pub max_calls_per_user: usize,
    /// Calls of one Unix user that run at once while another Unix user is
    /// connected; unset, half the host's cores (at least one), so that the
    /// work done for one member never fills every core. See
    /// [`LimitsConfig::shared_calls`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_calls_per_user: Option<usize>,
    /// Password checks of one Unix user that may wait for a hashing thread;
    /// more are answered `RateLimited` at once.
    pub hash_queue_per_user: usize,
    /// Failed password checks (logins, password changes, reset codes) one
    /// Unix user may make per minute over every email; more are answered
    /// `RateLimited` before any hashing.
    pub failed_logins_per_minute: u32,
}

impl LimitsConfig {
    /// The calls one Unix user runs at once while another is connected:
    /// `shared_calls_per_user`, or half the host's cores, and never more
    /// than `max_calls_per_user`.
    pub fn shared_calls(&self) -> usize {
        self.shared_calls_per_user
            .unwrap_or_else(crate::host::unix::half_the_cores)
            .clamp(1, self.max_calls_per_user.max(1))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 1024,
            max_connections_per_user: 64,
            db_pool_size: 16,
            db_idle_secs: 60,
            frame_timeout_secs: 10,
            max_calls_per_connection: 32,
            max_calls_per_user: 8,
            shared_calls_per_user: None,
            hash_queue_per_user: 4,
            failed_logins_per_minute: 30,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: None,
            socket_mode: "0666".to_owned(),
            socket_group: None,
            state_dir: None,
            database_url: None,
            database_listen_url: None,
            host: None,
            booking: BookingConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            gpu: GpuConfig::default(),
            calendar: CalendarConfig::default(),
            notify: NotifyConfig::default(),
            reclaim: ReclaimConfig::default(),
            enforce: EnforceConfig::default(),
            policy: PolicyConfig::default(),
            usage: UsageConfig::default(),
            feeds: FeedsConfig::default(),
        }
    }
}

/// Values from command-line flags; they win over everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub database_url: Option<Secret>,
    pub host: Option<String>,
}

impl Config {
    /// The configuration as TOML, in the shape of the example file; the
    /// database URL is `<redacted>`.
    ///
    /// # Errors
    /// A value TOML cannot hold (none today).
    pub fn to_toml(&self) -> std::result::Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Builds the configuration from the file, the environment and `flags`.
    ///
    /// # Errors
    /// A config file named by `--config` that cannot be read, a file that is
    /// not valid TOML or has unknown keys, or an invalid value.
    pub fn load(flags: &Overrides) -> Result<Config> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let explicit = flags
            .config
            .clone()
            .or_else(|| env("GPURES_CONFIG").map(PathBuf::from));
        let path = explicit
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut c = Config::parse(&text, &path)?;
                // A relative key path is relative to the config file's folder.
                if let (Some(key), Some(dir)) = (&c.calendar.service_account_file, path.parent())
                    && key.is_relative()
                {
                    c.calendar.service_account_file = Some(dir.join(key));
                }
                c
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                Config::default()
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        if let Some(v) = env("GPURES_SOCKET") {
            config.socket = Some(v.into());
        }
        if let Some(v) = env("GPURES_SOCKET_MODE") {
            config.socket_mode = v;
        }
        if let Some(v) = env("GPURES_SOCKET_GROUP") {
            config.socket_group = Some(v);
        }
        if let Some(v) = env("GPURES_STATE_DIR") {
            config.state_dir = Some(v.into());
        }
        if let Some(v) = env("GPURES_DATABASE_URL") {
            config.database_url = Some(Secret::new(v));
        }
        if let Some(v) = env("GPURES_DATABASE_LISTEN_URL") {
            config.database_listen_url = Some(Secret::new(v));
        }
        if let Some(v) = env("GPURES_HOST") {
            config.host = Some(v);
        }
        if let Some(v) = env("GOOGLE_CALENDAR_ENABLED") {
            config.calendar.enabled =
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = env("GOOGLE_SERVICE_ACCOUNT_FILE") {
            config.calendar.service_account_file = Some(v.into());
        }
        if let Some(v) = env("GOOGLE_CALENDAR_ID") {
            config.calendar.calendar_id = Some(v);
        }
        if let Some(v) = &flags.socket {
            config.socket = Some(v.clone());
        }
        if let Some(v) = &flags.state_dir {
            config.state_dir = Some(v.clone());
        }
        if let Some(v) = &flags.database_url {
            config.database_url = Some(v.clone());
        }
        if let Some(v) = &flags.host {
            config.host = Some(v.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses a config file's text; `path` is only for messages.
    ///
    /// # Errors
    /// Invalid TOML, unknown keys or wrong types.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    fn validate(&self) -> Result<()> {
        self.socket_mode_bits()?;
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };
        for (key, hours) in [
            ("policy.gpu_hours_week", self.policy.gpu_hours_week),
            ("policy.max_length_hours", self.policy.max_length_hours),
            ("policy.horizon_days", self.policy.horizon_days),
            ("policy.cooldown_hours", self.policy.cooldown_hours),
            (
                "policy.cooldown_after_hours",
                self.policy.cooldown_after_hours,
            ),
        ] {
            if hours.is_some_and(|h| !h.is_finite() || !(0.0..=87_840.0).contains(&h)) {
                return invalid(key, "must be a number from 0 to 87840 (ten years of hours)");
            }
        }
        if self.policy.cooldown_hours.is_some() != self.policy.cooldown_after_hours.is_some() {
            return invalid(
                "policy.cooldown_hours",
                "set cooldown_hours and cooldown_after_hours together",
            );
        }
        if self
            .policy
            .cooldown_after_hours
            .is_some_and(|h| h * 60.0 < 1.0)
        {
            return invalid("policy.cooldown_after_hours", "must be at least a minute");
        }
        if self.feeds.past_days.saturating_add(self.feeds.ahead_days) > 400 {
            return invalid(
                "feeds.ahead_days",
                "past_days and ahead_days add up to at most 400",
            );
        }
        if !(1..=3660).contains(&self.usage.keep_minutes_days) {
            return invalid("usage.keep_minutes_days", "must be from 1 to 3660");
        }
        if self.booking.max_days == 0 {
            return invalid("booking.max_days", "must be at least 1");
        }
        if self.auth.accounts_per_unix_user == 0 {
            return invalid("auth.accounts_per_unix_user", "must be at least 1");
        }
        if self.booking.horizon_days == 0 {
            return invalid("booking.horizon_days", "must be at least 1");
        }
        if self.limits.max_calls_per_connection == 0
            || self.limits.max_calls_per_user == 0
            || self.limits.shared_calls_per_user == Some(0)
            || self.limits.hash_queue_per_user == 0
            || self.limits.failed_logins_per_minute == 0
        {
            return invalid(
                "limits",
                "max_calls_per_connection, max_calls_per_user, shared_calls_per_user, hash_queue_per_user and failed_logins_per_minute must be at least 1",
            );
        }
        if self.auth.session_idle_days == 0
            || self.auth.session_max_days < self.auth.session_idle_days
        {
            return invalid(
                "auth",
                "session_idle_days must be at least 1 and session_max_days at least as long",
            );
        }
        if self.limits.max_connections == 0 || self.limits.max_connections_per_user == 0 {
            return invalid("limits", "connection limits must be at least 1");
        }
        if self.calendar.writes_per_sec.is_nan() || self.calendar.writes_per_sec <= 0.0 {
            return invalid("calendar.writes_per_sec", "must be more than 0");
        }
        if self.gpu.sample_interval_secs == 0 {
            return invalid("gpu.sample_interval_secs", "must be at least 1");
        }
        for kind in &self.notify.lab_events {
            if gpures_proto::NotificationKind::parse(kind).is_none() {
                return invalid(
                    "notify.lab_events",
                    "an unknown kind (gpures notify --kinds lists them)",
                );
            }
        }
        if !matches!(
            self.notify.smtp.security.as_str(),
            "none" | "starttls" | "tls"
        ) {
            return invalid(
                "notify.smtp.security",
                "must be \"none\", \"starttls\" or \"tls\"",
            );
        }
        if !matches!(self.enforce.mode.as_str(), "off" | "warn" | "stop" | "kill") {
            return invalid(
                "enforce.mode",
                "must be \"off\", \"warn\", \"stop\" or \"kill\"",
            );
        }
        if !self.enforce.grace_minutes.is_finite()
            || self.enforce.grace_minutes < 0.0
            || self.enforce.grace_minutes > 525_600.0
        {
            return invalid("enforce.grace_minutes", "must be between 0 and a year");
        }
        if !self.enforce.overrun_grace_minutes.is_finite()
            || self.enforce.overrun_grace_minutes < 0.0
            || self.enforce.overrun_grace_minutes > 1440.0
        {
            return invalid(
                "enforce.overrun_grace_minutes",
                "must be between 0 and a day",
            );
        }
        let r = &self.reclaim;
        if [
            r.idle_minutes,
            r.startup_grace_minutes,
            r.no_show_minutes,
            r.warn_minutes,
            r.keep_minutes,
        ]
        .iter()
        .any(|m| !m.is_finite() || *m < 0.0 || *m > 525_600.0)
        {
            return invalid("reclaim", "the minutes must be between 0 and a year");
        }
        if self.limits.db_pool_size < 2 {
            return invalid(
                "limits.db_pool_size",
                "must be at least 2 (one is kept for LISTEN)",
            );
        }
        Ok(())
    }

    /// The socket's permission bits.
    ///
    /// # Errors
    /// `socket_mode` is not an octal number of at most 0777.
    pub fn socket_mode_bits(&self) -> Result<u32> {
        match u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8) {
            Ok(bits) if bits <= 0o777 => Ok(bits),
            _ => Err(ConfigError::Invalid {
                key: "socket_mode".to_owned(),
                reason: format!(
                    "{:?} is not an octal mode such as \"0666\"",
                    self.socket_mode
                ),
            }),
        }
    }

    /// The state directory in force.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            // A relative dir is relative to where the command was started.
            return std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        }
        // Set by systemd's StateDirectory= (the unit runs as user gpures).
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        if crate::host::unix::euid() == 0 {
            return PathBuf::from("/var/lib/gpures");
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("gpures")
    }

    /// The socket path in force.
    pub fn socket_path(&self) -> PathBuf {
        if let Some(socket) = &self.socket {
            return socket.clone();
        }
        gpures_proto::paths::daemon_socket(crate::host::unix::euid() == 0)
    }

    /// The host name in force.
    pub fn host_name(&self) -> String {
        self.host
            .clone()
            .unwrap_or_else(crate::host::unix::system_host_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_config_prints_toml_that_reads_back_without_secrets() {
        let mut config = Config {
            database_url: Some(Secret::new("postgres://gpures:hunter2@db/gpures")),
            ..Config::default()
        };
        config.calendar.calendar_id = Some("lab@group.calendar.google.com".into());
        let text = config.to_toml().expect("toml");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("database_url = \"<redacted>\""), "{text}");
        assert!(text.contains("[calendar]"), "{text}");
        let back = Config::parse(&text, Path::new("printed.toml")).expect("reads back");
        assert_eq!(back.calendar.calendar_id, config.calendar.calendar_id);
        assert_eq!(
            back.limits.max_calls_per_user,
            config.limits.max_calls_per_user
        );
    }

    #[test]
    fn policy_defaults_come_from_the_file_and_bad_ones_are_named() {
        let ok = Config::parse(
            "[policy]\nmax_gpus = 2\ngpu_hours_week = 48\ncooldown_hours = 12\ncooldown_after_hours = 24\n",
            Path::new("p.toml"),
        )
        .expect("parses");
        ok.validate().expect("valid");
        let rules = ok.policy.rules();
        let find = |r| {
            rules
                .iter()
                .find(|p| p.rule == r)
                .map(|p| (p.value, p.threshold))
        };
        use gpures_proto::PolicyRule as R;
        assert_eq!(find(R::MaxGpus), Some((2, None)));
        assert_eq!(find(R::GpuHoursWeek), Some((48 * 60, None)));
        assert_eq!(find(R::Cooldown), Some((12 * 60, Some(24 * 60))));
        assert_eq!(find(R::MaxFuture), None, "absent: no limit");
        for bad in [
            "[policy]\ncooldown_hours = 12\n",
            "[policy]\ngpu_hours_week = -1\n",
            "[policy]\nhorizon_days = nan\n",
        ] {
            let c = Config::parse(bad, Path::new("p.toml")).expect("parses");
            let e = c.validate().expect_err(bad);
            assert!(e.to_string().contains("policy."), "{e}");
        }
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let parsed =
            Config::parse(EXAMPLE, Path::new("gpures.example.toml")).expect("example parses");
        parsed.validate().expect("example is valid");
        let defaults = Config::default();
        assert_eq!(parsed.socket_mode, defaults.socket_mode);
        assert_eq!(parsed.booking.max_days, defaults.booking.max_days);
        assert_eq!(parsed.auth.peer_login, defaults.auth.peer_login);
        assert_eq!(
            parsed.auth.session_idle_days,
            defaults.auth.session_idle_days
        );
        assert_eq!(parsed.auth.session_max_days, defaults.auth.session_max_days);
        assert_eq!(
            parsed.limits.max_connections,
            defaults.limits.max_connections
        );
        assert_eq!(
            parsed.limits.failed_logins_per_minute,
            defaults.limits.failed_logins_per_minute
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err =
            Config::parse("sokcet = \"/tmp/x\"\n", Path::new("x.toml")).expect_err("typo refused");
        assert!(err.to_string().contains("sokcet"), "{err}");
    }

    #[test]
    fn socket_mode_must_be_octal() {
        let mut c = Config::default();
        assert_eq!(c.socket_mode_bits().expect("default"), 0o666);
        c.socket_mode = "0660".into();
        assert_eq!(c.socket_mode_bits().expect("0660"), 0o660);
        c.socket_mode = "rw-rw-rw-".into();
        assert!(c.socket_mode_bits().is_err());
        c.socket_mode = "01777".into();
        assert!(c.socket_mode_bits().is_err());
    }

    #[test]
    fn database_url_never_prints() {
        let c = Config {
            database_url: Some(Secret::new("postgres://u:hunter2@db/gpures")),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
