//! `host_telemetry`: each host's latest GPU record, written by that host's
//! daemon so every daemon sharing the database can show every host's GPUs.

use std::collections::HashMap;
use std::sync::Mutex;

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

/// One host's latest GPU record, if its daemon wrote one.
pub async fn of_host(conn: &mut PgConnection, host: &str) -> Result<Option<HostRecord>> {
    let row: Option<(sqlx::types::Json<HostRecord>,)> =
        sqlx::query_as("SELECT record FROM host_telemetry WHERE host = $1")
            .bind(host)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|(r,)| r.0))
}

/// Every host's latest record, kept parsed between reads: each read asks
/// which rows changed (their `xmin`, new on every write) and parses only
/// those, so `status` over 100 hosts costs what the hosts that wrote since
/// cost, not 100 JSON documents.
#[derive(Debug, Default)]
pub struct Cache {
    hosts: Mutex<HashMap<String, (String, HostRecord)>>,
}

impl Cache {
    /// Every host's latest GPU record, in host order.
    ///
    /// # Errors
    /// Store failures.
    pub async fn all(&self, conn: &mut PgConnection) -> Result<Vec<HostRecord>> {
        let versions: Vec<(String, String)> =
            sqlx::query_as("SELECT host, xmin::text FROM host_telemetry ORDER BY host")
                .fetch_all(&mut *conn)
                .await?;
        let stale: Vec<String> = {
            let hosts = self.lock();
            versions
                .iter()
                .filter(|(host, v)| hosts.get(host).is_none_or(|(seen, _)| seen != v))
                .map(|(host, _)| host.clone())
                .collect()
        };
        if !stale.is_empty() {
            let rows: Vec<(String, String, sqlx::types::Json<HostRecord>)> = sqlx::query_as(
                "SELECT host, xmin::text, record FROM host_telemetry WHERE host = ANY($1)",
            )
            .bind(&stale)
            .fetch_all(&mut *conn)
            .await?;
            let mut hosts = self.lock();
            for (host, v, record) in rows {
                hosts.insert(host, (v, record.0));
            }
        }
        let mut hosts = self.lock();
        // Hosts whose row is gone are forgotten.
        hosts.retain(|host, _| versions.iter().any(|(h, _)| h == host));
        Ok(versions
            .iter()
            .filter_map(|(host, _)| hosts.get(host).map(|(_, r)| r.clone()))
            .collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, HostRecord)>> {
        // A panic while the map was held leaves it usable: at worst stale
        // versions, which the next read replaces.
        self.hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
