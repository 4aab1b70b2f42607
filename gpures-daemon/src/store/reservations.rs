//! `reservations`: the book. Reads for listings, the timeline and status, and
//! the statements of a booking transaction ([`book`], the common case in one
//! round trip; [`holders`], [`insert`], [`set_period_and_note`],
//! [`set_cancelled`]); the exclusion constraint in the schema is the last
//! word on overlaps.

use chrono::{DateTime, TimeDelta, Utc};
use gpures_proto::{
    Cursor, Holder, Pending, Period, Reservation, ReservationFilter, ReservationStatus, SyncState,
    UserRef,
};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::Result;

/// `reservations.status`; an unknown word in the column is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
enum DbStatus {
    Active,
    Cancelled,
}

/// The sync state computed by the select; an unknown word is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
enum DbSync {
    Off,
    Failed,
    Pending,
    Synced,
}

#[derive(sqlx::FromRow)]
struct ReservationRow {
    id: Uuid,
    booking_id: Uuid,
    resource_id: i64,
    resource_name: String,
    user_id: i64,
    email: String,
    display_name: String,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    note: String,
    status: DbStatus,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sync_state: DbSync,
    sync_error: Option<String>,
    change_reason: Option<String>,
    series_id: Option<Uuid>,
    pending_until: Option<DateTime<Utc>>,
    pending_reason: Option<String>,
}

impl From<ReservationRow> for Reservation {
    fn from(r: ReservationRow) -> Self {
        Reservation {
            id: r.id,
            booking_id: r.booking_id,
            resource_id: r.resource_id,
            resource_name: r.resource_name,
            user: UserRef {
                id: r.user_id,
                email: r.email,
                display_name: r.display_name,
            },
            period: Period {
                start: r.start_at,
                end: r.end_at,
            },
            note: r.note,
            series_id: r.series_id,
            pending: r.pending_until.map(|until| Pending {
                until,
                reason: r.pending_reason.unwrap_or_default(),
            }),
            status: match r.status {
                DbStatus::Active => ReservationStatus::Active,
                DbStatus::Cancelled => ReservationStatus::Cancelled,
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
            sync: match r.sync_state {
                DbSync::Off => SyncState::Off,
                DbSync::Failed => SyncState::Failed(r.sync_error.unwrap_or_default()),
                DbSync::Pending => SyncState::Pending,
                DbSync::Synced => SyncState::Synced,
            },
            change_reason: r.change_reason,
        }
    }
}

fn all(rows: Vec<ReservationRow>) -> Vec<Reservation> {
    rows.into_iter().map(Reservation::from).collect()
}

/// One reservation by id.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Reservation> {
    let row =
        sqlx::query_as::<_, ReservationRow>(concat!(reservation_select!(), " WHERE r.id = $1"))
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(row.into())
}

/// Up to `limit` reservations matching `filter` after `after`, in the order
/// (start, resource name, id): one page of a keyset listing.
pub async fn page(
    conn: &mut PgConnection,
    filter: &ReservationFilter,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<Reservation>> {
    let (start, end) = match filter.window {
        Some(w) => (Some(w.start), Some(w.end)),
        None => (None, None),
    };
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        "
         WHERE (cardinality($1::bigint[]) = 0 OR r.resource_id = ANY($1))
           AND ($2::text IS NULL OR lower(u.email) = lower($2))
           AND ($3::timestamptz IS NULL OR r.period && tstzrange($3, $4, '[)'))
           AND ($5 OR r.status = 'active')
           AND ($6::timestamptz IS NULL OR (lower(r.period), res.name, r.id) > ($6, $7::text, $8::uuid))
         ORDER BY lower(r.period), res.name, r.id
         LIMIT $9"
    ))
    .bind(&filter.resources)
    .bind(&filter.user_email)
    .bind(start)
    .bind(end)
    .bind(filter.include_cancelled)
    .bind(after.map(|c| c.start))
    .bind(after.map(|c| c.resource_name.as_str()))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(all(rows))
}

/// Up to `limit` active reservations overlapping `window` after `after`, in
/// the order (start, resource name, id): one page of the timeline.
pub async fn active_page(
    conn: &mut PgConnection,
    window: Period,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<Reservation>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        "
         WHERE r.status = 'active' AND r.period && tstzrange($1, $2, '[)')
           AND ($3::timestamptz IS NULL OR (lower(r.period), res.name, r.id) > ($3, $4::text, $5::uuid))
         ORDER BY lower(r.period), res.name, r.id
         LIMIT $6"
    ))
    .bind(window.start)
    .bind(window.end)
    .bind(after.map(|c| c.start))
    .bind(after.map(|c| c.resource_name.as_str()))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(all(rows))
}

/// Reservations whose id or booking id lies in `[lo, hi]` (an id prefix as a
/// range: two index range scans, never a table scan), at most `limit`.
pub async fn by_id_range(
    conn: &mut PgConnection,
    lo: Uuid,
    hi: Uuid,
    limit: i64,
) -> Result<Vec<Reservation>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        "
         WHERE (r.id BETWEEN $1 AND $2) OR (r.booking_id BETWEEN $1 AND $2)
         ORDER BY lower(r.period), res.name, r.id
         LIMIT $3"
    ))
    .bind(lo)
    .bind(hi)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(all(rows))
}

/// Every reservation of one booking, by resource name.
pub async fn by_booking(conn: &mut PgConnection, booking_id: Uuid) -> Result<Vec<Reservation>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        " WHERE r.booking_id = $1 ORDER BY res.name"
    ))
    .bind(booking_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(all(rows))
}

/// The reservations among `ids` (any status), in the order of `ids`; an id
/// no reservation has is left out.
pub async fn by_ids(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Reservation>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        " WHERE r.id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut found = all(rows);
    found.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
    Ok(found)
}

/// Per resource, the active reservation holding it at `at` and the next one
/// to start after `at`.
pub async fn current_and_next(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
    on: &[i64],
) -> Result<(Vec<Reservation>, Vec<Reservation>)> {
    let current = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        " WHERE r.status = 'active' AND r.period @> $1::timestamptz
            AND (cardinality($2::bigint[]) = 0 OR r.resource_id = ANY($2))"
    ))
    .bind(at)
    .bind(on)
    .fetch_all(&mut *conn)
    .await?;
    // The overlap with (at, ∞) is what lets the GiST index on `period` skip
    // the past: a condition on `lower(period)` alone reads all of history.
    let next = sqlx::query_as::<_, ReservationRow>(concat!(
        "SELECT DISTINCT ON (r.resource_id) * FROM (",
        reservation_select!(),
        "
           WHERE r.status = 'active' AND r.period && tstzrange($1, NULL, '()')
             AND lower(r.period) > $1
             AND (cardinality($2::bigint[]) = 0 OR r.resource_id = ANY($2))) r
         ORDER BY r.resource_id, r.start_at"
    ))
    .bind(at)
    .bind(on)
    .fetch_all(&mut *conn)
    .await?;
    Ok((all(current), all(next)))
}

/// Active reservations that ended within `since` before `at` (for
/// `overrun`: whose job may still be running).
pub async fn recently_ended(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
    since: TimeDelta,
    on: &[i64],
) -> Result<Vec<Reservation>> {
    // The overlap with (since, at] lets the GiST index on `period` find them
    // (a condition on `upper(period)` alone reads all of history).
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        " WHERE r.status = 'active' AND r.period && tstzrange($2, $1, '(]')
            AND upper(r.period) <= $1 AND upper(r.period) > $2
            AND (cardinality($3::bigint[]) = 0 OR r.resource_id = ANY($3))"
    ))
    .bind(at)
    .bind(at - since)
    .bind(on)
    .fetch_all(&mut *conn)
    .await?;
    Ok(all(rows))
}

/// Every pair of overlapping active reservations of one resource. Always
/// zero while the exclusion constraint exists; tests and checks use it.
pub async fn overlapping_pairs(conn: &mut PgConnection) -> Result<i64> {
    let row = sqlx::query(
        "SELECT count(*) FROM reservations a JOIN reservations b
           ON a.resource_id = b.resource_id AND a.id < b.id AND a.period && b.period
         WHERE a.status = 'active' AND b.status = 'active'",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Reservations a user already made with `request_id` (a retried booking).
pub async fn by_request(
    conn: &mut PgConnection,
    user_id: i64,
    request_id: Uuid,
) -> Result<Vec<Reservation>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        " WHERE r.user_id = $1 AND r.request_id = $2 ORDER BY res.name"
    ))
    .bind(user_id)
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(all(rows))
}

/// Active reservations of `resources` overlapping `period`, except those in
/// `ignore` (the ones being changed).
pub async fn holders(
    conn: &mut PgConnection,
    resources: &[i64],
    period: Period,
    ignore: &[Uuid],
) -> Result<Vec<Holder>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        "
         WHERE r.status = 'active' AND r.resource_id = ANY($1)
           AND r.period && tstzrange($2, $3, '[)')
           AND r.id <> ALL($4)
         ORDER BY res.name, lower(r.period)"
    ))
    .bind(resources)
    .bind(period.start)
    .bind(period.end)
    .bind(ignore)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let r = Reservation::from(row);
            Holder {
                reservation_id: r.id,
                resource_id: r.resource_id,
                resource_name: r.resource_name,
                user: r.user,
                period: r.period,
            }
        })
        .collect())
}

/// A new active reservation.
pub struct NewReservation<'a> {
    pub id: Uuid,
    pub booking_id: Uuid,
    pub request_id: Uuid,
    pub user_id: i64,
    pub resource_id: i64,
    pub period: Period,
    pub note: &'a str,
    /// The series it is an occurrence of.
    pub series_id: Option<Uuid>,
    /// Waiting for an admin until then, and why it was asked.
    pub pending: Option<(DateTime<Utc>, &'a str)>,
}

/// The reservations of one new booking, one per resource.
pub struct NewBookingRows<'a> {
    pub booking_id: Uuid,
    pub request_id: Uuid,
    pub user_id: i64,
    /// Who the audit log names.
    pub unix_user: &'a str,
    /// The new reservations' ids, one per resource, in the same order.
    pub ids: &'a [Uuid],
    pub resources: &'a [i64],
    pub period: Period,
    pub note: &'a str,
    pub series_id: Option<Uuid>,
    pub pending: Option<(DateTime<Utc>, &'a str)>,
    /// The NOTIFY payload that announces them.
    pub announce: &'a str,
}

/// Books `b` in one round trip (`gpures_book`, migration 15) when nothing
/// stands in the way: no booking of this request yet, every resource there
/// and active, nothing holding or blocking the period. Then its
/// reservations, outbox and audit rows are written and announced, and the
/// answer is `true`; else nothing is written (the resources stay locked)
/// and the caller finds out why statement by statement.
pub async fn book(conn: &mut PgConnection, b: &NewBookingRows<'_>) -> Result<bool> {
    let outcome: String = sqlx::query_scalar(
        "SELECT gpures_book($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(b.user_id)
    .bind(b.unix_user)
    .bind(b.request_id)
    .bind(b.booking_id)
    .bind(b.ids)
    .bind(b.resources)
    .bind(b.period.start)
    .bind(b.period.end)
    .bind(b.note)
    .bind(b.series_id)
    .bind(b.pending.map(|p| p.0))
    .bind(b.pending.map(|p| p.1))
    .bind(b.announce)
    .fetch_one(&mut *conn)
    .await?;
    Ok(outcome == "booked")
}

pub async fn insert(conn: &mut PgConnection, r: &NewReservation<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO reservations (id, booking_id, request_id, user_id, resource_id, period, note, series_id,
                                   pending_until, pending_reason)
         VALUES ($1, $2, $3, $4, $5, tstzrange($6, $7, '[)'), $8, $9, $10, $11)",
    )
    .bind(r.id)
    .bind(r.booking_id)
    .bind(r.request_id)
    .bind(r.user_id)
    .bind(r.resource_id)
    .bind(r.period.start)
    .bind(r.period.end)
    .bind(r.note)
    .bind(r.series_id)
    .bind(r.pending.map(|p| p.0))
    .bind(r.pending.map(|p| p.1))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The occurrences of series `series_id` that start at or after `from`.
pub async fn by_series(
    conn: &mut PgConnection,
    series_id: Uuid,
    from: DateTime<Utc>,
) -> Result<Vec<Reservation>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        " WHERE r.series_id = $1 AND lower(r.period) >= $2 ORDER BY lower(r.period), res.name"
    ))
    .bind(series_id)
    .bind(from)
    .fetch_all(&mut *conn)
    .await?;
    Ok(all(rows))
}

/// Approves the pending reservations of `booking_id`; their ids.
pub async fn approve(conn: &mut PgConnection, booking_id: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "UPDATE reservations SET pending_until = NULL, updated_at = now()
          WHERE booking_id = $1 AND status = 'active' AND pending_until IS NOT NULL
         RETURNING id",
    )
    .bind(booking_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// The bookings still waiting for an admin (all, or those due by `due`).
pub async fn pending(
    conn: &mut PgConnection,
    due: Option<DateTime<Utc>>,
) -> Result<Vec<Reservation>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        " WHERE r.status = 'active' AND r.pending_until IS NOT NULL
            AND ($1::timestamptz IS NULL OR r.pending_until <= $1)
          ORDER BY r.pending_until, res.name
          LIMIT 200"
    ))
    .bind(due)
    .fetch_all(&mut *conn)
    .await?;
    Ok(all(rows))
}

/// Locks one reservation row for a change.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("SELECT 1 FROM reservations WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_period_and_note(
    conn: &mut PgConnection,
    id: Uuid,
    period: Period,
    note: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE reservations SET period = tstzrange($2, $3, '[)'), note = $4, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(period.start)
    .bind(period.end)
    .bind(note)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends reservation `id` at `end`, before its booked end (kept, with who
/// ended it, for usage reports): `reclaimed` by idle reclaim, else released.
pub async fn set_released(
    conn: &mut PgConnection,
    id: Uuid,
    end: DateTime<Utc>,
    reclaimed: bool,
) -> Result<()> {
    sqlx::query(
        "UPDATE reservations
            SET booked_end = coalesce(booked_end, upper(period)),
                ended_by = CASE WHEN $3 THEN 'reclaim' ELSE 'release' END,
                period = tstzrange(lower(period), $2, '[)'), updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(end)
    .bind(reclaimed)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records why an admin changed reservation `id` (shown to its owner).
pub async fn set_change_reason(conn: &mut PgConnection, id: Uuid, reason: &str) -> Result<()> {
    sqlx::query("UPDATE reservations SET change_reason = $2 WHERE id = $1")
        .bind(id)
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_cancelled(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE reservations SET status = 'cancelled', updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Cancels a user's active reservations that start after `at` and ends the
/// running ones at `at`, recording `reason`; returns the ids and resources
/// changed, with whether each was cancelled (else ended).
pub async fn stop_user_future(
    conn: &mut PgConnection,
    user_id: i64,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<(Uuid, i64, bool)>> {
    let cancelled: Vec<(Uuid, i64)> = sqlx::query_as(
        "UPDATE reservations SET status = 'cancelled', change_reason = $3, updated_at = now()
         WHERE user_id = $1 AND status = 'active' AND lower(period) >= $2
         RETURNING id, resource_id",
    )
    .bind(user_id)
    .bind(at)
    .bind(reason)
    .fetch_all(&mut *conn)
    .await?;
    let ended: Vec<(Uuid, i64)> = sqlx::query_as(
        "UPDATE reservations SET period = tstzrange(lower(period), $2, '[)'), change_reason = $3,
                updated_at = now()
         WHERE user_id = $1 AND status = 'active' AND lower(period) < $2 AND upper(period) > $2
         RETURNING id, resource_id",
    )
    .bind(user_id)
    .bind(at)
    .bind(reason)
    .fetch_all(&mut *conn)
    .await?;
    Ok(cancelled
        .into_iter()
        .map(|(id, res)| (id, res, true))
        .chain(ended.into_iter().map(|(id, res)| (id, res, false)))
        .collect())
}

/// The active reservations and maintenance blocks of `resource_ids`
/// overlapping `window`, as `(resource, start, end)` in no order: what the
/// earliest-slot search needs, without names, notes or calendar state.
pub async fn busy(
    conn: &mut PgConnection,
    resource_ids: &[i64],
    window: Period,
) -> Result<Vec<(i64, DateTime<Utc>, DateTime<Utc>)>> {
    Ok(sqlx::query_as(
        "SELECT resource_id, lower(period), upper(period) FROM reservations
         WHERE status = 'active' AND resource_id = ANY($1) AND period && tstzrange($2, $3)
         UNION ALL
         SELECT resource_id, lower(period), upper(period) FROM blocks
         WHERE removed_at IS NULL AND resource_id = ANY($1) AND period && tstzrange($2, $3)",
    )
    .bind(resource_ids)
    .bind(window.start)
    .bind(window.end)
    .fetch_all(&mut *conn)
    .await?)
}

/// A booking whose start or end is near, for its owner's reminder.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Reminder {
    pub booking_id: Uuid,
    pub user_id: i64,
    /// Whether the start is near (else the end).
    pub starting: bool,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Its GPUs' names, comma-separated.
    pub names: String,
    pub resource_ids: Vec<i64>,
    /// One of its reservations (the notification's link).
    pub first_id: Uuid,
}

/// Active bookings starting or ending within `within` of `now`, made or
/// last changed before that window opened.
pub async fn due_reminders(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    within: chrono::TimeDelta,
) -> Result<Vec<Reminder>> {
    Ok(sqlx::query_as(
        "WITH near AS (
             SELECT r.*, true AS starting FROM reservations r
             WHERE r.status = 'active' AND r.period && tstzrange($1, $1 + $2, '[]') AND lower(r.period) > $1 AND lower(r.period) <= $1 + $2
               AND r.updated_at < lower(r.period) - $2
             UNION ALL
             SELECT r.*, false FROM reservations r
             WHERE r.status = 'active' AND r.period && tstzrange($1, $1 + $2, '[]') AND upper(r.period) > $1 AND upper(r.period) <= $1 + $2
               AND lower(r.period) < $1 AND r.updated_at < upper(r.period) - $2
         )
         SELECT n.booking_id, n.user_id, n.starting, min(lower(n.period)) AS start,
                max(upper(n.period)) AS \"end\",
                string_agg(res.name, ', ' ORDER BY res.name) AS names,
                array_agg(n.resource_id ORDER BY res.name) AS resource_ids,
                (array_agg(n.id ORDER BY res.name))[1] AS first_id
         FROM near n JOIN resources res ON res.id = n.resource_id
         GROUP BY n.booking_id, n.user_id, n.starting",
    )
    .bind(now)
    .bind(within)
    .fetch_all(&mut *conn)
    .await?)
}
