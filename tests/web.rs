//! The analyst web page in real headless Chromium: sign in with a token,
//! acknowledge an incident, and show an attacker's `<script>` as text; filter
//! the list, comment, resolve, and see changes made elsewhere arrive through
//! the list's polling.
//!
//! Needs PostgreSQL and Debian's `chromium` (`scripts/dev-services` installs
//! both). Screenshots land in `target/web-*.png`.

#[path = "support/api_app.rs"]
mod api_app;
#[path = "support/cdp.rs"]
mod cdp;

use api_app::{spawn_app, TestApp, T0, XSS_PATH};
use gatewatch_alerting::testing::finding;
use gatewatch_alerting::{IncidentManager, ManagerConfig};
use gatewatch_detector::IncidentKind;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_signs_in_acks_and_sees_attacker_text_as_text() {
    let app = spawn_app().await;
    let base = app.base.clone();
    let analyst = app.analyst.clone();
    let (probing, spike) = (app.probing, app.spike);
    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-profile-{}", std::process::id()));
    let shots = target_dir();
    // The browser is driven synchronously; the server runs on the runtime.
    let page = tokio::task::spawn_blocking(move || {
        let mut b = cdp::Browser::launch(&profile);
        b.goto(&format!("{base}/"));
        b.wait_for("document.getElementById('login')", "the sign-in form");
        // A wrong token is refused and leaves us signed out.
        b.eval("document.getElementById('token').value = 'gw_nope'; document.getElementById('login').requestSubmit()");
        b.wait_for(
            "document.getElementById('login-message').textContent.includes('bearer token')",
            "the refusal",
        );
        b.eval(&format!(
            "document.getElementById('token').value = '{analyst}'; document.getElementById('login').requestSubmit()"
        ));
        b.wait_for(
            "document.querySelectorAll('#incidents tr.row').length === 3",
            "the incident list",
        );
        // The token is in sessionStorage, never in a cookie.
        assert_eq!(b.eval("document.cookie"), json!(""));
        assert_eq!(
            b.eval("sessionStorage.getItem('gatewatch.token')"),
            json!(analyst)
        );
        b.screenshot(&shots.join("web-list.png"));

        // The probing incident: its sample path carries markup.
        b.eval(&format!(
            "document.querySelector('tr.row[data-id=\"{probing}\"]').click()"
        ));
        b.wait_for("document.getElementById('sample-paths')", "the incident page");
        let first = b.eval("document.querySelector('#sample-paths li').textContent");
        assert_eq!(first, json!(XSS_PATH), "the path is shown literally");
        let summary = b.eval("document.getElementById('incident-summary').textContent");
        assert!(summary.as_str().unwrap().contains("<script>"));
        // Nothing ran, and no element was made from the attacker's text.
        assert_eq!(b.eval("typeof window.__gw_xss"), json!("undefined"));
        assert_eq!(
            b.eval("document.querySelectorAll('#main script, #main img').length"),
            json!(0)
        );
        b.screenshot(&shots.join("web-xss-as-text.png"));

        // The spiking client: chart against its baseline, then acknowledge.
        b.eval(&format!("location.hash = '#/incidents/{spike}'"));
        b.wait_for(
            "document.querySelector('#traffic-chart polyline.observed') && document.querySelector('#traffic-chart line.baseline')",
            "the traffic chart",
        );
        b.eval("document.getElementById('ack').click()");
        b.wait_for(
            "document.getElementById('ack') && document.getElementById('ack').disabled && document.getElementById('timeline').textContent.includes('token:analyst')",
            "the acknowledgement",
        );
        let history = b.eval("document.getElementById('timeline').textContent");
        b.screenshot(&shots.join("web-incident.png"));
        history
    })
    .await
    .unwrap();
    assert!(page.as_str().unwrap().contains("status_changed"), "{page}");

    // The API agrees, and names the token that acted.
    let d = detail(&app, spike).await;
    assert_eq!(d["incident"]["status"], "acknowledged");
    let last = d["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "token:analyst");
    assert_eq!(last["details"]["from"], "open");
    for shot in ["web-list.png", "web-xss-as-text.png", "web-incident.png"] {
        let bytes = std::fs::read(target_dir().join(shot)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{shot}"
        );
    }
    app.stop().await;
}

/// An analyst's comment that would run if it were ever treated as markup.
const XSS_COMMENT: &str = "<img src=x onerror=window.__gw_xss=3>";

/// The listed rows as `{id, kind, client, status}`.
const ROWS: &str = "[...document.querySelectorAll('#incidents tr.row')].map((r) => \
    ({id: r.dataset.id, kind: r.cells[2].textContent, client: r.cells[3].textContent, \
    status: r.cells[4].textContent}))";

/// A JS condition: the list shows exactly the incidents `ids` (any order).
/// An incident's detail as the API gives it to a viewer.
async fn detail(app: &TestApp, id: impl std::fmt::Display) -> Value {
    app.get(&format!("/api/v1/incidents/{id}"), Some(&app.viewer))
        .await
        .json()
        .await
        .unwrap()
}

fn listed_exactly(ids: &[String]) -> String {
    format!(
        "(() => {{ const want = {}; const got = {ROWS}.map((r) => r.id).sort(); \
         return JSON.stringify(got) === JSON.stringify(want.sort()); }})()",
        json!(ids)
    )
}

/// Picks `value` in the list's `<select name=NAME>` as a user would (the
/// change event), checking the option exists.
fn set_filter(b: &mut cdp::Browser, name: &str, value: &str) {
    let got = b.eval(&format!(
        "(() => {{ const s = document.querySelector('#main select[name={name}]'); \
         s.value = '{value}'; s.dispatchEvent(new Event('change')); return s.value; }})()"
    ));
    assert_eq!(
        got,
        json!(value),
        "no {value:?} option in the {name} filter"
    );
}

/// Polls `condition` until it holds, failing after `within`; returns how
/// long it took.
fn wait_within(b: &mut cdp::Browser, condition: &str, what: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if b.eval(&format!("!!({condition})")) == json!(true) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what} did not show within {within:?}; listed: {}",
            b.eval(ROWS)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The incident page's Status field.
const STATUS_FIELD: &str = "[...document.querySelectorAll('#incident .grid > div')]\
    .find((d) => d.firstChild.textContent === 'Status').lastChild.textContent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_filters_comments_resolves_and_sees_live_updates() {
    let app = spawn_app().await;
    let (base, http, store) = (app.base.clone(), app.http.clone(), app.store.clone());
    let (analyst, admin) = (app.analyst.clone(), app.admin.clone());
    let ids = |v: &[uuid::Uuid]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    let (spike, stuffing, probing) = (app.spike, app.stuffing, app.probing);
    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-profile-live-{}", std::process::id()));
    let shot = target_dir().join("web-resolved.png");
    let _ = std::fs::remove_file(&shot);
    let shot_path = shot.clone();
    // The browser is driven synchronously; changes made "elsewhere" while
    // the page is open go through the runtime from this blocking thread.
    let rt = tokio::runtime::Handle::current();
    let created = tokio::task::spawn_blocking(move || {
        let mut b = cdp::Browser::launch(&profile);
        b.goto(&format!("{base}/"));
        b.wait_for("document.getElementById('login')", "the sign-in form");
        b.eval(&format!(
            "document.getElementById('token').value = '{analyst}'; document.getElementById('login').requestSubmit()"
        ));
        b.wait_for(&listed_exactly(&ids(&[spike, stuffing, probing])), "the incident list");
        // The page's own polling interval: live changes must show within it.
        let poll = b.eval("POLL_MS").as_u64().expect("app.js has a numeric POLL_MS");
        let live = Duration::from_millis(poll) + Duration::from_secs(2);

        // Filtering by kind lists only that kind. One change at a time, each
        // awaited: the page does not order overlapping list requests.
        set_filter(&mut b, "kind", "credential_stuffing");
        b.wait_for(&listed_exactly(&ids(&[stuffing])), "only the credential stuffing");
        let rows = b.eval(ROWS);
        assert_eq!(rows[0]["kind"], "credential_stuffing", "{rows}");
        set_filter(&mut b, "kind", "privilege_probing");
        b.wait_for(&listed_exactly(&ids(&[probing])), "only the privilege probing");
        // By status: all three are open, none is acknowledged yet (an
        // explicit empty list).
        set_filter(&mut b, "kind", "");
        set_filter(&mut b, "status", "open");
        b.wait_for(&listed_exactly(&ids(&[spike, stuffing, probing])), "the open incidents");
        set_filter(&mut b, "status", "acknowledged");
        b.wait_for(
            &format!(
                "{} && document.querySelector('#incidents tbody td.muted')?.textContent === 'No incidents match.'",
                listed_exactly(&[])
            ),
            "the empty acknowledged list",
        );

        // Another analyst (the admin token) acknowledges the spike over the
        // API: the filtered list picks it up by itself.
        let acked = rt.block_on(async {
            http.post(format!("{base}/api/v1/incidents/{spike}/ack"))
                .bearer_auth(&admin)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(acked, 200);
        let took = wait_within(
            &mut b,
            &format!(
                "{} && {ROWS}[0].status === 'acknowledged'",
                listed_exactly(&ids(&[spike]))
            ),
            "the spike acknowledged elsewhere",
            live,
        );
        eprintln!("acknowledgement shown after {took:?} (polling every {poll} ms)");

        // A new incident stored by the pipeline shows up unfiltered.
        set_filter(&mut b, "status", "");
        b.wait_for(&listed_exactly(&ids(&[spike, stuffing, probing])), "the unfiltered list");
        let new = rt.block_on(async {
            let mut manager = IncidentManager::new(store, ManagerConfig::default());
            let f = finding(IncidentKind::TrafficSpike, "198.18.7.7", T0 + 40 * 60_000, T0 + 45 * 60_000);
            manager.apply(&f).await.unwrap().unwrap().incident.id
        });
        let took = wait_within(
            &mut b,
            &format!(
                "{} && {ROWS}.some((r) => r.id === '{new}' && r.client === '198.18.7.7' && r.status === 'open')",
                listed_exactly(&ids(&[spike, stuffing, probing, new]))
            ),
            "the newly stored incident",
            live,
        );
        eprintln!("new incident shown after {took:?} (polling every {poll} ms)");

        // Comment on the probing incident: markup stays text.
        b.eval(&format!(
            "document.querySelector('tr.row[data-id=\"{probing}\"]').click()"
        ));
        b.wait_for("document.getElementById('comment-form')", "the incident page");
        assert_eq!(b.eval(STATUS_FIELD), json!("open"));
        b.eval(&format!(
            "document.getElementById('comment-body').value = {}; document.getElementById('comment-form').requestSubmit()",
            json!(XSS_COMMENT)
        ));
        let shown = format!("token:analyst — commented: {XSS_COMMENT}");
        let comment_shown = format!(
            "[...document.querySelectorAll('#timeline li')].some((li) => li.textContent.endsWith({}))",
            json!(shown)
        );
        b.wait_for(&comment_shown, "the comment in the history");
        // An <img src=x> would have failed to load and run onerror by now.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(b.eval("typeof window.__gw_xss"), json!("undefined"));
        assert_eq!(
            b.eval("document.querySelectorAll('#main script, #main img').length"),
            json!(0)
        );

        // Resolve: the page shows the new status and its history.
        b.eval("document.getElementById('resolve').click()");
        b.wait_for(
            &format!(
                "document.getElementById('reopen') && {STATUS_FIELD} === 'resolved' && \
                 document.getElementById('resolve').disabled && !document.getElementById('reopen').disabled && \
                 document.getElementById('timeline').textContent.includes('status_changed (open → resolved)')"
            ),
            "the resolution",
        );
        // The re-rendered page still shows the comment as text.
        b.wait_for(&comment_shown, "the comment after resolving");
        assert_eq!(b.eval("typeof window.__gw_xss"), json!("undefined"));
        assert_eq!(
            b.eval("document.querySelectorAll('#main script, #main img').length"),
            json!(0)
        );
        b.screenshot(&shot_path);
        new
    })
    .await
    .unwrap();

    // The API agrees: the comment is stored as written, by the analyst's
    // token, and the incident is resolved by it.
    let d: Value = app
        .get(&format!("/api/v1/incidents/{probing}"), Some(&app.viewer))
        .await
        .json()
        .await
        .unwrap();
    let comments = d["comments"].as_array().unwrap();
    assert!(
        comments
            .iter()
            .any(|c| c["actor"] == "token:analyst" && c["body"] == XSS_COMMENT),
        "{comments:?}"
    );
    assert_eq!(d["incident"]["status"], "resolved");
    let last = d["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "status_changed", "{last}");
    assert_eq!(last["actor"], "token:analyst", "{last}");
    assert_eq!(last["details"]["from"], "open", "{last}");
    assert_eq!(last["details"]["status"], "resolved", "{last}");
    // The live changes were real ones.
    let d = detail(&app, spike).await;
    assert_eq!(d["incident"]["status"], "acknowledged");
    assert_eq!(
        d["timeline"].as_array().unwrap().last().unwrap()["actor"],
        "token:admin"
    );
    let r = app
        .get(&format!("/api/v1/incidents/{created}"), Some(&app.viewer))
        .await;
    assert_eq!(r.status(), 200);
    let bytes = std::fs::read(&shot).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000);
    app.stop().await;
}
