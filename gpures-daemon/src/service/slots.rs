//! Book by need: the earliest time `n` GPUs of one host are all free for a
//! length, and which of them to take ([`earliest`], [`options`]). Pure
//! functions over each GPU's busy intervals; the service loads those from
//! the store and books the choice in one transaction, searching again if a
//! racing booker took a chosen GPU (the exclusion constraint stays the
//! guarantee).
//!
//! Which GPUs, among those free at the earliest start: where the host's
//! topology is known (`nvidia-smi topo -m`, [`Links`]), the best-connected
//! set (its weakest link the strongest: NVLink, then one PCIe switch, …,
//! across NUMA nodes last); among equals, and on hosts without topology, the
//! ones whose free time fits the request most tightly (the least free time
//! left before their next reservation), so that long free stretches stay
//! whole for long requests; then the lowest GPU indices, which keeps the
//! free ones together at the top.

use std::cmp::Reverse;
use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::gpu::topology;

/// A host's links between GPUs: by `(lower index, higher index)`, the
/// `nvidia-smi` code (`NV4`, `PIX`, …). Empty when not known.
pub type Links = HashMap<(i32, i32), String>;

/// `[start, end)` of one reservation.
pub type Interval = (DateTime<Utc>, DateTime<Utc>);

/// One GPU and when it is taken.
#[derive(Clone, Debug)]
pub struct Gpu {
    pub id: i64,
    pub name: String,
    pub index: Option<i32>,
    /// Active reservations as `[start, end)`, sorted by start, not
    /// overlapping (the exclusion constraint).
    pub busy: Vec<Interval>,
}

impl Gpu {
    /// Whether `[start, end)` is free; if so, how much free time follows
    /// `end` before the next reservation (`None`: free to the end of what
    /// was loaded).
    fn fits(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Option<TimeDelta>> {
        // The first interval that ends after `start`.
        let i = self.busy.partition_point(|(_, e)| *e <= start);
        match self.busy.get(i) {
            Some((s, _)) if *s < end => None,
            Some((s, _)) => Some(Some(*s - end)),
            None => Some(None),
        }
    }
}

/// A start at which `n` GPUs are free, and which (indices into the GPUs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub start: DateTime<Utc>,
    pub picked: Vec<usize>,
    /// The weakest link between the picked GPUs, where the topology is
    /// known and more than one was picked.
    pub link: Option<String>,
}

/// The starts worth trying in `[from, latest]`: `from` and every end of a
/// reservation after it (a reservation released early ends at any second:
/// `whole_minutes` moves such an end up to the next minute), in order.
fn candidates(
    gpus: &[Gpu],
    from: DateTime<Utc>,
    latest: DateTime<Utc>,
    whole_minutes: bool,
) -> Vec<DateTime<Utc>> {
    let minute = TimeDelta::minutes(1);
    let mut starts: Vec<DateTime<Utc>> = gpus
        .iter()
        .flat_map(|g| g.busy.iter().map(|(_, e)| *e))
        .map(|e| match e.duration_trunc(minute) {
            Ok(t) if whole_minutes && t < e => t + minute,
            _ => e,
        })
        .filter(|e| *e > from && *e <= latest)
        .collect();
    starts.push(from);
    starts.sort_unstable();
    starts.dedup();
    starts
}

/// The `n` GPUs to take at `start` for `length`, if that many are free,
/// and the weakest link between them (where known).
fn pick(
    gpus: &[Gpu],
    n: usize,
    start: DateTime<Utc>,
    length: TimeDelta,
    links: &Links,
) -> Option<(Vec<usize>, Option<String>)> {
    let end = start + length;
    let mut free: Vec<(Option<TimeDelta>, i32, usize)> = gpus
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            g.fits(start, end)
                .map(|left| (left, g.index.unwrap_or(i32::MAX), i))
        })
        .collect();
    if free.len() < n {
        return None;
    }
    // Tightest fit first (`None`, free to the horizon, sorts last), then the
    // lowest index.
    free.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    let order: Vec<usize> = free.into_iter().map(|(_, _, i)| i).collect();
    let (mut picked, link) = if n >= 2 && !links.is_empty() {
        best_connected(gpus, &order, n, links)
    } else {
        (order[..n].to_vec(), None)
    };
    picked.sort_by_key(|i| gpus[*i].index.unwrap_or(i32::MAX));
    Some((picked, link))
}

/// The link between two GPUs (indices into `gpus`), if known.
fn link_of<'a>(gpus: &[Gpu], links: &'a Links, x: usize, y: usize) -> Option<&'a str> {
    let (a, b) = (gpus[x].index?, gpus[y].index?);
    links.get(&(a.min(b), a.max(b))).map(String::as_str)
}

/// `n` of the free GPUs `order` (best first by fit and index) whose weakest
/// link is the strongest (then whose links are strongest in all): grown
/// greedily from each GPU in turn, the earlier seed winning a tie, so that
/// without a difference in topology the choice is `order`'s.
fn best_connected(
    gpus: &[Gpu],
    order: &[usize],
    n: usize,
    links: &Links,
) -> (Vec<usize>, Option<String>) {
    let strength = |x: usize, y: usize| link_of(gpus, links, x, y).map_or(0, topology::score);
    let mut best: Option<((u32, u32), Vec<usize>)> = None;
    for &seed in order {
        let mut set = vec![seed];
        while set.len() < n {
            let next = order
                .iter()
                .enumerate()
                .filter(|(_, c)| !set.contains(c))
                .max_by_key(|(pos, c)| {
                    let weakest = set.iter().map(|s| strength(*s, **c)).min().unwrap_or(0);
                    (weakest, Reverse(*pos))
                })
                .map(|(_, c)| *c);
            match next {
                Some(c) => set.push(c),
                None => break,
            }
        }
        let pairs = || {
            set.iter()
                .enumerate()
                .flat_map(|(k, x)| set[k + 1..].iter().map(move |y| (*x, *y)))
        };
        let key = (
            pairs().map(|(x, y)| strength(x, y)).min().unwrap_or(0),
            pairs().map(|(x, y)| strength(x, y)).sum::<u32>(),
        );
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, set));
        }
    }
    let set = best.map_or_else(|| order[..n].to_vec(), |(_, set)| set);
    let weakest = set
        .iter()
        .enumerate()
        .flat_map(|(k, x)| set[k + 1..].iter().map(move |y| (*x, *y)))
        .filter_map(|(x, y)| link_of(gpus, links, x, y))
        .min_by_key(|l| topology::score(l))
        .map(str::to_owned);
    (set, weakest)
}

/// The earliest start in `[from, latest]` at which `n` of `gpus` are free
/// for `length`, and which to take.
pub fn earliest(
    gpus: &[Gpu],
    n: usize,
    from: DateTime<Utc>,
    length: TimeDelta,
    latest: DateTime<Utc>,
) -> Option<Choice> {
    options(gpus, n, from, length, latest, 1, true, &Links::new())
        .into_iter()
        .next()
}

/// Up to `k` of the earliest distinct starts in `[from, latest]`; with
/// `whole_minutes`, every start after `from` is a whole minute (what a
/// member may book). `links` is the host's topology (may be empty).
#[allow(clippy::too_many_arguments)]
pub fn options(
    gpus: &[Gpu],
    n: usize,
    from: DateTime<Utc>,
    length: TimeDelta,
    latest: DateTime<Utc>,
    k: usize,
    whole_minutes: bool,
    links: &Links,
) -> Vec<Choice> {
    if n == 0 || n > gpus.len() || k == 0 {
        return vec![];
    }
    let mut found = Vec::new();
    for start in candidates(gpus, from, latest, whole_minutes) {
        if let Some((picked, link)) = pick(gpus, n, start, length, links) {
            found.push(Choice {
                start,
                picked,
                link,
            });
            if found.len() == k {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("time")
            + TimeDelta::hours(h)
    }

    fn gpu(i: i32, busy: &[(i64, i64)]) -> Gpu {
        Gpu {
            id: i64::from(i) + 100,
            name: format!("gpu{i}"),
            index: Some(i),
            busy: busy.iter().map(|(s, e)| (t(*s), t(*e))).collect(),
        }
    }

    #[test]
    fn an_idle_host_gives_the_lowest_indices_now() {
        let gpus: Vec<Gpu> = (0..8).map(|i| gpu(i, &[])).collect();
        let c = earliest(&gpus, 2, t(0), TimeDelta::hours(6), t(1000)).expect("slot");
        assert_eq!(c.start, t(0));
        assert_eq!(c.picked, vec![0, 1]);
    }

    #[test]
    fn the_earliest_start_waits_for_enough_gpus() {
        // Two GPUs, one busy 0–4 and the other 2–6: both free from 6.
        let gpus = vec![gpu(0, &[(0, 4)]), gpu(1, &[(2, 6)])];
        let c = earliest(&gpus, 2, t(0), TimeDelta::hours(1), t(1000)).expect("slot");
        assert_eq!(c.start, t(6));
        // One GPU for 3 h: gpu1 is free 0–2 only (too short), gpu0 from 4.
        let c = earliest(&gpus, 1, t(0), TimeDelta::hours(3), t(1000)).expect("slot");
        assert_eq!((c.start, c.picked), (t(4), vec![0]));
        // One GPU for 2 h fits gpu1 at 0 exactly.
        let c = earliest(&gpus, 1, t(0), TimeDelta::hours(2), t(1000)).expect("slot");
        assert_eq!((c.start, c.picked), (t(0), vec![1]));
    }

    #[test]
    fn the_tightest_fit_is_taken_so_long_free_stretches_stay_whole() {
        // gpu0 is free for a long time; gpu1 and gpu2 are free for 3 h now.
        let gpus = vec![gpu(0, &[]), gpu(1, &[(3, 10)]), gpu(2, &[(3, 10)])];
        let c = earliest(&gpus, 2, t(0), TimeDelta::hours(2), t(1000)).expect("slot");
        assert_eq!(c.picked, vec![1, 2]);
    }

    #[test]
    fn an_early_release_counts_from_the_next_whole_minute() {
        let released = t(1) + TimeDelta::seconds(20);
        let gpus = vec![Gpu {
            busy: vec![(t(0), released)],
            ..gpu(0, &[])
        }];
        let booked = earliest(&gpus, 1, t(0), TimeDelta::hours(1), t(1000)).expect("slot");
        assert_eq!(booked.start, t(1) + TimeDelta::minutes(1));
        let granted = options(
            &gpus,
            1,
            released,
            TimeDelta::hours(1),
            t(1000),
            1,
            false,
            &Links::new(),
        );
        assert_eq!(
            granted[0].start, released,
            "the queue grants from the second"
        );
    }

    #[test]
    fn options_are_distinct_starts_and_the_latest_start_bounds_the_search() {
        let gpus = vec![gpu(0, &[(0, 1), (2, 3)])];
        let all = options(
            &gpus,
            1,
            t(0),
            TimeDelta::hours(1),
            t(1000),
            3,
            true,
            &Links::new(),
        );
        let starts: Vec<_> = all.iter().map(|c| c.start).collect();
        assert_eq!(starts, vec![t(1), t(3)]);
        assert!(earliest(&gpus, 1, t(0), TimeDelta::hours(5), t(2)).is_none());
        assert!(earliest(&gpus, 2, t(0), TimeDelta::hours(1), t(1000)).is_none());
        assert!(earliest(&gpus, 0, t(0), TimeDelta::hours(1), t(1000)).is_none());
    }

    /// The example matrix: 0–3 and 1–2 by NVLink, 0–2 on one NUMA node,
    /// 2–3 across PCIe switches, the rest across NUMA nodes.
    fn example() -> Links {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../gpures-testkit/data/nvidia-smi/topo-m-4gpu-example.txt"
        ))
        .expect("fixture");
        crate::gpu::topology::parse(&text)
            .into_iter()
            .map(|l| {
                let (a, b) = (
                    i32::try_from(l.a).expect("a"),
                    i32::try_from(l.b).expect("b"),
                );
                ((a, b), l.link)
            })
            .collect()
    }

    fn two(gpus: &[Gpu], links: &Links) -> Choice {
        options(gpus, 2, t(0), TimeDelta::hours(2), t(1000), 1, true, links)
            .into_iter()
            .next()
            .expect("slot")
    }

    #[test]
    fn nvlinked_gpus_are_taken_together_before_the_lowest_indices() {
        let gpus: Vec<Gpu> = (0..4).map(|i| gpu(i, &[])).collect();
        let c = two(&gpus, &example());
        assert_eq!((c.picked, c.link.as_deref()), (vec![0, 3], Some("NV4")));
        // With gpu0 taken, the other NVLink pair.
        let gpus = vec![gpu(0, &[(0, 5)]), gpu(1, &[]), gpu(2, &[]), gpu(3, &[])];
        let c = two(&gpus, &example());
        assert_eq!((c.picked, c.link.as_deref()), (vec![1, 2], Some("NV4")));
        // gpu3 and gpu1 taken: 0 and 2 share a NUMA node.
        let gpus = vec![
            gpu(0, &[]),
            gpu(1, &[(0, 5)]),
            gpu(2, &[]),
            gpu(3, &[(0, 5)]),
        ];
        let c = two(&gpus, &example());
        assert_eq!((c.picked, c.link.as_deref()), (vec![0, 2], Some("NODE")));
        // Three: the weakest link of {0, 2, 3} (NODE) beats any set with 1.
        let gpus: Vec<Gpu> = (0..4).map(|i| gpu(i, &[])).collect();
        let c = options(
            &gpus,
            3,
            t(0),
            TimeDelta::hours(2),
            t(1000),
            1,
            true,
            &example(),
        )
        .into_iter()
        .next()
        .expect("slot");
        assert_eq!((c.picked, c.link.as_deref()), (vec![0, 2, 3], Some("NODE")));
    }

    #[test]
    fn equal_links_keep_the_tightest_fit_and_no_topology_changes_nothing() {
        // Every pair linked alike: the choice is the one without topology.
        let all_pix: Links = (0..4)
            .flat_map(|a| ((a + 1)..4).map(move |b| ((a, b), "PIX".to_owned())))
            .collect();
        let gpus = vec![
            gpu(0, &[]),
            gpu(1, &[(3, 10)]),
            gpu(2, &[(3, 10)]),
            gpu(3, &[]),
        ];
        assert_eq!(two(&gpus, &all_pix).picked, vec![1, 2]);
        assert_eq!(two(&gpus, &Links::new()).picked, vec![1, 2]);
        assert_eq!(two(&gpus, &Links::new()).link, None);
    }
}

pub(crate) mod search {
    use std::collections::{BTreeMap, HashMap};

    use chrono::{DateTime, DurationRound, TimeDelta, Utc};
    use gpures_proto::{
        AnyBooking, AnyBookingRequest, BookingRequest, Period, ResourceKind, SlotGpu, SlotOption,
        SlotQuery, limits,
    };

    use super::{Choice, Gpu, Interval, Links, options};
    use crate::service::{Actor, Error, Result, Service, validate};
    use crate::store::{reservations, resources, telemetry};

    /// How far the first loads of reservations reach: most searches end in
    /// the first week, and a year of history is never read at once.
    const CHUNKS_DAYS: [i64; 2] = [7, 35];
    /// How often a booking whose GPUs a racing booker took searches again.
    const BOOK_ATTEMPTS: usize = 32;

    /// A checked query: `n` GPUs of one host (of `host` if given) for
    /// `length`, starting in `[from, latest]`.
    pub(crate) struct Need {
        pub n: usize,
        pub length: TimeDelta,
        pub from: DateTime<Utc>,
        pub latest: DateTime<Utc>,
        pub host: Option<String>,
        /// Starts on whole minutes (a member's booking); the queue grants
        /// from the current second instead.
        pub whole_minutes: bool,
    }

    impl Service {
        /// The earliest three starts per host for `query`, without booking.
        ///
        /// # Errors
        /// Invalid queries (no host has that many GPUs, too long, unknown
        /// host), store failures.
        pub async fn find_slots(&self, actor: &Actor, query: SlotQuery) -> Result<Vec<SlotOption>> {
            let need = self.need(actor, &query)?;
            self.search(&need, 3).await
        }

        /// Books `request.query`'s earliest option, all or nothing; when a
        /// racing booker takes one of its GPUs first, searches again.
        ///
        /// # Errors
        /// As [`Service::find_slots`] and [`Service::create_booking`];
        /// `Invalid` when nothing fits before the booking horizon.
        pub async fn book_any(
            &self,
            actor: &Actor,
            request: AnyBookingRequest,
        ) -> Result<AnyBooking> {
            let need = self.need(actor, &request.query)?;
            for _ in 0..BOOK_ATTEMPTS {
                let found = self.search(&need, 1).await?;
                let Some(best) = found.into_iter().min_by(|a, b| {
                    a.period
                        .start
                        .cmp(&b.period.start)
                        .then(a.host.cmp(&b.host))
                }) else {
                    return Err(Error::invalid(
                        "gpus",
                        format!(
                            "no {} GPUs of one host are free for {} min before the booking horizon",
                            need.n,
                            need.length.num_minutes()
                        ),
                    ));
                };
                let booking = BookingRequest {
                    request_id: request.request_id,
                    resources: best.gpus.iter().map(|g| g.id).collect(),
                    period: best.period,
                    note: request.note.clone(),
                };
                match self.create_booking(actor, booking).await {
                    Ok(booking) => {
                        return Ok(AnyBooking {
                            booking,
                            why: best.why,
                        });
                    }
                    Err(Error::Conflict(_)) => {
                        tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(
                            1..20,
                        )))
                        .await;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(Error::Unavailable(
                "the GPUs found kept being taken by others first; try again".into(),
            ))
        }

        /// Checks `q` for `actor` (an admin's horizon is the widest window).
        pub(crate) fn need(&self, actor: &Actor, q: &SlotQuery) -> Result<Need> {
            let rules = &self.settings().rules;
            let n = usize::try_from(q.gpus).unwrap_or(usize::MAX);
            if n == 0 || n > limits::BOOKING_MAX_RESOURCES {
                return Err(Error::invalid(
                    "gpus",
                    format!("1 to {} GPUs", limits::BOOKING_MAX_RESOURCES),
                ));
            }
            let length = TimeDelta::minutes(i64::from(q.length_minutes));
            if q.length_minutes == 0 {
                return Err(Error::invalid("length", "must be at least a minute"));
            }
            if length > rules.max_length {
                return Err(Error::invalid(
                    "length",
                    format!(
                        "a reservation may last at most {} days",
                        rules.max_length.num_days()
                    ),
                ));
            }
            if let Some(host) = &q.host {
                validate::lookup_text("host", host)?;
            }
            let now = Utc::now();
            let asked = q.not_before.unwrap_or(now).max(now);
            // Whole minutes: "now" starts at this minute (within the grace
            // for the past), a later time at its minute.
            let from = asked
                .duration_trunc(TimeDelta::minutes(1))
                .map_err(|_| Error::invalid("from", "out of range"))?;
            let horizon = if actor.is_admin() {
                TimeDelta::days(limits::WINDOW_MAX_DAYS)
            } else {
                rules.horizon
            };
            let latest = now + horizon - length;
            if latest < from {
                return Err(Error::invalid(
                    "from",
                    format!(
                        "members may book at most {} days ahead (an admin may book further)",
                        rules.horizon.num_days()
                    ),
                ));
            }
            Ok(Need {
                n,
                length,
                from,
                latest,
                host: q.host.clone(),
                whole_minutes: true,
            })
        }

        /// Up to `k` options per host, loading reservations a chunk at a
        /// time until every host has its `k` or the horizon is reached.
        pub(crate) async fn search(&self, need: &Need, k: usize) -> Result<Vec<SlotOption>> {
            let mut conn = self.store().acquire().await?;
            let mut hosts: BTreeMap<String, Vec<gpures_proto::Resource>> = BTreeMap::new();
            for r in resources::list(&mut conn, false).await? {
                if r.kind == ResourceKind::Gpu && need.host.as_deref().is_none_or(|h| h == r.host) {
                    hosts.entry(r.host.clone()).or_default().push(r);
                }
            }
            if hosts.is_empty() {
                return Err(Error::invalid(
                    "host",
                    match &need.host {
                        Some(h) => format!("there are no GPUs on host {h:?}"),
                        None => "there are no GPUs to book".to_owned(),
                    },
                ));
            }
            let most = hosts.values().map(Vec::len).max().unwrap_or(0);
            if need.n > most {
                return Err(Error::invalid(
                    "gpus",
                    format!(
                        "no host has {} GPUs: the most on one host is {most}",
                        need.n
                    ),
                ));
            }
            hosts.retain(|_, gpus| gpus.len() >= need.n);
            // Each host's links between GPUs, as its daemon read them.
            let mut topology: HashMap<String, Links> = HashMap::new();
            if need.n >= 2 {
                let names: Vec<String> = hosts.keys().cloned().collect();
                for (host, links) in telemetry::topology(&mut conn, &names).await? {
                    let links = links
                        .into_iter()
                        .filter_map(|l| {
                            let (a, b) = (i32::try_from(l.a).ok()?, i32::try_from(l.b).ok()?);
                            Some(((a.min(b), a.max(b)), l.link))
                        })
                        .collect();
                    topology.insert(host, links);
                }
            }
            let ids: Vec<i64> = hosts.values().flatten().map(|r| r.id).collect();
            // Each GPU's busy intervals, grown a chunk at a time: a chunk
            // reads only the reservations that start after the previous one
            // ended (those reaching into it were read with it).
            let mut busy: HashMap<i64, Vec<Interval>> = HashMap::new();
            let mut loaded = need.from;
            let mut found: BTreeMap<String, Vec<Choice>> = BTreeMap::new();
            let ends = CHUNKS_DAYS
                .iter()
                .map(|d| need.from + TimeDelta::days(*d))
                .filter(|e| *e < need.latest + need.length)
                .chain(std::iter::once(need.latest + need.length));
            for end in ends {
                let window = Period { start: loaded, end };
                let mut chunk = reservations::busy(&mut conn, &ids, window).await?;
                chunk.sort_unstable();
                for (id, s, e) in chunk {
                    let list = busy.entry(id).or_default();
                    // Merged as they come: a reservation spanning the chunk
                    // boundary came with the previous chunk already, and a
                    // reservation kept inside a maintenance block overlaps it.
                    match list.last_mut() {
                        Some(last) if s <= last.1 => last.1 = last.1.max(e),
                        _ => list.push((s, e)),
                    }
                }
                loaded = end;
                let latest = need.latest.min(end - need.length);
                found.clear();
                for (host, rs) in &hosts {
                    let gpus: Vec<Gpu> = rs
                        .iter()
                        .map(|r| Gpu {
                            id: r.id,
                            name: r.name.clone(),
                            index: r.gpu_index,
                            busy: busy.get(&r.id).cloned().unwrap_or_default(),
                        })
                        .collect();
                    // `picked` indexes `gpus`, built in the order of `rs`.
                    let none = Links::new();
                    let choices = options(
                        &gpus,
                        need.n,
                        need.from,
                        need.length,
                        latest,
                        k,
                        need.whole_minutes,
                        topology.get(host).unwrap_or(&none),
                    );
                    found.insert(host.clone(), choices);
                }
                let enough = if k == 1 {
                    found.values().any(|o| !o.is_empty())
                } else {
                    found.values().all(|o| o.len() >= k)
                };
                if enough {
                    break;
                }
            }
            let mut out = Vec::new();
            for (host, choices) in found {
                let rs = &hosts[&host];
                for c in choices {
                    let gpus: Vec<SlotGpu> = c
                        .picked
                        .iter()
                        .map(|i| SlotGpu {
                            id: rs[*i].id,
                            name: rs[*i].name.clone(),
                            gpu_index: rs[*i].gpu_index,
                        })
                        .collect();
                    out.push(SlotOption {
                        why: why(need, &host, c.start, c.link.as_deref()),
                        host: host.clone(),
                        period: Period {
                            start: c.start,
                            end: c.start + need.length,
                        },
                        gpus,
                    });
                }
            }
            Ok(out)
        }
    }

    fn why(need: &Need, host: &str, start: DateTime<Utc>, link: Option<&str>) -> String {
        let when = if start == need.from {
            "free at the start asked for".to_owned()
        } else {
            format!(
                "the earliest start at which {} GPUs of {host} are all free for {} min",
                need.n,
                need.length.num_minutes()
            )
        };
        match link {
            Some(link) => format!(
                "{when}; of the free GPUs, the best connected ({}), then those whose free time \
                 fits most tightly, so that longer free stretches stay whole",
                super::topology::describe(link)
            ),
            None => format!(
                "{when}; of the free GPUs, those whose free time fits most tightly, then the \
                 lowest indices, so that longer free stretches stay whole"
            ),
        }
    }
}
