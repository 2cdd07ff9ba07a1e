//! `serve`: the listener (connection cap, first-byte and header timeouts, HTTP/1), TLS, the
//! WAL-folding and audit threads, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use chipledger_ledger::Ledger;

use crate::config::ServerConfig;
use crate::router::router_with;
use crate::state::AppState;

/// Serves `ledger` on `addr` until SIGINT or SIGTERM, finishing requests in flight. Blocking:
/// it owns its tokio runtime. `on_ready` gets the bound address (e.g. port 0 → the real port).
pub fn serve(
    ledger: Arc<Ledger>,
    addr: &str,
    config: ServerConfig,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), crate::error::Error> {
    let listen_err = |source| crate::error::Error::Listen { addr: addr.to_string(), source };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(listen_err)?;
    let tls = config.tls.clone();
    let limits = config.clone();
    let config = ServerConfig { secure_cookies: config.secure_cookies || tls.is_some(), ..config };
    // Commits never stall on folding the WAL: a thread of its own does it (started once the
    // listener is bound). Set here, off the async executor: it takes the writer's lock.
    ledger.defer_wal_folding().map_err(|e| crate::error::Error::Ledger(e.to_string()))?;
    runtime.block_on(async move {
        // The certificate first: a bad one stops the server before it claims to be ready.
        let rustls = match &tls {
            None => None,
            Some(files) => {
                Some(axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key).await.map_err(
                    |source| crate::error::Error::Tls { cert: files.cert.clone(), key: files.key.clone(), source },
                )?)
            }
        };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen_err)?;
        let bound = listener.local_addr().map_err(listen_err)?;
        tracing::info!(%bound, tls = tls.is_some(), "serving the ledger");
        let folding = ledger.clone();
        std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || loop {
                if let Err(e) = folding.fold_wal() {
                    tracing::warn!(error = %e, "folding the write-ahead log");
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            })
            .map_err(listen_err)?;
        let state = AppState::new(ledger, config);
        // The audit runs on its own thread: at start, then every `audit_every`.
        let audit_state = state.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                // The first fleet page should not pay for reading the whole fleet.
                if let Err(e) = audit_state.fleet.get(&audit_state.ledger) {
                    tracing::warn!(status = %e.status(), "could not read the fleet at start");
                }
                loop {
                    audit_state.audit.run(&audit_state.ledger);
                    std::thread::sleep(audit_state.config.audit_every);
                }
            })
            .map_err(listen_err)?;
        if !state.config.witnesses.is_empty() {
            let (ledger, targets, progress, every) = (
                state.ledger.clone(),
                state.config.witnesses.clone(),
                state.witnessing.clone(),
                state.config.witness_every,
            );
            std::thread::Builder::new()
                .name("witnessing".into())
                .spawn(move || crate::witnessing::run(ledger, targets, progress, every))
                .map_err(listen_err)?;
        }
        let app = router_with(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        on_ready(bound);
        edge(listener, app, &limits, rustls).await.map_err(listen_err)
    })
}

/// Serves a router built by `app` (plain HTTP, behind [`edge`]) on `addr` until SIGINT or
/// SIGTERM: its own runtime, blocking; `on_ready` gets the bound address. For the witness and
/// the mirror, which need none of `serve`'s threads.
pub(crate) fn serve_plain(
    addr: &str,
    config: ServerConfig,
    app: axum::Router,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), crate::error::Error> {
    let listen_err = |source| crate::error::Error::Listen { addr: addr.to_string(), source };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(listen_err)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen_err)?;
        let bound = listener.local_addr().map_err(listen_err)?;
        on_ready(bound);
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        edge(listener, app, &config, None).await.map_err(listen_err)
    })
}

/// Serves `app` on `listener` behind the connection edge every chipledger listener has — a
/// connection cap, a first-byte timeout, HTTP/1 with header-read and first-request timeouts,
/// TLS when given — until SIGINT or SIGTERM, finishing requests in flight.
pub(crate) async fn edge(
    listener: tokio::net::TcpListener,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<axum::Router, std::net::SocketAddr>,
    limits: &ServerConfig,
    rustls: Option<axum_server::tls_rustls::RustlsConfig>,
) -> std::io::Result<()> {
    let edge = crate::listen::Capped::new(limits.max_connections, limits.first_byte_timeout);
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.graceful_shutdown(Some(Duration::from_secs(30)));
    });
    let mut server = axum_server::from_tcp(listener.into_std()?)?
        .handle(handle)
        // HTTP/1 only (every client here speaks it; an HTTP/2 connection would have no idle
        // timeout), and a whole first request in time: protocol detection and a TLS session
        // gone silent after its handshake are otherwise untimed.
        .http1_only()
        .first_request_timeout(limits.header_timeout);
    // Headers in time; an idle keep-alive connection waits for its next request's headers
    // under the same timer.
    server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout);
    match rustls {
        None => server.acceptor(edge).serve(app).await,
        Some(rustls) => {
            let tls = axum_server::tls_rustls::RustlsAcceptor::new(rustls).acceptor(edge);
            server.acceptor(tls).serve(app).await
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
