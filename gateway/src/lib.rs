//! chipledger's serving node (`chipledger node serve`): an OpenAI-compatible endpoint that
//! answers only while the GPUs it serves on qualify under its policy ([`gate`]), runs the
//! built-in candle engine ([`candle`]) or fronts an engine already running on those GPUs
//! ([`upstream`]), and records every response it finishes as a leaf of a signed, batched
//! provenance record whose receipt a client fetches and verifies offline ([`recorder`]).
//!
//! It links `inference` (placement, the runner, the records) and `domain`, never the ledger: the
//! log is a `LogClient`, local or over HTTP.

pub mod candle;
pub mod fuzzing;
pub mod gate;
pub mod openai;
pub mod recorder;
mod routes;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::log::LogClient;
use chipledger_inference::node::NodeKey;
use chipledger_inference::policy::Policy;
use chipledger_inference::requirements::Requirements;
use chipledger_inference::runner::Backend;
use chipledger_inference::serving::ServedModel;

/// The log, shared by the gate (reads) and the recorder (appends).
#[derive(Clone)]
pub struct SharedLog(Arc<Mutex<Box<dyn LogClient + Send>>>);

impl SharedLog {
    pub fn new(log: Box<dyn LogClient + Send>) -> SharedLog {
        SharedLog(Arc::new(Mutex::new(log)))
    }

    pub fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, Box<dyn LogClient + Send>>> {
        self.0.lock()
    }
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLog")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Start(String),
    #[error("listening on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error(transparent)]
    Inference(#[from] chipledger_inference::Error),
}

/// Which engine answers.
#[derive(Debug, Clone)]
pub enum EngineConfig {
    /// The built-in candle runner: `workers` copies of the model, `queue` requests waiting.
    Candle { path: PathBuf, backend: Backend, workers: usize, queue: usize },
    /// An OpenAI-compatible engine at `url`, at most `max_in_flight` requests at once. `files` are
    /// the weights it serves, when the node holds them (digested into every batch).
    Upstream { url: String, max_in_flight: usize, name: String, files: Vec<chipledger_domain::records::ModelFile> },
}

/// Everything the node needs.
#[derive(Debug)]
pub struct Config {
    pub listen: String,
    pub engine: EngineConfig,
    pub policy: Policy,
    pub requirements: Requirements,
    /// The GPUs the engine runs on, when already started (else the placement's are pinned).
    pub pinned: Option<Vec<GpuUuid>>,
    pub log: SharedLog,
    pub log_key: VerifierKey,
    pub node: NodeKey,
    pub batch_interval: Duration,
    pub recheck: Duration,
    pub keep_receipts: usize,
    pub max_pending: usize,
    /// Clients must send `Authorization: Bearer <key>` when set.
    pub api_key: Option<ApiKey>,
    /// The model's id in `/v1/models` and responses (default: its name).
    pub served_name: Option<String>,
}

/// The node as its handlers see it.
#[derive(Debug)]
pub struct Node {
    pub gate: Arc<gate::Gate>,
    pub recorder: Arc<recorder::Recorder>,
    pub engine: Engine,
    pub model_id: String,
    pub created: i64,
    api_key: Option<ApiKey>,
}

/// The API key clients must present; its `Debug` never shows it.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The engine in use.
#[derive(Debug)]
pub enum Engine {
    Candle(candle::CandlePool),
    Upstream { upstream: Box<upstream::Upstream>, slots: Arc<tokio::sync::Semaphore> },
}

impl Node {
    /// Loads the engine and places the model (the gate's first decision). No threads yet.
    pub fn start(config: Config) -> Result<(Node, Duration, Duration), Error> {
        let (engine, model) = match &config.engine {
            EngineConfig::Candle { path, backend, workers, queue } => {
                let (pool, info) = candle::CandlePool::start(path, *backend, *workers, *queue)?;
                let model = ServedModel::new(info.name, info.files, "candle", info.backend);
                (Engine::Candle(pool), model)
            }
            EngineConfig::Upstream { url, max_in_flight, name, files } => {
                let upstream = upstream::Upstream::new(url)?;
                let model = ServedModel::new(
                    name.clone(),
                    files.clone(),
                    "upstream",
                    "upstream OpenAI-compatible engine, started on the pinned GPUs".to_string(),
                );
                let slots = Arc::new(tokio::sync::Semaphore::new((*max_in_flight).max(1)));
                (Engine::Upstream { upstream: Box::new(upstream), slots }, model)
            }
        };
        let gate = Arc::new(gate::Gate::new(
            config.log.clone(),
            config.log_key.clone(),
            config.policy,
            config.requirements,
            config.pinned,
        ));
        let model_id = config.served_name.clone().unwrap_or_else(|| model.name.clone());
        let recorder = Arc::new(recorder::Recorder::new(
            config.log,
            config.log_key,
            config.node,
            model,
            config.keep_receipts,
            config.max_pending,
        ));
        let created = time::OffsetDateTime::now_utc().unix_timestamp();
        Ok((
            Node { gate, recorder, engine, model_id, created, api_key: config.api_key },
            config.batch_interval,
            config.recheck,
        ))
    }
}

/// Serves until SIGINT or SIGTERM; then finishes the requests in flight and appends the last
/// batch. `on_ready` gets the bound address and the node (its gate's first decision made).
pub fn serve(config: Config, on_ready: impl FnOnce(SocketAddr, &Node)) -> Result<(), Error> {
    let addr = config.listen.clone();
    let listen_err = |source| Error::Listen { addr: addr.clone(), source };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(listen_err)?;
    let (node, interval, recheck) = Node::start(config)?;
    let node = Arc::new(node);
    let gate = node.gate.clone();
    std::thread::Builder::new()
        .name("gate".into())
        .spawn(move || gate.watch(recheck, Duration::from_secs(10)))
        .map_err(listen_err)?;
    let recorder = node.recorder.clone();
    let batching = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || recorder.run(interval))
        .map_err(listen_err)?;
    let app = routes::router(node.clone());
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(listen_err)?;
        let bound = listener.local_addr().map_err(listen_err)?;
        on_ready(bound, &node);
        axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.map_err(listen_err)
    })?;
    // The responses finished before shutdown get their batch: the batching thread stops first
    // (it may hold leaves mid-append), then the rest is appended, retried for up to 30 s.
    node.recorder.stop();
    let _ = batching.join();
    node.recorder.flush_before(std::time::Instant::now() + Duration::from_secs(30), interval);
    match node.recorder.save_unrecorded() {
        Ok(None) => Ok(()),
        Ok(Some((n, path))) => Err(Error::Start(format!(
            "{n} answered response(s) have no provenance record: the log did not accept their batch before \
             shutdown; their leaves are in {}",
            path.display()
        ))),
        Err(e) => {
            Err(Error::Start(format!("answered responses have no provenance record, and saving them failed: {e}")))
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// The router alone (tests and benches drive it in process).
pub fn router(node: Arc<Node>) -> axum::Router {
    routes::router(node)
}
