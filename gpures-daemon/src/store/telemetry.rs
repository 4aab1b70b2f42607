//! `host_telemetry`: each host's latest GPU record, written by that host's
//! daemon so every daemon sharing the database can show every host's GPUs.

use sqlx::PgConnection;

use super::Result;
use crate::gpu::{GpuLink, HostRecord};

/// Replaces this host's latest GPU record.
pub async fn put(conn: &mut PgConnection, record: &HostRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO host_telemetry (host, updated_at, record) VALUES ($1, now(), $2)
         ON CONFLICT (host) DO UPDATE SET updated_at = now(), record = EXCLUDED.record",
    )
    .bind(&record.host)
    .bind(sqlx::types::Json(record))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Every host's latest GPU record.
pub async fn all(conn: &mut PgConnection) -> Result<Vec<HostRecord>> {
    let rows: Vec<(sqlx::types::Json<HostRecord>,)> =
        sqlx::query_as("SELECT record FROM host_telemetry ORDER BY host")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|(r,)| r.0).collect())
}

/// The GPU links of those of `hosts` whose daemon read them (only that part
/// of each record).
pub async fn topology(
    conn: &mut PgConnection,
    hosts: &[String],
) -> Result<Vec<(String, Vec<GpuLink>)>> {
    let rows: Vec<(String, sqlx::types::Json<Vec<GpuLink>>)> = sqlx::query_as(
        "SELECT host, record->'topology' FROM host_telemetry
         WHERE host = ANY($1) AND jsonb_typeof(record->'topology') = 'array'
           AND jsonb_array_length(record->'topology') > 0",
    )
    .bind(hosts)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(h, l)| (h, l.0)).collect())
}
