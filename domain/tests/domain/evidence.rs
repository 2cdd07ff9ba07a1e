//! NVIDIA's real Hopper attestation evidence (from nvtrust, `tests/data/nvidia-attestation/`):
//! it verifies with its nonce, and every change to it — a byte of the signed part or of the
//! signature, the nonce, the chain, the time — is refused with the reason; truncated and random
//! input is an error, never a panic.

use chipledger_domain::evidence::{self, decode_report, parse_chain, verify, verify_signature, Report};
use x509_cert::der::DecodePem;
use x509_cert::Certificate;

const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
/// 2027: inside every certificate's validity (the chain's leaves run to 9999).
const AT: i64 = 1_800_000_000;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/nvidia-attestation/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn sample() -> (Vec<u8>, Vec<Certificate>, Certificate, [u8; 32]) {
    let report = decode_report(&data("hopperAttestationReport.txt")).unwrap();
    let chain = parse_chain(&data("hopperCertChain.txt")).unwrap();
    let root = Certificate::from_pem(data("verifier_device_root.pem")).unwrap();
    let nonce: [u8; 32] = hex::decode(NONCE).unwrap().try_into().unwrap();
    (report, chain, root, nonce)
}

#[test]
fn the_shared_sample_verifies_with_its_nonce() {
    let (bytes, chain, root, nonce) = sample();
    let report = Report::parse(&bytes).unwrap();
    let v = verify(&report, &chain, &root, &nonce, AT).unwrap();
    assert_eq!(v.driver_version.as_deref(), Some("550.90.07"));
    assert_eq!(v.vbios_version.as_deref(), Some("96.00.9f.00.01"));
    assert_eq!(v.measurements.len(), 64);
    assert!(v.measurements.iter().all(|m| m.value.len() == 48));
    assert_eq!(v.ueid, "53C22BA15E5D68088282DA074ED9FB37AA585771", "the leaf certificate's serial");
    assert_eq!(v.chip_sku.as_deref(), Some("882"));
    assert_eq!(v.fwid.len(), 48);
    // Raw binary reads as the hex text does.
    assert_eq!(decode_report(&bytes).unwrap(), bytes);
}

#[test]
fn every_byte_of_the_signed_part_and_of_the_signature_matters() {
    let (bytes, chain, _, _) = sample();
    for i in 0..bytes.len() {
        let mut bent = bytes.clone();
        bent[i] ^= 0x01;
        let refused = Report::parse(&bent).and_then(|r| verify_signature(&r, &chain[0]));
        assert!(refused.is_err(), "a change at byte {i} was not noticed");
    }
}

#[test]
fn a_wrong_nonce_a_bent_chain_another_root_and_a_time_outside_validity_are_refused() {
    let (bytes, chain, root, nonce) = sample();
    let report = Report::parse(&bytes).unwrap();
    let why = |r: Result<evidence::Verified, chipledger_domain::Error>| r.unwrap_err().to_string();
    let mut other = nonce;
    other[0] ^= 1;
    assert!(why(verify(&report, &chain, &root, &other, AT)).contains("nonce"));
    // Two certificates swapped; one missing; a leaf from another chain.
    let mut swapped = chain.clone();
    swapped.swap(1, 2);
    assert!(why(verify(&report, &swapped, &root, &nonce, AT)).contains("not issued by"));
    let mut missing = chain.clone();
    missing.remove(2);
    assert!(why(verify(&report, &missing, &root, &nonce, AT)).contains("not issued by"));
    let mut foreign_leaf = chain.clone();
    foreign_leaf[0] = chain[1].clone();
    assert!(why(verify(&report, &foreign_leaf, &root, &nonce, AT)).contains("signature does not verify"));
    // Pinned to another root (NVIDIA's RIM root): the chain does not end there.
    let rim_root = Certificate::from_pem(data("verifier_RIM_root.pem")).unwrap();
    assert!(why(verify(&report, &chain, &rim_root, &nonce, AT)).contains("not the pinned root"));
    // Before the leaf's validity (2019).
    assert!(why(verify(&report, &chain, &root, &nonce, 1_550_000_000)).contains("not valid at the report's time"));
}

#[test]
fn truncated_and_random_input_is_an_error_never_a_panic() {
    let (bytes, _, _, _) = sample();
    for n in 0..bytes.len() {
        let e = Report::parse(&bytes[..n]).unwrap_err().to_string();
        assert!(e.contains("ends inside") || e.contains("the report"), "{n}: {e}");
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for len in [0usize, 1, 37, 41, 200, 4096, 70_000] {
        for _ in 0..50 {
            let junk = crate::support::junk(&mut x, len);
            let _ = Report::parse(&junk);
            let _ = decode_report(&junk);
            let _ = parse_chain(&junk);
        }
    }
    // The chain's own errors name the certificate.
    assert!(parse_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap_err()
        .to_string()
        .contains("certificate 1"));
}

/// A chain verified once is remembered with its validity window: the same chain again costs no
/// signature checks, a time outside the window is still refused, and a bent chain is not taken
/// for the one remembered.
#[test]
fn a_chain_cache_remembers_verified_chains_and_their_window() {
    use chipledger_domain::evidence::{verify_cached, ChainCache};
    let (bytes, chain, root, nonce) = sample();
    let report = Report::parse(&bytes).unwrap();
    let cache = ChainCache::default();
    verify_cached(&report, &chain, &root, &nonce, AT, Some(&cache)).unwrap();
    verify_cached(&report, &chain, &root, &nonce, AT + 1, Some(&cache)).unwrap();
    let e = verify_cached(&report, &chain, &root, &nonce, 1_550_000_000, Some(&cache)).unwrap_err().to_string();
    assert!(e.contains("not valid at the report's time"), "{e}");
    let mut swapped = chain.clone();
    swapped.swap(1, 2);
    assert!(verify_cached(&report, &swapped, &root, &nonce, AT, Some(&cache)).is_err());
}
