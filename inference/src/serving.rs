//! The serving node's decisions and records, without HTTP (`chipledger-gateway` serves them):
//! what a placement lets the node serve on and until when ([`Placed`]), the `serving-batch/v1`
//! record over the responses of one interval ([`batch_record`]), its append ([`submit_batch`]),
//! and each response's receipt ([`receipt`]).

use chipledger_domain::keys::VerifierKey;
use chipledger_domain::log::{LogClient, Receipt};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{ModelFile, RunGpu, FORMAT_VERSION};
use chipledger_domain::serving::{gpu_set_digest, model_digest, BatchTree, ServingBatch};
use time::OffsetDateTime;

use crate::node::{placed_gpus, NodeKey, Plan};
use crate::report::{ServingReceipt, SERVING_RECEIPT_FORMAT};
use crate::Error;

/// What a placement lets the node serve on: the GPUs with their attestations' proofs, the
/// entries themselves (receipts carry them), and when the first of them ages out.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub host: String,
    pub policy_name: String,
    pub policy_digest: Hash,
    /// The checkpoint the placement read, verbatim, and its size.
    pub checkpoint: String,
    pub checkpoint_size: u64,
    pub gpus: Vec<RunGpu>,
    pub gpu_set: Hash,
    /// Shared by every batch and receipt of this placement.
    pub attestations: std::sync::Arc<Vec<String>>,
    /// The oldest placed GPU's attestation plus the policy's age limit: past it, the placement
    /// no longer holds.
    pub expires_at: OffsetDateTime,
}

/// The placement of `plan` as the node serves on it, or the refusal (every GPU's reasons).
pub fn placed(log: &dyn LogClient, plan: &Plan) -> Result<Placed, Error> {
    let Some(host) = plan.placement.host.clone() else {
        return Err(Error::Refused(plan.refusal()));
    };
    let gpus = placed_gpus(log, plan, plan.planned_at)?;
    let mut cited: Vec<u64> = gpus.iter().map(|g| g.attestation.log_index).collect();
    cited.sort_unstable();
    cited.dedup();
    let attestations = cited.into_iter().map(|i| log.entry(i).map(|e| e.envelope)).collect::<Result<Vec<_>, _>>()?;
    let max_age = time::Duration::try_from(plan.policy.max_attestation_age).unwrap_or(time::Duration::MAX);
    let oldest = plan
        .placement
        .chosen
        .iter()
        .filter_map(|u| plan.candidate(u).ok())
        .map(|c| c.observed_at)
        .min()
        .unwrap_or(plan.planned_at);
    let uuids: Vec<&str> = gpus.iter().map(|g| g.uuid.as_str()).collect();
    Ok(Placed {
        host,
        policy_name: plan.policy.name.clone(),
        policy_digest: plan.policy.digest,
        checkpoint: plan.fleet.checkpoint_text.clone(),
        checkpoint_size: plan.fleet.checkpoint.size,
        gpu_set: gpu_set_digest(&uuids),
        gpus,
        attestations: std::sync::Arc::new(attestations),
        expires_at: oldest.checked_add(max_age).unwrap_or(time::PrimitiveDateTime::MAX.assume_utc()),
    })
}

/// The model a node serves, as batches name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedModel {
    pub name: String,
    pub files: Vec<ModelFile>,
    pub digest: Hash,
    /// `candle` or `upstream`.
    pub engine: String,
    pub backend: String,
}

impl ServedModel {
    pub fn new(name: String, files: Vec<ModelFile>, engine: &str, backend: String) -> ServedModel {
        ServedModel { digest: model_digest(&name, &files), name, files, engine: engine.to_string(), backend }
    }
}

/// The `serving-batch/v1` record over one interval's leaves (each leaf's bytes, in order).
pub fn batch_record(
    node: &NodeKey,
    placed: &Placed,
    model: &ServedModel,
    opened_at: OffsetDateTime,
    closed_at: OffsetDateTime,
    tree: &BatchTree,
) -> Result<ServingBatch, Error> {
    Ok(ServingBatch {
        format_version: FORMAT_VERSION,
        counter: node.next_counter(closed_at)?,
        node_host: node.host.clone(),
        node_key_id: node.key.key_id(),
        opened_at,
        closed_at,
        model_name: model.name.clone(),
        model_files: model.files.clone(),
        model_digest: model.digest,
        engine: model.engine.clone(),
        backend: model.backend.clone(),
        policy_name: placed.policy_name.clone(),
        policy_digest: placed.policy_digest,
        checkpoint: placed.checkpoint.clone(),
        gpu_host: placed.host.clone(),
        gpus: placed.gpus.clone(),
        expires_at: placed.expires_at,
        gpu_set: placed.gpu_set,
        responses: tree.size(),
        root: tree.root()?,
    })
}

/// A batch as appended: what every receipt of its responses shares.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendedBatch {
    pub envelope: String,
    pub node_key: String,
    pub log_key: String,
    pub receipt: Receipt,
    pub consistency_proof: Vec<Hash>,
    pub attestations: std::sync::Arc<Vec<String>>,
}

/// Signs the batch, appends it, checks the receipt and the log's consistency from the
/// placement's checkpoint.
pub fn submit_batch(
    log: &dyn LogClient,
    log_key: &VerifierKey,
    node: &NodeKey,
    placed: &Placed,
    record: &ServingBatch,
) -> Result<AppendedBatch, Error> {
    let (envelope, receipt, consistency_proof) =
        crate::node::append_signed(log, log_key, node, record, &placed.checkpoint)?;
    Ok(AppendedBatch {
        envelope: String::from_utf8_lossy(&envelope).into_owned(),
        node_key: VerifierKey::new(&node.host, node.key.public_key())?.to_string(),
        log_key: log_key.to_string(),
        receipt,
        consistency_proof,
        attestations: placed.attestations.clone(),
    })
}

/// The receipt of leaf `index` of an appended batch.
pub fn receipt(
    batch: &AppendedBatch,
    tree: &BatchTree,
    id: &str,
    leaf: &[u8],
    index: u64,
) -> Result<ServingReceipt, Error> {
    Ok(ServingReceipt {
        format: SERVING_RECEIPT_FORMAT.to_string(),
        id: id.to_string(),
        leaf: String::from_utf8_lossy(leaf).into_owned(),
        leaf_index: index,
        batch_proof: tree.proof(index)?,
        envelope: batch.envelope.clone(),
        node_key: batch.node_key.clone(),
        log_key: batch.log_key.clone(),
        receipt: batch.receipt.clone(),
        consistency_proof: batch.consistency_proof.clone(),
        attestations: batch.attestations.as_ref().clone(),
    })
}

/// The plan a serving node holds: with `pinned` GPUs (the ones its engine was started on), those
/// exactly, each still qualifying under the policy and all on one host; without, the plan's own
/// placement. Otherwise the refusal, naming every GPU that fails and why.
pub fn hold(plan: &Plan, pinned: Option<&[chipledger_domain::fingerprint::GpuUuid]>) -> Result<Plan, Error> {
    let Some(pinned) = pinned else {
        return if plan.placement.is_placed() { Ok(plan.clone()) } else { Err(Error::Refused(plan.refusal())) };
    };
    let mut reasons = Vec::new();
    let mut hosts = std::collections::BTreeSet::new();
    for uuid in pinned {
        match plan.fleet.candidates.iter().find(|c| &c.uuid == uuid) {
            None => reasons.push(format!("{uuid}: no attestation of it on the host read (moved, or never attested)")),
            Some(c) => {
                hosts.insert(c.host.clone());
                let why = crate::placement::disqualify(&plan.policy, c, plan.planned_at);
                if !why.is_empty() {
                    let text: Vec<String> = why.iter().map(|r| r.explain()).collect();
                    reasons.push(format!("{uuid} on {}: {}", c.host, text.join("; ")));
                }
            }
        }
    }
    if hosts.len() > 1 {
        reasons.push(format!("the GPUs are on {} hosts, not one", hosts.len()));
    }
    if !reasons.is_empty() {
        return Err(Error::Refused(format!(
            "the GPUs this node serves on do not qualify under policy {:?}: {}",
            plan.policy.name,
            reasons.join("; ")
        )));
    }
    let mut held = plan.clone();
    held.placement.host = hosts.into_iter().next();
    held.placement.chosen = pinned.to_vec();
    Ok(held)
}
