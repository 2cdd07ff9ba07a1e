use chipledger_domain::catalog::Catalog;
use chipledger_domain::country::Country;
use chipledger_domain::dsse::{pae, Envelope, PAYLOAD_TYPE_IN_TOTO};
use chipledger_domain::identify::identify;
use chipledger_domain::records::{
    sign_record, statement, Acquisition, AttestedGpu, DriverFacts, GpuAttestation, HostFacts, KeyEnrollment,
    ProbeSource, Record, RecordKind, Role, FORMAT_VERSION,
};
use chipledger_domain::Error;
use time::macros::{date, datetime};

use crate::fingerprint::h800_facts;
use crate::keys::peter;

#[test]
fn pae_matches_the_dsse_spec_example() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
}

#[test]
fn envelopes_are_frozen_and_verify_over_the_exact_payload_bytes() {
    let payload = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
    let env = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, payload, &peter());
    assert_eq!(env.payload, "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==");
    assert_eq!(env.signatures[0].keyid, peter().key_id().to_string());
    // Cross-checked with Python `cryptography` over the same PAE bytes.
    assert_eq!(
        env.signatures[0].sig,
        "TvqyoKtny7Q8wuH3KZL7MEPRKfLvcuEqvbM/QwQQwurjo8rmXioaEZfOuTYzifOmSA3jpep+vOCT3ccZbyQoDA=="
    );
    let json = env.to_json();
    let back = Envelope::from_json(&json).unwrap();
    assert_eq!(back.verify(&peter().public_key()).unwrap(), payload.to_vec());

    // The same JSON with whitespace inside the payload would be different bytes: the signature
    // covers bytes, not meaning.
    let mut other = back.clone();
    other.payload = chipledger_domain::encoding::b64_encode(br#"{"_type": "https://in-toto.io/Statement/v1"}"#);
    assert!(matches!(other.verify(&peter().public_key()), Err(Error::BadSignature { .. })));
    let mut retyped = back.clone();
    retyped.payload_type = "application/json".into();
    assert!(retyped.verify(&peter().public_key()).is_err());
}

#[test]
fn malformed_envelopes_are_refused_with_a_reason() {
    for (bad, part) in [
        (&b"{"[..], "not valid JSON"),
        (br#"{"payload":"e30=","payloadType":"x","signatures":[]}"#, "no signatures"),
        (br#"{"payload":"e30","payloadType":"x","signatures":[{"keyid":"","sig":"AA=="}]}"#, "base64"),
        (br#"{"payload":"e30=","payloadType":"x","signatures":[{"keyid":"","sig":"AA=="}]}"#, "Ed25519 needs 64"),
        (br#"{"payload":"e30=","payloadType":"x","signatures":[],"extra":1}"#, "unknown field"),
    ] {
        let err = Envelope::from_json(bad).unwrap_err().to_string();
        assert!(err.contains(part), "{err:?} lacks {part:?}");
    }
    let huge = vec![b' '; chipledger_domain::dsse::MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(Envelope::from_json(&huge), Err(Error::TooLarge { .. })));
}

fn attestation() -> GpuAttestation {
    let facts = h800_facts();
    let id = identify(Catalog::embedded().unwrap(), &facts);
    GpuAttestation {
        format_version: FORMAT_VERSION,
        counter: 1,
        observed_at: datetime!(2026-11-29 09:00 UTC),
        source: ProbeSource::NvidiaSmiText,
        host: HostFacts { hostname: "hgx-h800-01".into(), ..Default::default() },
        driver: DriverFacts { driver_version: Some("525.105.17".into()), ..Default::default() },
        gpus: vec![AttestedGpu::new(facts.uuid.clone().unwrap(), facts, id)],
        vendor_evidence: vec![],
    }
}

#[test]
fn a_signed_attestation_round_trips_to_a_typed_record() {
    let a = attestation();
    let env = sign_record(&a, &peter()).unwrap();
    let payload = env.verify(&peter().public_key()).unwrap();
    let rec = Record::from_payload(&payload).unwrap();
    assert_eq!(rec.kind(), RecordKind::GpuAttestation);
    assert_eq!(rec.counter(), 1);
    let Record::GpuAttestation(back) = rec else { panic!() };
    assert_eq!(back, a);
    let st = statement(&a).unwrap();
    assert_eq!(st.predicate_type, "https://chipledger.dev/predicates/gpu-attestation/v1");
    assert_eq!(st.subject[0].name, "gpu:GPU-34bf77d1-c686-6821-79a8-32d326c5039c");
    assert_eq!(st.subject[0].digest["sha256"], "8a3facbd4c032667aac94ef7b5400cce333c15a62ae0eba35ba3d055f48322ec");
}

#[test]
fn statements_that_lie_about_their_subjects_or_version_are_refused() {
    let a = attestation();
    let mut st = statement(&a).unwrap();
    st.subject[0].digest.insert("sha256".into(), "00".repeat(32));
    assert!(matches!(Record::from_statement(&st), Err(Error::Record { .. })));
    let mut st = statement(&a).unwrap();
    st.predicate["format_version"] = 2.into();
    let err = Record::from_statement(&st).unwrap_err().to_string();
    assert!(err.contains("format_version"), "{err}");
    let mut st = statement(&a).unwrap();
    st.predicate_type = "https://example.com/other/v1".into();
    assert!(matches!(Record::from_statement(&st), Err(Error::Statement { .. })));
}

#[test]
fn predicate_types_name_their_kinds_and_nothing_else() {
    use chipledger_domain::records::RecordKind;
    for kind in RecordKind::ALL {
        assert_eq!(RecordKind::from_predicate_type(&kind.predicate_type()), Some(kind));
    }
    for other in [
        "https://chipledger.dev/predicates/gpu-attestation/v2",
        "https://chipledger.dev/predicates/gpu-attestation",
        "https://chipledger.dev/predicates//v1",
        "https://example.com/predicates/annotation/v1",
        "",
    ] {
        assert_eq!(RecordKind::from_predicate_type(other), None, "{other}");
    }
}

#[test]
fn every_predicate_round_trips() {
    let acq = Acquisition {
        format_version: FORMAT_VERSION,
        counter: 7,
        recorded_at: datetime!(2026-11-29 09:00 UTC),
        serials: vec!["1651323018291".into()],
        sku: Some("H800-SXM5-80GB".into()),
        supplier: "Example Distribution Ltd".into(),
        invoice_reference: "INV-2023-0042".into(),
        invoice_digest: None,
        shipped_on: date!(2023 - 03 - 15),
        ship_from: Country::parse("TW").unwrap(),
        ship_to: Country::parse("CN").unwrap(),
        end_user: "Example Lab".into(),
        licence: None,
        note: String::new(),
    };
    let env = sign_record(&acq, &peter()).unwrap();
    let rec = Record::from_payload(&env.verify(&peter().public_key()).unwrap()).unwrap();
    assert_eq!(rec, Record::Acquisition(acq));

    let enr = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter: 1,
        issued_at: datetime!(2026-11-29 09:00 UTC),
        key_id: peter().key_id(),
        verifier_key: crate::keys::PETER_VKEY.into(),
        role: Role::Agent,
        host: Some("hgx-h800-01".into()),
        valid_from: datetime!(2026-11-29 09:00 UTC),
        valid_until: None,
        site: None,
    };
    let env = sign_record(&enr, &peter()).unwrap();
    assert_eq!(Record::from_payload(&env.verify(&peter().public_key()).unwrap()).unwrap(), Record::KeyEnrollment(enr));
}

#[test]
fn roles_may_sign_only_their_predicates() {
    assert!(Role::Agent.may_sign(RecordKind::GpuAttestation));
    assert!(!Role::Agent.may_sign(RecordKind::Acquisition));
    assert!(!Role::Node.may_sign(RecordKind::GpuAttestation));
    assert!(Role::Node.may_sign(RecordKind::RunProvenance));
    assert!(Role::Auditor.may_sign(RecordKind::Annotation));
    assert!(!Role::Auditor.may_sign(RecordKind::KeyEnrollment));
    assert!(Role::Admin.may_sign(RecordKind::KeyEnrollment));
    assert!(!Role::Admin.may_sign(RecordKind::GpuAttestation));
}
