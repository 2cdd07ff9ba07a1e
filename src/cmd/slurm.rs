//! `chipledger slurm …`: Slurm's hooks. `prolog` refuses a job whose allocated GPUs do not
//! qualify (draining the node with the reason) and records the job's start; `epilog` records its
//! end; `features` publishes node features from the ledger; `healthcheck` drains and resumes a
//! node. Every hook reads `/etc/chipledger/slurm.toml` (or `--config`); the decisions are
//! `chipledger_inference::cluster`'s.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chipledger_domain::fleet::{self, Fleet};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::LogClient;
use chipledger_domain::records::{sign_record, JobGpu, JobPhase, SchedulerJob, FORMAT_VERSION};
use chipledger_inference::cluster::{self, slurm, REASON_PREFIX};
use chipledger_inference::policy::Policy;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::datadir::LedgerTarget;

/// Where the hooks look for their settings unless `--config` or `CHIPLEDGER_SLURM_CONFIG` says.
pub const DEFAULT_CONFIG: &str = "/etc/chipledger/slurm.toml";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Slurm's `Prolog`: judge the job's GPUs on this node; refuse (drain the node with the
    /// reason, exit 1) or record the job's start in the log (exit 0).
    Prolog(HookArgs),
    /// Slurm's `Epilog`: record the job's end (state and exit code). Never fails the node: a
    /// record that cannot be written is reported on stderr.
    Epilog(HookArgs),
    /// Publish each node's chipledger features (`chipledger_attested`, `chipledger_lawful`,
    /// `chipledger_class_3a090a1`, …) with `scontrol update`, keeping the node's other features.
    Features(FeaturesArgs),
    /// Slurm's `HealthCheckProgram`: drain this node when its GPUs do not all qualify, resume it
    /// (if chipledger drained it) when they do; publish its features.
    Healthcheck(HookArgs),
}

#[derive(Debug, clap::Args)]
pub struct HookArgs {
    /// The hooks' settings (default: $CHIPLEDGER_SLURM_CONFIG, else /etc/chipledger/slurm.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The Slurm node (default: $SLURMD_NODENAME, else this machine's host name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only these nodes (default: every node `scontrol show nodes` lists).
    #[arg(long, value_name = "NAME")]
    node: Vec<String>,
    /// Print the features instead of setting them.
    #[arg(long)]
    dry_run: bool,
}

/// `slurm.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// A data directory or a server's URL.
    ledger: String,
    /// The log's verifier key (required for a URL).
    log_key: Option<String>,
    /// A key enrolled with role `node` under this node's host name: it reads the fleet and signs
    /// job records.
    key_file: PathBuf,
    /// Where the hooks keep their signing counter and lock.
    state_dir: PathBuf,
    /// A policy file (default: the built-in policy).
    policy: Option<PathBuf>,
    /// `scontrol`'s path (default: `scontrol` on PATH).
    scontrol: Option<PathBuf>,
    /// The cluster's name in job records (default: $SLURM_CLUSTER_NAME).
    cluster: Option<String>,
    /// Slurm node name → the host name its GPUs are attested under, where they differ.
    #[serde(default)]
    hosts: BTreeMap<String, String>,
}

struct Hooks {
    origin: String,
    file: FileConfig,
    policy: Policy,
}

impl Hooks {
    fn load(flag: Option<&Path>) -> Result<Hooks> {
        let path = flag
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CHIPLEDGER_SLURM_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("reading the Slurm hooks' settings {origin}"))?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| {
            let key = chipledger_domain::encoding::config_error_key(&text, e.message(), e.span())
                .unwrap_or_else(|| "(file)".into());
            anyhow::anyhow!("{origin}: {key}: {}", e.message().trim())
        })?;
        let policy = crate::cmd::inference::load_policy(file.policy.as_deref())?;
        Ok(Hooks { origin, file, policy })
    }

    /// The attested host name of a Slurm node.
    fn host_of<'a>(&'a self, node: &'a str) -> &'a str {
        self.file.hosts.get(node).map_or(node, String::as_str)
    }

    fn open(&self) -> Result<(Box<dyn LogClient + Send>, VerifierKey)> {
        let pinned = self
            .file
            .log_key
            .as_deref()
            .map(VerifierKey::parse)
            .transpose()
            .with_context(|| format!("{}: log_key", self.origin))?;
        LedgerTarget::parse(&self.file.ledger).open(pinned, Some(&self.file.key_file))
    }

    /// One host's GPUs judged from the log (its current checkpoint).
    fn host_fleet(&self, host: &str) -> Result<(Box<dyn LogClient + Send>, VerifierKey, Fleet)> {
        let (log, key) = self.open()?;
        let mut fleet =
            fleet::load_host(log.as_ref(), &key, host).context("reading the host's GPUs from the ledger")?;
        chipledger_inference::node::locate(
            &mut fleet,
            log.as_ref(),
            Some(host),
            &self.policy,
            OffsetDateTime::now_utc(),
        )
        .context("reading the host's location proofs")?;
        Ok((log, key, fleet))
    }

    fn scontrol(&self, args: &[&str]) -> Result<String> {
        let program = self.file.scontrol.clone().unwrap_or_else(|| PathBuf::from("scontrol"));
        let out = Process::new(&program)
            .args(args)
            .output()
            .with_context(|| format!("running {} {}", program.display(), args.join(" ")))?;
        if out.stdout.len() > slurm::MAX_OUTPUT {
            bail!("{} {}: output over {} bytes", program.display(), args.join(" "), slurm::MAX_OUTPUT);
        }
        if !out.status.success() {
            bail!(
                "{} {} failed ({}): {}",
                program.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn drain(&self, node: &str, reason: &str) -> Result<()> {
        self.scontrol(&["update", &format!("NodeName={node}"), "State=DRAIN", &format!("Reason={reason}")]).map(drop)
    }

    /// Signs `job` with the node key under the hooks' lock (concurrent hooks on one node take
    /// counters in turn) and appends it; the receipt is checked against the log key.
    fn record(&self, log: &dyn LogClient, log_key: &VerifierKey, mut job: SchedulerJob) -> Result<u64> {
        let pem = std::fs::read_to_string(&self.file.key_file)
            .with_context(|| format!("reading the node key {}", self.file.key_file.display()))?;
        let key = SigningKey::from_pkcs8_pem_owned(pem)
            .with_context(|| format!("reading the node key {}", self.file.key_file.display()))?;
        std::fs::create_dir_all(&self.file.state_dir)
            .with_context(|| format!("creating {}", self.file.state_dir.display()))?;
        let path = self.file.state_dir.join("counter");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.lock().with_context(|| format!("locking {}", path.display()))?;
        let mut text = String::new();
        f.read_to_string(&mut text).with_context(|| format!("reading {}", path.display()))?;
        let last: u64 = if text.trim().is_empty() {
            0
        } else {
            text.trim().parse().with_context(|| format!("{} does not hold a counter", path.display()))?
        };
        let micros = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(0);
        job.counter = micros.max(last.saturating_add(1));
        let envelope = sign_record(&job, &key)?.to_json();
        // The counter is spent once signed, whatever the log answers.
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(job.counter.to_string().as_bytes())?;
        f.sync_all()?;
        let receipts = log.submit(std::slice::from_ref(&envelope)).context("appending the job record")?;
        let receipt = receipts.first().context("the log returned no receipt")?;
        receipt.verify(&envelope, log_key).context("the log's receipt for the job record")?;
        Ok(receipt.index)
    }
}

fn node_name(flag: Option<String>) -> Result<String> {
    if let Some(n) = flag.or_else(|| std::env::var("SLURMD_NODENAME").ok()).filter(|n| !n.is_empty()) {
        return Ok(n);
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let short = h.trim().split('.').next().unwrap_or("").to_string();
    if short.is_empty() {
        bail!("which Slurm node is this? pass --node or set SLURMD_NODENAME");
    }
    Ok(short)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Prolog(a) => prolog(a),
        Command::Epilog(a) => epilog(a),
        Command::Features(a) => features(a),
        Command::Healthcheck(a) => healthcheck(a),
    }
}

/// The job this hook runs for: its id, and its GPUs on `node` — `SLURM_JOB_GPUS` when Slurm set
/// it, else the `IDX` list of `scontrol show job -d`.
fn job_gpus(hooks: &Hooks, job_id: &str, node: &str) -> Result<(Vec<u32>, Option<slurm::Job>)> {
    if let Some(ids) = env("SLURM_JOB_GPUS") {
        return Ok((slurm::parse_indices(&ids).context("SLURM_JOB_GPUS")?, None));
    }
    let text = hooks.scontrol(&["show", "job", "-d", job_id])?;
    let job = slurm::parse_job(&text)?;
    let gpus = job.gpus_on(node)?;
    if gpus.is_empty() && job.shares_gpus {
        bail!("the job shares a GPU through MPS or shards, which names no GPU index to judge");
    }
    Ok((gpus, Some(job)))
}

/// Whether the log answers at all: only a log that does not may let a job start unjudged when
/// the policy allows it; every other failure (a refused key, a bad signature) refuses the job.
fn unreachable(hooks: &Hooks) -> Option<String> {
    match hooks.open().and_then(|(log, _)| log.checkpoint().map_err(anyhow::Error::from)) {
        Ok(_) => None,
        Err(e) => Some(format!("{e:#}")),
    }
}

fn new_job(hooks: &Hooks, job_id: &str, node: &str, phase: JobPhase, gpus: Vec<JobGpu>) -> SchedulerJob {
    let host = hooks.host_of(node).to_string();
    SchedulerJob {
        format_version: FORMAT_VERSION,
        counter: 0,
        scheduler: "slurm".into(),
        cluster: hooks.file.cluster.clone().or_else(|| env("SLURM_CLUSTER_NAME")).unwrap_or_else(|| "slurm".into()),
        job_id: job_id.to_string(),
        phase,
        recorded_at: OffsetDateTime::now_utc(),
        node: (node != host).then(|| node.to_string()),
        host,
        user: env("SLURM_JOB_USER"),
        partition: env("SLURM_JOB_PARTITION"),
        policy_name: hooks.policy.name.clone(),
        policy_digest: hooks.policy.digest,
        gpus,
        exit_state: None,
        start_index: None,
    }
}

/// What the Prolog leaves for the Epilog in the state directory (Slurm has released the GRES
/// by the time the Epilog asks): the job's devices on this node and its start record's index.
#[derive(Debug, serde::Serialize, Deserialize)]
struct Started {
    start_index: u64,
    /// The GPUs the start record names, as it names them.
    gpus: Vec<JobGpu>,
}

fn started_path(hooks: &Hooks, job_id: &str) -> Result<PathBuf> {
    if job_id.is_empty() || job_id.len() > 64 || !job_id.chars().all(|c| c.is_ascii_digit() || c == '_') {
        bail!("SLURM_JOB_ID {job_id:?} is not a Slurm job id");
    }
    Ok(hooks.file.state_dir.join("jobs").join(job_id))
}

fn prolog(args: HookArgs) -> Result<()> {
    let started = Instant::now();
    let hooks = Hooks::load(args.config.as_deref())?;
    let node = node_name(args.node)?;
    let job_id = env("SLURM_JOB_ID").context("SLURM_JOB_ID is not set: run this as Slurm's Prolog")?;
    let refuse = |reason: String| -> Result<()> {
        if let Err(e) = hooks.drain(&node, &reason) {
            eprintln!("chipledger: could not drain {node}: {e:#}");
        }
        bail!("{reason}")
    };
    let indices = match job_gpus(&hooks, &job_id, &node) {
        Ok((i, _)) => i,
        Err(e) => return refuse(one_line(&format!("{REASON_PREFIX} cannot tell job {job_id}'s GPUs: {e:#}"))),
    };
    if indices.is_empty() {
        // No GPU of this node is the job's: nothing to judge or record.
        return Ok(());
    }
    let host = hooks.host_of(&node).to_string();
    let (log, log_key, fleet) = match hooks.host_fleet(&host) {
        Ok(x) => x,
        Err(e) => {
            return match unreachable(&hooks) {
                Some(why) if hooks.policy.allow_when_ledger_unreachable => {
                    eprintln!("chipledger: ledger unreachable ({why}); the policy lets job {job_id} start unrecorded");
                    Ok(())
                }
                Some(why) => refuse(one_line(&format!("{REASON_PREFIX} ledger unreachable: {why}"))),
                None => refuse(one_line(&format!("{REASON_PREFIX} reading the ledger: {e:#}"))),
            }
        }
    };
    let gpus = match cluster::judge_job(&hooks.policy, &fleet, &host, &indices, OffsetDateTime::now_utc()) {
        Ok(g) => g,
        Err(r) => return refuse(r.0),
    };
    let decided = started.elapsed();
    let recorded = hooks
        .record(log.as_ref(), &log_key, new_job(&hooks, &job_id, &node, JobPhase::Start, gpus.clone()))
        .and_then(|index| {
            let path = started_path(&hooks, &job_id)?;
            std::fs::create_dir_all(path.parent().unwrap_or(&hooks.file.state_dir))?;
            std::fs::write(&path, serde_json::to_vec(&Started { start_index: index, gpus })?)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(index)
        });
    match recorded {
        Ok(index) => {
            eprintln!(
                "chipledger: job {job_id} on {node}: {} GPU(s) qualify; recorded at log index {index} (decided in {:.1} ms)",
                indices.len(),
                decided.as_secs_f64() * 1e3
            );
            Ok(())
        }
        Err(e) if hooks.policy.allow_when_ledger_unreachable && unreachable(&hooks).is_some() => {
            eprintln!("chipledger: job {job_id}: the ledger went away; the job record was not appended ({e:#}); the policy lets it start");
            Ok(())
        }
        Err(e) => refuse(one_line(&format!("{REASON_PREFIX} job record not appended: {e:#}"))),
    }
}

/// Slurm's node reason is one line, at most [`cluster::MAX_REASON`] bytes.
fn one_line(s: &str) -> String {
    let mut line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.len() > cluster::MAX_REASON {
        let mut end = cluster::MAX_REASON - 3;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str("...");
    }
    line
}

fn epilog(args: HookArgs) -> Result<()> {
    let hooks = Hooks::load(args.config.as_deref())?;
    let node = node_name(args.node)?;
    let job_id = env("SLURM_JOB_ID").context("SLURM_JOB_ID is not set: run this as Slurm's Epilog")?;
    let outcome = (|| -> Result<Option<u64>> {
        let path = started_path(&hooks, &job_id)?;
        // No start record (a job without GPUs here, or one the policy let start unrecorded).
        let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
        let started: Started =
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not the Prolog's", path.display()))?;
        // The end names the GPUs the start named. Its exit code is slurmd's (the environment it
        // gives the Epilog); the state is scontrol's, "UNKNOWN" where its text does not parse.
        let job = hooks
            .scontrol(&["show", "job", "-d", &job_id])
            .and_then(|t| slurm::parse_job(&t).map_err(anyhow::Error::from))
            .unwrap_or_default();
        let (log, log_key) = hooks.open()?;
        let mut record = new_job(&hooks, &job_id, &node, JobPhase::End, started.gpus);
        let code = env("SLURM_JOB_EXIT_CODE2").or(job.exit_code.clone());
        record.exit_state =
            Some(format!("{} {}", job.state.as_deref().unwrap_or("UNKNOWN"), code.as_deref().unwrap_or("?")));
        record.user = record.user.or(job.user);
        record.partition = record.partition.or(job.partition);
        record.start_index = Some(started.start_index);
        let index = hooks.record(log.as_ref(), &log_key, record)?;
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        Ok(Some(index))
    })();
    match outcome {
        Ok(Some(index)) => eprintln!("chipledger: job {job_id} on {node}: end recorded at log index {index}"),
        Ok(None) => {}
        // An epilog that fails drains the node; a missing end record is not worth that.
        Err(e) => eprintln!("chipledger: job {job_id} on {node}: the end record was not appended: {e:#}"),
    }
    Ok(())
}

/// Sets `node`'s features to its own plus `ours`; returns them.
fn publish(hooks: &Hooks, node: &str, current: &[String], ours: &[String], dry_run: bool) -> Result<Vec<String>> {
    let all = cluster::merge_features(current, ours);
    if !dry_run && all != current {
        let list = all.join(",");
        hooks.scontrol(&[
            "update",
            &format!("NodeName={node}"),
            &format!("AvailableFeatures={list}"),
            &format!("ActiveFeatures={list}"),
        ])?;
    }
    Ok(all)
}

fn features(args: FeaturesArgs) -> Result<()> {
    let hooks = Hooks::load(args.config.as_deref())?;
    let listing = hooks.scontrol(&["show", "nodes", "--oneliner"])?;
    let nodes = slurm::parse_nodes_oneline(&listing)?;
    let wanted: Vec<&slurm::NodeLine> =
        nodes.iter().filter(|n| args.node.is_empty() || args.node.contains(&n.name)).collect();
    for n in &args.node {
        if !nodes.iter().any(|x| &x.name == n) {
            bail!("Slurm has no node {n}");
        }
    }
    let (log, key) = hooks.open()?;
    let mut fleet = fleet::load(log.as_ref(), &key).context("reading the fleet")?;
    let now = OffsetDateTime::now_utc();
    chipledger_inference::node::locate(&mut fleet, log.as_ref(), None, &hooks.policy, now)
        .context("reading the location proofs")?;
    for n in wanted {
        let standing = cluster::standing(&hooks.policy, &fleet, hooks.host_of(&n.name), now);
        let ours = cluster::slurm_features(&standing);
        let all = publish(&hooks, &n.name, &n.available_features, &ours, args.dry_run)?;
        println!("{}\t{}", n.name, all.join(","));
    }
    Ok(())
}

fn healthcheck(args: HookArgs) -> Result<()> {
    let hooks = Hooks::load(args.config.as_deref())?;
    let node = node_name(args.node)?;
    let state = slurm::parse_node(&hooks.scontrol(&["show", "node", &node])?)?;
    let host = hooks.host_of(&node).to_string();
    let now = OffsetDateTime::now_utc();
    let (verdict, fleet) = match hooks.host_fleet(&host) {
        Ok((_, _, fleet)) => {
            (cluster::judge_node(&hooks.policy, &fleet, &host, state.gres_gpus, now).map_err(|r| r.0), Some(fleet))
        }
        Err(e) => match unreachable(&hooks) {
            Some(_) if hooks.policy.allow_when_ledger_unreachable => return Ok(()),
            Some(why) => (Err(one_line(&format!("{REASON_PREFIX} ledger unreachable: {why}"))), None),
            None => (Err(one_line(&format!("{REASON_PREFIX} reading the ledger: {e:#}"))), None),
        },
    };
    let ours = state.reason.as_deref().is_some_and(|r| r.starts_with(REASON_PREFIX));
    // Drain or resume first: the features are refreshed after, and a failure there is reported,
    // never a reason to skip the drain.
    match verdict {
        Ok(gpus) => {
            if state.drained() && ours {
                hooks.scontrol(&["update", &format!("NodeName={node}"), "State=RESUME"])?;
                eprintln!("chipledger: {node}: its {gpus} GPU(s) qualify again; resumed");
            }
        }
        Err(reason) => {
            // A node someone else drained keeps their reason.
            let someone_elses = state.drained() && !ours;
            let already = state.drained() && state.reason.as_deref() == Some(reason.as_str());
            if !someone_elses && !already {
                hooks.drain(&node, &reason)?;
                eprintln!("chipledger: {node}: drained: {reason}");
            }
        }
    }
    if let Some(fleet) = fleet {
        let standing = cluster::standing(&hooks.policy, &fleet, &host, now);
        if let Err(e) = publish(&hooks, &node, &state.available_features, &cluster::slurm_features(&standing), false) {
            eprintln!("chipledger: {node}: the features were not updated: {e:#}");
        }
    }
    Ok(())
}
