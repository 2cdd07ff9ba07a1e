//! Diversion reports (`chipledger-diversion-report/v1`): the events `domain::diversion` draws
//! from the log — a chip located elsewhere than licensed, a site operator other than the
//! acquisition's end user, a sign of tampering or spoofing — with an evidence bundle of exactly
//! the entries they rest on, verifiable on another machine with nothing else.
//!
//! The writer judges the fleet from the whole log at one checkpoint (`domain::fleet`,
//! `domain::located`), then bundles for every GPU it reports (and every GPU those entries name,
//! until nothing new comes in) its whole history, its serial's acquisitions, the GPUs sharing
//! its serial or hardware identity, its host's location proofs, and every key record; the
//! verifier replays the bundle (`bundle::replay`: checkpoint, inclusion, signatures,
//! authorisation — location proofs' answers included), judges the bundle's GPUs from its records
//! alone at the report's `generated_at` and `max_age_secs`, and requires the very list of events
//! the report states. The writer runs the same check before it hands a report out.
//!
//! What a report does not show: that the log holds no other event (it carries the cited entries,
//! not the log), that `since_index` is the first entry appended at `since` (append times are
//! the log's), or who wrote it (it is not signed; its entries are).

use std::collections::{BTreeMap, BTreeSet};

use chipledger_domain::diversion::{self, Event, Facts};
use chipledger_domain::dsse::Envelope;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::fleet::{self, Candidate};
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::located::Locations;
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{Acquisition, Record, RecordKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bundle::{self, Bundle, MAX_BUNDLE_BYTES};
use crate::{EntryFilter, Error, Ledger};

pub const DIVERSION_FORMAT: &str = "chipledger-diversion-report/v1";
/// The largest report [`verify_diversion_report`] reads: a bundle's limit.
pub const MAX_REPORT_BYTES: usize = MAX_BUNDLE_BYTES;
/// The shortest and longest proof age a report may judge under: a minute, and 30 days (a
/// policy's longest `max_age`).
pub const MIN_MAX_AGE_SECS: u64 = 60;
pub const MAX_MAX_AGE_SECS: u64 = 30 * 86_400;

/// A diversion report: what it claims, and the entries that show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiversionReport {
    pub format: String,
    /// The reader's time, which judged the location proofs' freshness (whole seconds).
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// Only events whose newest cited entry was appended at or after this time…
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// …which the log resolved to this index: the first entry appended at or after `since` (0
    /// without one). The verifier applies the index; the time is the log's word.
    pub since_index: u64,
    /// How old a location proof may be at `generated_at` and still count.
    pub max_age_secs: u64,
    pub events: Vec<Event>,
    pub bundle: Bundle,
}

/// What to report.
#[derive(Debug, Clone, Copy)]
pub struct DiversionOptions {
    /// The reader's time (`generated_at`); truncated to whole seconds.
    pub now: OffsetDateTime,
    pub since: Option<OffsetDateTime>,
    pub max_age_secs: u64,
}

/// What verifying a diversion report established.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedDiversion {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    pub entries: usize,
    /// The GPUs the bundle's records judge.
    pub gpus: usize,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub since_index: u64,
    pub max_age_secs: u64,
    /// The events, each recomputed from the bundle's records.
    pub events: Vec<Event>,
    /// `false` when the log key came from the report itself rather than from the caller.
    pub log_key_pinned: bool,
}

impl Ledger {
    /// The diversion report of the log at its latest checkpoint, checked as a verifier will
    /// check it before it is returned.
    pub fn diversion_report(&self, opts: &DiversionOptions) -> Result<DiversionReport, Error> {
        let now = opts.now.replace_nanosecond(0).unwrap_or(opts.now);
        let mut fleet = fleet::load(self, self.verifier_key())?;
        let size = fleet.checkpoint.size;
        let locations = fleet::locate(&mut fleet, self, None, now, opts.max_age_secs)?;
        let acquisitions = self.acquisitions_of(&fleet.candidates, size)?;
        let since_index = match opts.since {
            None => 0,
            Some(t) => self
                .entries(&EntryFilter { since: Some(t), limit: Some(1), ..Default::default() })?
                .first()
                .map_or(size, |e| e.index.min(size)),
        };
        let latest = |serial: &str| acquisitions.get(serial).and_then(|all| all.last().cloned());
        let serials: BTreeMap<String, (u64, Acquisition)> =
            acquisitions.keys().filter_map(|s| Some((s.clone(), latest(s)?))).collect();
        let facts = Facts { candidates: &fleet.candidates, locations: &locations, acquisitions: &serials };
        let events = diversion::since(diversion::events(&facts), since_index);

        let indexes = self.cited(&events, &fleet.candidates, &locations, &acquisitions, size)?;
        let selection = format!("diversion report: {} event(s), {} entries", events.len(), indexes.len());
        let bundle = self.export_indexes(&indexes, size, &selection)?;
        let report = DiversionReport {
            format: DIVERSION_FORMAT.into(),
            generated_at: now,
            since: opts.since,
            since_index,
            max_age_secs: opts.max_age_secs,
            events,
            bundle,
        };
        // The writer's view (the whole log) and the verifier's (the bundle) must agree: a report
        // that would not verify is never handed out.
        check(&report, Some(self.verifier_key())).map_err(|e| {
            let why = match e {
                Error::Diversion(m) => m,
                other => other.to_string(),
            };
            Error::Diversion(format!(
                "the report this log gives would not verify from the entries it carries ({why}); this is a bug \
                 in chipledger: please report it"
            ))
        })?;
        Ok(report)
    }

    /// serial → every acquisition naming it among the first `size` entries, in log order.
    fn acquisitions_of(
        &self,
        candidates: &[Candidate],
        size: u64,
    ) -> Result<BTreeMap<String, Vec<(u64, Acquisition)>>, Error> {
        let serials: BTreeSet<&String> = candidates.iter().filter_map(|c| c.serial.as_ref()).collect();
        let mut out = BTreeMap::new();
        for serial in serials {
            let filter =
                EntryFilter { kind: Some(RecordKind::Acquisition), serial: Some(serial.clone()), ..Default::default() };
            let mut found = Vec::new();
            for e in self.entries(&filter)?.into_iter().filter(|e| e.index < size) {
                if let Record::Acquisition(a) = decode(e.index, &e.envelope)? {
                    found.push((e.index, a));
                }
            }
            if !found.is_empty() {
                out.insert(serial.clone(), found);
            }
        }
        Ok(out)
    }

    /// The entries a report of `events` carries: for every GPU it reports — and every GPU those
    /// entries name or that shares a serial or hardware identity with one, until none is new —
    /// its attestations and annotations, its serial's acquisitions and its host's location
    /// proofs; and every key record. With them a verifier judges each of those GPUs as the log
    /// does.
    fn cited(
        &self,
        events: &[Event],
        candidates: &[Candidate],
        locations: &Locations,
        acquisitions: &BTreeMap<String, Vec<(u64, Acquisition)>>,
        size: u64,
    ) -> Result<BTreeSet<u64>, Error> {
        let by_uuid: BTreeMap<&GpuUuid, &Candidate> = candidates.iter().map(|c| (&c.uuid, c)).collect();
        let mut by_serial: BTreeMap<&str, Vec<&GpuUuid>> = BTreeMap::new();
        let mut by_ueid: BTreeMap<&str, Vec<&GpuUuid>> = BTreeMap::new();
        for c in candidates {
            if let Some(s) = &c.serial {
                by_serial.entry(s).or_default().push(&c.uuid);
            }
            if let Some(u) = &c.ueid {
                by_ueid.entry(u).or_default().push(&c.uuid);
            }
        }
        let mut indexes: BTreeSet<u64> = events.iter().flat_map(|e| e.cites.iter().copied()).collect();
        let mut seen: BTreeSet<GpuUuid> = BTreeSet::new();
        let mut expanded: BTreeSet<u64> = BTreeSet::new();
        let mut todo: Vec<GpuUuid> = events.iter().map(|e| e.uuid.clone()).collect();
        while let Some(uuid) = todo.pop() {
            if !seen.insert(uuid.clone()) {
                continue;
            }
            if let Some(c) = by_uuid.get(&uuid) {
                let serial = c.serial.as_deref().and_then(|s| by_serial.get(s));
                let ueid = c.ueid.as_deref().and_then(|u| by_ueid.get(u));
                todo.extend(serial.into_iter().chain(ueid).flatten().map(|u| (*u).clone()));
                if let Some(all) = c.serial.as_ref().and_then(|s| acquisitions.get(s)) {
                    indexes.extend(all.iter().map(|(i, _)| *i));
                }
                if let Some(proofs) = locations.proofs.get(&c.host) {
                    indexes.extend(proofs.iter().map(|p| p.index));
                }
            }
            let history = self.entries(&EntryFilter { gpu: Some(uuid.clone()), ..Default::default() })?;
            for e in history.into_iter().filter(|e| e.index < size) {
                match e.kind {
                    RecordKind::Annotation => {
                        indexes.insert(e.index);
                    }
                    RecordKind::GpuAttestation => {
                        indexes.insert(e.index);
                        if expanded.insert(e.index) {
                            if let Record::GpuAttestation(a) = decode(e.index, &e.envelope)? {
                                todo.extend(a.gpus.into_iter().map(|g| g.uuid));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for kind in [RecordKind::KeyEnrollment, RecordKind::KeyRevocation] {
            let keys = self.entries(&EntryFilter { kind: Some(kind), ..Default::default() })?;
            indexes.extend(keys.into_iter().map(|e| e.index).filter(|i| *i < size));
        }
        Ok(indexes)
    }
}

/// Verifies a diversion report offline: its bundle as [`bundle::verify_bundle`] does (the
/// checkpoint under `pinned`, else under the key the report names), then every event cited is in
/// the bundle, then the events are recomputed from the bundle's records and must be exactly the
/// ones listed. Names what fails.
pub fn verify_diversion_report(bytes: &[u8], pinned: Option<&VerifierKey>) -> Result<VerifiedDiversion, Error> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(Error::Diversion(format!("{} bytes is over the {MAX_REPORT_BYTES}-byte limit", bytes.len())));
    }
    let report: DiversionReport =
        serde_json::from_slice(bytes).map_err(|e| Error::Diversion(format!("not a diversion report: {e}")))?;
    check(&report, pinned)
}

/// [`verify_diversion_report`] of a parsed report.
pub fn check(report: &DiversionReport, pinned: Option<&VerifierKey>) -> Result<VerifiedDiversion, Error> {
    let bad = |what: String| Error::Diversion(what);
    if report.format != DIVERSION_FORMAT {
        return Err(bad(format!("format {:?} is not {DIVERSION_FORMAT}", report.format)));
    }
    // The settings the events were judged under are the writer's word: bound them so that no
    // choice of them makes a report's location events vanish.
    if !(MIN_MAX_AGE_SECS..=MAX_MAX_AGE_SECS).contains(&report.max_age_secs) {
        return Err(bad(format!(
            "max_age_secs {} is outside {MIN_MAX_AGE_SECS}..={MAX_MAX_AGE_SECS}: a proof's age is judged in minutes to days",
            report.max_age_secs
        )));
    }
    if report.since.is_none() && report.since_index != 0 {
        return Err(bad(format!("since_index is {} without a since time", report.since_index)));
    }
    let replayed = bundle::replay(&report.bundle, pinned)?;
    if report.since_index > replayed.report.tree_size {
        return Err(bad(format!(
            "since_index {} is beyond the checkpoint's {} entries",
            report.since_index, replayed.report.tree_size
        )));
    }
    // Judged no earlier than the newest proof it carries: an earlier time would set its proofs
    // in the future, where none counts.
    // (In whole seconds, as proofs are judged.)
    if let Some(newest) = replayed.proofs.iter().map(|p| p.record.measured_at).max() {
        if report.generated_at.unix_timestamp() < newest.unix_timestamp() {
            return Err(bad(format!(
                "generated_at {} is before the newest location proof it carries ({newest})",
                report.generated_at
            )));
        }
    }
    for e in &report.events {
        if let Some(i) = e.cites.iter().find(|i| !replayed.indexes.contains(i)) {
            return Err(bad(format!("event {} cites entry {i}, which its bundle does not hold", e.name())));
        }
    }
    let mut candidates = replayed.candidates;
    let locations = Locations::from_parts(replayed.sites, replayed.proofs, report.generated_at, report.max_age_secs);
    let mut refs: Vec<&mut Candidate> = candidates.iter_mut().collect();
    locations.apply(&mut refs)?;
    let facts = Facts { candidates: &candidates, locations: &locations, acquisitions: &replayed.acquisitions };
    let events = diversion::since(diversion::events(&facts), report.since_index);
    if let Some(d) = diversion::compare(&report.events, &events) {
        return Err(bad(d.to_string()));
    }
    Ok(VerifiedDiversion {
        origin: replayed.report.origin,
        tree_size: replayed.report.tree_size,
        root: replayed.report.root,
        entries: replayed.report.entries,
        gpus: candidates.len(),
        generated_at: report.generated_at,
        since_index: report.since_index,
        max_age_secs: report.max_age_secs,
        events,
        log_key_pinned: pinned.is_some(),
    })
}

fn decode(index: u64, envelope: &str) -> Result<Record, Error> {
    let env = Envelope::from_json(envelope.as_bytes())?;
    Record::from_payload(&env.payload_bytes()?).map_err(|e| Error::Corrupt(format!("entry {index}: {e}")))
}
