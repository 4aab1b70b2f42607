//! Recurring bookings: one series of occurrences, each an ordinary booking
//! (its own reservations, calendar events and policy check), made in one
//! transaction: all or nothing, or with `skip_conflicts` the ones that can
//! be, the others reported with why. The client computes the periods in the
//! member's zone, so a weekly 14:00 stays 14:00 across a DST change; so is
//! an edit of "this and following" ([`Service::edit_series`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use gpures_proto::{Booking, Period, Reservation, SeriesEdit, SeriesRequest, limits};
use uuid::Uuid;

use super::booking::{Attempt, Change, Failed, NewBooking, PolicyMode, Which, insert_booking};
use super::{Actor, Error, Result, Service, validate};

/// What [`Service::book_series`] made.
#[derive(Debug)]
pub struct SeriesBooked {
    pub series_id: Uuid,
    pub booked: Vec<Booking>,
    /// Occurrences not booked (with `skip_conflicts`), and why.
    pub skipped: Vec<(Period, Error)>,
}

/// An id derived from `request_id` and `n`: the same on every retry of the
/// series, distinct for each `n` (a random-looking v4 id).
fn derived(request_id: Uuid, n: u128) -> Uuid {
    const MIX: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835;
    let bits = request_id.as_u128() ^ n.wrapping_add(1).wrapping_mul(MIX);
    uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
}

/// The occurrence `i` of request `request_id`: a request id of its own.
fn occurrence_id(request_id: Uuid, i: usize) -> Uuid {
    derived(request_id, i as u128)
}

impl Service {
    /// Books every period of `req` for its resources.
    ///
    /// # Errors
    /// Invalid occurrences (overlapping, too many, each as a booking);
    /// [`Error::Series`] with every occurrence that cannot be booked unless
    /// `skip_conflicts`; store failures.
    pub async fn book_series(&self, actor: &Actor, req: SeriesRequest) -> Result<SeriesBooked> {
        let user = actor.account()?.clone();
        let resources = validate::booking_resources(&req.resources)?;
        let mut periods = req.periods.clone();
        if periods.is_empty() {
            return Err(Error::invalid("periods", "give at least one occurrence"));
        }
        if periods.len() * resources.len() > limits::SERIES_MAX {
            return Err(Error::invalid(
                "periods",
                format!(
                    "at most {} reservations in one series (occurrences × GPUs)",
                    limits::SERIES_MAX
                ),
            ));
        }
        let now = Utc::now();
        for p in &periods {
            validate::booking_period(
                &self.settings().rules,
                *p,
                now,
                true,
                true,
                actor.is_admin(),
            )?;
        }
        periods.sort_by_key(|p| p.start);
        if periods.windows(2).any(|w| w[1].start < w[0].end) {
            return Err(Error::invalid("periods", "occurrences must not overlap"));
        }
        let note = validate::note(&req.note)?;
        let series_id = derived(req.request_id, u128::MAX);
        let span = Period {
            start: periods[0].start,
            end: periods
                .iter()
                .map(|p| p.end)
                .max()
                .unwrap_or(periods[0].end),
        };
        let (svc, name) = (self.clone(), actor.audit_name());
        let skip = req.skip_conflicts;
        let request_id = req.request_id;
        self.transaction(async move {
            svc.retrying(&resources, span, &[], || {
                svc.series_once(
                    user.id, &name, request_id, series_id, &resources, &periods, &note, skip,
                )
            })
            .await
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn series_once(
        &self,
        user_id: i64,
        audit_name: &str,
        request_id: Uuid,
        series_id: Uuid,
        resources: &[i64],
        periods: &[Period],
        note: &str,
        skip: bool,
    ) -> Attempt<SeriesBooked> {
        let mut tx = self.store().begin().await?;
        let mut booked = Vec::with_capacity(periods.len());
        let mut skipped = Vec::new();
        for (i, period) in periods.iter().enumerate() {
            let new = NewBooking {
                user_id,
                audit_name,
                request_id: occurrence_id(request_id, i),
                resources,
                period: *period,
                note,
                series_id: Some(series_id),
                pending: None,
            };
            match insert_booking(&mut tx, &self.settings().policy, &PolicyMode::Check, &new).await {
                Ok(b) => booked.push(b),
                // Refused before anything was written: the transaction goes on.
                Err(Failed::Rule(
                    e @ (Error::Conflict(_) | Error::Blocked(_) | Error::Policy(_)),
                )) => skipped.push((*period, e)),
                Err(e) => return Err(e),
            }
        }
        if !skipped.is_empty() && !skip {
            return Err(Error::Series(skipped).into());
        }
        if booked.is_empty() {
            return Err(Error::Series(skipped).into());
        }
        tx.commit().await?;
        Ok(SeriesBooked {
            series_id,
            booked,
            skipped,
        })
    }

    /// Cancels the occurrences of `series_id` that start at or after
    /// `from` (owner, or an admin with `reason`).
    ///
    /// # Errors
    /// Not found, not allowed, nothing left to cancel.
    pub async fn cancel_series(
        &self,
        actor: &Actor,
        series_id: Uuid,
        from: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<Vec<Reservation>> {
        let which = Which::Series {
            id: series_id,
            from,
        };
        let reason = match reason {
            Some(r) => Some(super::booking::Reason {
                text: validate::reason(r)?,
                kind: gpures_proto::NotificationKind::AdminChanged,
            }),
            None => None,
        };
        self.change_for(actor, which, Change::Cancel, reason).await
    }

    /// Edits the occurrences of a series from `edit.from` on, each to its
    /// own period (owner, or an admin with a reason), all or nothing:
    /// every occurrence passes the rules, blocks and policy an edit does.
    ///
    /// # Errors
    /// Not found, not allowed, a reservation left out or not of the
    /// series, rule and policy refusals, conflicts.
    pub async fn edit_series(&self, actor: &Actor, edit: SeriesEdit) -> Result<Vec<Reservation>> {
        if edit.periods.is_empty() {
            return Err(Error::invalid("periods", "nothing to change"));
        }
        let periods: BTreeMap<Uuid, Period> = edit.periods.into_iter().collect();
        let which = Which::Series {
            id: edit.series_id,
            from: edit.from,
        };
        let reason = match edit.reason.as_deref() {
            Some(r) => Some(super::booking::Reason {
                text: validate::reason(r)?,
                kind: gpures_proto::NotificationKind::AdminChanged,
            }),
            None => None,
        };
        let change = Change::EditEach {
            periods,
            note: edit.note,
        };
        self.change_for(actor, which, change, reason).await
    }
}
