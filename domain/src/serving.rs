//! The serving node's provenance (`chipledger node serve`): each response it finishes becomes a
//! leaf — [`ServedResponse`], the digests of the request and response bytes, the model and the
//! GPU set, and its timings — and every interval the node signs one [`ServingBatch`] record that
//! carries the RFC 9162 Merkle root over that interval's leaves. A response's receipt is its leaf,
//! the leaf's inclusion proof under the batch root and the batch record's inclusion in the log:
//! one log append per interval however many responses it holds.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::keys::KeyId;
use crate::merkle::{self, Hash, MemoryTree};
use crate::records::{ModelFile, Predicate, RecordKind, RunGpu, Subject, MAX_JOB_GPUS};
use crate::Error;

/// The most responses one batch may hold (a node closes a batch before this).
pub const MAX_BATCH_RESPONSES: u64 = 1 << 24;
/// The most model files a batch may name.
pub const MAX_MODEL_FILES: usize = 4096;
const MAX_TEXT: usize = 256;
/// The longest response id.
pub const MAX_RESPONSE_ID: usize = 64;

/// `serving-batch/v1`: the responses a serving node finished in one interval, as a Merkle root,
/// with the model and the placed GPUs they were served on. Signed by a key enrolled with role
/// `node` for `node_host` (the log refuses one naming another host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingBatch {
    pub format_version: u32,
    pub counter: u64,
    pub node_host: String,
    pub node_key_id: KeyId,
    /// When the first response of the batch finished, and when the batch was closed.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub closed_at: OffsetDateTime,
    pub model_name: String,
    /// The weights' files and digests; empty when the node fronts an engine whose files it does
    /// not hold (the name is then all the batch says of the model).
    pub model_files: Vec<ModelFile>,
    /// [`model_digest`] of `model_name` and `model_files`: what each leaf names.
    pub model_digest: Hash,
    /// `candle` (the node's own engine) or `upstream` (an OpenAI-compatible engine the node fronts).
    pub engine: String,
    /// Where the responses executed, e.g. `cpu`, `cuda:0`, or the upstream engine's address on
    /// the placed GPUs.
    pub backend: String,
    pub policy_name: String,
    pub policy_digest: Hash,
    /// The signed checkpoint the placement read (verbatim); the GPUs' inclusion proofs are under it.
    pub checkpoint: String,
    /// The host the placed GPUs are attested on (not always `node_host`: a node may front an
    /// engine on another host).
    pub gpu_host: String,
    /// The placed GPUs, each with its attestation's inclusion proof.
    pub gpus: Vec<RunGpu>,
    /// When the oldest of their attestations ages out under the policy: no response of the batch
    /// was admitted after it.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// [`gpu_set_digest`] of the GPUs: what each leaf names.
    pub gpu_set: Hash,
    /// How many leaves `root` is over.
    pub responses: u64,
    /// RFC 9162 Merkle tree hash over the leaves (each leaf's bytes as [`ServedResponse::to_leaf`]).
    pub root: Hash,
}

impl Predicate for ServingBatch {
    const KIND: RecordKind = RecordKind::ServingBatch;

    fn subjects(&self) -> Vec<Subject> {
        vec![Subject::sha256(format!("serving:{}/{}", self.node_host, self.counter), &self.root)]
    }

    fn check(&self) -> Result<(), String> {
        for (what, v) in [
            ("node_host", &self.node_host),
            ("gpu_host", &self.gpu_host),
            ("model_name", &self.model_name),
            ("engine", &self.engine),
            ("backend", &self.backend),
            ("policy_name", &self.policy_name),
        ] {
            if v.trim().is_empty() || v.len() > MAX_TEXT {
                return Err(format!("{what} must be 1 to {MAX_TEXT} bytes"));
            }
        }
        if self.responses == 0 || self.responses > MAX_BATCH_RESPONSES {
            return Err(format!("a batch holds 1 to {MAX_BATCH_RESPONSES} responses, not {}", self.responses));
        }
        if self.closed_at < self.opened_at {
            return Err("the batch closes before it opens".into());
        }
        if self.gpus.is_empty() || self.gpus.len() > MAX_JOB_GPUS {
            return Err(format!("a placement holds 1 to {MAX_JOB_GPUS} GPUs, not {}", self.gpus.len()));
        }
        // No files: a model the node fronts but does not hold (a preset served upstream).
        if self.model_files.len() > MAX_MODEL_FILES {
            return Err(format!("a model has at most {MAX_MODEL_FILES} files"));
        }
        if model_digest(&self.model_name, &self.model_files) != self.model_digest {
            return Err("model_digest is not the digest of model_name and model_files".into());
        }
        let uuids: Vec<&str> = self.gpus.iter().map(|g| g.uuid.as_str()).collect();
        if gpu_set_digest(&uuids) != self.gpu_set {
            return Err("gpu_set is not the digest of the GPUs' UUIDs".into());
        }
        Ok(())
    }
}

/// One finished response, as a batch leaf. The request and response digests are over the exact
/// bytes received and sent (for a stream, every server-sent event byte, `[DONE]` included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedResponse {
    /// The response's id (its `id`, `system_fingerprint` and `x-chipledger-provenance`).
    pub id: String,
    pub request_sha256: Hash,
    pub response_sha256: Hash,
    pub model_digest: Hash,
    pub gpu_set: Hash,
    pub stream: bool,
    /// When the request arrived, in Unix milliseconds.
    pub received_at_ms: i64,
    /// Waiting for the engine, to the first token, and in all.
    pub queue_ms: u64,
    pub first_token_ms: u64,
    pub total_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl ServedResponse {
    /// The leaf's bytes (JSON, fields in declaration order): what the leaf hash is over and what a
    /// receipt carries.
    pub fn to_leaf(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a receipt's leaf bytes.
    pub fn from_leaf(bytes: &[u8]) -> Result<ServedResponse, Error> {
        let r: ServedResponse = serde_json::from_slice(bytes)
            .map_err(|e| Error::Json { what: "served response leaf", message: e.to_string() })?;
        if r.id.is_empty() || r.id.len() > MAX_RESPONSE_ID {
            return Err(Error::Statement { reason: format!("a response id is 1 to {MAX_RESPONSE_ID} bytes") });
        }
        Ok(r)
    }
}

/// The digest a leaf gives for a model: SHA-256 over its name, then each file's path and digest,
/// one line each (`name LF`, then `path NUL hex LF`, in the record's order) — a model served
/// without files (a preset in front of an engine) is still told apart by its name.
pub fn model_digest(name: &str, files: &[ModelFile]) -> Hash {
    let mut text = Vec::new();
    text.extend_from_slice(name.as_bytes());
    text.push(b'\n');
    for f in files {
        text.extend_from_slice(f.path.as_bytes());
        text.push(0);
        text.extend_from_slice(f.sha256.to_hex().as_bytes());
        text.push(b'\n');
    }
    Hash::sha256(&text)
}

/// The digest a leaf gives for a GPU set: SHA-256 over the UUIDs, sorted, one per line.
pub fn gpu_set_digest(uuids: &[&str]) -> Hash {
    let mut sorted = uuids.to_vec();
    sorted.sort_unstable();
    let mut text = String::new();
    for u in sorted {
        text.push_str(u);
        text.push('\n');
    }
    Hash::sha256(text.as_bytes())
}

/// A closed batch's leaves: the root its record carries and each leaf's inclusion proof.
#[derive(Debug)]
pub struct BatchTree {
    tree: MemoryTree,
}

impl BatchTree {
    /// Over the leaves' bytes, in order.
    pub fn new<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> BatchTree {
        BatchTree { tree: MemoryTree::from_leaves(leaves.into_iter().map(merkle::leaf_hash).collect()) }
    }

    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    pub fn root(&self) -> Result<Hash, Error> {
        self.tree.root_at(self.tree.size())
    }

    /// The inclusion proof of leaf `index` under the root.
    pub fn proof(&self, index: u64) -> Result<Vec<Hash>, Error> {
        merkle::inclusion_proof(&self.tree, index, self.tree.size())
    }
}

/// Checks that `leaf` is leaf `index` of the batch `batch` (its root and size), by `proof`, names
/// the batch's model and GPUs, and arrived before the placement aged out and the batch closed.
pub fn verify_leaf(batch: &ServingBatch, index: u64, leaf: &[u8], proof: &[Hash]) -> Result<ServedResponse, Error> {
    merkle::verify_inclusion(index, batch.responses, &merkle::leaf_hash(leaf), proof, &batch.root)?;
    let r = ServedResponse::from_leaf(leaf)?;
    let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    if r.received_at_ms >= ms(batch.expires_at) {
        return Err(Error::Statement {
            reason: "the response arrived after its GPUs' attestation aged out under the policy".into(),
        });
    }
    if r.received_at_ms > ms(batch.closed_at) {
        return Err(Error::Statement { reason: "the response arrived after its batch closed".into() });
    }
    if r.model_digest != batch.model_digest {
        return Err(Error::Statement { reason: "the response names another model than its batch".into() });
    }
    if r.gpu_set != batch.gpu_set {
        return Err(Error::Statement { reason: "the response names other GPUs than its batch".into() });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn leaf(i: u64) -> ServedResponse {
        ServedResponse {
            id: format!("chatcmpl-{i}"),
            request_sha256: Hash::sha256(format!("req {i}").as_bytes()),
            response_sha256: Hash::sha256(format!("resp {i}").as_bytes()),
            model_digest: Hash::sha256(b"m"),
            gpu_set: gpu_set_digest(&["GPU-a"]),
            stream: i.is_multiple_of(2),
            received_at_ms: 1_700_000_000_000,
            queue_ms: 1,
            first_token_ms: 2,
            total_ms: 3,
            prompt_tokens: 4,
            completion_tokens: 5,
        }
    }

    #[test]
    fn every_leaf_of_a_batch_proves_under_its_root_and_no_other_leaf_does() {
        let leaves: Vec<Vec<u8>> = (0..7).map(|i| leaf(i).to_leaf()).collect();
        let tree = BatchTree::new(leaves.iter().map(|l| l.as_slice()));
        let root = tree.root().unwrap();
        assert_eq!(root, merkle::root(&leaves.iter().map(|l| merkle::leaf_hash(l)).collect::<Vec<_>>()));
        for (i, l) in leaves.iter().enumerate() {
            let proof = tree.proof(i as u64).unwrap();
            merkle::verify_inclusion(i as u64, 7, &merkle::leaf_hash(l), &proof, &root).unwrap();
            let other = &leaves[(i + 1) % 7];
            assert!(merkle::verify_inclusion(i as u64, 7, &merkle::leaf_hash(other), &proof, &root).is_err());
        }
    }

    #[test]
    fn set_and_model_digests_do_not_depend_on_order_of_uuids_but_do_on_files() {
        assert_eq!(gpu_set_digest(&["GPU-b", "GPU-a"]), gpu_set_digest(&["GPU-a", "GPU-b"]));
        assert_ne!(gpu_set_digest(&["GPU-a"]), gpu_set_digest(&["GPU-a", "GPU-b"]));
        let f = |p: &str| ModelFile { path: p.into(), sha256: Hash::sha256(p.as_bytes()) };
        assert_ne!(model_digest("m", &[f("a"), f("b")]), model_digest("m", &[f("ab")]));
        assert_ne!(model_digest("deepseek-r1", &[]), model_digest("r1-distill-qwen-7b", &[]));
    }

    #[test]
    fn a_leaf_with_unknown_fields_or_an_oversized_id_is_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&leaf(1).to_leaf()).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(ServedResponse::from_leaf(&serde_json::to_vec(&v).unwrap()).is_err());
        let mut l = leaf(1);
        l.id = "x".repeat(MAX_RESPONSE_ID + 1);
        assert!(ServedResponse::from_leaf(&l.to_leaf()).is_err());
    }
}
