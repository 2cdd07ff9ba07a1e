//! The provenance report: a `run-provenance/v1` record signed by the node key, appended to the
//! log, and saved as a self-contained JSON file that `chipledger report verify` checks offline —
//! the record's signature, its inclusion in the log, the checkpoint the placement read and every
//! used GPU's attestation inclusion under it, the prompt and output digests, and (given the
//! files) the model's digests.

use std::path::Path;

use chipledger_domain::dsse::Envelope;
use chipledger_domain::keys::{PublicKey, VerifierKey};
use chipledger_domain::log::Receipt;
use chipledger_domain::merkle::{self, Hash};
use chipledger_domain::note::open_checkpoint;
use chipledger_domain::records::{Record, RunProvenance};
use chipledger_domain::serving::{ServedResponse, ServingBatch};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The report file: the signed record plus what an offline verifier needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportFile {
    pub format: String,
    /// The DSSE envelope exactly as appended to the log (its JSON text, byte for byte).
    pub envelope: String,
    /// The node's verifier key (the log accepted the record only under its enrolled key).
    pub node_key: String,
    /// The log's verifier key the receipt is signed with (pin it with `--log-key`).
    pub log_key: String,
    pub receipt: Receipt,
    /// Consistency from the placement's checkpoint to the receipt's.
    pub consistency_proof: Vec<Hash>,
    /// The prompt and output the digests are over.
    pub prompt: String,
    pub output: String,
    /// The attestation entries the report cites (each envelope's exact text, once per entry), so
    /// that a verifier judges the GPUs from their facts, offline.
    pub attestations: Vec<String>,
}

/// v2 carries the cited attestations (v1 carried only their inclusion proofs).
pub const REPORT_FORMAT: &str = "chipledger-run-report/v2";

/// What verification established.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub report: RunProvenance,
    pub log_index: u64,
    pub tree_size: u64,
    pub origin: String,
    pub gpus_checked: usize,
    pub model_files_checked: usize,
    /// True when the log key came from the file rather than from the caller.
    pub log_key_from_file: bool,
}

fn bad(what: impl Into<String>) -> Error {
    Error::Report(what.into())
}

/// Checks a report file offline. `log_key` pins the log's key (else the file's is used and the
/// result says so); `model` re-digests the model files when given (a directory or a GGUF).
pub fn verify(file: &ReportFile, log_key: Option<&VerifierKey>, model: Option<&Path>) -> Result<Verified, Error> {
    if file.format == "chipledger-run-report/v1" {
        return Err(bad(
            "format chipledger-run-report/v1 cites attestations without carrying them, so its GPUs cannot be judged \
             offline; the log still holds the run (chipledger ledger log --kind run-provenance)",
        ));
    }
    if file.format != REPORT_FORMAT {
        return Err(bad(format!("format {:?} is not {REPORT_FORMAT}", file.format)));
    }
    let pinned = Pinned::new(&file.log_key, log_key)?;
    // 1-2. The record is in the log, signed by the node key, and is a run report.
    let (record, receipt_cp, public) = signed_in_log(&file.envelope, &file.receipt, &file.node_key, &pinned.key)?;
    let Record::RunProvenance(report) = record else {
        return Err(bad("the record is not a run-provenance/v1 record"));
    };
    if report.node_key_id != public.key_id() {
        return Err(bad("the record names another node key than the one that signed it"));
    }
    // 3-4. The placement's checkpoint, its GPUs' attestations.
    placed_gpus(
        &report.checkpoint,
        &receipt_cp,
        &file.consistency_proof,
        &report.gpus,
        &file.attestations,
        &pinned.key,
    )?;
    // 5. Prompt, output and (when given) model files.
    if Hash::sha256(file.prompt.as_bytes()) != report.prompt_digest {
        return Err(bad("the prompt does not match the report's prompt digest"));
    }
    if Hash::sha256(file.output.as_bytes()) != report.output_digest {
        return Err(bad("the output does not match the report's output digest"));
    }
    let mut model_files_checked = 0;
    if let Some(model) = model {
        for f in &report.model_files {
            let path = if model.is_dir() { model.join(&f.path) } else { model.to_path_buf() };
            let digest = crate::runner::file_digest(&path)?;
            if digest != f.sha256 {
                return Err(bad(format!(
                    "model file {} has digest {digest}, the report says {}",
                    path.display(),
                    f.sha256
                )));
            }
            model_files_checked += 1;
        }
    }
    Ok(Verified {
        gpus_checked: report.gpus.len(),
        log_index: file.receipt.index,
        tree_size: receipt_cp.size,
        origin: receipt_cp.origin,
        report: *report,
        model_files_checked,
        log_key_from_file: pinned.from_file,
    })
}

/// The log key a file is checked against: the caller's, or else the file's (and the result says so).
struct Pinned {
    key: VerifierKey,
    from_file: bool,
}

impl Pinned {
    fn new(in_file: &str, pinned: Option<&VerifierKey>) -> Result<Pinned, Error> {
        let file_key = VerifierKey::parse(in_file).map_err(|e| bad(format!("log_key: {e}")))?;
        match pinned {
            Some(key) if *key != file_key => {
                Err(bad(format!("the file names log key {file_key}, not the pinned {key}")))
            }
            Some(key) => Ok(Pinned { key: key.clone(), from_file: false }),
            None => Ok(Pinned { key: file_key, from_file: true }),
        }
    }
}

/// A node's record in the log: the envelope's leaf hash and inclusion under a checkpoint signed
/// by the log, and its signature by the node key the file names. Returns the record, the
/// receipt's checkpoint and the node's key.
fn signed_in_log(
    envelope: &str,
    receipt: &Receipt,
    node_key: &str,
    log_key: &VerifierKey,
) -> Result<(Record, chipledger_domain::note::Checkpoint, PublicKey), Error> {
    let envelope = envelope.as_bytes();
    let receipt_cp =
        receipt.verify(envelope, log_key).map_err(|e| bad(format!("the record's inclusion in the log: {e}")))?;
    let env = Envelope::from_json(envelope)?;
    let node_key = VerifierKey::parse(node_key).map_err(|e| bad(format!("node_key: {e}")))?;
    let public: &PublicKey = node_key.public_key();
    let payload = env.verify(public).map_err(|e| bad(format!("the record's signature: {e}")))?;
    Ok((Record::from_payload(&payload)?, receipt_cp, *public))
}

/// The placement's checkpoint is the log's and the receipt's extends it; every placed GPU was
/// attested in the log as of that checkpoint, by the entry the record cites (which the file
/// carries), whose facts give the SKU and class the record states. Returns each GPU's attested host.
fn placed_gpus(
    checkpoint: &str,
    receipt_cp: &chipledger_domain::note::Checkpoint,
    consistency_proof: &[Hash],
    gpus: &[chipledger_domain::records::RunGpu],
    attestations: &[String],
    log_key: &VerifierKey,
) -> Result<Vec<String>, Error> {
    let cp = open_checkpoint(checkpoint.as_bytes(), std::slice::from_ref(log_key), None)
        .map_err(|e| bad(format!("the placement's checkpoint: {e}")))?
        .checkpoint;
    if cp.size > receipt_cp.size {
        return Err(bad("the placement's checkpoint is newer than the record's receipt"));
    }
    chipledger_domain::log::check_consistent(&cp, receipt_cp, consistency_proof)
        .map_err(|e| bad(format!("the log between the placement and the record: {e}")))?;
    let catalog = chipledger_domain::catalog::Catalog::embedded()?;
    let mut hosts = Vec::with_capacity(gpus.len());
    for g in gpus {
        g.attestation.verify(&cp).map_err(|e| bad(format!("attestation of {}: {e}", g.uuid)))?;
        let cited = attestations
            .iter()
            .find(|e| merkle::leaf_hash(e.as_bytes()) == g.attestation.leaf_hash)
            .ok_or_else(|| {
                bad(format!("the file does not carry entry {}, which it cites for {}", g.attestation.log_index, g.uuid))
            })?;
        hosts.push(chipledger_domain::standing::check_citation(catalog, cited.as_bytes(), g).map_err(bad)?);
    }
    Ok(hosts)
}

/// A serving node's receipt for one response (`GET /v1/provenance/{id}`): the response's leaf,
/// its inclusion in the batch the node signed, the batch record's inclusion in the log, and the
/// attestations of the placed GPUs — all a verifier needs, offline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingReceipt {
    pub format: String,
    pub id: String,
    /// The leaf's bytes ([`ServedResponse::to_leaf`]), as text.
    pub leaf: String,
    pub leaf_index: u64,
    /// The leaf's inclusion proof under the batch's root.
    pub batch_proof: Vec<Hash>,
    /// The `serving-batch/v1` envelope exactly as appended.
    pub envelope: String,
    pub node_key: String,
    pub log_key: String,
    pub receipt: Receipt,
    /// Consistency from the placement's checkpoint to the receipt's.
    pub consistency_proof: Vec<Hash>,
    /// The attestation entries the batch cites (each envelope's exact text).
    pub attestations: Vec<String>,
}

pub const SERVING_RECEIPT_FORMAT: &str = "chipledger-serving-receipt/v1";

/// What checking a serving receipt established.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedServing {
    pub batch: ServingBatch,
    pub response: ServedResponse,
    pub log_index: u64,
    pub tree_size: u64,
    pub origin: String,
    pub log_key_from_file: bool,
    /// Whether the caller's response (and request) bytes were compared with the leaf's digests.
    pub response_checked: bool,
    pub request_checked: bool,
}

/// Checks a serving receipt offline; with the response body as received (and the request body as
/// sent), also that they are the bytes the leaf's digests are over.
pub fn verify_serving(
    file: &ServingReceipt,
    log_key: Option<&VerifierKey>,
    response: Option<&[u8]>,
    request: Option<&[u8]>,
) -> Result<VerifiedServing, Error> {
    if file.format != SERVING_RECEIPT_FORMAT {
        return Err(bad(format!("format {:?} is not {SERVING_RECEIPT_FORMAT}", file.format)));
    }
    let pinned = Pinned::new(&file.log_key, log_key)?;
    let (record, receipt_cp, public) = signed_in_log(&file.envelope, &file.receipt, &file.node_key, &pinned.key)?;
    let Record::ServingBatch(batch) = record else {
        return Err(bad("the record is not a serving-batch/v1 record"));
    };
    if batch.node_key_id != public.key_id() {
        return Err(bad("the batch names another node key than the one that signed it"));
    }
    let hosts = placed_gpus(
        &batch.checkpoint,
        &receipt_cp,
        &file.consistency_proof,
        &batch.gpus,
        &file.attestations,
        &pinned.key,
    )?;
    // The host the batch names is the one its GPUs' attestations were made on.
    if let Some(other) = hosts.iter().find(|h| **h != batch.gpu_host) {
        return Err(bad(format!(
            "the batch names GPU host {:?}, but a GPU's attestation is from {other:?}",
            batch.gpu_host
        )));
    }
    let served =
        chipledger_domain::serving::verify_leaf(&batch, file.leaf_index, file.leaf.as_bytes(), &file.batch_proof)
            .map_err(|e| bad(format!("the response's leaf in its batch: {e}")))?;
    if served.id != file.id {
        return Err(bad(format!("the receipt is for {}, its leaf for {}", file.id, served.id)));
    }
    if let Some(body) = response {
        if Hash::sha256(body) != served.response_sha256 {
            return Err(bad("the response is not the one this receipt records (its SHA-256 differs)"));
        }
    }
    if let Some(body) = request {
        if Hash::sha256(body) != served.request_sha256 {
            return Err(bad("the request is not the one this receipt records (its SHA-256 differs)"));
        }
    }
    Ok(VerifiedServing {
        batch: *batch,
        response: served,
        log_index: file.receipt.index,
        tree_size: receipt_cp.size,
        origin: receipt_cp.origin,
        log_key_from_file: pinned.from_file,
        response_checked: response.is_some(),
        request_checked: request.is_some(),
    })
}
