//! `chipledger node serve`: the serving node — an OpenAI-compatible endpoint gated by the
//! placement policy, with a receipt for every response (`chipledger-gateway`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::log::Clock;
use chipledger_domain::records::ModelFile;
use chipledger_gateway::{Config, EngineConfig, SharedLog};
use chipledger_inference::node;
use chipledger_inference::runner::Backend;
use chipledger_ledger::SystemClock;

use crate::cmd::inference::{read_node_key, BackendArg, Placing};
use crate::datadir;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve a model over the OpenAI API (/v1/models, /v1/chat/completions, streaming too) while
    /// the GPUs it runs on qualify under the policy; every response gets a signed receipt
    /// (GET /v1/provenance/{id}) that `chipledger report verify` checks offline.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The model (a directory or .gguf the built-in engine loads; with --upstream, the weights the
    /// engine serves, digested into every record, or a preset), the policy and the ledger.
    #[command(flatten)]
    placing: Placing,
    #[arg(long, default_value = "127.0.0.1:8300", value_name = "ADDR")]
    listen: String,
    /// Front an OpenAI-compatible engine (vLLM, SGLang, llama.cpp's server) already running on
    /// the placed GPUs, e.g. http://127.0.0.1:8000, instead of the built-in engine.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// The GPUs the engine runs on (comma-separated UUIDs), when it was started before the node;
    /// otherwise the node pins the GPUs it places the model on.
    #[arg(long, value_delimiter = ',', value_name = "UUID,…")]
    gpus: Vec<String>,
    /// The model's id in /v1/models and responses (default: the model's name).
    #[arg(long)]
    served_name: Option<String>,
    /// Built-in engine: copies of the model answering at once (each with its own KV cache).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Built-in engine: requests that may wait for a worker; past it, 429 with Retry-After.
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// Built-in engine: where it executes (cuda: the placed GPU, checked live through NVML).
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// Upstream: requests in flight to the engine at once; past it, 429 with Retry-After.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// How often the finished responses are appended as one signed batch record.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    batch_interval_ms: u64,
    /// How often the gate looks at the log for new entries and aged-out attestations.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    recheck_ms: u64,
    /// Receipts kept for the latest responses (older ones: 404).
    #[arg(long, default_value_t = 100_000)]
    keep_receipts: usize,
    /// Responses that may wait for their batch to reach the log before the node answers 503.
    #[arg(long, default_value_t = 100_000)]
    max_pending: usize,
    /// The node's signing key (default: <data-dir>/node-key.pem), enrolled with --role node for
    /// --node-name.
    #[arg(long, value_name = "FILE")]
    node_key: Option<PathBuf>,
    /// The node's host name as enrolled (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// A file holding the API key clients must send (Authorization: Bearer …); also
    /// CHIPLEDGER_NODE_API_KEY. Without either, the API is open to whoever reaches --listen.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    let Command::Serve(args) = cmd;
    serve(data_dir, args)
}

fn serve(data_dir: Option<PathBuf>, args: ServeArgs) -> Result<()> {
    let dir = datadir::resolve(data_dir.clone()).ok();
    let key_path = match (&args.node_key, &dir) {
        (Some(p), _) => p.clone(),
        (None, Some(d)) => d.join("node-key.pem"),
        (None, None) => bail!("give --node-key (no data directory to find node-key.pem in)"),
    };
    let (policy, requirements, log, log_key) = args.placing.open(data_dir, Some(&key_path))?;
    let state = dir.map(|d| d.join("node-state.json")).unwrap_or_else(|| key_path.with_extension("state.json"));
    let node = read_node_key(&key_path, args.node_name.clone(), state)?;
    let mut pinned = parse_gpus(&args.gpus)?;
    let model_path = Path::new(&args.placing.model);
    let engine = match &args.upstream {
        Some(url) => {
            if args.backend != BackendArg::Cpu {
                bail!("--backend is the built-in engine's; with --upstream the engine runs where it was started");
            }
            let (name, files) = upstream_model(&args.placing.model, model_path)?;
            EngineConfig::Upstream { url: url.clone(), max_in_flight: args.max_in_flight, name, files }
        }
        None => {
            if !model_path.exists() {
                bail!(
                    "--model {}: a preset can be served only in front of an engine (--upstream URL); point --model at \
                     the weights to serve them here",
                    args.placing.model
                );
            }
            let backend = match args.backend {
                BackendArg::Cpu => Backend::Cpu,
                BackendArg::Cuda => {
                    // The placed GPU, checked live: the engine then runs on it, and only it is pinned.
                    let plan = node::plan(log.as_ref(), &log_key, &policy, requirements.clone(), SystemClock.now())?;
                    let held = chipledger_inference::serving::hold(&plan, pinned.as_deref())?;
                    let target = node::execution_target(&held, node::Executor::PlacedGpu, || {
                        crate::cmd::inference::live_node()
                    })?;
                    if let Some(uuid) = &target.visible_device {
                        std::env::set_var("CUDA_VISIBLE_DEVICES", uuid.as_str());
                        pinned = Some(vec![uuid.clone()]);
                    }
                    target.backend
                }
            };
            EngineConfig::Candle { path: model_path.to_path_buf(), backend, workers: args.workers, queue: args.queue }
        }
    };
    let api_key = match (&args.api_key_file, std::env::var("CHIPLEDGER_NODE_API_KEY").ok()) {
        (Some(p), _) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading the API key file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        (None, Some(k)) if !k.trim().is_empty() => Some(k.trim().to_string()),
        _ => None,
    };
    if api_key.as_deref() == Some("") {
        bail!("the API key file is empty");
    }
    let config = Config {
        listen: args.listen.clone(),
        engine,
        policy,
        requirements,
        pinned,
        log: SharedLog::new(log),
        log_key: log_key.clone(),
        node,
        batch_interval: Duration::from_millis(args.batch_interval_ms.max(10)),
        recheck: Duration::from_millis(args.recheck_ms.max(10)),
        keep_receipts: args.keep_receipts.max(1),
        max_pending: args.max_pending.max(1),
        api_key: api_key.map(chipledger_gateway::ApiKey),
        served_name: args.served_name.clone(),
    };
    chipledger_gateway::serve(config, |addr, node| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = writeln!(out, "serving {} through {}", node.model_id, node.recorder.model().backend);
        if let Some(url) = &args.upstream {
            let _ = writeln!(out, "in front of {url}");
        }
        match node.gate.admit(time::OffsetDateTime::now_utc()) {
            Ok(p) => {
                let gpus: Vec<&str> = p.gpus.iter().map(|g| g.uuid.as_str()).collect();
                let _ = writeln!(out, "placed on {}: {} (policy {:?})", p.host, gpus.join(", "), p.policy_name);
                if args.upstream.is_some() {
                    let _ = writeln!(
                        out,
                        "the engine must run on exactly these GPUs: CUDA_VISIBLE_DEVICES={}",
                        gpus.join(",")
                    );
                }
            }
            Err(why) => {
                let _ = writeln!(out, "answering 503 until the placement qualifies: {why}");
            }
        }
        let _ = writeln!(out, "each response's receipt: GET /v1/provenance/<id>; verify with chipledger report verify");
        let _ = out.flush();
    })?;
    Ok(())
}

fn parse_gpus(list: &[String]) -> Result<Option<Vec<GpuUuid>>> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for u in list {
        let uuid = GpuUuid::parse(u.trim()).with_context(|| format!("--gpus: {u:?} is not a GPU UUID"))?;
        if !out.contains(&uuid) {
            out.push(uuid);
        }
    }
    Ok(Some(out))
}

/// The name and files of a model an upstream engine serves: a .gguf or a directory's files
/// (digested), or a preset (no files).
fn upstream_model(model: &str, path: &Path) -> Result<(String, Vec<ModelFile>)> {
    if !path.exists() {
        return Ok((model.to_string(), Vec::new()));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| model.to_string());
    let mut files = Vec::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        if entries.len() > chipledger_domain::serving::MAX_MODEL_FILES {
            bail!("{} holds more than {} files", path.display(), chipledger_domain::serving::MAX_MODEL_FILES);
        }
        for p in entries {
            let sha256 = chipledger_inference::runner::file_digest(&p)?;
            let rel = p.strip_prefix(path).unwrap_or(&p).display().to_string();
            files.push(ModelFile { path: rel, sha256 });
        }
    } else {
        files.push(ModelFile { path: name.clone(), sha256: chipledger_inference::runner::file_digest(path)? });
    }
    Ok((name, files))
}
