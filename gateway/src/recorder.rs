//! Provenance under load: finished responses wait as leaves; every interval the recorder signs
//! one `serving-batch/v1` record per placement they ran on (a Merkle root over their leaves) and
//! appends it — one log append per interval, however many responses. Receipts are kept for the
//! latest `keep` responses. When the log refuses or cannot be reached, the leaves stay pending and
//! are tried again; past `max_pending` the node stops admitting requests (no answer without
//! provenance).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chipledger_domain::keys::VerifierKey;
use chipledger_domain::serving::{BatchTree, ServedResponse};
use chipledger_inference::node::NodeKey;
use chipledger_inference::report::ServingReceipt;
use chipledger_inference::serving::{self, AppendedBatch, Placed, ServedModel};
use time::OffsetDateTime;

use crate::SharedLog;

/// Appended batches whose receipts are kept (with every response's, up to `keep`).
pub const MAX_BATCHES_KEPT: usize = 4096;

/// A batch as appended, with its leaves.
#[derive(Debug)]
struct Stored {
    appended: AppendedBatch,
    tree: BatchTree,
    leaves: Vec<(String, Vec<u8>)>,
}

/// Leaves waiting for their batch, per placement (by the placement's identity).
#[derive(Debug)]
struct Waiting {
    placed: Arc<Placed>,
    opened_at: OffsetDateTime,
    leaves: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct State {
    waiting: Vec<Waiting>,
    pending_ids: HashSet<String>,
    done: HashMap<String, (Arc<Stored>, u64)>,
    order: VecDeque<String>,
    batches: VecDeque<Arc<Stored>>,
    /// Why the last append failed, while leaves wait for a retry.
    failing: Option<String>,
    appended_batches: u64,
    recorded: u64,
}

/// What `GET /v1/provenance/{id}` finds.
#[derive(Debug)]
pub enum Lookup {
    Ready(Box<ServingReceipt>),
    Pending,
    Unknown,
}

/// Counters for `/metrics`-like status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    pub recorded: u64,
    pub pending: usize,
    pub appended_batches: u64,
    pub failing: Option<String>,
}

/// The recorder.
#[derive(Debug)]
pub struct Recorder {
    state: Mutex<State>,
    stopping: std::sync::atomic::AtomicBool,
    log: SharedLog,
    log_key: VerifierKey,
    node: NodeKey,
    model: ServedModel,
    keep: usize,
    max_pending: usize,
}

impl Recorder {
    pub fn new(
        log: SharedLog,
        log_key: VerifierKey,
        node: NodeKey,
        model: ServedModel,
        keep: usize,
        max_pending: usize,
    ) -> Recorder {
        Recorder {
            state: Mutex::new(State::default()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            log,
            log_key,
            node,
            model,
            keep,
            max_pending,
        }
    }

    pub fn model(&self) -> &ServedModel {
        &self.model
    }

    /// Whether a new request may be admitted: not while too many leaves wait for the log.
    pub fn admit(&self) -> Result<(), String> {
        let s = self.state.lock().map_err(|_| "the recorder failed".to_string())?;
        if s.pending_ids.len() >= self.max_pending {
            // The cause (which may name files or hosts) goes to the node's log and /status.
            return Err(format!(
                "{} responses wait for their provenance record: the log has not accepted a batch; no answer \
                 is given without one",
                s.pending_ids.len()
            ));
        }
        Ok(())
    }

    /// Adds a finished response's leaf to the batch of its placement.
    pub fn record(&self, placed: &Arc<Placed>, leaf: &ServedResponse) {
        let bytes = leaf.to_leaf();
        let Ok(mut s) = self.state.lock() else { return };
        s.pending_ids.insert(leaf.id.clone());
        s.recorded += 1;
        match s.waiting.iter_mut().find(|w| Arc::ptr_eq(&w.placed, placed)) {
            Some(w) => w.leaves.push((leaf.id.clone(), bytes)),
            None => s.waiting.push(Waiting {
                placed: placed.clone(),
                opened_at: OffsetDateTime::now_utc(),
                leaves: vec![(leaf.id.clone(), bytes)],
            }),
        }
    }

    pub fn stats(&self) -> Stats {
        match self.state.lock() {
            Ok(s) => Stats {
                recorded: s.recorded,
                pending: s.pending_ids.len(),
                appended_batches: s.appended_batches,
                failing: s.failing.clone(),
            },
            Err(_) => {
                Stats { recorded: 0, pending: 0, appended_batches: 0, failing: Some("the recorder failed".into()) }
            }
        }
    }

    /// Appends one batch per placement for every waiting leaf. Returns how many batches went in.
    pub fn flush(&self) -> usize {
        let waiting = match self.state.lock() {
            Ok(mut s) => std::mem::take(&mut s.waiting),
            Err(_) => return 0,
        };
        let mut appended = 0;
        for w in waiting {
            match self.append(&w) {
                Ok(stored) => {
                    appended += 1;
                    let stored = Arc::new(stored);
                    let Ok(mut s) = self.state.lock() else { return appended };
                    s.failing = None;
                    s.appended_batches += 1;
                    for (i, (id, _)) in stored.leaves.iter().enumerate() {
                        s.pending_ids.remove(id);
                        s.done.insert(id.clone(), (stored.clone(), i as u64));
                        s.order.push_back(id.clone());
                    }
                    s.batches.push_back(stored.clone());
                    // Receipts are kept for the latest `keep` responses, and their batches for the
                    // latest MAX_BATCHES_KEPT (a quiet node makes a batch a response).
                    while s.batches.len() > MAX_BATCHES_KEPT {
                        if let Some(old) = s.batches.pop_front() {
                            for (id, _) in &old.leaves {
                                s.done.remove(id);
                            }
                        }
                    }
                    while s.order.len() > self.keep {
                        if let Some(old) = s.order.pop_front() {
                            s.done.remove(&old);
                        }
                    }
                }
                Err(why) => {
                    tracing::warn!(responses = w.leaves.len(), reason = %why, "appending a serving batch; kept for a retry");
                    let Ok(mut s) = self.state.lock() else { return appended };
                    s.failing = Some(why);
                    // Back in front, merged with any leaves of the same placement since.
                    match s.waiting.iter_mut().position(|x| Arc::ptr_eq(&x.placed, &w.placed)) {
                        Some(i) => {
                            let mut later = std::mem::take(&mut s.waiting[i].leaves);
                            let mut leaves = w.leaves;
                            leaves.append(&mut later);
                            s.waiting[i].leaves = leaves;
                            s.waiting[i].opened_at = w.opened_at;
                        }
                        None => s.waiting.insert(0, w),
                    }
                }
            }
        }
        appended
    }

    fn append(&self, w: &Waiting) -> Result<Stored, String> {
        let tree = BatchTree::new(w.leaves.iter().map(|(_, b)| b.as_slice()));
        let record =
            serving::batch_record(&self.node, &w.placed, &self.model, w.opened_at, OffsetDateTime::now_utc(), &tree)
                .map_err(|e| e.to_string())?;
        let log = self.log.lock().map_err(|_| "the log client failed".to_string())?;
        let appended = serving::submit_batch(log.as_ref(), &self.log_key, &self.node, &w.placed, &record)
            .map_err(|e| e.to_string())?;
        tracing::debug!(index = appended.receipt.index, responses = w.leaves.len(), "serving batch appended");
        Ok(Stored { appended, tree, leaves: w.leaves.clone() })
    }

    /// The receipt of a response.
    pub fn lookup(&self, id: &str) -> Lookup {
        let Ok(s) = self.state.lock() else { return Lookup::Unknown };
        if let Some((stored, i)) = s.done.get(id) {
            let (stored, i) = (stored.clone(), *i);
            drop(s);
            let leaf = stored.leaves.get(i as usize).map(|(_, b)| b.as_slice()).unwrap_or_default();
            return match serving::receipt(&stored.appended, &stored.tree, id, leaf, i) {
                Ok(r) => Lookup::Ready(Box::new(r)),
                Err(_) => Lookup::Unknown,
            };
        }
        if s.pending_ids.contains(id) {
            return Lookup::Pending;
        }
        Lookup::Unknown
    }

    /// The batching loop (its own thread), until [`Recorder::stop`].
    pub fn run(self: Arc<Recorder>, interval: Duration) {
        let tick = interval.min(Duration::from_millis(100));
        let mut last = std::time::Instant::now();
        while !self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            std::thread::sleep(tick);
            if last.elapsed() >= interval {
                self.flush();
                last = std::time::Instant::now();
            }
        }
    }

    /// Stops the batching loop (after its current append).
    pub fn stop(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Appends what waits, retrying every `interval` until nothing waits or `deadline` passes.
    pub fn flush_before(&self, deadline: std::time::Instant, interval: Duration) {
        loop {
            self.flush();
            let waiting = self.state.lock().map(|s| !s.waiting.is_empty()).unwrap_or(false);
            if !waiting || std::time::Instant::now() + interval > deadline {
                return;
            }
            std::thread::sleep(interval);
        }
    }

    /// Writes the leaves no batch recorded to `unrecorded-<unix time>.jsonl` beside the node's
    /// state (one leaf per line, with the GPUs it ran on), synced; returns how many and where.
    pub fn save_unrecorded(&self) -> std::io::Result<Option<(usize, std::path::PathBuf)>> {
        use std::io::Write;
        let s = self.state.lock().map_err(|_| std::io::Error::other("the recorder failed"))?;
        let n: usize = s.waiting.iter().map(|w| w.leaves.len()).sum();
        if n == 0 {
            return Ok(None);
        }
        let dir = self.node.state.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let path = dir.join(format!("unrecorded-{}.jsonl", OffsetDateTime::now_utc().unix_timestamp()));
        let mut f = std::fs::OpenOptions::new().create_new(true).write(true).open(&path)?;
        for w in &s.waiting {
            let gpus: Vec<&str> = w.placed.gpus.iter().map(|g| g.uuid.as_str()).collect();
            for (_, leaf) in &w.leaves {
                let line = serde_json::json!({
                    "leaf": String::from_utf8_lossy(leaf),
                    "gpu_host": w.placed.host,
                    "gpus": gpus,
                    "checkpoint": w.placed.checkpoint,
                });
                writeln!(f, "{line}")?;
            }
        }
        f.sync_all()?;
        Ok(Some((n, path)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chipledger_domain::fingerprint::GpuUuid;
    use chipledger_domain::log::{AsOf, EntrySummary, InventoryGpu, LogClient, Receipt};
    use chipledger_domain::merkle::Hash;
    use chipledger_domain::serving::gpu_set_digest;

    /// A log that cannot be reached.
    struct Down;

    impl LogClient for Down {
        fn submit(&self, _: &[Vec<u8>]) -> Result<Vec<Receipt>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn checkpoint(&self) -> Result<String, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn inclusion_proof(&self, _: u64, _: u64) -> Result<Vec<Hash>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn consistency_proof(&self, _: u64, _: u64) -> Result<Vec<Hash>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn inventory(&self, _: AsOf) -> Result<Vec<InventoryGpu>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn history(&self, _: &GpuUuid, _: Option<usize>) -> Result<Vec<EntrySummary>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn inventory_by_serial(&self, _: &str) -> Result<Vec<InventoryGpu>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn entry(&self, _: u64) -> Result<EntrySummary, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn acquisitions(&self, _: &str) -> Result<Vec<EntrySummary>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn location_proofs(
            &self,
            _: Option<&str>,
            _: time::OffsetDateTime,
        ) -> Result<Vec<EntrySummary>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
        fn sites(&self) -> Result<Vec<chipledger_domain::log::EnrolledSite>, chipledger_domain::Error> {
            Err(chipledger_domain::Error::Log("connection refused".into()))
        }
    }

    fn leaf(i: u64) -> ServedResponse {
        ServedResponse {
            id: format!("chatcmpl-{i}"),
            request_sha256: Hash::sha256(b"req"),
            response_sha256: Hash::sha256(b"resp"),
            model_digest: Hash::sha256(b"m"),
            gpu_set: gpu_set_digest(&[]),
            stream: false,
            received_at_ms: 0,
            queue_ms: 0,
            first_token_ms: 0,
            total_ms: 0,
            prompt_tokens: 1,
            completion_tokens: 1,
        }
    }

    #[test]
    fn while_the_log_refuses_batches_the_leaves_wait_and_past_the_limit_nothing_is_admitted() {
        let tmp = tempfile::tempdir().unwrap();
        let key = chipledger_domain::keys::SigningKey::from_seed(&[3; 32]);
        let node = NodeKey { key, host: "node-01".into(), state: tmp.path().join("state.json") };
        let model = ServedModel::new("m".into(), Vec::new(), "candle", "cpu".into());
        let recorder = Recorder::new(SharedLog::new(Box::new(Down)), log_key(), node, model, 10, 3);
        let placed = Arc::new(Placed {
            host: "hgx-01".into(),
            policy_name: "p".into(),
            policy_digest: Hash::sha256(b"p"),
            checkpoint: String::new(),
            checkpoint_size: 0,
            gpus: Vec::new(),
            gpu_set: gpu_set_digest(&[]),
            attestations: Arc::new(Vec::new()),
            expires_at: OffsetDateTime::now_utc(),
        });
        for i in 0..2 {
            recorder.record(&placed, &leaf(i));
        }
        assert_eq!(recorder.flush(), 0);
        let stats = recorder.stats();
        assert_eq!((stats.pending, stats.appended_batches), (2, 0));
        assert!(stats.failing.unwrap().contains("connection refused"));
        assert!(matches!(recorder.lookup("chatcmpl-1"), Lookup::Pending));
        assert!(matches!(recorder.lookup("chatcmpl-9"), Lookup::Unknown));
        recorder.admit().unwrap();
        recorder.record(&placed, &leaf(2));
        let why = recorder.admit().unwrap_err();
        // The client is told why in general terms; the cause is for the operator (/status, log).
        assert!(why.contains("3 responses wait") && !why.contains("connection refused"), "{why}");
        // The leaves are kept in order for the retry, in one batch.
        assert_eq!(recorder.flush(), 0);
        {
            let s = recorder.state.lock().unwrap();
            assert_eq!(s.waiting.len(), 1);
            let ids: Vec<&str> = s.waiting[0].leaves.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(ids, ["chatcmpl-0", "chatcmpl-1", "chatcmpl-2"]);
        }
        // At shutdown, what no batch recorded is saved beside the node's state, one leaf a line.
        let (n, path) = recorder.save_unrecorded().unwrap().unwrap();
        assert_eq!(n, 3);
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.contains("chatcmpl-2") && text.contains("hgx-01"), "{text}");
    }

    fn log_key() -> VerifierKey {
        let k = chipledger_domain::keys::SigningKey::from_seed(&[4; 32]);
        VerifierKey::new("log.example", k.public_key()).unwrap()
    }
}
