//! HTTPS: the server with a certificate and key, a client that trusts only the test CA.

use std::path::Path;
use std::time::Duration;

use chipledger_client::{Credential, HttpLogClient};
use chipledger_domain::log::{AsOf, LogClient};
use chipledger_web::{ServerConfig, TlsFiles};

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

/// Slow and silent clients hold nothing for long: a connection that sends no byte, or headers
/// that never end, is closed after its timeout; past the connection limit a new connection is
/// closed at once; once they are gone the server answers again. Plain HTTP and TLS alike.
/// Starts `serve` on a free loopback port with `config`; returns its address.
fn start(w: &crate::World, config: ServerConfig) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let ledger = w.ledger.clone();
    std::thread::spawn(move || chipledger_web::serve(ledger, "127.0.0.1:0", config, |a| tx.send(a).unwrap()));
    rx.recv_timeout(Duration::from_secs(20)).unwrap()
}

/// How long until the server at `addr` closes a connection that sent `first` (reads wait at
/// most `patience`).
fn lifetime(addr: std::net::SocketAddr, first: &[u8], patience: Duration) -> Duration {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(patience)).unwrap();
    c.write_all(first).unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn slow_and_silent_clients_are_cut_off_and_connections_are_capped() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let w = world();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    for tls in [None, Some(TlsFiles { cert: data.join("cert.pem"), key: data.join("key.pem") })] {
        let config = ServerConfig {
            tls: tls.clone(),
            max_connections: 3,
            first_byte_timeout: Duration::from_millis(1500),
            header_timeout: Duration::from_millis(1500),
            ..ServerConfig::default()
        };
        let addr = start(&w, config);
        let what = if tls.is_some() { "TLS" } else { "plain" };
        let closed_after = |first: &[u8]| lifetime(addr, first, Duration::from_secs(10));
        let silent = closed_after(b"");
        assert!(silent < Duration::from_secs(5), "{what}: a silent connection lasted {silent:?}");
        if tls.is_none() {
            let slow = closed_after(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
            assert!(slow < Duration::from_secs(5), "{what}: unfinished headers lasted {slow:?}");
            // One byte of an HTTP/2 preface, or all of it: protocol detection holds nothing either.
            let p = closed_after(b"P");
            assert!(p < Duration::from_secs(5), "{what}: a lone preface byte lasted {p:?}");
            let preface = closed_after(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            assert!(preface < Duration::from_secs(5), "{what}: an HTTP/2 preface lasted {preface:?}");
        }
        // The cap, on a server of its own with long timeouts, so that only the cap can close a
        // connection quickly: three silent connections fill it, and a fourth is closed at once.
        // A busy machine may take the three in late: the fourth is tried again a few times.
        let capped = ServerConfig {
            tls: tls.clone(),
            max_connections: 3,
            first_byte_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            ..ServerConfig::default()
        };
        let addr = start(&w, capped);
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let closed_at_once = (0..5).any(|_| {
            std::thread::sleep(Duration::from_millis(300));
            lifetime(addr, b"", Duration::from_secs(5)) < Duration::from_secs(2)
        });
        assert!(closed_at_once, "{what}: past the limit, a connection stayed open");
        // Once they are gone, the server answers again.
        drop(held);
        if tls.is_none() {
            let answered = (0..20).any(|_| {
                std::thread::sleep(Duration::from_millis(200));
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = c.read_to_string(&mut answer);
                answer.starts_with("HTTP/1.1 200")
            });
            assert!(answered, "{what}: the server did not answer once the held connections were gone");
        }
    }
}
