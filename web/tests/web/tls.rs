//! HTTPS: the server with a certificate and key, a client that trusts only the test CA.

use std::path::Path;
use std::time::Duration;

use chipledger_domain::log::{AsOf, LogClient};
use chipledger_web::{Credential, HttpLogClient, ServerConfig, TlsFiles};

use crate::world;

#[test]
fn the_server_speaks_tls_and_the_client_checks_its_certificate() {
    let w = world();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let config = ServerConfig {
        tls: Some(TlsFiles { cert: data.join("cert.pem"), key: data.join("key.pem") }),
        ..ServerConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let ledger = w.ledger.clone();
    std::thread::spawn(move || chipledger_web::serve(ledger, "127.0.0.1:0", config, |a| tx.send(a).unwrap()));
    let addr = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let ca = std::fs::read(data.join("ca.pem")).unwrap();

    let client = HttpLogClient::new(&format!("https://127.0.0.1:{}", addr.port()))
        .with_ca_certs(&ca)
        .unwrap()
        .with_credential(Credential::Token(w.auditor_token.clone()));
    assert_eq!(client.inventory(AsOf::Latest).unwrap().len(), 2);
    assert!(client.checkpoint().unwrap().starts_with("web.example/log\n"));

    // Without the private CA the certificate is not trusted; plain HTTP is not spoken.
    let untrusting = HttpLogClient::new(&format!("https://127.0.0.1:{}", addr.port()))
        .with_credential(Credential::Token(w.auditor_token.clone()));
    assert!(untrusting.inventory(AsOf::Latest).is_err());
    let plain = HttpLogClient::new(&format!("http://127.0.0.1:{}", addr.port()))
        .with_credential(Credential::Token(w.auditor_token.clone()));
    assert!(plain.inventory(AsOf::Latest).is_err());
}

#[test]
fn a_missing_certificate_is_named() {
    let w = world();
    let config = ServerConfig {
        tls: Some(TlsFiles { cert: "/nonexistent/cert.pem".into(), key: "/nonexistent/key.pem".into() }),
        ..ServerConfig::default()
    };
    let e = chipledger_web::serve(w.ledger.clone(), "127.0.0.1:0", config, |_| {}).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/cert.pem"), "{e}");
}
