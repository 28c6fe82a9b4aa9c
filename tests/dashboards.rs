//! The Grafana dashboards against the real things they read: every SQL
//! query runs on the migrated PostgreSQL schema with data in it (Grafana's
//! macros expanded the way Grafana expands them), and every metric their
//! PromQL names is exported by `/metrics`.
//!
//! Needs PostgreSQL (`scripts/dev-services`).

#[path = "support/api_app.rs"]
mod api_app;

use api_app::{spawn_app, T0};
use gatewatch_alerting::testing::{finding, TestDb};
use gatewatch_alerting::{Db, IncidentManager, ManagerConfig};
use gatewatch_detector::{IncidentKind, Severity};
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards/grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "dashboards missing in {}", dir.display());
    out
}

/// Every (dashboard, panel title, target) of the given datasource type.
fn targets(kind: &str) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let ds = t["datasource"]["type"]
                    .as_str()
                    .or(p["datasource"]["type"].as_str())
                    .unwrap_or_default();
                if ds == kind {
                    out.push((
                        file.clone(),
                        p["title"].as_str().unwrap().to_owned(),
                        t.clone(),
                    ));
                }
            }
        }
    }
    out
}

/// Seconds in a Grafana interval literal (`5m`, `1h`, `1d`).
fn interval_secs(s: &str) -> u64 {
    let (n, unit) = s.split_at(s.len() - 1);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("interval {s}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => panic!("interval unit {other}"),
    }
}

/// Expands Grafana's PostgreSQL macros as Grafana does for a time range.
fn expand(sql: &str, from: &str, to: &str) -> String {
    let group = Regex::new(r"\$__timeGroup(Alias)?\(\s*([\w.]+)\s*,\s*'?(\w+)'?\s*\)").unwrap();
    let sql = group.replace_all(sql, |c: &regex::Captures| {
        let secs = interval_secs(&c[3]);
        let expr = format!(
            "to_timestamp(floor(extract(epoch from {}) / {secs}) * {secs})",
            &c[2]
        );
        if c.get(1).is_some() {
            format!("{expr} AS \"time\"")
        } else {
            expr
        }
    });
    let filter = Regex::new(r"\$__timeFilter\(\s*([\w.]+)\s*\)").unwrap();
    let sql = filter.replace_all(&sql, |c: &regex::Captures| {
        format!("{} BETWEEN '{from}' AND '{to}'", &c[1])
    });
    let sql = sql
        .replace("$__timeFrom()", &format!("'{from}'"))
        .replace("$__timeTo()", &format!("'{to}'"));
    assert!(!sql.contains("$__"), "unexpanded macro in {sql}");
    sql
}

#[tokio::test]
async fn every_sql_query_runs_on_the_schema_with_data() {
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let mut m = IncidentManager::new(store.clone(), ManagerConfig::default());
    let kinds = [
        (IncidentKind::TrafficSpike, Severity::Medium),
        (IncidentKind::CredentialStuffing, Severity::Critical),
        (IncidentKind::PrivilegeProbing, Severity::High),
    ];
    for n in 0..12i64 {
        let (kind, severity) = kinds[n as usize % 3];
        let at = T0 + n * 20 * 60_000;
        let mut f = finding(kind, &format!("192.0.2.{}", n % 5), at, at + 60_000);
        f.severity = severity;
        m.apply(&f).await.unwrap();
    }
    let Db::Postgres(pool) = store.db() else {
        panic!("the dashboards read PostgreSQL")
    };
    for (i, status) in ["delivered", "delivered", "dead", "pending", "held"]
        .iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO notification_outbox (delivery_id, channel, event, payload, status, \
             attempts, max_attempts, next_attempt_at, created_at, finished_at, last_error) \
             VALUES ($1, $2, 'opened', '{}', $3, $4, 5, $5, $5, $6, $7)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(if i % 2 == 0 { "slack" } else { "email" })
        .bind(*status)
        .bind(i as i32)
        .bind(chrono::DateTime::from_timestamp_millis(T0 + i as i64 * 60_000).unwrap())
        .bind(
            (*status == "delivered" || *status == "dead")
                .then(|| chrono::DateTime::from_timestamp_millis(T0 + 3_600_000).unwrap()),
        )
        .bind((*status == "dead").then_some("HTTP 500"))
        .execute(&pool)
        .await
        .unwrap();
    }

    let from = "2026-11-19T10:00:00Z";
    let to = "2026-11-21T10:00:00Z";
    let queries = targets("grafana-postgresql-datasource");
    assert!(
        queries.len() >= 8,
        "expected the incident and notification panels"
    );
    for (file, title, t) in queries {
        let raw = t["rawSql"].as_str().unwrap();
        let sql = expand(raw, from, to);
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{file} / {title}: {e}\n{sql}"));
        assert!(!rows.is_empty(), "{file} / {title} returned no row:\n{sql}");
        if t["format"] == "time_series" {
            assert!(
                raw.contains("$__timeGroupAlias"),
                "{file} / {title} has no time column"
            );
        }
    }
    store.close().await;
}

#[tokio::test]
async fn every_metric_in_the_dashboards_is_exported() {
    let exprs = targets("prometheus");
    assert!(exprs.len() >= 10);
    let name = Regex::new(r"\bgatewatch_[a-z0-9_]+").unwrap();
    let mut wanted = BTreeSet::new();
    for (file, title, t) in &exprs {
        let expr = t["expr"].as_str().unwrap();
        let found: Vec<_> = name
            .find_iter(expr)
            .map(|m| m.as_str().to_owned())
            .collect();
        assert!(
            !found.is_empty(),
            "{file} / {title} names no gatewatch metric"
        );
        wanted.extend(found);
    }
    let app = spawn_app().await;
    // A request first, so the API's own counter has a sample.
    app.get("/healthz", None).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for metric in &wanted {
        assert!(
            text.contains(&format!("# TYPE {metric} ")),
            "{metric} is not exported by /metrics"
        );
        assert!(
            text.lines().any(
                |l| l.starts_with(metric.as_str()) && l[metric.len()..].starts_with(['{', ' '])
            ),
            "{metric} has no sample with every source plugged in"
        );
    }
    app.stop().await;
}

#[test]
fn provisioning_names_the_datasources_the_dashboards_use() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards/grafana/provisioning");
    let sources = std::fs::read_to_string(root.join("datasources/gatewatch.yaml")).unwrap();
    let providers = std::fs::read_to_string(root.join("dashboards/gatewatch.yaml")).unwrap();
    assert!(providers.contains("type: file") && providers.contains("path:"));
    let mut uids = BTreeSet::new();
    for (file, d) in dashboards() {
        assert!(
            d["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file} has no uid"
        );
        for p in d["panels"].as_array().unwrap() {
            uids.insert(p["datasource"]["uid"].as_str().unwrap().to_owned());
        }
    }
    for uid in uids {
        assert!(
            sources.contains(&format!("uid: {uid}")),
            "datasource {uid} not provisioned"
        );
    }
}
