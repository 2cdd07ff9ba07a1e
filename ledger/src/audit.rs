//! The full audit: recompute every leaf and the tree, check every signature and the key registry
//! at each index, every checkpoint's signature and its agreement with the entries, the stored
//! Merkle nodes, and the derived views against a replay. It reports the first problem and the
//! index it concerns.

use std::collections::HashMap;

use chipledger_domain::keys::PublicKey;
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{Record, RecordKind};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::record::{self, Registry};
use crate::store::{kind_code, DB_FILE};
use crate::tree::{node_id, split_node_id, Frontier};
use crate::{Error, Ledger};

/// What the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub checkpoints: u64,
    pub signatures_checked: u64,
    pub root: Hash,
    /// The first problem, or `None` when the log is intact.
    pub problem: Option<Problem>,
}

/// One problem, with the entry index (and checkpoint) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first entry index the problem concerns.
    pub index: Option<u64>,
    pub checkpoint_size: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.index, self.checkpoint_size) {
            (Some(i), _) => write!(f, "entry {i}: {}", self.what),
            (None, Some(s)) => write!(f, "checkpoint of size {s}: {}", self.what),
            (None, None) => f.write_str(&self.what),
        }
    }
}

const CHUNK: usize = 8192;

struct Row {
    idx: u64,
    leaf: Vec<u8>,
    /// The exact envelope, rebuilt from its stored form; `Err` if it cannot be.
    envelope: Result<Vec<u8>, String>,
    kind: i64,
    signer: i64,
    counter: Option<i64>,
}

impl AuditReport {
    /// Nothing checked yet.
    fn empty() -> AuditReport {
        AuditReport {
            entries: 0,
            checkpoints: 0,
            signatures_checked: 0,
            root: Frontier::default().root(),
            problem: None,
        }
    }
}

impl Ledger {
    /// Audits the whole log. `progress(done, total)` is called as entries are checked.
    pub fn audit(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<AuditReport, Error> {
        let conn = Connection::open_with_flags(self.dir().join(DB_FILE), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.execute_batch("BEGIN")?; // one consistent snapshot for the whole audit
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if integrity != "ok" {
            return Ok(found(AuditReport::empty(), None, None, format!("SQLite integrity check failed: {integrity}")));
        }
        let total: u64 = conn.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get::<_, i64>(0))? as u64;
        // Every key the log has had, each for the sizes its rotations let it sign.
        let log_keys = match crate::rotation::fold(&conn, self.verifier_key()) {
            Ok(k) => k,
            Err(e) => {
                return Ok(found(
                    AuditReport::empty(),
                    None,
                    None,
                    format!("the log key rotations do not follow: {e}"),
                ));
            }
        };
        let mut report = AuditReport::empty();

        // Checkpoints: each must carry a valid log signature over its own size.
        let mut cps: Vec<(u64, Hash)> = Vec::new();
        {
            let mut st = conn.prepare("SELECT size, note FROM checkpoints ORDER BY size")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let size = r.get::<_, i64>(0)? as u64;
                let note: Vec<u8> = r.get(1)?;
                match log_keys.open_checkpoint(&note, Some(self.origin())) {
                    Ok(cp) if cp.checkpoint.size == size => cps.push((size, cp.checkpoint.root)),
                    Ok(cp) => {
                        return Ok(found(
                            report,
                            None,
                            Some(size),
                            format!("stored under size {size} but signs size {}", cp.checkpoint.size),
                        ))
                    }
                    Err(e) => {
                        return Ok(found(report, None, Some(size), format!("not a valid checkpoint of this log: {e}")))
                    }
                }
            }
        }
        report.checkpoints = cps.len() as u64;

        let mut registry = Registry::new();
        let mut expected_views = crate::views_check::Expected::default();
        let mut frontier = Frontier::default();
        let mut computed_nodes: Vec<(i64, Hash)> = Vec::with_capacity(total as usize);
        let mut next_cp = 0usize;
        let mut last_good_cp = 0u64;
        let mut st =
            conn.prepare("SELECT idx, leaf_hash, body, form, kind, signer, counter FROM entries ORDER BY idx")?;
        let mut rows = st.query([])?;
        let mut expected = 0u64;
        // Enrollment index -> key id, to rebuild compactly stored envelopes. Learnt from the
        // enrollment entries themselves as they stream past; a wrong rebuild cannot hide, since
        // the rebuilt bytes are checked against the leaf hash and the signed roots.
        let mut key_ids: HashMap<u64, String> = HashMap::new();
        let mut pending: Option<PendingSignatures> = None;
        loop {
            let mut chunk: Vec<Row> = Vec::with_capacity(CHUNK);
            while chunk.len() < CHUNK {
                match rows.next()? {
                    Some(r) => {
                        let idx = r.get::<_, i64>(0)? as u64;
                        let body: Vec<u8> = r.get(2)?;
                        let form: i64 = r.get(3)?;
                        let kind: i64 = r.get(4)?;
                        let signer: i64 = r.get(5)?;
                        let counter: Option<i64> = r.get(6)?;
                        let envelope = match key_ids.get(&(signer as u64)) {
                            Some(k) => record::expand(&body, form, k),
                            None if form == record::FORM_RAW => Ok(body),
                            None => Err(format!("its signer column ({signer}) names no enrollment before it")),
                        };
                        if kind == kind_code(RecordKind::KeyEnrollment) {
                            if let Ok(env) = &envelope {
                                if let Ok(p) = record::parse(env, usize::MAX, true) {
                                    if let Some(Record::KeyEnrollment(e)) = p.record {
                                        key_ids.insert(idx, e.key_id.0);
                                    }
                                }
                            }
                        }
                        chunk.push(Row { idx, leaf: r.get(1)?, envelope, kind, signer, counter });
                    }
                    None => break,
                }
            }
            if chunk.is_empty() {
                break;
            }
            let envs: Vec<&[u8]> = chunk.iter().map(|r| r.envelope.as_deref().unwrap_or_default()).collect();
            let parsed = record::parse_many(&envs, usize::MAX, false);
            let mut sig_items: Vec<(Vec<u8>, Vec<u8>, PublicKey)> = Vec::with_capacity(chunk.len());
            let mut sig_index: Vec<u64> = Vec::with_capacity(chunk.len());
            let mut problem: Option<Problem> = None;
            let mut new_nodes = Vec::new();
            for (row, parsed_one) in chunk.iter().zip(parsed) {
                let at = |what: String| Problem { index: Some(row.idx), checkpoint_size: None, what };
                if row.idx != expected {
                    problem = Some(Problem {
                        index: Some(expected),
                        checkpoint_size: None,
                        what: format!("missing: the next stored entry is {}", row.idx),
                    });
                    break;
                }
                if let Err(why) = &row.envelope {
                    problem = Some(at(why.clone()));
                    break;
                }
                let p = match &parsed_one {
                    Ok(p) => p,
                    Err(r) => {
                        problem = Some(at(format!("not a valid record: {r}")));
                        break;
                    }
                };
                if row.leaf != p.leaf_hash.0 {
                    problem =
                        Some(at("the stored envelope does not hash to its stored leaf hash (bytes altered)".into()));
                    break;
                }
                let (public, signer) = match record::authorize(p, &registry, row.idx) {
                    Ok(v) => v,
                    Err(r) => {
                        problem = Some(at(format!("not authorised at this index: {r}")));
                        break;
                    }
                };
                if row.kind != kind_code(p.kind) || row.signer as u64 != signer || row.counter != Some(p.counter as i64)
                {
                    problem = Some(at("the stored kind, signer or counter columns do not match the envelope".into()));
                    break;
                }
                record::apply(p, &mut registry, row.idx);
                expected_views.apply(row.idx, p);
                let leaf = p.leaf_hash;
                if let Ok(owned) = parsed_one {
                    sig_items.push((owned.message, owned.signature, public));
                }
                sig_index.push(row.idx);
                new_nodes.clear();
                frontier.push(leaf, &mut new_nodes);
                computed_nodes
                    .extend(new_nodes.iter().filter(|(l, _, _)| *l >= 2).map(|(l, i, h)| (node_id(*l, *i), *h)));
                expected += 1;
                if let Some((size, root)) = cps.get(next_cp) {
                    if *size == frontier.size {
                        if frontier.root() != *root {
                            problem = Some(Problem {
                                index: Some(last_good_cp),
                                checkpoint_size: Some(*size),
                                what: format!(
                                    "entries {last_good_cp}..{size} do not hash to the root the log signed at size {size}: altered, reordered or replaced"
                                ),
                            });
                            break;
                        }
                        last_good_cp = *size;
                        next_cp += 1;
                    }
                }
            }
            // Signatures of the previous chunk were checked on other cores while this chunk was
            // read and parsed; collect that verdict before judging this chunk.
            if let Some(bad) = join_signatures(&mut pending, &mut report) {
                return Ok(found(report, Some(bad), None, BAD_SIGNATURE.into()));
            }
            if problem.is_some() {
                // Report an earlier bad signature first.
                let mut now = Some(spawn_signatures(sig_items, sig_index));
                if let Some(bad) = join_signatures(&mut now, &mut report) {
                    return Ok(found(report, Some(bad), None, BAD_SIGNATURE.into()));
                }
            } else {
                pending = Some(spawn_signatures(sig_items, sig_index));
            }
            if let Some(p) = problem {
                report.problem = Some(p);
                report.entries = expected;
                return Ok(report);
            }
            progress(expected, total);
        }
        if let Some(bad) = join_signatures(&mut pending, &mut report) {
            return Ok(found(report, Some(bad), None, BAD_SIGNATURE.into()));
        }
        report.entries = expected;
        report.root = frontier.root();
        if let Some((size, _)) = cps.get(next_cp) {
            let what = format!("the log has {expected} entries but the log signed a checkpoint of size {size}: entries {expected}..{size} are missing (truncated)");
            return Ok(found(report, Some(expected), Some(*size), what));
        }
        // Every committed entry is covered by a checkpoint signed in its own transaction: entries
        // beyond the last signed checkpoint (or a non-empty log with none) were not written by
        // this log's appends.
        let signed = cps.last().map_or(0, |(size, _)| *size);
        if expected > signed {
            let what = if cps.is_empty() {
                format!("the log has {expected} entries and no signed checkpoint")
            } else {
                format!(
                    "entries {signed}..{expected} are covered by no signed checkpoint (the last is of size {signed})"
                )
            };
            return Ok(found(report, Some(signed), None, what));
        }
        // The stored nodes must be exactly the complete subtrees of the entries.
        computed_nodes.sort_unstable_by_key(|(id, _)| *id);
        let mut st = conn.prepare("SELECT id, hash FROM nodes ORDER BY id")?;
        let mut rows = st.query([])?;
        let mut i = 0usize;
        let missing = |report, id: i64| {
            let (l, x) = split_node_id(id);
            found(report, Some(x << l), None, format!("stored Merkle node (level {l}, index {x}) is missing"))
        };
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let hash: Vec<u8> = r.get(1)?;
            match computed_nodes.get(i) {
                Some((cid, h)) if *cid == id && h.0[..] == hash[..] => i += 1,
                Some((cid, _)) if *cid < id => return Ok(missing(report, *cid)),
                _ => {
                    let (level, index) = split_node_id(id);
                    let what = format!(
                        "stored Merkle node (level {level}, index {index}) does not match the entries below it"
                    );
                    return Ok(found(report, Some(index << level), None, what));
                }
            }
        }
        if let Some((cid, _)) = computed_nodes.get(i) {
            return Ok(missing(report, *cid));
        }
        // The derived views must be what a replay of the entries makes them.
        if let Some(what) = expected_views.first_difference(&conn, &registry)? {
            return Ok(found(report, None, None, what));
        }
        Ok(report)
    }

    /// Checks that the log still contains the tree an earlier checkpoint signed (detects
    /// truncation or rewriting after the fact). `note` is the saved signed checkpoint.
    pub fn check_against(&self, note: &[u8]) -> Result<Option<Problem>, Error> {
        let cp = self.log_keys()?.open_checkpoint(note, Some(self.origin()))?;
        let size = self.stored_size()?;
        if cp.checkpoint.size > size {
            return Ok(Some(Problem {
                index: Some(size),
                checkpoint_size: Some(cp.checkpoint.size),
                what: format!(
                    "the saved checkpoint covers {} entries but the log now has {size}: entries {size}..{} are gone",
                    cp.checkpoint.size, cp.checkpoint.size
                ),
            }));
        }
        let conn = self.reader();
        let root = chipledger_domain::merkle::subtree_root(&crate::tree::DbSource(&conn), 0, cp.checkpoint.size)?;
        if root != cp.checkpoint.root {
            return Ok(Some(Problem {
                index: None,
                checkpoint_size: Some(cp.checkpoint.size),
                what:
                    "the log's first entries no longer hash to the root of the saved checkpoint: history was rewritten"
                        .into(),
            }));
        }
        Ok(None)
    }
}

const BAD_SIGNATURE: &str = "the signature does not verify under the key enrolled for it";

/// Signatures being checked in the background, and the entry index of each.
type PendingSignatures = (std::thread::JoinHandle<Option<usize>>, Vec<u64>);

fn spawn_signatures(items: Vec<(Vec<u8>, Vec<u8>, PublicKey)>, index: Vec<u64>) -> PendingSignatures {
    let handle = std::thread::spawn(move || {
        let refs: Vec<(&[u8], &[u8], PublicKey)> =
            items.iter().map(|(m, s, k)| (m.as_slice(), s.as_slice(), *k)).collect();
        record::first_bad_signature(&refs)
    });
    (handle, index)
}

/// Waits for background signature checks; returns the entry index of the first bad one.
fn join_signatures(pending: &mut Option<PendingSignatures>, report: &mut AuditReport) -> Option<u64> {
    let (handle, index) = pending.take()?;
    match handle.join() {
        Ok(None) => {
            report.signatures_checked += index.len() as u64;
            None
        }
        Ok(Some(bad)) => Some(index[bad]),
        // The checker cannot panic on stored data; if it did, do not call the log intact.
        Err(_) => Some(index.first().copied().unwrap_or(0)),
    }
}

fn found(mut report: AuditReport, index: Option<u64>, checkpoint_size: Option<u64>, what: String) -> AuditReport {
    report.problem = Some(Problem { index, checkpoint_size, what });
    report
}
