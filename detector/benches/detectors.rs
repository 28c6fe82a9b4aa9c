//! Throughput of detection on realistic mixed traffic, in events per second.
//!
//! Events are pre-built and owned, so no parsing is measured. Groups:
//!
//! * `router`: classification + population figures (once per event).
//! * `detector/<name>`: one detector alone on pre-routed events (the router's
//!   work excluded), as a shard runs it.
//! * `engine/mixed`: router and all detectors, one shard inline.
//! * `engine/new_clients`: every event from a never-seen client (the cost of
//!   a new client: table insert, eviction at the cap, population sampling).
//! * `shards/threads_N`: all detectors on pre-routed events split over N
//!   shards, each on its own thread — whether the per-client work scales
//!   with cores (the router, sequential, is `router` above).
//!
//! Run: `cargo bench -p gatewatch-detector --bench detectors`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gatewatch_detector::classify::Classifier;
use gatewatch_detector::event::mix64;
use gatewatch_detector::{
    DetectionConfig, Engine, Event, EventTime, Method, PopulationView, Role, Routed, Router, Shard,
};
use std::borrow::Cow;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

const EVENTS: usize = 200_000;
const CLIENTS: u64 = 5_000;

/// Mixed traffic over ~40 minutes: API reads with object ids, static assets,
/// health checks, logins (mostly successful), some 404s and admin use, plus a
/// brute forcer, a scanner and a spiking client.
fn mixed_traffic() -> Vec<Event<'static>> {
    let start = 1_700_000_000_000i64;
    let mut out = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS as u64 {
        let r = mix64(i);
        let client = (r % CLIENTS) as u32;
        let ts = EventTime::from_millis(start + (i as i64) * 12);
        let mut ev = Event::new(ts, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client)));
        ev.host = Cow::Borrowed("api.example");
        ev.user_agent = Cow::Borrowed("Mozilla/5.0 (X11; Linux x86_64) app/2.3");
        ev.status = 200;
        let kind = (r >> 20) % 100;
        let path: String = match kind {
            0..=69 => format!("/api/v1/items/{}", (r >> 32) % 10_000),
            70..=79 => format!("/static/app.{}.js", (r >> 32) % 50),
            80..=82 => "/healthz".to_owned(),
            83..=86 => {
                ev.method = Method::Post;
                ev.user = Some(Cow::Owned(format!("user{client}")));
                if (r >> 40) % 10 < 1 {
                    ev.status = 401;
                }
                "/api/v1/login".to_owned()
            }
            87..=90 => {
                ev.status = 404;
                format!("/api/v1/old/{}", (r >> 32) % 300)
            }
            91 => "/admin/dashboard".to_owned(),
            _ => format!("/api/v1/users/{client}/orders"),
        };
        ev.path = Cow::Owned(path);
        out.push(ev);
        // Attackers interleaved.
        if i % 50 < 1 {
            let mut a = Event::new(ts, "203.0.113.9".parse().unwrap());
            a.method = Method::Post;
            a.path = Cow::Borrowed("/api/v1/login");
            a.status = 401;
            a.user = Some(Cow::Owned(format!("victim{}", i % 500)));
            out.push(a);
        }
        if i % 70 < 1 {
            let mut a = Event::new(ts, "198.51.100.4".parse().unwrap());
            a.path = Cow::Owned(format!("/scan/{}/.env", i % 1000));
            a.status = 404;
            out.push(a);
        }
    }
    out
}

fn only(detector: &str) -> DetectionConfig {
    let mut cfg = DetectionConfig::default();
    cfg.traffic_spike.enabled = detector == "traffic_spike";
    cfg.credential_stuffing.enabled = detector == "credential_stuffing";
    cfg.privilege_probing.enabled = detector == "privilege_probing";
    cfg
}

fn route_all(events: &[Event<'static>]) -> Vec<(Option<PopulationView>, Routed)> {
    let mut router = Router::new(&DetectionConfig::default(), 1).unwrap();
    events
        .iter()
        .map(|ev| {
            let r = router.route(ev);
            (router.take_population_update(), r)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let events = mixed_traffic();
    let routed = route_all(&events);
    let n = events.len() as u64;

    let mut g = c.benchmark_group("router");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("classify_and_population", |b| {
        b.iter_batched(
            || Router::new(&DetectionConfig::default(), 1).unwrap(),
            |mut router| {
                for ev in &events {
                    black_box(router.route(ev));
                    black_box(router.take_population_update());
                }
            },
            BatchSize::PerIteration,
        )
    });
    let classifier = Classifier::new(&DetectionConfig::default()).unwrap();
    g.bench_function("classify_only", |b| {
        b.iter(|| {
            for ev in &events {
                black_box(classifier.classify(ev));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("detector");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    for name in ["traffic_spike", "credential_stuffing", "privilege_probing"] {
        let cfg = only(name);
        g.bench_function(name, |b| {
            b.iter_batched(
                || Shard::new(&cfg, 1).unwrap(),
                |mut shard| {
                    let mut out = Vec::new();
                    for (ev, (view, r)) in events.iter().zip(&routed) {
                        if let Some(v) = view {
                            shard.set_population(*v);
                        }
                        shard.observe(ev, r, Role::Client, &mut out);
                        if r.target_shard.is_some() {
                            shard.observe(ev, r, Role::Target, &mut out);
                        }
                    }
                    black_box(out)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    let cfg = DetectionConfig::default();
    g.bench_function("mixed", |b| {
        b.iter_batched(
            || Engine::new(&cfg, 1).unwrap(),
            |mut engine| {
                let mut out = Vec::new();
                for (i, ev) in events.iter().enumerate() {
                    engine.observe(ev, &mut out);
                    if i % 1024 < 1 {
                        engine.advance(&mut out);
                    }
                }
                black_box(out)
            },
            BatchSize::PerIteration,
        )
    });
    let fresh: Vec<Event<'static>> = (0..EVENTS as u32)
        .map(|i| {
            let mut ev = Event::new(
                EventTime::from_millis(1_700_000_000_000 + i64::from(i)),
                IpAddr::V4(Ipv4Addr::from(0x2000_0000 + i)),
            );
            ev.path = Cow::Borrowed("/api/v1/items/7");
            ev.status = 200;
            ev
        })
        .collect();
    let capped = DetectionConfig {
        max_tracked_clients: 50_000,
        ..DetectionConfig::default()
    };
    g.bench_function("new_clients", |b| {
        b.iter_batched(
            || Engine::new(&capped, 1).unwrap(),
            |mut engine| {
                let mut out = Vec::new();
                for ev in &fresh {
                    engine.observe(ev, &mut out);
                }
                black_box(out)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// What one shard receives: indices into the event stream, with the role
/// it sees each event in.
type ShardInput = Vec<(usize, Role)>;

/// Splits the routed stream by shard, as the pipeline's router does before
/// handing batches to shard threads.
fn split_by_shard(routed: &[Routed], shards: usize) -> Vec<ShardInput> {
    let mut inputs = vec![ShardInput::new(); shards];
    for (i, r) in routed.iter().enumerate() {
        inputs[r.client_shard].push((i, Role::Client));
        if let Some(t) = r.target_shard {
            inputs[t].push((i, Role::Target));
        }
    }
    inputs
}

/// Runs every shard on its own thread over what it was given.
fn run_shards(
    cfg: &DetectionConfig,
    events: &[Event<'static>],
    routed: &[Routed],
    inputs: &[ShardInput],
) {
    std::thread::scope(|s| {
        for input in inputs {
            s.spawn(move || {
                let mut shard = Shard::new(cfg, inputs.len()).unwrap();
                let mut out = Vec::new();
                for &(i, role) in input {
                    shard.observe(&events[i], &routed[i], role, &mut out);
                }
                black_box(out)
            });
        }
    });
}

fn shard_scaling(c: &mut Criterion) {
    let events = mixed_traffic();
    let cfg = DetectionConfig::default();
    let mut g = c.benchmark_group("shards");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(10);
    for shards in [1, 2] {
        let mut router = Router::new(&cfg, shards).unwrap();
        let routed: Vec<Routed> = events.iter().map(|ev| router.route(ev)).collect();
        let inputs = split_by_shard(&routed, shards);
        g.bench_function(format!("threads_{shards}"), |b| {
            b.iter(|| run_shards(&cfg, &events, &routed, &inputs))
        });
    }
    g.finish();
}

criterion_group!(benches, bench, shard_scaling);
criterion_main!(benches);
