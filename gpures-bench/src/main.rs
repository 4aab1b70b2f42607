//! `gpures-bench`: the benchmark suite. Starts everything it needs itself (an
//! embedded PostgreSQL with fsync on, daemons on temp sockets) and measures
//! each figure against a baseline taken in the same run where one exists,
//! because shared machines are noisy. Prints a table, or JSON with `--json`.
//!
//! ```text
//! cargo run --release -p gpures-bench -- [--json] [--history N] [--burst N] [SCENARIO...]
//! ```
//!
//! Scenarios: ping, book, race, timeline, login, memory, tui, gpu, calendar,
//! fair, slot, queue, policy, report, lab (all when none is named; fair needs root). `docs/BENCHMARKS.md`
//! records the figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{Datelike, DurationRound, TimeDelta, Utc};
use gpures_daemon::config::Config;
use gpures_daemon::host::pg::ClusterOptions;
use gpures_proto::{
    BookingRequest, GpuresClient, PROTOCOL_VERSION, Period, RegisterRequest, Reservation,
    ReservationStatus, Resource, ResourceKind, UserRef,
};
use gpures_testkit::{TestCluster, TestDaemon};
use serde::Serialize;
use sqlx::Connection as _;
use tarpc::context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gpures_testkit::PASSWORD;

#[derive(Serialize)]
struct Figure {
    scenario: &'static str,
    name: String,
    value: f64,
    unit: &'static str,
    /// The baseline measured in the same run, if any.
    baseline: Option<f64>,
    /// value / baseline (or baseline / value for throughputs), when both exist.
    ratio: Option<f64>,
    goal: &'static str,
    met: Option<bool>,
}

/// The benchmark's world: a durable PostgreSQL cluster (fsync on) of its own.
struct Env {
    cluster: TestCluster,
    root: PathBuf,
}

impl Env {
    fn start() -> Result<Env> {
        let cluster = TestCluster::start(ClusterOptions::default())?;
        let root = cluster.root().to_owned();
        Ok(Env { cluster, root })
    }

    /// A new database, migrated; returns its URL.
    async fn database(&mut self) -> Result<String> {
        self.cluster.database().await
    }

    /// A daemon in this process on a fresh database, with the benchmark's
    /// limits (no GPU probe, connection limits out of the way).
    async fn daemon(&mut self, adjust: impl FnOnce(&mut Config)) -> Result<Daemon> {
        let url = self.database().await?;
        TestDaemon::start_on(url, "bench", |config| {
            config.gpu.backend = gpures_daemon::gpu::BackendChoice::None;
            config.limits.max_connections_per_user = 2000;
            config.limits.max_connections = 4000;
            adjust(config);
        })
        .await
    }
}

type Daemon = TestDaemon;

/// The benchmark's shortcuts on a daemon: users as (client, token).
trait BenchDaemon {
    async fn member(&self, email: &str) -> Result<(GpuresClient, String)>;
    async fn boss(&self, email: &str) -> Result<(GpuresClient, String)>;
    async fn gpus(&self, n: i32) -> Result<Vec<i64>>;
}

impl BenchDaemon for TestDaemon {
    async fn member(&self, email: &str) -> Result<(GpuresClient, String)> {
        let name = email.split('@').next().unwrap_or("u");
        let (c, login) = self.user(email, name).await?;
        Ok((c, login.token))
    }

    async fn boss(&self, email: &str) -> Result<(GpuresClient, String)> {
        let name = email.split('@').next().unwrap_or("u");
        let (c, login) = self.admin(email, name).await?;
        Ok((c, login.token))
    }

    async fn gpus(&self, n: i32) -> Result<Vec<i64>> {
        self.host_admin()?.add_gpus("bench", n).await
    }
}

/// A new one-GPU booking from `start` for `length`, without a note.
fn one_gpu(gpu: i64, start: chrono::DateTime<Utc>, length: TimeDelta) -> BookingRequest {
    BookingRequest {
        request_id: uuid::Uuid::new_v4(),
        resources: vec![gpu],
        period: Period {
            start,
            end: start + length,
        },
        note: String::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Sorts `(latency, when into the loop)` samples by latency and prints the
/// five slowest with when they came, so a tail that clusters at one moment
/// (a background pass, a flush) shows apart from one spread over the run.
fn report_slowest(what: &str, samples: &mut [(Duration, Duration)]) {
    samples.sort();
    let slowest: Vec<String> = samples
        .iter()
        .rev()
        .take(5)
        .map(|(took, at)| format!("{:.1} ms at {:.1} s", us(*took) / 1000.0, at.as_secs_f64()))
        .collect();
    eprintln!(
        "  {what}: {} samples, slowest {}",
        samples.len(),
        slowest.join(", ")
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn hour_slot(offset_hours: i64) -> Period {
    let start = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .unwrap_or_else(|_| Utc::now())
        + TimeDelta::hours(offset_hours);
    Period {
        start,
        end: start + TimeDelta::hours(1),
    }
}

/// Latencies of `n` sequential whoami calls.
async fn ping_latencies(client: &GpuresClient, token: &str, n: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.whoami(context::current(), token.into()).await??;
        out.push(t.elapsed());
    }
    out.sort();
    Ok(out)
}

/// A connection to a raw echo server of length-prefixed frames: the floor a
/// call over a Unix socket cannot beat.
struct Echo {
    stream: tokio::net::UnixStream,
    frame: Vec<u8>,
    back: Vec<u8>,
}

impl Echo {
    /// Starts the echo server in `dir` and connects; each round trip sends
    /// `size` bytes.
    async fn start(dir: &Path, size: usize) -> Result<Echo> {
        let path = dir.join("echo.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let n = u32::from_be_bytes(len) as usize;
                    if s.read_exact(&mut buf[..n]).await.is_err() {
                        return;
                    }
                    if s.write_all(&len).await.is_err() || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        });
        let stream = tokio::net::UnixStream::connect(&path).await?;
        Ok(Echo {
            stream,
            frame: (0..size).map(|i| i as u8).collect(),
            back: vec![0u8; size],
        })
    }

    async fn round_trip(&mut self) -> Result<Duration> {
        let t = Instant::now();
        let size = u32::try_from(self.frame.len())?;
        self.stream.write_all(&size.to_be_bytes()).await?;
        self.stream.write_all(&self.frame).await?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await?;
        self.stream.read_exact(&mut self.back).await?;
        Ok(t.elapsed())
    }
}

async fn scenario_ping(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    let d = env.daemon(|_| {}).await?;
    let (c, token) = d.member("ping@bench.kr").await?;
    // A whoami request frame is about the token's size plus tarpc's header.
    let mut echo_conn = Echo::start(&env.root, token.len() + 64).await?;
    // Interleaved, after the same warm-up, so both see the same machine:
    // sampled apart, the echo's ratio moved from 2.4× to 5.9× between runs.
    let whoami = |c: &GpuresClient, token: &str| {
        let (c, token) = (c.clone(), token.to_owned());
        async move {
            let t = Instant::now();
            c.whoami(context::current(), token).await??;
            Ok::<_, anyhow::Error>(t.elapsed())
        }
    };
    for _ in 0..300 {
        whoami(&c, &token).await?;
        echo_conn.round_trip().await?;
    }
    let (mut lat, mut echo) = (Vec::with_capacity(3000), Vec::with_capacity(3000));
    for _ in 0..3000 {
        lat.push(whoami(&c, &token).await?);
        echo.push(echo_conn.round_trip().await?);
    }
    lat.sort();
    echo.sort();
    let (p50, p99, e50, e99) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&echo, 0.5),
        percentile(&echo, 0.99),
    );
    figures.push(Figure {
        scenario: "ping",
        name: "whoami p50".into(),
        value: us(p50),
        unit: "µs",
        baseline: Some(us(e50)),
        ratio: Some(us(p50) / us(e50)),
        goal: "p50 ≤ 2.5× raw socket echo, sampled interleaved",
        met: Some(us(p50) <= 2.5 * us(e50)),
    });
    figures.push(Figure {
        scenario: "ping",
        name: "whoami p99".into(),
        value: us(p99),
        unit: "µs",
        baseline: Some(us(e99)),
        ratio: Some(us(p99) / us(e99)),
        goal: "-",
        met: None,
    });
    d.stop().await
}

/// Bookings per second over `secs` with `clients` clients, each on its own GPU.
async fn scenario_book(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    const CLIENTS: usize = 8;
    let secs = Duration::from_secs(5);
    let d = env.daemon(|c| c.limits.db_pool_size = 16).await?;
    let gpus = d.gpus(i32::try_from(CLIENTS)?).await?;
    let mut tasks = Vec::new();
    for (i, gpu) in gpus.iter().copied().enumerate() {
        let (c, token) = d.member(&format!("b{i}@bench.kr")).await?;
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut n = 0i64;
            while started.elapsed() < secs {
                let req = BookingRequest {
                    request_id: uuid::Uuid::new_v4(),
                    resources: vec![gpu],
                    period: hour_slot(2 + n),
                    note: String::new(),
                };
                c.create_booking(context::current(), token.clone(), req)
                    .await??;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut through_daemon = 0i64;
    for t in tasks {
        through_daemon += t.await??;
    }
    let daemon_rate = through_daemon as f64 / secs.as_secs_f64();
    // The same transaction issued directly with sqlx on 8 connections.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect_with(d.database_url.parse()?)
        .await?;
    let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'b0@bench.kr'")
        .fetch_one(&pool)
        .await?;
    let direct = run_for(secs, CLIENTS, |i, n| {
        let pool = pool.clone();
        let gpu = gpus[i];
        async move {
            let mut tx = pool.begin().await?;
            let period = hour_slot(100_000 + n);
            sqlx::query("SELECT id FROM resources WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
                .bind(vec![gpu])
                .fetch_all(&mut *tx)
                .await?;
            sqlx::query("SELECT 1 FROM reservations WHERE user_id = $1 AND request_id = $2")
                .bind(user_id)
                .bind(uuid::Uuid::new_v4())
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query("SELECT id FROM reservations WHERE status = 'active' AND resource_id = ANY($1) AND period && tstzrange($2, $3, '[)')")
                .bind(vec![gpu])
                .bind(period.start)
                .bind(period.end)
                .fetch_all(&mut *tx)
                .await?;
            let id = uuid::Uuid::new_v4();
            sqlx::query("INSERT INTO reservations (id, booking_id, request_id, user_id, resource_id, period, note) VALUES ($1, $1, $2, $3, $4, tstzrange($5, $6, '[)'), '')")
                .bind(id)
                .bind(uuid::Uuid::new_v4())
                .bind(user_id)
                .bind(gpu)
                .bind(period.start)
                .bind(period.end)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO calendar_outbox (reservation_id, operation) VALUES ($1, 'upsert')").bind(id).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO audit_log (actor_id, actor_unix_user, action, reservation_id) VALUES ($1, 'bench', 'reservation.create', $2)")
                .bind(user_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT pg_notify('gpures_changes', '')").execute(&mut *tx).await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
    })
    .await?;
    // One statement per booking, binding (id, user, GPU, start, end), from
    // its own range of hour slots.
    let one_statement = |sql: &'static str, first_slot: i64| {
        let (pool, gpus) = (&pool, &gpus);
        run_for(secs, CLIENTS, move |i, n| {
            let pool = pool.clone();
            let gpu = gpus[i];
            async move {
                let period = hour_slot(first_slot + n);
                sqlx::query(sql)
                    .bind(uuid::Uuid::new_v4())
                    .bind(user_id)
                    .bind(gpu)
                    .bind(period.start)
                    .bind(period.end)
                    .execute(&pool)
                    .await?;
                anyhow::Ok(())
            }
        })
    };
    let bare = one_statement(
        "INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
         VALUES ($1, $1, $2, $3, tstzrange($4, $5, '[)'))",
        200_000,
    )
    .await?;
    // The floor under any booking that announces itself as it commits: the
    // same bare INSERT with its NOTIFY, one statement. PostgreSQL takes one
    // lock for every transaction that notifies and holds it through the
    // commit's WAL flush, so such commits cannot share a flush the way the
    // bare INSERTs do.
    let announced = one_statement(
        "WITH made AS (
             INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
             VALUES ($1, $1, $2, $3, tstzrange($4, $5, '[)')) RETURNING id)
         SELECT pg_notify('gpures_bench', id::text) FROM made",
        300_000,
    )
    .await?;
    pool.close().await;
    figures.push(Figure {
        scenario: "book",
        name: "bookings/s via daemon, 8 clients".into(),
        value: daemon_rate,
        unit: "/s",
        baseline: Some(direct),
        ratio: Some(daemon_rate / direct),
        goal: "≥ 0.85× the same transaction via sqlx",
        met: Some(daemon_rate >= 0.85 * direct),
    });
    figures.push(Figure {
        scenario: "book",
        name: "vs bare single-row INSERT, 8 connections".into(),
        value: daemon_rate,
        unit: "/s",
        baseline: Some(bare),
        ratio: Some(daemon_rate / bare),
        goal: "≥ 0.6× (issue #19)",
        met: Some(daemon_rate >= 0.6 * bare),
    });
    figures.push(Figure {
        scenario: "book",
        name: "… the bare INSERT with its NOTIFY in one statement, 8 connections".into(),
        value: announced,
        unit: "/s",
        baseline: Some(bare),
        ratio: Some(announced / bare),
        goal: "- (the ceiling for a booking that announces itself)",
        met: None,
    });
    figures.push(Figure {
        scenario: "book",
        name: "vs the bare INSERT with its NOTIFY".into(),
        value: daemon_rate,
        unit: "/s",
        baseline: Some(announced),
        ratio: Some(daemon_rate / announced),
        goal: "-",
        met: None,
    });
    d.stop().await
}

/// Booking latency with lab policy on and off, sampled interleaved in one
/// run: one member has all six rules set for them (limits generous enough
/// that none refuses), another none. Each holds 30 bookings over the next
/// three weeks (a busy member: every quota has rows to count), then they
/// book in turn, each booking cancelled again untimed so the count stays.
async fn scenario_policy(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    const N: i64 = 400;
    let d = env.daemon(|_| {}).await?;
    let gpus = d.gpus(4).await?;
    let (c, boss) = d.boss("boss@bench.kr").await?;
    let (_, on) = d.member("on@bench.kr").await?;
    let (_, off) = d.member("off@bench.kr").await?;
    use gpures_proto::{PolicyRule as R, PolicySet, PolicyTarget};
    for (rule, value, threshold) in [
        (R::MaxGpus, 64, None),
        (R::GpuHoursWeek, 10_000 * 60, None),
        (R::MaxLength, 14 * 1440, None),
        (R::Horizon, 365 * 1440, None),
        (R::MaxFuture, 10_000, None),
        (R::Cooldown, 1, Some(14 * 1440)),
    ] {
        let set = PolicySet {
            rule,
            target: PolicyTarget::User("on@bench.kr".into()),
            host: None,
            value: Some(value),
            threshold,
        };
        c.set_policy(context::current(), boss.clone(), set)
            .await??;
    }
    let book = |token: &String, gpu: i64, period: Period| {
        let (c, token) = (c.clone(), token.clone());
        async move {
            let req = BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![gpu],
                period,
                note: String::new(),
            };
            anyhow::Ok(c.create_booking(context::current(), token, req).await??)
        }
    };
    for k in 0..30 {
        book(&on, gpus[0], hour_slot(2 + 16 * k)).await?;
        book(&off, gpus[1], hour_slot(2 + 16 * k)).await?;
    }
    let mut lat_on = Vec::new();
    let mut lat_off = Vec::new();
    for n in 0..(N + 40) {
        let slot = hour_slot(3 + (n % 400));
        for (token, gpu, lat) in [(&on, gpus[2], &mut lat_on), (&off, gpus[3], &mut lat_off)] {
            let t = Instant::now();
            let made = book(token, gpu, slot).await?;
            // The first 40 of each warm up the connection and the caches.
            if n >= 40 {
                lat.push(t.elapsed());
            }
            c.cancel_booking(context::current(), token.clone(), made.booking_id)
                .await??;
        }
    }
    lat_on.sort();
    lat_off.sort();
    let (p_on, p_off) = (percentile(&lat_on, 0.5), percentile(&lat_off, 0.5));
    let ratio = us(p_on) / us(p_off);
    figures.push(Figure {
        scenario: "policy",
        name: "booking p50, all six rules on (vs none)".into(),
        value: us(p_on),
        unit: "µs",
        baseline: Some(us(p_off)),
        ratio: Some(ratio),
        goal: "≤ 1.2× with no rules",
        met: Some(ratio <= 1.2),
    });
    figures.push(Figure {
        scenario: "policy",
        name: "booking p99, all six rules on (vs none)".into(),
        value: us(percentile(&lat_on, 0.99)),
        unit: "µs",
        baseline: Some(us(percentile(&lat_off, 0.99))),
        ratio: Some(us(percentile(&lat_on, 0.99)) / us(percentile(&lat_off, 0.99))),
        goal: "-",
        met: None,
    });
    d.stop().await
}

/// `gpures report` over a year of history on 64 GPUs (a 4-hour booking after
/// another on every GPU, with hourly usage rows), and what the per-minute
/// rollup costs the daemon.
async fn scenario_report(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    use gpures_daemon::service::usage::{Meter, Sample};
    use gpures_daemon::store::usage as store_usage;
    let d = env.daemon(|_| {}).await?;
    let gpus = d.gpus(64).await?;
    let (c, boss) = d.boss("boss@bench.kr").await?;
    let mut members = Vec::new();
    for i in 0..20 {
        members.push(d.member(&format!("m{i}@bench.kr")).await?);
    }
    let mut db = sqlx::PgConnection::connect(&d.database_url).await?;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM users WHERE email LIKE 'm%' ORDER BY id")
            .fetch_all(&mut db)
            .await?;
    let year_ago = Utc::now().duration_trunc(TimeDelta::hours(4))? - TimeDelta::days(365);
    let seeded = Instant::now();
    sqlx::query(
        "INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
         SELECT gen_random_uuid(), gen_random_uuid(), ($1::bigint[])[1 + (g.i + k) % 20], g.id,
                tstzrange($2 + make_interval(hours => 4 * k), $2 + make_interval(hours => 4 * k + 4), '[)')
           FROM unnest($3::bigint[]) WITH ORDINALITY AS g(id, i), generate_series(0, 365 * 6 - 1) k",
    )
    .bind(&ids)
    .bind(year_ago)
    .bind(&gpus)
    .execute(&mut db)
    .await?;
    sqlx::query(
        "INSERT INTO usage_hours (resource_id, hour, reservation_id, used_min, idle_min, util_sum, util_n, util_peak, mem_peak_mib)
         SELECT r.resource_id, h, r.id, u, 60 - u, u * 80, 60, 100, 40000
           FROM reservations r,
                generate_series(lower(r.period), upper(r.period) - interval '1 hour', interval '1 hour') h,
                LATERAL (SELECT (abs(hashtext(r.id::text || h::text)) % 61)::int AS u) x",
    )
    .execute(&mut db)
    .await?;
    sqlx::query(
        "INSERT INTO unreserved_hours (resource_id, hour, unix_user, minutes)
         SELECT g, $1 + make_interval(days => d), 'intruder' || (d % 7), 15
           FROM unnest($2::bigint[]) g, generate_series(0, 364) d",
    )
    .bind(year_ago)
    .bind(&gpus)
    .execute(&mut db)
    .await?;
    sqlx::query("ANALYZE").execute(&mut db).await?;
    eprintln!("  seeded a year in {:.1} s", seeded.elapsed().as_secs_f64());
    // Last full calendar month (UTC).
    let now = Utc::now();
    let this_month = now
        .date_naive()
        .with_day(1)
        .context("month")?
        .and_hms_opt(0, 0, 0)
        .context("month")?
        .and_utc();
    let last_month = this_month
        .checked_sub_months(chrono::Months::new(1))
        .context("month")?;
    let window = Period {
        start: last_month,
        end: this_month,
    };
    let report = |token: String, by: gpures_proto::ReportBy| {
        let c = c.clone();
        async move {
            let req = gpures_proto::ReportRequest { window, by };
            anyhow::Ok(c.report(context::current(), token, req).await??)
        }
    };
    let first = report(boss.clone(), gpures_proto::ReportBy::User).await?;
    // 20 members and 7 intruders without accounts.
    if first.rows.len() != 27 || first.lab.booked < 64 * 28 * 24 * 60 {
        bail!("report: unexpected figures {:?}", first.lab);
    }
    for (who, token, by) in [
        (
            "admin, --by user",
            boss.clone(),
            gpures_proto::ReportBy::User,
        ),
        (
            "admin, --by resource",
            boss.clone(),
            gpures_proto::ReportBy::Resource,
        ),
        (
            "member, --by user",
            members[0].1.clone(),
            gpures_proto::ReportBy::User,
        ),
    ] {
        let mut lat = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            report(token.clone(), by).await?;
            lat.push(t.elapsed());
        }
        lat.sort();
        let p50 = percentile(&lat, 0.5).as_secs_f64() * 1e3;
        figures.push(Figure {
            scenario: "report",
            name: format!("report --month over a year of 64 GPUs, {who}, p50"),
            value: p50,
            unit: "ms",
            baseline: None,
            ratio: None,
            goal: "≤ 200 ms",
            met: Some(p50 <= 200.0),
        });
    }
    // The rollup: a minute of 64 GPUs at the default 5 s sampling is 12
    // samples into the meter and one write of 64 rows.
    let minute0 = now.duration_trunc(TimeDelta::minutes(1))? + TimeDelta::days(1);
    let mut meter = Meter::default();
    let mut lat = Vec::new();
    for m in 0..200 {
        let start = minute0 + TimeDelta::minutes(m);
        let t = Instant::now();
        for s in 0..12 {
            let samples = gpus
                .iter()
                .map(|g| Sample {
                    resource_id: *g,
                    reservation_id: None,
                    used: false,
                    util_pct: Some(50),
                    memory_used_mib: Some(1000),
                    unreserved: std::collections::BTreeSet::new(),
                })
                .collect();
            meter.observe(start + TimeDelta::seconds(5 * s), samples);
        }
        let done = meter.finished(start + TimeDelta::minutes(1));
        if done.len() != gpus.len() {
            bail!("rollup: {} minutes, not {}", done.len(), gpus.len());
        }
        store_usage::put(&mut db, &done).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    // Wall time includes PostgreSQL's work and the round trip: an upper
    // bound of the CPU both spend.
    let share = percentile(&lat, 0.5).as_secs_f64() / 60.0 * 100.0;
    figures.push(Figure {
        scenario: "report",
        name: "usage rollup per minute of 64 GPUs (wall, daemon + PostgreSQL), share of a core"
            .into(),
        value: share,
        unit: "%",
        baseline: None,
        ratio: None,
        goal: "≤ 0.5%",
        met: Some(share <= 0.5),
    });
    figures.push(Figure {
        scenario: "report",
        name: "usage rollup per minute of 64 GPUs, p50 wall".into(),
        value: percentile(&lat, 0.5).as_secs_f64() * 1e3,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "-",
        met: None,
    });
    // What a GPU-day costs on disk (tables and indexes).
    let (minute_bytes, minutes): (i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size('usage_minutes'), (SELECT count(*) FROM usage_minutes)",
    )
    .fetch_one(&mut db)
    .await?;
    let (hour_bytes, hours): (i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size('usage_hours'), (SELECT count(*) FROM usage_hours)",
    )
    .fetch_one(&mut db)
    .await?;
    for (name, bytes, rows, per_day) in [
        (
            "per-minute rows (kept 90 days)",
            minute_bytes,
            minutes,
            1440.0,
        ),
        ("hourly rollups (kept forever)", hour_bytes, hours, 24.0),
    ] {
        figures.push(Figure {
            scenario: "report",
            name: format!("storage per GPU per day: {name}"),
            value: bytes as f64 / rows.max(1) as f64 * per_day / 1024.0,
            unit: "KiB",
            baseline: None,
            ratio: None,
            goal: "-",
            met: None,
        });
    }
    // The timeline's used/idle runs at their costliest (seeded with a change
    // every 7 minutes): the last 6 h (by the minute, but for the hour
    // before the cut), and the last week (6 h by the minute, the rest by the
    // hour; capped at USAGE_SPANS_MAX runs).
    let past_end = now.duration_trunc(TimeDelta::hours(1))? - TimeDelta::hours(1);
    sqlx::query(
        "INSERT INTO usage_minutes (resource_id, minute, reservation_id, samples, used_samples)
         SELECT g, $1 - make_interval(mins => m), (SELECT id FROM reservations LIMIT 1), 12,
                CASE WHEN (m / 7) % 2 = 0 THEN 12 ELSE 0 END
           FROM unnest($2::bigint[]) g, generate_series(1, 36 * 60) m
         ON CONFLICT DO NOTHING",
    )
    .bind(past_end)
    .bind(&gpus)
    .execute(&mut db)
    .await?;
    sqlx::query("ANALYZE usage_minutes")
        .execute(&mut db)
        .await?;
    for (what, hours) in [("6 h", 6), ("7 days", 24 * 7)] {
        let window = Period {
            start: past_end - TimeDelta::hours(hours),
            end: past_end,
        };
        let mut lat = Vec::new();
        let mut spans = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let tl = c
                .timeline(context::current(), boss.clone(), window, Default::default())
                .await??;
            lat.push(t.elapsed());
            spans = tl.usage.len();
        }
        lat.sort();
        figures.push(Figure {
            scenario: "report",
            name: format!("timeline of a past {what}, 64 GPUs ({spans} used/idle runs), p50"),
            value: percentile(&lat, 0.5).as_secs_f64() * 1e3,
            unit: "ms",
            baseline: None,
            ratio: None,
            goal: "-",
            met: None,
        });
    }
    drop(db);
    d.stop().await
}

/// Runs `f(worker, n)` in `workers` loops for `secs`; returns operations/s.
async fn run_for<F, Fut>(secs: Duration, workers: usize, f: F) -> Result<f64>
where
    F: Fn(usize, i64) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let f = Arc::new(f);
    let started = Instant::now();
    let mut counts = vec![0i64; workers];
    let mut handles: Vec<Option<tokio::task::JoinHandle<Result<()>>>> =
        (0..workers).map(|_| None).collect();
    loop {
        for (i, h) in handles.iter_mut().enumerate() {
            if h.as_ref().is_none_or(|h| h.is_finished()) {
                if let Some(done) = h.take() {
                    done.await??;
                    counts[i] += 1;
                }
                if started.elapsed() < secs {
                    *h = Some(tokio::spawn(f(i, counts[i])));
                }
            }
        }
        if started.elapsed() >= secs && handles.iter().all(Option::is_none) {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(counts.iter().sum::<i64>() as f64 / started.elapsed().as_secs_f64())
}

async fn scenario_race(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    let d = env.daemon(|_| {}).await?;
    let gpu = d.gpus(1).await?[0];
    let mut users = Vec::new();
    for i in 0..100 {
        users.push(d.member(&format!("r{i}@bench.kr")).await?);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(users.len() + 1));
    let slot = hour_slot(5);
    let tasks: Vec<_> = users
        .into_iter()
        .map(|(c, t)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let r = c
                    .create_booking(
                        context::current(),
                        t,
                        BookingRequest {
                            request_id: uuid::Uuid::new_v4(),
                            resources: vec![gpu],
                            period: slot,
                            note: String::new(),
                        },
                    )
                    .await;
                (r, Instant::now())
            })
        })
        .collect();
    barrier.wait().await;
    let started = Instant::now();
    let (mut wins, mut conflicts, mut last) = (0, 0, started);
    for t in tasks {
        let (r, at) = t.await?;
        last = last.max(at);
        match r? {
            Ok(_) => wins += 1,
            Err(gpures_proto::ApiError::Conflict { .. }) => conflicts += 1,
            Err(e) => bail!("race: unexpected {e}"),
        }
    }
    let settle = last - started;
    figures.push(Figure {
        scenario: "race",
        name: format!(
            "100 clients, one slot: {wins} winner, {conflicts} conflicts; time to settle"
        ),
        value: settle.as_secs_f64() * 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "exactly 1 winner, ≤ 1000 ms",
        met: Some(wins == 1 && conflicts == 99 && settle <= Duration::from_secs(1)),
    });
    d.stop().await
}

/// Fills `reservations` with `total` back-to-back past hours over 8 GPUs.
async fn fill_history(url: &str, user_id: i64, gpus: &[i64], total: i64) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect_with(&url.parse()?).await?;
    let per = total / gpus.len() as i64;
    for gpu in gpus {
        sqlx::query(
            "INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
             SELECT gen_random_uuid(), gen_random_uuid(), $1, $2,
                    tstzrange(now() - make_interval(hours => (g + 48)::int), now() - make_interval(hours => (g + 47)::int), '[)')
             FROM generate_series(1, $3) g",
        )
        .bind(user_id)
        .bind(gpu)
        .bind(per)
        .execute(&mut conn)
        .await?;
    }
    sqlx::query("ANALYZE reservations")
        .execute(&mut conn)
        .await?;
    Ok(())
}

async fn scenario_timeline(env: &mut Env, figures: &mut Vec<Figure>, big: i64) -> Result<()> {
    let mut p50s = Vec::new();
    for history in [10_000i64, big] {
        let d = env.daemon(|_| {}).await?;
        let (admin, token) = d.boss("admin@bench.kr").await?;
        let gpus = d.gpus(8).await?;
        let me = admin.whoami(context::current(), token.clone()).await??.id;
        let t = Instant::now();
        fill_history(&d.database_url, me, &gpus, history).await?;
        eprintln!(
            "  filled {history} past reservations in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // A realistic week ahead: 300 reservations.
        for i in 0..300i64 {
            let gpu = gpus[usize::try_from(i % 8)?];
            let start =
                Utc::now().duration_trunc(TimeDelta::hours(1))? + TimeDelta::hours(1 + (i / 8) * 3);
            admin
                .create_booking(
                    context::current(),
                    token.clone(),
                    one_gpu(gpu, start, TimeDelta::hours(2)),
                )
                .await??;
        }
        let window = Period {
            start: Utc::now() - TimeDelta::days(1),
            end: Utc::now() + TimeDelta::days(6),
        };
        for _ in 0..30 {
            whole_timeline(&admin, &token, window).await?;
        }
        let mut lat = Vec::new();
        for _ in 0..300 {
            let t = Instant::now();
            let n = whole_timeline(&admin, &token, window).await?;
            lat.push(t.elapsed());
            if n != 300 {
                bail!("the window holds {n} reservations, not 300");
            }
        }
        lat.sort();
        p50s.push(percentile(&lat, 0.5));
        d.stop().await?;
    }
    let ratio = us(p50s[1]) / us(p50s[0]);
    figures.push(Figure {
        scenario: "timeline",
        name: format!("7-day × 8-GPU window p50, {big} vs 10k in history"),
        value: us(p50s[1]),
        unit: "µs",
        baseline: Some(us(p50s[0])),
        ratio: Some(ratio),
        goal: "ratio ≤ 1.5",
        met: Some(ratio <= 1.5),
    });
    Ok(())
}

/// Book by need: the earliest start at which 4 of 64 GPUs are all free for
/// 6 h, with a year of past bookings and the next 90 days booked: the first
/// two weeks in staggered 3-hour blocks (no GPU is free 6 h), then half of
/// the GPUs stay booked. The search has to read past the first week.
async fn scenario_slot(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    let d = env.daemon(|_| {}).await?;
    let (admin, token) = d.boss("admin@bench.kr").await?;
    let gpus = d.gpus(64).await?;
    let me = admin.whoami(context::current(), token.clone()).await??.id;
    let base = Utc::now().duration_trunc(TimeDelta::hours(1))? + TimeDelta::hours(1);
    let mut conn = sqlx::PgConnection::connect_with(&d.database_url.parse()?).await?;
    let t = Instant::now();
    for (i, gpu) in gpus.iter().enumerate() {
        let i = i32::try_from(i)?;
        // A year of history: 4 bookings a day.
        sqlx::query(
            "INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
             SELECT gen_random_uuid(), gen_random_uuid(), $1, $2,
                    tstzrange($3 - make_interval(hours => 6 * g), $3 - make_interval(hours => 6 * g - 5), '[)')
             FROM generate_series(2, 1461) g",
        )
        .bind(me)
        .bind(gpu)
        .bind(base)
        .execute(&mut conn)
        .await?;
        // Ahead: 3 h booked, 1 h free, staggered by GPU; 14 days for the odd
        // GPUs, 90 for the even ones.
        let days = if i % 2 == 0 { 90 } else { 14 };
        sqlx::query(
            "INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
             SELECT gen_random_uuid(), gen_random_uuid(), $1, $2,
                    tstzrange($3 + make_interval(hours => 4 * g + $4), $3 + make_interval(hours => 4 * g + $4 + 3), '[)')
             FROM generate_series(0, $5 * 6 - 1) g",
        )
        .bind(me)
        .bind(gpu)
        .bind(base)
        .bind(i % 4)
        .bind(days)
        .execute(&mut conn)
        .await?;
    }
    sqlx::query("ANALYZE reservations")
        .execute(&mut conn)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&mut conn)
        .await?;
    eprintln!(
        "  {rows} reservations on 64 GPUs in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let query = gpures_proto::SlotQuery {
        gpus: 4,
        length_minutes: 360,
        not_before: None,
        host: None,
    };
    let mut lat = Vec::new();
    for round in 0..230 {
        let t = Instant::now();
        let found = admin
            .find_slots(context::current(), token.clone(), query.clone())
            .await??;
        if round >= 30 {
            lat.push(t.elapsed());
        }
        let first = found.first().context("no slot found")?;
        if first.period.start < base + TimeDelta::days(13) {
            bail!("found {:?}, inside the booked fortnight", first.period);
        }
    }
    lat.sort();
    let p50 = percentile(&lat, 0.5);
    figures.push(Figure {
        scenario: "slot",
        name: format!("earliest 4 of 64 GPUs for 6 h, {rows} reservations, p50"),
        value: us(p50) / 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "≤ 10 ms",
        met: Some(p50 <= Duration::from_millis(10)),
    });
    d.stop().await
}

/// Release to grant: one GPU; Alice holds it (granted from the queue, so at
/// this second), Bob waits in the queue; the time from Alice's release
/// (the call sent) to Bob's request showing granted, 100 times.
async fn scenario_queue(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    use gpures_proto::{QueueRequest, QueueState};
    let d = env.daemon(|_| {}).await?;
    let (alice, a_token) = d.member("alice@bench.kr").await?;
    let (bob, b_token) = d.member("bob@bench.kr").await?;
    d.gpus(1).await?;
    let ask = |minutes| QueueRequest {
        request_id: uuid::Uuid::new_v4(),
        gpus: 1,
        length_minutes: minutes,
        host: None,
        until: None,
        note: String::new(),
    };
    let mut lat = Vec::new();
    for round in 0..110 {
        let held = alice
            .enqueue(context::current(), a_token.clone(), ask(60))
            .await??;
        let a_booking = held.booking_id.context("Alice is granted at once")?;
        let waiting = bob
            .enqueue(context::current(), b_token.clone(), ask(10))
            .await??;
        if waiting.state != QueueState::Waiting {
            bail!("Bob was granted while Alice held the GPU");
        }
        let mut since = bob
            .wait_for_changes(context::current(), b_token.clone(), 0)
            .await??
            .version;
        let t = Instant::now();
        alice
            .release_booking(context::current(), a_token.clone(), a_booking)
            .await??;
        let b_booking = loop {
            let q = bob.queue(context::current(), b_token.clone()).await??;
            if let Some(b) = q
                .iter()
                .find(|e| e.id == waiting.id && e.state == QueueState::Granted)
                .and_then(|e| e.booking_id)
            {
                break b;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("not granted in 10 s");
            }
            since = bob
                .wait_for_changes(context::current(), b_token.clone(), since)
                .await??
                .version;
        };
        if round >= 10 {
            lat.push(t.elapsed());
        }
        bob.release_booking(context::current(), b_token.clone(), b_booking)
            .await??;
    }
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    figures.push(Figure {
        scenario: "queue",
        name: "release to grant of the waiting head, p50".into(),
        value: us(p50) / 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "-",
        met: None,
    });
    figures.push(Figure {
        scenario: "queue",
        name: "release to grant of the waiting head, p99".into(),
        value: us(p99) / 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "≤ 1000 ms",
        met: Some(p99 <= Duration::from_secs(1)),
    });
    d.stop().await
}

/// Every reservation of `window`, page after page of the largest size, as
/// the TUI loads it; returns how many there were.
/// Every page of the status, as the client reads it; how many resources and
/// how many pages.
async fn whole_status(client: &GpuresClient, token: &str) -> Result<(usize, usize)> {
    let (mut n, mut pages) = (0, 0);
    let mut after = None;
    loop {
        let s = client
            .status(context::current(), token.to_owned(), after)
            .await??;
        n += s.resources.len();
        pages += 1;
        match s.next {
            Some(next) => after = Some(next),
            None => return Ok((n, pages)),
        }
    }
}

async fn whole_timeline(client: &GpuresClient, token: &str, window: Period) -> Result<usize> {
    let mut page = gpures_proto::PageRequest {
        after: None,
        limit: gpures_proto::limits::PAGE_MAX,
    };
    let mut n = 0;
    loop {
        let tl = client
            .timeline(context::current(), token.to_owned(), window, page.clone())
            .await??;
        n += tl.reservations.len();
        match tl.next {
            Some(after) => {
                page.after = Some(after);
                page.limit = gpures_proto::limits::TIMELINE_PAGE_MAX;
            }
            None => return Ok(n),
        }
    }
}

async fn scenario_login(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    let d = env.daemon(|_| {}).await?;
    let (c, token) = d.member("ping@bench.kr").await?;
    let mut loggers = Vec::new();
    for i in 0..20 {
        loggers.push(d.member(&format!("l{i}@bench.kr")).await?.0);
    }
    ping_latencies(&c, &token, 200).await?;
    let idle = ping_latencies(&c, &token, 1000).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, l) in loggers.into_iter().enumerate() {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = l
                    .login(
                        context::current(),
                        format!("l{i}@bench.kr"),
                        PASSWORD.into(),
                    )
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = ping_latencies(&c, &token, 1000).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let (i99, b99) = (percentile(&idle, 0.99), percentile(&busy, 0.99));
    figures.push(Figure {
        scenario: "login",
        name: "whoami p99 during 20 concurrent logins".into(),
        value: us(b99),
        unit: "µs",
        baseline: Some(us(i99)),
        ratio: Some(us(b99) / us(i99)),
        goal: "≤ 2× idle p99",
        met: Some(us(b99) <= 2.0 * us(i99)),
    });
    d.stop().await
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The real `gpures-daemon` binary, built next to this one, serving `url`
/// from `dir` in a process of its own: its memory is measured apart from
/// the clients in this process.
struct DaemonProcess {
    child: tokio::process::Child,
    pid: u32,
    socket: PathBuf,
}

impl DaemonProcess {
    async fn start(dir: &Path, url: &str) -> Result<(Self, GpuresClient)> {
        let bin = std::env::current_exe()?
            .parent()
            .map(|d| d.join("gpures-daemon"))
            .filter(|p| p.is_file())
            .context(
                "gpures-daemon must be built next to gpures-bench (cargo build --release --workspace)",
            )?;
        std::fs::create_dir_all(dir)?;
        let config = dir.join("gpures.toml");
        std::fs::write(
            &config,
            "[limits]\nmax_connections = 2000\nmax_connections_per_user = 2000\n[gpu]\nbackend = \"none\"\n[auth]\naccounts_per_unix_user = 1000\n",
        )?;
        let socket = dir.join("gpures.sock");
        let child = tokio::process::Command::new(&bin)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir)
            .arg("--config")
            .arg(&config)
            .env("GPURES_DATABASE_URL", url)
            .env("GPURES_LOG", "warn")
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("pid")?;
        for _ in 0..100 {
            if let Ok(c) = gpures_testkit::connect(&socket).await {
                return Ok((Self { child, pid, socket }, c));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the daemon did not start")
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid).unwrap_or(0)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn scenario_memory(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    let url = env.database().await?;
    let (daemon, client) = DaemonProcess::start(&env.root.join("memory"), &url).await?;
    // Settle, then read the idle figure with one client connected.
    client
        .register(
            context::current(),
            RegisterRequest {
                email: "m@bench.kr".into(),
                display_name: "M".into(),
                password: PASSWORD.into(),
            },
        )
        .await??;
    let token = client
        .login(context::current(), "m@bench.kr".into(), PASSWORD.into())
        .await??
        .token;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = daemon.rss_kib();
    let mut conns = Vec::new();
    for _ in 0..500 {
        let c = gpures_testkit::connect(&daemon.socket).await?;
        c.whoami(context::current(), token.clone()).await??;
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = daemon.rss_kib();
    drop(conns);
    daemon.stop().await;
    figures.push(Figure {
        scenario: "memory",
        name: "daemon RSS idle".into(),
        value: idle as f64 / 1024.0,
        unit: "MiB",
        baseline: None,
        ratio: None,
        goal: "≤ 30 MiB",
        met: Some(idle <= 30 * 1024),
    });
    figures.push(Figure {
        scenario: "memory",
        name: "daemon RSS with 500 open connections".into(),
        value: loaded as f64 / 1024.0,
        unit: "MiB",
        baseline: None,
        ratio: None,
        goal: "≤ 100 MiB",
        met: Some(loaded <= 100 * 1024),
    });
    Ok(())
}

fn synthetic_week(now: chrono::DateTime<Utc>) -> (Vec<Resource>, Vec<Reservation>) {
    let resources: Vec<Resource> = (0..8)
        .map(|i| Resource {
            id: i + 1,
            name: format!("gpu{i}"),
            host: "bench".into(),
            kind: ResourceKind::Gpu,
            gpu_index: Some(i32::try_from(i).unwrap_or(0)),
            gpu_uuid: None,
            description: String::new(),
            active: true,
        })
        .collect();
    let names = [
        "김민수",
        "이서연",
        "박지훈",
        "최유진",
        "Alex Morgan",
        "Priya Natarajan",
    ];
    let reservations = (0..300i64)
        .map(|i| {
            let start = now - TimeDelta::days(1) + TimeDelta::minutes(i / 8 * 90);
            Reservation {
                id: uuid::Uuid::from_u128(i as u128 + 1),
                booking_id: uuid::Uuid::from_u128(i as u128 + 1),
                resource_id: i % 8 + 1,
                resource_name: format!("gpu{}", i % 8),
                user: UserRef {
                    id: i % 6 + 1,
                    email: format!("u{}@lab.kr", i % 6),
                    display_name: names[usize::try_from(i % 6).unwrap_or(0)].into(),
                },
                period: Period {
                    start,
                    end: start + TimeDelta::minutes(80),
                },
                note: "bench".into(),
                status: ReservationStatus::Active,
                created_at: now,
                updated_at: now,
                sync: gpures_proto::SyncState::Off,
                change_reason: None,
                series_id: None,
                pending: None,
            }
        })
        .collect();
    (resources, reservations)
}

async fn scenario_tui(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    use gpures_tui::tui::app::{App, Msg, Snapshot, Zoom};
    let d = env.daemon(|_| {}).await?;
    let (admin, token) = d.boss("admin@bench.kr").await?;
    let gpus = d.gpus(8).await?;
    for (i, gpu) in gpus.iter().enumerate() {
        for k in 0..37 {
            admin
                .create_booking(
                    context::current(),
                    token.clone(),
                    BookingRequest {
                        request_id: uuid::Uuid::new_v4(),
                        resources: vec![*gpu],
                        period: hour_slot(1 + i64::try_from(k * 4 + i % 3)?),
                        note: String::new(),
                    },
                )
                .await??;
        }
    }
    let tz: chrono_tz::Tz = "Asia/Seoul".parse().map_err(|_| anyhow::anyhow!("zone"))?;
    // Start to first full frame with a cached token: connect, hello, load
    // everything a refresh loads, draw 160×48.
    let mut starts = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let client = gpures_tui::client::Client::connect(&d.socket).await?;
        let host = client.hello().host.clone();
        let session = gpures_tui::tui::Session::new(client, Some(token.clone()), None);
        let mut app = App::new(tz, Utc::now(), true, "admin@bench.kr").with_host(&host);
        let msg = session.execute(app.refresh()).await;
        if !matches!(msg, Msg::Loaded(_)) {
            bail!("refresh failed: {msg:?}");
        }
        app.apply(msg);
        let screen = gpures_tui::tui::render(&mut app, 160, 48);
        starts.push(t.elapsed());
        assert!(screen.contains("gpu7"));
    }
    starts.sort();
    let start_p50 = percentile(&starts, 0.5);
    figures.push(Figure {
        scenario: "tui",
        name: "start to first full frame (cached token, 300 reservations)".into(),
        value: start_p50.as_secs_f64() * 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "≤ 150 ms",
        met: Some(start_p50 <= Duration::from_millis(150)),
    });
    // One frame of a week × 8 GPUs × 300 reservations.
    let now = Utc::now();
    let (resources, reservations) = synthetic_week(now);
    let mut app = App::new(tz, now, true, "u0@lab.kr");
    app.apply(Msg::Loaded(Box::new(Snapshot {
        resources,
        reservations,
        window: Some(Period {
            start: now - TimeDelta::days(2),
            end: now + TimeDelta::days(14),
        }),
        ..Snapshot::default()
    })));
    // Zoom out to the week view, as `-` twice does.
    for _ in 0..2 {
        app.key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Char('-'),
        ));
    }
    assert_eq!(app.timeline().zoom, Zoom::Week);
    let backend = ratatui::backend::TestBackend::new(160, 48);
    let mut terminal = ratatui::Terminal::new(backend)?;
    let (_, cols, rows) = gpures_tui::tui::draw::geometry(
        ratatui::layout::Rect::new(0, 0, 160, 48),
        app.timeline().name_col,
    );
    app.apply(Msg::Resized { cols, rows });
    for _ in 0..50 {
        terminal.draw(|f| gpures_tui::tui::draw::draw(&app, f))?;
    }
    let mut frames = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        terminal.draw(|f| gpures_tui::tui::draw::draw(&app, f))?;
        frames.push(t.elapsed());
    }
    frames.sort();
    let frame = percentile(&frames, 0.5);
    figures.push(Figure {
        scenario: "tui",
        name: "one frame, week × 8 GPUs × 300 reservations, 160×48 (p50)".into(),
        value: frame.as_secs_f64() * 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "≤ 2 ms",
        met: Some(frame <= Duration::from_millis(2)),
    });
    d.stop().await
}

fn scenario_gpu(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    use gpures_daemon::gpu::{BackendChoice, Probe, probe_report};
    // A stand-in nvidia-smi printing the H100 capture: measures our side
    // (spawning it twice and parsing); a real nvidia-smi adds the driver's
    // time (about 40 ms CPU per sample on an H200, see docs/BENCHMARKS.md).
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gpures-testkit/data/nvidia-smi/h100-driver580"
    );
    let smi = env.root.join("nvidia-smi");
    std::fs::write(
        &smi,
        format!(
            "#!/bin/sh\ncase \"$1\" in --query-gpu=*) cat {fixtures}/query-gpu-busy-nounits.csv ;; *) cat {fixtures}/compute-apps-busy-nounits.csv ;; esac\n"
        ),
    )?;
    std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    for (label, probe) in [
        (
            "nvidia-smi (stand-in script)",
            Probe::new(BackendChoice::NvidiaSmi, &smi),
        ),
        (
            "nvml",
            Probe::new(BackendChoice::Nvml, Path::new("nvidia-smi")),
        ),
        (
            "none",
            Probe::new(BackendChoice::None, Path::new("nvidia-smi")),
        ),
    ] {
        if probe.backend_name() == "none" && label != "none" {
            figures.push(Figure {
                scenario: "gpu",
                name: format!("{label}: not available here"),
                value: 0.0,
                unit: "ms CPU",
                baseline: None,
                ratio: None,
                goal: "-",
                met: None,
            });
            continue;
        }
        let report = probe_report(&probe, 50, true)?;
        let v: serde_json::Value = serde_json::from_str(&report)?;
        let cpu_ms = v["cpu_ms_per_sample"].as_f64().unwrap_or(0.0);
        let share = cpu_ms / 5000.0 * 100.0;
        figures.push(Figure {
            scenario: "gpu",
            name: format!("CPU per sample, {label}; {share:.3}% of a core at 5 s"),
            value: cpu_ms,
            unit: "ms CPU",
            baseline: None,
            ratio: None,
            goal: "≤ 1% of a core at the default interval",
            met: Some(share <= 1.0),
        });
    }
    Ok(())
}

/// Commit-to-event lag on the fake Google server, and a burst drained within
/// the rate limit with every event written exactly once.
async fn scenario_calendar(env: &mut Env, figures: &mut Vec<Figure>, burst: i64) -> Result<()> {
    use gpures_testkit::fake_google::{CALENDAR, FakeGoogle};
    let fake = FakeGoogle::start().await?;
    let key = env.root.join("calendar-key.json");
    fake.write_key(&key)?;
    let rate = 5.0;
    let d = env
        .daemon(|c| {
            c.calendar.enabled = true;
            c.calendar.service_account_file = Some(key.clone());
            c.calendar.calendar_id = Some(CALENDAR.into());
            c.calendar.api_base_url = Some(fake.base_url());
            c.calendar.writes_per_sec = rate;
        })
        .await?;
    let (admin, token) = d.boss("admin@bench.kr").await?;
    let gpus = d.gpus(8).await?;
    // Lag: one booking at a time, well under the rate limit.
    let mut lags = Vec::new();
    for i in 0..40i64 {
        let b = admin
            .create_booking(
                context::current(),
                token.clone(),
                BookingRequest {
                    request_id: uuid::Uuid::new_v4(),
                    resources: vec![gpus[0]],
                    period: hour_slot(2 + i),
                    note: String::new(),
                },
            )
            .await??;
        let committed = Instant::now();
        let id = gpures_daemon::workers::calendar::event_id(b.reservations[0].id);
        loop {
            if fake.events().contains_key(&id) {
                break;
            }
            if committed.elapsed() > Duration::from_secs(30) {
                bail!("event {id} never arrived");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lags.push(committed.elapsed());
        // Keep to the rate limit, so that the lag is not queueing.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lags.sort();
    let (p50, p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    figures.push(Figure {
        scenario: "calendar",
        name: "commit-to-event lag p50 (fake Google)".into(),
        value: p50.as_secs_f64() * 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "p50 ≤ 500 ms",
        met: Some(p50 <= Duration::from_millis(500)),
    });
    figures.push(Figure {
        scenario: "calendar",
        name: "commit-to-event lag p99".into(),
        value: p99.as_secs_f64() * 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "-",
        met: None,
    });
    // A burst: bookings return at once, the outbox drains at the rate limit.
    let before = fake.events().len();
    let started = Instant::now();
    for i in 0..burst {
        admin
            .create_booking(
                context::current(),
                token.clone(),
                BookingRequest {
                    request_id: uuid::Uuid::new_v4(),
                    resources: vec![gpus[usize::try_from(1 + i % 7)?]],
                    period: hour_slot(2 + i),
                    note: String::new(),
                },
            )
            .await??;
    }
    let booked = started.elapsed();
    loop {
        if fake.events().len() >= before + usize::try_from(burst)? {
            break;
        }
        if started.elapsed() > Duration::from_secs(u64::try_from(burst)? / 2 + 120) {
            bail!("the burst did not drain");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed();
    let once = fake.max_inserts() == 1;
    figures.push(Figure {
        scenario: "calendar",
        name: format!(
            "{burst} bookings in a burst ({:.1} s to book): drained at {:.2}/s, each event once: {once}",
            booked.as_secs_f64(),
            burst as f64 / drained.as_secs_f64()
        ),
        value: drained.as_secs_f64(),
        unit: "s",
        baseline: Some(burst as f64 / rate),
        ratio: Some(drained.as_secs_f64() / (burst as f64 / rate)),
        goal: "within the rate limit, each exactly once",
        met: Some(once && burst as f64 / drained.as_secs_f64() <= rate * 1.05),
    });
    d.stop().await
}

fn print_table(figures: &[Figure]) {
    println!(
        "{:<9} {:<68} {:>12} {:>12} {:>8}  {:<40} MET",
        "SCENARIO", "FIGURE", "VALUE", "BASELINE", "RATIO", "GOAL"
    );
    for f in figures {
        println!(
            "{:<9} {:<68} {:>9.1} {:<2} {:>12} {:>8}  {:<40} {}",
            f.scenario,
            f.name,
            f.value,
            f.unit,
            f.baseline
                .map(|b| format!("{b:.1}"))
                .unwrap_or_else(|| "-".into()),
            f.ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into()),
            f.goal,
            match f.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut json = false;
    let mut history = 1_000_000i64;
    let mut burst = 1000i64;
    let mut chosen: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // The second Unix user of the `fair` scenario (run as uid 65534).
            "--victim" => {
                let socket = std::path::PathBuf::from(args.next().context("--victim SOCKET")?);
                // It calls as the `gpures` CLI does, on one thread.
                let measuring = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(victim(&socket))
                });
                return measuring
                    .join()
                    .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))?;
            }
            // The flooding Unix user of the `fair` scenario, its own process.
            "--flood" => {
                let socket = args.next().context("--flood SOCKET")?;
                return run_load(std::path::Path::new(&socket), Load::Flood).await;
            }
            // The `fair` scenario's reference: one script, one call at a time.
            "--script" => {
                let socket = args.next().context("--script SOCKET")?;
                return run_load(std::path::Path::new(&socket), Load::Script).await;
            }
            "--json" => json = true,
            "--burst" => {
                burst = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .context("--burst N")?
            }
            "--history" => {
                history = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .context("--history N")?
            }
            "-h" | "--help" => {
                println!(
                    "gpures-bench [--json] [--history N] [--burst N] [ping book race timeline login memory tui gpu calendar fair slot queue policy report lab]"
                );
                return Ok(());
            }
            s => chosen.push(s.to_owned()),
        }
    }
    let all = [
        "ping", "book", "race", "timeline", "login", "memory", "tui", "gpu", "calendar", "fair",
        "slot", "queue", "policy", "report", "lab",
    ];
    if chosen.is_empty() {
        chosen = all.iter().map(|s| (*s).to_owned()).collect();
    }
    if let Some(bad) = chosen.iter().find(|c| !all.contains(&c.as_str())) {
        bail!("unknown scenario {bad}: choose from {}", all.join(" "));
    }
    let _ = PROTOCOL_VERSION;
    let mut env = tokio::task::spawn_blocking(Env::start).await??;
    let mut figures = Vec::new();
    for s in &chosen {
        eprintln!("running {s} …");
        match s.as_str() {
            "ping" => scenario_ping(&mut env, &mut figures).await?,
            "book" => scenario_book(&mut env, &mut figures).await?,
            "race" => scenario_race(&mut env, &mut figures).await?,
            "timeline" => scenario_timeline(&mut env, &mut figures, history).await?,
            "login" => scenario_login(&mut env, &mut figures).await?,
            "memory" => scenario_memory(&mut env, &mut figures).await?,
            "tui" => scenario_tui(&mut env, &mut figures).await?,
            "gpu" => scenario_gpu(&mut env, &mut figures)?,
            "calendar" => scenario_calendar(&mut env, &mut figures, burst).await?,
            "fair" => scenario_fair(&mut env, &mut figures).await?,
            "slot" => scenario_slot(&mut env, &mut figures).await?,
            "queue" => scenario_queue(&mut env, &mut figures).await?,
            "policy" => scenario_policy(&mut env, &mut figures).await?,
            "report" => scenario_report(&mut env, &mut figures).await?,
            "lab" => scenario_lab(&mut env, &mut figures, history).await?,
            _ => {}
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print_table(&figures);
    }
    let Env { cluster, .. } = env;
    tokio::task::spawn_blocking(move || cluster.stop()).await?;
    Ok(())
}

/// What the second user measured: `whoami` and `ls` p99 and one login.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, Serialize)]
struct Measured {
    whoami_p99_us: f64,
    ls_p99_us: f64,
    login_ms: f64,
}

async fn measure(c: &GpuresClient, token: &str, email: &str) -> Result<Measured> {
    let whoami = ping_latencies(c, token, 2000).await?;
    let mut ls = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        c.list_reservations(
            context::current(),
            token.to_owned(),
            gpures_proto::ReservationFilter::default(),
            gpures_proto::PageRequest::default(),
        )
        .await??;
        ls.push(t.elapsed());
    }
    ls.sort();
    let t = Instant::now();
    c.login(context::current(), email.into(), PASSWORD.into())
        .await??;
    Ok(Measured {
        whoami_p99_us: us(percentile(&whoami, 0.99)),
        ls_p99_us: us(percentile(&ls, 0.99)),
        login_ms: t.elapsed().as_secs_f64() * 1000.0,
    })
}

/// `--victim SOCKET`: registers as this Unix user, measures at rest, says
/// READY, waits for a line on stdin (the flood has started), measures again,
/// and prints both as JSON lines.
async fn victim(socket: &Path) -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let email = "victim@bench.kr";
    let c = gpures_testkit::connect(socket).await?;
    c.register(
        context::current(),
        RegisterRequest {
            email: email.into(),
            display_name: "Victim".into(),
            password: PASSWORD.into(),
        },
    )
    .await??;
    let token = c
        .login(context::current(), email.into(), PASSWORD.into())
        .await??
        .token;
    let idle = measure(&c, &token, email).await?;
    println!("{}", serde_json::to_string(&idle)?);
    println!("READY");
    // Once more for each line on stdin (the machine is now under load).
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while lines.next_line().await?.is_some() {
        let loaded = measure(&c, &token, email).await?;
        println!("{}", serde_json::to_string(&loaded)?);
    }
    Ok(())
}

/// What the loading Unix user of the `fair` scenario sends.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    /// 60 connections: 56 with pipelined availability checks (16 in flight
    /// each) and 4 with logins for made-up emails (8 in flight each).
    Flood,
    /// One connection, one availability check after another: a script any
    /// member may run, which no fair daemon can refuse.
    Script,
}

/// `--flood SOCKET` or `--script SOCKET`: registers (or finds the account
/// an earlier load made), logs in, says LOADING, and sends `load` until
/// killed.
async fn run_load(socket: &Path, load: Load) -> Result<()> {
    let first = gpures_testkit::connect(socket).await?;
    // The second load finds the account the first made; the login below
    // says if anything else went wrong.
    let _ = first
        .register(
            context::current(),
            RegisterRequest {
                email: "flood@bench.kr".into(),
                display_name: "Flood".into(),
                password: PASSWORD.into(),
            },
        )
        .await?;
    let token = first
        .login(context::current(), "flood@bench.kr".into(), PASSWORD.into())
        .await??
        .token;
    let gpus: Vec<i64> = first
        .list_resources(context::current(), token.clone(), false, None)
        .await??
        .resources
        .iter()
        .map(|r| r.id)
        .collect();
    let hour = Utc::now().duration_trunc(TimeDelta::hours(1))?;
    let period = Period {
        start: hour + TimeDelta::hours(1),
        end: hour + TimeDelta::hours(2),
    };
    let mut tasks = Vec::new();
    let connections = if load == Load::Script { 1 } else { 60 };
    for conn in 0..connections {
        let c = if conn == 0 {
            first.clone()
        } else {
            gpures_testkit::connect(socket).await?
        };
        let lanes = match load {
            Load::Script => 1,
            Load::Flood if conn < 56 => 16,
            Load::Flood => 8,
        };
        for lane in 0..lanes {
            let (c, token, gpus) = (c.clone(), token.clone(), gpus.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                loop {
                    i += 1;
                    if conn < 56 {
                        let _ = c
                            .check_availability(
                                context::current(),
                                token.clone(),
                                gpus.clone(),
                                period,
                                None,
                            )
                            .await;
                    } else {
                        let _ = c
                            .login(
                                context::current(),
                                format!("spray{conn}-{lane}-{i}@x.kr"),
                                "wrong guess".into(),
                            )
                            .await;
                    }
                }
            }));
        }
    }
    println!("LOADING");
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// One Unix user (root, a process of its own) floods the daemon over 60
/// connections with pipelined availability checks and logins for made-up
/// emails, while a second Unix user (uid 65534, this binary again) measures
/// its `whoami` and `ls` p99 and one login, at rest and under the flood,
/// and under one script of root's that makes one call after another
/// (`--script`), the least load a fair daemon must serve. Needs root.
async fn scenario_fair(env: &mut Env, figures: &mut Vec<Figure>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    if gpures_daemon::host::unix::euid() != 0 {
        eprintln!("  fair: needs root to run the second user as uid 65534; skipped");
        return Ok(());
    }
    // The daemon's defaults for per-user limits: the point is what they do.
    let url = env.database().await?;
    let d = TestDaemon::start_on(url, "bench", |config| {
        config.gpu.backend = gpures_daemon::gpu::BackendChoice::None;
    })
    .await?;
    // The socket's folder must be reachable by uid 65534.
    std::fs::set_permissions(
        d.state_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    d.gpus(4).await?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--victim")
        .arg(&d.socket)
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = tokio::process::Command::from(cmd).spawn()?;
    let mut out = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut stdin = child.stdin.take().context("stdin")?;
    let idle: Measured = serde_json::from_str(&out.next_line().await?.context("idle")?)?;
    anyhow::ensure!(
        out.next_line().await?.as_deref() == Some("READY"),
        "victim not ready"
    );
    // The victim measures once more while each load runs: one script of one
    // Unix user making one call at a time, then that user's flood. A
    // script cannot be refused, so what the flood costs beyond it is what
    // the daemon could still share better.
    let mut under = async |load: &str| -> Result<Measured> {
        let mut load = tokio::process::Command::new(&exe)
            .arg(load)
            .arg(&d.socket)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut load_out = tokio::io::BufReader::new(load.stdout.take().context("stdout")?).lines();
        anyhow::ensure!(
            load_out.next_line().await?.as_deref() == Some("LOADING"),
            "the load did not start"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        stdin.write_all(b"GO\n").await?;
        let measured = serde_json::from_str(&out.next_line().await?.context("measured")?)?;
        let _ = load.kill().await;
        let _ = load.wait().await;
        Ok(measured)
    };
    // The script first: the flood's logins for made-up emails use up root's
    // budget of failed checks, and the script's own login would be refused.
    let scripted = under("--script").await?;
    let flooded = under("--flood").await?;
    drop(stdin);
    let _ = child.wait().await;
    let mut figure = |name: &str, value: f64, base: f64, unit, goal, met| {
        figures.push(Figure {
            scenario: "fair",
            name: format!("other user's {name}"),
            value,
            unit,
            baseline: Some(base),
            ratio: Some(if base > 0.0 { value / base } else { 0.0 }),
            goal,
            met,
        });
    };
    let (fair, script) = (
        "≤ 2× the same user at rest",
        "none: a load no fair daemon refuses",
    );
    let (w, l) = (idle.whoami_p99_us, idle.ls_p99_us);
    let within = |v: f64, base: f64| Some(v <= 2.0 * base);
    figure(
        "whoami p99 under a flood",
        flooded.whoami_p99_us,
        w,
        "µs",
        fair,
        within(flooded.whoami_p99_us, w),
    );
    figure(
        "ls p99 under a flood",
        flooded.ls_p99_us,
        l,
        "µs",
        fair,
        within(flooded.ls_p99_us, l),
    );
    let login = flooded.login_ms;
    figure(
        "login under a flood",
        login,
        idle.login_ms,
        "ms",
        "≤ 2000 ms",
        Some(login <= 2000.0),
    );
    let one = "while one script makes one call at a time";
    figure(
        &format!("whoami p99 {one}"),
        scripted.whoami_p99_us,
        w,
        "µs",
        script,
        None,
    );
    figure(
        &format!("ls p99 {one}"),
        scripted.ls_p99_us,
        l,
        "µs",
        script,
        None,
    );
    // What the daemon can answer for: 60 connections of pipelined calls cost
    // the other user no more than one script of one call at a time.
    let no_worse = "≤ 1× one script: a flood gains nothing";
    figure(
        "whoami p99 under a flood, against one script",
        flooded.whoami_p99_us,
        scripted.whoami_p99_us,
        "µs",
        no_worse,
        Some(flooded.whoami_p99_us <= scripted.whoami_p99_us),
    );
    figure(
        "ls p99 under a flood, against one script",
        flooded.ls_p99_us,
        scripted.ls_p99_us,
        "µs",
        no_worse,
        Some(flooded.ls_p99_us <= scripted.ls_p99_us),
    );
    d.stop().await
}

/// One host's telemetry row as its daemon would write it: `gpus` H100s, each
/// with a process and ten minutes of history.
fn lab_record(host: &str, gpus: u32, now: chrono::DateTime<Utc>) -> gpures_daemon::gpu::HostRecord {
    use gpures_daemon::gpu::{HostRecord, StoredGpu};
    HostRecord {
        host: host.to_owned(),
        backend: "nvml".into(),
        sampled_at: Some(now),
        note: None,
        gpus: (0..gpus)
            .map(|i| StoredGpu {
                telemetry: gpures_proto::GpuTelemetry {
                    host: host.to_owned(),
                    index: i,
                    uuid: format!("GPU-{host}-{i:02}"),
                    name: "NVIDIA H100 80GB HBM3".into(),
                    sampled_at: now,
                    utilization_pct: Some(87),
                    memory_used_mib: Some(40_960),
                    memory_total_mib: Some(81_559),
                    temperature_c: Some(61),
                    power_w: Some(512.0),
                    history: vec![80; 120],
                    processes: vec![gpures_proto::GpuProcess {
                        pid: 4000 + i,
                        name: "python3".into(),
                        used_memory_mib: Some(40_000),
                        unix_user: Some(format!("member{i}")),
                    }],
                },
                last_process_at: Some(now),
                watched_since: now - TimeDelta::hours(1),
            })
            .collect(),
        topology: Vec::new(),
    }
}

/// CPU time this process used so far (user and system), from /proc.
fn cpu_used() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// Connections the daemons have open to this database (the bench's own
/// pools are not counted).
async fn db_connections(store: &gpures_daemon::store::Store) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'gpures-daemon%'",
    )
    .fetch_one(store.pool())
    .await?)
}

/// Lab scale, simulated where one machine cannot run it: 4 real daemons on
/// one database, telemetry rows for 100 hosts × 10 GPUs, `history` past
/// reservations and a booked week ahead, 500 connected clients long-polling
/// for changes across the daemons, one booking per second in the background.
async fn scenario_lab(env: &mut Env, figures: &mut Vec<Figure>, history: i64) -> Result<()> {
    const HOSTS: u32 = 100;
    const PER_HOST: u32 = 10;
    const CLIENTS: usize = 500;
    let url = env.database().await?;
    {
        // A shared server as PostgreSQL ships: JIT on (the test cluster
        // turns it off server-wide; the daemon turns it off per session).
        let mut conn = sqlx::PgConnection::connect_with(&url.parse()?).await?;
        sqlx::raw_sql(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET jit = on', current_database()); END $$",
        )
        .execute(&mut conn)
        .await?;
    }
    let mut daemons = Vec::new();
    for i in 0..4 {
        daemons.push(
            TestDaemon::start_on(url.clone(), &format!("node{i:03}"), |c| {
                c.gpu.backend = gpures_daemon::gpu::BackendChoice::None;
                c.limits.max_connections_per_user = 2000;
                c.limits.max_connections = 4000;
                // The shipped pool size, not the test kit's.
                c.limits.db_pool_size = gpures_daemon::config::LimitsConfig::default().db_pool_size;
            })
            .await?,
        );
    }
    let d0 = &daemons[0];
    let (admin, token) = d0.boss("admin@bench.kr").await?;
    let me = admin.whoami(context::current(), token.clone()).await??.id;
    let mut conn = sqlx::PgConnection::connect_with(&url.parse()?).await?;
    let gpus: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO resources (name, host, kind, gpu_index, description)
         SELECT format('node%s-gpu%s', lpad(h::text, 3, '0'), i), format('node%s', lpad(h::text, 3, '0')),
                'gpu', i, 'NVIDIA H100 80GB HBM3'
           FROM generate_series(0, $1 - 1) h, generate_series(0, $2 - 1) i
         RETURNING id",
    )
    .bind(i32::try_from(HOSTS)?)
    .bind(i32::try_from(PER_HOST)?)
    .fetch_all(&mut conn)
    .await?;
    let now = Utc::now();
    for h in 0..HOSTS {
        gpures_daemon::store::telemetry::put(
            &mut conn,
            &lab_record(&format!("node{h:03}"), PER_HOST, now),
        )
        .await?;
    }
    let t = Instant::now();
    fill_history(&url, me, &gpus, history).await?;
    eprintln!(
        "  {} GPUs, {history} past reservations in {:.1} s",
        gpus.len(),
        t.elapsed().as_secs_f64()
    );
    // The week ahead: three 8-hour bookings per GPU.
    sqlx::query(
        "INSERT INTO reservations (id, booking_id, user_id, resource_id, period)
         SELECT gen_random_uuid(), gen_random_uuid(), $1, g,
                tstzrange(date_trunc('hour', now()) + make_interval(hours => 2 + k * 48),
                          date_trunc('hour', now()) + make_interval(hours => 10 + k * 48), '[)')
           FROM unnest($2::bigint[]) g, generate_series(0, 2) k",
    )
    .bind(me)
    .bind(&gpus)
    .execute(&mut conn)
    .await?;
    // As a database that lived through this history would be: vacuumed and
    // analysed, so autovacuum does not wake for the bulk load in the middle
    // of the measurement, and checkpointed, so the gigabytes the fill wrote
    // are not being flushed while it runs.
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(&mut conn).await?;
    sqlx::raw_sql("CHECKPOINT").execute(&mut conn).await?;

    // Reads at this size: 1,000 samples, so that the p99 is the tenth
    // slowest call and not, as with 100, the second slowest.
    let mut status_lat = Vec::new();
    let (mut shown, mut status_pages) = (0, 0);
    let began = Instant::now();
    for i in 0..1020 {
        let t = Instant::now();
        (shown, status_pages) = whole_status(&admin, &token).await?;
        if i >= 20 {
            status_lat.push((t.elapsed(), t.duration_since(began)));
        }
    }
    report_slowest("status", &mut status_lat);
    let status_lat: Vec<Duration> = status_lat.into_iter().map(|(took, _)| took).collect();
    let window = Period {
        start: Utc::now(),
        end: Utc::now() + TimeDelta::days(7),
    };
    let mut timeline_lat = Vec::new();
    let mut in_week = 0;
    let began = Instant::now();
    for i in 0..310 {
        let t = Instant::now();
        in_week = whole_timeline(&admin, &token, window).await?;
        if i >= 10 {
            timeline_lat.push((t.elapsed(), t.duration_since(began)));
        }
    }
    report_slowest("timeline", &mut timeline_lat);
    let timeline_lat: Vec<Duration> = timeline_lat.into_iter().map(|(took, _)| took).collect();
    eprintln!(
        "  status shows {shown} resources in {status_pages} page(s); the week holds {in_week} reservations"
    );

    // 500 clients across the daemons, each long-polling.
    let mut members = Vec::new();
    for m in 0..50 {
        members.push(d0.member(&format!("m{m}@bench.kr")).await?.1);
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    for k in 0..CLIENTS {
        let c = gpures_testkit::connect(&daemons[k % daemons.len()].socket).await?;
        clients.push((c, members[k % members.len()].clone()));
    }
    // Idle: every client waiting for a change, nothing booked, 10 s; the
    // four daemons' background passes and the clients' side together.
    let mut waiting = Vec::with_capacity(CLIENTS);
    for (c, t) in &clients {
        let since = c
            .wait_for_changes(context::current(), t.clone(), 0)
            .await??
            .version;
        let (c, t) = (c.clone(), t.clone());
        waiting.push(tokio::spawn(async move {
            let mut ctx = context::current();
            ctx.deadline = std::time::Instant::now() + Duration::from_secs(30);
            let _ = c.wait_for_changes(ctx, t, since).await;
        }));
    }
    let idle_span = Duration::from_secs(10);
    let cpu_before = cpu_used().unwrap_or_default();
    tokio::time::sleep(idle_span).await;
    let idle_cpu_pct = (cpu_used().unwrap_or_default().saturating_sub(cpu_before)).as_secs_f64()
        / idle_span.as_secs_f64()
        * 100.0
        / 4.0;
    for w in waiting {
        w.abort();
    }

    // One booking per second in the background, by another daemon.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The request ids of the bookings the daemon confirmed.
    let confirmed = Arc::new(std::sync::Mutex::new(Vec::<uuid::Uuid>::new()));
    let background = {
        let stop = Arc::clone(&stop);
        let confirmed = Arc::clone(&confirmed);
        let (c, t) = daemons[1].boss("bg@bench.kr").await?;
        let gpus = gpus.clone();
        tokio::spawn(async move {
            let mut k = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let gpu = gpus[usize::try_from(k).unwrap_or(0) % gpus.len()];
                let start = Utc::now()
                    .duration_trunc(TimeDelta::hours(1))
                    .unwrap_or_else(|_| Utc::now())
                    + TimeDelta::days(10)
                    + TimeDelta::hours(k / i64::try_from(gpus.len()).unwrap_or(1000));
                let request = one_gpu(gpu, start, TimeDelta::hours(1));
                let request_id = request.request_id;
                let made = c
                    .create_booking(context::current(), t.clone(), request)
                    .await;
                if let (Ok(Ok(_)), Ok(mut ids)) = (made, confirmed.lock()) {
                    ids.push(request_id);
                }
                k += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // A change reaches every client: each waits from the version it holds;
    // one booking is made; when did each long poll return?
    let mut reach = Vec::new();
    let mut as_delta = 0;
    let mut most_connections = 0;
    for round in 0..5 {
        let mut versions = Vec::with_capacity(CLIENTS);
        for (c, t) in &clients {
            versions.push(
                c.wait_for_changes(context::current(), t.clone(), 0)
                    .await??
                    .version,
            );
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for ((c, t), since) in clients.iter().zip(versions) {
            let (c, t, tx) = (c.clone(), t.clone(), tx.clone());
            tokio::spawn(async move {
                let mut ctx = context::current();
                ctx.deadline = std::time::Instant::now() + Duration::from_secs(60);
                let got = c.wait_for_changes(ctx, t, since).await;
                // The booking itself came with the wake-up: nothing to refetch.
                let delta = matches!(got, Ok(Ok(ch)) if ch.delta.as_ref().is_some_and(|d| d.reservations.len() == 1));
                let _ = tx.send((Instant::now(), delta));
            });
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(500)).await;
        most_connections = most_connections.max(db_connections(&d0.store).await?);
        let t0 = Instant::now();
        let gpu = gpus[round * 7 % gpus.len()];
        let start = Utc::now().duration_trunc(TimeDelta::hours(1))?
            + TimeDelta::days(20)
            + TimeDelta::hours(i64::try_from(round)?);
        admin
            .create_booking(
                context::current(),
                token.clone(),
                one_gpu(gpu, start, TimeDelta::hours(1)),
            )
            .await??;
        while let Some((at, delta)) = rx.recv().await {
            reach.push(at.saturating_duration_since(t0));
            as_delta += usize::from(delta);
            most_connections = most_connections.max(db_connections(&d0.store).await?);
        }
    }
    reach.sort();

    // The database restarts under this load: when does every daemon serve
    // again, when has every client refetched, was any confirmed booking lost?
    let mut held = Vec::with_capacity(CLIENTS);
    for (c, t) in &clients {
        held.push(
            c.wait_for_changes(context::current(), t.clone(), 0)
                .await??
                .version,
        );
    }
    let t0 = Instant::now();
    tokio::task::block_in_place(|| env.cluster.restart())?;
    let mut serving = Vec::new();
    for d in &daemons {
        let (c, t) = (d.client().await?, token.clone());
        loop {
            if let Ok(Ok(_)) = c.status(context::current(), t.clone(), None).await {
                serving.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("a daemon did not serve again within 60 s of the restart");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let serves_again = serving.iter().copied().max().unwrap_or_default();
    let mut catching_up = tokio::task::JoinSet::new();
    for ((c, t), since) in clients.iter().zip(held) {
        let (c, t) = (c.clone(), t.clone());
        catching_up.spawn(async move {
            // Told of the outage, then its refetch answered.
            loop {
                let mut ctx = context::current();
                ctx.deadline = std::time::Instant::now() + Duration::from_secs(30);
                if let Ok(Ok(v)) = c.wait_for_changes(ctx, t.clone(), since).await
                    && v.version != since
                    && matches!(
                        c.status(context::current(), t.clone(), None).await,
                        Ok(Ok(_))
                    )
                {
                    return true;
                }
                if t0.elapsed() > Duration::from_secs(60) {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    let mut caught_up = 0;
    while let Some(done) = catching_up.join_next().await {
        caught_up += usize::from(done?);
    }
    let all_caught_up = t0.elapsed();
    // A few more bookings after the restart, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    background.await?;
    let confirmed: Vec<uuid::Uuid> = confirmed.lock().map(|ids| ids.clone()).unwrap_or_default();
    let mut conn = sqlx::PgConnection::connect_with(&url.parse()?).await?;
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT request_id) FROM reservations WHERE request_id = ANY($1)",
    )
    .bind(&confirmed)
    .fetch_one(&mut conn)
    .await?;
    let lost = i64::try_from(confirmed.len())? - kept;
    eprintln!(
        "  restart: daemons serve again after {:?}; {caught_up}/{CLIENTS} clients refetched by {:.1} s; {} bookings confirmed, {lost} lost",
        serving,
        all_caught_up.as_secs_f64(),
        confirmed.len()
    );
    for d in daemons {
        d.stop().await?;
    }

    // Memory per connected TUI on the daemon: a daemon in a process of its
    // own on this database, the 500 clients each waiting for a change on it.
    let (daemon, first) = DaemonProcess::start(&env.root.join("lab-memory"), &url).await?;
    first.whoami(context::current(), token.clone()).await??;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = daemon.rss_kib();
    let mut waiting = Vec::with_capacity(CLIENTS);
    for k in 0..CLIENTS {
        let c = gpures_testkit::connect(&daemon.socket).await?;
        let t = members[k % members.len()].clone();
        let since = c
            .wait_for_changes(context::current(), t.clone(), 0)
            .await??
            .version;
        waiting.push(tokio::spawn(async move {
            let mut ctx = context::current();
            ctx.deadline = std::time::Instant::now() + Duration::from_secs(30);
            let _ = c.wait_for_changes(ctx, t, since).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = daemon.rss_kib();
    let per_client_kib = (rss_after.saturating_sub(rss_before)) as f64 / CLIENTS as f64;
    for w in waiting {
        w.abort();
    }
    daemon.stop().await;

    let p99 = |v: &[Duration]| percentile(v, 0.99);
    figures.push(Figure {
        scenario: "lab",
        name: format!("a change reaches all {CLIENTS} clients on 4 daemons, p99 (5 rounds)"),
        value: us(p99(&reach)) / 1000.0,
        unit: "ms",
        baseline: None,
        ratio: None,
        goal: "≤ 1000 ms",
        met: Some(p99(&reach) <= Duration::from_secs(1)),
    });
    figures.push(Figure {
        scenario: "lab",
        name: format!(
            "… wake-ups that carried the new booking as a delta (of {})",
            reach.len()
        ),
        value: as_delta as f64,
        unit: "wake-ups",
        baseline: None,
        ratio: None,
        goal: "all: nothing refetched",
        met: Some(as_delta == reach.len()),
    });
    figures.push(Figure {
        scenario: "lab",
        name: "restart of PostgreSQL under load: the last of 4 daemons serves again after".into(),
        value: serves_again.as_secs_f64(),
        unit: "s",
        baseline: None,
        ratio: None,
        goal: "≤ 10 s",
        met: Some(serves_again <= Duration::from_secs(10)),
    });
    figures.push(Figure {
        scenario: "lab",
        name: format!(
            "… every one of {CLIENTS} clients told and refetched status by ({caught_up} did)"
        ),
        value: all_caught_up.as_secs_f64(),
        unit: "s",
        baseline: None,
        ratio: None,
        goal: "all, ≤ 10 s",
        met: Some(caught_up == CLIENTS && all_caught_up <= Duration::from_secs(10)),
    });
    figures.push(Figure {
        scenario: "lab",
        name: format!(
            "… confirmed bookings lost (of {} made through the restart)",
            confirmed.len()
        ),
        value: lost as f64,
        unit: "bookings",
        baseline: None,
        ratio: None,
        goal: "0",
        met: Some(lost == 0),
    });
    figures.push(Figure {
        scenario: "lab",
        name: format!("status of {shown} GPUs on {HOSTS} hosts ({status_pages} page(s)), p99"),
        value: us(p99(&status_lat)) / 1000.0,
        unit: "ms",
        baseline: Some(us(percentile(&status_lat, 0.5)) / 1000.0),
        ratio: None,
        goal: "≤ 20 ms",
        met: Some(p99(&status_lat) <= Duration::from_millis(20)),
    });
    figures.push(Figure {
        scenario: "lab",
        name: format!(
            "timeline of one week × {} GPUs ({in_week} reservations), p99",
            gpus.len()
        ),
        value: us(p99(&timeline_lat)) / 1000.0,
        unit: "ms",
        baseline: Some(us(percentile(&timeline_lat, 0.5)) / 1000.0),
        ratio: None,
        goal: "≤ 50 ms",
        met: Some(p99(&timeline_lat) <= Duration::from_millis(50)),
    });
    figures.push(Figure {
        scenario: "lab",
        name: "database connections of the 4 daemons, most seen".into(),
        value: most_connections as f64,
        unit: "connections",
        baseline: None,
        ratio: None,
        goal: "≤ 40",
        met: Some(most_connections <= 40),
    });
    figures.push(Figure {
        scenario: "lab",
        name: format!("idle CPU per daemon, {CLIENTS} clients waiting (process total ÷ 4)"),
        value: idle_cpu_pct,
        unit: "% of a core",
        baseline: None,
        ratio: None,
        goal: "≤ 0.5 %",
        met: Some(idle_cpu_pct <= 0.5),
    });
    figures.push(Figure {
        scenario: "lab",
        name: format!(
            "memory per connected client waiting for changes, daemon process ({CLIENTS})"
        ),
        value: per_client_kib,
        unit: "KiB",
        baseline: None,
        ratio: None,
        goal: "≤ 64 KiB",
        met: Some(per_client_kib <= 64.0),
    });
    Ok(())
}
