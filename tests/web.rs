//! The analyst web page in real headless Chromium: sign in with a token,
//! acknowledge an incident, and show an attacker's `<script>` as text.
//!
//! Needs PostgreSQL and Debian's `chromium` (`scripts/dev-services` installs
//! both). Screenshots land in `target/web-*.png`.

#[path = "support/api_app.rs"]
mod api_app;
#[path = "support/cdp.rs"]
mod cdp;

use api_app::{spawn_app, XSS_PATH};
use serde_json::{json, Value};
use std::path::PathBuf;

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
    let d: Value = app
        .get(&format!("/api/v1/incidents/{spike}"), Some(&app.viewer))
        .await
        .json()
        .await
        .unwrap();
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
