//! Diversion events: what the US Chip Security Act asks an operator to report promptly — a chip
//! found elsewhere than licensed, diverted to another user, or tampered with or spoofed — drawn
//! from the fleet as a reader judges it (`domain::fleet`, `domain::located`), each naming the
//! log entries it rests on.
//!
//! Pure: the report's writer (`ledger::diversion`, over the whole log) and its offline verifier
//! (over the report's own bundle) call the same [`events`] on the same kinds of facts, so a
//! report's events are recomputed, never taken from it. Not here: reading the log, bundling its
//! entries, or judging anything anew — location verdicts are `domain::located`'s, anomalies
//! `domain::standing`'s and `domain::trail`'s, and an event only says which of them to report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fingerprint::GpuUuid;
use crate::fleet::{location_label, Candidate};
use crate::identify::{Anomaly, Severity};
use crate::located::{Locations, LoggedProof};
use crate::location::LocationVerdict;
use crate::log::EnrolledSite;
use crate::records::Acquisition;

/// What an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The host's location proofs rule out its declared site or licensed destination, or may
    /// reach outside the licensed destination.
    LocationOtherThanLicensed,
    /// The operator of the host's declared site is not the acquisition's end user (a name
    /// comparison: a heuristic).
    EndUserDiffers,
    /// A Danger anomaly that says the GPU's facts, evidence or identity were tampered with or
    /// spoofed.
    TamperingOrSpoofing,
}

impl EventKind {
    pub fn label(self) -> &'static str {
        match self {
            EventKind::LocationOtherThanLicensed => "location-other-than-licensed",
            EventKind::EndUserDiffers => "end-user-differs",
            EventKind::TamperingOrSpoofing => "tampering-or-spoofing",
        }
    }
}

/// One event about one GPU, with the log indexes it rests on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The host of the GPU's latest attestation.
    pub host: String,
    pub uuid: GpuUuid,
    pub kind: EventKind,
    /// For `tampering-or-spoofing`: the anomaly that signals it (`ueid-under-two-uuids`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// One line that says why.
    pub reason: String,
    /// The log indexes it rests on, ascending: the GPU's latest attestation, then as the kind
    /// needs — its acquisition, its host's counted location proofs and the landmarks' and the
    /// host's enrollments, the other GPUs' attestations that share its identity.
    pub cites: Vec<u64>,
}

impl Event {
    /// The newest entry it rests on.
    pub fn newest(&self) -> Option<u64> {
        self.cites.iter().copied().max()
    }

    /// `location-other-than-licensed GPU-… on HOST`, or with the signal for tampering.
    /// `kind (signal) of UUID on host`, on one line (a host name from a hostile file may hold
    /// control characters).
    pub fn name(&self) -> String {
        let host = one_line(&self.host);
        match &self.signal {
            Some(s) => format!("{} ({}) of {} on {host}", self.kind.label(), one_line(s), self.uuid),
            None => format!("{} of {} on {host}", self.kind.label(), self.uuid),
        }
    }
}

/// What [`events`] reads: the fleet as judged (serials by `fleet::judge_serials`, locations by
/// `located::Locations::apply`), the location facts the judgement used, and each serial's latest
/// acquisition with its log index.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub candidates: &'a [Candidate],
    pub locations: &'a Locations,
    pub acquisitions: &'a BTreeMap<String, (u64, Acquisition)>,
}

/// Every event the facts give, sorted (host, GPU, kind, signal, …), none twice:
/// - `location-other-than-licensed` where the location verdict is `contradicts-declared`, or
///   `possibly-outside` while the GPU has a licensed destination (without one, possibly-outside
///   only compares with the declared site's own country, and is not reported);
/// - `end-user-differs` where the host's declared site names an operator and the GPU's
///   acquisition an end user, and the two differ once trimmed and compared case-insensitively
///   (a heuristic: the same organisation may go by two names, and two by one);
/// - `tampering-or-spoofing` for each anomaly [`signals_tampering`] names.
pub fn events(facts: &Facts) -> Vec<Event> {
    let by_uuid: HashMap<&GpuUuid, &Candidate> = facts.candidates.iter().map(|c| (&c.uuid, c)).collect();
    let landmarks = Landmarks::of(facts.locations);
    // A host's counted proofs and what they rest on, once per host: a host holds many GPUs.
    let mut hosts: HashMap<&str, (Vec<&LoggedProof>, Vec<u64>)> = HashMap::new();
    let mut out = BTreeSet::new();
    for c in facts.candidates {
        let acquisition = c.serial.as_ref().and_then(|s| facts.acquisitions.get(s));
        // The host's current agent key (only its answers count) and the site it declares.
        let current = facts.locations.current.get(&c.host);
        let declared = current.and_then(|k| k.site.as_ref().map(|site| (k, site)));
        let (proofs, proof_cites) = hosts.entry(c.host.as_str()).or_insert_with(|| {
            let proofs = counted(facts.locations, &c.host);
            let cites = landmarks.cites(&proofs);
            (proofs, cites)
        });
        let event = |kind: EventKind, signal: Option<String>, reason: String, mut cites: Vec<u64>| {
            cites.push(c.attestation_index);
            cites.sort_unstable();
            cites.dedup();
            Event { host: c.host.clone(), uuid: c.uuid.clone(), kind, signal, serial: c.serial.clone(), reason, cites }
        };

        if let Some(j) = &c.location {
            let reported = match j.verdict {
                LocationVerdict::ContradictsDeclared => true,
                LocationVerdict::PossiblyOutside => c.licensed_to.is_some(),
                LocationVerdict::Consistent | LocationVerdict::Unproven => false,
            };
            if reported {
                let licence = match c.licensed_to {
                    Some(cc) => format!("licensed to {}", cc.code()),
                    None => "no licensed destination".to_string(),
                };
                let site = match declared {
                    Some((_, d)) => format!("declared at {} ({})", d.at, d.operator),
                    None => "no declared site".to_string(),
                };
                let reason = one_line(&format!("{}; {licence}; {site}: {}", location_label(j), j.reason));
                let mut cites = proof_cites.clone();
                cites.extend(acquisition.map(|(i, _)| *i));
                cites.extend(current.map(|k| k.enrolled_at));
                out.insert(event(EventKind::LocationOtherThanLicensed, None, reason, cites));
            }
        }

        if let (Some((index, a)), Some((k, d))) = (acquisition, declared) {
            let (operator, end_user) = (d.operator.trim(), a.end_user.trim());
            if !operator.is_empty() && !end_user.is_empty() && operator.to_lowercase() != end_user.to_lowercase() {
                let reason = one_line(&format!(
                    "the host's declared site is operated by {operator:?}, but the acquisition's end user is \
                     {end_user:?} (names compared trimmed and case-insensitively: a heuristic)"
                ));
                out.insert(event(EventKind::EndUserDiffers, None, reason, vec![*index, k.enrolled_at]));
            }
        }

        for a in c.anomalies.iter().filter(|a| signals_tampering(a)) {
            let cites = match a {
                Anomaly::LandmarkDisagreement { landmarks: landmarks_named, .. } => {
                    let named: Vec<&LoggedProof> =
                        proofs.iter().copied().filter(|p| landmarks_named.contains(&p.record.landmark)).collect();
                    landmarks.cites(&named)
                }
                Anomaly::AcquisitionSkuDiffers { .. } => acquisition.map(|(i, _)| *i).into_iter().collect(),
                Anomaly::SerialUnderTwoUuids { uuids, .. } | Anomaly::UeidUnderTwoUuids { uuids, .. } => {
                    uuids.iter().filter_map(|u| by_uuid.get(u)).map(|o| o.attestation_index).collect()
                }
                _ => Vec::new(),
            };
            let reason = match a {
                // The judgement's reason names its first pair; each event names its own.
                Anomaly::LandmarkDisagreement { landmarks, .. } => {
                    format!("landmarks {}: {}", landmarks.join(" and "), a.explain())
                }
                _ => a.explain(),
            };
            out.insert(event(EventKind::TamperingOrSpoofing, Some(a.kind_name()), one_line(&reason), cites));
        }
    }
    out.into_iter().collect()
}

/// Whether an anomaly signals tampering or spoofing: every Danger anomaly — facts that
/// contradict each other or the record (an "H800" with H100 NVLinks, a board part number of
/// another SKU), evidence that fails or signs another board, one identity under two UUIDs or one
/// UUID on two hosts, an identity fact that changed, round trips that cannot all be right — but
/// `location-contradicts-declared`, which is its own event. Warnings (a VBIOS update, a move,
/// an unknown PCI id) and notes are not reported: they are routine until a person has looked.
pub fn signals_tampering(a: &Anomaly) -> bool {
    a.severity() == Severity::Danger && !matches!(a, Anomaly::LocationContradictsDeclared { .. })
}

/// The events whose newest cited entry is at or after `since_index` (the first entry appended
/// at or after a report's `since`).
pub fn since(events: Vec<Event>, since_index: u64) -> Vec<Event> {
    events.into_iter().filter(|e| e.newest().is_some_and(|n| n >= since_index)).collect()
}

/// How a claimed list of events differs from the one the facts give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// Listed, but the facts give no such event (nor one of its kind for its GPU).
    Unfounded(Box<Event>),
    /// Given by the facts, but not listed.
    Missing(Box<Event>),
    /// Listed for its GPU and kind, but not as the facts give it.
    Edited { claimed: Box<Event>, recomputed: Box<Event> },
    /// The same events, out of order or one of them twice.
    Order,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Unfounded(e) => {
                write!(f, "the report lists event {}, which its records do not give ({:?})", e.name(), e.reason)
            }
            Difference::Missing(e) => {
                write!(f, "its records give event {} ({:?}), which the report does not list", e.name(), e.reason)
            }
            Difference::Edited { claimed, recomputed } => {
                let field = if claimed.reason != recomputed.reason {
                    format!("reason reads {:?}, but the records give {:?}", claimed.reason, recomputed.reason)
                } else if claimed.cites != recomputed.cites {
                    format!("cites entries {:?}, but the records give {:?}", claimed.cites, recomputed.cites)
                } else {
                    format!("serial reads {:?}, but the records give {:?}", claimed.serial, recomputed.serial)
                };
                write!(f, "event {}: its {field}", claimed.name())
            }
            Difference::Order => write!(f, "its events are out of order or one is listed twice"),
        }
    }
}

/// Compares a claimed list with the recomputed one: `None` when equal, element for element;
/// else the first difference, an edit where a listed event and a recomputed one share their GPU,
/// host, kind and signal.
pub fn compare(claimed: &[Event], recomputed: &[Event]) -> Option<Difference> {
    if claimed == recomputed {
        return None;
    }
    let key = |e: &Event| (e.host.clone(), e.uuid.clone(), e.kind, e.signal.clone());
    let (listed, given): (BTreeSet<&Event>, BTreeSet<&Event>) = (claimed.iter().collect(), recomputed.iter().collect());
    let unlisted: Vec<&Event> = recomputed.iter().filter(|e| !listed.contains(e)).collect();
    if let Some(c) = claimed.iter().find(|c| !given.contains(c)) {
        return Some(match unlisted.iter().find(|r| key(r) == key(c)) {
            Some(r) => Difference::Edited { claimed: Box::new(c.clone()), recomputed: Box::new((*r).clone()) },
            None => Difference::Unfounded(Box::new(c.clone())),
        });
    }
    match unlisted.first() {
        Some(r) => Some(Difference::Missing(Box::new((*r).clone()))),
        None => Some(Difference::Order),
    }
}

/// The host's location proofs that count at the reader's time: those its judgement rests on.
fn counted<'a>(locations: &'a Locations, host: &str) -> Vec<&'a LoggedProof> {
    let now = locations.now.unix_timestamp();
    locations.counted(host).filter(|p| p.facts().counts(now, locations.max_age_secs)).collect()
}

/// The landmarks' enrollments, by landmark name.
struct Landmarks<'a>(HashMap<&'a str, Vec<&'a EnrolledSite>>);

impl<'a> Landmarks<'a> {
    fn of(locations: &'a Locations) -> Landmarks<'a> {
        let mut by_name: HashMap<&str, Vec<&EnrolledSite>> = HashMap::new();
        for l in &locations.landmarks {
            by_name.entry(l.host.as_str()).or_default().push(l);
        }
        Landmarks(by_name)
    }

    /// The proofs' indexes and the enrollments of the landmark keys that signed them.
    fn cites(&self, proofs: &[&LoggedProof]) -> Vec<u64> {
        let mut cites = Vec::new();
        for p in proofs {
            cites.push(p.index);
            let enrolled = self.0.get(p.record.landmark.as_str()).map_or(&[][..], Vec::as_slice);
            cites.extend(enrolled.iter().filter(|l| l.key_id == p.signer).map(|l| l.enrolled_at));
        }
        cites
    }
}

/// The text on one line: control characters (a newline in an agent's reported name) escaped.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}
