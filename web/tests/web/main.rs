//! Route tests: each endpoint through `router().oneshot`, and the bad requests that must change
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Severity;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::FixedClock;
use chipledger_domain::records::{sign_record, Annotation, AnnotationTarget, KeyEnrollment, Role, FORMAT_VERSION};
use chipledger_ledger::Ledger;
use chipledger_web::{router, ServerConfig};
use http_body_util::BodyExt;
use time::macros::datetime;
use tower::ServiceExt;

const NOW: time::OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

struct World {
    _dir: tempfile::TempDir,
    ledger: Arc<Ledger>,
    auditor: SigningKey,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, info) =
        Ledger::init(dir.path(), "web.example/log", Arc::new(FixedClock(NOW)), &mut rand_core::OsRng).unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let auditor = SigningKey::from_seed(&[4; 32]);
    let e = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter: 2,
        issued_at: NOW,
        key_id: auditor.key_id(),
        verifier_key: VerifierKey::new("auditor", auditor.public_key()).unwrap().to_string(),
        role: Role::Auditor,
        host: None,
        valid_from: NOW - time::Duration::days(1),
        valid_until: None,
    };
    ledger.append(&[sign_record(&e, &admin).unwrap().to_json()]).unwrap();
    World { _dir: dir, ledger: Arc::new(ledger), auditor }
}

fn note(key: &SigningKey, counter: u64) -> Vec<u8> {
    let a = Annotation {
        format_version: FORMAT_VERSION,
        counter,
        written_at: NOW,
        target: AnnotationTarget::Gpu { uuid: GpuUuid::parse("GPU-34bf77d1-c686-6821-79a8-32d326c5039c").unwrap() },
        severity: Severity::Info,
        text: format!("note {counter}"),
    };
    sign_record(&a, key).unwrap().to_json()
}

/// Sends one request; returns status and body.
#[track_caller]
fn check(w: &World, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let config = ServerConfig { max_body_bytes: 64 * 1024, ..ServerConfig::default() };
    let app = router(w.ledger.clone(), config);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
    })
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn an_append_returns_receipts_and_the_entry_is_readable_byte_for_byte() {
    let w = world();
    let env = note(&w.auditor, 1);
    let mut body = b"[".to_vec();
    body.extend_from_slice(&env);
    body.push(b']');
    let (status, out) = check(&w, "POST", "/api/v1/entries", body);
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&out));
    let receipts = json(&out);
    let index = receipts[0]["index"].as_u64().unwrap();
    let (status, out) = check(&w, "GET", &format!("/api/v1/entries/{index}"), vec![]);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&out)["envelope"].as_str().unwrap().as_bytes(), &env[..]);
    // The same envelope again: the original index, flagged duplicate.
    let (status, out) = check(&w, "POST", "/api/v1/entries", env.clone());
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&out)[0]["duplicate"], true);
}

#[test]
fn read_endpoints_answer() {
    let w = world();
    let (s, cp) = check(&w, "GET", "/checkpoint", vec![]);
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8(cp).unwrap().starts_with("web.example/log\n2\n"));
    let (s, tile) = check(&w, "GET", "/tile/0/0.p/2", vec![]);
    assert_eq!((s, tile.len()), (StatusCode::OK, 64));
    let (s, bundle) = check(&w, "GET", "/tile/entries/0.p/2", vec![]);
    assert_eq!(s, StatusCode::OK);
    assert!(!bundle.is_empty());
    let (s, proof) = check(&w, "GET", "/api/v1/proof/inclusion?index=0&size=2", vec![]);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&proof)["hashes"].as_array().unwrap().len(), 1);
    let (s, _) = check(&w, "GET", "/api/v1/proof/consistency?old=1&new=2", vec![]);
    assert_eq!(s, StatusCode::OK);
    let (s, inv) = check(&w, "GET", "/api/v1/inventory", vec![]);
    assert_eq!((s, json(&inv).as_array().unwrap().len()), (StatusCode::OK, 0));
    let (s, inv) = check(&w, "GET", "/api/v1/inventory?serial=1651323018291", vec![]);
    assert_eq!((s, json(&inv).as_array().unwrap().len()), (StatusCode::OK, 0));
    let (s, _) = check(&w, "GET", "/api/v1/gpus/GPU-34bf77d1-c686-6821-79a8-32d326c5039c/history?latest=5", vec![]);
    assert_eq!(s, StatusCode::OK);
    let (s, _) = check(&w, "GET", "/api/v1/acquisitions?serial=1651323018291", vec![]);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(check(&w, "GET", "/healthz", vec![]).0, StatusCode::OK);
}

#[test]
fn bad_requests_get_the_right_status_and_change_nothing() {
    let w = world();
    let size = w.ledger.size();
    let stranger = SigningKey::from_seed(&[9; 32]);
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        ("POST", "/api/v1/entries", b"{not json".to_vec(), StatusCode::BAD_REQUEST, "not a JSON array"),
        ("POST", "/api/v1/entries", b"[]".to_vec(), StatusCode::BAD_REQUEST, "no envelopes"),
        ("POST", "/api/v1/entries", note(&stranger, 1), StatusCode::UNPROCESSABLE_ENTITY, "not enrolled"),
        ("POST", "/api/v1/entries", vec![b' '; 100_000], StatusCode::PAYLOAD_TOO_LARGE, ""),
        ("GET", "/api/v1/nope", vec![], StatusCode::NOT_FOUND, "/api/v1/"),
        ("GET", "/api/v1/entries/999", vec![], StatusCode::NOT_FOUND, "999"),
        ("GET", "/tile/0/0.p/300", vec![], StatusCode::BAD_REQUEST, "1 ≤ W ≤ 255"),
        ("GET", "/api/v1/gpus/not-a-uuid/history", vec![], StatusCode::BAD_REQUEST, "GPU UUID"),
        ("GET", "/api/v1/inventory?time=yesterday", vec![], StatusCode::BAD_REQUEST, "RFC 3339"),
    ];
    for (method, uri, body, status, part) in cases {
        let (s, out) = check(&w, method, uri, body);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(s, status, "{method} {uri}: {text}");
        assert!(text.contains(part), "{method} {uri}: {text}");
    }
    // A batch with one bad envelope among good ones: all or nothing.
    let mut body = b"[".to_vec();
    body.extend_from_slice(&note(&w.auditor, 7));
    body.push(b',');
    body.extend_from_slice(&note(&stranger, 2));
    body.push(b']');
    let (s, out) = check(&w, "POST", "/api/v1/entries", body);
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(&out)["position"], 1);
    assert_eq!(w.ledger.size(), size, "nothing was appended");
}
