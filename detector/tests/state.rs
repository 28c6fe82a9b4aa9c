//! Detector state carried across a restart: the labelled three-hour traffic
//! (`gatewatch-loggen`), cut at several points; up to each cut one engine
//! runs, saves its state and is dropped, and a new engine takes the state
//! back and runs the rest. Together they must find exactly what one engine
//! running the whole stream finds, finding for finding.

mod common;

use common::to_event;
use gatewatch_detector::{DetectionConfig, Engine, EngineState, Finding, StateError};
use gatewatch_loggen::{generate, Request, Scenario};

fn requests(seed: u64) -> Vec<Request> {
    generate(&Scenario::eval(seed, 1500)).requests.collect()
}

/// Runs `reqs` through `engine`, advancing every 500 events as a pipeline's
/// batches would.
fn run(engine: &mut Engine, reqs: &[Request], out: &mut Vec<Finding>) {
    for (i, req) in reqs.iter().enumerate() {
        engine.observe(&to_event(req), out);
        if i % 500 == 499 {
            engine.advance(out);
        }
    }
    engine.advance(out);
}

/// Findings of one engine over `reqs`, restarted with its state at `cuts`
/// (event indices, multiples of 500 so batches line up with the whole run).
fn restarted(reqs: &[Request], cuts: &[usize], shards: usize, carry: bool) -> Vec<Finding> {
    let cfg = DetectionConfig::default();
    let mut out = Vec::new();
    let mut engine = Engine::new(&cfg, shards).unwrap();
    let mut from = 0;
    for &cut in cuts.iter().chain([&reqs.len()]) {
        run(&mut engine, &reqs[from..cut], &mut out);
        from = cut;
        let saved = engine.save().unwrap().encode(&cfg).unwrap();
        engine = Engine::new(&cfg, shards).unwrap();
        if carry {
            let state = EngineState::decode(&saved, &cfg, shards).unwrap();
            engine.restore(&cfg, state).unwrap();
        }
    }
    out
}

#[test]
fn a_stream_cut_by_restarts_finds_what_the_whole_stream_finds() {
    let reqs = requests(42);
    let n = reqs.len();
    let cut = |f: f64| ((n as f64 * f) as usize) / 500 * 500;
    let whole = restarted(&reqs, &[], 2, true);
    assert!(whole.len() >= 10, "{} findings", whole.len());
    for cuts in [vec![cut(0.5)], vec![cut(0.2), cut(0.45), cut(0.7)]] {
        let split = restarted(&reqs, &cuts, 2, true);
        assert!(split == whole, "cut at {cuts:?}: findings differ");
    }
    // Without the state the same cuts change what is found: the test sees
    // what the state carries.
    let forgetful = restarted(&reqs, &[cut(0.2), cut(0.45), cut(0.7)], 2, false);
    assert!(forgetful != whole);
}

#[test]
fn one_shard_and_three_shards_both_carry_their_state() {
    let reqs = requests(7);
    let cut = reqs.len() / 3 / 500 * 500;
    for shards in [1, 3] {
        let whole = restarted(&reqs, &[], shards, true);
        assert!(
            restarted(&reqs, &[cut], shards, true) == whole,
            "{shards} shards"
        );
    }
}

#[test]
fn a_state_is_refused_under_other_conditions_and_the_engine_kept() {
    let reqs = requests(3);
    let cfg = DetectionConfig::default();
    let mut engine = Engine::new(&cfg, 2).unwrap();
    let mut out = Vec::new();
    run(&mut engine, &reqs[..reqs.len() / 2], &mut out);
    let saved = engine.save().unwrap().encode(&cfg).unwrap();

    let mut other = DetectionConfig::default();
    other.traffic_spike.min_events += 1;
    let refused = [
        EngineState::decode(&saved, &other, 2),
        EngineState::decode(&saved, &cfg, 3),
        EngineState::decode(b"not a state", &cfg, 2),
    ];
    for r in refused {
        assert!(matches!(r, Err(StateError::Mismatch(_))), "{:?}", r.err());
    }
    let longer = [&saved[..], b"\0"].concat();
    assert!(matches!(
        EngineState::decode(&longer, &cfg, 2),
        Err(StateError::Mismatch(_))
    ));
    let cut_off = &saved[..saved.len() * 2 / 3];
    assert!(matches!(
        EngineState::decode(cut_off, &cfg, 2),
        Err(StateError::Decode(_))
    ));

    // A state for another shard count leaves the engine as it was: the
    // same findings as an engine that was never offered one.
    let mut offered = Engine::new(&cfg, 2).unwrap();
    let mut fresh = Engine::new(&cfg, 2).unwrap();
    let three = Engine::new(&cfg, 3).unwrap().save().unwrap();
    assert!(offered.restore(&cfg, three).is_err());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    run(&mut offered, &reqs, &mut a);
    run(&mut fresh, &reqs, &mut b);
    assert!(a == b);
}
