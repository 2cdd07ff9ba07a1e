//! `chipledger k8s …`: verdicts for Kubernetes — node-feature-discovery labels for a node
//! (`labels`) and DRA `DeviceTaintRule` objects for every GPU that does not qualify (`taints`).
//! It writes files and prints objects; `kubectl` (or GitOps) applies them — no cluster API is
//! called from here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chipledger_domain::fleet;
use chipledger_domain::keys::VerifierKey;
use chipledger_inference::cluster;
use chipledger_inference::policy::Policy;
use time::OffsetDateTime;

use crate::datadir::{self, LedgerTarget};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// node-feature-discovery's local feature file for one node (`chipledger-attested=true`,
    /// `chipledger-lawful=…`, `chipledger-class-3a090a1=true`, …), expiring when its oldest
    /// attestation ages out of the policy.
    Labels(LabelsArgs),
    /// A DRA DeviceTaintRule per GPU that does not qualify (NoExecute; NoSchedule when only its
    /// attestation is stale or imported), naming the NVIDIA DRA driver's device whose `uuid`
    /// attribute is the GPU's (from `kubectl get resourceslices -o json`).
    Taints(TaintsArgs),
}

#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// The ledger: a data directory (default: the global --data-dir) or a server's URL.
    #[arg(long, value_name = "DIR|URL")]
    ledger: Option<String>,
    /// The log's verifier key (required with a URL; checked against a local ledger's).
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// An enrolled key (role node, admin or auditor) to sign server requests with.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The policy (default: the built-in policy).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LabelsArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    /// The node's attested host name.
    #[arg(long)]
    host: String,
    /// Write the file here (atomically), e.g.
    /// /etc/kubernetes/node-feature-discovery/features.d/chipledger; default: print it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TaintsArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    /// The DeviceTaintRule API version (resource.k8s.io/v1beta2, or v1alpha3 for Kubernetes 1.33–1.34).
    #[arg(long, default_value = "resource.k8s.io/v1beta2")]
    api_version: String,
    /// The cluster's ResourceSlices: `kubectl get resourceslices -o json` saved to a file.
    #[arg(long, value_name = "FILE")]
    resource_slices: PathBuf,
    /// Keep one file per rule in this directory (`devicetaintrule-chipledger-<uuid>.json`),
    /// removing those of GPUs that qualify again: apply with `kubectl apply --prune
    /// --prune-allowlist=resource.k8s.io/v1beta2/DeviceTaintRule -l
    /// app.kubernetes.io/managed-by=chipledger -f DIR`.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

fn open(
    data_dir: Option<PathBuf>,
    a: &LedgerArgs,
) -> Result<(Box<dyn chipledger_domain::log::LogClient + Send>, VerifierKey, Policy)> {
    let target = match &a.ledger {
        Some(l) => LedgerTarget::parse(l),
        None => LedgerTarget::Dir(datadir::resolve(data_dir)?),
    };
    let pinned = a.log_key.as_deref().map(VerifierKey::parse).transpose().context("--log-key")?;
    let (log, key) = target.open(pinned, a.key.as_deref())?;
    let policy = crate::cmd::inference::load_policy(a.policy.as_deref())?;
    Ok((log, key, policy))
}

pub fn run(data_dir: Option<PathBuf>, cmd: Command) -> Result<()> {
    match cmd {
        Command::Labels(a) => {
            let (log, key, policy) = open(data_dir, &a.ledger)?;
            let mut fleet = fleet::load_host(log.as_ref(), &key, &a.host).context("reading the host's GPUs")?;
            let now = OffsetDateTime::now_utc();
            chipledger_inference::node::locate(&mut fleet, log.as_ref(), Some(&a.host), &policy, now)
                .context("reading the host's location proofs")?;
            let standing = cluster::standing(&policy, &fleet, &a.host, now);
            let text = cluster::nfd_features(&standing);
            match &a.out {
                Some(path) => write_atomic(path, text.as_bytes()),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Command::Taints(a) => {
            let (log, key, policy) = open(data_dir, &a.ledger)?;
            let mut fleet = fleet::load(log.as_ref(), &key).context("reading the fleet")?;
            let now = OffsetDateTime::now_utc();
            chipledger_inference::node::locate(&mut fleet, log.as_ref(), None, &policy, now)
                .context("reading the location proofs")?;
            let size = std::fs::metadata(&a.resource_slices)
                .with_context(|| format!("reading {}", a.resource_slices.display()))?
                .len();
            if size > cluster::MAX_SLICES_BYTES as u64 {
                anyhow::bail!("{} is over {} bytes", a.resource_slices.display(), cluster::MAX_SLICES_BYTES);
            }
            let listing = std::fs::read(&a.resource_slices)
                .with_context(|| format!("reading {}", a.resource_slices.display()))?;
            let devices = cluster::dra_devices(&listing).with_context(|| a.resource_slices.display().to_string())?;
            let out =
                cluster::device_taint_rules(&policy, &fleet, &devices, &a.api_version, OffsetDateTime::now_utc())?;
            let rules = out.rules;
            match &a.out_dir {
                None => {
                    let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": rules });
                    println!("{}", serde_json::to_string_pretty(&list)?);
                }
                // A GPU that should be tainted but has no device in the listing may mean a stale
                // listing: the rules are written, none is removed, and the run fails.
                Some(dir) => sync_dir(dir, &rules, out.without_device.is_empty())?,
            }
            if !out.without_device.is_empty() {
                anyhow::bail!(
                    "{} GPU(s) do not qualify but no {} device in {} has their UUID (no rule written for them, none removed): {}",
                    out.without_device.len(),
                    cluster::DRA_DRIVER,
                    a.resource_slices.display(),
                    out.without_device.join(", ")
                );
            }
            Ok(())
        }
    }
}

const RULE_FILE_PREFIX: &str = "devicetaintrule-chipledger-";

/// Writes each rule to its own file in `dir` and, when `prune`, removes the rule files no
/// longer wanted.
fn sync_dir(dir: &Path, rules: &[serde_json::Value], prune: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut wanted = std::collections::BTreeSet::new();
    for r in rules {
        let name = r["metadata"]["name"].as_str().context("a rule without a name")?;
        let file = format!("{RULE_FILE_PREFIX}{}.json", name.trim_start_matches("chipledger-"));
        write_atomic(&dir.join(&file), serde_json::to_string_pretty(r)?.as_bytes())?;
        wanted.insert(file);
    }
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if prune && name.starts_with(RULE_FILE_PREFIX) && name.ends_with(".json") && !wanted.contains(&name) {
            std::fs::remove_file(dir.join(&name)).with_context(|| format!("removing {name}"))?;
            removed += 1;
        }
    }
    println!("{} DeviceTaintRule(s) in {}; {removed} removed (GPUs that qualify again)", wanted.len(), dir.display());
    Ok(())
}

/// Through a hidden temporary file beside `path` (node-feature-discovery reads every other
/// file in `features.d`).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
