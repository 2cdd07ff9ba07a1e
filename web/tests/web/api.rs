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

/// What each kind of key reads: an auditor key everything; an agent key checkpoints, tiles,
/// proofs, its own host's attestations of a GPU and which GPUs report a serial; a node key what
/// placement reads (the inventory, attestation and acquisition entries, acquisitions by serial).
#[test]
fn each_key_role_reads_only_what_it_needs() {
    let mut w = world();
    let node = SigningKey::from_seed(&[40; 32]);
    w.enroll(&node, chipledger_domain::records::Role::Node, Some("node-01"));
    let size = w.ledger.size();
    let h800_att = w
        .ledger
        .gpu_latest_index(&chipledger_domain::fingerprint::GpuUuid::parse(H800_UUID).unwrap())
        .unwrap()
        .unwrap();
    // The world's agent (seed 5, dgx-a100-01) and auditor key (seed 4).
    let (agent, auditor) = (SigningKey::from_seed(&[5; 32]), SigningKey::from_seed(&[4; 32]));
    const A100_UUID: &str = "GPU-513536b6-7d19-9063-b049-1e69664bb298";
    let status = |who: As, uri: &str| call(&w, who, "GET", uri, vec![]).status.as_u16();
    // Every key: checkpoints, hash tiles, proofs.
    for who in [As::Signed(&agent), As::Signed(&node), As::Signed(&auditor)] {
        let a = call(&w, who, "GET", "/checkpoint", vec![]);
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert!(a.text().starts_with(&format!("web.example/log\n{size}\n")));
        let a = call(&w, who, "GET", "/tile/0/0.p/2", vec![]);
        assert_eq!((a.status, a.body.len()), (StatusCode::OK, 64));
        assert_eq!(status(who, "/api/v1/proof/inclusion?index=0&size=2"), 200);
        assert_eq!(status(who, "/api/v1/proof/consistency?old=1&new=2"), 200);
    }
    // route → [agent, node, auditor key]
    let matrix: &[(String, [u16; 3])] = &[
        ("/tile/entries/0.p/2".into(), [403, 403, 200]),
        ("/api/v1/inventory".into(), [403, 200, 200]),
        ("/api/v1/inventory?serial=1651323018291".into(), [200, 200, 200]),
        ("/api/v1/acquisitions?serial=1651323018291".into(), [403, 200, 200]),
        (format!("/api/v1/entries/{h800_att}"), [403, 200, 200]),
        ("/api/v1/entries/0".into(), [403, 403, 200]),
        (format!("/api/v1/gpus/{H800_UUID}/history?latest=5"), [200, 200, 200]),
        ("/api/v1/runs?limit=5".into(), [403, 403, 200]),
    ];
    for (route, want) in matrix {
        for (who, name, want) in [
            (As::Signed(&agent), "agent", want[0]),
            (As::Signed(&node), "node", want[1]),
            (As::Signed(&auditor), "auditor key", want[2]),
        ] {
            let a = call(&w, who, "GET", route, vec![]);
            assert_eq!(a.status.as_u16(), want, "GET {route} as {name}: {}", a.text());
            if want == 403 {
                assert!(a.text().contains("do not read"), "a refusal says what the key may read: {}", a.text());
            }
        }
    }
    // A GPU's history: an agent reads its attestations (every host's, to see a GPU on two hosts
    // or moved), a node those and the admin's serial resolutions; neither its notes or runs.
    let note = crate::note(&auditor, 77);
    w.ledger.append(&[note]).unwrap();
    let kinds = |who: As| -> Vec<String> {
        let v = call(&w, who, "GET", &format!("/api/v1/gpus/{H800_UUID}/history"), vec![]).json();
        v.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(kinds(As::Signed(&agent)), ["gpu-attestation"]);
    assert_eq!(kinds(As::Signed(&node)), ["gpu-attestation"]);
    assert_eq!(kinds(As::Signed(&auditor)), ["gpu-attestation", "annotation"]);
    let own = call(&w, As::Signed(&agent), "GET", &format!("/api/v1/gpus/{A100_UUID}/history"), vec![]).json();
    assert_eq!(own.as_array().unwrap().len(), 1, "{own}");
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

/// Nothing that needs a credential may be kept by a shared cache and handed to the next caller:
/// entry bundles (acquisition records, invoices) are `private`, everything else read with a
/// credential `no-store` unless it says `private`; the checkpoint and hash tiles are public.
#[test]
fn credentialed_answers_are_never_cacheable_by_a_shared_cache() {
    let w = world();
    // A full tile of entries: 256 of them.
    let size = w.ledger.size();
    let notes: Vec<Vec<u8>> = (0..256 - size.min(256)).map(|i| note(&w.auditor_key, 100 + i)).collect();
    w.ledger.append(&notes).unwrap();
    let token = w.auditor_token.clone();
    let uris = [
        "/tile/entries/000",
        "/api/v1/inventory",
        "/api/v1/entries/1",
        "/api/v1/acquisitions?serial=1651323018291",
        "/fleet.json",
        "/fleet.csv",
        "/",
        "/log",
    ];
    for uri in uris {
        let a = call(&w, As::Bearer(&token), "GET", uri, vec![]);
        assert!(a.status.is_success(), "{uri}: {} {}", a.status, a.text());
        let cache = a.headers.get("cache-control").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(
            !cache.contains("public") && (cache.contains("private") || cache.contains("no-store")),
            "{uri}: cache-control {cache:?}"
        );
    }
    // What is public — the checkpoint, hash tiles — any cache may keep: full tiles for good, the
    // checkpoint and partial tiles only while still current.
    for (uri, want) in [
        ("/checkpoint", "public, no-cache"),
        ("/tile/0/000", "public, max-age=31536000, immutable"),
        ("/tile/0/000.p/2", "public, no-cache"),
    ] {
        let a = call(&w, As::Nobody, "GET", uri, vec![]);
        assert!(a.status.is_success(), "{uri}: {} {}", a.status, a.text());
        assert_eq!(a.headers.get("cache-control").unwrap(), want, "{uri}");
    }
}

/// A tile beyond the tree — a level past 7 (which once read level 0's hashes), an index past
/// 2^48 — is not there; never another tile's hashes, never a 500.
#[test]
fn tiles_beyond_the_tree_are_not_found() {
    let w = world();
    let token = w.auditor_token.clone();
    let size = w.ledger.size();
    let level0 = call(&w, As::Bearer(&token), "GET", &format!("/tile/0/000.p/{size}"), vec![]);
    assert_eq!(level0.status, StatusCode::OK);
    for uri in [
        format!("/tile/32/000.p/{size}"),
        format!("/tile/8/000.p/{size}"),
        "/tile/1/000.p/1".to_string(),
        format!("/tile/0/000.p/{}", size + 1),
        format!("/tile/0/{}", 1u64 << 48),
        format!("/tile/0/{}.p/1", u64::MAX / 256),
        format!("/tile/0/{}.p/1", u64::MAX),
        format!("/tile/255/{}.p/255", u64::MAX),
    ] {
        let a = call(&w, As::Bearer(&token), "GET", &uri, vec![]);
        assert!(a.status == StatusCode::NOT_FOUND || a.status == StatusCode::BAD_REQUEST, "{uri}: {}", a.status);
    }
}

/// An entry must fit a C2SP entry bundle (a 2-byte length): a larger envelope is 413 and
/// writes nothing, one that fits is served in its bundle; `?latest=` past the bound is 400.
#[test]
fn entries_fit_their_bundle_and_history_reads_are_bounded() {
    use chipledger_domain::records::{sign_record, Annotation, AnnotationTarget, FORMAT_VERSION};
    let w = world();
    let big = |counter: u64, text_len: usize| {
        let a = Annotation {
            format_version: FORMAT_VERSION,
            counter,
            written_at: crate::NOW,
            target: AnnotationTarget::Gpu { uuid: chipledger_domain::fingerprint::GpuUuid::parse(H800_UUID).unwrap() },
            severity: chipledger_domain::identify::Severity::Info,
            text: "x".repeat(text_len),
            resolves_serial: None,
            settles_history: false,
        };
        sign_record(&a, &w.auditor_key).unwrap().to_json()
    };
    let app = chipledger_web::router(
        w.ledger.clone(),
        chipledger_web::ServerConfig { max_body_bytes: 1 << 20, ..chipledger_web::ServerConfig::default() },
    );
    let (too_big, fits) = (big(50, 60_000), big(51, 40_000));
    assert!(too_big.len() > 65_535 && fits.len() <= 65_535, "{} {}", too_big.len(), fits.len());
    let size = w.ledger.size();
    let a = crate::send_to(app.clone(), As::Nobody, "POST", "/api/v1/entries", "application/json", too_big);
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    assert_eq!(w.ledger.size(), size, "nothing written");
    let a = crate::send_to(app.clone(), As::Nobody, "POST", "/api/v1/entries", "application/json", fits);
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let token = w.auditor_token.clone();
    let bundle = call(&w, As::Bearer(&token), "GET", &format!("/tile/entries/000.p/{}", size + 1), vec![]);
    assert_eq!(bundle.status, StatusCode::OK, "{}", bundle.text());
    for latest in ["0", "1001", "18446744073709551615"] {
        let uri = format!("/api/v1/gpus/{H800_UUID}/history?latest={latest}");
        let a = call(&w, As::Bearer(&token), "GET", &uri, vec![]);
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "latest={latest}: {}", a.text());
    }
    let a = call(&w, As::Bearer(&token), "GET", &format!("/api/v1/gpus/{H800_UUID}/history?latest=1000"), vec![]);
    assert_eq!(a.status, StatusCode::OK);
}

/// A caller that proves no identity learns which envelope was refused and the kind of problem,
/// never what the log knows of a key (its enrolment, host or last counter); a signed request by
/// an enrolled key gets the whole reason.
#[test]
fn anonymous_appends_learn_nothing_of_the_key_registry() {
    let w = world();
    let stranger = SigningKey::from_seed(&[77; 32]);
    let unknown = note(&stranger, 1);
    let a = call(&w, As::Nobody, "POST", "/api/v1/entries", unknown.clone());
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let text = a.text();
    assert!(text.contains("envelope 0 was refused: its signer may not append it"), "{text}");
    assert!(!text.contains(stranger.key_id().as_str()) && !text.contains("enrolled in"), "{text}");
    // A replayed counter of an enrolled key: the same generic reason (authorisation runs before
    // the signature check, so telling it apart would say the key is enrolled), never the counter.
    call(&w, As::Nobody, "POST", "/api/v1/entries", note(&w.auditor_key, 50));
    let a = call(&w, As::Nobody, "POST", "/api/v1/entries", note(&w.auditor_key, 49));
    assert!(a.text().contains("its signer may not append it") && !a.text().contains("50"), "{}", a.text());
    // Signed by an enrolled key: the details.
    let a = call(&w, As::Signed(&w.auditor_key), "POST", "/api/v1/entries", unknown);
    assert!(a.text().contains("not enrolled in this log"), "{}", a.text());
}

/// Appends need no credential, and a credential vouches for none of the envelopes: every caller
/// pays for the envelope bytes it makes the server parse — an address that proves nothing by
/// address, a key or a token (a read-only auditor's too) by its own bucket.
#[test]
fn appends_are_capped_in_bytes_per_caller() {
    let w = world();
    let config = chipledger_web::ServerConfig {
        max_body_bytes: 2048,
        append_bytes_per_second: 1.0,
        append_bytes_burst: 0.0,
        ..chipledger_web::ServerConfig::default()
    };
    let app = chipledger_web::router(w.ledger.clone(), config);
    let post =
        |who: As, env: Vec<u8>| crate::send_to(app.clone(), who, "POST", "/api/v1/entries", "application/json", env);
    let one = note(&w.auditor_key, 60);
    assert!(one.len() > 700 && one.len() < 1024, "{}", one.len());
    assert_eq!(post(As::Nobody, one.clone()).status, StatusCode::OK);
    assert_eq!(post(As::Nobody, note(&w.auditor_key, 61)).status, StatusCode::OK);
    let third = post(As::Nobody, note(&w.auditor_key, 62));
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{}", third.text());
    assert!(third.headers.contains_key("retry-after"));
    // A key and a token each have a bucket of their own, and it runs dry the same way.
    let signed = |c| post(As::Signed(&w.auditor_key), note(&w.auditor_key, c));
    assert_eq!(signed(63).status, StatusCode::OK);
    assert_eq!(signed(64).status, StatusCode::OK);
    assert_eq!(signed(65).status, StatusCode::TOO_MANY_REQUESTS);
    let token = w.auditor_token.clone();
    let by_token = |c| post(As::Bearer(&token), note(&w.auditor_key, c));
    assert_eq!(by_token(66).status, StatusCode::OK);
    assert_eq!(by_token(67).status, StatusCode::OK);
    let third = by_token(68);
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{}", third.text());
}

/// A whole history is never cut and never one unbounded answer: it comes in pages of at most
/// 1,000 entries, each but the last naming the next (`Link: <…?after=N>; rel="next"`), and the
/// HTTP client follows them to the end.
#[test]
fn a_whole_history_comes_in_pages_that_the_client_follows() {
    use chipledger_domain::fingerprint::GpuUuid;
    use chipledger_domain::log::LogClient;
    let w = world();
    let notes: Vec<Vec<u8>> = (1..=2_100).map(|c| note(&w.auditor_key, c)).collect();
    w.ledger.append(&notes).unwrap();
    let uuid = GpuUuid::parse(H800_UUID).unwrap();
    let whole = LogClient::history(w.ledger.as_ref(), &uuid, None).unwrap();
    assert!(whole.len() > 2_100);
    let token = w.auditor_token.clone();
    let mut uri = format!("/api/v1/gpus/{H800_UUID}/history");
    let mut pages: Vec<Vec<u64>> = Vec::new();
    loop {
        let a = call(&w, As::Bearer(&token), "GET", &uri, vec![]);
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let page: Vec<u64> = a.json().as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
        assert!(page.len() <= 1_000);
        let last = *page.last().unwrap();
        pages.push(page);
        match a.headers.get("link") {
            None => break,
            Some(link) => {
                assert_eq!(
                    link.to_str().unwrap(),
                    format!("</api/v1/gpus/{H800_UUID}/history?after={last}>; rel=\"next\"")
                );
                uri = format!("/api/v1/gpus/{H800_UUID}/history?after={last}");
            }
        }
    }
    assert_eq!(pages.len(), whole.len().div_ceil(1_000));
    let indexes: Vec<u64> = pages.concat();
    assert_eq!(indexes, whole.iter().map(|e| e.index).collect::<Vec<_>>());
    let both = format!("/api/v1/gpus/{H800_UUID}/history?latest=5&after=3");
    assert_eq!(call(&w, As::Bearer(&token), "GET", &both, vec![]).status, StatusCode::BAD_REQUEST);

    // The client, over a real socket, reads all of it.
    let (tx, rx) = std::sync::mpsc::channel();
    let ledger = w.ledger.clone();
    let config = chipledger_web::ServerConfig::default();
    std::thread::spawn(move || chipledger_web::serve(ledger, "127.0.0.1:0", config, |a| tx.send(a).unwrap()));
    let addr = rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
    let client = chipledger_client::HttpLogClient::new(&format!("http://{addr}"))
        .with_credential(chipledger_client::Credential::Token(token));
    let read = client.history(&uuid, None).unwrap();
    assert_eq!(read.iter().map(|e| e.index).collect::<Vec<_>>(), whole.iter().map(|e| e.index).collect::<Vec<_>>());
    assert_eq!(client.history(&uuid, Some(3)).unwrap().len(), 3);
}

/// What a key may not read of a GPU's history (here: notes about it) cannot push what it may
/// read out of its window: an agent asking for the latest attestations gets them however many
/// other entries follow, and its pages' cursors point only at entries it may read.
#[test]
fn entries_a_key_may_not_read_do_not_crowd_out_those_it_may() {
    let w = world();
    let notes: Vec<Vec<u8>> = (1..=40).map(|c| note(&w.auditor_key, c)).collect();
    w.ledger.append(&notes).unwrap();
    let agent = SigningKey::from_seed(&[5; 32]);
    let a = call(&w, As::Signed(&agent), "GET", &format!("/api/v1/gpus/{H800_UUID}/history?latest=1"), vec![]);
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["kind"], "gpu-attestation", "{v}");
    let a = call(&w, As::Signed(&agent), "GET", &format!("/api/v1/gpus/{H800_UUID}/history"), vec![]);
    assert!(a.headers.get("link").is_none());
    assert!(a.json().as_array().unwrap().iter().all(|e| e["kind"] == "gpu-attestation"));
}
