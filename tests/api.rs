//! The incident API against a real PostgreSQL: every endpoint, every role,
//! the error shape, and the OpenAPI document against the router.
//!
//! Needs PostgreSQL (`scripts/dev-services`, or `GATEWATCH_TEST_DATABASE_URL`).

#[path = "support/api_app.rs"]
mod api_app;

use api_app::{spawn_app, token, TestApp, XSS_PATH};
use gatewatch_alerting::store::tokens::TokenRole;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Who calls, in the authorization matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Caller {
    Anonymous,
    BadToken,
    Viewer,
    Analyst,
    Admin,
}

const CALLERS: [Caller; 5] = [
    Caller::Anonymous,
    Caller::BadToken,
    Caller::Viewer,
    Caller::Analyst,
    Caller::Admin,
];

fn secret(app: &TestApp, c: Caller) -> Option<String> {
    match c {
        Caller::Anonymous => None,
        // Well-formed but unknown.
        Caller::BadToken => Some(format!("gw_{}", "0".repeat(64))),
        Caller::Viewer => Some(app.viewer.clone()),
        Caller::Analyst => Some(app.analyst.clone()),
        Caller::Admin => Some(app.admin.clone()),
    }
}

/// One route of the matrix: how to call it as `caller`, the least role
/// that may, and what success looks like.
struct Route {
    method: Method,
    template: &'static str,
    min: Caller,
    ok: StatusCode,
}

#[tokio::test]
async fn authorization_matrix_every_route_every_role() {
    let app = spawn_app().await;
    // Per-caller resources, so that each allowed call succeeds on its own
    // incident/token regardless of the others.
    let mut incidents = std::collections::HashMap::new();
    let mut resolved = std::collections::HashMap::new();
    let mut rules = std::collections::HashMap::new();
    for c in CALLERS {
        let mut m = gatewatch_alerting::IncidentManager::new(app.store.clone(), Default::default());
        let mk = |n: i64, suffix: &str| {
            let mut f = gatewatch_alerting::testing::finding(
                gatewatch_detector::IncidentKind::TrafficSpike,
                &format!("10.9.{}.{n}", c as u8),
                api_app::T0 + n,
                api_app::T0 + n + 1,
            );
            f.summary = format!("matrix {suffix}");
            f
        };
        let open = m.apply(&mk(1, "open")).await.unwrap().unwrap().incident.id;
        let done = m
            .apply(&mk(2, "resolved"))
            .await
            .unwrap()
            .unwrap()
            .incident
            .id;
        let r = app
            .send(
                Method::POST,
                &format!("/api/v1/incidents/{done}/resolve"),
                Some(&app.admin),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let rule = gatewatch_alerting::suppression::create(
            app.store.as_ref(),
            gatewatch_alerting::suppression::NewSuppressionRule {
                client_key: Some(format!("matrix-{}", c as u8)),
                created_by: "test".into(),
                reason: "matrix".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        rules.insert(c, rule.id);
        incidents.insert(c, open);
        resolved.insert(c, done);
        token(
            &app.store,
            &format!("victim-{}", c as u8),
            TokenRole::Viewer,
        )
        .await;
    }

    use Caller::*;
    let routes = [
        Route {
            method: Method::GET,
            template: "/api/v1/incidents",
            min: Viewer,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/api/v1/incidents/{open}",
            min: Viewer,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::POST,
            template: "/api/v1/incidents/{open}/ack",
            min: Analyst,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::POST,
            template: "/api/v1/incidents/{open}/comments",
            min: Analyst,
            ok: StatusCode::CREATED,
        },
        Route {
            method: Method::PUT,
            template: "/api/v1/incidents/{open}/assignee",
            min: Analyst,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::POST,
            template: "/api/v1/incidents/{open}/resolve",
            min: Analyst,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::POST,
            template: "/api/v1/incidents/{resolved}/reopen",
            min: Analyst,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/api/v1/clients/203.0.113.7",
            min: Viewer,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/api/v1/stats",
            min: Viewer,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/api/v1/suppressions",
            min: Viewer,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::POST,
            template: "/api/v1/suppressions",
            min: Analyst,
            ok: StatusCode::CREATED,
        },
        Route {
            method: Method::DELETE,
            template: "/api/v1/suppressions/{rule}",
            min: Analyst,
            ok: StatusCode::NO_CONTENT,
        },
        Route {
            method: Method::GET,
            template: "/api/v1/notifications/dead-letters",
            min: Viewer,
            ok: StatusCode::OK,
        },
        // No dead letter exists: an admin gets past authorization to the 404.
        Route {
            method: Method::POST,
            template:
                "/api/v1/notifications/dead-letters/00000000-0000-0000-0000-000000000000/requeue",
            min: Admin,
            ok: StatusCode::NOT_FOUND,
        },
        Route {
            method: Method::GET,
            template: "/api/v1/tokens",
            min: Admin,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::POST,
            template: "/api/v1/tokens",
            min: Admin,
            ok: StatusCode::CREATED,
        },
        Route {
            method: Method::DELETE,
            template: "/api/v1/tokens/victim-{caller}",
            min: Admin,
            ok: StatusCode::NO_CONTENT,
        },
        Route {
            method: Method::GET,
            template: "/api/v1/audit",
            min: Admin,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/healthz",
            min: Anonymous,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/readyz",
            min: Anonymous,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/metrics",
            min: Anonymous,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/api/v1/openapi.json",
            min: Anonymous,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/",
            min: Anonymous,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/app.js",
            min: Anonymous,
            ok: StatusCode::OK,
        },
        Route {
            method: Method::GET,
            template: "/app.css",
            min: Anonymous,
            ok: StatusCode::OK,
        },
    ];
    let mut cells = 0;
    let mut failures = Vec::new();
    for route in &routes {
        for c in CALLERS {
            let path = route
                .template
                .replace("{open}", &incidents[&c].to_string())
                .replace("{resolved}", &resolved[&c].to_string())
                .replace("{rule}", &rules[&c].to_string())
                .replace("{caller}", &(c as u8).to_string());
            let body = match (route.method.clone(), route.template) {
                (Method::POST, t) if t.ends_with("/comments") => Some(json!({"body": "seen"})),
                (Method::PUT, _) => Some(json!({"assignee": "alice"})),
                (Method::POST, "/api/v1/suppressions") => Some(json!({
                    "client_cidr": "10.99.0.0/16",
                    "kind": "traffic_spike",
                    "reason": "load test",
                    "expires_at": "2099-01-01T00:00:00Z",
                })),
                (Method::POST, "/api/v1/tokens") => {
                    Some(json!({"name": format!("new-{}", c as u8), "role": "viewer"}))
                }
                _ => None,
            };
            let r = app
                .send(
                    route.method.clone(),
                    &path,
                    secret(&app, c).as_deref(),
                    body,
                )
                .await;
            let expected = if c >= route.min {
                route.ok
            } else if c <= BadToken {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            let status = r.status();
            if status == StatusCode::UNAUTHORIZED {
                assert_eq!(
                    r.headers()["www-authenticate"].to_str().unwrap(),
                    "Bearer realm=\"gatewatch\""
                );
            }
            if status != expected {
                let text = r.text().await.unwrap_or_default();
                failures.push(format!(
                    "{} {path} as {c:?}: {status}, expected {expected}: {text}",
                    route.method
                ));
            }
            cells += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(cells, routes.len() * CALLERS.len());
    // Every documented operation is in the matrix.
    let doc: Value = app
        .get("/api/v1/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "a route is missing from the matrix"
    );
    app.stop().await;
}

/// Changes outside incidents (tokens, suppression rules) are kept with the
/// token that made them, not only logged.
#[tokio::test]
async fn administrative_changes_are_audited_with_their_token() {
    let app = spawn_app().await;
    let admin = Some(app.admin.as_str());
    let analyst = Some(app.analyst.as_str());
    let r = app
        .send(
            Method::POST,
            "/api/v1/tokens",
            admin,
            Some(json!({"name": "temp-contractor", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .send(
            Method::DELETE,
            "/api/v1/tokens/temp-contractor",
            admin,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .send(
            Method::POST,
            "/api/v1/suppressions",
            analyst,
            Some(json!({"kind": "traffic_spike", "reason": "load test"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let rule = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/suppressions/{rule}"),
            analyst,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let r = app.get("/api/v1/audit?limit=10", admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    let entries: Vec<Value> = r.json().await.unwrap();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("token:analyst", "suppression_deleted", rule.as_str()),
            ("token:analyst", "suppression_created", rule.as_str()),
            ("token:admin", "token_revoked", "temp-contractor"),
            ("token:admin", "token_created", "temp-contractor"),
        ]
    );
    let r = app.get("/api/v1/audit", analyst).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.get("/api/v1/audit?limit=0", admin).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_and_router_agree() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/v1/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // Document -> router: every documented operation is routed (an
    // unrouted path answers `no_route`, an unrouted method 405).
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", &app.spike.to_string())
            .replace("{key}", "203.0.113.7")
            .replace("{name}", "nobody")
            .replace("{delivery_id}", &uuid::Uuid::nil().to_string());
        for (method, op) in ops.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.send(m.clone(), &concrete, Some(&app.admin), None).await;
            assert_ne!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_ne!(body["error"]["code"], "no_route", "{method} {path}");
            // Every operation documents its responses; secured ones 401.
            let responses = op["responses"].as_object().unwrap();
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{method} {path}");
            }
        }
    }
    // Router -> document: routes are only ever added through utoipa_axum's
    // `routes!` (which documents them); no plain axum `.route(` call exists.
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in [".route(", ".route_service(", ".nest_service("] {
                assert!(!text.contains(needle), "{} uses {needle}", path.display());
            }
        }
    }
    // And what is not routed is the JSON 404.
    let r = app.get("/api/v1/nope", Some(&app.admin)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route");
    let r = app
        .send(Method::DELETE, "/api/v1/stats", Some(&app.admin), None)
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    app.stop().await;
}

#[tokio::test]
async fn list_filters_sorts_and_pages() {
    let app = spawn_app().await;
    let t = Some(app.viewer.as_str());
    let clients = |v: &Value| -> Vec<String> {
        v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["client"].as_str().unwrap().to_owned())
            .collect()
    };
    let get = |q: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("/api/v1/incidents{q}"), t).await;
            assert_eq!(r.status(), StatusCode::OK, "{q}");
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        clients(&get("").await),
        ["192.0.2.44", "203.0.113.7", "198.51.100.66"]
    );
    assert_eq!(
        clients(&get("?order=oldest").await),
        ["198.51.100.66", "203.0.113.7", "192.0.2.44"]
    );
    assert_eq!(clients(&get("?kind=traffic_spike").await), ["203.0.113.7"]);
    assert_eq!(
        clients(&get("?min_severity=high").await),
        ["192.0.2.44", "198.51.100.66"]
    );
    assert_eq!(
        clients(&get("?status=open&client=192.0.2.44").await),
        ["192.0.2.44"]
    );
    assert_eq!(clients(&get("?cidr=203.0.113.0/24").await), ["203.0.113.7"]);
    assert_eq!(
        clients(&get("?cidr=198.51.100.66").await),
        ["198.51.100.66"]
    );
    assert_eq!(clients(&get("?q=ACCOUNTS").await), ["192.0.2.44"]);
    assert_eq!(
        clients(&get("?since=2026-11-20T10:25:00Z").await),
        ["192.0.2.44"]
    );
    assert_eq!(
        clients(&get("?until=2026-11-20T10:05:00Z").await),
        ["198.51.100.66"]
    );
    // Cursor paging visits everything once.
    let first = get("?limit=2").await;
    assert_eq!(clients(&first).len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let r = app
        .get(&format!("/api/v1/incidents?limit=2&cursor={cursor}"), t)
        .await;
    let second: Value = r.json().await.unwrap();
    assert_eq!(clients(&second), ["198.51.100.66"]);
    assert!(second["next_cursor"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn bad_parameters_name_the_field_in_one_error_shape() {
    let app = spawn_app().await;
    let t = Some(app.viewer.as_str());
    for (query, field) in [
        ("?severity=x", "severity"),
        ("?min_severity=urgent", "min_severity"),
        ("?status=closed", "status"),
        ("?limit=0", "limit"),
        ("?limit=abc", "limit"),
        ("?since=yesterday", "since"),
        ("?cidr=10.0.0.0/99", "cidr"),
        ("?cursor=nope", "cursor"),
        ("?order=random", "order"),
    ] {
        let r = app.get(&format!("/api/v1/incidents{query}"), t).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_parameter", "{query}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 3);
    }
    let r = app.get("/api/v1/incidents/not-a-uuid", t).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["field"], "id");
    let r = app
        .get(&format!("/api/v1/incidents/{}", uuid::Uuid::nil()), t)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let r = app.get("/api/v1/clients/10.0.0.1", t).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A NUL anywhere, in a query key or value or a body key or value, is a
    // 400 whose answer holds none (the document forbids NUL in every
    // string).
    for query in ["?x%00y=1", "?status=a%00", "?li%00mit=5"] {
        let r = app.get(&format!("/api/v1/incidents{query}"), t).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("\\u0000"), "{query}: {text}");
    }

    let a = Some(app.analyst.as_str());
    let comments = format!("/api/v1/incidents/{}/comments", app.spike);
    for body in [json!({"body": "a\u{0}b"}), json!({"bo\u{0}dy": "x"})] {
        let r = app.send(Method::POST, &comments, a, Some(body)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let text = r.text().await.unwrap();
        assert!(!text.contains("\\u0000"), "{text}");
    }
    // A body field of the wrong type names it; unknown fields are refused.
    let r = app
        .send(Method::POST, &comments, a, Some(json!({"body": 5})))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["field"], "body");
    let r = app.send(Method::POST, &comments, a, Some(json!({}))).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["field"], "body");
    let r = app
        .send(
            Method::POST,
            &comments,
            a,
            Some(json!({"body": "x", "extra": 1})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Not JSON: 415. Over 64 KiB: 413.
    let r = app
        .http
        .post(app.url(&comments))
        .bearer_auth(&app.analyst)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = json!({"body": "x".repeat(70 * 1024)});
    let r = app.send(Method::POST, &comments, a, Some(big)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    // Illegal transitions: 409.
    let ack = format!("/api/v1/incidents/{}/reopen", app.spike);
    let r = app.send(Method::POST, &ack, a, None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "conflict"
    );
    // A revoked token is refused at once.
    let r = app
        .send(
            Method::DELETE,
            "/api/v1/tokens/viewer",
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.get("/api/v1/incidents", t).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthenticated"
    );
    app.stop().await;
}

#[tokio::test]
async fn incident_detail_and_lifecycle_record_the_token() {
    let app = spawn_app().await;
    let a = Some(app.analyst.as_str());
    let id = app.spike;
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/incidents/{id}/ack"),
            a,
            Some(json!({"note": "on it"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "acknowledged");
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/incidents/{id}/comments"),
            a,
            Some(json!({"body": "<script>alert(1)</script> blocked at the WAF"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/incidents/{id}/resolve"),
            a,
            None,
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "resolved");
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/incidents/{id}/reopen"),
            a,
            None,
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "reopened");

    let d: Value = app
        .get(&format!("/api/v1/incidents/{id}"), Some(&app.viewer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["incident"]["status"], "reopened");
    let timeline = d["timeline"].as_array().unwrap();
    let actors: Vec<_> = timeline
        .iter()
        .map(|t| t["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors[0], "detector:test");
    assert_eq!(&actors[1..], ["token:analyst"; 3]);
    assert_eq!(d["comments"][0]["actor"], "token:analyst");
    assert_eq!(
        d["comments"][0]["body"],
        "<script>alert(1)</script> blocked at the WAF"
    );
    // The traffic series: per-minute points and the baseline per minute.
    let traffic = &d["traffic"];
    assert!(traffic["points"].as_array().unwrap().len() > 40);
    assert_eq!(traffic["baseline"]["mean_per_minute"], 12.0);
    assert_eq!(traffic["baseline"]["judged_against"], "own_baseline");

    // Samples come from the evidence, untouched.
    let d: Value = app
        .get(
            &format!("/api/v1/incidents/{}", app.probing),
            Some(&app.viewer),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["samples"]["paths"][0], XSS_PATH);
    let d: Value = app
        .get(
            &format!("/api/v1/incidents/{}", app.stuffing),
            Some(&app.viewer),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["samples"]["users"], json!(["alice", "bob<b>"]));
    assert_eq!(d["samples"]["sources"], json!(["192.0.2.44"]));

    // The client view.
    let c: Value = app
        .get("/api/v1/clients/203.0.113.7", Some(&app.viewer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c["incidents"].as_array().unwrap().len(), 1);
    assert!(
        c["traffic"]["baseline"]["stddev_per_minute"]
            .as_f64()
            .unwrap()
            > 3.0
    );

    // Statistics.
    let s: Value = app
        .get("/api/v1/stats", Some(&app.viewer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["total"], 3);
    let s: Value = app
        .get(
            "/api/v1/stats?since=2026-11-20T10:25:00Z",
            Some(&app.viewer),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["total"], 1);
    assert_eq!(
        s["by_severity"],
        json!([{"key": "critical", "incidents": 1}])
    );
    app.stop().await;
}

#[tokio::test]
async fn operations_endpoints_and_security_headers() {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let r: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(r["status"], "ready");
    assert_eq!(r["checks"].as_array().unwrap().len(), 2);

    let text = app.get("/metrics", None).await.text().await.unwrap();
    for line in [
        "gatewatch_events_received_total{source=\"file:access.log\"} 1000",
        "gatewatch_events_rejected_total{source=\"file:access.log\",reason=\"not_a_log_line\"} 10",
        "gatewatch_findings_total{kind=\"traffic_spike\"} 3",
        "gatewatch_notifications_total{channel=\"email\",outcome=\"dead\"} 1",
        "gatewatch_kafka_consumer_lag{topic=\"gateway-logs\",partition=\"0\"} 42",
        "gatewatch_detector_tracked_clients{shard=\"0\"} 17",
        "gatewatch_incidents_unresolved{kind=\"credential_stuffing\",severity=\"critical\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(text.contains("gatewatch_pipeline_lag_seconds "));
    assert!(text.contains(
        "gatewatch_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
    ));
    // No client address ever becomes a label.
    for ip in ["203.0.113.7", "192.0.2.44", "198.51.100.66"] {
        assert!(!text.contains(ip), "{ip} leaked into /metrics");
    }
    // The page and its assets, with the same headers.
    let r = app.get("/", None).await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("<script src=\"/app.js\""));
    assert!(!html.contains("<script>"), "no inline script");
    let js = app.get("/app.js", None).await.text().await.unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        let code: String = js
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!code.contains(sink), "app.js uses {sink}");
    }
    app.stop().await;
}

#[tokio::test]
async fn readiness_fails_when_a_probe_fails() {
    use api_app::api;
    let db = gatewatch_alerting::testing::TestDb::postgres().await;
    let state = api::AppState::new(db.store().await)
        .with_readiness("kafka", || async { Err("broker unreachable".to_string()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(api::serve(listener, state, None, stop.clone()));
    let r = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"][1]["error"], "broker unreachable");
    stop.cancel();
    server.await.unwrap().unwrap();
}
