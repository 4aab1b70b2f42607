//! Maintenance blocks on the real daemon: nobody books into one (create,
//! edit, "any N" and the queue's search all step around it), the
//! reservations already inside are reported and their owners told, the admin
//! chooses to keep or cancel them, the timeline and status show the block,
//! and members cannot block.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{
    ApiError, Block, BlockReply, BlockRequest, Booking, BookingRequest, GpuresClient, LoginReply,
    NotificationKind, PageRequest, Period, ReservationChange, ReservationStatus, SlotQuery, limits,
};
use gpures_testkit::TestDaemon;
use tarpc::context;
use uuid::Uuid;

fn at(hours: i64) -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc")
        + TimeDelta::hours(hours)
}

fn period(from: i64, to: i64) -> Period {
    Period {
        start: at(from),
        end: at(to),
    }
}

async fn book(
    c: &GpuresClient,
    who: &LoginReply,
    gpus: &[i64],
    p: Period,
) -> Result<Booking, ApiError> {
    c.create_booking(
        context::current(),
        who.token.clone(),
        BookingRequest {
            request_id: Uuid::new_v4(),
            resources: gpus.to_vec(),
            period: p,
            note: String::new(),
        },
    )
    .await
    .expect("rpc")
}

async fn block(
    c: &GpuresClient,
    who: &LoginReply,
    gpus: &[i64],
    p: Period,
    cancel: bool,
) -> Result<BlockReply, ApiError> {
    c.block(
        context::current(),
        who.token.clone(),
        BlockRequest {
            resources: gpus.to_vec(),
            period: p,
            reason: "드라이버 업데이트 driver update".into(),
            cancel_overlapping: cancel,
        },
    )
    .await
    .expect("rpc")
}

async fn kinds(c: &GpuresClient, who: &LoginReply) -> Vec<NotificationKind> {
    c.notifications(context::current(), who.token.clone(), false, 50)
        .await
        .expect("rpc")
        .expect("inbox")
        .items
        .into_iter()
        .map(|n| n.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_books_into_a_block_and_the_owners_inside_are_told() {
    let d = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let g = d.gpus.clone();
    let (c, boss) = d.admin("boss@lab.kr", "Boss").await.expect("admin");
    let (_, kim) = d.user("kim@lab.kr", "김민수").await.expect("user");
    let kept = book(&c, &kim, &g[..1], period(3, 5)).await.expect("kim");

    // Members cannot block; bad requests change nothing.
    let e = block(&c, &kim, &g[..1], period(2, 4), false).await;
    assert!(matches!(e, Err(ApiError::PermissionDenied)), "{e:?}");
    let e = block(&c, &boss, &g[..1], period(-4, -2), false).await;
    assert!(matches!(e, Err(ApiError::InvalidArgument { .. })), "{e:?}");
    let e = c
        .block(
            context::current(),
            boss.token.clone(),
            BlockRequest {
                resources: g[..1].to_vec(),
                period: period(2, 4),
                reason: "  ".into(),
                cancel_overlapping: false,
            },
        )
        .await
        .expect("rpc");
    assert!(matches!(e, Err(ApiError::InvalidArgument { .. })), "{e:?}");
    let e = block(&c, &boss, &[9999], period(2, 4), false).await;
    assert!(matches!(e, Err(ApiError::NotFound { .. })), "{e:?}");

    // gpu0 from +2h to +4h: kim's reservation inside is kept and she is told.
    let reply = block(&c, &boss, &g[..1], period(2, 4), false)
        .await
        .expect("block");
    assert_eq!(reply.blocks.len(), 1);
    assert_eq!(reply.overlapping.len(), 1);
    assert_eq!(reply.overlapping[0].id, kept.reservations[0].id);
    assert_eq!(reply.overlapping[0].status, ReservationStatus::Active);
    assert!(
        kinds(&c, &kim)
            .await
            .contains(&NotificationKind::Maintenance)
    );
    let block_id = reply.blocks[0].block_id;

    // Booking into it is refused with the block; beside it is fine.
    match book(&c, &kim, &g[..1], period(1, 3)).await {
        Err(ApiError::Blocked { blocks }) => {
            assert_eq!(blocks[0].reason, "드라이버 업데이트 driver update");
            assert_eq!(blocks[0].period, period(2, 4));
        }
        other => panic!("booking into a block: {other:?}"),
    }
    book(&c, &kim, &g[..1], period(0, 2))
        .await
        .expect("right before it");
    // An admin is refused too (lift the block first).
    assert!(matches!(
        book(&c, &boss, &g[..1], period(2, 3)).await,
        Err(ApiError::Blocked { .. })
    ));
    // Moving a reservation into it is refused.
    let other = book(&c, &kim, &g[1..], period(2, 3)).await.expect("gpu1");
    let (_, lee) = d.user("lee@lab.kr", "이서연").await.expect("user");
    let lees = book(&c, &lee, &g[..1], period(6, 7)).await.expect("lee");
    let into = ReservationChange {
        start: Some(at(5)),
        ..Default::default()
    };
    let moved = c
        .update_reservation(
            context::current(),
            lee.token.clone(),
            lees.reservations[0].id,
            into,
        )
        .await
        .expect("rpc");
    assert!(moved.is_ok(), "after the block is fine: {moved:?}");
    // Into the block's only stretch no reservation holds: still refused.
    let into = ReservationChange {
        start: Some(at(2)),
        end: Some(at(3)),
        ..Default::default()
    };
    let moved = c
        .update_reservation(
            context::current(),
            lee.token.clone(),
            lees.reservations[0].id,
            into,
        )
        .await
        .expect("rpc");
    assert!(matches!(moved, Err(ApiError::Blocked { .. })), "{moved:?}");
    let _ = other;

    // "Any 1 GPU for 2 h from +2h" steps around the block and kim's gpu1.
    let options = c
        .find_slots(
            context::current(),
            kim.token.clone(),
            SlotQuery {
                gpus: 1,
                length_minutes: 120,
                not_before: Some(at(2)),
                host: None,
            },
        )
        .await
        .expect("rpc")
        .expect("slots");
    for o in &options {
        for gpu in &o.gpus {
            if gpu.id == g[0] {
                assert!(o.period.start >= at(7), "gpu0 is blocked then held: {o:?}");
            }
        }
    }

    // The timeline and status show it.
    let timeline = c
        .timeline(
            context::current(),
            kim.token.clone(),
            period(0, 24),
            PageRequest {
                after: None,
                limit: limits::PAGE_MAX,
            },
        )
        .await
        .expect("rpc")
        .expect("timeline");
    assert_eq!(timeline.blocks.len(), 1);
    let status = c
        .status(context::current(), kim.token.clone(), None)
        .await
        .expect("rpc")
        .expect("status");
    let gpu0 = status
        .resources
        .iter()
        .find(|s| s.resource.id == g[0])
        .expect("gpu0");
    assert_eq!(gpu0.block.as_ref().map(|b| b.block_id), Some(block_id));

    // Lifted: the slot is bookable again.
    let e = c
        .unblock(context::current(), kim.token.clone(), block_id)
        .await
        .expect("rpc");
    assert!(matches!(e, Err(ApiError::PermissionDenied)), "{e:?}");
    let gone: Vec<Block> = c
        .unblock(context::current(), boss.token.clone(), block_id)
        .await
        .expect("rpc")
        .expect("unblock");
    assert_eq!(gone.len(), 1);
    let again = c
        .unblock(context::current(), boss.token.clone(), block_id)
        .await
        .expect("rpc");
    assert!(matches!(again, Err(ApiError::NotFound { .. })), "{again:?}");
    book(&c, &boss, &g[1..], period(4, 5))
        .await
        .expect("gpu1 after");
    let audited: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM audit_log WHERE action IN ('block.create', 'block.remove')",
    )
    .fetch_one(d.store.pool())
    .await
    .expect("audit");
    assert_eq!(audited.0, 2);
    d.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_may_cancel_what_is_inside_and_running_ones_are_cut() {
    let d = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let g = d.gpus.clone();
    let (c, boss) = d.admin("boss@lab.kr", "Boss").await.expect("admin");
    let (_, kim) = d.user("kim@lab.kr", "김민수").await.expect("user");
    let (_, lee) = d.user("lee@lab.kr", "이서연").await.expect("user");
    // Kim runs gpu0 now until +3h; lee holds gpu1 at +2h..+3h.
    let running = book(&c, &kim, &g[..1], period(0, 3)).await.expect("kim");
    let inside = book(&c, &lee, &g[1..], period(2, 3)).await.expect("lee");
    let reply = block(&c, &boss, &g, period(1, 4), true)
        .await
        .expect("block");
    assert!(reply.cancelled);
    assert_eq!(reply.blocks.len(), 2, "one row per GPU, one block id");
    assert_eq!(reply.blocks[0].block_id, reply.blocks[1].block_id);
    let by_id = |id| {
        reply
            .overlapping
            .iter()
            .find(|r| r.id == id)
            .expect("listed")
            .clone()
    };
    let cut = by_id(running.reservations[0].id);
    assert_eq!(cut.status, ReservationStatus::Active);
    assert_eq!(cut.period.end, at(1), "cut at the block's start");
    assert_eq!(
        cut.change_reason.as_deref(),
        Some("드라이버 업데이트 driver update")
    );
    let gone = by_id(inside.reservations[0].id);
    assert_eq!(gone.status, ReservationStatus::Cancelled);
    assert!(
        kinds(&c, &kim)
            .await
            .contains(&NotificationKind::AdminChanged)
    );
    assert!(
        kinds(&c, &lee)
            .await
            .contains(&NotificationKind::AdminChanged)
    );
    assert_eq!(d.overlapping_pairs().await.expect("query"), 0);
    d.stop().await.expect("stop");
}
