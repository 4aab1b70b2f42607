//! `blocks`: maintenance and blackout windows of resources.

use chrono::{DateTime, Utc};
use gpures_proto::{Block, Period};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

#[derive(sqlx::FromRow)]
struct BlockRow {
    block_id: Uuid,
    resource_id: i64,
    resource_name: String,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    reason: String,
    created_by: String,
}

impl From<BlockRow> for Block {
    fn from(r: BlockRow) -> Block {
        Block {
            block_id: r.block_id,
            resource_id: r.resource_id,
            resource_name: r.resource_name,
            period: Period {
                start: r.start_at,
                end: r.end_at,
            },
            reason: r.reason,
            created_by: r.created_by,
        }
    }
}

/// The block columns with the resource's name; a macro so that queries
/// built on it stay `&'static str`.
macro_rules! block_select {
    () => {
        "SELECT b.block_id, b.resource_id, res.name AS resource_name,
                lower(b.period) AS start_at, upper(b.period) AS end_at, b.reason, b.created_by
           FROM blocks b JOIN resources res ON res.id = b.resource_id "
    };
}

/// One resource's part of a block.
#[derive(Clone, Copy, Debug)]
pub struct NewBlock<'a> {
    pub block_id: Uuid,
    pub resource_id: i64,
    pub period: Period,
    pub reason: &'a str,
    pub created_by: &'a str,
}

pub async fn insert(conn: &mut PgConnection, b: NewBlock<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO blocks (block_id, resource_id, period, reason, created_by)
         VALUES ($1, $2, tstzrange($3, $4, '[)'), $5, $6)",
    )
    .bind(b.block_id)
    .bind(b.resource_id)
    .bind(b.period.start)
    .bind(b.period.end)
    .bind(b.reason)
    .bind(b.created_by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The blocks in force on any of `resources` during `period`.
pub async fn overlapping(
    conn: &mut PgConnection,
    resources: &[i64],
    period: Period,
) -> Result<Vec<Block>> {
    let rows = sqlx::query_as::<_, BlockRow>(concat!(
        block_select!(),
        "WHERE b.removed_at IS NULL AND b.resource_id = ANY($1)
           AND b.period && tstzrange($2, $3, '[)')
         ORDER BY res.name, lower(b.period)"
    ))
    .bind(resources)
    .bind(period.start)
    .bind(period.end)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Block::from).collect())
}

/// Every block in force that overlaps `window`.
pub async fn in_window(conn: &mut PgConnection, window: Period) -> Result<Vec<Block>> {
    let rows = sqlx::query_as::<_, BlockRow>(concat!(
        block_select!(),
        "WHERE b.removed_at IS NULL AND b.period && tstzrange($1, $2, '[)')
         ORDER BY lower(b.period), res.name"
    ))
    .bind(window.start)
    .bind(window.end)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Block::from).collect())
}

/// The parts of block `block_id` still in force (empty once lifted or when
/// unknown).
pub async fn get(conn: &mut PgConnection, block_id: Uuid) -> Result<Vec<Block>> {
    let rows = sqlx::query_as::<_, BlockRow>(concat!(
        block_select!(),
        "WHERE b.block_id = $1 AND b.removed_at IS NULL ORDER BY res.name"
    ))
    .bind(block_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Block::from).collect())
}

/// Per resource, the block in force at `now` or else the next one.
pub async fn current_or_next(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    on: &[i64],
) -> Result<Vec<Block>> {
    let rows = sqlx::query_as::<_, BlockRow>(concat!(
        "SELECT DISTINCT ON (resource_id) * FROM (",
        block_select!(),
        "WHERE b.removed_at IS NULL AND upper(b.period) > $1
           AND (cardinality($2::bigint[]) = 0 OR b.resource_id = ANY($2))) x
         ORDER BY resource_id, start_at"
    ))
    .bind(now)
    .bind(on)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Block::from).collect())
}

/// Lifts the block `block_id`; what it was (empty if unknown or lifted).
pub async fn remove(conn: &mut PgConnection, block_id: Uuid) -> Result<Vec<Block>> {
    let rows = sqlx::query_as::<_, BlockRow>(
        "WITH gone AS (
             UPDATE blocks SET removed_at = now()
              WHERE block_id = $1 AND removed_at IS NULL
          RETURNING block_id, resource_id, period, reason, created_by)
         SELECT g.block_id, g.resource_id, res.name AS resource_name,
                lower(g.period) AS start_at, upper(g.period) AS end_at, g.reason, g.created_by
           FROM gone g JOIN resources res ON res.id = g.resource_id
          ORDER BY res.name",
    )
    .bind(block_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Block::from).collect())
}
