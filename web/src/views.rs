//! What the dashboard shows, computed from the ledger: the fleet (cached per checkpoint), a GPU's
//! timeline, runs and their verification, the log's status. No routing or rendering here: its
//! errors are the API's (`ApiError`, which says how each maps to a status) and its values are
//! what pages and exports render.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chipledger_domain::catalog::Catalog;
use chipledger_domain::country::Country;
use chipledger_domain::dsse::Envelope;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::fleet::Candidate;
use chipledger_domain::identify::Severity;
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::log::{EntrySummary, LogClient};
use chipledger_domain::merkle;
use chipledger_domain::note::open_checkpoint;
use chipledger_domain::records::{Acquisition, Record, RecordKind, RunProvenance};
use chipledger_domain::rules::{classify_all, DatacenterJudgement, Verdict};
use chipledger_ledger::{EntryFilter, Ledger};
use serde::Serialize;
use time::OffsetDateTime;

/// One row of the fleet table and its exports.
pub(crate) type FleetRow = chipledger_domain::fleet::Row;

/// The fleet at one checkpoint, with each GPU's verdict in full.
#[derive(Debug, Clone)]
pub(crate) struct FleetSnapshot {
    pub size: u64,
    pub rows: Vec<FleetRow>,
    pub verdicts: BTreeMap<String, Verdict>,
    /// Each row's licensed destination (its acquisition's `ship_to`), in the rows' order.
    pub licensed: Vec<Option<Country>>,
    /// What an update needs: each GPU's scheduler view, and every acquisition by serial.
    candidates: HashMap<String, Candidate>,
    acquisitions: HashMap<String, Vec<(u64, Acquisition)>>,
}

/// The last fleet computed. When the log has grown, only the new entries are read: a new
/// attestation replaces its GPUs' rows, a new acquisition re-judges the GPUs of its serials.
#[derive(Debug, Default)]
pub(crate) struct FleetCache(Mutex<Option<Arc<FleetSnapshot>>>);

pub(crate) fn source_label(source: chipledger_domain::records::ProbeSource) -> String {
    source.as_str().to_string()
}

fn internal<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> crate::error::ApiError + '_ {
    move |e| {
        tracing::error!(error = %e, "{what}");
        crate::error::ApiError::internal(format!("{what} failed; the server log has details"))
    }
}

fn latest_acquisition(
    acquisitions: &HashMap<String, Vec<(u64, Acquisition)>>,
    serial: &str,
    size: u64,
) -> Option<Acquisition> {
    acquisitions.get(serial).and_then(|v| v.iter().rev().find(|(i, _)| *i < size)).map(|(_, a)| a.clone())
}

fn add_acquisition(acquisitions: &mut HashMap<String, Vec<(u64, Acquisition)>>, index: u64, a: Acquisition) {
    for serial in &a.serials {
        acquisitions.entry(serial.clone()).or_default().push((index, a.clone()));
    }
}

impl FleetCache {
    pub(crate) fn get(&self, ledger: &Ledger) -> Result<Arc<FleetSnapshot>, crate::error::ApiError> {
        // Held while computing, so concurrent pages wait for one computation instead of racing.
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let size = ledger.size();
        let snap = match cached.as_ref() {
            Some(s) if s.size == size => return Ok(s.clone()),
            Some(s) if s.size < size => update(ledger, s)?,
            _ => full(ledger)?,
        };
        let snap = Arc::new(snap);
        *cached = Some(snap.clone());
        Ok(snap)
    }
}

/// The fleet from scratch, at the current checkpoint.
fn full(ledger: &Ledger) -> Result<FleetSnapshot, crate::error::ApiError> {
    let mut acquisitions: HashMap<String, Vec<(u64, Acquisition)>> = HashMap::new();
    let filter = EntryFilter { kind: Some(RecordKind::Acquisition), ..EntryFilter::default() };
    for e in ledger.entries(&filter).map_err(crate::error::ledger_error)? {
        if let Some(Record::Acquisition(a)) = record_of(&e) {
            add_acquisition(&mut acquisitions, e.index, a);
        }
    }
    let mut lookup = |serial: &str, size: u64| Ok(latest_acquisition(&acquisitions, serial, size));
    // The stored payloads, not rebuilt envelopes: this is the server's own ledger.
    let mut attestations = |indexes: &[u64]| {
        let payloads = ledger.payloads(indexes).map_err(|e| chipledger_domain::Error::Log(e.to_string()))?;
        chipledger_domain::fleet::decode_in_parallel(&payloads, |(index, leaf, payload)| {
            Ok((*index, *leaf, Record::from_payload(payload)?))
        })
    };
    let fleet = chipledger_domain::fleet::load_from(ledger, ledger.verifier_key(), &mut attestations, &mut lookup)
        .map_err(internal("reading the fleet"))?;
    let verdicts = fleet.verdicts.into_iter().map(|(u, v)| (u.as_str().to_string(), v)).collect();
    let candidates = fleet.candidates.into_iter().map(|c| (c.uuid.as_str().to_string(), c)).collect();
    Ok(snapshot(fleet.checkpoint.size, candidates, verdicts, acquisitions))
}

/// `old` brought up to the current checkpoint by reading only the entries after it.
fn update(ledger: &Ledger, old: &FleetSnapshot) -> Result<FleetSnapshot, crate::error::ApiError> {
    let (_, note) = ledger.checkpoint().map_err(crate::error::ledger_error)?;
    let size = open_checkpoint(note.as_bytes(), std::slice::from_ref(ledger.verifier_key()), None)
        .map_err(internal("checking the checkpoint"))?
        .checkpoint
        .size;
    let mut candidates = old.candidates.clone();
    let mut verdicts = old.verdicts.clone();
    let mut acquisitions = old.acquisitions.clone();
    let filter = EntryFilter { from: Some(old.size), ..EntryFilter::default() };
    let mut new_attestations = Vec::new();
    // GPUs whose history an admin settled: their trails change without a new attestation.
    let mut settled: std::collections::BTreeSet<GpuUuid> = std::collections::BTreeSet::new();
    // Serials whose GPUs' verdicts may change: of new acquisitions and resolutions, and the old
    // and new serials of re-attested GPUs.
    let mut serials: std::collections::HashSet<String> = std::collections::HashSet::new();
    for e in ledger.entries(&filter).map_err(crate::error::ledger_error)?.into_iter().filter(|e| e.index < size) {
        match record_of(&e) {
            Some(Record::GpuAttestation(a)) => new_attestations.push((e.index, a)),
            Some(Record::Acquisition(a)) => {
                serials.extend(a.serials.iter().cloned());
                add_acquisition(&mut acquisitions, e.index, a);
            }
            // An admin's resolution of a shared serial changes its GPUs' verdicts.
            Some(Record::Annotation(a)) => {
                if let (true, chipledger_domain::records::AnnotationTarget::Gpu { uuid }) =
                    (a.settles_history, &a.target)
                {
                    settled.insert(uuid.clone());
                }
                serials.extend(a.resolves_serial);
            }
            _ => {}
        }
    }
    let catalog = Catalog::embedded().map_err(internal("reading the catalog"))?;
    let mut judge: std::collections::HashSet<chipledger_domain::fingerprint::GpuUuid> =
        std::collections::HashSet::new();
    // Each re-attested GPU's latest attestation among the new ones, and its trail as of `size`
    // from the ledger (its hosts and fact changes need the whole history, which the cache does
    // not keep).
    let mut latest: HashMap<&str, usize> = HashMap::new();
    for (n, (_, a)) in new_attestations.iter().enumerate() {
        for g in &a.gpus {
            latest.insert(g.uuid.as_str(), n);
            serials.extend(g.facts.serial.clone());
        }
    }
    let uuids: Vec<GpuUuid> = new_attestations
        .iter()
        .flat_map(|(_, a)| a.gpus.iter().map(|g| g.uuid.clone()))
        .chain(settled.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let trails = ledger.trails(&uuids, size).map_err(crate::error::ledger_error)?;
    // A settled GPU that was not attested again: judged again on its latest attestation.
    let unchanged: Vec<u64> = settled
        .iter()
        .filter(|u| !latest.contains_key(u.as_str()))
        .filter_map(|u| candidates.get(u.as_str()).map(|c| c.attestation_index))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let payloads = ledger.payloads(&unchanged).map_err(crate::error::ledger_error)?;
    let unchanged = chipledger_domain::fleet::decode_in_parallel(&payloads, |(index, leaf, payload)| {
        Ok((*index, *leaf, Record::from_payload(payload)?))
    })
    .map_err(internal("reading settled GPUs' attestations"))?;
    for uuid in settled.iter().filter(|u| !latest.contains_key(u.as_str())) {
        let Some(index) = candidates.get(uuid.as_str()).map(|c| c.attestation_index) else { continue };
        let Some((_, a)) = unchanged.get(&index) else { continue };
        let Some(g) = a.gpus.iter().find(|g| &g.uuid == uuid) else { continue };
        let c =
            chipledger_domain::fleet::candidate(catalog, a, g, index, trails.get(uuid), Some(ledger.verifier_key()));
        candidates.insert(uuid.as_str().to_string(), c);
        judge.insert(uuid.clone());
    }
    for (uuid, n) in latest {
        let (index, a) = &new_attestations[n];
        let Some(g) = a.gpus.iter().find(|g| g.uuid.as_str() == uuid) else { continue };
        let c = chipledger_domain::fleet::candidate(
            catalog,
            a,
            g,
            *index,
            trails.get(&g.uuid),
            Some(ledger.verifier_key()),
        );
        let before = candidates.insert(uuid.to_string(), c);
        serials.extend(before.and_then(|b| b.serial));
        judge.insert(g.uuid.clone());
    }
    judge.extend(
        candidates.values().filter(|c| c.serial.as_ref().is_some_and(|s| serials.contains(s))).map(|c| c.uuid.clone()),
    );
    // Those GPUs are judged again, against the whole fleet's serials (from memory).
    if !judge.is_empty() {
        let mut refs: Vec<&mut Candidate> = candidates.values_mut().collect();
        let judged = chipledger_domain::fleet::judge_serials_among(
            catalog,
            &mut refs,
            Some(&judge),
            &mut |serial| Ok(latest_acquisition(&acquisitions, serial, size)),
            &mut |serial, uuids| chipledger_domain::fleet::serial_owner(ledger, serial, uuids, size),
        )
        .map_err(internal("judging the fleet"))?;
        verdicts.extend(judged.into_iter().map(|(u, v)| (u.as_str().to_string(), v)));
    }
    Ok(snapshot(size, candidates, verdicts, acquisitions))
}

fn snapshot(
    size: u64,
    candidates: HashMap<String, Candidate>,
    verdicts: BTreeMap<String, Verdict>,
    acquisitions: HashMap<String, Vec<(u64, Acquisition)>>,
) -> FleetSnapshot {
    let rows = chipledger_domain::fleet::rows(candidates.values());
    let licensed = rows.iter().map(|r| candidates.get(&r.uuid).and_then(|c| c.licensed_to)).collect();
    FleetSnapshot { size, rows, verdicts, licensed, candidates, acquisitions }
}

impl FleetSnapshot {
    /// The GPU's row and its licensed destination.
    pub(crate) fn gpu(&self, uuid: &str) -> Option<(&FleetRow, Option<Country>)> {
        let at = self.rows.iter().position(|r| r.uuid == uuid)?;
        Some((&self.rows[at], self.licensed.get(at).copied().flatten()))
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    chipledger_domain::fleet::rfc3339(t)
}

/// "3 h 20 min ago", for people.
pub(crate) fn age(now: OffsetDateTime, t: OffsetDateTime) -> String {
    let s = (now - t).whole_seconds();
    match s {
        s if s < 0 => "in the future".into(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h {} min ago", s / 3600, (s % 3600) / 60),
        s => format!("{} days ago", s / 86_400),
    }
}

/// One record in a GPU's timeline.
#[derive(Debug, Clone)]
pub(crate) struct TimelineItem {
    pub index: u64,
    pub appended_at: String,
    pub kind: String,
    pub signer: String,
    pub summary: String,
    pub details: Vec<String>,
    pub severity: Option<Severity>,
}

impl TimelineItem {
    /// The CSS class for its severity.
    pub(crate) fn css(&self) -> &'static str {
        match self.severity {
            Some(Severity::Danger) => "danger",
            Some(Severity::Warning) => "warning",
            _ => "",
        }
    }
}

fn record_of(e: &EntrySummary) -> Option<Record> {
    let env = Envelope::from_json(e.envelope.as_bytes()).ok()?;
    Record::from_payload(&env.payload_bytes().ok()?).ok()
}

pub(crate) fn kind_label(k: RecordKind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{k:?}"))
}

/// The most records a GPU's page lists (the evidence bundle has them all).
pub(crate) const TIMELINE_MAX: usize = 1000;

/// The records about a GPU — its attestations, annotations, runs (the latest [`TIMELINE_MAX`])
/// and the acquisitions of its serial — in log order, and whether older ones were left out.
pub(crate) fn timeline(
    ledger: &Ledger,
    uuid: &GpuUuid,
    serial: Option<&str>,
) -> Result<(Vec<TimelineItem>, bool), chipledger_domain::Error> {
    let mut entries = LogClient::history(ledger, uuid, Some(TIMELINE_MAX))?;
    let truncated = entries.len() == TIMELINE_MAX;
    if let Some(serial) = serial.filter(|s| !s.is_empty()) {
        entries.extend(LogClient::acquisitions(ledger, serial)?);
    }
    entries.sort_by_key(|e| e.index);
    entries.dedup_by_key(|e| e.index);
    // Each host's latest attestation so far: a derived nonce's checkpoint must include it.
    let mut last_on_host = std::collections::HashMap::new();
    Ok((entries.iter().map(|e| timeline_item(e, uuid, ledger.verifier_key(), &mut last_on_host)).collect(), truncated))
}

fn timeline_item(
    e: &EntrySummary,
    uuid: &GpuUuid,
    log_key: &VerifierKey,
    last_on_host: &mut std::collections::HashMap<String, u64>,
) -> TimelineItem {
    let mut item = TimelineItem {
        index: e.index,
        appended_at: rfc3339(e.appended_at),
        kind: kind_label(e.kind),
        signer: e.key_id.chars().take(16).collect(),
        summary: String::new(),
        details: Vec::new(),
        severity: None,
    };
    match record_of(e) {
        Some(Record::GpuAttestation(a)) => {
            let gpu = a.gpus.iter().find(|g| &g.uuid == uuid);
            item.summary = format!(
                "attested on {} from {} at {}",
                a.host.hostname,
                source_label(a.source),
                rfc3339(a.observed_at)
            );
            // The record's facts judged here, not the agent's identification of them.
            if let (Some(g), Ok(catalog)) = (gpu, Catalog::embedded()) {
                let previous = last_on_host.insert(a.host.hostname.clone(), e.index);
                let in_log = chipledger_domain::standing::InLog { log_key, index: e.index, previous };
                let judged = chipledger_domain::standing::of_facts_in(catalog, &a, g, Some(in_log));
                item.details.push(format!(
                    "identified as {} ({}); {} evidence; fingerprint {}",
                    judged.sku.as_deref().unwrap_or("no catalog SKU"),
                    g.facts.name.as_deref().unwrap_or("no name"),
                    judged.evidence.label(),
                    g.fingerprint_digest.to_hex()
                ));
                if let Some(v) = &g.facts.vbios_version {
                    item.details.push(format!("VBIOS {v}"));
                }
                for a in &judged.anomalies {
                    item.details.push(format!("anomaly [{:?}] {}", a.severity(), a.explain()));
                }
                item.severity = judged.anomalies.iter().map(|a| a.severity()).max();
            }
        }
        Some(Record::Acquisition(a)) => {
            item.summary = format!(
                "acquired from {}: shipped {} from {} to {}",
                a.supplier,
                a.shipped_on,
                a.ship_from.code(),
                a.ship_to.code()
            );
            item.details.push(format!("invoice {}; end user {}", a.invoice_reference, a.end_user));
            item.details.push(match &a.licence {
                Some(l) => format!("licence {l}"),
                None => "no licence recorded".into(),
            });
            if !a.note.is_empty() {
                item.details.push(a.note.clone());
            }
        }
        Some(Record::Annotation(n)) => {
            item.summary = format!("annotation [{:?}]: {}", n.severity, n.text);
            item.severity = Some(n.severity);
        }
        Some(Record::RunProvenance(r)) => {
            item.summary = format!("ran {} (run {}) on node {}", r.model_name, r.run_id, r.node_host);
        }
        Some(Record::SchedulerJob(j)) => {
            let what = match j.phase {
                chipledger_domain::records::JobPhase::Start => "started",
                chipledger_domain::records::JobPhase::End => "ended",
            };
            item.summary = format!("{} job {} ({}) {what} on {}", j.scheduler, j.job_id, j.cluster, j.host);
            if let Some(g) = j.gpus.iter().find(|g| &g.uuid == uuid) {
                item.details.push(format!(
                    "device {}; qualified on attestation #{} under policy {}",
                    g.device_index, g.attestation_index, j.policy_name
                ));
            }
            if let Some(x) = &j.exit_state {
                item.details.push(format!("exit {x}"));
            }
        }
        Some(other) => item.summary = format!("{:?}", other.kind()),
        None => item.summary = "the stored envelope does not decode (run `chipledger ledger verify`)".into(),
    }
    item
}

/// Classification under every rule version, as (rule, bucket, basis) lines.
pub(crate) fn classifications(sku: &str) -> Vec<(String, String, String)> {
    let Ok(catalog) = Catalog::embedded() else { return Vec::new() };
    let Ok(s) = catalog.sku(sku) else { return Vec::new() };
    classify_all(s, DatacenterJudgement::catalog_default(s))
        .into_iter()
        .map(|c| (c.rule.title().to_string(), c.bucket.label().to_string(), c.basis))
        .collect()
}

/// A run as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunRow {
    pub index: u64,
    pub run_id: String,
    pub model: String,
    pub node: String,
    pub started_at: String,
    pub gpus: Vec<String>,
    pub rejected: usize,
    pub policy: String,
    pub backend: String,
}

fn run_row(index: u64, r: &RunProvenance) -> RunRow {
    RunRow {
        index,
        run_id: r.run_id.clone(),
        model: r.model_name.clone(),
        node: r.node_host.clone(),
        started_at: rfc3339(r.started_at),
        gpus: r.gpus.iter().map(|g| format!("{} {}", g.sku.as_deref().unwrap_or("?"), g.uuid)).collect(),
        rejected: r.rejected.len(),
        policy: r.policy_name.clone(),
        backend: r.backend.clone(),
    }
}

/// The newest `limit` runs, newest first.
pub(crate) fn runs(ledger: &Ledger, limit: u64) -> Result<Vec<RunRow>, chipledger_ledger::Error> {
    let filter = EntryFilter { kind: Some(RecordKind::RunProvenance), last: Some(limit), ..EntryFilter::default() };
    let mut rows: Vec<RunRow> = ledger
        .entries(&filter)?
        .iter()
        .filter_map(|e| match record_of(e) {
            Some(Record::RunProvenance(r)) => Some(run_row(e.index, &r)),
            _ => None,
        })
        .collect();
    rows.reverse();
    Ok(rows)
}

/// One check of a run's provenance and its outcome.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// A run with its record and what verifying it against the log established.
#[derive(Debug)]
pub(crate) struct RunView {
    pub row: RunRow,
    pub record: RunProvenance,
    pub checks: Vec<Check>,
}

impl RunView {
    pub(crate) fn verified(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

fn check(checks: &mut Vec<Check>, what: &str, r: Result<String, String>) {
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    checks.push(Check { what: what.to_string(), ok, detail });
}

/// The run at log index `index`, verified against the log as a remote auditor would: the record's
/// leaf and inclusion under the current checkpoint, its signature by the node key the registry
/// holds, the placement checkpoint's signature and consistency with today's, and each GPU's
/// attestation proof, leaf, and what the attested facts give (an attestation of that GPU, with the
/// SKU and class the report states).
pub(crate) fn run_view(ledger: &Ledger, index: u64) -> Result<Option<RunView>, chipledger_domain::Error> {
    let e = match LogClient::entry(ledger, index) {
        Ok(e) => e,
        Err(chipledger_domain::Error::IndexOutOfRange { .. }) => return Ok(None),
        Err(other) => return Err(other),
    };
    let Some(Record::RunProvenance(record)) = record_of(&e) else { return Ok(None) };
    let key = ledger.verifier_key();
    let mut checks = Vec::new();
    let (_, note) = ledger.checkpoint().map_err(|e| chipledger_domain::Error::Log(e.to_string()))?;
    let current = open_checkpoint(note.as_bytes(), std::slice::from_ref(key), None)?.checkpoint;
    let leaf = merkle::leaf_hash(e.envelope.as_bytes());
    check(
        &mut checks,
        "record in the log",
        (|| {
            if leaf != e.leaf_hash {
                return Err("the stored envelope does not hash to its leaf".to_string());
            }
            let proof = LogClient::inclusion_proof(ledger, index, current.size).map_err(|e| e.to_string())?;
            merkle::verify_inclusion(index, current.size, &leaf, &proof, &current.root).map_err(|e| e.to_string())?;
            Ok(format!("leaf {index} is included in the signed checkpoint of size {}", current.size))
        })(),
    );
    check(
        &mut checks,
        "signed by the node",
        (|| {
            let k = ledger
                .keys()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|k| k.key_id == record.node_key_id.as_str())
                .ok_or("the node key is not in the registry")?;
            let vkey = VerifierKey::parse(&k.verifier_key).map_err(|e| e.to_string())?;
            Envelope::from_json(e.envelope.as_bytes())
                .and_then(|env| env.verify(vkey.public_key()))
                .map_err(|e| e.to_string())?;
            Ok(format!("node key {} ({})", &k.key_id[..16], k.host.as_deref().unwrap_or("no host")))
        })(),
    );
    let placement = open_checkpoint(record.checkpoint.as_bytes(), std::slice::from_ref(key), None)
        .map(|c| c.checkpoint)
        .map_err(|e| e.to_string());
    check(
        &mut checks,
        "placement checkpoint",
        placement.clone().and_then(|cp| {
            if cp.size > current.size {
                return Err("newer than the log".into());
            }
            let proof = LogClient::consistency_proof(ledger, cp.size, current.size).map_err(|e| e.to_string())?;
            chipledger_domain::log::check_consistent(&cp, &current, &proof).map_err(|e| e.to_string())?;
            Ok(format!("signed by the log at size {}; today's log extends it", cp.size))
        }),
    );
    for g in &record.gpus {
        check(
            &mut checks,
            &format!("attestation of {}", g.uuid),
            placement.clone().and_then(|cp| {
                g.attestation.verify(&cp).map_err(|e| e.to_string())?;
                let stored = LogClient::entry(ledger, g.attestation.log_index).map_err(|e| e.to_string())?;
                if stored.leaf_hash != g.attestation.leaf_hash {
                    return Err("the log holds another record at that index".into());
                }
                // The cited entry is an attestation of this GPU whose facts give what the
                // report states.
                let catalog = Catalog::embedded().map_err(|e| e.to_string())?;
                chipledger_domain::standing::check_citation(catalog, stored.envelope.as_bytes(), g).map(drop)?;
                Ok(format!(
                    "entry {} ({} s old at placement), {}, {}",
                    g.attestation.log_index, g.attestation.age_seconds, g.classification, g.acquisition_verdict
                ))
            }),
        );
    }
    Ok(Some(RunView { row: run_row(index, &record), record: *record, checks }))
}
