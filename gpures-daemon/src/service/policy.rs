//! Lab policy: groups, the rules admins set, and the check every booking,
//! edit, extension and queue grant passes inside its own transaction.
//!
//! Which rule applies: rules are kept per rule and host scope (a rule for
//! one host is a limit of its own besides the one for every host). Within
//! one, a member's own rule wins; else the most generous of their groups'
//! rules; else the rule for everyone; else the default from `gpures.toml`
//! (`[policy]`, every host only).
//!
//! Why it cannot be squeezed: every booking transaction first calls
//! [`lock_member`], which locks the member's `users` row, so two bookings of
//! one member, on any daemon of one database, [`check`] their quotas one
//! after the other, each seeing what the other committed.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{
    Group, GroupChange, Period, Policy, PolicyRefusal, PolicyRule, PolicyScope, PolicySet,
    PolicyTarget, UserRef,
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Actor, Entity, Error, Result, Service, audit_by, validate};
use crate::store::audit::{self, AuditAction, Target};
use crate::store::policy::{self as store, Held, RuleKey, RuleRow};
use crate::store::{self as db, StoreError};

/// Longest span a rule's value may have: ten years of minutes.
const MAX_MINUTES: i64 = 10 * 366 * 24 * 60;
/// Largest count a rule may have.
const MAX_COUNT: i64 = 10_000;

/// One limit in force for a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub rule: PolicyRule,
    pub scope: PolicyScope,
    pub host: Option<String>,
    pub value: i64,
    pub threshold: Option<i64>,
}

/// One reservation a booking or change would make: its booking (`None`: a
/// new one), host and period.
#[derive(Clone, Debug)]
pub struct Proposed {
    pub booking: Option<Uuid>,
    pub host: String,
    pub period: Period,
}

impl Service {
    /// Every rule in force: the database's, then the configured defaults
    /// that no database rule for everyone replaces.
    ///
    /// # Errors
    /// Store failures.
    pub async fn policies(&self, _actor: &Actor) -> Result<Vec<Policy>> {
        let mut conn = self.store().acquire().await?;
        let rows = store::all_rules(&mut conn).await?;
        let mut out: Vec<Policy> = rows.iter().filter_map(policy_of).collect();
        for d in &self.settings().policy {
            let replaced = out
                .iter()
                .any(|p| p.rule == d.rule && p.scope == PolicyScope::Everyone && p.host.is_none());
            if !replaced {
                out.push(d.clone());
            }
        }
        out.sort_by(|a, b| a.rule.cmp(&b.rule).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Sets or removes one rule (admins), audited.
    ///
    /// # Errors
    /// Not allowed, an unknown group or member, an invalid value, store
    /// failures.
    pub async fn set_policy(&self, actor: &Actor, set: PolicySet) -> Result<Vec<Policy>> {
        actor.require_admin()?;
        let host = match set.host.as_deref().map(str::trim) {
            Some("") | None => None,
            Some(h) => {
                validate::lookup_text("host", h)?;
                Some(h.to_owned())
            }
        };
        if let Some(v) = set.value {
            let max = if set.rule.is_count() {
                MAX_COUNT
            } else {
                MAX_MINUTES
            };
            if !(0..=max).contains(&v) {
                return Err(Error::invalid(
                    "value",
                    format!("must lie between 0 and {max}"),
                ));
            }
        }
        let threshold = match (set.rule, set.threshold, set.value) {
            (PolicyRule::Cooldown, Some(t), _) if (1..=MAX_MINUTES).contains(&t) => Some(t),
            (PolicyRule::Cooldown, _, Some(_)) => {
                return Err(Error::invalid(
                    "after",
                    "a cooldown needs the length that makes a reservation long (--after 24h)",
                ));
            }
            (PolicyRule::Cooldown, _, None) => None,
            (_, Some(_), _) => {
                return Err(Error::invalid("after", "only a cooldown takes --after"));
            }
            (_, None, _) => None,
        };
        let mut tx = self.store().begin().await?;
        let (scope, group_id, user_id) = match &set.target {
            PolicyTarget::Everyone => ("everyone", None, None),
            PolicyTarget::Group(name) => {
                validate::lookup_text("group", name)?;
                let g = store::group_by_name(&mut tx, name)
                    .await
                    .map_err(Error::not_found(Entity::Group))?;
                ("group", Some(g.id), None)
            }
            PolicyTarget::User(email) => {
                validate::lookup_text("user", email)?;
                let u = db::users::by_email(&mut tx, email)
                    .await
                    .map_err(Error::not_found(Entity::User))?;
                ("user", None, Some(u.id))
            }
        };
        let key = RuleKey {
            rule: set.rule.as_str(),
            scope,
            group_id,
            user_id,
            host: host.as_deref(),
        };
        let detail = match set.value {
            Some(v) => {
                store::upsert_rule(&mut tx, key, v, threshold).await?;
                format!(
                    "{} = {} for {}{}",
                    set.rule,
                    set.rule.format_value(v),
                    target_name(&set.target),
                    host.as_deref()
                        .map(|h| format!(" on {h}"))
                        .unwrap_or_default()
                )
            }
            None => {
                if !store::delete_rule(&mut tx, key).await? {
                    return Err(Error::NotFound(Entity::Policy));
                }
                format!(
                    "{} removed for {}{}",
                    set.rule,
                    target_name(&set.target),
                    host.as_deref()
                        .map(|h| format!(" on {h}"))
                        .unwrap_or_default()
                )
            }
        };
        let name = actor.audit_name();
        let target = Target {
            user: user_id,
            ..Target::default()
        };
        audit::record_with(
            &mut tx,
            audit_by(actor, &name),
            AuditAction::PolicySet,
            target,
            Some(&detail),
        )
        .await?;
        db::notify(&mut tx, &db::Changed::Everything).await?;
        tx.commit().await?;
        self.policies(actor).await
    }

    /// Every group with its members.
    ///
    /// # Errors
    /// Store failures.
    pub async fn groups(&self, _actor: &Actor) -> Result<Vec<Group>> {
        let mut conn = self.store().acquire().await?;
        let groups = store::groups(&mut conn).await?;
        let members = store::members(&mut conn).await?;
        Ok(groups
            .into_iter()
            .map(|g| Group {
                members: members
                    .iter()
                    .filter(|m| m.0 == g.id)
                    .map(|(_, id, email, display_name)| UserRef {
                        id: *id,
                        email: email.clone(),
                        display_name: display_name.clone(),
                    })
                    .collect(),
                name: g.name,
                description: g.description,
            })
            .collect())
    }

    /// Creates or deletes a group, or adds or removes a member (admins),
    /// audited. Returns the group as it is now (as it was, when deleted).
    ///
    /// # Errors
    /// Not allowed, an unknown group or member, a taken name, store failures.
    pub async fn change_group(&self, actor: &Actor, change: GroupChange) -> Result<Group> {
        actor.require_admin()?;
        let mut tx = self.store().begin().await?;
        let name = actor.audit_name();
        let (group_name, detail, user) = match &change {
            GroupChange::Create { name, description } => {
                let name = validate::group_name(name)?;
                let description = validate::description(description)?;
                store::create_group(&mut tx, &name, &description)
                    .await
                    .map_err(Error::duplicate("name", "a group of this name exists"))?;
                (name.clone(), format!("group {name} created"), None)
            }
            GroupChange::Delete { name } => {
                let g = group(&mut tx, name).await?;
                store::delete_group(&mut tx, g.id).await?;
                (g.name.clone(), format!("group {} deleted", g.name), None)
            }
            GroupChange::AddMember { name, email } | GroupChange::RemoveMember { name, email } => {
                let g = group(&mut tx, name).await?;
                validate::lookup_text("user", email)?;
                let u = db::users::by_email(&mut tx, email)
                    .await
                    .map_err(Error::not_found(Entity::User))?;
                let add = matches!(change, GroupChange::AddMember { .. });
                let changed = if add {
                    store::add_member(&mut tx, g.id, u.id).await?
                } else {
                    store::remove_member(&mut tx, g.id, u.id).await?
                };
                if !changed {
                    let reason = if add {
                        "is a member already"
                    } else {
                        "is not a member"
                    };
                    return Err(Error::invalid("user", format!("{} {reason}", u.email)));
                }
                let verb = if add { "added to" } else { "removed from" };
                (
                    g.name.clone(),
                    format!("{} {verb} group {}", u.email, g.name),
                    Some(u.id),
                )
            }
        };
        let target = Target {
            user,
            ..Target::default()
        };
        audit::record_with(
            &mut tx,
            audit_by(actor, &name),
            AuditAction::GroupChange,
            target,
            Some(&detail),
        )
        .await?;
        db::notify(&mut tx, &db::Changed::Everything).await?;
        tx.commit().await?;
        if let GroupChange::Delete { .. } = change {
            return Ok(Group {
                name: group_name,
                description: String::new(),
                members: Vec::new(),
            });
        }
        self.groups(actor)
            .await?
            .into_iter()
            .find(|g| g.name.eq_ignore_ascii_case(&group_name))
            .ok_or(Error::NotFound(Entity::Group))
    }
}

async fn group(conn: &mut PgConnection, name: &str) -> Result<store::GroupRow> {
    validate::lookup_text("group", name)?;
    store::group_by_name(conn, name)
        .await
        .map_err(Error::not_found(Entity::Group))
}

fn target_name(t: &PolicyTarget) -> String {
    match t {
        PolicyTarget::Everyone => "everyone".into(),
        PolicyTarget::Group(g) => format!("group {g}"),
        PolicyTarget::User(u) => u.clone(),
    }
}

/// A stored rule for the wire (`None` for a rule name this daemon does not
/// know, which the schema's CHECK makes impossible).
fn policy_of(row: &RuleRow) -> Option<Policy> {
    Some(Policy {
        id: row.id,
        rule: PolicyRule::parse(&row.rule)?,
        scope: scope_of(row)?,
        host: row.host.clone(),
        value: row.value,
        threshold: row.threshold,
    })
}

fn scope_of(row: &RuleRow) -> Option<PolicyScope> {
    match row.scope.as_str() {
        "everyone" => Some(PolicyScope::Everyone),
        "group" => Some(PolicyScope::Group(row.group_name.clone()?)),
        "user" => Some(PolicyScope::User(row.user()?)),
        _ => None,
    }
}

/// The limits in force for one member, from the rules that apply to them
/// and the configured defaults (see the module's documentation).
pub fn effective(rows: &[RuleRow], defaults: &[Policy]) -> Vec<Limit> {
    // Rank: 3 own, 2 group, 1 everyone, 0 default.
    let mut best: BTreeMap<(PolicyRule, Option<String>), (u8, Limit)> = BTreeMap::new();
    let candidates = rows
        .iter()
        .filter_map(policy_of)
        .chain(defaults.iter().cloned().map(|mut d| {
            d.id = 0;
            d
        }));
    for p in candidates {
        let rank = match (&p.scope, p.id) {
            (PolicyScope::User(_), _) => 3,
            (PolicyScope::Group(_), _) => 2,
            (PolicyScope::Everyone, 0) => 0,
            (PolicyScope::Everyone, _) => 1,
        };
        let limit = Limit {
            rule: p.rule,
            scope: p.scope,
            host: p.host,
            value: p.value,
            threshold: p.threshold,
        };
        let key = (limit.rule, limit.host.clone());
        let replace = match best.get(&key) {
            None => true,
            Some((r, _)) if rank > *r => true,
            Some((r, current)) if rank == *r && rank == 2 => more_generous(&limit, current),
            Some(_) => false,
        };
        if replace {
            best.insert(key, (rank, limit));
        }
    }
    best.into_values().map(|(_, l)| l).collect()
}

/// Of two group rules, the one that lets the member do more.
fn more_generous(a: &Limit, b: &Limit) -> bool {
    match a.rule {
        PolicyRule::Cooldown => a.value < b.value,
        _ => a.value > b.value,
    }
}

/// Minutes in `d`, rounded up.
fn minutes_up(d: TimeDelta) -> i64 {
    (d.num_seconds() + 59).div_euclid(60)
}

fn overlap(a: Period, b: Period) -> TimeDelta {
    let start = a.start.max(b.start);
    let end = a.end.min(b.end);
    (end - start).max(TimeDelta::zero())
}

/// What counts against a limit: one reservation already held or proposed.
#[derive(Clone, Debug)]
struct Item {
    booking: Option<Uuid>,
    period: Period,
    proposed: bool,
}

/// A member's bookings not over yet, on one host or all (`host: None`).
#[derive(Clone, Debug)]
pub struct Open {
    pub host: Option<String>,
    pub count: i64,
    /// When the first of them is over.
    pub first_end: Option<DateTime<Utc>>,
}

/// What the member holds that the limits count: reservations around the
/// proposal, and bookings not over yet (for max-future).
#[derive(Clone, Debug, Default)]
pub struct Counted {
    pub held: Vec<Held>,
    pub open: Vec<Open>,
}

/// The first limit `proposed` would break, given what the member holds.
/// `new_booking`: the proposal is a booking of its own (counted against
/// max-future), not a change of one.
pub fn evaluate(
    limits: &[Limit],
    counted: &Counted,
    proposed: &[Proposed],
    new_booking: bool,
    now: DateTime<Utc>,
) -> Option<PolicyRefusal> {
    limits
        .iter()
        .find_map(|limit| evaluate_one(limit, counted, proposed, new_booking, now, true))
}

/// How far ahead [`free_again`] looks.
const FREE_AGAIN_WITHIN: TimeDelta = TimeDelta::days(7);

/// The earliest start within [`FREE_AGAIN_WITHIN`] after the proposal's
/// from which the same booking, moved as a whole, would pass `limit`.
///
/// Overlaps change only where a moved reservation's start or end meets a
/// held one's start or end (or that a week later, for 7-day windows): those
/// starts are tried, and the quarter hours between them, earliest first; a
/// 7-day sum may reach the limit between two of them, so the minute is
/// then found by halving.
fn free_again(
    limit: &Limit,
    counted: &Counted,
    proposed: &[Proposed],
    new_booking: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let first = proposed.iter().map(|p| p.period.start).min()?;
    let (from, until) = (first.max(now), first + FREE_AGAIN_WITHIN);
    let quarter = TimeDelta::minutes(15);
    let week = TimeDelta::days(7);
    let mut starts: Vec<DateTime<Utc>> = Vec::new();
    for h in &counted.held {
        for edge in [h.start_at, h.end_at, h.start_at + week, h.end_at + week] {
            for p in proposed {
                // Moved so that this reservation starts, or ends, at `edge`.
                starts.push(edge - (p.period.start - first));
                starts.push(edge - (p.period.end - first));
            }
        }
    }
    let grid = from.duration_trunc(quarter).unwrap_or(from);
    let steps = FREE_AGAIN_WITHIN.num_minutes() / quarter.num_minutes();
    starts.extend((1..=steps).map(|k| grid + quarter * i32::try_from(k).unwrap_or(0)));
    starts.retain(|s| *s > first && *s >= from && *s <= until);
    starts.sort_unstable();
    starts.dedup();
    let passes = |start: DateTime<Utc>| {
        let delta = start - first;
        let moved: Vec<Proposed> = proposed
            .iter()
            .map(|p| Proposed {
                period: Period {
                    start: p.period.start + delta,
                    end: p.period.end + delta,
                },
                ..p.clone()
            })
            .collect();
        evaluate_one(limit, counted, &moved, new_booking, now, false).is_none()
    };
    let k = starts.iter().position(|s| passes(*s))?;
    // A 7-day sum reaches the limit between two tried starts: the minute
    // it does, by halving (the sum only falls as the booking moves on).
    let lowest = if from > first {
        from - TimeDelta::minutes(1)
    } else {
        first
    };
    let (mut bad, mut good) = (if k == 0 { lowest } else { starts[k - 1] }, starts[k]);
    while good - bad > TimeDelta::minutes(1) {
        let mid = bad + (good - bad) / 2;
        let mid = mid.duration_trunc(TimeDelta::minutes(1)).unwrap_or(mid);
        if mid <= bad {
            break;
        }
        if passes(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

/// One rule's refusal, if `proposed` breaks it; `search`: also when it
/// would pass again ([`free_again`]), for the rules whose answer is a search.
fn evaluate_one(
    limit: &Limit,
    counted: &Counted,
    proposed: &[Proposed],
    new_booking: bool,
    now: DateTime<Utc>,
    search: bool,
) -> Option<PolicyRefusal> {
    let held = &counted.held;
    let in_scope = |host: &str| limit.host.as_deref().is_none_or(|h| h == host);
    let mine: Vec<&Proposed> = proposed.iter().filter(|p| in_scope(&p.host)).collect();
    if mine.is_empty() {
        return None;
    }
    let items: Vec<Item> = held
        .iter()
        .filter(|h| in_scope(&h.host))
        .map(|h| Item {
            booking: Some(h.booking_id),
            period: Period {
                start: h.start_at,
                end: h.end_at,
            },
            proposed: false,
        })
        .chain(mine.iter().map(|p| Item {
            booking: p.booking,
            period: p.period,
            proposed: true,
        }))
        .collect();
    let refusal = |would_be: i64, window: Option<Period>, free_from: Option<DateTime<Utc>>| {
        Some(PolicyRefusal {
            rule: limit.rule,
            scope: limit.scope.clone(),
            host: limit.host.clone(),
            limit: limit.value,
            would_be,
            window,
            free_from,
        })
    };
    match limit.rule {
        PolicyRule::MaxLength => mine.iter().find_map(|p| {
            let len = minutes_up(p.period.end - p.period.start);
            (len > limit.value).then_some(())?;
            refusal(len, None, None)
        }),
        PolicyRule::Horizon => mine.iter().find_map(|p| {
            let ahead = minutes_up(p.period.end - now);
            (ahead > limit.value).then_some(())?;
            refusal(
                ahead,
                None,
                Some(p.period.end - TimeDelta::minutes(limit.value)),
            )
        }),
        PolicyRule::MaxFuture => {
            if !new_booking {
                return None;
            }
            let open = counted.open.iter().find(|o| o.host == limit.host)?;
            let would_be = open.count + 1;
            (would_be > limit.value).then_some(())?;
            refusal(would_be, None, open.first_end)
        }
        PolicyRule::MaxGpus => {
            let mut worst: Option<(i64, Period)> = None;
            for p in items.iter().filter(|i| i.proposed) {
                let points = items
                    .iter()
                    .map(|i| i.period.start)
                    .chain([p.period.start])
                    .filter(|t| p.period.contains(*t));
                for t in points {
                    let covering: Vec<&Item> =
                        items.iter().filter(|i| i.period.contains(t)).collect();
                    let count = i64::try_from(covering.len()).unwrap_or(i64::MAX);
                    let until = covering
                        .iter()
                        .map(|i| i.period.end)
                        .chain(items.iter().map(|i| i.period.start).filter(|s| *s > t))
                        .min()
                        .unwrap_or(t);
                    if worst.is_none_or(|(c, _)| count > c) {
                        worst = Some((
                            count,
                            Period {
                                start: t,
                                end: until,
                            },
                        ));
                    }
                }
            }
            let (count, window) = worst?;
            (count > limit.value).then_some(())?;
            let again = search
                .then(|| free_again(limit, counted, proposed, new_booking, now))
                .flatten();
            refusal(count, Some(window), again)
        }
        PolicyRule::GpuHoursWeek => {
            let week = TimeDelta::days(7);
            let mut worst: Option<(i64, Period)> = None;
            let starts = items.iter().flat_map(|i| {
                [
                    i.period.start,
                    i.period.end,
                    i.period.start - week,
                    i.period.end - week,
                ]
            });
            for t in starts {
                let window = Period {
                    start: t,
                    end: t + week,
                };
                if !items
                    .iter()
                    .any(|i| i.proposed && i.period.overlaps(&window))
                {
                    continue;
                }
                let used: TimeDelta = items.iter().map(|i| overlap(i.period, window)).sum();
                let minutes = minutes_up(used);
                if worst.is_none_or(|(m, _)| minutes > m) {
                    worst = Some((minutes, window));
                }
            }
            let (minutes, window) = worst?;
            (minutes > limit.value).then_some(())?;
            let again = search
                .then(|| free_again(limit, counted, proposed, new_booking, now))
                .flatten();
            refusal(minutes, Some(window), again)
        }
        PolicyRule::Cooldown => {
            let long = TimeDelta::minutes(limit.threshold.unwrap_or(i64::MAX / 120));
            let pause = TimeDelta::minutes(limit.value);
            for l in items
                .iter()
                .filter(|i| i.period.end - i.period.start >= long)
            {
                for o in &items {
                    let same = l.booking.is_some() && l.booking == o.booking
                        || l.booking.is_none() && o.booking.is_none() && l.proposed && o.proposed;
                    if same || !(l.proposed || o.proposed) {
                        continue;
                    }
                    if o.period.start >= l.period.start
                        && o.period.end > l.period.end
                        && o.period.start < l.period.end + pause
                    {
                        let gap =
                            minutes_up((o.period.start - l.period.end).max(TimeDelta::zero()));
                        return refusal(gap, None, Some(l.period.end + pause));
                    }
                }
            }
            None
        }
    }
}

/// Locks the member's `users` row (so that one member's bookings and
/// changes, on every daemon of the database, pass [`check`] one after the
/// other, each seeing what the other committed) and returns the limits in
/// force for them. Take it before locking resources.
///
/// # Errors
/// Store failures.
pub(super) async fn lock_member(
    tx: &mut PgConnection,
    defaults: &[Policy],
    user_id: i64,
) -> std::result::Result<Vec<Limit>, StoreError> {
    let rows = store::lock_and_rules(tx, user_id).await?;
    Ok(effective(&rows, defaults))
}

/// Checks `proposed` against `limits` (from [`lock_member`], in the same
/// transaction), reading the reservations of the member that count.
/// `ignore`: reservations the change replaces.
///
/// # Errors
/// [`Error::Policy`] with the numbers; store failures.
pub(super) async fn check(
    tx: &mut PgConnection,
    limits: &[Limit],
    user_id: i64,
    proposed: &[Proposed],
    ignore: &[Uuid],
    new_booking: bool,
) -> std::result::Result<(), CheckError> {
    if limits.is_empty() || proposed.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let around = limits.iter().filter(|l| {
        matches!(
            l.rule,
            PolicyRule::MaxGpus | PolicyRule::GpuHoursWeek | PolicyRule::Cooldown
        )
    });
    // Far enough to see every 7-day window and every cooldown that touches
    // the proposal, and (after it) every one that touches it moved as far
    // as `free_again` looks.
    let span = around
        .map(|l| match l.rule {
            PolicyRule::Cooldown => TimeDelta::minutes(l.value).max(TimeDelta::days(7)),
            _ => TimeDelta::days(7),
        })
        .max()
        .map(|margin| Period {
            start: proposed.iter().map(|p| p.period.start).min().unwrap_or(now) - margin,
            end: proposed.iter().map(|p| p.period.end).max().unwrap_or(now)
                + margin
                + FREE_AGAIN_WITHIN,
        });
    let future_limits: Vec<&Limit> = limits
        .iter()
        .filter(|l| new_booking && l.rule == PolicyRule::MaxFuture)
        .collect();
    let future = (!future_limits.is_empty()).then_some(now);
    let mut counted = Counted::default();
    if span.is_some() || future.is_some() {
        counted.held = store::held(tx, user_id, span, future, ignore).await?;
    }
    for l in future_limits {
        counted
            .open
            .push(open_bookings(&counted.held, l.host.as_deref(), now));
    }
    match evaluate(limits, &counted, proposed, new_booking, now) {
        Some(refusal) => Err(CheckError::Refused(Box::new(refusal))),
        None => Ok(()),
    }
}

/// The bookings of `held` not over at `now`, on `host` if given.
fn open_bookings(held: &[Held], host: Option<&str>, now: DateTime<Utc>) -> Open {
    let mut ends: BTreeMap<Uuid, DateTime<Utc>> = BTreeMap::new();
    for h in held
        .iter()
        .filter(|h| h.end_at > now && host.is_none_or(|x| x == h.host))
    {
        let end = ends.entry(h.booking_id).or_insert(h.end_at);
        *end = (*end).max(h.end_at);
    }
    Open {
        host: host.map(str::to_owned),
        count: i64::try_from(ends.len()).unwrap_or(i64::MAX),
        first_end: ends.values().min().copied(),
    }
}

/// What [`check`] would say now, without locking anything (for forms).
///
/// # Errors
/// Store failures.
pub(super) async fn preview(
    conn: &mut PgConnection,
    defaults: &[Policy],
    user_id: i64,
    proposed: &[Proposed],
    ignore: &[Uuid],
    new_booking: bool,
) -> std::result::Result<Option<Box<PolicyRefusal>>, StoreError> {
    let limits = effective(&store::rules(conn, user_id).await?, defaults);
    match check(conn, &limits, user_id, proposed, ignore, new_booking).await {
        Ok(()) => Ok(None),
        Err(CheckError::Refused(r)) => Ok(Some(r)),
        Err(CheckError::Store(e)) => Err(e),
    }
}

/// Why [`check`] did not pass.
pub(super) enum CheckError {
    Refused(Box<PolicyRefusal>),
    Store(StoreError),
}

impl From<StoreError> for CheckError {
    fn from(e: StoreError) -> Self {
        CheckError::Store(e)
    }
}

impl From<CheckError> for super::booking::Failed {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Refused(r) => Error::Policy(r).into(),
            CheckError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
            .single()
            .expect("valid time")
    }

    fn period(a: DateTime<Utc>, b: DateTime<Utc>) -> Period {
        Period { start: a, end: b }
    }

    fn limit(rule: PolicyRule, value: i64) -> Limit {
        Limit {
            rule,
            scope: PolicyScope::Everyone,
            host: None,
            value,
            threshold: None,
        }
    }

    fn held(booking: u128, p: Period) -> Held {
        Held {
            id: Uuid::from_u128(booking * 1000 + u128::from(p.start.timestamp() as u64 % 997)),
            booking_id: Uuid::from_u128(booking),
            host: "h".into(),
            start_at: p.start,
            end_at: p.end,
        }
    }

    fn c(held: &[Held]) -> Counted {
        Counted {
            held: held.to_vec(),
            open: vec![],
        }
    }

    fn new(p: Period) -> Proposed {
        Proposed {
            booking: None,
            host: "h".into(),
            period: p,
        }
    }

    #[test]
    fn max_gpus_counts_the_peak_not_the_sum() {
        let l = [limit(PolicyRule::MaxGpus, 2)];
        // Two held GPUs that do not overlap each other.
        let h = [
            held(1, period(t(2, 9), t(2, 12))),
            held(2, period(t(2, 13), t(2, 15))),
        ];
        assert!(
            evaluate(
                &l,
                &c(&h),
                &[new(period(t(2, 10), t(2, 14)))],
                true,
                t(1, 0)
            )
            .is_none()
        );
        let both = [
            held(1, period(t(2, 9), t(2, 12))),
            held(2, period(t(2, 9), t(2, 12))),
        ];
        let r = evaluate(
            &l,
            &c(&both),
            &[new(period(t(2, 11), t(2, 14)))],
            true,
            t(1, 0),
        )
        .expect("refused");
        assert_eq!((r.would_be, r.limit), (3, 2));
        assert_eq!(r.window, Some(period(t(2, 11), t(2, 12))));
        // Moved to start when the two held ones end, it fits.
        assert_eq!(r.free_from, Some(t(2, 12)));
    }

    #[test]
    fn weekly_hours_look_at_every_seven_day_window() {
        let l = [limit(PolicyRule::GpuHoursWeek, 48 * 60)];
        // 40 h held on the 2nd; 10 more on the 8th is 50 h within 7 days.
        let h = [held(1, period(t(2, 0), t(3, 16)))];
        let r = evaluate(&l, &c(&h), &[new(period(t(8, 0), t(8, 10)))], true, t(1, 0))
            .expect("refused");
        assert_eq!((r.would_be, r.limit), (50 * 60, 48 * 60));
        // The same 10 h fit from the 8th 16:00: the window ending at its end
        // keeps 38 h of the held booking.
        assert_eq!(r.free_from, Some(t(8, 16)));
        // On the 10th the held booking is out of every window with it.
        assert!(
            evaluate(
                &l,
                &c(&h),
                &[new(period(t(10, 17), t(11, 3)))],
                true,
                t(1, 0)
            )
            .is_none()
        );
        // Two GPUs count twice.
        let two = [
            new(period(t(20, 0), t(21, 0))),
            new(period(t(20, 0), t(21, 0))),
        ];
        assert_eq!(
            evaluate(&l, &Counted::default(), &two, true, t(1, 0)).map(|r| r.would_be),
            None,
            "48 GPU-hours exactly is allowed"
        );
    }

    #[test]
    fn max_future_counts_bookings_to_come_on_the_rule_s_hosts() {
        let l = [limit(PolicyRule::MaxFuture, 2)];
        let open = |host: Option<&str>, count| Open {
            host: host.map(Into::into),
            count,
            first_end: Some(t(2, 12)),
        };
        let two = Counted {
            held: vec![],
            open: vec![open(None, 2)],
        };
        let r =
            evaluate(&l, &two, &[new(period(t(4, 9), t(4, 10)))], true, t(1, 0)).expect("refused");
        assert_eq!((r.would_be, r.free_from), (3, Some(t(2, 12))));
        // An edit is not a new booking.
        assert!(evaluate(&l, &two, &[new(period(t(4, 9), t(4, 10)))], false, t(1, 0)).is_none());
        let one = Counted {
            held: vec![],
            open: vec![open(None, 1)],
        };
        assert!(evaluate(&l, &one, &[new(period(t(4, 9), t(4, 10)))], true, t(1, 0)).is_none());
    }

    #[test]
    fn cooldown_follows_long_reservations_only() {
        let mut l = limit(PolicyRule::Cooldown, 12 * 60);
        l.threshold = Some(24 * 60);
        let l = [l];
        let long = [held(1, period(t(2, 0), t(3, 0)))];
        let r = evaluate(
            &l,
            &c(&long),
            &[new(period(t(3, 6), t(3, 8)))],
            true,
            t(1, 0),
        )
        .expect("refused");
        assert_eq!((r.would_be, r.free_from), (6 * 60, Some(t(3, 12))));
        assert!(
            evaluate(
                &l,
                &c(&long),
                &[new(period(t(3, 12), t(3, 14)))],
                true,
                t(1, 0)
            )
            .is_none()
        );
        let short = [held(1, period(t(2, 0), t(2, 20)))];
        assert!(
            evaluate(
                &l,
                &c(&short),
                &[new(period(t(2, 21), t(2, 22)))],
                true,
                t(1, 0)
            )
            .is_none()
        );
        // A new long booking right before one already held is refused too.
        let later = [held(1, period(t(5, 0), t(5, 2)))];
        assert!(
            evaluate(
                &l,
                &c(&later),
                &[new(period(t(3, 23), t(4, 23)))],
                true,
                t(1, 0)
            )
            .is_some()
        );
    }

    #[test]
    fn length_and_horizon_name_their_numbers() {
        let l = [
            limit(PolicyRule::MaxLength, 8 * 60),
            limit(PolicyRule::Horizon, 7 * 1440),
        ];
        let r = evaluate(
            &l,
            &Counted::default(),
            &[new(period(t(2, 0), t(2, 9)))],
            true,
            t(1, 0),
        )
        .expect("refused");
        assert_eq!((r.rule, r.would_be), (PolicyRule::MaxLength, 9 * 60));
        let r = evaluate(
            &l,
            &Counted::default(),
            &[new(period(t(10, 0), t(10, 1)))],
            true,
            t(1, 0),
        )
        .expect("refused");
        assert_eq!(r.rule, PolicyRule::Horizon);
        assert_eq!(r.free_from, Some(t(3, 1)));
    }

    #[test]
    fn a_rule_for_one_host_counts_only_that_host() {
        let mut l = limit(PolicyRule::MaxGpus, 1);
        l.host = Some("big".into());
        let h = [held(1, period(t(2, 9), t(2, 12)))];
        assert!(
            evaluate(
                &[l.clone()],
                &c(&h),
                &[new(period(t(2, 9), t(2, 12)))],
                true,
                t(1, 0)
            )
            .is_none()
        );
        let mut on_big = new(period(t(2, 9), t(2, 12)));
        on_big.host = "big".into();
        assert!(evaluate(&[l], &c(&h), &[on_big.clone(), on_big], true, t(1, 0)).is_some());
    }

    fn row(rule: &str, scope: &str, group: Option<&str>, value: i64) -> RuleRow {
        RuleRow {
            id: value,
            rule: rule.into(),
            scope: scope.into(),
            group_name: group.map(Into::into),
            user_id: (scope == "user").then_some(7),
            email: (scope == "user").then(|| "a@b.org".into()),
            display_name: (scope == "user").then(|| "A".into()),
            host: None,
            value,
            threshold: None,
        }
    }

    #[test]
    fn own_rule_beats_groups_which_beat_everyone_and_defaults() {
        let default = Policy {
            id: 0,
            rule: PolicyRule::MaxGpus,
            scope: PolicyScope::Everyone,
            host: None,
            value: 1,
            threshold: None,
        };
        let value = |rows: &[RuleRow]| effective(rows, std::slice::from_ref(&default))[0].value;
        assert_eq!(value(&[]), 1);
        assert_eq!(value(&[row("max-gpus", "everyone", None, 2)]), 2);
        let groups = [
            row("max-gpus", "everyone", None, 2),
            row("max-gpus", "group", Some("a"), 3),
            row("max-gpus", "group", Some("b"), 5),
        ];
        assert_eq!(value(&groups), 5, "the most generous group");
        let mut own = groups.to_vec();
        own.push(row("max-gpus", "user", None, 4));
        assert_eq!(value(&own), 4, "a member's own rule wins, even if lower");
    }
}
