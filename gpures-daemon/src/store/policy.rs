//! Groups, group members and policy rules, and the two reads the policy
//! check makes inside a booking transaction.

use chrono::{DateTime, Utc};
use gpures_proto::{Period, UserRef};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

/// A rule as stored, with its group's name and its member.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RuleRow {
    pub id: i64,
    pub rule: String,
    pub scope: String,
    pub group_name: Option<String>,
    pub user_id: Option<i64>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub host: Option<String>,
    pub value: i64,
    pub threshold: Option<i64>,
}

impl RuleRow {
    pub fn user(&self) -> Option<UserRef> {
        Some(UserRef {
            id: self.user_id?,
            email: self.email.clone()?,
            display_name: self.display_name.clone()?,
        })
    }
}

/// The rules that apply to a member (everyone's, their groups' and their
/// own), as one query's condition on `p` for member `$1`.
macro_rules! member_rules {
    () => {
        "SELECT p.id, p.rule, p.scope, g.name AS group_name, p.user_id, u.email, u.display_name,
                p.host, p.value, p.threshold
           FROM policies p
           LEFT JOIN groups g ON g.id = p.group_id
           LEFT JOIN users u ON u.id = p.user_id
          WHERE p.scope = 'everyone'
             OR p.user_id = $1
             OR p.group_id IN (SELECT group_id FROM group_members WHERE user_id = $1)"
    };
}

/// A rule row of [`lock_and_rules`]: all NULL when no rule applies.
#[derive(sqlx::FromRow)]
struct MaybeRule {
    id: Option<i64>,
    rule: Option<String>,
    scope: Option<String>,
    group_name: Option<String>,
    user_id: Option<i64>,
    email: Option<String>,
    display_name: Option<String>,
    host: Option<String>,
    value: Option<i64>,
    threshold: Option<i64>,
}

/// Locks the member's `users` row (so that one member's bookings check their
/// quotas one after another, on every daemon) and returns the rules that
/// apply to them, in one round trip.
pub async fn lock_and_rules(conn: &mut PgConnection, user_id: i64) -> Result<Vec<RuleRow>> {
    let rows = sqlx::query_as::<_, MaybeRule>(concat!(
        "SELECT r.* FROM (SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE) me
         LEFT JOIN LATERAL (",
        member_rules!(),
        ") r ON true"
    ))
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(RuleRow {
                id: r.id?,
                rule: r.rule?,
                scope: r.scope?,
                group_name: r.group_name,
                user_id: r.user_id,
                email: r.email,
                display_name: r.display_name,
                host: r.host,
                value: r.value?,
                threshold: r.threshold,
            })
        })
        .collect())
}

/// The rules that apply to a member, without locking (for previews).
pub async fn rules(conn: &mut PgConnection, user_id: i64) -> Result<Vec<RuleRow>> {
    Ok(sqlx::query_as::<_, RuleRow>(member_rules!())
        .bind(user_id)
        .fetch_all(&mut *conn)
        .await?)
}

/// Every rule, for listings.
pub async fn all_rules(conn: &mut PgConnection) -> Result<Vec<RuleRow>> {
    Ok(sqlx::query_as::<_, RuleRow>(
        "SELECT p.id, p.rule, p.scope, g.name AS group_name, p.user_id, u.email, u.display_name,
                p.host, p.value, p.threshold
           FROM policies p
           LEFT JOIN groups g ON g.id = p.group_id
           LEFT JOIN users u ON u.id = p.user_id
          ORDER BY p.rule, p.scope, g.name, u.email, p.host NULLS FIRST",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// Where a rule is set: the scope and its group or member.
#[derive(Clone, Copy, Debug)]
pub struct RuleKey<'a> {
    pub rule: &'a str,
    pub scope: &'a str,
    pub group_id: Option<i64>,
    pub user_id: Option<i64>,
    pub host: Option<&'a str>,
}

/// Sets a rule's value, replacing the one set for the same key.
pub async fn upsert_rule(
    conn: &mut PgConnection,
    key: RuleKey<'_>,
    value: i64,
    threshold: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO policies (rule, scope, group_id, user_id, host, value, threshold)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (rule, scope, group_id, user_id, host)
         DO UPDATE SET value = EXCLUDED.value, threshold = EXCLUDED.threshold, created_at = now()",
    )
    .bind(key.rule)
    .bind(key.scope)
    .bind(key.group_id)
    .bind(key.user_id)
    .bind(key.host)
    .bind(value)
    .bind(threshold)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes a rule; whether there was one.
pub async fn delete_rule(conn: &mut PgConnection, key: RuleKey<'_>) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM policies
          WHERE rule = $1 AND scope = $2 AND group_id IS NOT DISTINCT FROM $3
            AND user_id IS NOT DISTINCT FROM $4 AND host IS NOT DISTINCT FROM $5",
    )
    .bind(key.rule)
    .bind(key.scope)
    .bind(key.group_id)
    .bind(key.user_id)
    .bind(key.host)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// One of a member's active reservations, as the policy check counts it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Held {
    pub id: Uuid,
    pub booking_id: Uuid,
    pub host: String,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

/// The member's active reservations that overlap `span` (if given) or are
/// not over at `future` (if given), besides `ignore`, with their resources'
/// hosts. Both conditions use the (member, period) index, so the cost grows
/// with what is counted, not with the member's history.
pub async fn held(
    conn: &mut PgConnection,
    user_id: i64,
    span: Option<Period>,
    future: Option<DateTime<Utc>>,
    ignore: &[Uuid],
) -> Result<Vec<Held>> {
    Ok(sqlx::query_as::<_, Held>(
        "SELECT r.id, r.booking_id, res.host, lower(r.period) AS start_at, upper(r.period) AS end_at
           FROM reservations r
           JOIN resources res ON res.id = r.resource_id
          WHERE r.user_id = $1 AND r.status = 'active' AND r.id <> ALL($5)
            AND (($2::timestamptz IS NOT NULL AND r.period && tstzrange($2, $3, '[)'))
                 OR ($4::timestamptz IS NOT NULL AND r.period && tstzrange($4, NULL, '[)')))",
    )
    .bind(user_id)
    .bind(span.map(|s| s.start))
    .bind(span.map(|s| s.end))
    .bind(future)
    .bind(ignore)
    .fetch_all(&mut *conn)
    .await?)
}

/// The hosts of `resources`, by id.
pub async fn hosts(conn: &mut PgConnection, resources: &[i64]) -> Result<Vec<(i64, String)>> {
    Ok(
        sqlx::query_as::<_, (i64, String)>("SELECT id, host FROM resources WHERE id = ANY($1)")
            .bind(resources)
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// A group with its id.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub description: String,
}

/// Every group, by name.
pub async fn groups(conn: &mut PgConnection) -> Result<Vec<GroupRow>> {
    Ok(sqlx::query_as::<_, GroupRow>(
        "SELECT id, name, description FROM groups ORDER BY lower(name)",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// The group named `name` (any case).
pub async fn group_by_name(conn: &mut PgConnection, name: &str) -> Result<GroupRow> {
    Ok(sqlx::query_as::<_, GroupRow>(
        "SELECT id, name, description FROM groups WHERE lower(name) = lower($1)",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?)
}

/// The members of every group: (group id, member).
pub async fn members(conn: &mut PgConnection) -> Result<Vec<(i64, i64, String, String)>> {
    Ok(sqlx::query_as::<_, (i64, i64, String, String)>(
        "SELECT m.group_id, u.id, u.email, u.display_name
           FROM group_members m JOIN users u ON u.id = m.user_id
          ORDER BY lower(u.email)",
    )
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn create_group(conn: &mut PgConnection, name: &str, description: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("INSERT INTO groups (name, description) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(description)
            .fetch_one(&mut *conn)
            .await?,
    )
}

pub async fn delete_group(conn: &mut PgConnection, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM groups WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Adds a member; whether they were not one already.
pub async fn add_member(conn: &mut PgConnection, group_id: i64, user_id: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(group_id)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Removes a member; whether they were one.
pub async fn remove_member(conn: &mut PgConnection, group_id: i64, user_id: i64) -> Result<bool> {
    let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
