//! `chipledger plan`, `run`, `report verify`, `model tiny`: the inference node.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::Clock;
use chipledger_inference::node::{self, Execution, NodeKey, Plan, RunContext};
use chipledger_inference::placement;
use chipledger_inference::policy::Policy;
use chipledger_inference::report;
use chipledger_inference::requirements::{self, Requirements};
use chipledger_inference::runner::{Backend, Model, SamplingConfig, Segment};
use chipledger_inference::tiny::{self, Arch, TinyShape};
use chipledger_ledger::SystemClock;

use crate::datadir;
use crate::output::{self, Format};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    target: Target,
    /// Print the launch lines for this engine instead (one host, or split across hosts), each
    /// pinned to the placed GPUs by UUID.
    #[arg(long, value_enum)]
    engine: Option<EngineArg>,
    /// The model path or name the engine loads (default: --model).
    #[arg(long, requires = "engine")]
    engine_model: Option<String>,
    /// Which hosts share a network fabric (TOML: `[groups]`, then `pod-a = ["host", …]`): a split
    /// across hosts stays inside one group. Without it every host is taken as one fabric.
    #[arg(long, value_name = "FILE")]
    fabric: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EngineArg {
    Vllm,
    Sglang,
}

/// What placing a model takes: the model, the policy, and the log to read the fleet from (`plan`,
/// `run` and `node serve` share it).
#[derive(Debug, clap::Args)]
pub(crate) struct Placing {
    /// A model directory (config.json + *.safetensors + tokenizer.json), a .gguf file, or a
    /// preset: deepseek-r1, r1-distill-qwen-1.5b|7b|14b|32b, r1-distill-llama-8b|70b.
    #[arg(long)]
    pub model: String,
    /// Context length to reserve KV cache for (default: the model's, at most 4096).
    #[arg(long)]
    pub context: Option<u64>,
    /// Placement policy (TOML; default: the built-in policy).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The ledger: a data directory (default: the global --data-dir) or a server's URL.
    #[arg(long, value_name = "DIR|URL")]
    pub ledger: Option<String>,
    /// The log's verifier key (required with a URL; checked against a local ledger's).
    #[arg(long, value_name = "VKEY")]
    pub log_key: Option<String>,
}

impl Placing {
    /// The policy, the model's requirements, and the log (its key checked) — a server's reads
    /// signed with `node_key` (default: `<data-dir>/node-key.pem`).
    pub(crate) fn open(
        &self,
        data_dir: Option<PathBuf>,
        node_key: Option<&Path>,
    ) -> Result<(Policy, Requirements, Log, VerifierKey)> {
        let policy = load_policy(self.policy.as_deref())?;
        let shape = requirements::resolve(&self.model)?;
        let req = Requirements::new(shape, self.context);
        let target = match &self.ledger {
            Some(l) => datadir::LedgerTarget::parse(l),
            None => datadir::LedgerTarget::Dir(datadir::resolve(data_dir.clone())?),
        };
        let pinned = self.log_key.as_deref().map(VerifierKey::parse).transpose().context("--log-key")?;
        // A server answers enrolled keys: the node's own key signs the reads.
        let node_key =
            node_key.map(Path::to_path_buf).or_else(|| datadir::resolve(data_dir).ok().map(|d| d.join("node-key.pem")));
        let (log, log_key) = target.open(pinned, node_key.as_deref())?;
        Ok((policy, req, log, log_key))
    }
}

#[derive(Debug, clap::Args)]
struct Target {
    #[command(flatten)]
    placing: Placing,
    /// Read the fleet only at a checkpoint this quorum of witnesses cosigned.
    #[command(flatten)]
    witnesses: crate::witnesses::PolicyArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// The user's message (wrapped in the model's chat template).
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 for greedy decoding. R1's recommendation is 0.6.
    #[arg(long, default_value_t = 0.6)]
    temperature: f64,
    #[arg(long, default_value_t = 0.95)]
    top_p: f64,
    #[arg(long, default_value_t = 299_792_458)]
    seed: u64,
    /// Where to save the provenance report (default: <data-dir>/runs/<run id>.json).
    #[arg(long, value_name = "FILE")]
    report_out: Option<PathBuf>,
    /// The node's signing key (default: <data-dir>/node-key.pem), enrolled with --role node.
    #[arg(long, value_name = "FILE")]
    node_key: Option<PathBuf>,
    /// The node's name in the report (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// Where the model executes. `cuda` needs a build with `--features cuda`, must run on the
    /// placed host, maps the placed GPU's UUID to the CUDA device, and first checks that the
    /// GPU's live NVML facts still give its attested fingerprint.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Cpu,
    Cuda,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Check a provenance report, a serving receipt or a diversion report offline: signatures,
    /// checkpoints, inclusion proofs, digests; a diversion report's events recomputed from its
    /// own records.
    Verify {
        file: PathBuf,
        /// Pin the log's verifier key (otherwise the key named in the file is used).
        #[arg(long)]
        log_key: Option<String>,
        /// Re-digest the model files (the directory or .gguf the run used).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Require the placement's checkpoint to carry this quorum of witness cosignatures.
        #[command(flatten)]
        witnesses: crate::witnesses::PolicyArgs,
        /// A serving receipt: the response body exactly as received (for a stream, every byte of
        /// the event stream), checked against the receipt's digest.
        #[arg(long, value_name = "FILE")]
        response: Option<PathBuf>,
        /// A serving receipt: the request body exactly as sent.
        #[arg(long, value_name = "FILE")]
        request: Option<PathBuf>,
    },
    /// Write a diversion report from the local ledger: GPUs whose location proofs put them
    /// elsewhere than licensed, whose site operator is not the acquisition's end user, or whose
    /// records signal tampering or spoofing, with an evidence bundle of the entries they rest on.
    Diversion(super::diversion::Args),
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Write a deterministic random-weight model: real loading code and tokenizer, noise output.
    Tiny {
        #[arg(long, value_enum, default_value_t = ArchArg::Qwen2)]
        arch: ArchArg,
        /// A directory for safetensors; with --gguf, the .gguf file to write.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Write one quantized GGUF file instead: q8_0, q4_0, q4_1 or f16.
        #[arg(long, value_name = "QUANT")]
        gguf: Option<String>,
        /// Qwen2-0.5B's shape instead of the tiny one (about 1 GB in F32; for benchmarks).
        #[arg(long)]
        qwen2_0_5b_shape: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ArchArg {
    Qwen2,
    Llama,
}

/// A policy file, or the built-in policy.
pub(crate) fn load_policy(path: Option<&Path>) -> Result<Policy> {
    match path {
        None => Ok(Policy::builtin()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading the policy {}", p.display()))?;
            Ok(Policy::parse(&text, &p.display().to_string())?)
        }
    }
}

pub(crate) type Log = Box<dyn chipledger_domain::log::LogClient + Send>;

fn make_plan(data_dir: Option<PathBuf>, t: &Target, node_key: Option<PathBuf>) -> Result<(Log, VerifierKey, Plan)> {
    let (policy, req, log, log_key) = t.placing.open(data_dir, node_key.as_deref())?;
    let plan = node::plan(log.as_ref(), &log_key, &policy, req, SystemClock.now())?;
    if let Some(witnesses) = t.witnesses.policy()? {
        // The fleet was read at this checkpoint: it must be one the witnesses saw.
        crate::witnesses::check(&witnesses, plan.fleet.checkpoint_text.as_bytes())
            .context("the checkpoint the fleet was read at")?;
    }
    Ok((log, log_key, plan))
}

pub fn plan(data_dir: Option<PathBuf>, args: PlanArgs) -> Result<()> {
    let (_log, _key, plan) = make_plan(data_dir, &args.target, None)?;
    let fabric = match &args.fabric {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading the fabric file {}", p.display()))?;
            placement::Fabric::parse(&text, &p.display().to_string()).map_err(anyhow::Error::msg)?
        }
        None => placement::Fabric::one(),
    };
    // A model no host holds alone: split across hosts, where every GPU used qualifies.
    let split = (!plan.placement.is_placed()).then(|| {
        placement::place_across_hosts(
            &plan.policy,
            &plan.fleet.candidates,
            &plan.requirements,
            plan.planned_at,
            &fabric,
        )
    });
    if let Some(engine) = args.engine {
        let stages = match (&plan.placement.host, &split) {
            (Some(host), _) => vec![placement::Stage { host: host.clone(), gpus: plan.placement.chosen.clone() }],
            (None, Some(Ok(m))) => m.stages.clone(),
            (None, Some(Err(why))) => bail!("not placed on one host, nor split across hosts: {why}"),
            (None, None) => bail!("not placed"),
        };
        let engine = match engine {
            EngineArg::Vllm => placement::Engine::Vllm,
            EngineArg::Sglang => placement::Engine::Sglang,
        };
        let model = args.engine_model.as_deref().unwrap_or(&args.target.placing.model);
        for (host, line) in placement::launch_lines(engine, model, &stages, &stages[0].host) {
            println!("# on {host}");
            println!("{line}");
        }
        return Ok(());
    }
    match args.target.format {
        Format::Json => output::print_json(&serde_json::json!({
            "requirements": plan.requirements,
            "policy": { "name": plan.policy.name, "digest": plan.policy.digest },
            "checkpoint_size": plan.fleet.checkpoint.size,
            "placement": plan.placement,
            "split_across_hosts": split.as_ref().map(|s| match s {
                Ok(m) => serde_json::json!(m),
                Err(why) => serde_json::json!({ "refused": why }),
            }),
        })),
        Format::Csv => bail!("--format csv is for lists; use table or json here"),
        Format::Table => {
            print_plan(&plan);
            match &split {
                Some(Ok(m)) => {
                    println!(
                        "split across {} hosts: tensor parallel over {} GPUs in each, pipeline parallel across the hosts; {:.1} GiB per GPU",
                        m.pipeline_parallel,
                        m.tensor_parallel,
                        m.per_gpu_bytes as f64 / GIB
                    );
                    match &m.fabric {
                        Some(g) => println!("  all on fabric group {g:?}"),
                        None => {
                            println!("  every host taken as one network fabric (--fabric FILE says which share one)")
                        }
                    }
                    for (i, s) in m.stages.iter().enumerate() {
                        println!("  stage {i} on {}:", s.host);
                        for u in &s.gpus {
                            println!("    {u}");
                        }
                    }
                    for (host, why) in &m.hosts_not_chosen {
                        println!("  not a stage: {host}: {why}");
                    }
                }
                Some(Err(why)) => println!("not split across hosts either: {why}"),
                None => {}
            }
            Ok(())
        }
    }
}

fn print_plan(plan: &Plan) {
    let r = &plan.requirements;
    println!(
        "{} ({}, {:.2} B parameters, from {}): {:.1} GiB = weights {:.1} + KV cache {:.1} (context {}) + overhead {:.1}",
        r.model.name,
        r.model.architecture,
        r.model.parameters as f64 / 1e9,
        r.model.source,
        r.total_gib(),
        r.weights_bytes as f64 / GIB,
        r.kv_cache_bytes as f64 / GIB,
        r.context,
        r.overhead_bytes as f64 / GIB
    );
    println!(
        "policy {:?} ({}), fleet of {} GPU(s) at checkpoint size {}",
        plan.policy.name,
        output::short(&plan.policy.digest.to_hex()),
        plan.fleet.candidates.len(),
        plan.fleet.checkpoint.size
    );
    let p = &plan.placement;
    if p.hosts.is_empty() {
        println!("no host has a GPU that qualifies under the policy");
    }
    for h in &p.hosts {
        match h.gpus_needed {
            Some(k) => println!(
                "  {}: {} qualifying GPU(s), {:.1} GiB: can hold it on {k}",
                h.host,
                h.qualifying_gpus,
                h.qualifying_bytes as f64 / GIB
            ),
            None => println!(
                "  {}: {} qualifying GPU(s), {:.1} GiB: too small",
                h.host,
                h.qualifying_gpus,
                h.qualifying_bytes as f64 / GIB
            ),
        }
    }
    match &p.host {
        Some(host) => {
            println!("placed on {host}:");
            for u in &p.chosen {
                println!("  {u}");
            }
        }
        None => println!("not placed: no host qualifies"),
    }
    if !p.not_chosen.is_empty() {
        println!("not chosen:");
        for line in p.reasons_text() {
            println!("  {line}");
        }
    }
}

pub fn run(data_dir: Option<PathBuf>, args: RunArgs) -> Result<()> {
    let started_at = SystemClock.now();
    let (log, log_key, plan) = make_plan(data_dir.clone(), &args.target, args.node_key.clone())?;
    if !plan.placement.is_placed() {
        bail!("{}", plan.refusal());
    }
    let path = Path::new(&args.target.placing.model);
    if !path.exists() {
        bail!(
            "--model {}: a preset can be planned but not run; point --model at the weights",
            args.target.placing.model
        );
    }
    let node = node_key(data_dir.clone(), &args)?;
    let host = plan.placement.host.clone().unwrap_or_default();
    let requested = match args.backend {
        BackendArg::Cpu => node::Executor::Cpu,
        BackendArg::Cuda => node::Executor::PlacedGpu,
    };
    let target = node::execution_target(&plan, requested, live_node)?;
    if let Some(uuid) = &target.visible_device {
        std::env::set_var("CUDA_VISIBLE_DEVICES", uuid.as_str());
    }
    let backend = target.backend;
    eprintln!(
        "placed on {host}: {} (policy {:?}); executing on {}",
        plan.placement.chosen.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", "),
        plan.policy.name,
        if backend == Backend::Cpu {
            "the CPU of this node".to_string()
        } else {
            format!("{host}'s placed GPU through CUDA")
        }
    );
    let load_start = Instant::now();
    let bar = output::progress_bar("files", 1);
    let mut model = Model::load(path, backend, &mut |done, total| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let load_ms = load_start.elapsed().as_millis() as u64;
    eprintln!("computed by: {}", model.engine());
    let sampling = SamplingConfig {
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        max_tokens: args.max_tokens,
    };
    let templated = model.template().apply(&args.prompt);
    let json = args.target.format == Format::Json;
    let mut last = None;
    let mut stdout = std::io::stdout();
    let g = model.generate(&templated, sampling, &mut |seg, text| {
        if json {
            return;
        }
        if last != Some(seg) {
            let _ = write!(stdout, "{}", if seg == Segment::Thinking { "\n[thinking]\n" } else { "\n[answer]\n" });
            last = Some(seg);
        }
        let _ = write!(stdout, "{text}");
        let _ = stdout.flush();
    })?;
    if !json {
        println!();
    }
    let exec = Execution::new(
        &model,
        &g,
        RunContext { prompt: &args.prompt, sampling, load_ms, started_at, finished_at: SystemClock.now() },
    );
    let record = node::provenance(log.as_ref(), &node, &plan, &exec)?;
    let file = node::submit(log.as_ref(), &log_key, &node, &record, &args.prompt, &g.text)?;
    let out = match &args.report_out {
        Some(p) => p.clone(),
        None => datadir::resolve(data_dir)?.join("runs").join(format!("{}.json", record.run_id)),
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&file)?).with_context(|| format!("writing {}", out.display()))?;
    if json {
        return output::print_json(&serde_json::json!({
            "run_id": record.run_id, "output": g.text, "thinking": g.thinking, "answer": g.answer,
            "stop": g.stop, "report": out, "log_index": file.receipt.index, "provenance": record,
            "decode_tokens_per_second": g.decode_tokens_per_second(),
        }));
    }
    println!("--- provenance ---");
    println!("run {} by node {} under policy {:?}", record.run_id, record.node_host, record.policy_name);
    println!("executed on: {} (the report never claims a GPU that did not run it)", record.backend);
    for gpu in &record.gpus {
        println!("placed on {}", output::run_gpu(gpu));
    }
    for r in &record.rejected {
        println!("not used: {} on {}: {}", r.uuid, r.host, r.reason);
    }
    println!(
        "model {} ({} file(s)); {} prompt + {} generated tokens; load {} ms, prefill {} ms, decode {} ms ({:.1} tok/s); stop: {:?}",
        record.model_name,
        record.model_files.len(),
        record.prompt_tokens,
        record.generated_tokens,
        record.timings.load_ms,
        record.timings.prefill_ms,
        record.timings.decode_ms,
        g.decode_tokens_per_second(),
        g.stop
    );
    println!("signed and appended at log index {}; report saved to {}", file.receipt.index, out.display());
    println!("verify it anywhere: chipledger report verify {} --log-key {}", out.display(), log_key);
    Ok(())
}

/// This node's name and GPUs, read live through NVML.
pub(crate) fn live_node() -> Result<node::LiveNode, chipledger_inference::Error> {
    let hostname = chipledger_agent::host::host_facts(None).hostname;
    let probed = chipledger_agent::NvmlProbe::new(None)
        .and_then(|mut probe| chipledger_agent::GpuProbe::probe(&mut probe))
        .map_err(|e| chipledger_inference::Error::Refused(format!("cannot read this node's GPUs through NVML: {e}")))?;
    Ok(node::LiveNode { hostname, gpus: probed.gpus })
}

fn node_key(data_dir: Option<PathBuf>, args: &RunArgs) -> Result<NodeKey> {
    let dir = datadir::resolve(data_dir)?;
    let path = args.node_key.clone().unwrap_or_else(|| dir.join("node-key.pem"));
    read_node_key(&path, args.node_name.clone(), dir.join("node-state.json"))
}

/// A node's signing key from its PEM file, named `name` (default: this host's name), its counter
/// kept in `state`.
pub(crate) fn read_node_key(path: &Path, name: Option<String>, state: PathBuf) -> Result<NodeKey> {
    let pem = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the node key {}: create one with `chipledger keys generate --name NODE --out {}` and enroll it \
             with `chipledger keys enroll --role node --name NODE`",
            path.display(),
            path.display()
        )
    })?;
    let key =
        SigningKey::from_pkcs8_pem_owned(pem).with_context(|| format!("reading the node key {}", path.display()))?;
    let host = name.unwrap_or_else(|| chipledger_agent::host::host_facts(None).hostname);
    Ok(NodeKey { key, host, state })
}

pub fn report(data_dir: Option<PathBuf>, cmd: ReportCommand) -> Result<()> {
    match cmd {
        ReportCommand::Diversion(args) => super::diversion::write(data_dir, args),
        ReportCommand::Verify { file, log_key, model, witnesses, response, request } => {
            let key = log_key.as_deref().map(VerifierKey::parse).transpose().context("--log-key")?;
            // No report of any format is larger than a diversion report may be.
            let text = super::note::read_bounded(&file, chipledger_ledger::diversion::MAX_REPORT_BYTES)?;
            #[derive(serde::Deserialize)]
            struct Format {
                format: Option<String>,
            }
            let format = match serde_json::from_slice::<Format>(&text) {
                Ok(f) => f.format,
                Err(e) => bail!(
                    "{} is not a report: {e} (a run report, a serving receipt and a diversion report are each one \
                     JSON object)",
                    file.display()
                ),
            };
            if format.as_deref() == Some(chipledger_ledger::diversion::DIVERSION_FORMAT) {
                if model.is_some() || response.is_some() || request.is_some() {
                    bail!("--model, --response and --request are for run reports and serving receipts; {} is a diversion report", file.display());
                }
                return super::diversion::verify(&file, &text, key.as_ref(), &witnesses);
            }
            if format.as_deref() == Some(report::SERVING_RECEIPT_FORMAT) {
                let Some(key) = key else {
                    bail!(
                        "a serving receipt names its own log and node keys; pin the log's key with --log-key VKEY \
                         (chipledger ledger info prints it)"
                    );
                };
                return verify_receipt(&file, &text, &key, &witnesses, model.as_deref(), response, request);
            }
            if format.is_none() {
                bail!(
                    "{} is neither a run report, a serving receipt nor a diversion report (it has no \"format\"); a \
                     receipt still pending in its batch is fetched again once its batch is in the log",
                    file.display()
                );
            }
            if response.is_some() || request.is_some() {
                bail!("--response and --request are for serving receipts; {} is a run report", file.display());
            }
            let f = node::read_report(&file)?;
            let v = report::verify(&f, key.as_ref(), model.as_deref())?;
            if let Some(policy) = witnesses.policy()? {
                // The placement's checkpoint, as the node signed it into its record (verified above).
                let env = chipledger_domain::dsse::Envelope::from_json(f.envelope.as_bytes())?;
                let chipledger_domain::records::Record::RunProvenance(r) =
                    chipledger_domain::records::Record::from_payload(&env.payload_bytes()?)?
                else {
                    bail!("the report's record is not a run-provenance record");
                };
                let cosigned = crate::witnesses::check(&policy, r.checkpoint.as_bytes())
                    .context("the report's placement checkpoint")?;
                let names: Vec<&str> = cosigned.iter().map(|(n, _)| n.as_str()).collect();
                println!("witnessed by {} of {} required: {}", cosigned.len(), policy.quorum, names.join(", "));
            }
            println!(
                "valid: run {} by node {} ({}), log {:?} index {} in its checkpoint of size {}",
                v.report.run_id, v.report.node_host, v.report.backend, v.origin, v.log_index, v.tree_size
            );
            println!(
                "  {} GPU attestation(s) included in the placement's checkpoint; prompt and output digests match{}",
                v.gpus_checked,
                if v.model_files_checked > 0 {
                    format!("; {} model file(s) match", v.model_files_checked)
                } else {
                    String::new()
                }
            );
            if v.log_key_from_file {
                println!("  note: checked against the log key named in the file; pin it with --log-key");
            }
            Ok(())
        }
    }
}

fn verify_receipt(
    path: &Path,
    text: &[u8],
    key: &VerifierKey,
    witnesses: &crate::witnesses::PolicyArgs,
    model: Option<&Path>,
    response: Option<PathBuf>,
    request: Option<PathBuf>,
) -> Result<()> {
    let file: report::ServingReceipt =
        serde_json::from_slice(text).with_context(|| format!("{}: not a serving receipt", path.display()))?;
    let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>> {
        p.as_ref().map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display()))).transpose()
    };
    let (response, request) = (read(&response)?, read(&request)?);
    let v = report::verify_serving(&file, Some(key), response.as_deref(), request.as_deref())?;
    if let Some(model) = model {
        if v.batch.model_files.is_empty() {
            bail!(
                "the batch names model {:?} without files: there is nothing to compare --model with",
                v.batch.model_name
            );
        }
        for f in &v.batch.model_files {
            let p = if model.is_dir() { model.join(&f.path) } else { model.to_path_buf() };
            let digest = chipledger_inference::runner::file_digest(&p)?;
            if digest != f.sha256 {
                bail!("model file {} has digest {digest}, the batch says {}", p.display(), f.sha256);
            }
        }
        println!("  {} model file(s) match", v.batch.model_files.len());
    }
    if let Some(policy) = witnesses.policy()? {
        let cosigned = crate::witnesses::check(&policy, v.batch.checkpoint.as_bytes())
            .context("the batch's placement checkpoint")?;
        let names: Vec<&str> = cosigned.iter().map(|(n, _)| n.as_str()).collect();
        println!("witnessed by {} of {} required: {}", cosigned.len(), policy.quorum, names.join(", "));
    }
    let r = &v.response;
    println!(
        "valid: response {} served by node {} ({}), in batch of {} at log {:?} index {} (checkpoint size {})",
        r.id, v.batch.node_host, v.batch.backend, v.batch.responses, v.origin, v.log_index, v.tree_size
    );
    println!(
        "  model {} ({} file(s)); {} prompt + {} completion tokens; {} ms, first token at {} ms",
        v.batch.model_name,
        v.batch.model_files.len(),
        r.prompt_tokens,
        r.completion_tokens,
        r.total_ms,
        r.first_token_ms
    );
    for g in &v.batch.gpus {
        println!("  placed on {}", output::run_gpu(g));
    }
    println!(
        "  {} GPU attestation(s) included in the placement's checkpoint (policy {:?}); response bytes {}; request bytes {}",
        v.batch.gpus.len(),
        v.batch.policy_name,
        if v.response_checked { "match" } else { "not given (--response FILE)" },
        if v.request_checked { "match" } else { "not given (--request FILE)" }
    );
    Ok(())
}

pub fn model(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Tiny { arch, out, seed, gguf, qwen2_0_5b_shape } => {
            let arch = match arch {
                ArchArg::Qwen2 => Arch::Qwen2,
                ArchArg::Llama => Arch::Llama,
            };
            let shape = if qwen2_0_5b_shape { TinyShape::qwen2_0_5b() } else { TinyShape::default() };
            if let Some(quant) = gguf {
                let size = tiny::write_gguf(&out, arch, shape, seed, &quant)?;
                println!(
                    "tiny {arch:?} model (random weights, seed {seed}, {quant}) written to {} ({size} bytes)",
                    out.display()
                );
                return Ok(());
            }
            let vocab = tiny::write(&out, arch, shape, seed)?;
            println!(
                "tiny {arch:?} model (random weights, seed {seed}, vocabulary {vocab}) written to {}: config.json, model.safetensors, tokenizer.json",
                out.display()
            );
            Ok(())
        }
    }
}
