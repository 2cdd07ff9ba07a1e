//! The fleet's locations as a reader judges them (issue #15): each GPU from its host's proofs,
//! its host's declared site and its licensed destination, with the anomalies they give.

use chipledger_domain::country::Country;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::fleet::Candidate;
use chipledger_domain::identify::Anomaly;
use chipledger_domain::keys::KeyId;
use chipledger_domain::located::{Locations, LoggedProof};
use chipledger_domain::location::{great_circle_km, Coord, LocationVerdict, Method, C_VACUUM_KM_PER_MS};
use chipledger_domain::location_proof::{LocatedSubject, LocationProof, ProofHeader, Round};
use chipledger_domain::log::EnrolledSite;
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::{ProbeSource, Role, Site};
use chipledger_domain::rules::VerdictKind;
use chipledger_domain::standing::Evidence;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-12-07 12:00 UTC);
const SINGAPORE: &str = "1.2897,103.8501";
const SHANGHAI: &str = "31.2304,121.4737";
const LONDON: &str = "51.5074,-0.1278";

fn at(s: &str) -> Coord {
    Coord::parse(s).unwrap()
}

fn site(role: Role, host: &str, place: &str, enrolled_at: u64, revoked_at: Option<u64>) -> EnrolledSite {
    EnrolledSite {
        key_id: format!("key-{host}"),
        role,
        host: host.to_string(),
        site: Some(Site { at: at(place), operator: format!("{host} operator"), country: None, floor_ns: 0 }),
        enrolled_at,
        revoked_at,
    }
}

/// A proof by `landmark` at `place` of `host`, with the round trip light needs from `from`
/// plus `extra_ms` (the answers are not checked here: the log checked them).
fn proof(index: u64, landmark: &str, place: &str, host: &str, from: &str, extra_ms: f64) -> LoggedProof {
    let rtt_ms = 2.0 * great_circle_km(at(place), at(from)) / C_VACUUM_KM_PER_MS + extra_ms;
    let header = ProofHeader {
        counter: index,
        measured_at: NOW - time::Duration::minutes(5),
        landmark: landmark.to_string(),
        landmark_at: at(place),
        floor_ns: 0,
    };
    let subject = LocatedSubject { host: host.to_string(), key_id: KeyId(format!("key-{host}")), gpus: vec![] };
    let rounds = vec![Round { nonce: "00".repeat(32), rtt_ns: (rtt_ms * 1e6) as u64, answer: String::new() }];
    let record = LocationProof::new(header, subject, rounds);
    LoggedProof { index, leaf_hash: Hash([index as u8; 32]), signer: format!("key-{landmark}"), record }
}

fn gpu(host: &str, n: u32, licensed_to: Option<&str>) -> Candidate {
    Candidate {
        uuid: GpuUuid::parse(&format!("GPU-00000000-0000-0000-0000-{n:012x}")).unwrap(),
        host: host.to_string(),
        serial: Some(format!("{n:013}")),
        sku: Some("H800-SXM5-80GB".into()),
        memory_total_bytes: Some(80 << 30),
        source: ProbeSource::Nvml,
        observed_at: NOW,
        anomalies: vec![],
        verdict: VerdictKind::Lawful,
        classification: None,
        busy: false,
        attestation_index: u64::from(n),
        fingerprint_digest: Hash([0; 32]),
        evidence: Evidence::SelfReported,
        fact_anomalies: vec![],
        pci_bus_id: None,
        ueid: None,
        licensed_to: licensed_to.map(|c| Country::parse(c).unwrap()),
        location: None,
    }
}

fn sites() -> Vec<EnrolledSite> {
    vec![
        site(Role::Landmark, "lm-sg", SINGAPORE, 1, None),
        site(Role::Landmark, "lm-sh", SHANGHAI, 2, None),
        site(Role::Agent, "hgx-honest", SINGAPORE, 3, None),
        site(Role::Agent, "hgx-planted", SINGAPORE, 4, None),
    ]
}

fn judged(locations: &Locations, mut gpus: Vec<Candidate>) -> Vec<Candidate> {
    let mut refs: Vec<&mut Candidate> = gpus.iter_mut().collect();
    locations.apply(&mut refs).unwrap();
    gpus
}

#[test]
fn the_planted_host_answering_shanghai_fast_contradicts_its_singapore_declaration() {
    let proofs = vec![
        // The honest host is in Singapore: Singapore's landmark hears it in under a millisecond.
        proof(10, "lm-sg", SINGAPORE, "hgx-honest", SINGAPORE, 0.3),
        proof(11, "lm-sh", SHANGHAI, "hgx-honest", SINGAPORE, 2.0),
        // The planted one sits near Shanghai: 3 ms to Shanghai bounds it within 450 km of it.
        proof(12, "lm-sh", SHANGHAI, "hgx-planted", SHANGHAI, 3.0),
        proof(13, "lm-sg", SINGAPORE, "hgx-planted", SHANGHAI, 70.0 - 26.0),
    ];
    let locations = Locations::from_parts(sites(), proofs, NOW, 86_400);
    let gpus = judged(&locations, vec![gpu("hgx-honest", 1, Some("SG")), gpu("hgx-planted", 2, Some("SG"))]);

    // 0.3 ms bounds the honest host within 45 km of Singapore's landmark: physics cannot tell
    // Singapore from Johor or Batam at that distance, so the verdict says it may be outside.
    let honest = gpus[0].location.as_ref().unwrap();
    assert_eq!(honest.verdict, LocationVerdict::PossiblyOutside, "{}", honest.reason);
    assert!(honest.reason.contains("MY"), "{}", honest.reason);
    assert_eq!(honest.method, Some(Method::HostKey));
    assert!(gpus[0].anomalies.is_empty());

    let planted = gpus[1].location.as_ref().unwrap();
    assert_eq!(planted.verdict, LocationVerdict::ContradictsDeclared, "{}", planted.reason);
    assert!(planted.reason.contains("lm-sh"), "{}", planted.reason);
    let anomaly = gpus[1].anomalies.iter().find(|a| matches!(a, Anomaly::LocationContradictsDeclared { .. }));
    let text = anomaly.expect("a location-contradicts-declared anomaly").explain();
    assert!(text.contains("host-key"), "{text}");
    assert_eq!(anomaly.unwrap().kind_name(), "location-contradicts-declared");
}

#[test]
fn landmarks_that_cannot_both_be_right_raise_the_anomaly_and_prove_nothing() {
    // A millisecond to Singapore and to London at once: no place on Earth is that close to both.
    let proofs = vec![
        proof(10, "lm-sg", SINGAPORE, "hgx-honest", SINGAPORE, 1.0),
        proof(11, "lm-ldn", LONDON, "hgx-honest", LONDON, 1.0),
    ];
    let mut all = sites();
    all.push(site(Role::Landmark, "lm-ldn", LONDON, 5, None));
    assert!(all.iter().any(|s| s.key_id == "key-lm-ldn"));
    let locations = Locations::from_parts(all, proofs, NOW, 86_400);
    let gpus = judged(&locations, vec![gpu("hgx-honest", 1, Some("SG"))]);
    let j = gpus[0].location.as_ref().unwrap();
    assert_eq!(j.verdict, LocationVerdict::Unproven, "{}", j.reason);
    let found: Vec<&Anomaly> =
        gpus[0].anomalies.iter().filter(|a| matches!(a, Anomaly::LandmarkDisagreement { .. })).collect();
    assert_eq!(found.len(), 1);
    assert!(found[0].explain().contains("lm-ldn") && found[0].explain().contains("lm-sg"), "{}", found[0].explain());
}

#[test]
fn judging_again_replaces_the_location_anomalies_and_other_hosts_proofs_do_not_count() {
    let proofs = vec![proof(12, "lm-sh", SHANGHAI, "hgx-planted", SHANGHAI, 3.0)];
    let locations = Locations::from_parts(sites(), proofs, NOW, 86_400);
    let mut gpus = [gpu("hgx-planted", 2, Some("SG")), gpu("hgx-honest", 1, Some("SG"))];
    for _ in 0..2 {
        let mut refs: Vec<&mut Candidate> = gpus.iter_mut().collect();
        locations.apply(&mut refs).unwrap();
    }
    assert_eq!(gpus[0].anomalies.len(), 1, "{:?}", gpus[0].anomalies);
    let other = gpus[1].location.as_ref().unwrap();
    assert_eq!(other.verdict, LocationVerdict::Unproven);
    assert_eq!(other.reason, "no location proof");
}

#[test]
fn stale_proofs_and_revoked_declarations_do_not_count() {
    let mut old = proof(10, "lm-sg", SINGAPORE, "hgx-honest", SINGAPORE, 0.3);
    old.record.measured_at = NOW - time::Duration::days(3);
    let locations = Locations::from_parts(sites(), vec![old], NOW, 86_400);
    let gpus = judged(&locations, vec![gpu("hgx-honest", 1, None)]);
    assert_eq!(gpus[0].location.as_ref().unwrap().verdict, LocationVerdict::Unproven);

    // The declared site is the newest unrevoked agent key's.
    let all = vec![
        site(Role::Agent, "hgx-honest", LONDON, 3, None),
        site(Role::Agent, "hgx-honest", SINGAPORE, 7, None),
        site(Role::Agent, "hgx-honest", SHANGHAI, 9, Some(12)),
    ];
    let locations = Locations::from_parts(all, vec![], NOW, 86_400);
    assert_eq!(locations.declared("hgx-honest").unwrap().at, at(SINGAPORE));
    assert!(locations.landmarks.is_empty());
}

#[test]
fn only_the_current_keys_answers_to_live_landmarks_count_and_of_each_landmark_the_newest() {
    // The planted host's Shanghai proof would contradict it; each way of hiding it fails or not:
    let planted = || proof(12, "lm-sh", SHANGHAI, "hgx-planted", SHANGHAI, 3.0);
    let verdict = |sites: Vec<EnrolledSite>, proofs: Vec<LoggedProof>| {
        let locations = Locations::from_parts(sites, proofs, NOW, 86_400);
        let gpus = judged(&locations, vec![gpu("hgx-planted", 2, Some("SG"))]);
        gpus[0].location.clone().unwrap().verdict
    };
    assert_eq!(verdict(sites(), vec![planted()]), LocationVerdict::ContradictsDeclared);
    // A landmark revoked (for lying, say) proves nothing any more.
    let mut revoked = sites();
    revoked[1].revoked_at = Some(20);
    assert_eq!(verdict(revoked, vec![planted()]), LocationVerdict::Unproven);
    // Answers by another key of the host (an old one left enrolled, or a decoy's) do not count.
    let mut decoy = planted();
    decoy.record.subject.key_id = KeyId("key-hgx-planted-old".into());
    assert_eq!(verdict(sites(), vec![decoy]), LocationVerdict::Unproven);
    // A newer proof from the same landmark replaces the older one: a host that moved is where
    // its latest answers put it.
    let moved = proof(30, "lm-sh", SHANGHAI, "hgx-planted", SINGAPORE, 0.5);
    assert_eq!(verdict(sites(), vec![planted(), moved]), LocationVerdict::PossiblyOutside);
}

#[test]
fn a_host_counts_at_most_64_landmarks_and_one_with_a_full_reads_worth_of_proofs_is_unproven() {
    use chipledger_domain::located::MAX_LANDMARKS;
    use chipledger_domain::log::MAX_LOCATION_PROOFS;
    let mut all = sites();
    let mut proofs = Vec::new();
    for i in 0..70u64 {
        let name = format!("lm-{i}");
        all.push(site(Role::Landmark, &name, SINGAPORE, 100 + i, None));
        proofs.push(proof(1_000 + i, &name, SINGAPORE, "hgx-honest", SINGAPORE, 0.3));
    }
    let locations = Locations::from_parts(all.clone(), proofs, NOW, 86_400);
    let counted: Vec<u64> = locations.counted("hgx-honest").map(|p| p.index).collect();
    assert_eq!(counted.len(), MAX_LANDMARKS);
    assert_eq!(counted.first(), Some(&1_006), "the newest 64 landmarks' proofs");

    let flood: Vec<LoggedProof> =
        (0..MAX_LOCATION_PROOFS).map(|i| proof(10_000 + i, "lm-sh", SHANGHAI, "hgx-planted", SHANGHAI, 3.0)).collect();
    let locations = Locations::from_parts(all, flood, NOW, 86_400);
    let gpus = judged(&locations, vec![gpu("hgx-planted", 2, Some("SG"))]);
    let j = gpus[0].location.as_ref().unwrap();
    assert_eq!(j.verdict, LocationVerdict::Unproven);
    assert!(j.reason.contains("none is trusted"), "{}", j.reason);
}
