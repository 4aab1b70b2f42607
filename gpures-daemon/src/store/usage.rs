//! `usage_minutes`, `usage_hours` and `unreserved_hours`: what the GPUs
//! really did (see the migration for what counts as used, idle and unknown),
//! and the figures `gpures report` reads from them.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

/// One GPU's finished minute, as this host's daemon sampled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Minute {
    pub resource_id: i64,
    /// Whole minute.
    pub minute: DateTime<Utc>,
    /// Who held the GPU (its first trusted sample's holder).
    pub reservation_id: Option<Uuid>,
    /// Trusted samples (at least one).
    pub samples: i16,
    /// Samples where the holder ran a qualifying process.
    pub used_samples: i16,
    pub util_mean: Option<i16>,
    pub util_peak: Option<i16>,
    pub mem_peak_mib: Option<i32>,
    /// Unix users with a qualifying process on it who did not hold it.
    pub unreserved: Vec<String>,
}

/// Writes finished minutes and adds them to the hourly rollups, in one
/// statement. A minute already written (a second daemon on the same host,
/// or a retry) is skipped, and so not counted twice.
pub async fn put(conn: &mut PgConnection, minutes: &[Minute]) -> Result<()> {
    if minutes.is_empty() {
        return Ok(());
    }
    let mut resource = Vec::with_capacity(minutes.len());
    let mut minute = Vec::with_capacity(minutes.len());
    let mut reservation = Vec::with_capacity(minutes.len());
    let mut samples = Vec::with_capacity(minutes.len());
    let mut used = Vec::with_capacity(minutes.len());
    let mut util_mean = Vec::with_capacity(minutes.len());
    let mut util_peak = Vec::with_capacity(minutes.len());
    let mut mem_peak = Vec::with_capacity(minutes.len());
    // Arrays of arrays must be rectangular: one (row, user) pair per user.
    let (mut who_row, mut who) = (Vec::new(), Vec::new());
    for (i, m) in minutes.iter().enumerate() {
        resource.push(m.resource_id);
        minute.push(m.minute);
        reservation.push(m.reservation_id);
        samples.push(m.samples);
        used.push(m.used_samples);
        util_mean.push(m.util_mean);
        util_peak.push(m.util_peak);
        mem_peak.push(m.mem_peak_mib);
        for u in &m.unreserved {
            who_row.push(i32::try_from(i + 1).unwrap_or(i32::MAX));
            who.push(u.clone());
        }
    }
    sqlx::query(
        "WITH given AS (
             SELECT g.*, coalesce((SELECT array_agg(w.who ORDER BY w.who)
                                     FROM unnest($9::int[], $10::text[]) AS w(n, who)
                                    WHERE w.n = g.ord), '{}') AS unreserved
               FROM unnest($1::bigint[], $2::timestamptz[], $3::uuid[], $4::smallint[],
                           $5::smallint[], $6::smallint[], $7::smallint[], $8::int[])
                    WITH ORDINALITY
                    AS g(resource_id, minute, reservation_id, samples, used_samples,
                         util_mean, util_peak, mem_peak_mib, ord)
         ),
         ins AS (
             INSERT INTO usage_minutes (resource_id, minute, reservation_id, samples,
                                        used_samples, util_mean, util_peak, mem_peak_mib, unreserved)
             SELECT resource_id, minute, reservation_id, samples, used_samples,
                    util_mean, util_peak, mem_peak_mib, unreserved FROM given
             ON CONFLICT (resource_id, minute) DO NOTHING
             RETURNING *
         ),
         hours AS (
             INSERT INTO usage_hours AS h (resource_id, hour, reservation_id, used_min, idle_min,
                                           util_sum, util_n, util_peak, mem_peak_mib)
             SELECT resource_id, date_trunc('hour', minute), reservation_id,
                    count(*) FILTER (WHERE reservation_id IS NOT NULL AND used_samples > 0),
                    count(*) FILTER (WHERE reservation_id IS NULL OR used_samples = 0),
                    coalesce(sum(util_mean), 0), count(util_mean), max(util_peak), max(mem_peak_mib)
               FROM ins
              GROUP BY 1, 2, 3
             ON CONFLICT ON CONSTRAINT usage_hours_key DO UPDATE SET
                 used_min = h.used_min + EXCLUDED.used_min,
                 idle_min = h.idle_min + EXCLUDED.idle_min,
                 util_sum = h.util_sum + EXCLUDED.util_sum,
                 util_n = h.util_n + EXCLUDED.util_n,
                 util_peak = greatest(h.util_peak, EXCLUDED.util_peak),
                 mem_peak_mib = greatest(h.mem_peak_mib, EXCLUDED.mem_peak_mib)
         )
         INSERT INTO unreserved_hours AS u (resource_id, hour, unix_user, minutes)
         SELECT resource_id, date_trunc('hour', minute), who, count(*)
           FROM ins, unnest(ins.unreserved) AS who
          GROUP BY 1, 2, 3
         ON CONFLICT (hour, resource_id, unix_user) DO UPDATE SET minutes = u.minutes + EXCLUDED.minutes",
    )
    .bind(resource)
    .bind(minute)
    .bind(reservation)
    .bind(samples)
    .bind(used)
    .bind(util_mean)
    .bind(util_peak)
    .bind(mem_peak)
    .bind(who_row)
    .bind(who)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Drops per-minute rows older than `before` (the hourly rollups stay),
/// one resource at a time along the primary key.
pub async fn prune(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM usage_minutes m USING resources r
          WHERE m.resource_id = r.id AND m.minute < $1",
    )
    .bind(before)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Figures of one user on one resource in a report's window.
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct Fact {
    pub user_id: i64,
    pub resource_id: i64,
    pub booked: i64,
    pub used: i64,
    pub idle: i64,
    pub released: i64,
    pub released_count: i64,
    pub reclaimed: i64,
    pub reclaimed_count: i64,
}

/// Per user and resource: minutes held in `[from, until)` (active and not
/// pending), used and idle minutes from the hourly rollups of `[from, to)`
/// (whole hours), and time released or reclaimed before its end.
pub async fn facts(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Fact>> {
    Ok(sqlx::query_as(
        "WITH w AS (SELECT tstzrange($1, greatest($1, $3), '[)') AS held,
                           tstzrange($1, $2, '[)') AS whole),
         booked AS (
             SELECT r.user_id, r.resource_id,
                    sum(extract(epoch FROM upper(r.period * w.held) - lower(r.period * w.held)))::bigint / 60 AS booked
               FROM reservations r, w
              WHERE r.status = 'active' AND r.pending_until IS NULL AND r.period && w.held
              GROUP BY 1, 2
         ),
         seen AS (
             SELECT r.user_id, h.resource_id, sum(h.used_min)::bigint AS used, sum(h.idle_min)::bigint AS idle
               FROM usage_hours h JOIN reservations r ON r.id = h.reservation_id
              WHERE h.hour >= $1 AND h.hour < $2 AND h.reservation_id IS NOT NULL
              GROUP BY 1, 2
         ),
         ended AS (
             SELECT r.user_id, r.resource_id,
                    sum(extract(epoch FROM upper(g.early) - lower(g.early)))
                        FILTER (WHERE r.ended_by = 'release')::bigint / 60 AS released,
                    count(*) FILTER (WHERE r.ended_by = 'release' AND upper(r.period) <@ w.whole) AS released_count,
                    sum(extract(epoch FROM upper(g.early) - lower(g.early)))
                        FILTER (WHERE r.ended_by = 'reclaim')::bigint / 60 AS reclaimed,
                    count(*) FILTER (WHERE r.ended_by = 'reclaim' AND upper(r.period) <@ w.whole) AS reclaimed_count
               FROM reservations r, w,
                    LATERAL (SELECT tstzrange(upper(r.period), r.booked_end, '[)') * w.whole AS early) g
              WHERE r.ended_by IS NOT NULL AND r.status = 'active'
                AND tstzrange(upper(r.period), r.booked_end, '[)') && w.whole
              GROUP BY 1, 2
         )
         SELECT user_id, resource_id,
                coalesce(b.booked, 0) AS booked, coalesce(s.used, 0) AS used, coalesce(s.idle, 0) AS idle,
                coalesce(e.released, 0) AS released, coalesce(e.released_count, 0) AS released_count,
                coalesce(e.reclaimed, 0) AS reclaimed, coalesce(e.reclaimed_count, 0) AS reclaimed_count
           FROM booked b
           FULL JOIN seen s USING (user_id, resource_id)
           FULL JOIN ended e USING (user_id, resource_id)",
    )
    .bind(from)
    .bind(to)
    .bind(until)
    .fetch_all(&mut *conn)
    .await?)
}

/// Per resource and day (24 h from `from`): the sum of the per-minute mean
/// utilisations and how many minutes had one, in `[from, to)`.
pub async fn heat(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(i64, i32, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT resource_id, floor(extract(epoch FROM hour - $1) / 86400)::int AS day,
                sum(util_sum)::bigint, sum(util_n)::bigint
           FROM usage_hours WHERE hour >= $1 AND hour < $2
          GROUP BY 1, 2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?)
}

/// Per day (24 h from `from`): the used and idle minutes of `user_id`'s
/// reservations in `[from, to)`.
pub async fn trend(
    conn: &mut PgConnection,
    user_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(i32, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT floor(extract(epoch FROM h.hour - $2) / 86400)::int AS day,
                sum(h.used_min)::bigint, sum(h.idle_min)::bigint
           FROM usage_hours h JOIN reservations r ON r.id = h.reservation_id
          WHERE r.user_id = $1 AND h.hour >= $2 AND h.hour < $3
          GROUP BY 1",
    )
    .bind(user_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?)
}

/// Runs of used or idle held time per resource in `[from, to)`, from the
/// per-minute rows (`by_minute`) or the hourly rollups; the newest `limit`.
pub async fn spans(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by_minute: bool,
    limit: i64,
) -> Result<Vec<(i64, DateTime<Utc>, DateTime<Utc>, bool)>> {
    // Gaps and islands: within a run of one state with no missing step,
    // the time minus the row's rank in that state is constant.
    let sql = if by_minute {
        "SELECT resource_id, min(t), max(t) + interval '1 minute', used
           FROM (SELECT resource_id, minute AS t, used_samples > 0 AS used,
                        minute - make_interval(mins => (row_number() OVER
                            (PARTITION BY resource_id, used_samples > 0 ORDER BY minute))::int) AS run
                   FROM usage_minutes
                  WHERE minute >= $1 AND minute < $2 AND reservation_id IS NOT NULL) x
          GROUP BY resource_id, used, run
          ORDER BY 2 DESC, 1
          LIMIT $3"
    } else {
        "SELECT resource_id, min(t), max(t) + interval '1 hour', used
           FROM (SELECT resource_id, hour AS t, used_min * 2 >= used_min + idle_min AS used,
                        hour - make_interval(hours => (row_number() OVER
                            (PARTITION BY resource_id, used_min * 2 >= used_min + idle_min ORDER BY hour))::int) AS run
                   FROM usage_hours
                  WHERE hour >= $1 AND hour < $2 AND reservation_id IS NOT NULL
                    AND used_min + idle_min > 0) x
          GROUP BY resource_id, used, run
          ORDER BY 2 DESC, 1
          LIMIT $3"
    };
    Ok(sqlx::query_as(sql)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?)
}

/// Per Unix user and resource: minutes of use of a GPU they did not hold,
/// in `[from, to)` (whole hours).
pub async fn unreserved(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT unix_user, resource_id, sum(minutes)::bigint
           FROM unreserved_hours WHERE hour >= $1 AND hour < $2
          GROUP BY 1, 2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?)
}

/// Someone a report names.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Person {
    pub id: i64,
    pub display_name: String,
    pub unix_user: String,
    pub groups: Vec<String>,
    /// Whether this account speaks for its Unix user's unreserved use (an
    /// enabled one first, then the newest).
    pub speaks: bool,
}

/// The accounts `ids`, and the account that speaks for each of
/// `unix_users`, with their groups.
pub async fn people(
    conn: &mut PgConnection,
    ids: &[i64],
    unix_users: &[String],
) -> Result<Vec<Person>> {
    Ok(sqlx::query_as(
        "WITH speaker AS (SELECT DISTINCT ON (unix_user) id FROM users
                           WHERE unix_user = ANY($2) ORDER BY unix_user, disabled, id DESC)
         SELECT u.id, u.display_name, u.unix_user,
                coalesce(array_agg(g.name ORDER BY g.name) FILTER (WHERE g.id IS NOT NULL), '{}') AS groups,
                u.id IN (SELECT id FROM speaker) AS speaks
           FROM users u
           LEFT JOIN group_members m ON m.user_id = u.id
           LEFT JOIN groups g ON g.id = m.group_id
          WHERE u.id = ANY($1) OR u.id IN (SELECT id FROM speaker)
          GROUP BY u.id",
    )
    .bind(ids)
    .bind(unix_users)
    .fetch_all(&mut *conn)
    .await?)
}
