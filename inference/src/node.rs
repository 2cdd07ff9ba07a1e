//! The inference node's steps around a run: plan (fleet at a checkpoint × policy × model
//! requirements → placement), then the signed provenance report for what actually ran.

use std::path::{Path, PathBuf};

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::LogClient;
use chipledger_domain::merkle::{self, Hash};
use chipledger_domain::note::open_checkpoint;
use chipledger_domain::records::{
    sign_record, AttestationRef, ModelFile, RejectedGpu, RunGpu, RunProvenance, RunTimings, Sampling, FORMAT_VERSION,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::fleet::{self, Fleet};
use crate::placement::{place, Placement};
use crate::policy::Policy;
use crate::report::{ReportFile, REPORT_FORMAT};
use crate::requirements::Requirements;
use crate::runner::{Generation, Model, SamplingConfig};
use crate::Error;

/// A placement and everything it was computed from.
#[derive(Clone, Debug)]
pub struct Plan {
    pub fleet: Fleet,
    pub requirements: Requirements,
    pub placement: Placement,
    pub policy: Policy,
    pub planned_at: OffsetDateTime,
}

/// Reads the fleet at the log's current checkpoint and places the model.
pub fn plan(
    log: &dyn LogClient,
    log_key: &VerifierKey,
    policy: &Policy,
    requirements: Requirements,
    now: OffsetDateTime,
) -> Result<Plan, Error> {
    let mut fleet = fleet::load(log, log_key)?;
    locate(&mut fleet, log, None, policy, now)?;
    let placement = place(policy, &fleet.candidates, &requirements, now);
    Ok(Plan { fleet, requirements, placement, policy: policy.clone(), planned_at: now })
}

/// [`plan`] over one host's GPUs only (`domain::fleet::load_host`: its attestations and those
/// sharing their serials, judged as the whole fleet would judge them): what a serving node that
/// has pinned its GPUs re-reads, whatever the fleet's size.
pub fn plan_host(
    log: &dyn LogClient,
    log_key: &VerifierKey,
    policy: &Policy,
    requirements: Requirements,
    now: OffsetDateTime,
    host: &str,
) -> Result<Plan, Error> {
    let mut fleet = chipledger_domain::fleet::load_host(log, log_key, host)?;
    locate(&mut fleet, log, Some(host), policy, now)?;
    let placement = place(policy, &fleet.candidates, &requirements, now);
    Ok(Plan { fleet, requirements, placement, policy: policy.clone(), planned_at: now })
}

/// Judges the fleet's locations; a failed read stops the plan only when the policy asks where
/// GPUs are (the node's plans and the scheduler hooks alike).
pub fn locate(
    fleet: &mut Fleet,
    log: &dyn LogClient,
    host: Option<&str>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let (max_age, required) = (policy.location.max_age.as_secs(), policy.location.required());
    if let Some(reason) = fleet::locate_if(fleet, log, host, now, max_age, required)? {
        tracing::warn!(%reason, "location proofs not read; the policy does not need them");
    }
    Ok(())
}

impl Plan {
    /// The fleet's entry for a GPU the placement chose.
    pub fn candidate(
        &self,
        uuid: &chipledger_domain::fingerprint::GpuUuid,
    ) -> Result<&crate::placement::Candidate, Error> {
        self.fleet
            .candidates
            .iter()
            .find(|c| &c.uuid == uuid)
            .ok_or_else(|| Error::Refused(format!("placed GPU {uuid} is not in the fleet")))
    }

    /// The refusal message when nothing qualifies: every GPU with every reason.
    pub fn refusal(&self) -> String {
        let mut msg = format!(
            "no host qualifies for {} ({:.1} GiB at context {}) under policy {:?}",
            self.requirements.model.name,
            self.requirements.total_gib(),
            self.requirements.context,
            self.policy.name
        );
        if self.fleet.candidates.is_empty() {
            msg.push_str(": the log holds no attested GPU");
        }
        for line in self.placement.reasons_text() {
            msg.push_str("\n  ");
            msg.push_str(&line);
        }
        msg
    }
}

/// Where the caller asks the model to execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// This node's CPU, whatever GPUs the placement chose (the report says `cpu`).
    Cpu,
    /// The GPU the placement chose, on this node, through CUDA.
    PlacedGpu,
}

/// What this node is now, as the caller read it (the binary probes NVML; this crate does not).
#[derive(Clone, Debug)]
pub struct LiveNode {
    pub hostname: String,
    pub gpus: Vec<chipledger_domain::fingerprint::GpuFacts>,
}

/// The execution decision: the backend, and for a GPU the UUID to show CUDA as its device 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionTarget {
    pub backend: crate::runner::Backend,
    pub visible_device: Option<chipledger_domain::fingerprint::GpuUuid>,
}

/// Decides where a placed plan executes, or refuses: the CPU unless the policy requires the
/// placed GPU to run the model; the placed GPU only when the placement is one GPU, this node is
/// the placed host, and the GPU's live facts (read by `live`, only then) still give the
/// fingerprint its attestation recorded.
pub fn execution_target(
    plan: &Plan,
    requested: Executor,
    live: impl FnOnce() -> Result<LiveNode, Error>,
) -> Result<ExecutionTarget, Error> {
    if !plan.placement.is_placed() {
        return Err(Error::Refused(plan.refusal()));
    }
    let host = plan.placement.host.clone().unwrap_or_default();
    match requested {
        Executor::Cpu if plan.policy.require_gpu_execution => Err(Error::Refused(format!(
            "policy {:?} requires the placed GPU to execute the model; pass --backend cuda on {host} \
             (with a build that has --features cuda)",
            plan.policy.name
        ))),
        Executor::Cpu => Ok(ExecutionTarget { backend: crate::runner::Backend::Cpu, visible_device: None }),
        Executor::PlacedGpu => {
            if plan.placement.chosen.len() != 1 {
                return Err(Error::Refused(format!(
                    "the placement needs {} GPUs and the runner executes on one; plan it here and run it with a \
                     multi-GPU engine",
                    plan.placement.chosen.len()
                )));
            }
            let node = live()?;
            if node.hostname != host {
                return Err(Error::Refused(format!(
                    "the run is placed on {host}, and this node is {}: run it there for --backend cuda",
                    node.hostname
                )));
            }
            check_live(plan, &node.gpus)?;
            // CUDA numbers only the devices it is shown: the placed GPU becomes device 0.
            Ok(ExecutionTarget {
                backend: crate::runner::Backend::Cuda { ordinal: 0 },
                visible_device: Some(plan.placement.chosen[0].clone()),
            })
        }
    }
}

/// Before a run on a GPU: the GPU's live facts (a fresh NVML probe) must give the fingerprint
/// its attestation recorded; otherwise the card, its firmware or the host changed since, and the
/// run is refused until the agent attests again.
pub fn check_live(plan: &Plan, live: &[chipledger_domain::fingerprint::GpuFacts]) -> Result<(), Error> {
    for uuid in &plan.placement.chosen {
        let c = plan.candidate(uuid)?;
        let Some(facts) = live.iter().find(|f| f.uuid.as_ref() == Some(uuid)) else {
            return Err(Error::Refused(format!("GPU {uuid} was placed but this host's NVML does not see it")));
        };
        let digest = facts.fingerprint().digest();
        if digest != c.fingerprint_digest {
            return Err(Error::Refused(format!(
                "GPU {uuid} now has fingerprint {digest}, but its attestation at log index {} recorded {}: \
                 the card, its firmware or its host changed; re-attest it (chipledger agent attest) before running",
                c.attestation_index, c.fingerprint_digest
            )));
        }
    }
    Ok(())
}

/// What ran, for the report.
#[derive(Clone, Debug)]
pub struct Execution {
    pub run_id: String,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
    pub model_name: String,
    pub model_files: Vec<ModelFile>,
    pub prompt: String,
    pub output: String,
    pub sampling: Sampling,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub timings: RunTimings,
    /// The backend that actually executed (`cpu`, `cuda:0`).
    pub backend: String,
}

/// The circumstances of one generation, for [`Execution::new`].
#[derive(Clone, Copy, Debug)]
pub struct RunContext<'a> {
    pub prompt: &'a str,
    pub sampling: SamplingConfig,
    pub load_ms: u64,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
}

impl Execution {
    /// What a runner generation executed, as the report states it.
    pub fn new(model: &Model, g: &Generation, ctx: RunContext<'_>) -> Execution {
        Execution {
            run_id: new_run_id(),
            started_at: ctx.started_at,
            finished_at: ctx.finished_at,
            model_name: model.name.clone(),
            model_files: model.files.clone(),
            prompt: ctx.prompt.to_string(),
            output: g.text.clone(),
            sampling: Sampling {
                temperature: ctx.sampling.temperature,
                top_p: ctx.sampling.top_p,
                seed: ctx.sampling.seed,
                max_tokens: ctx.sampling.max_tokens as u32,
            },
            prompt_tokens: g.prompt_tokens as u32,
            generated_tokens: g.tokens.len() as u32,
            timings: RunTimings {
                load_ms: ctx.load_ms,
                prefill_ms: g.prefill_ms.round() as u64,
                decode_ms: g.decode_ms.round() as u64,
            },
            backend: model.backend(),
        }
    }
}

/// The node's identity.
pub struct NodeKey {
    pub key: SigningKey,
    pub host: String,
    /// Where the last counter is kept (counters only grow).
    pub state: PathBuf,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").field("key_id", &self.key.key_id()).field("host", &self.host).finish_non_exhaustive()
    }
}

#[derive(Default, Serialize, Deserialize)]
struct NodeState {
    last_counter: u64,
}

impl NodeKey {
    pub(crate) fn next_counter(&self, now: OffsetDateTime) -> Result<u64, Error> {
        let last = match std::fs::read(&self.state) {
            Ok(b) => serde_json::from_slice::<NodeState>(&b).map(|s| s.last_counter).unwrap_or(0),
            Err(_) => 0,
        };
        let micros = u64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(0);
        let counter = micros.max(last + 1);
        if let Some(dir) = self.state.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let text = serde_json::to_vec(&NodeState { last_counter: counter }).unwrap_or_default();
        std::fs::write(&self.state, text).map_err(Error::io(&self.state))?;
        Ok(counter)
    }
}

/// Builds the `run-provenance/v1` record: each used GPU with its attestation's inclusion proof
/// against the plan's checkpoint, every GPU not chosen with its reasons.
pub fn provenance(log: &dyn LogClient, node: &NodeKey, plan: &Plan, exec: &Execution) -> Result<RunProvenance, Error> {
    let gpus = placed_gpus(log, plan, exec.started_at)?;
    let rejected = plan
        .placement
        .not_chosen
        .iter()
        .map(|n| RejectedGpu {
            uuid: n.uuid.clone(),
            host: n.host.clone(),
            reason: n.reasons.iter().map(|r| r.explain()).collect::<Vec<_>>().join("; "),
        })
        .collect();
    Ok(RunProvenance {
        format_version: FORMAT_VERSION,
        counter: node.next_counter(exec.started_at)?,
        run_id: exec.run_id.clone(),
        started_at: exec.started_at,
        finished_at: exec.finished_at,
        node_key_id: node.key.key_id(),
        node_host: node.host.clone(),
        policy_name: plan.policy.name.clone(),
        policy_digest: plan.policy.digest,
        gpus,
        rejected,
        checkpoint: plan.fleet.checkpoint_text.clone(),
        model_name: exec.model_name.clone(),
        model_files: exec.model_files.clone(),
        prompt_digest: Hash::sha256(exec.prompt.as_bytes()),
        output_digest: Hash::sha256(exec.output.as_bytes()),
        sampling: exec.sampling.clone(),
        prompt_tokens: exec.prompt_tokens,
        generated_tokens: exec.generated_tokens,
        timings: exec.timings.clone(),
        backend: exec.backend.clone(),
    })
}

/// Each GPU the plan placed, with its attestation's inclusion proof against the plan's checkpoint
/// (checked here) and its age at `at`.
pub fn placed_gpus(log: &dyn LogClient, plan: &Plan, at: OffsetDateTime) -> Result<Vec<RunGpu>, Error> {
    let cp = &plan.fleet.checkpoint;
    let mut gpus = Vec::new();
    for uuid in &plan.placement.chosen {
        let c = plan.candidate(uuid)?;
        let entry =
            plan.fleet.attestations.get(uuid).ok_or_else(|| Error::Refused(format!("no attestation for {uuid}")))?;
        let proof = log.inclusion_proof(entry.index, cp.size)?;
        merkle::verify_inclusion(entry.index, cp.size, &entry.leaf_hash, &proof, &cp.root)?;
        gpus.push(RunGpu {
            uuid: uuid.clone(),
            serial: c.serial.clone(),
            sku: c.sku.clone(),
            classification: c.classification.clone().unwrap_or_else(|| "needs review".into()),
            acquisition_verdict: c.verdict.label().to_string(),
            attestation: AttestationRef {
                log_index: entry.index,
                leaf_hash: entry.leaf_hash,
                inclusion_proof: proof,
                age_seconds: (at - c.observed_at).whole_seconds(),
            },
        });
    }
    Ok(gpus)
}

/// Signs a node's record and appends it; checks the receipt (leaf hash, inclusion, the log's
/// signature) and that the log grew consistently from `placed_at`, the checkpoint the placement
/// read. Returns the envelope's bytes, the receipt and that consistency proof.
pub(crate) fn append_signed<P: chipledger_domain::records::Predicate>(
    log: &dyn LogClient,
    log_key: &VerifierKey,
    node: &NodeKey,
    record: &P,
    placed_at: &str,
) -> Result<(Vec<u8>, chipledger_domain::log::Receipt, Vec<Hash>), Error> {
    let envelope = sign_record(record, &node.key)?.to_json();
    let receipt = log
        .submit(std::slice::from_ref(&envelope))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Report("the log answered with no receipt".into()))?;
    let cp = receipt.verify(&envelope, log_key)?;
    let placed = open_checkpoint(placed_at.as_bytes(), std::slice::from_ref(log_key), None)?.checkpoint;
    if placed.size > cp.size {
        return Err(Error::Report("the log's receipt is older than the checkpoint the placement read".into()));
    }
    let consistency_proof =
        if placed.size < cp.size { log.consistency_proof(placed.size, cp.size)? } else { Vec::new() };
    chipledger_domain::log::check_consistent(&placed, &cp, &consistency_proof)?;
    Ok((envelope, receipt, consistency_proof))
}

/// Signs the record, appends it, checks the receipt, and returns the self-contained report file.
pub fn submit(
    log: &dyn LogClient,
    log_key: &VerifierKey,
    node: &NodeKey,
    record: &RunProvenance,
    prompt: &str,
    output: &str,
) -> Result<ReportFile, Error> {
    let (envelope, receipt, consistency_proof) = append_signed(log, log_key, node, record, &record.checkpoint)?;
    let mut cited: Vec<u64> = record.gpus.iter().map(|g| g.attestation.log_index).collect();
    cited.sort_unstable();
    cited.dedup();
    let attestations = cited.into_iter().map(|i| log.entry(i).map(|e| e.envelope)).collect::<Result<Vec<_>, _>>()?;
    Ok(ReportFile {
        attestations,
        format: REPORT_FORMAT.to_string(),
        envelope: String::from_utf8_lossy(&envelope).into_owned(),
        node_key: VerifierKey::new(&node.host, node.key.public_key())?.to_string(),
        log_key: log_key.to_string(),
        receipt,
        consistency_proof,
        prompt: prompt.to_string(),
        output: output.to_string(),
    })
}

/// A run id: 16 random bytes, hex.
pub fn new_run_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a report file.
pub fn read_report(path: &Path) -> Result<ReportFile, Error> {
    let text = std::fs::read(path).map_err(Error::io(path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Report(format!("{}: not a report file: {e}", path.display())))
}
