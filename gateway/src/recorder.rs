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
        Recorder { state: Mutex::new(State::default()), log, log_key, node, model, keep, max_pending }
    }

    pub fn model(&self) -> &ServedModel {
        &self.model
    }

    /// Whether a new request may be admitted: not while too many leaves wait for the log.
    pub fn admit(&self) -> Result<(), String> {
        let s = self.state.lock().map_err(|_| "the recorder failed".to_string())?;
        if s.pending_ids.len() >= self.max_pending {
            return Err(format!(
                "{} responses wait for their provenance record; the log has not accepted a batch: {}",
                s.pending_ids.len(),
                s.failing.as_deref().unwrap_or("appends are behind")
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

    /// The batching loop (its own thread).
    pub fn run(self: Arc<Recorder>, interval: Duration) {
        loop {
            std::thread::sleep(interval);
            self.flush();
        }
    }
}
