//! The fleet as the scheduler sees it, read from a log at one verified checkpoint: each GPU's
//! latest attestation and its standing as this reader computes it (`domain::standing`: SKU from
//! the PCI ids, anomalies, evidence, acquisition verdict) — never the signer's conclusions. Pure
//! but for the [`LogClient`] the caller hands in; what the scheduler, the dashboard and the
//! command line all read.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::Catalog;
use crate::dsse::Envelope;
use crate::fingerprint::GpuUuid;
use crate::identify::{Anomaly, HistoryRules};
use crate::keys::VerifierKey;
use crate::log::{AsOf, LogClient};
use crate::merkle::Hash;
use crate::note::{open_checkpoint, Checkpoint};
use crate::records::ProbeSource;
use crate::records::{Acquisition, AttestedGpu, GpuAttestation, Record};
use crate::rules::{RuleVersion, Verdict, VerdictKind};
use crate::standing;
use crate::trail::Trail;
use crate::Error;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One GPU as the scheduler sees it: its latest attestation and what the log says about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub uuid: GpuUuid,
    pub host: String,
    pub serial: Option<String>,
    pub sku: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub source: ProbeSource,
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    pub anomalies: Vec<Anomaly>,
    pub verdict: VerdictKind,
    /// The Oct 2023 classification label (`3A090.a.1`, `not 3A090`, …), when the SKU is known.
    pub classification: Option<String>,
    /// Another workload holds it.
    #[serde(default)]
    pub busy: bool,
    /// The attestation this state comes from, and the fingerprint digest it attested.
    pub attestation_index: u64,
    pub fingerprint_digest: crate::merkle::Hash,
    /// Where its facts came from (`self-reported`, `imported`).
    #[serde(default = "default_evidence")]
    pub evidence: crate::standing::Evidence,
    /// The anomalies its own record and trail give (`anomalies` adds those of its serial).
    #[serde(skip)]
    pub fact_anomalies: Vec<Anomaly>,
    /// Its PCI bus id as attested (`00000000:18:00.0`): the order a host numbers its devices in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// Its hardware identity, when its NVIDIA attestation evidence verifies (the attestation
    /// key certificate's serial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ueid: Option<String>,
    /// The licensed destination: the country its serial's latest acquisition shipped it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licensed_to: Option<crate::country::Country>,
    /// Where its host's location proofs put it (`domain::located`), once a reader judged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<crate::location::Judgement>,
}

fn default_evidence() -> crate::standing::Evidence {
    crate::standing::Evidence::SelfReported
}

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
    load_with(log, log_key, &mut |serial, size| latest_acquisition(log, serial, size))
}

/// `(serial, uuids reporting it)` → the GPU an admin resolved the serial to, if any.
pub type OwnerLookup<'a> = &'a mut dyn FnMut(&str, &[GpuUuid]) -> Result<Option<GpuUuid>, Error>;

/// `(serial, size)` → the latest acquisition record naming `serial` among the first `size` entries.
pub type AcquisitionLookup<'a> = &'a mut dyn FnMut(&str, u64) -> Result<Option<Acquisition>, Error>;

/// One GPU of an attestation at log index `index` as its own record and its trail through the
/// log (this attestation folded in) give it: SKU recomputed from its PCI ids, the anomalies of
/// its facts (`domain::standing::of_facts`), and those of its trail (a move, two hosts, a VBIOS
/// or identity change). Its verdict and the anomalies of its serial come from
/// [`judge_serials`], once the fleet around it is known. With `log_key` (the key of the log the
/// record is read from), evidence over a nonce derived from that log's checkpoint can be
/// `hardware-signed` (`domain::standing::of_facts_in`).
pub fn candidate(
    catalog: &Catalog,
    att: &GpuAttestation,
    gpu: &AttestedGpu,
    index: u64,
    trail: Option<&Trail>,
    log_key: Option<&VerifierKey>,
) -> Candidate {
    let previous = trail.and_then(|t| t.previous_on(&att.host.hostname, index));
    let in_log = log_key.map(|log_key| standing::InLog { log_key, index, previous });
    let mut facts = standing::of_facts_in(catalog, att, gpu, in_log);
    let classification = standing::class(catalog, facts.sku.as_deref(), RuleVersion::Oct2023);
    if let Some(trail) = trail {
        facts.anomalies.extend(trail.fact_anomalies(&gpu.uuid));
        facts.anomalies.extend(trail.host_anomalies(&gpu.uuid, &att.host.hostname, HistoryRules::default()));
    }
    Candidate {
        uuid: gpu.uuid.clone(),
        host: att.host.hostname.clone(),
        serial: gpu.facts.serial.clone(),
        sku: facts.sku,
        memory_total_bytes: gpu.facts.memory_total_bytes,
        source: att.source,
        observed_at: att.observed_at,
        anomalies: facts.anomalies.clone(),
        verdict: VerdictKind::NoAcquisitionRecord,
        classification,
        busy: false,
        attestation_index: index,
        fingerprint_digest: gpu.fingerprint_digest,
        evidence: facts.evidence,
        fact_anomalies: facts.anomalies,
        pci_bus_id: gpu.facts.pci_bus_id.clone(),
        ueid: facts.ueid,
        licensed_to: None,
        location: None,
    }
}

/// Judges every candidate's serial against the others' and its latest acquisition
/// (`domain::standing::of_serial_parts`): a serial under two UUIDs gives neither the verdict; an
/// acquisition of another SKU gives none. Sets each candidate's verdict and anomalies; returns
/// the verdicts. `acquisition(serial)` is asked once per serial; `owner(serial, uuids)` (the GPU
/// an admin resolved the serial to, [`serial_owner`]) once per serial reported under several UUIDs.
pub fn judge_serials(
    catalog: &Catalog,
    candidates: &mut [&mut Candidate],
    acquisition: &mut dyn FnMut(&str) -> Result<Option<Acquisition>, Error>,
    owner: OwnerLookup<'_>,
) -> Result<BTreeMap<GpuUuid, Verdict>, Error> {
    judge_serials_among(catalog, candidates, None, acquisition, owner)
}

/// [`judge_serials`] for the candidates in `only` (all when `None`), against every candidate's
/// serial: a fleet that changed in a few GPUs or serials is judged again there only. Returns the
/// verdicts of the candidates judged.
pub fn judge_serials_among(
    catalog: &Catalog,
    candidates: &mut [&mut Candidate],
    only: Option<&std::collections::HashSet<GpuUuid>>,
    acquisition: &mut dyn FnMut(&str) -> Result<Option<Acquisition>, Error>,
    owner: OwnerLookup<'_>,
) -> Result<BTreeMap<GpuUuid, Verdict>, Error> {
    let wanted = |uuid: &GpuUuid| only.is_none_or(|set| set.contains(uuid));
    let judged_serials: std::collections::HashSet<&String> =
        candidates.iter().filter(|c| wanted(&c.uuid)).filter_map(|c| c.serial.as_ref()).collect();
    let mut by_serial: HashMap<String, Vec<GpuUuid>> = HashMap::new();
    for c in candidates.iter() {
        if let Some(serial) = &c.serial {
            by_serial.entry(serial.clone()).or_default().push(c.uuid.clone());
        }
    }
    let mut acquisitions: HashMap<String, Option<Acquisition>> = HashMap::new();
    let mut owners: HashMap<String, Option<GpuUuid>> = HashMap::new();
    for (serial, uuids) in by_serial.iter().filter(|(s, u)| u.len() > 1 && judged_serials.contains(s)) {
        owners.insert(serial.clone(), owner(serial, uuids)?);
    }
    // (SKU, serial's acquisition) → verdict: a fleet has a handful of SKUs and one acquisition
    // per purchase, but thousands of GPUs.
    let mut memo: HashMap<(Option<String>, String), (Verdict, Vec<Anomaly>)> = HashMap::new();
    let mut verdicts = BTreeMap::new();
    for c in candidates.iter_mut().filter(|c| wanted(&c.uuid)) {
        let uuids = c.serial.as_ref().and_then(|s| by_serial.get(s)).map_or(&[][..], Vec::as_slice);
        let shared = uuids.len() > 1;
        let acq = match &c.serial {
            Some(serial) => {
                if !acquisitions.contains_key(serial) {
                    acquisitions.insert(serial.clone(), acquisition(serial)?);
                }
                acquisitions.get(serial).and_then(Option::as_ref)
            }
            None => None,
        };
        let resolved = c.serial.as_ref().and_then(|s| owners.get(s)).and_then(Option::as_ref);
        let around = standing::Surroundings { uuids_with_serial: uuids, acquisition: acq, owner: resolved };
        let judged =
            |c: &Candidate| standing::of_serial_parts(catalog, c.sku.as_deref(), &c.uuid, c.serial.as_deref(), around);
        let (v, extra) = match (shared, acq) {
            // Unshared serials with an acquisition judge the same for the same SKU and record.
            (false, Some(a)) => {
                let key = (c.sku.clone(), serde_json::to_string(a).unwrap_or_default());
                let (v, mut extra) = memo.entry(key).or_insert_with(|| judged(c)).clone();
                // The judgement is the same for every serial of the acquisition; the anomaly
                // names this GPU's.
                for a in &mut extra {
                    if let Anomaly::AcquisitionSkuDiffers { serial, .. } = a {
                        *serial = c.serial.clone().unwrap_or_default();
                    }
                }
                (v, extra)
            }
            _ => judged(c),
        };
        c.anomalies = c.fact_anomalies.iter().cloned().chain(extra).collect();
        c.verdict = v.verdict;
        c.licensed_to = acq.map(|a| a.ship_to);
        verdicts.insert(c.uuid.clone(), v);
    }
    // One hardware identity under several UUIDs: every one of them is suspect.
    let mut by_ueid: HashMap<&str, Vec<GpuUuid>> = HashMap::new();
    for c in candidates.iter() {
        if let Some(ueid) = &c.ueid {
            by_ueid.entry(ueid.as_str()).or_default().push(c.uuid.clone());
        }
    }
    let shared: HashMap<String, Vec<GpuUuid>> = by_ueid
        .into_iter()
        .filter(|(_, uuids)| uuids.len() > 1)
        .map(|(ueid, mut uuids)| {
            uuids.sort();
            (ueid.to_string(), uuids)
        })
        .collect();
    for c in candidates.iter_mut().filter(|c| wanted(&c.uuid)) {
        if let Some((ueid, uuids)) = c.ueid.as_ref().and_then(|u| shared.get_key_value(u)) {
            c.anomalies.push(Anomaly::UeidUnderTwoUuids { ueid: ueid.clone(), uuids: uuids.clone() });
        }
    }
    Ok(verdicts)
}

/// [`load`], with the acquisitions looked up by `acquisition(serial, size)`: the latest
/// acquisition record naming `serial` among the first `size` entries. A caller holding every
/// acquisition (the server's dashboard) answers from memory instead of one log query per serial.
pub fn load_with(log: &dyn LogClient, log_key: &VerifierKey, acquisition: AcquisitionLookup) -> Result<Fleet, Error> {
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
        acquisition,
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
    acquisition: AcquisitionLookup,
) -> Result<Fleet, Error> {
    let catalog = Catalog::embedded()?;
    let checkpoint_text = log.checkpoint()?;
    let checkpoint = open_checkpoint(checkpoint_text.as_bytes(), std::slice::from_ref(log_key), None)?.checkpoint;
    let inventory = log.inventory(AsOf::Size(checkpoint.size))?;
    // Each attestation once: it covers several GPUs.
    let mut wanted: Vec<u64> = inventory.iter().map(|g| g.index).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let parsed = attestations(&wanted)?;
    let mut candidates = Vec::with_capacity(inventory.len());
    let mut entries = BTreeMap::new();
    for inv in inventory {
        let Some((leaf_hash, att)) = parsed.get(&inv.index) else { continue };
        let Some(gpu) = att.gpus.iter().find(|g| g.uuid == inv.uuid) else { continue };
        candidates.push(candidate(catalog, att, gpu, inv.index, Some(&inv.trail), Some(log_key)));
        entries.insert(inv.uuid.clone(), AttestationEntry { index: inv.index, leaf_hash: *leaf_hash });
    }
    let size = checkpoint.size;
    let mut refs: Vec<&mut Candidate> = candidates.iter_mut().collect();
    let verdicts = judge_serials(catalog, &mut refs, &mut |serial| acquisition(serial, size), &mut |serial, uuids| {
        serial_owner(log, serial, uuids, size)
    })?;
    Ok(Fleet { checkpoint_text, checkpoint, candidates, attestations: entries, verdicts })
}

/// One host's GPUs from `log` at its current checkpoint (signed by `log_key`), judged exactly as
/// [`load`] judges them — their serials and hardware identities (`ueid`s) against every GPU in
/// the log reporting the same — while decoding only their own attestations and those of GPUs
/// sharing their serials or identities: what a scheduler's hook on one node reads. The fleet's
/// candidates are the host's GPUs only.
pub fn load_host(log: &dyn LogClient, log_key: &VerifierKey, host: &str) -> Result<Fleet, Error> {
    let catalog = Catalog::embedded()?;
    let checkpoint_text = log.checkpoint()?;
    let checkpoint = open_checkpoint(checkpoint_text.as_bytes(), std::slice::from_ref(log_key), None)?.checkpoint;
    let size = checkpoint.size;
    let inventory = log.inventory(AsOf::Size(size))?;
    let serials: std::collections::HashSet<&str> =
        inventory.iter().filter(|g| g.host == host).filter_map(|g| g.serial.as_deref()).collect();
    let ueids: std::collections::HashSet<String> =
        inventory.iter().filter(|g| g.host == host).filter_map(|g| g.ueid.as_deref()).map(str::to_uppercase).collect();
    let relevant: Vec<&crate::log::InventoryGpu> = inventory
        .iter()
        .filter(|g| {
            g.host == host
                || g.serial.as_deref().is_some_and(|s| serials.contains(s))
                || g.ueid.as_deref().is_some_and(|u| ueids.contains(&u.to_uppercase()))
        })
        .collect();
    let mut wanted: Vec<u64> = relevant.iter().map(|g| g.index).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let entries = wanted.iter().map(|i| log.entry(*i)).collect::<Result<Vec<_>, _>>()?;
    let parsed = decode_in_parallel(&entries, |e| {
        let env = Envelope::from_json(e.envelope.as_bytes())?;
        Ok((e.index, e.leaf_hash, Record::from_payload(&env.payload_bytes()?)?))
    })?;
    let mut candidates = Vec::with_capacity(relevant.len());
    let mut entries = BTreeMap::new();
    for inv in &relevant {
        let Some((leaf_hash, att)) = parsed.get(&inv.index) else { continue };
        let Some(gpu) = att.gpus.iter().find(|g| g.uuid == inv.uuid) else { continue };
        candidates.push(candidate(catalog, att, gpu, inv.index, Some(&inv.trail), Some(log_key)));
        if inv.host == host {
            entries.insert(inv.uuid.clone(), AttestationEntry { index: inv.index, leaf_hash: *leaf_hash });
        }
    }
    let own: std::collections::HashSet<GpuUuid> = entries.keys().cloned().collect();
    let mut refs: Vec<&mut Candidate> = candidates.iter_mut().collect();
    let verdicts = judge_serials_among(
        catalog,
        &mut refs,
        Some(&own),
        &mut |serial| latest_acquisition(log, serial, size),
        &mut |serial, uuids| serial_owner(log, serial, uuids, size),
    )?;
    candidates.retain(|c| own.contains(&c.uuid));
    Ok(Fleet { checkpoint_text, checkpoint, candidates, attestations: entries, verdicts })
}

/// Judges where the fleet's GPUs are (`domain::located`): reads the sites and the proofs
/// appended in the last `max_age_secs` before `now` among the fleet's checkpoint's entries — of
/// `host` only, for a fleet from [`load_host`], else of every host — and sets each candidate's
/// `location` and location anomalies. Returns what it read, for pages that draw it.
pub fn locate(
    fleet: &mut Fleet,
    log: &dyn LogClient,
    host: Option<&str>,
    now: OffsetDateTime,
    max_age_secs: u64,
) -> Result<crate::located::Locations, Error> {
    let size = fleet.checkpoint.size;
    let mut locations = crate::located::Locations::read(log, host, size, now, max_age_secs)?;
    if locations.truncated {
        // One answer holds the newest proofs only: read each of the fleet's hosts on its own.
        let hosts: std::collections::BTreeSet<&str> = fleet.candidates.iter().map(|c| c.host.as_str()).collect();
        locations.proofs.clear();
        for h in hosts {
            let one = crate::located::Locations::read(log, Some(h), size, now, max_age_secs)?;
            locations.overflowing.extend(one.overflowing);
            locations.proofs.extend(one.proofs);
        }
        locations.truncated = false;
    }
    let mut refs: Vec<&mut Candidate> = fleet.candidates.iter_mut().collect();
    locations.apply(&mut refs)?;
    Ok(locations)
}

/// [`locate`] for a reader whose decision may not need it: when `required`, a failed read is an
/// error; otherwise the fleet is left unlocated (every `location` `None`) and the error returned
/// as `Ok(Some(reason))` for the caller to log — a log that serves no location proofs (an older
/// server) then stops no job that does not ask where its GPUs are.
pub fn locate_if(
    fleet: &mut Fleet,
    log: &dyn LogClient,
    host: Option<&str>,
    now: OffsetDateTime,
    max_age_secs: u64,
    required: bool,
) -> Result<Option<String>, Error> {
    match locate(fleet, log, host, now, max_age_secs) {
        Ok(_) => Ok(None),
        Err(e) if !required => Ok(Some(e.to_string())),
        Err(e) => Err(e),
    }
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
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Log("a decoding thread failed".into()))))
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

/// The GPU among `uuids` an admin last resolved `serial` to within the first `size` entries:
/// an annotation of that GPU with `resolves_serial` (the log lets only admin keys sign one).
pub fn serial_owner(log: &dyn LogClient, serial: &str, uuids: &[GpuUuid], size: u64) -> Result<Option<GpuUuid>, Error> {
    // Past the cap no resolution counts, and the histories are not read at all.
    if uuids.len() > MAX_CLAIMANTS {
        return Ok(None);
    }
    let mut found = Vec::new();
    for uuid in uuids {
        for e in log
            .history(uuid, None)?
            .into_iter()
            .filter(|e| e.kind == crate::records::RecordKind::Annotation && e.index < size)
        {
            let env = Envelope::from_json(e.envelope.as_bytes())?;
            if let Record::Annotation(a) = Record::from_payload(&env.payload_bytes()?)? {
                if let Some(r) = Resolution::of(e.index, &a) {
                    found.push(r);
                }
            }
        }
    }
    Ok(resolved_owner(serial, uuids, &found))
}

/// One purchase's serial is one card: a serial claimed by more UUIDs than any host holds GPUs
/// is not a question an annotation settles.
pub const MAX_CLAIMANTS: usize = 16;

/// An admin's annotation at log index `index` saying that `serial` belongs to GPU `uuid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub index: u64,
    pub uuid: GpuUuid,
    pub serial: String,
}

impl Resolution {
    /// The resolution an annotation at `index` makes, if it is about a GPU and resolves a serial.
    pub fn of(index: u64, a: &crate::records::Annotation) -> Option<Resolution> {
        let crate::records::AnnotationTarget::Gpu { uuid } = &a.target else { return None };
        let serial = a.resolves_serial.clone()?;
        Some(Resolution { index, uuid: uuid.clone(), serial })
    }
}

/// The GPU among `uuids` that the latest of `resolutions` naming `serial` and one of them
/// resolves it to; none past [`MAX_CLAIMANTS`] claimants. What [`serial_owner`] decides from a
/// log, for a caller holding the annotations (a bundle).
pub fn resolved_owner<'a>(
    serial: &str,
    uuids: &[GpuUuid],
    resolutions: impl IntoIterator<Item = &'a Resolution>,
) -> Option<GpuUuid> {
    if uuids.len() > MAX_CLAIMANTS {
        return None;
    }
    resolutions
        .into_iter()
        .filter(|r| r.serial == serial && uuids.contains(&r.uuid))
        .max_by_key(|r| r.index)
        .map(|r| r.uuid.clone())
}

/// The latest acquisition record naming `serial` within the first `size` entries.
fn latest_acquisition(log: &dyn LogClient, serial: &str, size: u64) -> Result<Option<Acquisition>, Error> {
    let entries = log.acquisitions(serial)?;
    for e in entries.iter().rev().filter(|e| e.index < size) {
        let env = Envelope::from_json(e.envelope.as_bytes())?;
        if let Record::Acquisition(a) = Record::from_payload(&env.payload_bytes()?)? {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

/// One GPU as an auditor's export shows it: the dashboard's fleet table, `fleet.csv`,
/// `fleet.json` and `chipledger fleet` all give these rows and columns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub host: String,
    pub sku: String,
    pub serial: String,
    pub uuid: String,
    /// RFC 3339, UTC, whole seconds.
    pub last_attested: String,
    #[serde(skip)]
    pub observed_at: OffsetDateTime,
    pub source: String,
    pub evidence: String,
    pub class_2023: String,
    pub verdict: String,
    pub anomalies: Vec<String>,
    #[serde(skip)]
    pub worst: Option<crate::identify::Severity>,
    pub attestation_index: u64,
    /// Its hardware identity, when its NVIDIA evidence verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ueid: Option<String>,
    /// The location verdict (`consistent`, `possibly-outside`, `contradicts-declared`,
    /// `unproven`), with what the proofs locate (`host-key`: the key holder); empty when the
    /// reader did not judge locations.
    pub location: String,
    /// What decided the location verdict.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location_reason: String,
}

/// The CSV header of [`Row::csv_record`].
pub const CSV_HEADER: [&str; 12] = [
    "host",
    "sku",
    "serial",
    "uuid",
    "last_attested_utc",
    "source",
    "evidence",
    "class_oct_2023",
    "acquisition_verdict",
    "anomalies",
    "attestation_index",
    "location",
];

impl Row {
    pub fn of(c: &Candidate) -> Row {
        Row {
            host: c.host.clone(),
            sku: c.sku.clone().unwrap_or_else(|| "needs review".into()),
            serial: c.serial.clone().unwrap_or_default(),
            uuid: c.uuid.as_str().to_string(),
            last_attested: rfc3339(c.observed_at),
            observed_at: c.observed_at,
            source: c.source.as_str().to_string(),
            evidence: c.evidence.label().to_string(),
            class_2023: c.classification.clone().unwrap_or_else(|| "needs review".into()),
            verdict: c.verdict.label().to_string(),
            anomalies: c.anomalies.iter().map(|a| a.explain()).collect(),
            worst: c.anomalies.iter().map(|a| a.severity()).max(),
            attestation_index: c.attestation_index,
            ueid: c.ueid.clone(),
            location: c.location.as_ref().map(location_label).unwrap_or_default(),
            location_reason: c.location.as_ref().map(|j| j.reason.clone()).unwrap_or_default(),
        }
    }

    /// The row's CSV cells, in [`CSV_HEADER`]'s order, each safe to open in a spreadsheet.
    pub fn csv_record(&self) -> [String; 12] {
        [
            &self.host,
            &self.sku,
            &self.serial,
            &self.uuid,
            &self.last_attested,
            &self.source,
            &self.evidence,
            &self.class_2023,
            &self.verdict,
            &self.anomalies.join("; "),
            &self.attestation_index.to_string(),
            &self.location,
        ]
        .map(|c| csv_safe(c))
    }
}

/// `consistent (host-key)`: the verdict and what the proofs locate.
pub fn location_label(j: &crate::location::Judgement) -> String {
    match j.method {
        Some(m) => format!("{} ({})", j.verdict.label(), m.label()),
        None => j.verdict.label().to_string(),
    }
}

/// The fleet's rows, by host then UUID.
pub fn rows<'a>(candidates: impl IntoIterator<Item = &'a Candidate>) -> Vec<Row> {
    let mut rows: Vec<Row> = candidates.into_iter().map(Row::of).collect();
    rows.sort_by(|a, b| (a.host.as_str(), a.uuid.as_str()).cmp(&(b.host.as_str(), b.uuid.as_str())));
    rows
}

/// A CSV cell that a spreadsheet will not run as a formula.
pub fn csv_safe(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

/// A time as RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
