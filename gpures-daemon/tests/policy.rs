//! Lab policy on the real daemon: every rule refuses with its numbers, edits
//! and extensions cannot get around a rule, groups and members get their own
//! limits, admins may book past a rule with a reason (audited), a queued
//! request that a rule refuses waits without blocking others, and two
//! concurrent bookings cannot both squeeze under a quota, on one daemon or
//! two sharing a database.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{
    ApiError, Booking, BookingRequest, GpuresClient, GroupChange, LoginReply, Period,
    PolicyRefusal, PolicyRule, PolicySet, PolicyTarget, QueueRequest, QueueState,
    ReservationChange,
};
use gpures_testkit::{TestDaemon, fresh_database_url};
use tarpc::context;
use uuid::Uuid;

fn minute() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc")
}

fn at(hours: i64) -> DateTime<Utc> {
    minute() + TimeDelta::hours(hours)
}

async fn try_book(
    c: &GpuresClient,
    who: &LoginReply,
    gpus: &[i64],
    start: DateTime<Utc>,
    hours: i64,
) -> Result<Booking, ApiError> {
    c.create_booking(
        context::current(),
        who.token.clone(),
        BookingRequest {
            request_id: Uuid::new_v4(),
            resources: gpus.to_vec(),
            period: Period {
                start,
                end: start + TimeDelta::hours(hours),
            },
            note: String::new(),
        },
    )
    .await
    .expect("rpc")
}

fn refused(r: Result<Booking, ApiError>) -> PolicyRefusal {
    match r {
        Err(ApiError::Policy(refusal)) => *refusal,
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

async fn set(
    c: &GpuresClient,
    admin: &LoginReply,
    rule: PolicyRule,
    target: PolicyTarget,
    value: Option<i64>,
) {
    let set = PolicySet {
        rule,
        target,
        host: None,
        value,
        threshold: None,
    };
    c.set_policy(context::current(), admin.token.clone(), set)
        .await
        .expect("rpc")
        .expect("set policy");
}

/// A daemon with `gpus` GPUs, an admin (boss) and a member (kim).
struct Lab {
    d: TestDaemon,
    g: Vec<i64>,
    c: GpuresClient,
    boss: LoginReply,
    kim: LoginReply,
}

async fn lab(gpus: i32) -> Lab {
    let d = TestDaemon::builder()
        .with_gpus(gpus)
        .start()
        .await
        .expect("daemon");
    let g = d.gpus.clone();
    let (c, boss) = d.admin("boss@lab.kr", "Boss").await.expect("admin");
    let (_, kim) = d.user("kim@lab.kr", "김민수").await.expect("user");
    Lab { d, g, c, boss, kim }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_refuses_with_its_numbers_and_edits_cannot_get_around_it() {
    let Lab { d, g, c, boss, kim } = lab(4).await;
    let everyone = || PolicyTarget::Everyone;

    // Max length: 8 h.
    set(&c, &boss, PolicyRule::MaxLength, everyone(), Some(8 * 60)).await;
    let r = refused(try_book(&c, &kim, &g[..1], at(1), 9).await);
    assert_eq!(
        (r.rule, r.limit, r.would_be),
        (PolicyRule::MaxLength, 480, 540)
    );
    let ok = try_book(&c, &kim, &g[..1], at(1), 8)
        .await
        .expect("8 h is allowed");
    let id = ok.reservations[0].id;
    // An edit cannot make it longer than the rule either.
    let longer = ReservationChange {
        end: Some(at(10)),
        ..Default::default()
    };
    match c
        .update_reservation(context::current(), kim.token.clone(), id, longer)
        .await
        .expect("rpc")
    {
        Err(ApiError::Policy(r)) => assert_eq!(r.rule, PolicyRule::MaxLength),
        other => panic!("an edit past max-length: {other:?}"),
    }
    // Shortening always passes.
    let shorter = ReservationChange {
        end: Some(at(3)),
        ..Default::default()
    };
    c.update_reservation(context::current(), kim.token.clone(), id, shorter)
        .await
        .expect("rpc")
        .expect("shorten");
    set(&c, &boss, PolicyRule::MaxLength, everyone(), None).await;

    // Max GPUs at once: 2; kim holds gpu0 from +1h to +3h.
    set(&c, &boss, PolicyRule::MaxGpus, everyone(), Some(2)).await;
    let r = refused(try_book(&c, &kim, &g[1..3], at(2), 2).await);
    assert_eq!((r.rule, r.limit, r.would_be), (PolicyRule::MaxGpus, 2, 3));
    let window = r.window.expect("the busiest stretch");
    assert_eq!((window.start, window.end), (at(2), at(3)));
    assert_eq!(r.free_from, Some(at(3)), "moved to when gpu0 is free");
    // After gpu0's reservation ends, two more are fine.
    try_book(&c, &kim, &g[1..3], at(3), 1)
        .await
        .expect("two from +3h");
    set(&c, &boss, PolicyRule::MaxGpus, everyone(), None).await;

    // Horizon: 2 days; the refusal says from when it can be booked.
    set(&c, &boss, PolicyRule::Horizon, everyone(), Some(2 * 1440)).await;
    let r = refused(try_book(&c, &kim, &g[3..], at(72), 1).await);
    assert_eq!(r.rule, PolicyRule::Horizon);
    assert_eq!(r.free_from, Some(at(73) - TimeDelta::days(2)));
    set(&c, &boss, PolicyRule::Horizon, everyone(), None).await;

    // Max future bookings: kim has two (gpu0; gpu1+gpu2 as one booking).
    set(&c, &boss, PolicyRule::MaxFuture, everyone(), Some(2)).await;
    let r = refused(try_book(&c, &kim, &g[3..], at(30), 1).await);
    assert_eq!((r.rule, r.limit, r.would_be), (PolicyRule::MaxFuture, 2, 3));
    assert_eq!(r.free_from, Some(at(3)), "when the first one is over");
    set(&c, &boss, PolicyRule::MaxFuture, everyone(), None).await;

    // GPU-hours in 7 days: 6 h. Kim holds 2 h + 2 × 1 h = 4 h.
    set(
        &c,
        &boss,
        PolicyRule::GpuHoursWeek,
        everyone(),
        Some(6 * 60),
    )
    .await;
    let r = refused(try_book(&c, &kim, &g[3..], at(20), 3).await);
    assert_eq!(
        (r.rule, r.limit, r.would_be),
        (PolicyRule::GpuHoursWeek, 360, 420)
    );
    // The same 3 h fit once the 7 days before their end hold at most 3 h of
    // the 4 (from +167 h: the window then starts at +2 h).
    assert_eq!(r.free_from, Some(at(7 * 24 - 1)));
    try_book(&c, &kim, &g[3..], at(20), 2)
        .await
        .expect("exactly 6 h");
    // Extending any of them now breaks the quota.
    let extend = ReservationChange {
        end: Some(at(4)),
        ..Default::default()
    };
    match c
        .update_reservation(context::current(), kim.token.clone(), id, extend)
        .await
        .expect("rpc")
    {
        Err(ApiError::Policy(r)) => assert_eq!(r.rule, PolicyRule::GpuHoursWeek),
        other => panic!("an extension past the quota: {other:?}"),
    }
    // A week later the window is clear.
    try_book(&c, &kim, &g[3..], at(24 * 8), 3)
        .await
        .expect("next week");

    // An admin books past a rule with a reason, and it is audited; a member
    // cannot.
    let req = BookingRequest {
        request_id: Uuid::new_v4(),
        resources: g[..1].to_vec(),
        period: Period {
            start: at(30),
            end: at(40),
        },
        note: String::new(),
    };
    let member = c
        .book_override(
            context::current(),
            kim.token.clone(),
            req.clone(),
            "deadline".into(),
        )
        .await
        .expect("rpc");
    assert!(
        matches!(member, Err(ApiError::PermissionDenied)),
        "{member:?}"
    );
    refused(try_book(&c, &boss, &g[..1], at(30), 10).await);
    let over = c
        .book_override(
            context::current(),
            boss.token.clone(),
            req,
            "paper deadline".into(),
        )
        .await
        .expect("rpc")
        .expect("override");
    let audited: (String,) = sqlx::query_as(
        "SELECT detail->>'reason' FROM audit_log
          WHERE action = 'reservation.policy_override' AND reservation_id = $1",
    )
    .bind(over.reservations[0].id)
    .fetch_one(d.store.pool())
    .await
    .expect("audit row");
    assert_eq!(audited.0, "paper deadline");

    // Bad rule changes are refused and change nothing.
    let bad = |rule, target, value, threshold| PolicySet {
        rule,
        target,
        host: None,
        value,
        threshold,
    };
    for (who, set, want) in [
        (
            &kim,
            bad(PolicyRule::MaxGpus, everyone(), Some(9), None),
            "permission",
        ),
        (
            &boss,
            bad(
                PolicyRule::MaxGpus,
                PolicyTarget::Group("nope".into()),
                Some(1),
                None,
            ),
            "not found",
        ),
        (
            &boss,
            bad(
                PolicyRule::MaxGpus,
                PolicyTarget::User("x@y.kr".into()),
                Some(1),
                None,
            ),
            "not found",
        ),
        (
            &boss,
            bad(PolicyRule::MaxGpus, everyone(), Some(-1), None),
            "invalid value",
        ),
        (
            &boss,
            bad(PolicyRule::Cooldown, everyone(), Some(60), None),
            "invalid after",
        ),
        (
            &boss,
            bad(PolicyRule::MaxGpus, everyone(), Some(1), Some(60)),
            "invalid after",
        ),
        (
            &boss,
            bad(PolicyRule::MaxGpus, everyone(), None, None),
            "not found",
        ),
    ] {
        let e = c
            .set_policy(context::current(), who.token.clone(), set)
            .await
            .expect("rpc")
            .expect_err("refused");
        assert!(e.to_string().contains(want), "{e} (wanted {want})");
    }
    let left = c
        .policies(context::current(), kim.token.clone())
        .await
        .expect("rpc")
        .expect("policies");
    assert_eq!(left.len(), 1, "only gpu-hours-week is left: {left:?}");
    d.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_members_get_their_own_limits_and_cooldowns_hold() {
    let Lab { d, g, c, boss, kim } = lab(4).await;
    let (_, lee) = d.user("lee@lab.kr", "이서연").await.expect("user");
    let change = |change| {
        let c = c.clone();
        let token = boss.token.clone();
        async move {
            c.change_group(context::current(), token, change)
                .await
                .expect("rpc")
        }
    };
    change(GroupChange::Create {
        name: "vision".into(),
        description: "비전 팀".into(),
    })
    .await
    .expect("create");
    let dup = change(GroupChange::Create {
        name: "VISION".into(),
        description: String::new(),
    })
    .await;
    assert!(
        matches!(dup, Err(ApiError::InvalidArgument { .. })),
        "{dup:?}"
    );
    let group = change(GroupChange::AddMember {
        name: "vision".into(),
        email: "kim@lab.kr".into(),
    })
    .await
    .expect("add kim");
    assert_eq!(group.members.len(), 1);
    // Everyone may hold 1 GPU; vision 3; lee (not in vision) has 2 of her own.
    set(
        &c,
        &boss,
        PolicyRule::MaxGpus,
        PolicyTarget::Everyone,
        Some(1),
    )
    .await;
    set(
        &c,
        &boss,
        PolicyRule::MaxGpus,
        PolicyTarget::Group("vision".into()),
        Some(3),
    )
    .await;
    let r = refused(try_book(&c, &lee, &g[..2], at(1), 1).await);
    assert_eq!(r.limit, 1);
    try_book(&c, &kim, &g[..3], at(1), 1)
        .await
        .expect("vision may hold 3");
    set(
        &c,
        &boss,
        PolicyRule::MaxGpus,
        PolicyTarget::User("lee@lab.kr".into()),
        Some(2),
    )
    .await;
    try_book(&c, &lee, &g[..2], at(5), 1)
        .await
        .expect("lee's own 2");
    // Removing kim from the group brings her back to everyone's 1.
    change(GroupChange::RemoveMember {
        name: "vision".into(),
        email: "kim@lab.kr".into(),
    })
    .await
    .expect("remove");
    let r = refused(try_book(&c, &kim, &g[..2], at(10), 1).await);
    assert_eq!((r.limit, r.would_be), (1, 2));
    let not_member = change(GroupChange::RemoveMember {
        name: "vision".into(),
        email: "kim@lab.kr".into(),
    })
    .await;
    assert!(
        matches!(not_member, Err(ApiError::InvalidArgument { .. })),
        "{not_member:?}"
    );
    // A member cannot change groups.
    let e = c
        .change_group(
            context::current(),
            kim.token.clone(),
            GroupChange::Delete {
                name: "vision".into(),
            },
        )
        .await
        .expect("rpc");
    assert!(matches!(e, Err(ApiError::PermissionDenied)), "{e:?}");

    // Cooldown: 12 h after a reservation of 24 h or more.
    set(&c, &boss, PolicyRule::MaxGpus, PolicyTarget::Everyone, None).await;
    let cooldown = PolicySet {
        rule: PolicyRule::Cooldown,
        target: PolicyTarget::Everyone,
        host: None,
        value: Some(12 * 60),
        threshold: Some(24 * 60),
    };
    c.set_policy(context::current(), boss.token.clone(), cooldown)
        .await
        .expect("rpc")
        .expect("cooldown");
    try_book(&c, &kim, &g[3..], at(20), 24)
        .await
        .expect("a long one");
    let r = refused(try_book(&c, &kim, &g[3..], at(50), 1).await);
    assert_eq!(
        (r.rule, r.would_be, r.free_from),
        (PolicyRule::Cooldown, 360, Some(at(56)))
    );
    try_book(&c, &kim, &g[3..], at(56), 1)
        .await
        .expect("after the cooldown");
    // Others are not affected by kim's cooldown.
    try_book(&c, &lee, &g[2..3], at(50), 1).await.expect("lee");
    d.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bookings_cannot_both_squeeze_under_a_quota() {
    let url = fresh_database_url().await.expect("database");
    let one = TestDaemon::builder()
        .database(url.clone())
        .host("gpu01")
        .with_gpus(8)
        .start()
        .await
        .expect("daemon one");
    let two = TestDaemon::start_on(url, "gpu02", |_| {})
        .await
        .expect("daemon two");
    let g = one.gpus.clone();
    let (c1, boss) = one.admin("boss@lab.kr", "Boss").await.expect("admin");
    let (c1k, kim) = one.user("kim@lab.kr", "김민수").await.expect("user");
    let c2 = two.client().await.expect("client two");
    c2.hello(context::current(), gpures_proto::PROTOCOL_VERSION)
        .await
        .expect("rpc")
        .expect("hello");
    // Weekly quota 10 GPU-hours; every booking is 6 h on a GPU of its own,
    // half through each daemon: exactly one may succeed per round.
    set(
        &c1,
        &boss,
        PolicyRule::GpuHoursWeek,
        PolicyTarget::Everyone,
        Some(10 * 60),
    )
    .await;
    for round in 0..3i64 {
        let start = at(24 * 8 * (round + 1));
        let mut tasks = Vec::new();
        for (i, gpu) in g.iter().enumerate() {
            let c = if i % 2 == 0 { c1k.clone() } else { c2.clone() };
            let (kim, gpu) = (kim.clone(), *gpu);
            tasks.push(tokio::spawn(async move {
                try_book(&c, &kim, &[gpu], start, 6).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => ok += 1,
                Err(ApiError::Policy(r)) => assert_eq!(r.rule, PolicyRule::GpuHoursWeek),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(ok, 1, "round {round}: exactly one of 8 fits the quota");
    }
    // The same for GPUs held at once, across the two daemons.
    set(
        &c1,
        &boss,
        PolicyRule::GpuHoursWeek,
        PolicyTarget::Everyone,
        None,
    )
    .await;
    set(
        &c1,
        &boss,
        PolicyRule::MaxGpus,
        PolicyTarget::Everyone,
        Some(2),
    )
    .await;
    let start = at(24 * 40);
    let mut tasks = Vec::new();
    for (i, gpu) in g.iter().enumerate() {
        let c = if i % 2 == 0 { c1k.clone() } else { c2.clone() };
        let (kim, gpu) = (kim.clone(), *gpu);
        tasks.push(tokio::spawn(async move {
            try_book(&c, &kim, &[gpu], start, 1).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.expect("task").is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 2, "exactly two GPUs at once");
    let held: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM reservations WHERE status = 'active' AND lower(period) = $1",
    )
    .bind(start)
    .fetch_one(one.store.pool())
    .await
    .expect("count");
    assert_eq!(held.0, 2);
    two.stop().await.expect("stop");
    one.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_a_rule_refuses_waits_without_blocking_others() {
    let Lab { d, g, c, boss, kim } = lab(2).await;
    let (_, lee) = d.user("lee@lab.kr", "이서연").await.expect("user");
    set(
        &c,
        &boss,
        PolicyRule::MaxGpus,
        PolicyTarget::Everyone,
        Some(1),
    )
    .await;
    // Kim holds gpu0 now; lee holds gpu1 now.
    try_book(&c, &kim, &g[..1], minute(), 2).await.expect("kim");
    let lees = try_book(&c, &lee, &g[1..], minute(), 2).await.expect("lee");
    let request = |gpus| QueueRequest {
        request_id: Uuid::new_v4(),
        gpus,
        length_minutes: 30,
        host: None,
        until: None,
        note: String::new(),
    };
    // Kim queues first (a second GPU she may not hold), then boss.
    let kims = c
        .enqueue(context::current(), kim.token.clone(), request(1))
        .await
        .expect("rpc")
        .expect("enqueue");
    let boss_req = c
        .enqueue(context::current(), boss.token.clone(), request(1))
        .await
        .expect("rpc")
        .expect("enqueue");
    c.release_booking(context::current(), lee.token.clone(), lees.booking_id)
        .await
        .expect("rpc")
        .expect("release");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let q = c
            .queue(context::current(), boss.token.clone())
            .await
            .expect("rpc")
            .expect("queue");
        let state = |id| q.iter().find(|e| e.id == id).map(|e| e.state);
        if state(boss_req.id) == Some(QueueState::Granted) {
            assert_eq!(
                state(kims.id),
                Some(QueueState::Waiting),
                "kim's waits for her policy"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "boss was not granted: {q:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_is_told_before_enter_what_the_booking_would_meet() {
    let Lab { d, g, c, boss, kim } = lab(2).await;
    set(
        &c,
        &boss,
        PolicyRule::MaxGpus,
        PolicyTarget::Everyone,
        Some(1),
    )
    .await;
    let held = try_book(&c, &kim, &g[..1], at(1), 2).await.expect("kim");
    let preview = |gpus: &[i64], start, hours, ignore| {
        let c = c.clone();
        let token = kim.token.clone();
        let gpus = gpus.to_vec();
        async move {
            c.preview_booking(
                context::current(),
                token,
                gpus,
                Period {
                    start,
                    end: start + TimeDelta::hours(hours),
                },
                ignore,
            )
            .await
            .expect("rpc")
            .expect("preview")
        }
    };
    let p = preview(&g[1..], at(2), 1, None).await;
    assert!(p.holders.is_empty());
    let r = p.refusal.expect("a second GPU at once");
    assert_eq!((r.rule, r.would_be), (PolicyRule::MaxGpus, 2));
    assert_eq!(preview(&g[1..], at(5), 1, None).await.refusal, None);
    // Moving her own reservation is not counted against itself.
    let id = held.reservations[0].id;
    assert_eq!(preview(&g[..1], at(2), 2, Some(id)).await.refusal, None);
    // A taken slot names its holder.
    let (_, lee) = d.user("lee@lab.kr", "이서연").await.expect("user");
    try_book(&c, &lee, &g[1..], at(10), 1).await.expect("lee");
    let p = preview(&g[1..], at(10), 1, None).await;
    assert_eq!(p.holders.len(), 1);
    // Nothing was booked by looking.
    let n: (i64,) = sqlx::query_as("SELECT count(*) FROM reservations")
        .fetch_one(d.store.pool())
        .await
        .expect("count");
    assert_eq!(n.0, 2);
    d.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_never_change_the_past_and_admins_correct_it_with_a_reason() {
    use gpures_proto::{ChangeKind, ChangeTarget};
    let Lab { d, g, c, boss, kim } = lab(1).await;
    // Yesterday's reservation of kim's (written directly: nobody books the past).
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
         SELECT $1, $1, u.id, $2, tstzrange(now() - interval '26 hours', now() - interval '24 hours')
           FROM users u WHERE u.email = 'kim@lab.kr'",
    )
    .bind(id)
    .bind(g[0])
    .execute(d.store.pool())
    .await
    .expect("insert");
    let cancel = c
        .cancel_reservation(context::current(), kim.token.clone(), id)
        .await
        .expect("rpc");
    assert!(
        matches!(&cancel, Err(ApiError::InvalidArgument { reason, .. }) if reason.contains("already over")),
        "{cancel:?}"
    );
    let longer = ReservationChange {
        end: Some(at(1)),
        ..Default::default()
    };
    let edit = c
        .update_reservation(context::current(), kim.token.clone(), id, longer)
        .await
        .expect("rpc");
    assert!(
        matches!(edit, Err(ApiError::InvalidArgument { .. })),
        "{edit:?}"
    );
    // An admin: released is never possible, cancelled is with a reason.
    let release = c
        .change_with_reason(
            context::current(),
            boss.token.clone(),
            ChangeTarget::Reservation(id),
            ChangeKind::Release,
            "fix".into(),
        )
        .await
        .expect("rpc");
    assert!(
        matches!(release, Err(ApiError::InvalidArgument { .. })),
        "{release:?}"
    );
    let fixed = c
        .change_with_reason(
            context::current(),
            boss.token.clone(),
            ChangeTarget::Reservation(id),
            ChangeKind::Cancel,
            "GPU was down all day: not counted".into(),
        )
        .await
        .expect("rpc")
        .expect("an admin corrects the past");
    assert_eq!(fixed[0].status, gpures_proto::ReservationStatus::Cancelled);
    assert_eq!(
        fixed[0].change_reason.as_deref(),
        Some("GPU was down all day: not counted")
    );
    d.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_policy_holds_its_slot_until_an_admin_decides_or_it_expires() {
    let Lab { d, g, c, boss, kim } = lab(2).await;
    let (_, lee) = d.user("lee@lab.kr", "이서연").await.expect("user");
    set(
        &c,
        &boss,
        PolicyRule::MaxGpus,
        PolicyTarget::Everyone,
        Some(1),
    )
    .await;
    try_book(&c, &kim, &g[..1], at(2), 2)
        .await
        .expect("kim's one GPU");
    refused(try_book(&c, &kim, &g[1..], at(2), 2).await);
    let ask = |start, reason: &str| {
        let (c, token, reason) = (c.clone(), kim.token.clone(), reason.to_owned());
        let g1 = g[1];
        async move {
            c.request_approval(
                context::current(),
                token,
                BookingRequest {
                    request_id: Uuid::new_v4(),
                    resources: vec![g1],
                    period: Period {
                        start,
                        end: start + TimeDelta::hours(2),
                    },
                    note: String::new(),
                },
                reason,
                None,
            )
            .await
            .expect("rpc")
        }
    };
    let asked = ask(at(2), "two GPUs for the rebuttal experiments")
        .await
        .expect("request");
    let pending = asked.reservations[0].pending.clone().expect("pending");
    assert_eq!(pending.until, at(2), "undecided by its start: cancelled");
    let inbox = c
        .notifications(context::current(), boss.token.clone(), false, 10)
        .await
        .expect("rpc")
        .expect("inbox");
    assert!(
        inbox
            .items
            .iter()
            .any(|n| n.kind == gpures_proto::NotificationKind::ApprovalRequested)
    );
    // It holds the slot against everyone else.
    assert!(matches!(
        try_book(&c, &lee, &g[1..], at(3), 1).await,
        Err(ApiError::Conflict { .. })
    ));
    let decide = |token: &str, booking, approve, reason: Option<&str>| {
        let (c, token) = (c.clone(), token.to_owned());
        let reason = reason.map(str::to_owned);
        async move {
            c.decide_approval(context::current(), token, booking, approve, reason)
                .await
                .expect("rpc")
        }
    };
    let e = decide(&kim.token, asked.booking_id, true, None).await;
    assert!(matches!(e, Err(ApiError::PermissionDenied)), "{e:?}");
    let approved = decide(
        &boss.token,
        asked.booking_id,
        true,
        Some("ok for this week"),
    )
    .await
    .expect("approve");
    assert_eq!(approved[0].pending, None);
    let again = decide(&boss.token, asked.booking_id, true, None).await;
    assert!(
        matches!(again, Err(ApiError::InvalidArgument { .. })),
        "{again:?}"
    );

    // Denied: cancelled, with the reason.
    let second = ask(at(6), "one more").await.expect("request");
    let e = decide(&boss.token, second.booking_id, false, None).await;
    assert!(
        matches!(e, Err(ApiError::InvalidArgument { .. })),
        "a denial says why: {e:?}"
    );
    let denied = decide(
        &boss.token,
        second.booking_id,
        false,
        Some("the queue is long"),
    )
    .await
    .expect("deny");
    assert_eq!(denied[0].status, gpures_proto::ReservationStatus::Cancelled);
    assert!(
        denied[0]
            .change_reason
            .as_deref()
            .is_some_and(|r| r.contains("the queue is long"))
    );

    // Undecided past its deadline: cancelled by the daemon, kim told.
    let third = ask(at(10), "later").await.expect("request");
    sqlx::query(
        "UPDATE reservations SET pending_until = now() - interval '1 second' WHERE booking_id = $1",
    )
    .bind(third.booking_id)
    .execute(d.store.pool())
    .await
    .expect("age it");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .find_reservations(
                context::current(),
                kim.token.clone(),
                gpures_proto::Lookup::Booking(third.booking_id),
            )
            .await
            .expect("rpc")
            .expect("find");
        if r[0].status == gpures_proto::ReservationStatus::Cancelled {
            assert!(
                r[0].change_reason
                    .as_deref()
                    .is_some_and(|w| w.contains("no admin approved"))
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not expired: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mine = c
        .pending_approvals(context::current(), kim.token.clone())
        .await
        .expect("rpc")
        .expect("pending");
    assert!(mine.is_empty(), "{mine:?}");
    d.stop().await.expect("stop");
}
