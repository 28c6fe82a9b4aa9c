//! Detection quality on the team's labelled traffic generator
//! (`gatewatch-loggen`): three hours of heavy-tailed background visitors, a
//! site-wide surge, every benign look-alike and one actor per attack
//! technique, fed to the engine directly (no parsing). Every attack must
//! become an incident of the labelled kind about the labelled client; no
//! look-alike and no ordinary visitor may raise one.

mod common;

use common::to_event;
use gatewatch_detector::{DetectionConfig, Engine, Finding};
use gatewatch_loggen::{generate, Label, Scenario};
use std::collections::BTreeSet;

fn label_matches(l: &Label, f: &Finding) -> bool {
    l.expect == Some(f.kind.as_str())
        && match l.matching {
            "contains" => f.key.contains(&l.client),
            _ => f.key == l.client,
        }
}

fn evaluate(scenario: &Scenario, shards: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
    let generated = generate(scenario);
    let labels = generated.labels.clone();
    let mut engine = Engine::new(&DetectionConfig::default(), shards).unwrap();
    let mut findings = Vec::new();
    for (i, req) in generated.requests.enumerate() {
        engine.observe(&to_event(&req), &mut findings);
        if i % 500 == 0 {
            engine.advance(&mut findings);
        }
    }
    engine.advance(&mut findings);
    let incidents: BTreeSet<(String, String)> = findings
        .iter()
        .map(|f| (f.kind.as_str().to_owned(), f.key.clone()))
        .collect();
    let mut missed = Vec::new();
    let mut lookalike = Vec::new();
    for l in &labels {
        let hit = findings.iter().any(|f| label_matches(l, f));
        match l.expect {
            Some(_) if !hit => missed.push(format!("{} ({})", l.name, l.client)),
            None if findings.iter().any(|f| f.key == l.client) => {
                lookalike.push(format!("{} ({})", l.name, l.client))
            }
            _ => {}
        }
    }
    let unexplained: Vec<String> = incidents
        .iter()
        .filter(|(kind, key)| {
            !labels.iter().any(|l| {
                l.expect == Some(kind.as_str())
                    && match l.matching {
                        "contains" => key.contains(&l.client),
                        _ => *key == l.client,
                    }
            })
        })
        .map(|(kind, key)| {
            let f = findings
                .iter()
                .rev()
                .find(|f| f.kind.as_str() == kind && &f.key == key)
                .unwrap();
            format!(
                "{kind} {key}: {} / {} — {}",
                f.technique, f.severity, f.summary
            )
        })
        .collect();
    (missed, lookalike, unexplained)
}

#[test]
fn labelled_traffic_every_attack_found_and_nothing_else() {
    let (missed, lookalike, unexplained) = evaluate(&Scenario::eval(42, 2000), 1);
    assert!(
        missed.is_empty() && lookalike.is_empty() && unexplained.is_empty(),
        "missed: {missed:#?}\nlook-alikes alerting: {lookalike:#?}\nunexplained incidents: {unexplained:#?}"
    );
}

#[test]
fn labelled_traffic_other_seed_over_three_shards() {
    let (missed, lookalike, unexplained) = evaluate(&Scenario::eval(7, 3000), 3);
    assert!(
        missed.is_empty() && lookalike.is_empty() && unexplained.is_empty(),
        "missed: {missed:#?}\nlook-alikes alerting: {lookalike:#?}\nunexplained incidents: {unexplained:#?}"
    );
}

#[test]
fn labelled_traffic_without_usernames_in_the_log() {
    let scenario = Scenario {
        log_users: false,
        ..Scenario::eval(11, 2000)
    };
    let (missed, lookalike, unexplained) = evaluate(&scenario, 2);
    assert!(
        missed.is_empty() && lookalike.is_empty() && unexplained.is_empty(),
        "missed: {missed:#?}\nlook-alikes alerting: {lookalike:#?}\nunexplained incidents: {unexplained:#?}"
    );
}
