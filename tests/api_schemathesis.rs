//! Property-based conformance of the live API to its own OpenAPI document:
//! schemathesis generates requests from `/api/v1/openapi.json` and runs all
//! its checks (no 5xx, responses and status codes match the document,
//! invalid input refused, …) with a valid token of each role.
//!
//! schemathesis comes from PyPI into a virtualenv under the target
//! directory, installed on first run (CI starts from a fresh clone);
//! `GATEWATCH_SCHEMATHESIS` may name an existing `st` instead. Needs
//! PostgreSQL and `python3` with `venv`.

#[path = "support/api_app.rs"]
mod api_app;

use api_app::spawn_app;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The schemathesis release the document is checked with (newer ones add
/// checks; bump deliberately).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// `st`, installed into `<target>/schemathesis-venv` when missing.
fn schemathesis() -> PathBuf {
    if let Ok(st) = std::env::var("GATEWATCH_SCHEMATHESIS") {
        return PathBuf::from(st);
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned();
    let venv = target.join("schemathesis-venv");
    let st = venv.join("bin/st");
    // One run per role, each its own process (nextest): the first installs,
    // the others wait on this lock and find it installed.
    let lock = std::fs::File::create(target.join("schemathesis-venv.lock"))
        .expect("create the venv lock file");
    lock.lock().expect("lock the venv");
    let installed = Command::new(&st)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("4.32.5"));
    if !installed {
        let ok = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .expect("run python3 -m venv")
            .success();
        assert!(ok, "python3 -m venv failed");
        let ok = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                SCHEMATHESIS,
            ])
            .status()
            .expect("run pip")
            .success();
        assert!(ok, "pip install {SCHEMATHESIS} failed");
    }
    st
}

/// The token each run sends: every role, so the answers a viewer or an
/// analyst gets where only an admin may act (403) are held to the document
/// as well.
#[derive(Clone, Copy, Debug)]
enum Role {
    Viewer,
    Analyst,
    Admin,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_schema_violation() {
    run_as(Role::Admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_as_a_viewer() {
    run_as(Role::Viewer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_as_an_analyst() {
    run_as(Role::Analyst).await;
}

/// Runs every schemathesis check against a fresh app with `role`'s token.
async fn run_as(role: Role) {
    let st = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let app = spawn_app().await;
    let token = match role {
        Role::Viewer => &app.viewer,
        Role::Analyst => &app.analyst,
        Role::Admin => &app.admin,
    };
    let started = Instant::now();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api_schemathesis.toml");
    let report = target_report(role);
    let out = tokio::process::Command::new(&st)
        .args(["--config-file", config, "run"])
        .arg(app.url("/api/v1/openapi.json"))
        .args(["--url", &app.base])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", "30", "--seed", "20261125"])
        .args(["--request-timeout", "10", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its example database (.schemathesis/) goes to target/, not the tree.
        .current_dir(report.parent().unwrap())
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::write(&report, stdout.as_bytes()).unwrap();
    assert!(
        out.status.success(),
        "schemathesis as {role:?} failed (report in {}):\n{stdout}\n{stderr}",
        report.display()
    );
    eprintln!(
        "schemathesis as {role:?} passed in {:.0} s; report in {}",
        started.elapsed().as_secs_f64(),
        report.display()
    );
    app.stop().await;
}

fn target_report(role: Role) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(format!("schemathesis-report-{role:?}.txt").to_lowercase())
}
