//! Suppression rules: muting known-benign findings without losing count.
//!
//! A rule has up to four matchers, all of which must match (a rule with
//! none is rejected): a client network (`client_cidr`), an exact client key
//! (`client_key`), an incident kind, and a path pattern; an optional
//! wall-clock expiry; and who created it and why. The
//! [`IncidentManager`](crate::IncidentManager) checks rules *before* a
//! finding touches an incident: a muted finding produces no incident change
//! and no notification, and is counted on the rule (`hits`,
//! `last_hit_at`) and in a total that outlives deleted rules
//! ([`suppressed_total`]).
//!
//! What the matchers compare:
//!
//! * `client_cidr` — the finding's key when it is an address (or a network,
//!   for IPv6 /64 keys) inside the range; for keys that are not addresses
//!   (`identity:…`, `target:…`), every one of the finding's source
//!   addresses (and there must be at least one).
//! * `client_key` — equality with the finding's key.
//! * `kind` — equality with the finding's kind.
//! * `path_pattern` — a glob (`*` any run of characters, `/` included; `?`
//!   one character; everything else literal, case-sensitive) matched
//!   against the finding's *paths*: the evidence's `sample_paths` (query
//!   string cut off) and, for `target:<host><route>` keys, the route. Every
//!   path must match and there must be at least one: a finding that also
//!   touched an unmuted path is not muted, and a finding without paths
//!   (traffic spikes) is never muted by a path rule.
//!
//! The manager reads the rules into memory and re-reads them every
//! `suppression_refresh` (default 5 s): a rule created through the API
//! takes effect within that delay, on every instance.

use crate::outbox::sqlite::{parse_ts, ts};
use crate::store::{Db, IncidentStore, StoreError};
use chrono::{DateTime, Utc};
use gatewatch_detector::{Finding, IncidentKind};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The name of the total in `alerting_counters`.
const TOTAL_COUNTER: &str = "suppressed_findings";

/// Longest accepted path pattern, reason and actor, in characters.
const MAX_TEXT: usize = 1000;

/// A stored suppression rule, as the API lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SuppressionRule {
    /// Random id.
    pub id: Uuid,
    /// Mutes clients in this network.
    pub client_cidr: Option<IpNet>,
    /// Mutes this exact client key.
    pub client_key: Option<String>,
    /// Mutes this kind.
    pub kind: Option<IncidentKind>,
    /// Mutes findings whose every path matches this glob.
    pub path_pattern: Option<String>,
    /// Stops muting at this wall-clock time.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who created it (`user:<login>`).
    pub created_by: String,
    /// Why (shown to whoever wonders where the findings went).
    pub reason: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Findings it muted.
    pub hits: u64,
    /// When it last muted one.
    pub last_hit_at: Option<DateTime<Utc>>,
}

/// A rule to create: what the API's `POST /suppressions` body deserialises
/// into.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSuppressionRule {
    /// Mutes clients in this network (`10.0.0.0/8`, `2001:db8::/32`).
    #[serde(default)]
    pub client_cidr: Option<IpNet>,
    /// Mutes this exact client key.
    #[serde(default)]
    pub client_key: Option<String>,
    /// Mutes this kind.
    #[serde(default)]
    pub kind: Option<IncidentKind>,
    /// Mutes findings whose every path matches this glob (`/health*`).
    #[serde(default)]
    pub path_pattern: Option<String>,
    /// Stops muting at this wall-clock time (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Who creates it; the API sets this from the caller's identity.
    #[serde(default)]
    pub created_by: String,
    /// Why (required).
    pub reason: String,
}

/// Why a rule was refused, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    /// The rule is not acceptable (no matcher, empty reason, expiry in the
    /// past, text too long). The API maps this to 422.
    #[error("Invalid suppression rule: {reason}")]
    Invalid {
        /// What is wrong, for the caller.
        reason: String,
    },
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NewSuppressionRule {
    /// Checks the rule before it is stored.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), SuppressionError> {
        let invalid = |reason: &str| {
            Err(SuppressionError::Invalid {
                reason: reason.to_owned(),
            })
        };
        let blank = |s: &Option<String>| s.as_deref().is_some_and(|s| s.trim().is_empty());
        if self.client_cidr.is_none()
            && self.client_key.is_none()
            && self.kind.is_none()
            && self.path_pattern.is_none()
        {
            return invalid("set at least one of client_cidr, client_key, kind, path_pattern");
        }
        if blank(&self.client_key) || blank(&self.path_pattern) {
            return invalid("client_key and path_pattern must not be blank");
        }
        if self.reason.trim().is_empty() {
            return invalid("reason is required");
        }
        if self.created_by.trim().is_empty() {
            return invalid("created_by is required");
        }
        for s in [
            Some(&self.reason),
            Some(&self.created_by),
            self.client_key.as_ref(),
            self.path_pattern.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if s.chars().count() > MAX_TEXT {
                return invalid("a text field is longer than 1000 characters");
            }
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return invalid("expires_at is in the past");
        }
        Ok(())
    }
}

impl SuppressionRule {
    /// Whether this rule mutes `finding` at wall-clock time `now` (see the
    /// module docs for what each matcher compares).
    pub fn matches(&self, finding: &Finding, now: DateTime<Utc>) -> bool {
        if self.expires_at.is_some_and(|t| t <= now) {
            return false;
        }
        if self.kind.is_some_and(|k| k != finding.kind) {
            return false;
        }
        if self.client_key.as_deref().is_some_and(|k| k != finding.key) {
            return false;
        }
        if let Some(net) = &self.client_cidr {
            if !client_in(net, finding) {
                return false;
            }
        }
        if let Some(pattern) = &self.path_pattern {
            let paths = finding_paths(finding);
            if paths.is_empty() || !paths.iter().all(|p| glob_match(pattern, p)) {
                return false;
            }
        }
        true
    }
}

fn client_in(net: &IpNet, finding: &Finding) -> bool {
    if let Ok(ip) = finding.key.parse::<IpAddr>() {
        return net.contains(&ip);
    }
    if let Ok(key_net) = finding.key.parse::<IpNet>() {
        return net.contains(&key_net);
    }
    !finding.sources.is_empty() && finding.sources.iter().all(|ip| net.contains(ip))
}

/// The paths a finding is about: its evidence's `sample_paths` (without
/// query strings) and the route of a `target:<host><route>` key.
pub fn finding_paths(finding: &Finding) -> Vec<&str> {
    let mut paths: Vec<&str> = finding
        .evidence
        .get("sample_paths")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(|p| p.split_once('?').map_or(p, |(path, _)| path))
                .collect()
        })
        .unwrap_or_default();
    if let Some(target) = finding.key.strip_prefix("target:") {
        if let Some(slash) = target.find('/') {
            paths.push(&target[slash..]);
        }
    }
    paths
}

/// Glob matching: `*` matches any run of characters (also `/`), `?` one
/// character, anything else itself. Iterative with one backtrack point, so
/// linear-ish and safe on attacker-sized input.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn query_err(
    backend: &'static str,
    operation: &'static str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query {
        backend,
        operation,
        source,
    }
}

fn corrupt(id: &str, column: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        column,
        value: value.to_string(),
    }
}

/// Stores a new rule after [`NewSuppressionRule::validate`].
pub async fn create(
    store: &dyn IncidentStore,
    rule: NewSuppressionRule,
) -> Result<SuppressionRule, SuppressionError> {
    let now = Utc::now();
    rule.validate(now)?;
    let stored = SuppressionRule {
        id: Uuid::new_v4(),
        client_cidr: rule.client_cidr.map(|n| n.trunc()),
        client_key: rule.client_key,
        kind: rule.kind,
        path_pattern: rule.path_pattern,
        expires_at: rule.expires_at,
        created_by: rule.created_by,
        reason: rule.reason,
        created_at: now,
        hits: 0,
        last_hit_at: None,
    };
    let cidr = stored.client_cidr.map(|n| n.to_string());
    let kind = stored.kind.map(|k| k.as_str());
    match store.db() {
        Db::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO suppression_rules (id, client_cidr, client_key, kind, path_pattern, \
                 expires_at, created_by, reason, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(stored.id)
            .bind(cidr)
            .bind(&stored.client_key)
            .bind(kind)
            .bind(&stored.path_pattern)
            .bind(stored.expires_at)
            .bind(&stored.created_by)
            .bind(&stored.reason)
            .bind(now)
            .execute(&pool)
            .await
            .map_err(query_err("postgres", "create a suppression rule"))?;
        }
        Db::Sqlite(pool) => {
            sqlx::query(
                "INSERT INTO suppression_rules (id, client_cidr, client_key, kind, path_pattern, \
                 expires_at, created_by, reason, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(stored.id.to_string())
            .bind(cidr)
            .bind(&stored.client_key)
            .bind(kind)
            .bind(&stored.path_pattern)
            .bind(stored.expires_at.map(ts))
            .bind(&stored.created_by)
            .bind(&stored.reason)
            .bind(ts(now))
            .execute(&pool)
            .await
            .map_err(query_err("sqlite", "create a suppression rule"))?;
        }
    }
    Ok(stored)
}

/// Every rule (expired ones included, so their counts stay visible), newest
/// first.
pub async fn list(store: &dyn IncidentStore) -> Result<Vec<SuppressionRule>, StoreError> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        String,
        String,
        i64,
        Option<String>,
    );
    let rows: Vec<Row> = match store.db() {
        Db::Postgres(pool) => sqlx::query_as(
            "SELECT id::text, client_cidr, client_key, kind, path_pattern, \
             to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
             created_by, reason, \
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
             hits, to_char(last_hit_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
             FROM suppression_rules ORDER BY created_at DESC, id",
        )
        .fetch_all(&pool)
        .await
        .map_err(query_err("postgres", "list suppression rules"))?,
        Db::Sqlite(pool) => sqlx::query_as(
            "SELECT id, client_cidr, client_key, kind, path_pattern, expires_at, created_by, \
             reason, created_at, hits, last_hit_at \
             FROM suppression_rules ORDER BY created_at DESC, id",
        )
        .fetch_all(&pool)
        .await
        .map_err(query_err("sqlite", "list suppression rules"))?,
    };
    rows.into_iter()
        .map(
            |(id, cidr, key, kind, pattern, expires, by, reason, created, hits, last)| {
                let time = |column, text: Option<String>| {
                    text.map(|t| parse_ts(0, column, &t).map_err(|_| corrupt(&id, column, &t)))
                        .transpose()
                };
                Ok(SuppressionRule {
                    id: Uuid::parse_str(&id).map_err(|e| corrupt(&id, "id", e))?,
                    client_cidr: cidr
                        .map(|c| c.parse().map_err(|_| corrupt(&id, "client_cidr", &c)))
                        .transpose()?,
                    client_key: key,
                    kind: kind
                        .map(|k| IncidentKind::parse(&k).ok_or_else(|| corrupt(&id, "kind", &k)))
                        .transpose()?,
                    path_pattern: pattern,
                    expires_at: time("expires_at", expires)?,
                    created_by: by,
                    reason,
                    created_at: time("created_at", Some(created.clone()))?
                        .ok_or_else(|| corrupt(&id, "created_at", &created))?,
                    hits: u64::try_from(hits).unwrap_or(0),
                    last_hit_at: time("last_hit_at", last)?,
                })
            },
        )
        .collect()
}

/// Deletes a rule; `false` when there was none with that id. Its hits stay
/// in [`suppressed_total`].
pub async fn delete(store: &dyn IncidentStore, id: Uuid) -> Result<bool, StoreError> {
    let done = match store.db() {
        Db::Postgres(pool) => sqlx::query("DELETE FROM suppression_rules WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .map_err(query_err("postgres", "delete a suppression rule"))?
            .rows_affected(),
        Db::Sqlite(pool) => sqlx::query("DELETE FROM suppression_rules WHERE id = ?")
            .bind(id.to_string())
            .execute(&pool)
            .await
            .map_err(query_err("sqlite", "delete a suppression rule"))?
            .rows_affected(),
    };
    Ok(done == 1)
}

/// Counts one muted finding on `rule_id` and in the total, atomically.
pub async fn record_hit(
    store: &dyn IncidentStore,
    rule_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    match store.db() {
        Db::Postgres(pool) => {
            let err = |op| query_err("postgres", op);
            let mut tx = pool.begin().await.map_err(err("begin a transaction"))?;
            sqlx::query(
                "UPDATE suppression_rules SET hits = hits + 1, last_hit_at = $2 WHERE id = $1",
            )
            .bind(rule_id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(err("count a suppressed finding"))?;
            sqlx::query(
                "INSERT INTO alerting_counters (name, value) VALUES ($1, 1) \
                 ON CONFLICT (name) DO UPDATE SET value = alerting_counters.value + 1",
            )
            .bind(TOTAL_COUNTER)
            .execute(&mut *tx)
            .await
            .map_err(err("count a suppressed finding"))?;
            tx.commit().await.map_err(err("count a suppressed finding"))
        }
        Db::Sqlite(pool) => {
            let err = |op| query_err("sqlite", op);
            let mut tx = pool.begin().await.map_err(err("begin a transaction"))?;
            sqlx::query(
                "UPDATE suppression_rules SET hits = hits + 1, last_hit_at = ? WHERE id = ?",
            )
            .bind(ts(at))
            .bind(rule_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(err("count a suppressed finding"))?;
            sqlx::query(
                "INSERT INTO alerting_counters (name, value) VALUES (?, 1) \
                 ON CONFLICT (name) DO UPDATE SET value = alerting_counters.value + 1",
            )
            .bind(TOTAL_COUNTER)
            .execute(&mut *tx)
            .await
            .map_err(err("count a suppressed finding"))?;
            tx.commit().await.map_err(err("count a suppressed finding"))
        }
    }
}

/// Findings muted by any rule, ever (deleted rules included).
pub async fn suppressed_total(store: &dyn IncidentStore) -> Result<u64, StoreError> {
    let n: Option<i64> = match store.db() {
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT value FROM alerting_counters WHERE name = $1")
                .bind(TOTAL_COUNTER)
                .fetch_optional(&pool)
                .await
                .map_err(query_err("postgres", "read the suppression total"))?
        }
        Db::Sqlite(pool) => {
            sqlx::query_scalar("SELECT value FROM alerting_counters WHERE name = ?")
                .bind(TOTAL_COUNTER)
                .fetch_optional(&pool)
                .await
                .map_err(query_err("sqlite", "read the suppression total"))?
        }
    };
    Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// The manager's copy of the rules, re-read every `refresh`.
#[derive(Debug)]
pub(crate) struct RuleCache {
    rules: Vec<SuppressionRule>,
    loaded_at: Option<Instant>,
    refresh: Duration,
}

impl RuleCache {
    pub(crate) fn new(refresh: Duration) -> Self {
        RuleCache {
            rules: Vec::new(),
            loaded_at: None,
            refresh,
        }
    }

    /// Forces a re-read at the next check.
    pub(crate) fn invalidate(&mut self) {
        self.loaded_at = None;
    }

    /// The first rule that mutes `finding`, re-reading the rules when they
    /// are older than the refresh interval.
    pub(crate) async fn matching(
        &mut self,
        store: &dyn IncidentStore,
        finding: &Finding,
    ) -> Result<Option<Uuid>, StoreError> {
        if self.loaded_at.is_none_or(|t| t.elapsed() >= self.refresh) {
            self.rules = list(store).await?;
            self.loaded_at = Some(Instant::now());
        }
        if self.rules.is_empty() {
            return Ok(None);
        }
        let now = Utc::now();
        Ok(self
            .rules
            .iter()
            .find(|r| r.matches(finding, now))
            .map(|r| r.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::finding;
    use serde_json::json;

    fn rule() -> SuppressionRule {
        SuppressionRule {
            id: Uuid::nil(),
            client_cidr: None,
            client_key: None,
            kind: None,
            path_pattern: None,
            expires_at: None,
            created_by: "user:alice".into(),
            reason: "scanner we run".into(),
            created_at: Utc::now(),
            hits: 0,
            last_hit_at: None,
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("/health*", "/healthz"));
        assert!(glob_match("/health*", "/health"));
        assert!(glob_match("*/wp-*", "/blog/wp-login.php"));
        assert!(glob_match("/api/v?/users", "/api/v2/users"));
        assert!(!glob_match("/api/v?/users", "/api/v10/users"));
        assert!(!glob_match("/health*", "/admin/health"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b*c", &"ab".repeat(5000)));
    }

    #[test]
    fn cidr_matches_addresses_networks_and_sources() {
        let mut r = rule();
        r.client_cidr = Some("10.0.0.0/8".parse().unwrap());
        let now = Utc::now();
        let f = finding(IncidentKind::TrafficSpike, "10.1.2.3", 0, 1);
        assert!(r.matches(&f, now));
        let f = finding(IncidentKind::TrafficSpike, "11.1.2.3", 0, 1);
        assert!(!r.matches(&f, now));
        let mut f = finding(IncidentKind::TrafficSpike, "identity:bob", 0, 1);
        assert!(!r.matches(&f, now), "no sources: never muted by a CIDR");
        f.sources = vec!["10.0.0.1".parse().unwrap(), "10.9.9.9".parse().unwrap()];
        assert!(r.matches(&f, now));
        f.sources.push("192.0.2.1".parse().unwrap());
        assert!(!r.matches(&f, now), "one source outside");
        let mut r6 = rule();
        r6.client_cidr = Some("2001:db8::/32".parse().unwrap());
        let f = finding(IncidentKind::TrafficSpike, "2001:db8:1:2::/64", 0, 1);
        assert!(r6.matches(&f, now));
    }

    #[test]
    fn paths_all_must_match() {
        let mut r = rule();
        r.path_pattern = Some("/health*".into());
        let now = Utc::now();
        let mut f = finding(IncidentKind::PrivilegeProbing, "192.0.2.1", 0, 1);
        assert!(!r.matches(&f, now), "no paths");
        f.evidence = json!({"sample_paths": ["/healthz?probe=1", "/health/ready"]});
        assert!(r.matches(&f, now));
        f.evidence = json!({"sample_paths": ["/healthz", "/admin"]});
        assert!(!r.matches(&f, now));
        let f = finding(
            IncidentKind::CredentialStuffing,
            "target:api.example.com/health/login",
            0,
            1,
        );
        assert!(r.matches(&f, now));
    }

    #[test]
    fn every_matcher_and_expiry_apply() {
        let now = Utc::now();
        let mut r = rule();
        r.kind = Some(IncidentKind::TrafficSpike);
        r.client_key = Some("192.0.2.1".into());
        assert!(r.matches(&finding(IncidentKind::TrafficSpike, "192.0.2.1", 0, 1), now));
        assert!(!r.matches(&finding(IncidentKind::TrafficSpike, "192.0.2.2", 0, 1), now));
        assert!(!r.matches(
            &finding(IncidentKind::CredentialStuffing, "192.0.2.1", 0, 1),
            now
        ));
        r.expires_at = Some(now - chrono::Duration::seconds(1));
        assert!(!r.matches(&finding(IncidentKind::TrafficSpike, "192.0.2.1", 0, 1), now));
    }

    #[test]
    fn validation_refuses_rules_that_mute_everything_or_nothing() {
        let now = Utc::now();
        let ok = NewSuppressionRule {
            kind: Some(IncidentKind::TrafficSpike),
            created_by: "user:a".into(),
            reason: "load test".into(),
            ..Default::default()
        };
        ok.validate(now).unwrap();
        let none = NewSuppressionRule {
            kind: None,
            ..ok.clone()
        };
        assert!(matches!(
            none.validate(now),
            Err(SuppressionError::Invalid { .. })
        ));
        let past = NewSuppressionRule {
            expires_at: Some(now - chrono::Duration::hours(1)),
            ..ok.clone()
        };
        assert!(past.validate(now).is_err());
        let no_reason = NewSuppressionRule {
            reason: " ".into(),
            ..ok
        };
        assert!(no_reason.validate(now).is_err());
        let bad: Result<NewSuppressionRule, _> =
            serde_json::from_value(json!({"reason": "x", "kind": "traffic_spike", "bogus": 1}));
        assert!(bad.is_err(), "unknown fields are refused");
    }
}
