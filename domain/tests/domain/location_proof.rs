//! `location-proof/v1`: the record's own checks and its answers, as any reader checks them.

use chipledger_domain::keys::SigningKey;
use chipledger_domain::location::{Coord, Method};
use chipledger_domain::location_proof::{answer, LocatedSubject, LocationProof, ProofHeader, Round};
use chipledger_domain::records::{statement, Predicate, Record};
use time::macros::datetime;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

/// A proof of `hgx-sg` by landmark `sin-1`: `n` rounds answered by `agent`.
fn proof(agent: &SigningKey, n: u8) -> LocationProof {
    let rounds = (0..n)
        .map(|i| {
            let nonce = [i + 1; 32];
            Round {
                nonce: hex::encode(nonce),
                rtt_ns: 400_000 + u64::from(i) * 1_000,
                answer: answer(agent, "sin-1", "hgx-sg", &nonce),
            }
        })
        .collect();
    let header = ProofHeader {
        counter: 7,
        measured_at: datetime!(2026-12-07 10:00 UTC),
        landmark: "sin-1".into(),
        landmark_at: Coord::parse("1.2966,103.7764").unwrap(),
        floor_ns: 0,
    };
    let subject = LocatedSubject { host: "hgx-sg".into(), key_id: agent.key_id(), gpus: vec![] };
    LocationProof::new(header, subject, rounds)
}

#[track_caller]
fn check_refused(p: &LocationProof, part: &str) {
    let err = p.check().expect_err("the proof should be malformed");
    assert!(err.contains(part), "{err}");
}

#[test]
fn a_proof_keeps_the_least_round_trip_and_bounds_the_distance_by_light_in_vacuum() {
    let p = proof(&key(1), 5);
    assert_eq!(p.min_rtt_ns, 400_000);
    assert!((p.bound_km() - 59.958_491_6).abs() < 1e-6, "{}", p.bound_km());
    p.check().unwrap();
    p.verify_answers(&key(1).public_key()).unwrap();
    // Through a statement and back: the same record.
    let st = statement(&p).unwrap();
    match Record::from_statement(&st).unwrap() {
        Record::LocationProof(back) => assert_eq!(*back, p),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.subjects()[0].name, "host:hgx-sg");
    assert_eq!(Method::HostKey.subject_label(), "the key holder");
}

#[test]
fn an_answer_by_another_key_or_for_another_landmark_or_nonce_is_refused_by_round() {
    let agent = key(1);
    let p = proof(&agent, 3);
    let err = p.verify_answers(&key(2).public_key()).unwrap_err().to_string();
    assert!(err.contains("round 1"), "{err}");
    // An answer made for another landmark, replayed here.
    let mut replayed = p.clone();
    replayed.rounds[1].answer = answer(&agent, "sha-1", "hgx-sg", &[2; 32]);
    let err = replayed.verify_answers(&agent.public_key()).unwrap_err().to_string();
    assert!(err.contains("round 2"), "{err}");
    // A precomputed answer to a nonce the landmark did not send.
    let mut precomputed = p.clone();
    precomputed.rounds[2].nonce = hex::encode([9u8; 32]);
    let err = precomputed.verify_answers(&agent.public_key()).unwrap_err().to_string();
    assert!(err.contains("round 3"), "{err}");
}

#[test]
fn a_malformed_proof_says_what_is_wrong() {
    let agent = key(1);
    let mut p = proof(&agent, 3);
    p.min_rtt_ns = 1;
    check_refused(&p, "min_rtt_ns");
    let mut p = proof(&agent, 3);
    p.floor_ns = 500_000;
    check_refused(&p, "floor");
    let mut p = proof(&agent, 3);
    p.rounds[1].nonce = p.rounds[0].nonce.clone();
    check_refused(&p, "nonce used twice");
    let mut p = proof(&agent, 3);
    p.rounds.clear();
    p.min_rtt_ns = 0;
    check_refused(&p, "1 to 64 rounds");
    let mut p = proof(&agent, 3);
    p.rounds[0].answer = "AAAA".into();
    check_refused(&p, "64-byte");
    let mut p = proof(&agent, 3);
    p.method = Method::GpuSpdm;
    check_refused(&p, "not part of location-proof/v1");
    let mut p = proof(&agent, 3);
    p.subject.host = "a\nb".into();
    check_refused(&p, "host name");
}
