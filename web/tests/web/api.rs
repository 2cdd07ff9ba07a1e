//! The log API: appends, reads, bad requests.

use axum::http::StatusCode;
use chipledger_domain::keys::SigningKey;

use crate::{call, note, world, As, H800_UUID};

#[test]
fn an_append_returns_receipts_and_the_entry_is_readable_byte_for_byte() {
    let w = world();
    let env = note(&w.auditor_key, 1);
    let mut body = b"[".to_vec();
    body.extend_from_slice(&env);
    body.push(b']');
    let a = call(&w, As::Nobody, "POST", "/api/v1/entries", body);
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let index = a.json()[0]["index"].as_u64().unwrap();
    let a = call(&w, As::Bearer(&w.auditor_token), "GET", &format!("/api/v1/entries/{index}"), vec![]);
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["envelope"].as_str().unwrap().as_bytes(), &env[..]);
    // The same envelope again: the original index, flagged duplicate.
    let a = call(&w, As::Nobody, "POST", "/api/v1/entries", env.clone());
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()[0]["duplicate"], true);
}

#[test]
fn read_endpoints_answer_an_enrolled_key() {
    let w = world();
    let size = w.ledger.size();
    let who = As::Signed(&w.agent);
    let a = call(&w, who, "GET", "/checkpoint", vec![]);
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.text().starts_with(&format!("web.example/log\n{size}\n")));
    let a = call(&w, who, "GET", "/tile/0/0.p/2", vec![]);
    assert_eq!((a.status, a.body.len()), (StatusCode::OK, 64));
    let a = call(&w, who, "GET", "/tile/entries/0.p/2", vec![]);
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.body.is_empty());
    let a = call(&w, who, "GET", "/api/v1/proof/inclusion?index=0&size=2", vec![]);
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["hashes"].as_array().unwrap().len(), 1);
    let a = call(&w, who, "GET", "/api/v1/proof/consistency?old=1&new=2", vec![]);
    assert_eq!(a.status, StatusCode::OK);
    let a = call(&w, who, "GET", "/api/v1/inventory", vec![]);
    assert_eq!((a.status, a.json().as_array().unwrap().len()), (StatusCode::OK, 2));
    let a = call(&w, who, "GET", "/api/v1/inventory?serial=1651323018291", vec![]);
    assert_eq!(a.status, StatusCode::OK);
    let a = call(&w, who, "GET", &format!("/api/v1/gpus/{H800_UUID}/history?latest=5"), vec![]);
    assert_eq!(a.status, StatusCode::OK);
    let a = call(&w, who, "GET", "/api/v1/acquisitions?serial=1651323018291", vec![]);
    assert_eq!(a.status, StatusCode::OK);
    let a = call(&w, who, "GET", "/api/v1/runs?limit=5", vec![]);
    assert_eq!((a.status, a.json().as_array().unwrap().len()), (StatusCode::OK, 0));
    assert_eq!(call(&w, As::Nobody, "GET", "/healthz", vec![]).status, StatusCode::OK);
    assert_eq!(call(&w, As::Nobody, "GET", "/readyz", vec![]).status, StatusCode::OK);
}

#[test]
fn bad_requests_get_the_right_status_and_change_nothing() {
    let w = world();
    let size = w.ledger.size();
    let stranger = SigningKey::from_seed(&[9; 32]);
    let t = As::Bearer(&w.auditor_token);
    type Case<'a> = (As<'a>, &'a str, &'a str, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (t, "POST", "/api/v1/entries", b"{not json".to_vec(), StatusCode::BAD_REQUEST, "not a JSON array"),
        (t, "POST", "/api/v1/entries", b"[]".to_vec(), StatusCode::BAD_REQUEST, "no envelopes"),
        (t, "POST", "/api/v1/entries", note(&stranger, 1), StatusCode::UNPROCESSABLE_ENTITY, "not enrolled"),
        (t, "POST", "/api/v1/entries", vec![b' '; 100_000], StatusCode::PAYLOAD_TOO_LARGE, ""),
        (As::Signed(&w.agent), "POST", "/api/v1/entries", vec![b' '; 100_000], StatusCode::PAYLOAD_TOO_LARGE, "limit"),
        (t, "GET", "/api/v1/nope", vec![], StatusCode::NOT_FOUND, "/api/v1/"),
        (t, "GET", "/api/v1/entries/999", vec![], StatusCode::NOT_FOUND, "999"),
        (t, "GET", "/tile/0/0.p/300", vec![], StatusCode::BAD_REQUEST, "1 ≤ W ≤ 255"),
        (t, "GET", "/api/v1/gpus/not-a-uuid/history", vec![], StatusCode::BAD_REQUEST, "GPU UUID"),
        (t, "GET", "/api/v1/inventory?time=yesterday", vec![], StatusCode::BAD_REQUEST, "RFC 3339"),
        (As::Nobody, "GET", "/api/v1/inventory", vec![], StatusCode::UNAUTHORIZED, "needs a credential"),
        (As::Bearer("clt_nope"), "GET", "/api/v1/inventory", vec![], StatusCode::UNAUTHORIZED, "Bearer clt_"),
    ];
    for (who, method, uri, body, status, part) in cases {
        let a = call(&w, who, method, uri, body);
        assert_eq!(a.status, status, "{method} {uri}: {}", a.text());
        assert!(a.text().contains(part), "{method} {uri}: {}", a.text());
    }
    // A batch with one bad envelope among good ones: all or nothing.
    let mut body = b"[".to_vec();
    body.extend_from_slice(&note(&w.auditor_key, 7));
    body.push(b',');
    body.extend_from_slice(&note(&stranger, 2));
    body.push(b']');
    let a = call(&w, As::Nobody, "POST", "/api/v1/entries", body);
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json()["position"], 1);
    assert_eq!(w.ledger.size(), size, "nothing was appended");
}
