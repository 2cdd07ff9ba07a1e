//! Offline evidence bundles: selected records with the key records that authorise them, one
//! signed checkpoint, an inclusion proof for each entry and the log's verifier key. A bundle is
//! verifiable on another machine with nothing else.

use std::collections::BTreeMap;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::merkle::{leaf_hash, verify_inclusion, Hash};
use chipledger_domain::note::open_checkpoint;
use chipledger_domain::records::{Record, RecordKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::record::{self, Registry};
use crate::{EntryFilter, Error, Ledger};

pub const BUNDLE_FORMAT: &str = "chipledger-evidence-bundle/v1";
/// The largest bundle `verify` reads.
pub const MAX_BUNDLE_BYTES: usize = 512 << 20;

/// Which records go into a bundle.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub gpu: Option<GpuUuid>,
    /// Attestations from this host (and the GPUs in them).
    pub host: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEntry {
    pub index: u64,
    /// The envelope exactly as the log stores it.
    pub envelope: String,
    pub inclusion_proof: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub origin: String,
    pub log_verifier_key: String,
    /// The signed checkpoint every proof is against.
    pub checkpoint: String,
    pub selection: String,
    pub entries: Vec<BundleEntry>,
}

/// What verifying a bundle established.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    pub entries: usize,
    pub by_kind: BTreeMap<String, usize>,
    /// `false` when the log key came from the bundle itself rather than from the caller.
    pub log_key_pinned: bool,
    /// Each GPU the bundle attests, as of its latest attestation in the bundle, judged by this
    /// verifier from the bundle's facts and acquisitions (`domain::fleet`): never the agents' word.
    /// Judged from the bundle's records only: acquisitions, GPUs sharing a serial, resolutions
    /// and attestations (a move, a second host, a change) outside it are not seen, so a verdict
    /// or a clean history here is the bundle's, not necessarily the log's.
    pub gpus: Vec<chipledger_domain::fleet::Row>,
}

impl Ledger {
    /// Builds a bundle of the selected records against the latest checkpoint, with the
    /// witnesses' cosignatures it has (readers with a witness policy check a quorum).
    pub fn export(&self, sel: &Selection) -> Result<Bundle, Error> {
        let (size, checkpoint) = self.cosigned_checkpoint()?;
        let all = self.entries(&EntryFilter { gpu: sel.gpu.clone(), since: sel.since, ..Default::default() })?;
        let mut entries = Vec::new();
        for e in all {
            if e.index >= size || sel.until.is_some_and(|u| e.appended_at > u) {
                continue;
            }
            let is_key = matches!(e.kind, RecordKind::KeyEnrollment | RecordKind::KeyRevocation);
            let keep = is_key
                || match &sel.host {
                    None => true,
                    Some(h) => {
                        let p = record::parse(e.envelope.as_bytes(), usize::MAX, true)
                            .map_err(|r| Error::Corrupt(format!("entry {}: {r}", e.index)))?;
                        matches!(&p.record, Some(Record::GpuAttestation(a)) if &a.host.hostname == h)
                    }
                };
            if keep {
                entries.push(BundleEntry {
                    index: e.index,
                    inclusion_proof: self.inclusion_proof(e.index, size)?,
                    envelope: e.envelope,
                });
            }
        }
        // Key records are always included, so that every signature can be checked offline.
        if sel.gpu.is_some() || sel.since.is_some() {
            let keys = self.entries(&EntryFilter { kind: Some(RecordKind::KeyEnrollment), ..Default::default() })?;
            let revs = self.entries(&EntryFilter { kind: Some(RecordKind::KeyRevocation), ..Default::default() })?;
            for e in keys.into_iter().chain(revs) {
                if e.index < size && !entries.iter().any(|b| b.index == e.index) {
                    entries.push(BundleEntry {
                        index: e.index,
                        inclusion_proof: self.inclusion_proof(e.index, size)?,
                        envelope: e.envelope,
                    });
                }
            }
        }
        entries.sort_by_key(|e| e.index);
        Ok(Bundle {
            format: BUNDLE_FORMAT.into(),
            origin: self.origin().to_string(),
            log_verifier_key: self.verifier_key().to_string(),
            checkpoint,
            selection: describe(sel),
            entries,
        })
    }
}

fn describe(sel: &Selection) -> String {
    let mut parts = Vec::new();
    if let Some(g) = &sel.gpu {
        parts.push(format!("gpu {g}"));
    }
    if let Some(h) = &sel.host {
        parts.push(format!("host {h}"));
    }
    if let Some(t) = sel.since {
        parts.push(format!("since {}", record::rfc3339(t)));
    }
    if let Some(t) = sel.until {
        parts.push(format!("until {}", record::rfc3339(t)));
    }
    if parts.is_empty() {
        "everything".into()
    } else {
        parts.join(", ")
    }
}

/// Verifies a bundle offline: the checkpoint's signature (under `pinned` if given, else the key
/// the bundle names), every entry's inclusion, and every record's signature and authorisation
/// by the key records in the bundle.
pub fn verify_bundle(bytes: &[u8], pinned: Option<&VerifierKey>) -> Result<BundleReport, Error> {
    let bad = |what: String| Error::Corrupt(format!("bundle: {what}"));
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(bad(format!("{} bytes is over the {MAX_BUNDLE_BYTES}-byte limit", bytes.len())));
    }
    let b: Bundle = serde_json::from_slice(bytes).map_err(|e| bad(format!("not a bundle: {e}")))?;
    if b.format != BUNDLE_FORMAT {
        return Err(bad(format!("format {:?} is not {BUNDLE_FORMAT}", b.format)));
    }
    let named = VerifierKey::parse(&b.log_verifier_key)?;
    let key = match pinned {
        Some(p) if p != &named => return Err(bad("it names a different log key than the one given".into())),
        Some(p) => p.clone(),
        None => named,
    };
    let cp = open_checkpoint(b.checkpoint.as_bytes(), std::slice::from_ref(&key), Some(&b.origin))?;
    let size = cp.checkpoint.size;
    let mut registry = Registry::new();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut last: Option<u64> = None;
    let catalog = chipledger_domain::catalog::Catalog::embedded()?;
    // Each GPU's trail through the bundle's attestations, and those attestations by index. A
    // bundle cut for a host or a time range holds part of a GPU's history: its trail, and so
    // its history anomalies, are the bundle's (`BundleReport` says so).
    let mut trails: BTreeMap<chipledger_domain::fingerprint::GpuUuid, chipledger_domain::trail::Trail> =
        BTreeMap::new();
    let mut attestations: BTreeMap<u64, chipledger_domain::records::GpuAttestation> = BTreeMap::new();
    let mut acquisitions: BTreeMap<String, chipledger_domain::records::Acquisition> = BTreeMap::new();
    for e in &b.entries {
        let at = |what: String| bad(format!("entry {}: {what}", e.index));
        if last.is_some_and(|l| e.index <= l) {
            return Err(at("entries are not in increasing index order".into()));
        }
        last = Some(e.index);
        let bytes = e.envelope.as_bytes();
        verify_inclusion(e.index, size, &leaf_hash(bytes), &e.inclusion_proof, &cp.checkpoint.root)
            .map_err(|err| at(err.to_string()))?;
        let p = record::parse(bytes, usize::MAX, false).map_err(|r| at(r.to_string()))?;
        let (public, _) = record::authorize(&p, &registry, e.index).map_err(|r| at(r.to_string()))?;
        public.verify(&p.message, &p.signature).map_err(|_| at("the signature does not verify".into()))?;
        record::apply(&p, &mut registry, e.index);
        *by_kind.entry(p.kind.slug().to_string()).or_default() += 1;
        match &p.record {
            Some(chipledger_domain::records::Record::GpuAttestation(a)) => {
                for g in &a.gpus {
                    trails.entry(g.uuid.clone()).or_default().fold(
                        e.index,
                        &a.host.hostname,
                        a.observed_at,
                        g.fingerprint_digest,
                        &chipledger_domain::trail::followed(&g.fingerprint),
                    );
                }
                attestations.insert(e.index, a.clone());
            }
            // An admin's settlement of a GPU's history (the log admits only admin ones).
            _ if p.settles_history => {
                if let Some(trail) =
                    p.gpu_target.as_ref().and_then(|u| GpuUuid::parse(u).ok()).and_then(|u| trails.get_mut(&u))
                {
                    trail.settle();
                }
            }
            Some(chipledger_domain::records::Record::Acquisition(a)) => {
                for s in &a.serials {
                    acquisitions.insert(s.clone(), a.clone());
                }
            }
            _ => {}
        }
    }
    let mut latest: BTreeMap<String, chipledger_domain::fleet::Candidate> = BTreeMap::new();
    for (uuid, trail) in &trails {
        let Some((index, _)) = trail.latest else { continue };
        let Some((a, g)) =
            attestations.get(&index).and_then(|a| a.gpus.iter().find(|g| &g.uuid == uuid).map(|g| (a, g)))
        else {
            continue;
        };
        latest.insert(
            uuid.as_str().to_string(),
            chipledger_domain::fleet::candidate(catalog, a, g, index, Some(trail), Some(&key)),
        );
    }
    let mut candidates: Vec<&mut chipledger_domain::fleet::Candidate> = latest.values_mut().collect();
    chipledger_domain::fleet::judge_serials(
        catalog,
        &mut candidates,
        &mut |serial| Ok(acquisitions.get(serial).cloned()),
        // A bundle holds the records it was cut for; resolutions of shared serials are the log's.
        &mut |_, _| Ok(None),
    )?;
    let gpus = chipledger_domain::fleet::rows(latest.values());
    Ok(BundleReport {
        gpus,
        origin: b.origin,
        tree_size: size,
        root: cp.checkpoint.root,
        entries: b.entries.len(),
        by_kind,
        log_key_pinned: pinned.is_some(),
    })
}
