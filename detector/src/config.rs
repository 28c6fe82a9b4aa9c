//! Detection configuration: every threshold a user may want to change.
//!
//! This is the `[detection]` TOML section with one sub-table per detector
//! (`[detection.traffic_spike]`, `[detection.credential_stuffing]`,
//! `[detection.privilege_probing]`) and one for request classification
//! (`[detection.classify]`). Every field has a default a user can trust; the
//! README quotes them and the golden tests rely on them. Pattern lists come in
//! pairs: `login_routes` replaces the built-in list, `extra_login_routes`
//! adds to it.

use serde::Deserialize;
use thiserror::Error;

/// Why a detection config is unusable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A field is out of its valid range.
    #[error("detection.{field}: {reason}")]
    Invalid {
        /// Dotted path of the field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A pattern does not compile.
    #[error("detection.{field}: pattern {pattern:?} is not a valid regular expression: {source}")]
    BadPattern {
        /// Dotted path of the field.
        field: &'static str,
        /// The offending pattern.
        pattern: String,
        /// The regex error.
        source: regex::Error,
    },
    /// A literal pattern list does not build.
    #[error("detection.{field}: cannot build the pattern matcher: {reason}")]
    BadList {
        /// Dotted path of the field.
        field: &'static str,
        /// What the matcher builder said.
        reason: String,
    },
}

/// What per-client state is keyed on.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientKeyMode {
    /// The client address (IPv6 grouped by `ipv6_prefix`).
    #[default]
    Ip,
    /// The authenticated identity when the log carries one, else the address.
    Identity,
}

/// The `[detection]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// What a "client" is: `ip` (default) or `identity`.
    pub client_key: ClientKeyMode,
    /// IPv6 clients are grouped by this many prefix bits (64 = one subscriber).
    pub ipv6_prefix: u8,
    /// Upper bound on clients tracked by each detector, over all shards; the
    /// least recently seen are evicted beyond it, so a flood of spoofed
    /// addresses cannot exhaust memory.
    pub max_tracked_clients: usize,
    /// Seconds of event time after which an idle client's state is dropped.
    pub idle_expiry_secs: u64,
    /// Seconds that events may arrive out of order (the watermark lags the
    /// newest event time by this much). Events later than that are judged as
    /// if they happened at the watermark.
    pub allowed_lateness_secs: u64,
    /// How requests are classified (static assets, health checks).
    pub classify: ClassifyConfig,
    /// The `traffic_spike` detector.
    pub traffic_spike: TrafficSpikeConfig,
    /// The `credential_stuffing` detector (and the login-route patterns).
    pub credential_stuffing: CredentialStuffingConfig,
    /// The `privilege_probing` detector (and the privileged / sensitive
    /// patterns).
    pub privilege_probing: PrivilegeProbingConfig,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            client_key: ClientKeyMode::Ip,
            ipv6_prefix: 64,
            max_tracked_clients: 1_000_000,
            idle_expiry_secs: 6 * 3600,
            allowed_lateness_secs: 5,
            classify: ClassifyConfig::default(),
            traffic_spike: TrafficSpikeConfig::default(),
            credential_stuffing: CredentialStuffingConfig::default(),
            privilege_probing: PrivilegeProbingConfig::default(),
        }
    }
}

/// `[detection.classify]`: request classes every detector shares.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// File extensions (lower case, no dot) of static assets. Static requests
    /// do not count toward path enumeration or (by default) rate baselines.
    pub static_extensions: Vec<String>,
    /// Health-check and monitoring routes, matched like login routes (a
    /// suffix of the path at a segment boundary; `*` is one segment).
    pub health_checks: Vec<String>,
    /// Added to `health_checks`.
    pub extra_health_checks: Vec<String>,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            static_extensions: strings(&[
                "jpg", "jpeg", "png", "gif", "svg", "ico", "webp", "avif", "bmp", "css", "js",
                "mjs", "map", "woff", "woff2", "ttf", "otf", "eot", "mp3", "mp4", "wav", "webm",
            ]),
            health_checks: strings(&[
                "/health",
                "/healthz",
                "/healthcheck",
                "/health-check",
                "/_health",
                "/health/live",
                "/health/ready",
                "/readyz",
                "/livez",
                "/ping",
                "/heartbeat",
                "/actuator/health",
            ]),
            extra_health_checks: Vec::new(),
        }
    }
}

/// `[detection.traffic_spike]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficSpikeConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Width of a rate bucket in seconds: the baseline learns events per
    /// bucket, and a bucket's running count is tested on every event.
    pub bucket_secs: u64,
    /// Smoothing factor of the per-client baseline, per active bucket
    /// (0.05 ≈ the last 20 active buckets dominate).
    pub alpha: f64,
    /// Active buckets a client needs before its own baseline is trusted;
    /// until then it is judged against the population.
    pub warmup_buckets: u16,
    /// Tail probability below which a bucket count is a spike.
    pub p_value: f64,
    /// Fewest events in one bucket that can ever be a spike: small clients
    /// never alert, however quiet they usually are.
    pub min_events: u32,
    /// Upper quantile of per-client bucket counts (over the site) that new
    /// clients are judged against.
    pub population_quantile: f64,
    /// The population figure new clients are judged against is never below
    /// this many events per bucket.
    pub new_client_floor: u32,
    /// Whether static-asset requests count toward the rate.
    pub count_static: bool,
    /// Whether health-check requests count toward the rate.
    pub count_health_checks: bool,
    /// Observed / expected above which a spike is `high` (`medium` from
    /// half of it, `low` below).
    pub high_ratio: f64,
}

impl Default for TrafficSpikeConfig {
    fn default() -> Self {
        TrafficSpikeConfig {
            enabled: true,
            bucket_secs: 60,
            alpha: 0.05,
            warmup_buckets: 5,
            p_value: 1e-6,
            min_events: 60,
            population_quantile: 0.99,
            new_client_floor: 30,
            count_static: false,
            count_health_checks: false,
            high_ratio: 20.0,
        }
    }
}

/// One login route and how its outcome is read.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoginRoute {
    /// Path pattern, matched case-insensitively against the end of the path
    /// at a segment boundary: `/login` matches `/login`, `/api/v1/login` and
    /// `/login/`, not `/blogin`. `*` matches one segment, `**` any number.
    pub pattern: String,
    /// Methods that make an attempt (empty: any method).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Statuses that mean the login failed (default: the detector's
    /// `failure_status`).
    #[serde(default)]
    pub failure_status: Option<Vec<u16>>,
    /// Statuses that mean the login succeeded (default: any other 2xx/3xx).
    #[serde(default)]
    pub success_status: Option<Vec<u16>>,
}

impl LoginRoute {
    fn new(pattern: &str, methods: &[&str]) -> LoginRoute {
        LoginRoute {
            pattern: pattern.to_owned(),
            methods: strings(methods),
            failure_status: None,
            success_status: None,
        }
    }

    /// A form login that answers a failure with the form again (200) and a
    /// success with a redirect (302), like WordPress.
    fn form(pattern: &str) -> LoginRoute {
        LoginRoute {
            pattern: pattern.to_owned(),
            methods: strings(&["POST"]),
            failure_status: Some(vec![200]),
            success_status: Some(vec![302, 303]),
        }
    }
}

/// `[detection.credential_stuffing]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialStuffingConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Login routes (replaces the built-in list).
    pub login_routes: Vec<LoginRoute>,
    /// Added to `login_routes`.
    pub extra_login_routes: Vec<LoginRoute>,
    /// Statuses that mean a login failed, unless the route says otherwise.
    pub failure_status: Vec<u16>,
    /// Whether a 401 to a request that carries a user name (HTTP basic
    /// auth) counts as a failed login on any route.
    pub basic_auth_failures: bool,
    /// 401s without a user name on non-login routes, within one minute, that
    /// make a brute force (a basic-auth prompt hammered by a client whose log
    /// line names no account). Set high because a client with a revoked API
    /// key also collects 401s, slowly; 0 disables.
    pub anonymous_401_burst: u32,
    /// The short window, in seconds, for brute force and spraying.
    pub window_secs: u64,
    /// Share of a source's login attempts in the window that must have failed
    /// before it can be called an attack (a NAT full of real users mostly
    /// succeeds).
    pub min_failure_ratio: f64,
    /// Failed logins from one source in the window (on one account, when
    /// the log names accounts) that make a brute force.
    pub brute_force_failures: u32,
    /// Distinct accounts failing from one source in the window that make a
    /// password spray / stuffing run.
    pub spray_accounts: u32,
    /// The long window, in seconds, for low-and-slow runs.
    pub slow_window_secs: u64,
    /// Failed logins from one source in the long window that make a
    /// low-and-slow run.
    pub slow_failures: u32,
    /// Failure share required over the long window.
    pub slow_min_failure_ratio: f64,
    /// Consecutive failures from a source after which a success is a
    /// possible account takeover (critical).
    pub takeover_min_failures: u32,
    /// Distinct failing sources against one target, in the window, that make
    /// a distributed attack.
    pub distributed_min_sources: u32,
    /// Failed logins against one target in the window that make a
    /// distributed attack.
    pub distributed_min_failures: u32,
    /// Tail probability for the target's distinct failing sources against
    /// its own baseline.
    pub distributed_p_value: f64,
}

impl Default for CredentialStuffingConfig {
    fn default() -> Self {
        let any: &[&str] = &[];
        let writes: &[&str] = &["POST", "PUT"];
        CredentialStuffingConfig {
            enabled: true,
            login_routes: vec![
                LoginRoute::form("/wp-login.php"),
                LoginRoute::form("/apps/login"),
                LoginRoute {
                    // XML-RPC answers every call with 200 and a fault body:
                    // each POST is an attempt that cannot be told apart.
                    pattern: "/xmlrpc.php".into(),
                    methods: strings(&["POST"]),
                    failure_status: Some(vec![200]),
                    success_status: Some(Vec::new()),
                },
                LoginRoute::new("/login", writes),
                LoginRoute::new("/log-in", writes),
                LoginRoute::new("/signin", writes),
                LoginRoute::new("/sign-in", writes),
                LoginRoute::new("/sign_in", writes),
                LoginRoute::new("/user/login", writes),
                LoginRoute::new("/users/login", writes),
                LoginRoute::new("/account/login", writes),
                LoginRoute::new("/auth", writes),
                LoginRoute::new("/authenticate", writes),
                LoginRoute::new("/api/*/auth", writes),
                LoginRoute::new("/api/*/auth/*", writes),
                LoginRoute::new("/session", writes),
                LoginRoute::new("/sessions", writes),
                LoginRoute::new("/token", any),
                LoginRoute::new("/oauth/token", any),
                LoginRoute::new("/oauth2/token", any),
                LoginRoute::new("/connect/token", any),
                LoginRoute::new("/j_security_check", writes),
            ],
            extra_login_routes: Vec::new(),
            failure_status: vec![401, 403],
            basic_auth_failures: true,
            anonymous_401_burst: 6,
            window_secs: 600,
            min_failure_ratio: 0.5,
            brute_force_failures: 5,
            spray_accounts: 5,
            slow_window_secs: 6 * 3600,
            slow_failures: 30,
            slow_min_failure_ratio: 0.8,
            takeover_min_failures: 5,
            distributed_min_sources: 10,
            distributed_min_failures: 30,
            distributed_p_value: 1e-6,
        }
    }
}

/// `[detection.privilege_probing]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegeProbingConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Privileged route fragments, matched case-insensitively anywhere in
    /// the path (`/admin` matches `/api/admin/users`).
    pub privileged_routes: Vec<String>,
    /// Added to `privileged_routes`.
    pub extra_privileged_routes: Vec<String>,
    /// Sensitive files, matched case-insensitively against the end of the
    /// path (`.env`, `/.git/config`, `.sql`, `wp-config.php`).
    pub sensitive_files: Vec<String>,
    /// Added to `sensitive_files`.
    pub extra_sensitive_files: Vec<String>,
    /// Fragments that mark traversal or exploit attempts anywhere in the path
    /// or query (`../`, `/etc/passwd`); counted with sensitive files.
    pub attack_fragments: Vec<String>,
    /// Added to `attack_fragments`.
    pub extra_attack_fragments: Vec<String>,
    /// Query parameters whose values name users or accounts (`?author=3`,
    /// `?user_id=7`); many distinct values from one client are an ID
    /// enumeration whatever the statuses. Generic `id` is left out by
    /// default: crawlers walk `?id=N` catalogue pages.
    pub id_params: Vec<String>,
    /// Route fragments of objects that belong to someone (`/users/`,
    /// `/invoices/`): only there is an in-order walk with 2xx answers an
    /// object walk (a crawler walking `/products/N` is not).
    pub owned_object_routes: Vec<String>,
    /// Window, in seconds, over which probing counts are kept.
    pub window_secs: u64,
    /// Distinct privileged paths denied (401/403/404) that make an admin
    /// probe (static assets excluded).
    pub admin_paths: u32,
    /// Distinct sensitive-file (or traversal) requests that make a scan.
    pub sensitive_paths: u32,
    /// Distinct not-found / forbidden / malformed paths that make a broad
    /// enumeration.
    pub enum_paths: u32,
    /// Share of a client's requests that must be denied for an enumeration
    /// (crawlers that mostly get 200s stay quiet).
    pub min_denied_ratio: f64,
    /// Distinct object ids denied (401/403/404) under one route that make an
    /// object walk (BOLA).
    pub object_ids: u32,
    /// Distinct object ids walked in near-sequential order under one
    /// `owned_object_routes` route that make an object walk whatever the
    /// statuses.
    pub sequential_ids: u32,
    /// Distinct values of one `id_params` parameter that make an ID
    /// enumeration.
    pub id_param_values: u32,
    /// An admin probe needs this many denials per successful privileged
    /// request (an admin at work mostly succeeds; a prober mostly fails).
    pub admin_denied_per_ok: f64,
    /// Share of an object walk's requests that must be denied for
    /// `object_ids` distinct ids to be a walk (BOLA attempts fail).
    pub object_denied_share: f64,
    /// Share of an object walk's steps that must be near-sequential for
    /// `sequential_ids` distinct ids to be a walk whatever the statuses.
    pub sequential_share: f64,
    /// Largest id step that still counts as near-sequential (`/users/7`
    /// then `/users/9`).
    pub sequential_max_gap: u32,
}

impl Default for PrivilegeProbingConfig {
    fn default() -> Self {
        PrivilegeProbingConfig {
            enabled: true,
            privileged_routes: strings(&[
                "/admin",
                "/wp-admin",
                "/_admin",
                "/manager",
                "/management",
                "/actuator",
                "/internal",
                "/_internal",
                "/console",
                "/phpmyadmin",
                "/pma",
                "/adminer",
                "/cpanel",
                "/webadmin",
                "/siteadmin",
                "/sysadmin",
                "/superadmin",
                "/backoffice",
                "/jmx-console",
                "/server-status",
                "/server-info",
                "/_debug",
                "/debug/",
                "/jenkins",
                "/solr/",
                "/boaform",
                "/+cscoe+",
                "/dana-na",
                "/sitecore/admin",
                "/nwa",
                "/irj/portal",
                "/sap/bc/",
                "/phpinfo",
                "/wp-login",
                // Technology probing: plugin and framework internals a
                // scanner asks for; denials here are probes, 2xx is a site
                // that runs them.
                "/wp-content/plugins/",
                "/wp-includes/",
                "/wp-json/wp/v2/users",
                "/vendor/phpunit",
                "/hnap1",
                "/telescope",
                "/_profiler",
                "/.well-known/openid-configuration/..",
            ]),
            extra_privileged_routes: Vec::new(),
            sensitive_files: strings(&[
                ".env",
                ".env.local",
                ".env.production",
                ".env.bak",
                ".env.save",
                ".envrc",
                "/.git/config",
                "/.git/head",
                "/.git/index",
                "/.git",
                "/.svn/entries",
                "/.hg/hgrc",
                "/.ds_store",
                ".htpasswd",
                ".htaccess",
                ".bash_history",
                ".bashrc",
                ".mysql_history",
                ".npmrc",
                ".pgpass",
                "/.aws/credentials",
                "/.ssh/id_rsa",
                "id_rsa",
                "id_dsa",
                ".pem",
                ".key",
                ".sql",
                ".sql.gz",
                ".sql.zip",
                ".bak",
                ".backup",
                ".old",
                ".orig",
                ".swp",
                "~",
                "/backup.zip",
                "/backup.tar.gz",
                "/site.tar.gz",
                "/wwwroot.zip",
                "/dump.sql",
                "wp-config.php",
                "wp-config.php.bak",
                "/config.php",
                "/configuration.php",
                "/config.json",
                "/config.yml",
                "/config.yaml",
                "/settings.py",
                "/web.config",
                "/appsettings.json",
                "/docker-compose.yml",
                "/credentials.json",
                "/secrets.json",
                "/phpinfo.php",
                "/info.php",
                "/server.key",
                "/.well-known/security.txt.bak",
            ]),
            extra_sensitive_files: Vec::new(),
            attack_fragments: strings(&[
                "../",
                "..\\",
                "..%2f",
                "%2e%2e",
                "%252e%252e",
                "/etc/passwd",
                "/etc/shadow",
                "/etc/hosts",
                "/proc/self/",
                "c:\\windows",
                "=file://",
                "w00tw00t",
                "/cgi-bin/",
                "/shell.php",
                "/c99.php",
                "/r57.php",
                "/wso.php",
                "/alfa.php",
                "/cmd.php",
                "/eval-stdin.php",
            ]),
            extra_attack_fragments: Vec::new(),
            id_params: strings(&[
                "author",
                "uid",
                "user",
                "user_id",
                "userid",
                "account",
                "account_id",
                "customer_id",
            ]),
            owned_object_routes: strings(&[
                "/user/",
                "/users/",
                "/account/",
                "/accounts/",
                "/customer/",
                "/customers/",
                "/member/",
                "/members/",
                "/profile/",
                "/profiles/",
                "/order/",
                "/orders/",
                "/invoice/",
                "/invoices/",
                "/payment/",
                "/payments/",
                "/document/",
                "/documents/",
                "/message/",
                "/messages/",
                "/tenant/",
                "/tenants/",
                "/patient/",
                "/patients/",
            ]),
            window_secs: 600,
            admin_paths: 2,
            sensitive_paths: 3,
            enum_paths: 10,
            min_denied_ratio: 0.5,
            object_ids: 10,
            sequential_ids: 50,
            id_param_values: 5,
            admin_denied_per_ok: 2.0,
            object_denied_share: 0.5,
            sequential_share: 0.8,
            sequential_max_gap: 3,
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn invalid(field: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { field, reason }
}

fn check_ratio(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be within 0..=1, got {v}")))
    }
}

fn check_p(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v > 0.0 && v < 0.5 {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be a probability in (0, 0.5), got {v}"),
        ))
    }
}

fn check_positive(field: &'static str, v: u64) -> Result<(), ConfigError> {
    if v > 0 {
        Ok(())
    } else {
        Err(invalid(field, "must be greater than 0".into()))
    }
}

impl DetectionConfig {
    /// Checks cross-field rules before anything is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ipv6_prefix == 0 || self.ipv6_prefix > 128 {
            return Err(invalid(
                "ipv6_prefix",
                format!("must be 1..=128, got {}", self.ipv6_prefix),
            ));
        }
        if self.max_tracked_clients < 1000 {
            return Err(invalid(
                "max_tracked_clients",
                format!("must be at least 1000, got {}", self.max_tracked_clients),
            ));
        }
        check_positive("idle_expiry_secs", self.idle_expiry_secs)?;
        let s = &self.traffic_spike;
        check_positive("traffic_spike.bucket_secs", s.bucket_secs)?;
        if !(s.alpha > 0.0 && s.alpha < 1.0) {
            return Err(invalid(
                "traffic_spike.alpha",
                format!("must be within (0, 1), got {}", s.alpha),
            ));
        }
        check_p("traffic_spike.p_value", s.p_value)?;
        check_ratio("traffic_spike.population_quantile", s.population_quantile)?;
        if s.high_ratio < 1.0 {
            return Err(invalid(
                "traffic_spike.high_ratio",
                format!("must be at least 1, got {}", s.high_ratio),
            ));
        }
        if self.idle_expiry_secs < s.bucket_secs {
            return Err(invalid(
                "idle_expiry_secs",
                format!(
                    "must be at least traffic_spike.bucket_secs ({}), got {}",
                    s.bucket_secs, self.idle_expiry_secs
                ),
            ));
        }
        let c = &self.credential_stuffing;
        check_positive("credential_stuffing.window_secs", c.window_secs)?;
        check_positive("credential_stuffing.slow_window_secs", c.slow_window_secs)?;
        if c.slow_window_secs < c.window_secs {
            return Err(invalid(
                "credential_stuffing.slow_window_secs",
                "must not be shorter than window_secs".into(),
            ));
        }
        check_ratio("credential_stuffing.min_failure_ratio", c.min_failure_ratio)?;
        check_ratio(
            "credential_stuffing.slow_min_failure_ratio",
            c.slow_min_failure_ratio,
        )?;
        check_p(
            "credential_stuffing.distributed_p_value",
            c.distributed_p_value,
        )?;
        for (field, v) in [
            (
                "credential_stuffing.brute_force_failures",
                c.brute_force_failures,
            ),
            ("credential_stuffing.spray_accounts", c.spray_accounts),
            ("credential_stuffing.slow_failures", c.slow_failures),
            (
                "credential_stuffing.takeover_min_failures",
                c.takeover_min_failures,
            ),
            (
                "credential_stuffing.distributed_min_sources",
                c.distributed_min_sources,
            ),
            (
                "credential_stuffing.distributed_min_failures",
                c.distributed_min_failures,
            ),
        ] {
            check_positive(field, u64::from(v))?;
        }
        for r in c.login_routes.iter().chain(&c.extra_login_routes) {
            if r.pattern.is_empty() {
                return Err(invalid(
                    "credential_stuffing.login_routes",
                    "a pattern is empty".into(),
                ));
            }
        }
        let p = &self.privilege_probing;
        check_positive("privilege_probing.window_secs", p.window_secs)?;
        check_ratio("privilege_probing.min_denied_ratio", p.min_denied_ratio)?;
        check_ratio(
            "privilege_probing.object_denied_share",
            p.object_denied_share,
        )?;
        check_ratio("privilege_probing.sequential_share", p.sequential_share)?;
        if !(p.admin_denied_per_ok.is_finite() && p.admin_denied_per_ok >= 0.0) {
            return Err(invalid(
                "privilege_probing.admin_denied_per_ok",
                format!(
                    "must be a non-negative number, got {}",
                    p.admin_denied_per_ok
                ),
            ));
        }
        check_positive(
            "privilege_probing.sequential_max_gap",
            u64::from(p.sequential_max_gap),
        )?;
        for (field, v) in [
            ("privilege_probing.admin_paths", p.admin_paths),
            ("privilege_probing.sensitive_paths", p.sensitive_paths),
            ("privilege_probing.enum_paths", p.enum_paths),
            ("privilege_probing.object_ids", p.object_ids),
            ("privilege_probing.sequential_ids", p.sequential_ids),
            ("privilege_probing.id_param_values", p.id_param_values),
        ] {
            check_positive(field, u64::from(v))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        DetectionConfig::default().validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<DetectionConfig>("[traffic_spike]\nbogus = 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn sub_tables_override_single_fields() {
        let cfg: DetectionConfig = toml::from_str(
            "[credential_stuffing]\nwindow_secs = 120\n\
             extra_login_routes = [{ pattern = \"/api/*/logon\", methods = [\"POST\"] }]\n",
        )
        .unwrap();
        assert_eq!(cfg.credential_stuffing.window_secs, 120);
        assert_eq!(cfg.credential_stuffing.brute_force_failures, 5);
        assert_eq!(cfg.credential_stuffing.extra_login_routes.len(), 1);
        cfg.validate().unwrap();
    }

    #[test]
    fn ranges_are_checked() {
        let mut cfg = DetectionConfig::default();
        cfg.traffic_spike.p_value = 0.9;
        assert!(cfg.validate().is_err());
        let mut cfg = DetectionConfig::default();
        cfg.credential_stuffing.slow_window_secs = 10;
        assert!(cfg.validate().is_err());
        for bad in [
            |p: &mut PrivilegeProbingConfig| p.sequential_share = 1.5,
            |p: &mut PrivilegeProbingConfig| p.object_denied_share = -0.1,
            |p: &mut PrivilegeProbingConfig| p.admin_denied_per_ok = f64::NAN,
            |p: &mut PrivilegeProbingConfig| p.sequential_max_gap = 0,
        ] {
            let mut cfg = DetectionConfig::default();
            bad(&mut cfg.privilege_probing);
            assert!(cfg.validate().is_err());
        }
    }
}
