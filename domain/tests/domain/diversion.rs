//! Diversion events (`domain::diversion`): each kind from the facts that give it, none from a
//! fleet where everything is as declared, and the comparison a verifier runs.

use std::collections::BTreeMap;

use chipledger_domain::country::Country;
use chipledger_domain::diversion::{self, compare, Difference, Event, EventKind, Facts};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::fleet::Candidate;
use chipledger_domain::identify::Anomaly;
use chipledger_domain::keys::KeyId;
use chipledger_domain::located::{Locations, LoggedProof};
use chipledger_domain::location::{great_circle_km, Coord, C_VACUUM_KM_PER_MS};
use chipledger_domain::location_proof::{LocatedSubject, LocationProof, ProofHeader, Round};
use chipledger_domain::log::EnrolledSite;
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{Acquisition, ProbeSource, Role, Site};
use chipledger_domain::rules::VerdictKind;
use chipledger_domain::standing::Evidence;
use time::OffsetDateTime;

const NOW: i64 = 1_800_000_000;
const DAY: u64 = 86_400;
const SINGAPORE: &str = "1.2897,103.8501";
const SHANGHAI: &str = "31.2304,121.4737";
const KUALA_LUMPUR: &str = "3.1390,101.6869";
const DECLARED_SG: &str = "1.3521,103.8198";
const HOST: &str = "hgx-sg";
const GPU: &str = "GPU-34bf77d1-c686-6821-79a8-32d326c5039c";
const OTHER_GPU: &str = "GPU-00000000-0000-0000-0000-000000000002";

// Log indexes of the scene: the agent's and landmarks' enrollments, the acquisition, the
// proofs and the attestation.
const AGENT_ENROLLED: u64 = 1;
const SHA_ENROLLED: u64 = 2;
const SIN_ENROLLED: u64 = 3;
const KUL_ENROLLED: u64 = 4;
const ACQUIRED: u64 = 5;
const PROVEN: u64 = 6;
const ATTESTED: u64 = 9;

fn at(s: &str) -> Coord {
    Coord::parse(s).unwrap()
}

fn uuid(s: &str) -> GpuUuid {
    GpuUuid::parse(s).unwrap()
}

fn site(role: Role, host: &str, coords: &str, operator: &str, enrolled_at: u64) -> EnrolledSite {
    EnrolledSite {
        key_id: format!("{enrolled_at:064x}"),
        role,
        host: host.into(),
        site: Some(Site { at: at(coords), operator: operator.into(), country: None, floor_ns: 0 }),
        enrolled_at,
        revoked_at: None,
    }
}

/// A proof of `HOST` by `landmark` at `coords`, logged at `index`, with a round trip of `rtt_ms`.
fn proof(landmark: &str, coords: &str, rtt_ms: f64, index: u64) -> LoggedProof {
    let header = ProofHeader {
        counter: index,
        measured_at: OffsetDateTime::from_unix_timestamp(NOW - 60).unwrap(),
        landmark: landmark.into(),
        landmark_at: at(coords),
        floor_ns: 0,
    };
    let subject = LocatedSubject { host: HOST.into(), key_id: KeyId(format!("{AGENT_ENROLLED:064x}")), gpus: vec![] };
    let round = Round { nonce: "00".repeat(32), rtt_ns: (rtt_ms * 1e6) as u64, answer: String::new() };
    // Signed by the landmark's enrolled key.
    let enrolled = match landmark {
        "sha-1" => SHA_ENROLLED,
        "sin-1" => SIN_ENROLLED,
        _ => KUL_ENROLLED,
    };
    let record = LocationProof::new(header, subject, vec![round]);
    LoggedProof { index, leaf_hash: Hash([0; 32]), signer: format!("{enrolled:064x}"), record }
}

/// The honest round trip from `a` to `b` plus `extra_ms`.
fn rtt_ms(a: &str, b: &str, extra_ms: f64) -> f64 {
    2.0 * great_circle_km(at(a), at(b)) / C_VACUUM_KM_PER_MS + extra_ms
}

fn candidate(gpu: &str, serial: &str, index: u64) -> Candidate {
    Candidate {
        uuid: uuid(gpu),
        host: HOST.into(),
        serial: Some(serial.into()),
        sku: Some("H800-SXM5-80GB".into()),
        memory_total_bytes: None,
        source: ProbeSource::NvidiaSmiText,
        observed_at: OffsetDateTime::from_unix_timestamp(NOW - 120).unwrap(),
        anomalies: vec![],
        verdict: VerdictKind::NoAcquisitionRecord,
        classification: None,
        busy: false,
        attestation_index: index,
        fingerprint_digest: Hash([0; 32]),
        evidence: Evidence::SelfReported,
        fact_anomalies: vec![],
        pci_bus_id: None,
        ueid: None,
        licensed_to: None,
        location: None,
    }
}

fn acquisition(end_user: &str, ship_to: &str) -> Acquisition {
    Acquisition {
        format_version: chipledger_domain::records::FORMAT_VERSION,
        counter: 1,
        recorded_at: OffsetDateTime::from_unix_timestamp(NOW - DAY as i64).unwrap(),
        serials: vec!["1651323018291".into()],
        sku: None,
        supplier: "Example Distributor".into(),
        invoice_reference: "INV-1".into(),
        invoice_digest: None,
        shipped_on: time::macros::date!(2026 - 01 - 15),
        ship_from: Country::parse("US").unwrap(),
        ship_to: Country::parse(ship_to).unwrap(),
        end_user: end_user.into(),
        licence: None,
        note: String::new(),
    }
}

/// One GPU on `HOST`, declared in Singapore by "Example DC", with `proofs`, acquired for
/// `bought` (end user, ship-to) if any, with `anomalies`: its events.
fn scene(proofs: Vec<LoggedProof>, bought: Option<(&str, &str)>, anomalies: Vec<Anomaly>) -> Vec<Event> {
    scene_at(DECLARED_SG, proofs, bought, anomalies)
}

/// [`scene`] with the host declared at `declared`.
fn scene_at(
    declared: &str,
    proofs: Vec<LoggedProof>,
    bought: Option<(&str, &str)>,
    anomalies: Vec<Anomaly>,
) -> Vec<Event> {
    let sites = vec![
        site(Role::Agent, HOST, declared, "Example DC", AGENT_ENROLLED),
        site(Role::Landmark, "sha-1", SHANGHAI, "Landmark Org", SHA_ENROLLED),
        site(Role::Landmark, "sin-1", SINGAPORE, "Landmark Org", SIN_ENROLLED),
        site(Role::Landmark, "kul-1", KUALA_LUMPUR, "Landmark Org", KUL_ENROLLED),
    ];
    let now = OffsetDateTime::from_unix_timestamp(NOW).unwrap();
    let locations = Locations::from_parts(sites, proofs, now, DAY);
    let mut acquisitions = BTreeMap::new();
    let mut gpu = candidate(GPU, "1651323018291", ATTESTED);
    if let Some((end_user, ship_to)) = bought {
        let a = acquisition(end_user, ship_to);
        gpu.licensed_to = Some(a.ship_to);
        acquisitions.insert("1651323018291".to_string(), (ACQUIRED, a));
    }
    gpu.anomalies = anomalies;
    let mut candidates = vec![gpu];
    let mut refs: Vec<&mut Candidate> = candidates.iter_mut().collect();
    locations.apply(&mut refs).unwrap();
    diversion::events(&Facts { candidates: &candidates, locations: &locations, acquisitions: &acquisitions })
}

#[track_caller]
fn only(events: &[Event], kind: EventKind) -> &Event {
    let of_kind: Vec<&Event> = events.iter().filter(|e| e.kind == kind).collect();
    assert_eq!(of_kind.len(), 1, "{events:#?}");
    of_kind[0]
}

#[test]
fn a_host_that_physics_puts_near_shanghai_while_declared_in_singapore_is_elsewhere_than_licensed() {
    // 3 ms from Shanghai: within 450 km of it, 3,800 km from the declared site.
    let events = scene(vec![proof("sha-1", SHANGHAI, 3.0, PROVEN)], Some(("Example DC", "SG")), vec![]);
    let e = only(&events, EventKind::LocationOtherThanLicensed);
    assert_eq!((e.uuid.as_str(), e.host.as_str(), e.serial.as_deref()), (GPU, HOST, Some("1651323018291")));
    assert!(e.reason.starts_with("contradicts-declared (host-key); licensed to SG; declared at"), "{}", e.reason);
    assert!(e.reason.contains("landmark sha-1"), "{}", e.reason);
    // The attestation, the acquisition, the proof, the landmark's and the host's enrollments.
    assert_eq!(e.cites, vec![AGENT_ENROLLED, SHA_ENROLLED, ACQUIRED, PROVEN, ATTESTED]);
    // The same operator: no other event.
    assert_eq!(events.len(), 1, "{events:#?}");
}

#[test]
fn a_contradiction_is_reported_without_a_licence_but_possibly_outside_only_with_one() {
    let events = scene(vec![proof("sha-1", SHANGHAI, 3.0, PROVEN)], None, vec![]);
    let e = only(&events, EventKind::LocationOtherThanLicensed);
    assert!(e.reason.contains("no licensed destination"), "{}", e.reason);
    assert_eq!(e.cites, vec![AGENT_ENROLLED, SHA_ENROLLED, PROVEN, ATTESTED]);

    // Singapore and Kuala Lumpur leave a region that reaches Malaysia.
    let near = || {
        vec![
            proof("sin-1", SINGAPORE, 0.2, PROVEN),
            proof("kul-1", KUALA_LUMPUR, rtt_ms(KUALA_LUMPUR, SINGAPORE, 0.5), PROVEN + 1),
        ]
    };
    let licensed = scene(near(), Some(("Example DC", "SG")), vec![]);
    let e = only(&licensed, EventKind::LocationOtherThanLicensed);
    assert!(e.reason.starts_with("possibly-outside"), "{}", e.reason);
    assert_eq!(e.cites, vec![AGENT_ENROLLED, SIN_ENROLLED, KUL_ENROLLED, ACQUIRED, PROVEN, PROVEN + 1, ATTESTED]);
    assert!(scene(near(), None, vec![]).is_empty());
}

#[test]
fn a_site_operator_other_than_the_end_user_is_reported_as_a_heuristic() {
    let events = scene(vec![], Some(("Other Lab", "SG")), vec![]);
    let e = only(&events, EventKind::EndUserDiffers);
    assert!(e.reason.contains("\"Example DC\"") && e.reason.contains("\"Other Lab\""), "{}", e.reason);
    assert!(e.reason.contains("heuristic"), "{}", e.reason);
    assert_eq!(e.cites, vec![AGENT_ENROLLED, ACQUIRED, ATTESTED]);
    // Case and surrounding spaces do not count.
    assert!(scene(vec![], Some(("  example dc ", "SG")), vec![]).is_empty());
}

#[test]
fn danger_anomalies_that_signal_tampering_are_reported_each_with_its_signal() {
    let anomalies = vec![
        Anomaly::NvlinkExcess { sku: "H800-SXM5-80GB".into(), expected_links: 8, active_links: 18 },
        Anomaly::SerialUnderTwoUuids { serial: "1651323018291".into(), uuids: vec![uuid(GPU), uuid(OTHER_GPU)] },
        Anomaly::AcquisitionSkuDiffers {
            serial: "1651323018291".into(),
            acquired: "H20".into(),
            recomputed: "H800-SXM5-80GB".into(),
        },
        Anomaly::EvidenceInvalid { reason: "the chain\nends elsewhere".into() },
        // Routine until a person looks, or reported as their own kind: not tampering.
        Anomaly::VbiosChanged { uuid: uuid(GPU), from: "a".into(), to: "b".into(), previous_at: "t".into() },
        Anomaly::NvlinkFewer { sku: "H800-SXM5-80GB".into(), expected_links: 8, active_links: 4 },
        Anomaly::MovedHost { uuid: uuid(GPU), from: "a".into(), to: HOST.into(), last_seen_on_old: "t".into() },
    ];
    let events = scene(vec![], Some(("Example DC", "SG")), anomalies);
    let signals: Vec<&str> = events.iter().filter_map(|e| e.signal.as_deref()).collect();
    assert_eq!(signals, ["acquisition-sku-differs", "evidence-invalid", "nvlink-excess", "serial-under-two-uuids"]);
    assert!(events.iter().all(|e| e.kind == EventKind::TamperingOrSpoofing));
    let by = |s: &str| events.iter().find(|e| e.signal.as_deref() == Some(s)).unwrap();
    assert_eq!(by("acquisition-sku-differs").cites, vec![ACQUIRED, ATTESTED]);
    assert_eq!(by("nvlink-excess").cites, vec![ATTESTED]);
    // One line, whatever the anomaly's text holds.
    assert!(by("evidence-invalid").reason.contains("chain\\nends"), "{}", by("evidence-invalid").reason);
}

#[test]
fn landmarks_that_cannot_both_be_right_are_reported_with_their_proofs() {
    // Shanghai and Singapore both 1 ms away: their disks do not meet.
    let proofs = vec![proof("sha-1", SHANGHAI, 1.0, PROVEN), proof("sin-1", SINGAPORE, 1.0, PROVEN + 1)];
    let events = scene(proofs, Some(("Example DC", "SG")), vec![]);
    let e = only(&events, EventKind::TamperingOrSpoofing);
    assert_eq!(e.signal.as_deref(), Some("landmark-disagreement"));
    assert!(e.reason.starts_with("landmarks sha-1 and sin-1: location proofs disagree"), "{}", e.reason);
    assert_eq!(e.cites, vec![SHA_ENROLLED, SIN_ENROLLED, PROVEN, PROVEN + 1, ATTESTED]);
    // Proofs that disagree prove nothing about where it is.
    assert_eq!(events.len(), 1, "{events:#?}");
}

#[test]
fn a_gpu_where_everything_is_as_declared_gives_no_event() {
    // Declared near Shanghai, licensed to China, 0.3 ms slower than light from a Shanghai landmark.
    let host = "31.25,121.40";
    let proofs = vec![proof("sha-1", SHANGHAI, rtt_ms(SHANGHAI, host, 0.3), PROVEN)];
    assert_eq!(scene_at(host, proofs, Some(("Example DC", "CN")), vec![]), vec![]);
    // Nor without proofs (unproven is not a report), an acquisition or anomalies.
    assert_eq!(scene(vec![], None, vec![]), vec![]);
    // Stale proofs do not count.
    let mut stale = proof("sha-1", SHANGHAI, 3.0, PROVEN);
    stale.record.measured_at = OffsetDateTime::from_unix_timestamp(NOW - 2 * DAY as i64).unwrap();
    assert_eq!(scene(vec![stale], Some(("Example DC", "SG")), vec![]), vec![]);
}

#[test]
fn since_keeps_the_events_whose_newest_cited_entry_is_at_or_after_the_index() {
    let events = scene(vec![proof("sha-1", SHANGHAI, 3.0, PROVEN)], Some(("Other Lab", "SG")), vec![]);
    assert_eq!(events.len(), 2);
    assert_eq!(diversion::since(events.clone(), ATTESTED).len(), 2);
    assert_eq!(diversion::since(events.clone(), ATTESTED + 1), vec![]);
    assert_eq!(diversion::since(events, 0).len(), 2);
}

#[test]
fn a_claimed_list_must_be_the_recomputed_one_and_a_difference_is_named() {
    let events = scene(vec![proof("sha-1", SHANGHAI, 3.0, PROVEN)], Some(("Other Lab", "SG")), vec![]);
    assert_eq!(compare(&events, &events), None);

    let removed = &events[1..];
    let d = compare(removed, &events).unwrap();
    assert!(matches!(d, Difference::Missing(_)), "{d:?}");
    assert!(d.to_string().contains("does not list"), "{d}");

    let mut edited = events.clone();
    edited[0].reason = "nothing to see".into();
    let d = compare(&edited, &events).unwrap();
    assert!(matches!(d, Difference::Edited { .. }), "{d:?}");
    assert!(d.to_string().contains("reason reads \"nothing to see\""), "{d}");

    let mut added = events.clone();
    added.push(Event { uuid: uuid(OTHER_GPU), ..events[0].clone() });
    let d = compare(&added, &events).unwrap();
    assert!(matches!(d, Difference::Unfounded(_)), "{d:?}");
    assert!(d.to_string().contains(OTHER_GPU), "{d}");

    let reordered: Vec<Event> = events.iter().rev().cloned().collect();
    assert_eq!(compare(&reordered, &events), Some(Difference::Order));
}
