//! Offline evidence bundles: selected records with the key records that authorise them, one
//! signed checkpoint, an inclusion proof for each entry and the log's verifier key. A bundle is
//! verifiable on another machine with nothing else.

use std::collections::{BTreeMap, BTreeSet};

use chipledger_domain::catalog::Catalog;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::fleet::{self, Candidate, Resolution};
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::located::LoggedProof;
use chipledger_domain::log::EnrolledSite;
use chipledger_domain::merkle::{leaf_hash, verify_inclusion, Hash};
use chipledger_domain::note::open_checkpoint;
use chipledger_domain::records::{Acquisition, GpuAttestation, Record, RecordKind};
use chipledger_domain::trail::Trail;
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

impl Ledger {
    /// A bundle of exactly the entries at `indexes`, each with its inclusion proof against the
    /// checkpoint of `size` (with the witnesses' cosignatures kept for it), described as
    /// `selection`. Key records are not added: the caller names the ones it needs.
    pub fn export_indexes(&self, indexes: &BTreeSet<u64>, size: u64, selection: &str) -> Result<Bundle, Error> {
        let checkpoint = self.cosigned_checkpoint_at(size)?;
        let mut entries = Vec::with_capacity(indexes.len());
        for &index in indexes {
            if index >= size {
                return Err(Error::NoSuchEntry { index, size });
            }
            let envelope = String::from_utf8(self.envelope(index)?)
                .map_err(|_| Error::Corrupt(format!("entry {index} is not UTF-8 JSON")))?;
            entries.push(BundleEntry { index, envelope, inclusion_proof: self.inclusion_proof(index, size)? });
        }
        Ok(Bundle {
            format: BUNDLE_FORMAT.into(),
            origin: self.origin().to_string(),
            log_verifier_key: self.verifier_key().to_string(),
            checkpoint,
            selection: selection.to_string(),
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
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(Error::Bundle(format!("{} bytes is over the {MAX_BUNDLE_BYTES}-byte limit", bytes.len())));
    }
    let b: Bundle = serde_json::from_slice(bytes).map_err(|e| Error::Bundle(format!("not a bundle: {e}")))?;
    Ok(replay(&b, pinned)?.report)
}

/// What replaying a verified bundle gives a reader: the report, and the bundle's records as
/// `domain::fleet` and `domain::located` read them.
pub(crate) struct Replayed {
    pub report: BundleReport,
    /// Each GPU as of its latest attestation in the bundle, its serial judged against the
    /// bundle's acquisitions and resolutions (locations not yet judged).
    pub candidates: Vec<Candidate>,
    /// serial → its latest acquisition in the bundle and that acquisition's index.
    pub acquisitions: BTreeMap<String, (u64, Acquisition)>,
    pub proofs: Vec<LoggedProof>,
    /// The keys enrolled with a site (landmarks', agents'), as the log's registry gives them.
    pub sites: Vec<EnrolledSite>,
    /// The indexes the bundle holds.
    pub indexes: BTreeSet<u64>,
}

/// Verifies a parsed bundle ([`verify_bundle`]) and judges its GPUs from its records only.
pub(crate) fn replay(b: &Bundle, pinned: Option<&VerifierKey>) -> Result<Replayed, Error> {
    let bad = |what: String| Error::Bundle(what);
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
    let catalog = Catalog::embedded()?;
    // Each GPU's trail through the bundle's attestations, and those attestations by index. A
    // bundle cut for a host or a time range holds part of a GPU's history: its trail, and so
    // its history anomalies, are the bundle's (`BundleReport` says so).
    let mut trails: BTreeMap<GpuUuid, Trail> = BTreeMap::new();
    let mut attestations: BTreeMap<u64, GpuAttestation> = BTreeMap::new();
    let mut acquisitions: BTreeMap<String, (u64, Acquisition)> = BTreeMap::new();
    let mut resolutions: Vec<Resolution> = Vec::new();
    let mut proofs: Vec<LoggedProof> = Vec::new();
    let mut indexes = BTreeSet::new();
    for e in &b.entries {
        let at = |what: String| bad(format!("entry {}: {what}", e.index));
        if last.is_some_and(|l| e.index <= l) {
            return Err(at("entries are not in increasing index order".into()));
        }
        last = Some(e.index);
        indexes.insert(e.index);
        let bytes = e.envelope.as_bytes();
        let leaf = leaf_hash(bytes);
        verify_inclusion(e.index, size, &leaf, &e.inclusion_proof, &cp.checkpoint.root)
            .map_err(|err| at(err.to_string()))?;
        let p = record::parse(bytes, usize::MAX, true).map_err(|r| at(r.to_string()))?;
        let (public, _) = record::authorize(&p, &registry, e.index).map_err(|r| at(r.to_string()))?;
        public.verify(&p.message, &p.signature).map_err(|_| at("the signature does not verify".into()))?;
        record::apply(&p, &mut registry, e.index);
        *by_kind.entry(p.kind.slug().to_string()).or_default() += 1;
        match &p.record {
            Some(Record::GpuAttestation(a)) => {
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
            // An admin's settlement of a GPU's history, or resolution of a shared serial (the
            // log admits only admin ones, and so does `authorize` above).
            Some(Record::Annotation(a)) => {
                if p.settles_history {
                    if let Some(trail) =
                        p.gpu_target.as_ref().and_then(|u| GpuUuid::parse(u).ok()).and_then(|u| trails.get_mut(&u))
                    {
                        trail.settle();
                    }
                }
                resolutions.extend(Resolution::of(e.index, a));
            }
            Some(Record::Acquisition(a)) => {
                for s in &a.serials {
                    acquisitions.insert(s.clone(), (e.index, a.clone()));
                }
            }
            Some(Record::LocationProof(l)) => {
                let signer = p.key_id.clone();
                proofs.push(LoggedProof { index: e.index, leaf_hash: leaf, signer, record: (**l).clone() });
            }
            _ => {}
        }
    }
    let mut latest: BTreeMap<String, Candidate> = BTreeMap::new();
    for (uuid, trail) in &trails {
        let Some((index, _)) = trail.latest else { continue };
        let Some((a, g)) =
            attestations.get(&index).and_then(|a| a.gpus.iter().find(|g| &g.uuid == uuid).map(|g| (a, g)))
        else {
            continue;
        };
        latest.insert(uuid.as_str().to_string(), fleet::candidate(catalog, a, g, index, Some(trail), Some(&key)));
    }
    let mut candidates: Vec<&mut Candidate> = latest.values_mut().collect();
    fleet::judge_serials(
        catalog,
        &mut candidates,
        &mut |serial| Ok(acquisitions.get(serial).map(|(_, a)| a.clone())),
        // Resolutions of shared serials the bundle holds; one outside it is not seen.
        &mut |serial, uuids| Ok(fleet::resolved_owner(serial, uuids, &resolutions)),
    )?;
    // As `LogClient::sites` lists them: every agent and landmark key, with its site if any.
    let mut sites = registry
        .values()
        .filter(|k| {
            matches!(k.role, chipledger_domain::records::Role::Agent | chipledger_domain::records::Role::Landmark)
        })
        .filter_map(|k| {
            Some(EnrolledSite {
                key_id: k.key_id.clone(),
                role: k.role,
                host: k.host.clone()?,
                site: k.site.clone(),
                enrolled_at: k.enrolled_at,
                revoked_at: k.revoked_at,
            })
        })
        .collect::<Vec<_>>();
    sites.sort_by_key(|s| s.enrolled_at);
    let candidates: Vec<Candidate> = latest.into_values().collect();
    let report = BundleReport {
        gpus: fleet::rows(&candidates),
        origin: b.origin.clone(),
        tree_size: size,
        root: cp.checkpoint.root,
        entries: b.entries.len(),
        by_kind,
        log_key_pinned: pinned.is_some(),
    };
    Ok(Replayed { report, candidates, acquisitions, proofs, sites, indexes })
}
