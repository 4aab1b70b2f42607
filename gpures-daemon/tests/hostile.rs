//! No client input can produce `Internal`: generated arguments for every RPC
//! (NUL bytes and other control characters, escape sequences, huge strings,
//! times from year −5000 to the end of chrono's range, reversed periods,
//! extreme ids, unknown UUIDs) are sent to a real daemon by a member and by an
//! admin. Every answer must be a result or a clear refusal, and the daemon
//! keeps serving. The arguments come from a fixed-seed generator, so a
//! failure names an input that reproduces it.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use gpures_proto::{
    ApiError, BookingRequest, Cursor, GpuresClient, Lookup, NewResource, PageRequest, Period,
    RegisterRequest, ReservationChange, ReservationFilter, ResourceKind, ResourceUpdate, Role,
};
use gpures_testkit::TestDaemon;
use tarpc::context;
use uuid::Uuid;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items[i].clone()
    }

    fn flip(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }

    /// `None`, or `Some` of what `make` generates.
    fn opt<T>(&mut self, make: impl FnOnce(&mut Gen) -> T) -> Option<T> {
        if self.flip() { Some(make(self)) } else { None }
    }
}

fn strings() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "\0".into(),
        "a\0b@lab.kr".into(),
        "kim@lab.kr\0".into(),
        "\u{1b}[2J\u{1b}]0;pwned\u{7}".into(),
        "\u{202e}evil\u{202c}".into(),
        "'; DROP TABLE users; --".into(),
        "gpu0".into(),
        "kim@lab.kr".into(),
        "김민수".into(),
        "x".repeat(10_000),
        "가".repeat(600),
        "%00%ff".into(),
        "\u{fffd}\u{feff}".into(),
        "@".into(),
        "a@b.c".into(),
    ]
}

fn at(y: i32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(y, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn times() -> Vec<DateTime<Utc>> {
    let now = Utc::now();
    vec![
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        at(-5000),
        at(1),
        at(1900),
        at(2261),
        at(2263),
        at(9999),
        now,
        now + TimeDelta::seconds(7),
        now + TimeDelta::hours(2),
        now - TimeDelta::days(3),
        now + TimeDelta::days(400),
    ]
}

fn ids() -> Vec<i64> {
    vec![i64::MIN, -1, 0, 1, 2, 3, i64::MAX]
}

fn uuids(known: &[Uuid]) -> Vec<Uuid> {
    let mut v = vec![Uuid::nil(), Uuid::max(), Uuid::new_v4()];
    v.extend_from_slice(known);
    v
}

/// The refusal a hostile call may get; `Internal` is a failure of the daemon.
fn check<T>(what: &str, r: Result<Result<T, ApiError>, tarpc::client::RpcError>) {
    match r {
        Ok(Err(e @ ApiError::Internal { .. })) => panic!("{what} produced {e:?}"),
        Err(e) => panic!("{what}: the connection failed: {e}"),
        Ok(_) => {}
    }
}

fn period(g: &mut Gen) -> Period {
    let t = times();
    Period {
        start: g.pick(&t),
        end: g.pick(&t),
    }
}

fn page(g: &mut Gen, known: &[Uuid]) -> PageRequest {
    let s = strings();
    let t = times();
    PageRequest {
        after: g.opt(|g| Cursor {
            start: g.pick(&t),
            resource_name: g.pick(&s),
            id: g.pick(&uuids(known)),
        }),
        limit: g.pick(&[0, 1, 200, 201, u32::MAX]),
    }
}

fn ctx() -> context::Context {
    let mut c = context::current();
    c.deadline = std::time::Instant::now() + Duration::from_secs(20);
    c
}

async fn round(g: &mut Gen, c: &GpuresClient, token: &str, known: &[Uuid], resources: &[i64]) {
    let s = strings();
    let mut id_pool = ids();
    id_pool.extend_from_slice(resources);
    let t = token.to_owned();
    let pick_ids = |g: &mut Gen| -> Vec<i64> {
        let n = usize::try_from(g.next() % 4).unwrap_or(0);
        (0..n).map(|_| g.pick(&id_pool)).collect()
    };
    check(
        "register",
        c.register(
            ctx(),
            RegisterRequest {
                email: g.pick(&s),
                display_name: g.pick(&s),
                password: g.pick(&s),
            },
        )
        .await,
    );
    check("login", c.login(ctx(), g.pick(&s), g.pick(&s)).await);
    check("whoami", c.whoami(ctx(), g.pick(&s)).await);
    let after = g.opt(|g| gpures_proto::StatusCursor {
        host: g.pick(&s),
        gpu_index: g.pick(&[None, Some(i32::MIN), Some(-1), Some(0), Some(i32::MAX)]),
        name: g.pick(&s),
    });
    check(
        "list_resources",
        c.list_resources(ctx(), t.clone(), g.flip(), after).await,
    );
    check(
        "create_resource",
        c.create_resource(
            ctx(),
            t.clone(),
            NewResource {
                name: g.pick(&s),
                host: g.pick(&s),
                kind: if g.flip() {
                    ResourceKind::Gpu
                } else {
                    ResourceKind::Server
                },
                gpu_index: g.pick(&[None, Some(-1), Some(0), Some(i32::MAX), Some(i32::MIN)]),
                gpu_uuid: g.opt(|g| g.pick(&s)),
                description: g.pick(&s),
            },
        )
        .await,
    );
    check(
        "update_resource",
        c.update_resource(
            ctx(),
            t.clone(),
            g.pick(&id_pool),
            ResourceUpdate {
                name: g.opt(|g| g.pick(&s)),
                host: g.opt(|g| g.pick(&s)),
                gpu_index: g.pick(&[None, Some(None), Some(Some(-5)), Some(Some(i32::MAX))]),
                gpu_uuid: g.opt(|g| g.opt(|g| g.pick(&s))),
                description: g.opt(|g| g.pick(&s)),
                active: Some(true),
            },
        )
        .await,
    );
    check(
        "timeline",
        c.timeline(ctx(), t.clone(), period(g), page(g, known))
            .await,
    );
    check(
        "list_reservations",
        c.list_reservations(
            ctx(),
            t.clone(),
            ReservationFilter {
                resources: pick_ids(g),
                user_email: g.opt(|g| g.pick(&s)),
                window: g.opt(period),
                include_cancelled: g.flip(),
            },
            page(g, known),
        )
        .await,
    );
    let lookup = match g.next() % 3 {
        0 => Lookup::Id(g.pick(&uuids(known))),
        1 => Lookup::Booking(g.pick(&uuids(known))),
        _ => Lookup::Prefix(g.pick(&s)),
    };
    check(
        "find_reservations",
        c.find_reservations(ctx(), t.clone(), lookup).await,
    );
    check(
        "find_reservations (hex)",
        c.find_reservations(
            ctx(),
            t.clone(),
            Lookup::Prefix(g.pick(&[
                "000000".to_owned(),
                "ffffffff-ffff".to_owned(),
                known[0].to_string()[..7].to_owned(),
                "0123456789abcdef0123456789abcdef0".to_owned(),
            ])),
        )
        .await,
    );
    check(
        "create_booking",
        c.create_booking(
            ctx(),
            t.clone(),
            BookingRequest {
                request_id: g.pick(&uuids(known)),
                resources: pick_ids(g),
                period: period(g),
                note: g.pick(&s),
            },
        )
        .await,
    );
    let tm = times();
    check(
        "update_reservation",
        c.update_reservation(
            ctx(),
            t.clone(),
            g.pick(&uuids(known)),
            ReservationChange {
                start: g.opt(|g| g.pick(&tm)),
                end: g.opt(|g| g.pick(&tm)),
                note: g.opt(|g| g.pick(&s)),
            },
        )
        .await,
    );
    let tm2 = times();
    check(
        "update_booking",
        c.update_booking(
            ctx(),
            t.clone(),
            g.pick(&uuids(known)),
            ReservationChange {
                start: g.opt(|g| g.pick(&tm2)),
                end: g.opt(|g| g.pick(&tm2)),
                note: g.opt(|g| g.pick(&s)),
            },
        )
        .await,
    );
    check(
        "cancel_booking",
        c.cancel_booking(ctx(), t.clone(), g.pick(&uuids(known)))
            .await,
    );
    check(
        "release_booking",
        c.release_booking(ctx(), t.clone(), g.pick(&uuids(known)))
            .await,
    );
    check(
        "cancel_reservation",
        c.cancel_reservation(ctx(), t.clone(), g.pick(&uuids(known)))
            .await,
    );
    check(
        "release_now",
        c.release_now(ctx(), t.clone(), g.pick(&uuids(known))).await,
    );
    check(
        "check_availability",
        c.check_availability(
            ctx(),
            t.clone(),
            pick_ids(g),
            period(g),
            g.opt(|g| g.pick(&uuids(known))),
        )
        .await,
    );
    let after = g.opt(|g| gpures_proto::StatusCursor {
        host: g.pick(&s),
        gpu_index: g.pick(&[None, Some(i32::MIN), Some(-1), Some(0), Some(i32::MAX)]),
        name: g.pick(&s),
    });
    check("status", c.status(ctx(), t.clone(), after).await);
    check(
        "list_users",
        c.list_users(
            ctx(),
            t.clone(),
            g.pick(&[None, Some(i64::MIN), Some(-1), Some(i64::MAX)]),
            g.pick(&[0, 1, u32::MAX]),
        )
        .await,
    );
    check(
        "set_role",
        c.set_role(
            ctx(),
            t.clone(),
            g.pick(&s),
            if g.flip() { Role::Admin } else { Role::Member },
        )
        .await,
    );
    check(
        "disable_user",
        c.disable_user(ctx(), t.clone(), g.pick(&s), g.flip(), g.pick(&s))
            .await,
    );
    let mut short = context::current();
    short.deadline = std::time::Instant::now() + Duration::from_millis(600);
    let since = g.pick(&[0, 1, u64::MAX]);
    if let Ok(Err(e @ ApiError::Internal { .. })) = c.wait_for_changes(short, t, since).await {
        panic!("wait_for_changes produced {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_arguments_for_every_rpc_never_produce_internal() {
    let daemon = TestDaemon::builder()
        .with_gpus(2)
        .start()
        .await
        .expect("daemon");
    let (member, login) = daemon.user("kim@lab.kr", "김민수").await.expect("member");
    let (admin, admin_login) = daemon.admin("boss@lab.kr", "Boss").await.expect("admin");
    // One real reservation, so that some ids are known.
    let start = chrono::DurationRound::duration_trunc(
        Utc::now() + TimeDelta::hours(3),
        TimeDelta::minutes(1),
    )
    .expect("trunc");
    let booked = member
        .create_booking(
            context::current(),
            login.token.clone(),
            BookingRequest {
                request_id: Uuid::new_v4(),
                resources: vec![daemon.gpus[0]],
                period: Period {
                    start,
                    end: start + TimeDelta::hours(1),
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");
    let known = vec![booked.reservations[0].id, booked.booking_id];
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..40 {
        round(&mut g, &member, &login.token, &known, &daemon.gpus).await;
        round(&mut g, &admin, &admin_login.token, &known, &daemon.gpus).await;
    }
    // Still serving (the admin's hostile calls may have disabled the member),
    // and nothing overlaps.
    admin
        .whoami(context::current(), admin_login.token.clone())
        .await
        .expect("rpc")
        .expect("whoami");
    assert_eq!(daemon.overlapping_pairs().await.expect("query"), 0);
    daemon.stop().await.expect("stop");
}
