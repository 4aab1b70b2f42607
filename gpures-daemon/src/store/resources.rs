//! `resources`: the bookable GPUs and servers, and the row lock every booking
//! takes first ([`lock`]).

use gpures_proto::{NewResource, Resource, ResourceKind, ResourceUpdate};
use sqlx::PgConnection;

use super::Result;

/// `resources.kind`; an unknown word in the column is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum DbKind {
    Gpu,
    Server,
}

impl From<ResourceKind> for DbKind {
    fn from(k: ResourceKind) -> DbKind {
        match k {
            ResourceKind::Gpu => DbKind::Gpu,
            ResourceKind::Server => DbKind::Server,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ResourceRow {
    id: i64,
    name: String,
    host: String,
    kind: DbKind,
    gpu_index: Option<i32>,
    gpu_uuid: Option<String>,
    description: String,
    active: bool,
}

impl From<ResourceRow> for Resource {
    fn from(r: ResourceRow) -> Self {
        Resource {
            id: r.id,
            name: r.name,
            host: r.host,
            kind: match r.kind {
                DbKind::Gpu => ResourceKind::Gpu,
                DbKind::Server => ResourceKind::Server,
            },
            gpu_index: r.gpu_index,
            gpu_uuid: r.gpu_uuid,
            description: r.description,
            active: r.active,
        }
    }
}

pub async fn list(conn: &mut PgConnection, include_inactive: bool) -> Result<Vec<Resource>> {
    let rows = sqlx::query_as::<_, ResourceRow>(
        "SELECT * FROM resources WHERE active OR $1 ORDER BY host, gpu_index NULLS LAST, name",
    )
    .bind(include_inactive)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Resource::from).collect())
}

/// Deletes resource `id` unless a reservation (active, past or cancelled)
/// refers to it; returns whether it was deleted.
pub async fn delete_unused(conn: &mut PgConnection, id: i64) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM resources WHERE id = $1
         AND NOT EXISTS (SELECT 1 FROM reservations WHERE resource_id = $1)",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn by_name(conn: &mut PgConnection, name: &str) -> Result<Resource> {
    Ok(
        sqlx::query_as::<_, ResourceRow>("SELECT * FROM resources WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?
            .into(),
    )
}

pub async fn insert(conn: &mut PgConnection, r: &NewResource) -> Result<Resource> {
    let row = sqlx::query_as::<_, ResourceRow>(
        "INSERT INTO resources (name, host, kind, gpu_index, gpu_uuid, description)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
    )
    .bind(&r.name)
    .bind(&r.host)
    .bind(DbKind::from(r.kind))
    .bind(r.gpu_index)
    .bind(&r.gpu_uuid)
    .bind(&r.description)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.into())
}

pub async fn update(conn: &mut PgConnection, id: i64, u: &ResourceUpdate) -> Result<Resource> {
    let row = sqlx::query_as::<_, ResourceRow>(
        "UPDATE resources SET
            name = COALESCE($2, name),
            host = COALESCE($3, host),
            gpu_index = CASE WHEN $4 THEN $5 ELSE gpu_index END,
            gpu_uuid = CASE WHEN $6 THEN $7 ELSE gpu_uuid END,
            description = COALESCE($8, description),
            active = COALESCE($9, active)
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(&u.name)
    .bind(&u.host)
    .bind(u.gpu_index.is_some())
    .bind(u.gpu_index.flatten())
    .bind(u.gpu_uuid.is_some())
    .bind(u.gpu_uuid.clone().flatten())
    .bind(&u.description)
    .bind(u.active)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.into())
}

/// Locks the resource rows in id order (a fixed order, so two multi-GPU
/// bookings can never deadlock) and returns them. Every transaction that adds
/// or moves a reservation takes this lock first: racing inserts then queue
/// here instead of deadlocking inside the exclusion constraint's index.
pub async fn lock(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<Resource>> {
    let rows = sqlx::query_as::<_, ResourceRow>(
        "SELECT * FROM resources WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Resource::from).collect())
}
