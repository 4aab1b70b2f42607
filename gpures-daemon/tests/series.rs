//! Recurring bookings on the real daemon: one series, each occurrence a
//! booking; all or nothing unless conflicts are skipped (each reported with
//! why); lab policy counts every occurrence; a retry makes nothing twice;
//! one occurrence or this-and-following can be cancelled or edited (all or
//! nothing, checked like any edit).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpures_proto::{
    ApiError, BookingRequest, GpuresClient, LoginReply, Period, PolicyRule, PolicySet,
    PolicyTarget, ReservationStatus, SeriesReply, SeriesRequest,
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

/// `n` daily occurrences of 2 h from +1 day.
fn daily(n: i64) -> Vec<Period> {
    (0..n)
        .map(|k| Period {
            start: at(24 * (k + 1)),
            end: at(24 * (k + 1) + 2),
        })
        .collect()
}

async fn series(
    c: &GpuresClient,
    who: &LoginReply,
    request_id: Uuid,
    gpus: &[i64],
    periods: Vec<Period>,
    skip: bool,
) -> Result<SeriesReply, ApiError> {
    c.book_series(
        context::current(),
        who.token.clone(),
        SeriesRequest {
            request_id,
            resources: gpus.to_vec(),
            periods,
            note: "weekly sync run".into(),
            skip_conflicts: skip,
        },
    )
    .await
    .expect("rpc")
}

async fn count(d: &TestDaemon) -> i64 {
    let n: (i64,) = sqlx::query_as("SELECT count(*) FROM reservations WHERE status = 'active'")
        .fetch_one(d.store.pool())
        .await
        .expect("count");
    n.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_is_all_or_nothing_unless_conflicts_are_skipped() {
    let d = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let g = d.gpus.clone();
    let (c, kim) = d.user("kim@lab.kr", "김민수").await.expect("user");
    let (_, lee) = d.user("lee@lab.kr", "이서연").await.expect("user");
    // Lee holds gpu0 on the third day.
    c.create_booking(
        context::current(),
        lee.token.clone(),
        BookingRequest {
            request_id: Uuid::new_v4(),
            resources: g[..1].to_vec(),
            period: daily(3)[2],
            note: String::new(),
        },
    )
    .await
    .expect("rpc")
    .expect("lee");

    let id = Uuid::new_v4();
    match series(&c, &kim, id, &g[..1], daily(4), false).await {
        Err(ApiError::Series { refused }) => {
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].period, daily(3)[2]);
            assert!(
                matches!(refused[0].why, ApiError::Conflict { .. }),
                "{:?}",
                refused[0].why
            );
        }
        other => panic!("all or nothing: {other:?}"),
    }
    assert_eq!(count(&d).await, 1, "nothing of the series was booked");

    let made = series(&c, &kim, id, &g[..1], daily(4), true)
        .await
        .expect("skip conflicts");
    assert_eq!(made.booked.len(), 3);
    assert_eq!(made.skipped.len(), 1);
    for b in &made.booked {
        assert_eq!(b.reservations[0].series_id, Some(made.series_id));
        assert_eq!(b.reservations[0].note, "weekly sync run");
    }
    // The same request again (a lost reply): the same series, nothing twice.
    let again = series(&c, &kim, id, &g[..1], daily(4), true)
        .await
        .expect("retry");
    assert_eq!(again.series_id, made.series_id);
    let ids = |r: &SeriesReply| -> Vec<Uuid> { r.booked.iter().map(|b| b.booking_id).collect() };
    assert_eq!(ids(&again), ids(&made));
    assert_eq!(count(&d).await, 4);

    // Cancel one occurrence; then the second and every later one.
    let second = made.booked[1].reservations[0].clone();
    c.cancel_reservation(
        context::current(),
        kim.token.clone(),
        made.booked[0].reservations[0].id,
    )
    .await
    .expect("rpc")
    .expect("cancel one");
    let e = c
        .cancel_series(
            context::current(),
            lee.token.clone(),
            made.series_id,
            second.period.start,
        )
        .await
        .expect("rpc");
    assert!(
        matches!(e, Err(ApiError::PermissionDenied)),
        "not lee's: {e:?}"
    );
    let gone = c
        .cancel_series(
            context::current(),
            kim.token.clone(),
            made.series_id,
            second.period.start,
        )
        .await
        .expect("rpc")
        .expect("this and following");
    assert_eq!(gone.len(), 2);
    assert!(
        gone.iter()
            .all(|r| r.status == ReservationStatus::Cancelled)
    );
    assert_eq!(count(&d).await, 1, "only lee's is left");
    let none = c
        .cancel_series(context::current(), kim.token.clone(), Uuid::new_v4(), at(0))
        .await
        .expect("rpc");
    assert!(matches!(none, Err(ApiError::NotFound { .. })), "{none:?}");

    // Bad series change nothing.
    let overlapping = vec![daily(1)[0], daily(1)[0]];
    for (periods, what) in [
        (vec![], "at least one"),
        (overlapping, "must not overlap"),
        (daily(201), "at most"),
    ] {
        let e = series(&c, &kim, Uuid::new_v4(), &g[..1], periods, true)
            .await
            .expect_err("refused");
        assert!(e.to_string().contains(what), "{e} (wanted {what})");
    }
    assert_eq!(count(&d).await, 1);
    d.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_policy_counts_every_occurrence() {
    let d = TestDaemon::builder()
        .with_gpus(1)
        .start()
        .await
        .expect("daemon");
    let g = d.gpus.clone();
    let (c, boss) = d.admin("boss@lab.kr", "Boss").await.expect("admin");
    let (_, kim) = d.user("kim@lab.kr", "김민수").await.expect("user");
    c.set_policy(
        context::current(),
        boss.token.clone(),
        PolicySet {
            rule: PolicyRule::MaxFuture,
            target: PolicyTarget::Everyone,
            host: None,
            value: Some(3),
            threshold: None,
        },
    )
    .await
    .expect("rpc")
    .expect("policy");
    match series(&c, &kim, Uuid::new_v4(), &g, daily(5), false).await {
        Err(ApiError::Series { refused }) => {
            assert_eq!(refused.len(), 2, "the 4th and 5th");
            assert!(
                refused.iter().all(
                    |s| matches!(&s.why, ApiError::Policy(r) if r.rule == PolicyRule::MaxFuture)
                )
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&d).await, 0);
    let made = series(&c, &kim, Uuid::new_v4(), &g, daily(5), true)
        .await
        .expect("skip");
    assert_eq!((made.booked.len(), made.skipped.len()), (3, 2));
    d.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_and_following_is_edited_all_or_nothing_and_checked_like_any_edit() {
    let d = TestDaemon::builder()
        .with_gpus(1)
        .start()
        .await
        .expect("daemon");
    let g = d.gpus.clone();
    let (c, boss) = d.admin("boss@lab.kr", "Boss").await.expect("admin");
    let (_, kim) = d.user("kim@lab.kr", "김민수").await.expect("user");
    let (_, lee) = d.user("lee@lab.kr", "이서연").await.expect("user");
    let made = series(&c, &kim, Uuid::new_v4(), &g, daily(4), false)
        .await
        .expect("series");
    let ids: Vec<Uuid> = made.booked.iter().map(|b| b.reservations[0].id).collect();
    let from = made.booked[1].reservations[0].period.start;
    let periods_now = || async {
        let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, lower(period) FROM reservations WHERE series_id = $1 ORDER BY 2",
        )
        .bind(made.series_id)
        .fetch_all(d.store.pool())
        .await
        .expect("rows");
        rows
    };
    let before = periods_now().await;
    let shifted = |hours: i64, len: i64, which: &[Uuid]| -> Vec<(Uuid, Period)> {
        which
            .iter()
            .map(|id| {
                let k = ids.iter().position(|x| x == id).expect("ours");
                let start = daily(4)[k].start + TimeDelta::hours(hours);
                (
                    *id,
                    Period {
                        start,
                        end: start + TimeDelta::hours(len),
                    },
                )
            })
            .collect()
    };
    let edit = |who: &LoginReply, periods: Vec<(Uuid, Period)>| {
        let c = c.clone();
        let token = who.token.clone();
        let series_id = made.series_id;
        async move {
            c.edit_series(
                context::current(),
                token,
                gpures_proto::SeriesEdit {
                    series_id,
                    from,
                    periods,
                    note: Some("moved".into()),
                    reason: None,
                },
            )
            .await
            .expect("rpc")
        }
    };
    c.set_policy(
        context::current(),
        boss.token.clone(),
        PolicySet {
            rule: PolicyRule::MaxLength,
            target: PolicyTarget::Everyone,
            host: None,
            value: Some(180),
            threshold: None,
        },
    )
    .await
    .expect("rpc")
    .expect("policy");
    let following = &ids[1..];
    // Each longer than the lab allows: refused by the rule, nothing moved.
    match edit(&kim, shifted(0, 4, following)).await {
        Err(ApiError::Policy(r)) => assert_eq!(r.rule, PolicyRule::MaxLength),
        other => panic!("{other:?}"),
    }
    // One left out (the series changed since it was read).
    match edit(&kim, shifted(1, 2, &ids[1..3])).await {
        Err(ApiError::InvalidArgument { field, reason }) => {
            assert_eq!(field, "periods");
            assert!(reason.contains("try again"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The first occurrence is before `from`: not this one or a later one.
    match edit(&kim, shifted(1, 2, &ids)).await {
        Err(ApiError::InvalidArgument { reason, .. }) => {
            assert!(reason.contains("not an occurrence"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Two occurrences onto one another.
    let mut onto = shifted(0, 2, following);
    onto[1].1 = onto[0].1;
    match edit(&kim, onto).await {
        Err(ApiError::InvalidArgument { reason, .. }) => {
            assert!(reason.contains("overlap each other"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Someone else's series.
    assert_eq!(
        edit(&lee, shifted(1, 2, following)).await.err(),
        Some(ApiError::PermissionDenied)
    );
    assert_eq!(periods_now().await, before, "every refusal changed nothing");

    // A day later each: onto the next one's old day, which the update order
    // allows; the first stays.
    let moved = edit(&kim, shifted(24, 2, following)).await.expect("moved");
    assert_eq!(moved.len(), 3);
    assert!(moved.iter().all(|r| r.note == "moved"));
    let after = periods_now().await;
    assert_eq!(after[0], before[0]);
    for k in 1..4 {
        assert_eq!(after[k].1, before[k].1 + TimeDelta::hours(24));
    }
    d.stop().await.expect("stop");
}
