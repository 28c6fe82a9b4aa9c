//! The imaginary shop the generated traffic visits: its pages, assets,
//! login route, admin area, and the people and tools that visit it.

use crate::rng::Rng;

/// The host every request is addressed to.
pub const HOST: &str = "shop.example.com";
/// The login endpoint (POST): 200 on success, 401 on failure.
pub const LOGIN_PATH: &str = "/api/v1/auth/login";
/// Number of products that exist; ids above answer 404.
pub const PRODUCTS: u64 = 5000;

/// Browser user agents real visitors send.
pub const BROWSER_UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
];

/// First names used to build account names.
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda",
];

/// The account name of background user `i` (stable per user).
pub fn username(i: u64) -> String {
    format!("{}.{}", NAMES[(i % NAMES.len() as u64) as usize], i)
}

/// A random account name an attacker might try (from a leaked list).
pub fn leaked_username(rng: &mut Rng) -> String {
    format!("{}{}", rng.pick(NAMES), rng.range(1, 100_000))
}

/// A page a browsing visitor asks for: (path, query, status, bytes, route).
pub fn page(rng: &mut Rng) -> (String, String, u16, u64, &'static str) {
    let roll = rng.f64();
    if roll < 0.12 {
        (
            "/".into(),
            String::new(),
            200,
            rng.range(9_000, 14_000),
            "home",
        )
    } else if roll < 0.45 {
        // Mostly existing products; the odd stale link answers 404.
        let id = if rng.chance(0.01) {
            rng.range(PRODUCTS + 1, PRODUCTS * 2)
        } else {
            zipf_id(rng, PRODUCTS)
        };
        let status = if id > PRODUCTS { 404 } else { 200 };
        (
            format!("/products/{id}"),
            String::new(),
            status,
            rng.range(6_000, 30_000),
            "product",
        )
    } else if roll < 0.55 {
        let terms = [
            "shoes",
            "red+dress",
            "laptop",
            "usb-c",
            "coffee",
            "lamp",
            "socks",
        ];
        (
            "/search".into(),
            format!("q={}", rng.pick(&terms)),
            200,
            rng.range(8_000, 20_000),
            "search",
        )
    } else if roll < 0.75 {
        let id = zipf_id(rng, PRODUCTS);
        (
            format!("/api/v1/items/{id}"),
            String::new(),
            200,
            rng.range(400, 2_000),
            "items",
        )
    } else if roll < 0.82 {
        (
            "/api/v1/cart".into(),
            String::new(),
            200,
            rng.range(200, 900),
            "cart",
        )
    } else if roll < 0.88 {
        (
            "/api/v1/recommendations".into(),
            "limit=8".into(),
            200,
            rng.range(1_000, 4_000),
            "recommendations",
        )
    } else if roll < 0.93 {
        let slugs = [
            "spring-sale",
            "how-we-roast",
            "gift-guide",
            "new-arrivals",
            "shipping-update",
        ];
        (
            format!("/blog/{}", rng.pick(&slugs)),
            String::new(),
            200,
            rng.range(10_000, 25_000),
            "blog",
        )
    } else if roll < 0.97 {
        (
            "/account".into(),
            String::new(),
            200,
            rng.range(3_000, 6_000),
            "account",
        )
    } else {
        (
            "/checkout".into(),
            String::new(),
            200,
            rng.range(5_000, 9_000),
            "checkout",
        )
    }
}

/// A static asset a page pulls in: (path, status, bytes).
pub fn asset(rng: &mut Rng) -> (String, u16, u64) {
    let status = if rng.chance(0.25) { 304 } else { 200 };
    let (path, bytes) = match rng.range(0, 5) {
        0 => ("/static/app.3f9a1c.js".to_string(), 182_113),
        1 => ("/static/style.8c2d.css".to_string(), 41_207),
        2 => (
            format!("/img/p{}.jpg", zipf_id(rng, PRODUCTS)),
            rng.range(20_000, 120_000),
        ),
        3 => ("/favicon.ico".to_string(), 1_150),
        _ => ("/fonts/inter.woff2".to_string(), 98_320),
    };
    let bytes = if status == 304 { 0 } else { bytes };
    (path, status, bytes)
}

/// A heavy-tailed id in 1..=n: popular products are asked for most.
pub fn zipf_id(rng: &mut Rng, n: u64) -> u64 {
    let x = rng.pareto(1.0, 0.9);
    ((x as u64).min(n)).max(1)
}

/// Privileged paths a prober tries.
pub const PRIVILEGED_PROBES: &[&str] = &[
    "/admin",
    "/admin/",
    "/admin/login",
    "/admin/config",
    "/admin/users",
    "/administrator/index.php",
    "/actuator",
    "/actuator/env",
    "/actuator/heapdump",
    "/actuator/mappings",
    "/internal/metrics",
    "/internal/debug/vars",
    "/manage/health",
    "/management/users",
    "/console",
    "/jmx-console",
    "/manager/html",
    "/phpmyadmin/",
    "/pma/index.php",
    "/server-status",
    "/api/admin/users",
    "/api/v1/admin/settings",
    "/api/internal/flags",
    "/_admin",
    "/wp-admin/",
    "/cpanel",
    "/solr/admin/",
    "/jenkins/script",
    "/debug/pprof/",
    "/graphql/admin",
    "/api/v1/admin/export",
    "/system/console",
    "/admin/api/keys",
    "/api/v2/admin/roles",
    "/admin.php",
    "/siteadmin",
    "/adminer.php",
    "/webadmin",
    "/api/v1/internal/users",
    "/backoffice",
    "/admin/logs",
    "/actuator/threaddump",
    "/admin/db",
    "/admin/shell",
    "/management/env",
];

/// Sensitive files a scanner tries.
pub const SENSITIVE_PROBES: &[&str] = &[
    "/.env",
    "/.env.local",
    "/.env.production",
    "/.git/config",
    "/.git/HEAD",
    "/.svn/entries",
    "/backup.zip",
    "/backup.tar.gz",
    "/db.sql",
    "/dump.sql",
    "/database.sql",
    "/wp-config.php.bak",
    "/config.php~",
    "/.aws/credentials",
    "/.ssh/id_rsa",
    "/id_rsa",
    "/.htpasswd",
    "/.DS_Store",
    "/config.json",
    "/credentials.json",
    "/secrets.yml",
    "/docker-compose.yml",
    "/.npmrc",
    "/web.config",
    "/phpinfo.php",
    "/info.php",
    "/site.tar.gz",
    "/www.zip",
    "/.bash_history",
    "/storage/logs/laravel.log",
    "/application.properties",
    "/settings.py",
    "/.vscode/sftp.json",
    "/app.config.bak",
    "/old/index.php.bak",
];
