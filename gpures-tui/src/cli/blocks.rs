//! `gpures blocks`, `gpures admin block …` and `gpures admin unblock ID`.

use chrono::TimeDelta;
use chrono_tz::Tz;
use gpures_proto::{Block, BlockRequest, Period, limits, text};
use serde::Serialize;
use uuid::Uuid;

use super::booking::Length;
use super::{CliResult, Ctx, Failure};
use crate::output::{self, ReservationJson, table};
use crate::timefmt::{format_local, rfc3339};

/// A block as `--json` prints it.
#[derive(Serialize)]
pub struct BlockJson {
    pub block_id: String,
    pub resource: String,
    pub start: String,
    pub end: String,
    pub reason: String,
    pub by: String,
}

impl BlockJson {
    pub fn new(b: &Block, tz: Tz) -> BlockJson {
        BlockJson {
            block_id: b.block_id.to_string(),
            resource: text::sanitize(&b.resource_name),
            start: rfc3339(b.period.start, tz),
            end: rfc3339(b.period.end, tz),
            reason: text::sanitize(&b.reason),
            by: text::sanitize(&b.created_by),
        }
    }
}

/// One line per block: `  gpu0 2026-11-27 09:00 to 12:00: reason (block 1a2b3c4d)`.
pub fn lines(blocks: &[Block], tz: Tz) -> String {
    let mut out = String::new();
    for b in blocks {
        out.push_str(&format!(
            "  {} {} to {}: {} (block {})\n",
            text::sanitize(&b.resource_name),
            format_local(b.period.start, tz),
            format_local(b.period.end, tz),
            text::sanitize(&b.reason),
            &b.block_id.simple().to_string()[..8]
        ));
    }
    out
}

/// `gpures blocks`: the blocks of the next `days` days.
pub(super) async fn list(ctx: &Ctx, days: i64) -> CliResult<()> {
    if !(1..=limits::WINDOW_MAX_DAYS).contains(&days) {
        return Err(Failure::usage(format!(
            "--days must be 1 to {}",
            limits::WINDOW_MAX_DAYS
        )));
    }
    let window = Period {
        start: ctx.now,
        end: ctx.now + TimeDelta::days(days),
    };
    let blocks = ctx.api(ctx.client.blocks(window).await)?;
    if ctx.json {
        let json: Vec<BlockJson> = blocks.iter().map(|b| BlockJson::new(b, ctx.tz)).collect();
        return ctx.print_json(&json);
    }
    if blocks.is_empty() {
        outln!("no maintenance blocks in the next {days} days");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = blocks
        .iter()
        .map(|b| {
            vec![
                b.block_id.simple().to_string()[..8].to_owned(),
                b.resource_name.clone(),
                format_local(b.period.start, ctx.tz),
                format_local(b.period.end, ctx.tz),
                b.reason.clone(),
                b.created_by.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(&["BLOCK", "RESOURCE", "FROM", "TO", "REASON", "BY"], &rows)
    );
    Ok(())
}

/// What `gpures admin block` was asked.
pub(super) struct Blocking {
    pub resources: Vec<String>,
    pub from: Option<String>,
    pub length: Length,
    pub reason: String,
    pub cancel: bool,
}

/// `gpures admin block NAME… --from … --to|--for … --reason … [--cancel]`.
pub(super) async fn block(ctx: &Ctx, b: Blocking) -> CliResult<()> {
    let Period { start, end } = b.length.period(ctx, b.from.as_deref())?;
    let resources = ctx.resolve_resources(&b.resources).await?;
    let reply = ctx.api(
        ctx.client
            .block(BlockRequest {
                resources,
                period: Period { start, end },
                reason: b.reason,
                cancel_overlapping: b.cancel,
            })
            .await,
    )?;
    if ctx.json {
        #[derive(Serialize)]
        struct Reply {
            blocks: Vec<BlockJson>,
            overlapping: Vec<ReservationJson>,
            cancelled: bool,
        }
        return ctx.print_json(&Reply {
            blocks: reply
                .blocks
                .iter()
                .map(|b| BlockJson::new(b, ctx.tz))
                .collect(),
            overlapping: reply
                .overlapping
                .iter()
                .map(|r| ReservationJson::new(r, ctx.tz))
                .collect(),
            cancelled: reply.cancelled,
        });
    }
    outln!("blocked:");
    out!("{}", lines(&reply.blocks, ctx.tz));
    if reply.overlapping.is_empty() {
        outln!("no reservation was inside it");
    } else {
        if reply.cancelled {
            outln!("cancelled (or cut at the block's start), owners told:");
        } else {
            outln!(
                "kept, owners told (cancel them with `gpures cancel ID --reason …`, or block again with --cancel):"
            );
        }
        out!("{}", output::reservations_table(&reply.overlapping, ctx.tz));
    }
    Ok(())
}

/// `gpures admin unblock ID`: a full id or a unique prefix of 6+.
pub(super) async fn unblock(ctx: &Ctx, id: &str) -> CliResult<()> {
    let block_id = match Uuid::parse_str(id) {
        Ok(u) => u,
        Err(_) => {
            let prefix = id.trim().to_ascii_lowercase().replace('-', "");
            if prefix.len() < 6 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(Failure::usage(
                    "give the block's id or at least 6 of its first hex digits (gpures blocks)",
                ));
            }
            let window = Period {
                start: ctx.now - TimeDelta::days(1),
                end: ctx.now + TimeDelta::days(limits::WINDOW_MAX_DAYS - 1),
            };
            let mut ids: Vec<Uuid> = ctx
                .api(ctx.client.blocks(window).await)?
                .into_iter()
                .map(|b| b.block_id)
                .filter(|b| b.simple().to_string().starts_with(&prefix))
                .collect();
            ids.dedup();
            match ids.as_slice() {
                [one] => *one,
                [] => {
                    return Err(Failure::new(
                        super::exit::ERROR,
                        format!("no block starts with {prefix}"),
                    ));
                }
                _ => {
                    return Err(Failure::usage(format!(
                        "{prefix} names several blocks: give more digits"
                    )));
                }
            }
        }
    };
    let gone = ctx.api(ctx.client.unblock(block_id).await)?;
    if ctx.json {
        let json: Vec<BlockJson> = gone.iter().map(|b| BlockJson::new(b, ctx.tz)).collect();
        return ctx.print_json(&json);
    }
    outln!("lifted:");
    out!("{}", lines(&gone, ctx.tz));
    Ok(())
}
