//! Book by need on the real daemon: any N GPUs of one host at the earliest
//! start, under a race of 20 bookers; the options `when` shows; and bad
//! queries refused with the reason, booking nothing.

use chrono::{DurationRound, TimeDelta, Utc};
use gpures_proto::{AnyBookingRequest, ApiError, GpuresClient, ReservationFilter, SlotQuery};
use gpures_testkit::TestDaemon;
use tarpc::context;
use uuid::Uuid;

fn query(gpus: u32, minutes: u32, from: chrono::DateTime<Utc>) -> SlotQuery {
    SlotQuery {
        gpus,
        length_minutes: minutes,
        not_before: Some(from),
        host: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_racing_bookers_of_two_gpus_fill_eight_gpus_hour_by_hour() {
    let daemon = TestDaemon::builder()
        .with_gpus(8)
        .start()
        .await
        .expect("daemon");
    let from = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::days(1);
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(
            daemon
                .user(&format!("m{i}@lab.kr"), &format!("Member {i}"))
                .await
                .expect("user"),
        );
    }
    let mut racers = Vec::new();
    for i in 0..20 {
        let (c, login) = members[i % 4].clone();
        racers.push(tokio::spawn(async move {
            c.book_any(
                context::current(),
                login.token.clone(),
                AnyBookingRequest {
                    request_id: Uuid::new_v4(),
                    query: query(2, 60, from),
                    note: format!("racer {i}"),
                },
            )
            .await
        }));
    }
    let mut starts = std::collections::BTreeMap::new();
    for r in racers {
        let got = r.await.expect("join").expect("rpc").expect("booked");
        let rs = &got.booking.reservations;
        assert_eq!(rs.len(), 2, "each answer names its two GPUs");
        assert!(!got.why.is_empty());
        assert_eq!(rs[0].period, rs[1].period);
        assert_eq!(rs[0].period.end - rs[0].period.start, TimeDelta::hours(1));
        *starts.entry(rs[0].period.start).or_insert(0) += 1;
    }
    let expected: std::collections::BTreeMap<_, _> =
        (0..5).map(|h| (from + TimeDelta::hours(h), 4)).collect();
    assert_eq!(
        starts, expected,
        "4 start at once, the other 16 take the earliest later hours"
    );
    assert_eq!(daemon.overlapping_pairs().await.expect("query"), 0);
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn when_shows_the_earliest_options_and_bad_queries_book_nothing() {
    let daemon = TestDaemon::builder()
        .with_gpus(4)
        .start()
        .await
        .expect("daemon");
    let (c, login) = daemon.user("kim@lab.kr", "Kim").await.expect("user");
    let token = login.token.clone();
    let from = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::days(1);
    // gpu0 and gpu1 busy for 2 h, gpu2 for 1 h, gpu3 free.
    for (gpus, hours) in [(vec![0usize, 1], 2), (vec![2], 1)] {
        c.create_booking(
            context::current(),
            token.clone(),
            gpures_proto::BookingRequest {
                request_id: Uuid::new_v4(),
                resources: gpus.iter().map(|i| daemon.gpus[*i]).collect(),
                period: gpures_proto::Period {
                    start: from,
                    end: from + TimeDelta::hours(hours),
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");
    }
    let options = c
        .find_slots(context::current(), token.clone(), query(2, 60, from))
        .await
        .expect("rpc")
        .expect("when");
    let starts: Vec<_> = options.iter().map(|o| o.period.start).collect();
    // The starts worth knowing: when gpu2 frees (with gpu3), and when all
    // are free (every later start works too, so it is not listed).
    assert_eq!(
        starts,
        vec![from + TimeDelta::hours(1), from + TimeDelta::hours(2)],
        "{options:?}"
    );
    let names: Vec<&str> = options[0].gpus.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec!["gpu2", "gpu3"]);
    assert_eq!(options[0].host, "test-host");
    // One GPU for an hour at `from`: only gpu3 is free.
    let one = c
        .find_slots(context::current(), token.clone(), query(1, 60, from))
        .await
        .expect("rpc")
        .expect("when");
    assert_eq!(one[0].period.start, from);
    assert_eq!(one[0].gpus[0].name, "gpu3");

    let before = daemon
        .reservations(&ReservationFilter::default())
        .await
        .expect("rows")
        .len();
    let mut bad = vec![
        (query(0, 60, from), "gpus"),
        (query(5, 60, from), "gpus"),
        (query(1, 0, from), "length"),
        (query(1, 15 * 24 * 60, from), "length"),
        (query(1, 60, from + TimeDelta::days(400)), "from"),
    ];
    bad.push((
        SlotQuery {
            host: Some("elsewhere".into()),
            ..query(1, 60, from)
        },
        "host",
    ));
    for (q, field) in bad {
        for booking in [false, true] {
            let err = if booking {
                c.book_any(
                    context::current(),
                    token.clone(),
                    AnyBookingRequest {
                        request_id: Uuid::new_v4(),
                        query: q.clone(),
                        note: String::new(),
                    },
                )
                .await
                .expect("rpc")
                .map(|_| ())
                .expect_err("refused")
            } else {
                c.find_slots(context::current(), token.clone(), q.clone())
                    .await
                    .expect("rpc")
                    .map(|_| ())
                    .expect_err("refused")
            };
            assert!(
                matches!(err, ApiError::InvalidArgument { field: ref f, .. } if f == field),
                "{q:?}: {err:?}"
            );
        }
    }
    let err = c
        .find_slots(context::current(), token.clone(), query(5, 60, from))
        .await
        .expect("rpc")
        .expect_err("too many");
    assert!(
        err.to_string().contains("the most on one host is 4"),
        "{err}"
    );
    let after = daemon
        .reservations(&ReservationFilter::default())
        .await
        .expect("rows")
        .len();
    assert_eq!(before, after, "nothing was booked");
    // Now, with no start given: begins this minute.
    let got = c
        .book_any(
            context::current(),
            token,
            AnyBookingRequest {
                request_id: Uuid::new_v4(),
                query: SlotQuery {
                    not_before: None,
                    ..query(1, 30, from)
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("now");
    let start = got.booking.reservations[0].period.start;
    assert!(start <= Utc::now() && Utc::now() - start < TimeDelta::minutes(2));
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_two_gpus_are_the_nvlinked_pair_where_the_host_reads_its_topology() {
    let dir = tempfile::tempdir().expect("dir");
    let smi = gpures_testkit::smi::fake_smi(dir.path());
    gpures_testkit::smi::set_topology(dir.path(), true);
    let daemon = TestDaemon::builder()
        .with_gpus(4)
        .config(move |c| {
            c.gpu.backend = gpures_daemon::gpu::BackendChoice::NvidiaSmi;
            c.gpu.nvidia_smi = smi.clone();
            c.gpu.sample_interval_secs = 1;
        })
        .start()
        .await
        .expect("daemon");
    // The monitor stores the matrix with its first sample.
    let hosts = vec!["test-host".to_owned()];
    let mut tries = 0;
    loop {
        let mut conn = daemon.store.acquire().await.expect("conn");
        let known = gpures_daemon::store::telemetry::topology(&mut conn, &hosts)
            .await
            .expect("topology");
        if !known.is_empty() {
            assert_eq!(known[0].1.len(), 6, "every pair of 4 GPUs once");
            break;
        }
        tries += 1;
        assert!(tries < 100, "the topology was never stored");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (c, login) = daemon.user("kim@lab.kr", "김민수").await.expect("user");
    let from = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("trunc")
        + TimeDelta::days(1);
    let book = |c: GpuresClient, token: String| async move {
        c.book_any(
            context::current(),
            token,
            AnyBookingRequest {
                request_id: Uuid::new_v4(),
                query: query(2, 60, from),
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("booked")
    };
    // Lowest indices would be gpu0 and gpu1, linked across NUMA nodes; the
    // NVLink pairs are 0–3 and 1–2.
    let first = book(c.clone(), login.token.clone()).await;
    let names: Vec<&str> = first
        .booking
        .reservations
        .iter()
        .map(|r| r.resource_name.as_str())
        .collect();
    assert_eq!(names, ["gpu0", "gpu3"]);
    assert!(
        first.why.contains("connected by NVLink (NV4)"),
        "{}",
        first.why
    );
    let second = book(c, login.token.clone()).await;
    let names: Vec<&str> = second
        .booking
        .reservations
        .iter()
        .map(|r| r.resource_name.as_str())
        .collect();
    assert_eq!(names, ["gpu1", "gpu2"]);
    daemon.stop().await.expect("stop");
}
