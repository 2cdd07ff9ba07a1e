//! The fleet as the scheduler sees it, read from a log at one verified checkpoint: each GPU's
//! latest attestation (facts, anomalies, source, age) and its acquisition verdict.

use std::collections::BTreeMap;

use chipledger_domain::catalog::Catalog;
use chipledger_domain::dsse::Envelope;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::log::{AsOf, LogClient};
use chipledger_domain::merkle::Hash;
use chipledger_domain::note::{open_checkpoint, Checkpoint};
use chipledger_domain::records::{AttestedGpu, GpuAttestation, Record};
use chipledger_domain::rules::{classify, verdict, DatacenterJudgement, RuleVersion, Shipment, Verdict};

use crate::placement::Candidate;
use crate::Error;

/// Where a candidate's attestation sits in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct AttestationEntry {
    pub index: u64,
    pub leaf_hash: Hash,
}

/// The fleet at one checkpoint.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// The signed checkpoint (note text) everything here was read at, and its parsed form.
    pub checkpoint_text: String,
    pub checkpoint: Checkpoint,
    pub candidates: Vec<Candidate>,
    pub attestations: BTreeMap<GpuUuid, AttestationEntry>,
    pub verdicts: BTreeMap<GpuUuid, Verdict>,
}

/// Reads the fleet from `log` at its current checkpoint, which must be signed by `log_key`.
pub fn load(log: &dyn LogClient, log_key: &VerifierKey) -> Result<Fleet, Error> {
    load_with(log, log_key, &mut |serial, size| latest_shipment(log, serial, size))
}

/// `(serial, size)` → the latest shipment recorded for `serial` among the first `size` entries.
pub type ShipmentLookup<'a> = &'a mut dyn FnMut(&str, u64) -> Result<Option<Shipment>, Error>;

/// Builds candidates, judging each (SKU, shipment) pair once: a fleet has a handful of SKUs and
/// one shipment per purchase, but thousands of GPUs.
#[derive(Debug, Default)]
pub struct Judge {
    /// (SKU, shipment) → the verdict and the Oct 2023 class label.
    memo: std::collections::HashMap<JudgeKey, (Verdict, Option<String>)>,
}

type JudgeKey = (Option<String>, Option<Shipment>);

impl Judge {
    /// One GPU of an attestation at log index `index` as the scheduler sees it, and its verdict
    /// given the latest `shipment` of its serial.
    pub fn candidate(
        &mut self,
        att: &GpuAttestation,
        gpu: &AttestedGpu,
        index: u64,
        shipment: Option<&Shipment>,
    ) -> (Candidate, Verdict) {
        let key = (gpu.identification.sku.clone(), shipment.cloned());
        let (v, classification) = self
            .memo
            .entry(key)
            .or_insert_with(|| {
                let catalog = Catalog::embedded().ok();
                let sku = gpu.identification.sku.as_deref().and_then(|s| catalog.and_then(|c| c.sku(s).ok()));
                let v = verdict(sku, sku.map(DatacenterJudgement::catalog_default), shipment);
                let class = sku.map(|s| {
                    classify(s, RuleVersion::Oct2023, DatacenterJudgement::catalog_default(s))
                        .bucket
                        .label()
                        .to_string()
                });
                (v, class)
            })
            .clone();
        let c = Candidate {
            uuid: gpu.uuid.clone(),
            host: att.host.hostname.clone(),
            serial: gpu.facts.serial.clone(),
            sku: gpu.identification.sku.clone(),
            memory_total_bytes: gpu.facts.memory_total_bytes,
            source: att.source,
            observed_at: att.observed_at,
            anomalies: gpu.identification.anomalies.clone(),
            verdict: v.verdict,
            classification,
            busy: false,
            attestation_index: index,
            fingerprint_digest: gpu.fingerprint_digest,
        };
        (c, v)
    }
}

/// The verdict of a candidate whose serial has a new latest shipment.
pub fn reverdict(c: &mut Candidate, shipment: Option<&Shipment>) -> Verdict {
    let sku = c.sku.as_deref().and_then(|s| Catalog::embedded().ok().and_then(|cat| cat.sku(s).ok()));
    let v = verdict(sku, sku.map(DatacenterJudgement::catalog_default), shipment);
    c.verdict = v.verdict;
    v
}

/// [`load`], with the shipments looked up by `shipment(serial, size)`: the latest acquisition
/// record naming `serial` among the first `size` entries. A caller holding every acquisition
/// (the server's dashboard) answers from memory instead of one log query per GPU.
pub fn load_with(log: &dyn LogClient, log_key: &VerifierKey, shipment: ShipmentLookup) -> Result<Fleet, Error> {
    load_from(
        log,
        log_key,
        &mut |indexes| {
            let entries = indexes.iter().map(|i| log.entry(*i)).collect::<Result<Vec<_>, _>>()?;
            decode_in_parallel(&entries, |e| {
                let env = Envelope::from_json(e.envelope.as_bytes())?;
                Ok((e.index, e.leaf_hash, Record::from_payload(&env.payload_bytes()?)?))
            })
        },
        shipment,
    )
}

/// `indexes` → the attestations at those log indexes, with their leaf hashes.
pub type AttestationLookup<'a> = &'a mut dyn FnMut(&[u64]) -> Result<BTreeMap<u64, (Hash, GpuAttestation)>, Error>;

/// [`load_with`], with the attestations read by `attestations` (the server reads its own
/// ledger's stored payloads instead of rebuilding and re-parsing each envelope).
pub fn load_from(
    log: &dyn LogClient,
    log_key: &VerifierKey,
    attestations: AttestationLookup,
    shipment: ShipmentLookup,
) -> Result<Fleet, Error> {
    Catalog::embedded()?;
    let checkpoint_text = log.checkpoint()?;
    let checkpoint = open_checkpoint(checkpoint_text.as_bytes(), std::slice::from_ref(log_key), None)?.checkpoint;
    let inventory = log.inventory(AsOf::Size(checkpoint.size))?;
    // Each attestation once: it covers several GPUs.
    let mut wanted: Vec<u64> = inventory.iter().map(|g| g.index).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let parsed = attestations(&wanted)?;
    let mut judge = Judge::default();
    let mut candidates = Vec::with_capacity(inventory.len());
    let mut entries = BTreeMap::new();
    let mut verdicts = BTreeMap::new();
    for inv in inventory {
        let Some((leaf_hash, att)) = parsed.get(&inv.index) else { continue };
        let Some(gpu) = att.gpus.iter().find(|g| g.uuid == inv.uuid) else { continue };
        let shipment = match &gpu.facts.serial {
            Some(serial) => shipment(serial, checkpoint.size)?,
            None => None,
        };
        let (c, v) = judge.candidate(att, gpu, inv.index, shipment.as_ref());
        candidates.push(c);
        entries.insert(inv.uuid.clone(), AttestationEntry { index: inv.index, leaf_hash: *leaf_hash });
        verdicts.insert(inv.uuid, v);
    }
    Ok(Fleet { checkpoint_text, checkpoint, candidates, attestations: entries, verdicts })
}

/// Decodes `items` to records on every core; keeps the attestations, by log index.
pub fn decode_in_parallel<T: Sync>(
    items: &[T],
    decode: impl Fn(&T) -> Result<(u64, Hash, Record), Error> + Sync,
) -> Result<BTreeMap<u64, (Hash, GpuAttestation)>, Error> {
    let run = |part: &[T]| -> Result<Vec<Decoded>, Error> {
        let mut out = Vec::with_capacity(part.len());
        for item in part {
            if let (index, leaf, Record::GpuAttestation(att)) = decode(item)? {
                out.push((index, (leaf, att)));
            }
        }
        Ok(out)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < 64 || threads < 2 {
        return Ok(run(items)?.into_iter().collect());
    }
    let per = items.len().div_ceil(threads);
    let parts: Vec<Result<Vec<Decoded>, Error>> = std::thread::scope(|s| {
        let run = &run;
        let handles: Vec<_> = items.chunks(per).map(|part| s.spawn(move || run(part))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Domain(chipledger_domain::Error::Log("a decoding thread failed".into())))
                })
            })
            .collect()
    });
    let mut out = BTreeMap::new();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// An attestation's log index, with its leaf hash and record.
type Decoded = (u64, (Hash, GpuAttestation));

/// The shipment an acquisition record states.
pub fn shipment_of(a: &chipledger_domain::records::Acquisition) -> Shipment {
    Shipment { shipped_on: a.shipped_on, ship_to: a.ship_to, licence: a.licence.clone() }
}

/// The shipment of the latest acquisition record naming `serial` within the first `size` entries.
fn latest_shipment(log: &dyn LogClient, serial: &str, size: u64) -> Result<Option<Shipment>, Error> {
    let entries = log.acquisitions(serial)?;
    for e in entries.iter().rev().filter(|e| e.index < size) {
        let env = Envelope::from_json(e.envelope.as_bytes())?;
        if let Record::Acquisition(a) = Record::from_payload(&env.payload_bytes()?)? {
            return Ok(Some(shipment_of(&a)));
        }
    }
    Ok(None)
}
