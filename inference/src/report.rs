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
    let file_key = VerifierKey::parse(&file.log_key).map_err(|e| bad(format!("log_key: {e}")))?;
    let key = log_key.cloned().unwrap_or_else(|| file_key.clone());
    if log_key.is_some() && file_key != key {
        return Err(bad(format!("the file names log key {file_key}, not the pinned {key}")));
    }
    // 1. The record is in the log: leaf hash and inclusion under a checkpoint signed by the log.
    let envelope = file.envelope.as_bytes().to_vec();
    let receipt_cp =
        file.receipt.verify(&envelope, &key).map_err(|e| bad(format!("the record's inclusion in the log: {e}")))?;
    // 2. The record is signed by the node key and is a run report.
    let env = Envelope::from_json(&envelope)?;
    let node_key = VerifierKey::parse(&file.node_key).map_err(|e| bad(format!("node_key: {e}")))?;
    let public: &PublicKey = node_key.public_key();
    let payload = env.verify(public).map_err(|e| bad(format!("the record's signature: {e}")))?;
    let Record::RunProvenance(report) = Record::from_payload(&payload)? else {
        return Err(bad("the record is not a run-provenance/v1 record"));
    };
    if report.node_key_id != public.key_id() {
        return Err(bad("the record names another node key than the one that signed it"));
    }
    // 3. The placement's checkpoint is the log's, and the receipt's extends it.
    let cp = open_checkpoint(report.checkpoint.as_bytes(), std::slice::from_ref(&key), None)
        .map_err(|e| bad(format!("the placement's checkpoint: {e}")))?
        .checkpoint;
    if cp.size > receipt_cp.size {
        return Err(bad("the placement's checkpoint is newer than the record's receipt"));
    }
    chipledger_domain::log::check_consistent(&cp, &receipt_cp, &file.consistency_proof)
        .map_err(|e| bad(format!("the log between the placement and the record: {e}")))?;
    // 4. Every GPU used was attested in the log as of the placement's checkpoint, by the entry
    // the report cites, whose facts give the SKU and class the report states.
    let catalog = chipledger_domain::catalog::Catalog::embedded()?;
    for g in &report.gpus {
        g.attestation.verify(&cp).map_err(|e| bad(format!("attestation of {}: {e}", g.uuid)))?;
        let cited =
            file.attestations.iter().find(|e| merkle::leaf_hash(e.as_bytes()) == g.attestation.leaf_hash).ok_or_else(
                || {
                    bad(format!(
                        "the report does not carry entry {}, which it cites for {}",
                        g.attestation.log_index, g.uuid
                    ))
                },
            )?;
        chipledger_domain::standing::check_citation(catalog, cited.as_bytes(), g).map_err(bad)?;
    }
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
        log_key_from_file: log_key.is_none(),
    })
}
