//! Memory bounds under a flood of spoofed addresses: 1,000,000 distinct
//! clients, one event each, through an engine capped at 100,000 clients.
//! Every detector must stay at or under the cap, and all detectors together
//! must hold at most 200 bytes of state per tracked client entry.

use gatewatch_detector::{DetectionConfig, Engine, Event, EventTime};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

const CLIENTS: u32 = 1_000_000;
const CAP: usize = 100_000;
const BUDGET: usize = 200;

/// Runs the flood; `mix` makes every 10th event a 404 and every 20th a
/// failed login, so all three detectors hold state.
fn flood(shards: usize, mix: bool) -> (usize, usize, Vec<(&'static str, usize)>) {
    let cfg = DetectionConfig {
        max_tracked_clients: CAP,
        ..DetectionConfig::default()
    };
    let mut engine = Engine::new(&cfg, shards).unwrap();
    let mut out = Vec::new();
    let paths = ["/api/v1/items", "/nope/x", "/login"];
    for i in 0..CLIENTS {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let mut ev = Event::new(EventTime::from_millis(1_700_000_000_000 + i64::from(i)), ip);
        ev.status = 200;
        ev.path = Cow::Borrowed(paths[0]);
        if mix && i % 10 == 3 {
            ev.path = Cow::Borrowed(paths[1]);
            ev.status = 404;
        } else if mix && i % 20 == 7 {
            ev.path = Cow::Borrowed(paths[2]);
            ev.method = gatewatch_detector::Method::Post;
            ev.status = 401;
            ev.user = Some(Cow::Borrowed("admin"));
        }
        engine.observe(&ev, &mut out);
        if i % 10_000 == 0 {
            engine.advance(&mut out);
        }
    }
    let stats = engine.stats();
    let mut per_detector: Vec<(&'static str, usize)> = Vec::new();
    let mut bytes = 0;
    for shard in &stats {
        for d in shard {
            bytes += d.state_bytes;
            match per_detector.iter_mut().find(|(n, _)| *n == d.detector) {
                Some(e) => e.1 += d.tracked,
                None => per_detector.push((d.detector, d.tracked)),
            }
        }
    }
    // Each detector entry is one tracked client of that detector; a client
    // several detectors track counts once per detector (the conservative
    // reading for the plain flood, where only traffic_spike tracks).
    let tracked = per_detector.iter().map(|(_, t)| *t).sum();
    (tracked, bytes, per_detector)
}

fn check(shards: usize, mix: bool) {
    let (tracked, bytes, per) = flood(shards, mix);
    let per_client = bytes / tracked.max(1);
    eprintln!("shards={shards} mix={mix}: tracked={tracked} bytes={bytes} per_client={per_client} {per:?}");
    for (name, t) in &per {
        assert!(*t <= CAP, "{name} tracks {t} > cap {CAP}");
    }
    assert!(
        tracked >= CAP * 9 / 10,
        "the table should be near full: {tracked}"
    );
    assert!(
        per_client <= BUDGET,
        "{per_client} bytes per tracked client > {BUDGET} ({per:?})"
    );
}

#[test]
fn a_million_spoofed_clients_stay_under_the_cap_and_budget() {
    check(1, false);
}

#[test]
fn a_mixed_flood_over_four_shards_stays_under_the_cap_and_budget() {
    check(4, true);
}
