//! The README's examples are part of the product: its complete
//! configuration example must load and validate, and the formats and
//! environment variables it lists must be the ones the code knows.

use gatewatch::config::Config;

const README: &str = include_str!("../README.md");

/// The fenced ```toml blocks of the README, in order.
fn toml_blocks() -> Vec<&'static str> {
    README
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default())
        .collect()
}

#[test]
fn every_config_example_loads_and_validates() {
    let examples: Vec<&str> = toml_blocks()
        .into_iter()
        .filter(|b| b.contains("[[sources]]"))
        .collect();
    assert!(
        examples.len() >= 3,
        "complete example and scale-out topologies"
    );
    for example in &examples {
        let cfg = Config::from_toml(example)
            .unwrap_or_else(|e| panic!("README example does not parse: {e:#}\n{example}"));
        cfg.validate()
            .unwrap_or_else(|e| panic!("README example does not validate: {e:#}\n{example}"));
    }
    let complete = Config::from_toml(examples[0]).expect("parsed above");
    assert_eq!(complete.sources.len(), 3, "syslog, kafka and file sources");
    assert_eq!(
        complete.notifications.channels.len(),
        3,
        "slack, email, webhook"
    );
    assert!(
        examples
            .iter()
            .any(|e| Config::from_toml(e).is_ok_and(|c| c.repartition.is_some())),
        "the ingest-stage example is among them"
    );
}

#[test]
fn the_json_mapping_example_loads() {
    let mapping = toml_blocks()
        .into_iter()
        .find(|b| b.contains("[parser.json]"))
        .expect("the README shows a [parser.json] mapping");
    let cfg = Config::from_toml(mapping).expect("the mapping example parses");
    assert!(cfg.parser.json.is_some());
}

#[test]
fn every_format_the_readme_lists_is_known() {
    let table = README
        .split("| format | what it reads |")
        .nth(1)
        .expect("the README has a formats table");
    let names: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    assert!(names.len() >= 11, "{names:?}");
    for name in names {
        let parsed: Result<gatewatch_ingest::formats::FormatKind, _> =
            serde_json::from_value(serde_json::Value::String(name.into()));
        assert!(parsed.is_ok(), "README lists unknown format {name:?}");
    }
}

#[test]
fn every_environment_variable_the_code_reads_is_documented() {
    let sources = [
        include_str!("../src/config.rs"),
        include_str!("../src/main.rs"),
        include_str!("../alerting/src/notify/config.rs"),
    ];
    for src in sources {
        for chunk in src.split("\"GATEWATCH_").skip(1) {
            let name: String = chunk
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            if name.is_empty() || name.starts_with("TEST") || name.ends_with('_') {
                continue;
            }
            assert!(
                README.contains(&format!("GATEWATCH_{name}")),
                "GATEWATCH_{name} is read by the code but not in the README"
            );
        }
    }
}
