//! Evidence we sign ourselves (`support::spdm`: a test root → intermediate → attestation key):
//! it is laid out as NVIDIA's GPUs lay theirs, verifies with the nonce we chose and says what we
//! put in; NVIDIA's root, another nonce, a flipped signed byte and an FWID the leaf does not
//! vouch for are each refused.

use chipledger_domain::evidence::{self, decode_report, field, parse_chain, verify, Report, Verified};

use crate::support::spdm::{ReportFields, TestDevice};

/// 2027: inside the test certificates' validity (2020..2040).
const AT: i64 = 1_800_000_000;
const SERIAL: [u8; 20] = *b"\x53chipledger-test-gpu";
const NONCE: [u8; 32] = [0x5a; 32];

#[track_caller]
fn check(
    report: &[u8],
    device: &TestDevice,
    root: &x509_cert::Certificate,
    nonce: &[u8; 32],
) -> Result<Verified, String> {
    let chain = parse_chain(&device.chain_pem).map_err(|e| e.to_string())?;
    Report::parse(report).and_then(|r| verify(&r, &chain, root, nonce, AT)).map_err(|e| e.to_string())
}

fn nvidia_sample() -> Report {
    let path = format!("{}/tests/data/nvidia-attestation/hopperAttestationReport.txt", env!("CARGO_MANIFEST_DIR"));
    Report::parse(&decode_report(&std::fs::read(path).unwrap()).unwrap()).unwrap()
}

#[test]
fn a_synthetic_report_verifies_with_its_nonce_and_says_what_was_put_in() {
    let device = TestDevice::new(&SERIAL);
    let fields = ReportFields {
        driver_version: "570.124.06".into(),
        vbios_version: "96.00.A1.00.02".into(),
        project: "1010".into(),
        project_sku: "0210".into(),
        chip_sku: "882".into(),
        measurements: vec![(1, vec![0x11; 48]), (2, vec![0x22; 48]), (9, vec![0x99; 48])],
    };
    let v = check(&device.report(NONCE, &fields), &device, &device.root, &NONCE).unwrap();
    assert_eq!(v.ueid, hex::encode_upper(SERIAL));
    assert_eq!(v.ueid, device.ueid);
    assert_eq!(v.driver_version.as_deref(), Some("570.124.06"));
    assert_eq!(v.vbios_version.as_deref(), Some("96.00.a1.00.02"), "read back in lower case");
    assert_eq!(v.project.as_deref(), Some("1010"));
    assert_eq!(v.project_sku.as_deref(), Some("0210"));
    assert_eq!(v.chip_sku.as_deref(), Some("882"));
    assert_eq!(v.fwid, device.fwid);
    let measured: Vec<(u8, Vec<u8>)> = v.measurements.iter().map(|m| (m.index, m.value.clone())).collect();
    assert_eq!(measured, fields.measurements);
    assert!(v.measurements.iter().all(|m| m.value_type == 0x01));
}

#[test]
fn a_report_like_the_sample_is_laid_out_and_encoded_as_nvidias() {
    let fields = ReportFields::like_the_sample();
    assert_eq!((fields.driver_version.as_str(), fields.vbios_version.as_str()), ("550.90.07", "96.00.9f.00.01"));
    assert_eq!(fields.measurements.len(), 64);
    let device = TestDevice::new(&SERIAL);
    let sample = nvidia_sample();
    let ours = Report::parse(&device.report(sample.nonce, &fields)).unwrap();
    // Request and response headers, and the measurement record, byte for byte.
    let measurements_end = evidence::REQUEST_LEN + 8 + 64 * (4 + 3 + 48);
    assert_eq!(ours.signed[..measurements_end], sample.signed[..measurements_end]);
    // Every opaque field we write, as the GPU wrote it (the FWID aside: it is the leaf's).
    for t in [field::VBIOS_VERSION, field::CHIP_SKU, field::PROJECT, field::PROJECT_SKU, field::DRIVER_VERSION] {
        assert_eq!(ours.field(t), sample.field(t), "opaque field {t}");
    }
    assert_eq!(ours.field(field::FWID), Some(&device.fwid[..]));
    let v = check(&device.report(sample.nonce, &fields), &device, &device.root, &sample.nonce).unwrap();
    assert_eq!(v.vbios_version.as_deref(), Some("96.00.9f.00.01"));
}

#[test]
fn a_synthetic_report_is_refused_under_nvidias_root() {
    let device = TestDevice::new(&SERIAL);
    let nvidia = evidence::parse_root(None).unwrap();
    let e = check(&device.report(NONCE, &ReportFields::like_the_sample()), &device, &nvidia, &NONCE).unwrap_err();
    assert!(e.contains("not the pinned root"), "{e}");
}

#[test]
fn a_synthetic_report_is_refused_with_another_nonce() {
    let device = TestDevice::new(&SERIAL);
    let report = device.report(NONCE, &ReportFields::like_the_sample());
    let mut other = NONCE;
    other[31] ^= 1;
    let e = check(&report, &device, &device.root, &other).unwrap_err();
    assert!(e.contains("nonce"), "{e}");
}

#[test]
fn a_flipped_byte_of_the_signed_part_is_refused() {
    let device = TestDevice::new(&SERIAL);
    let fields = ReportFields::like_the_sample();
    let report = device.report(NONCE, &fields);
    let at = |needle: &[u8]| report.windows(needle.len()).position(|w| w == needle).unwrap();
    let signed_len = report.len() - evidence::SIGNATURE_LEN;
    // A measurement (the sample's first is all zeros: its second), the driver version, the FWID,
    // the last signed byte.
    for i in [at(&fields.measurements[1].1), at(b"550.90.07"), at(&device.fwid) + 47, signed_len - 1] {
        let mut bent = report.clone();
        bent[i] ^= 0x01;
        let e = check(&bent, &device, &device.root, &NONCE).unwrap_err();
        assert!(e.contains("signature does not verify"), "byte {i}: {e}");
    }
}

#[test]
fn a_report_whose_fwid_the_leaf_does_not_vouch_for_is_refused() {
    let device = TestDevice::new(&SERIAL);
    let other = TestDevice::new(b"\x01another GPU");
    assert_ne!(device.fwid, other.fwid);
    let report = device.report_claiming(NONCE, &ReportFields::like_the_sample(), &other.fwid);
    let e = check(&report, &device, &device.root, &NONCE).unwrap_err();
    assert!(e.contains("FWID"), "{e}");
}
