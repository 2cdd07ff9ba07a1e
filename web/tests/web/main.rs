//! Route tests: every endpoint through `router().oneshot`, the auth matrix, the dashboard, and the
//! bad requests that must change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

mod api;
mod auth;
mod browser;
mod dash;
mod location;
mod tls;
mod trust;
mod witness;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use chipledger_agent::attest::{Attestor, AttestorConfig};
use chipledger_domain::auth::sign_request;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Severity;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::{Clock, FixedClock};
use chipledger_domain::records::{
    sign_record, Annotation, AnnotationTarget, HostFacts, KeyEnrollment, KeyRevocation, Role, FORMAT_VERSION,
};
use chipledger_ledger::{Ledger, LedgerConfig};
use chipledger_web::{router, ServerConfig};
use http_body_util::BodyExt;
use time::macros::datetime;
use tower::ServiceExt;

pub const NOW: time::OffsetDateTime = datetime!(2026-11-29 12:00 UTC);
pub const H800_UUID: &str = "GPU-34bf77d1-c686-6821-79a8-32d326c5039c";

#[allow(missing_debug_implementations)]
pub struct World {
    pub dir: tempfile::TempDir,
    pub ledger: Arc<Ledger>,
    pub admin: SigningKey,
    pub auditor_key: SigningKey,
    pub agent: SigningKey,
    pub revoked_agent: SigningKey,
    pub auditor_token: String,
    pub admin_token: String,
    pub revoked_token: String,
    pub counter: u64,
}

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../agent/tests/data/nvidia-smi/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

impl World {
    pub fn enroll(&mut self, key: &SigningKey, role: Role, host: Option<&str>) {
        self.counter += 1;
        let e = KeyEnrollment {
            format_version: FORMAT_VERSION,
            counter: self.counter,
            issued_at: NOW,
            key_id: key.key_id(),
            verifier_key: VerifierKey::new(host.unwrap_or("key"), key.public_key()).unwrap().to_string(),
            role,
            host: host.map(str::to_string),
            valid_from: NOW - time::Duration::days(1),
            valid_until: None,
            site: None,
        };
        self.ledger.append(&[sign_record(&e, &self.admin).unwrap().to_json()]).unwrap();
    }

    /// A real attestation: the agent's import probe over a shipped dump, through the Attestor.
    pub fn attest(&self, key: SigningKey, host: &str, files: &[(&str, String)]) {
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let report = chipledger_agent::smi::parse_dumps(&files).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(NOW));
        let log = Ledger::open(self.dir.path(), LedgerConfig::default(), clock.clone()).unwrap();
        let mut a = Attestor::new(AttestorConfig {
            key,
            log: Box::new(log),
            log_key: self.ledger.verifier_key().clone(),
            state_dir: self.dir.path().join("agents").join(host),
            clock,
            history_rules: Default::default(),
        })
        .unwrap();
        let att = a.build(&report, HostFacts { hostname: host.into(), ..HostFacts::default() }).unwrap();
        a.sign_and_spool(&att).unwrap();
        assert_eq!(a.flush().unwrap().accepted.len(), 1);
    }
}

/// A log with an admin, an auditor key, two agents (one revoked) that attested an A100 host and an
/// H800 host, and three people's tokens (auditor, admin, revoked auditor).
pub fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, info) =
        Ledger::init(dir.path(), "web.example/log", Arc::new(FixedClock(NOW)), &mut rand_core::OsRng).unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let (_, auditor_token) = ledger.create_token("alice (audit)", Role::Auditor, &mut rand_core::OsRng).unwrap();
    let (_, admin_token) = ledger.create_token("root", Role::Admin, &mut rand_core::OsRng).unwrap();
    let (revoked, revoked_token) = ledger.create_token("bob", Role::Auditor, &mut rand_core::OsRng).unwrap();
    ledger.revoke_token(&revoked.id).unwrap();
    let mut w = World {
        dir,
        ledger: Arc::new(ledger),
        admin,
        auditor_key: SigningKey::from_seed(&[4; 32]),
        agent: SigningKey::from_seed(&[5; 32]),
        revoked_agent: SigningKey::from_seed(&[6; 32]),
        auditor_token: auditor_token.reveal(),
        admin_token: admin_token.reveal(),
        revoked_token: revoked_token.reveal(),
        counter: 1,
    };
    let key = |seed: u8| SigningKey::from_seed(&[seed; 32]);
    w.enroll(&key(4), Role::Auditor, None);
    w.enroll(&key(5), Role::Agent, Some("dgx-a100-01"));
    w.enroll(&key(7), Role::Agent, Some("hgx-h800-01"));
    w.enroll(&key(6), Role::Agent, Some("old-host"));
    w.attest(key(5), "dgx-a100-01", &[("a100.xml", data("a100-sxm4-80gb-influxdata-telegraf.xml"))]);
    w.attest(key(7), "hgx-h800-01", &[("h800.txt", data("h800-sxm5-80gb-liguodongiot-llm-action.txt"))]);
    w.counter += 1;
    let r = KeyRevocation {
        format_version: FORMAT_VERSION,
        counter: w.counter,
        issued_at: NOW,
        key_id: key(6).key_id(),
        reason: "host decommissioned".into(),
    };
    w.ledger.append(&[sign_record(&r, &w.admin).unwrap().to_json()]).unwrap();
    w
}

pub fn note(key: &SigningKey, counter: u64) -> Vec<u8> {
    let a = Annotation {
        format_version: FORMAT_VERSION,
        counter,
        written_at: NOW,
        target: AnnotationTarget::Gpu { uuid: GpuUuid::parse(H800_UUID).unwrap() },
        severity: Severity::Info,
        text: format!("note {counter}"),
        resolves_serial: None,
        settles_history: false,
    };
    sign_record(&a, key).unwrap().to_json()
}

/// How a test request proves who it is.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub enum As<'a> {
    Nobody,
    Bearer(&'a str),
    Cookie(&'a str),
    Signed(&'a SigningKey),
}

#[allow(missing_debug_implementations)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Sends one request to a fresh router over the world's ledger.
#[track_caller]
pub fn send(w: &World, who: As, method: &str, uri: &str, content_type: &str, body: Vec<u8>) -> Answer {
    let config = ServerConfig { max_body_bytes: 64 * 1024, ..ServerConfig::default() };
    send_to(router(w.ledger.clone(), config), who, method, uri, content_type, body)
}

#[track_caller]
pub fn send_to(app: axum::Router, who: As, method: &str, uri: &str, content_type: &str, body: Vec<u8>) -> Answer {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut req = Request::builder().method(method).uri(uri).header("content-type", content_type);
        match who {
            As::Nobody => {}
            As::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
            As::Cookie(c) => req = req.header("cookie", c),
            As::Signed(k) => {
                req = req.header(
                    chipledger_domain::auth::SIGNATURE_HEADER,
                    sign_request(k, method, uri, NOW.unix_timestamp(), fresh_nonce(), &body),
                )
            }
        }
        let resp = app.oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        Answer { status, headers, body: resp.into_body().collect().await.unwrap().to_bytes().to_vec() }
    })
}

/// A nonce for a signed request, never the same twice.
pub fn fresh_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut n);
    n
}

/// GET or POST JSON as someone.
#[track_caller]
pub fn call(w: &World, who: As, method: &str, uri: &str, body: Vec<u8>) -> Answer {
    send(w, who, method, uri, "application/json", body)
}
