//! The auth matrix: anonymous, auditor, admin, enrolled agent, revoked agent, revoked token and
//! wrong role, against every kind of route.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chipledger_domain::auth::{sign_request, SIGNATURE_HEADER};
use chipledger_web::{router, ServerConfig};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::{call, note, send, world, As, NOW};

const OK: u16 = 200;
const SEE_OTHER: u16 = 303;
const UNAUTHORIZED: u16 = 401;
const FORBIDDEN: u16 = 403;

#[test]
fn each_principal_gets_exactly_what_its_role_allows() {
    let w = world();
    let (auditor, admin, revoked_token) = (w.auditor_token.clone(), w.admin_token.clone(), w.revoked_token.clone());
    let principals: [(&str, As); 6] = [
        ("anonymous", As::Nobody),
        ("auditor", As::Bearer(&auditor)),
        ("admin", As::Bearer(&admin)),
        ("agent", As::Signed(&w.agent)),
        ("revoked agent", As::Signed(&w.revoked_agent)),
        ("revoked token", As::Bearer(&revoked_token)),
    ];
    // route → expected status for each principal above, in order.
    let matrix: &[(&str, [u16; 6])] = &[
        ("/healthz", [OK, OK, OK, OK, UNAUTHORIZED, UNAUTHORIZED]),
        ("/readyz", [OK, OK, OK, OK, UNAUTHORIZED, UNAUTHORIZED]),
        // Sizes and hashes: public (a wrong credential is still refused, never read as none).
        ("/checkpoint", [OK, OK, OK, OK, UNAUTHORIZED, UNAUTHORIZED]),
        ("/tile/0/000.p/2", [OK, OK, OK, OK, UNAUTHORIZED, UNAUTHORIZED]),
        ("/api/v1/inventory", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/api/v1/inventory?serial=1651323018291", [UNAUTHORIZED, OK, OK, OK, UNAUTHORIZED, UNAUTHORIZED]),
        ("/api/v1/acquisitions?serial=1651323018291", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/api/v1/runs", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/api/v1/entries/0", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/tile/entries/0.p/2", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/api/v1/proof/inclusion?index=0&size=2", [UNAUTHORIZED, OK, OK, OK, UNAUTHORIZED, UNAUTHORIZED]),
        ("/", [SEE_OTHER, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/fleet.csv", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/fleet.json", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/runs", [SEE_OTHER, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/log", [SEE_OTHER, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/bundle", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/metrics", [UNAUTHORIZED, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
        ("/acquisitions/new", [SEE_OTHER, FORBIDDEN, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED]),
    ];
    for (route, expected) in matrix {
        for ((name, who), want) in principals.iter().zip(expected) {
            let a = call(&w, *who, "GET", route, vec![]);
            assert_eq!(a.status.as_u16(), *want, "GET {route} as {name}: {}", a.text());
        }
    }
}

#[test]
fn appends_are_authorised_by_the_envelope_signature_and_role() {
    let w = world();
    let size = w.ledger.size();
    // Anyone may deliver an envelope signed by an enrolled key whose role may sign it.
    let a = call(&w, As::Nobody, "POST", "/api/v1/entries", note(&w.auditor_key, 2));
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // Wrong role: an agent key may not sign annotations.
    let a = call(&w, As::Signed(&w.agent), "POST", "/api/v1/entries", note(&w.agent, 9));
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text());
    assert!(a.text().contains("may not sign"), "{}", a.text());
    // A revoked key: refused before the body is read as envelopes, and its envelopes too.
    let a = call(&w, As::Signed(&w.revoked_agent), "POST", "/api/v1/entries", note(&w.auditor_key, 3));
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert!(a.text().contains("not enrolled, or is revoked"), "{}", a.text());
    assert_eq!(w.ledger.size(), size + 1);
}

#[test]
fn admin_forms_need_an_admin_and_a_valid_csrf_token() {
    let w = world();
    let size = w.ledger.size();
    let form = "serials=1651323018291&sku=H800-SXM5-80GB&supplier=X&invoice_reference=INV-1&shipped_on=2023-09-01\
                &ship_from=US&ship_to=CN&end_user=Lab&licence=&note=";
    let form_type = "application/x-www-form-urlencoded";
    let a = send(&w, As::Bearer(&w.auditor_token), "POST", "/acquisitions", form_type, form.into());
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    let a = send(&w, As::Signed(&w.agent), "POST", "/acquisitions", form_type, form.into());
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert_eq!(w.ledger.size(), size, "refused forms append nothing");

    // A session: log in, then post without, with a wrong, and with the right CSRF token.
    let app = router(w.ledger.clone(), ServerConfig::default());
    let login = format!("token={}&next=%2Facquisitions%2Fnew", w.admin_token);
    let a = crate::send_to(app.clone(), As::Nobody, "POST", "/login", form_type, login.into_bytes());
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers["location"], "/acquisitions/new");
    let set = a.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let page = crate::send_to(app.clone(), As::Cookie(&cookie), "GET", "/acquisitions/new", "text/plain", vec![]);
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    for bad in ["", "csrf=0000&"] {
        let body = format!("{bad}{form}");
        let a = crate::send_to(app.clone(), As::Cookie(&cookie), "POST", "/acquisitions", form_type, body.into());
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
        assert!(a.text().contains("CSRF"), "{}", a.text());
    }
    assert_eq!(w.ledger.size(), size);
    let body = format!("csrf={csrf}&{form}");
    let a = crate::send_to(app.clone(), As::Cookie(&cookie), "POST", "/acquisitions", form_type, body.into());
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    assert_eq!(w.ledger.size(), size + 1);
    // A bad field re-renders the form with what is wrong, and appends nothing.
    let body = format!("csrf={csrf}&{}", form.replace("ship_to=CN", "ship_to=China"));
    let a = crate::send_to(app.clone(), As::Cookie(&cookie), "POST", "/acquisitions", form_type, body.into());
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.text().contains("Shipped to: &#34;China&#34; is not an ISO 3166-1 alpha-2 code"), "{}", a.text());
    assert_eq!(w.ledger.size(), size + 1);

    // Revoking the token ends the session on the next request.
    let id = w.admin_token.split('_').nth(1).unwrap();
    w.ledger.revoke_token(id).unwrap();
    let a = crate::send_to(app, As::Cookie(&cookie), "GET", "/", "text/plain", vec![]);
    assert_eq!(a.status, StatusCode::SEE_OTHER);
}

#[test]
fn a_bad_login_says_so_and_makes_no_session() {
    let w = world();
    let form_type = "application/x-www-form-urlencoded";
    for token in ["nonsense", &w.revoked_token, &w.auditor_token.replace(&w.auditor_token[20..30], "0000000000")] {
        let a = send(&w, As::Nobody, "POST", "/login", form_type, format!("token={token}&next=/").into_bytes());
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.headers.get("set-cookie").is_none());
        assert!(a.text().contains("id=\"login-error\""), "{}", a.text());
    }
}

/// After a login, `next` leads only to a path on this server: not `//host`, and not the forms
/// browsers turn into it by dropping a tab, CR or LF or reading a backslash as a slash.
#[test]
fn a_login_never_redirects_off_the_site() {
    let w = world();
    let form_type = "application/x-www-form-urlencoded";
    // (form-encoded `next`, where the login must send the browser)
    let cases = [
        ("//evil.example", "/"),
        ("/%09/evil.example", "/"),
        ("/%0D/evil.example", "/"),
        ("/%0A/evil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("/%5C%5Cevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("https://evil.example/", "/"),
        ("/%20/evil.example", "/"),
        ("/%E2%80%8B/evil.example", "/"),
        ("%2Fgpus%3Fq%3Dh800", "/gpus?q=h800"),
        ("/runs/%252F%252Fevil", "/runs/%2F%2Fevil"),
    ];
    for (next, want) in cases {
        let form = format!("token={}&next={next}", w.auditor_token);
        let a = send(&w, As::Nobody, "POST", "/login", form_type, form.into_bytes());
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(a.headers["location"], want, "next={next}");
    }
}

#[test]
fn signed_requests_are_bound_to_their_path_and_time() {
    let w = world();
    let app = router(w.ledger.clone(), ServerConfig::default());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cases = [
        ("/api/v1/inventory", "/api/v1/inventory?serial=1", NOW.unix_timestamp(), "does not verify"),
        ("/api/v1/inventory", "/api/v1/inventory", NOW.unix_timestamp() - 600, "5 minutes"),
    ];
    for (signed, sent, time, why) in cases {
        let header = sign_request(&w.agent, "GET", signed, time, crate::fresh_nonce(), b"");
        let req = Request::builder().uri(sent).header(SIGNATURE_HEADER, header).body(Body::empty()).unwrap();
        let (status, body) = rt.block_on(async {
            let r = app.clone().oneshot(req).await.unwrap();
            (r.status(), r.into_body().collect().await.unwrap().to_bytes())
        });
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
        assert!(text.contains(why), "{text}");
    }
}

#[test]
fn each_principal_is_rate_limited() {
    let w = world();
    let config = ServerConfig { rate_per_second: 0.001, rate_burst: 3.0, ..ServerConfig::default() };
    let app = router(w.ledger.clone(), config);
    for _ in 0..3 {
        let a = crate::send_to(app.clone(), As::Bearer(&w.auditor_token), "GET", "/checkpoint", "text/plain", vec![]);
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = crate::send_to(app.clone(), As::Bearer(&w.auditor_token), "GET", "/checkpoint", "text/plain", vec![]);
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.headers.contains_key("retry-after"));
    // Another principal has its own bucket.
    let a = crate::send_to(app, As::Bearer(&w.admin_token), "GET", "/checkpoint", "text/plain", vec![]);
    assert_eq!(a.status, StatusCode::OK);
}

#[test]
fn guessing_credentials_is_charged_to_the_guesser() {
    let w = world();
    // The guesser's address pays for every try, whatever credential it tries.
    let config = ServerConfig { peer_rate_per_second: 0.001, peer_rate_burst: 3.0, ..ServerConfig::default() };
    let app = router(w.ledger.clone(), config);
    let wrong = w.auditor_token.replace(&w.auditor_token[20..30], "0000000000");
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            crate::send_to(app.clone(), As::Bearer(&wrong), "GET", "/checkpoint", "text/plain", vec![]).status.as_u16()
        })
        .collect();
    assert_eq!(statuses, [UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, 429]);
    let form = format!("token={wrong}&next=/");
    let a = crate::send_to(app, As::Nobody, "POST", "/login", "application/x-www-form-urlencoded", form.into_bytes());
    assert_eq!(a.status.as_u16(), 429);
}

#[test]
fn request_logs_name_the_principal_and_never_a_secret() {
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // The process-wide subscriber (a scoped one misses events whose callsites other test
    // threads registered first); other tests' lines land here too, which only widens the check.
    static LOG: std::sync::OnceLock<Buffer> = std::sync::OnceLock::new();
    let buffer = LOG
        .get_or_init(|| {
            let buffer = Buffer::default();
            let sink = buffer.clone();
            let subscriber = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            buffer
        })
        .clone();
    let w = world();
    let wrong = w.auditor_token.replace(&w.auditor_token[20..30], "0000000000");
    call(&w, As::Bearer(&w.auditor_token), "GET", "/checkpoint", vec![]);
    call(&w, As::Bearer(&wrong), "GET", "/checkpoint", vec![]);
    let form = format!("token={}&next=/", w.admin_token);
    send(&w, As::Nobody, "POST", "/login", "application/x-www-form-urlencoded", form.into_bytes());
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let id = w.auditor_token.split('_').nth(1).unwrap();
    assert!(log.contains(&format!("principal=token:{id}:auditor")), "{log}");
    assert!(log.contains("status=401") && log.contains("principal=refused"), "{log}");
    for secret in [&w.auditor_token, &wrong, &w.admin_token] {
        assert!(!log.contains(secret.rsplit('_').next().unwrap()), "a secret reached the log:\n{log}");
    }
}

/// Over HTTPS (TLS here, or a proxy that terminates it: `serve --behind-tls-proxy`) session
/// cookies are `Secure` and every answer carries HSTS; over plain HTTP on loopback neither.
#[test]
fn behind_tls_sessions_are_secure_cookies_and_browsers_keep_to_https() {
    let w = world();
    let form_type = "application/x-www-form-urlencoded";
    let login = format!("token={}&next=/", w.auditor_token);
    for (secure, what) in [(true, "behind a TLS proxy"), (false, "plain loopback")] {
        let app = router(w.ledger.clone(), ServerConfig { secure_cookies: secure, ..ServerConfig::default() });
        let a = crate::send_to(app.clone(), As::Nobody, "POST", "/login", form_type, login.clone().into_bytes());
        let cookie = a.headers["set-cookie"].to_str().unwrap();
        assert_eq!(cookie.contains("; Secure"), secure, "{what}: {cookie}");
        let page = crate::send_to(app, As::Nobody, "GET", "/login", "text/plain", vec![]);
        let hsts = page.headers.get("strict-transport-security").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(hsts.is_some(), secure, "{what}: {hsts:?}");
    }
}

/// A peer pays before its credentials cost anything: once its address's bucket is empty, even a
/// valid token waits (429 with Retry-After), and bad signatures never reach a key lookup.
#[test]
fn a_flooding_peer_is_cut_off_before_its_credentials_are_checked() {
    let w = world();
    let config = ServerConfig { peer_rate_per_second: 0.01, peer_rate_burst: 3.0, ..ServerConfig::default() };
    let app = router(w.ledger.clone(), config);
    // Three forged signatures: 401, each paid from the peer's bucket.
    let forged = chipledger_domain::keys::SigningKey::from_seed(&[99; 32]);
    for _ in 0..3 {
        let a = crate::send_to(app.clone(), As::Signed(&forged), "GET", "/api/v1/inventory", "text/plain", vec![]);
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    }
    let a = crate::send_to(app.clone(), As::Bearer(&w.auditor_token), "GET", "/api/v1/inventory", "text/plain", vec![]);
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text());
    assert!(a.headers.contains_key("retry-after"));
}

/// A signed request's body is read only once its key is known to the log: a made-up key id
/// with a body past the limit is refused as unknown (401), never read (once: 413 after reading).
#[test]
fn a_signed_request_by_an_unknown_key_is_refused_before_its_body_is_read() {
    let w = world();
    let stranger = chipledger_domain::keys::SigningKey::from_seed(&[98; 32]);
    let big = vec![b'x'; 70 * 1024];
    let a = send(&w, As::Signed(&stranger), "POST", "/api/v1/entries", "application/json", big);
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert!(a.text().contains("not enrolled"), "{}", a.text());
}

/// A signed request is served once: the same header again (a replay by whoever saw it) is
/// refused, while a new request alike but for its nonce is served; a v1 header (no nonce, from
/// an earlier client) is served once too.
#[test]
fn a_signed_request_is_served_once() {
    use chipledger_domain::auth::sign_request_v1;
    let w = world();
    let app = router(w.ledger.clone(), ServerConfig::default());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let send = |header: &str| {
        let req =
            Request::builder().uri("/api/v1/inventory").header(SIGNATURE_HEADER, header).body(Body::empty()).unwrap();
        rt.block_on(async {
            let r = app.clone().oneshot(req).await.unwrap();
            (r.status(), String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).into_owned())
        })
    };
    let now = NOW.unix_timestamp();
    let first = sign_request(&w.auditor_key, "GET", "/api/v1/inventory", now, crate::fresh_nonce(), b"");
    assert_eq!(send(&first).0, StatusCode::OK);
    let (status, text) = send(&first);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("already served"), "{text}");
    let again = sign_request(&w.auditor_key, "GET", "/api/v1/inventory", now, crate::fresh_nonce(), b"");
    assert_eq!(send(&again).0, StatusCode::OK);
    let v1 = sign_request_v1(&w.auditor_key, "GET", "/api/v1/inventory", now, b"");
    assert_eq!(send(&v1).0, StatusCode::OK);
    assert_eq!(send(&v1).0, StatusCode::UNAUTHORIZED);
}
