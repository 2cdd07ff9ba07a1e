//! NVIDIA's reference integrity manifests (from nvtrust, `tests/data/nvidia-attestation/`): both
//! sample RIMs verify under NVIDIA's RIM root; held against the sample report (a later driver and
//! VBIOS) they show exactly which measurements differ and both version mismatches; every change to
//! a RIM — a golden value, the signature, the chain, the root, the time, the XML-DSig profile — is
//! refused with the reason; truncated, random and mutated input is an error, never a panic. A RIM
//! signed here, by a test CA exactly as NVIDIA signs, whose golden values are the sample report's,
//! matches it; one changed golden value names its index.

use crate::support::rim as rim_signer;
use chipledger_domain::evidence::{decode_report, ChainCache, Measurement, Report};
use chipledger_domain::rim::{
    compare, parse_rim_root, verify_rim, verify_rim_cached, Comparison, Outcome, Rim, MAX_RIM_BYTES,
};
use proptest::prelude::*;
use x509_cert::der::DecodePem;
use x509_cert::Certificate;

const DRIVER: &str = "Driver_RIM_test_no_gpu.swidtag";
const VBIOS: &str = "1010_0200_882_96005E0001_test_no_gpu.swidtag";
/// July 2024: inside every certificate's validity (the signers' run June 2023 to June 2025).
const AT: i64 = 1_720_000_000;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/nvidia-attestation/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn text(name: &str) -> String {
    String::from_utf8(data(name)).unwrap()
}

fn root() -> Certificate {
    Certificate::from_pem(data("verifier_RIM_root.pem")).unwrap()
}

fn report() -> Report {
    Report::parse(&decode_report(&data("hopperAttestationReport.txt")).unwrap()).unwrap()
}

/// Verifies a RIM, the error as its message.
#[track_caller]
fn check(xml: &[u8], root: &Certificate, at: i64) -> Result<Rim, String> {
    verify_rim(xml, root, at).map_err(|e| e.to_string())
}

/// `xml` is refused, and the reason says `why`.
#[track_caller]
fn refused(xml: &[u8], why: &str) {
    match check(xml, &root(), AT) {
        Ok(_) => panic!("accepted; expected a refusal naming {why:?}"),
        Err(e) => assert!(e.contains(why), "expected {why:?} in: {e}"),
    }
}

/// The report against both RIMs, with its own versions.
fn against(report: &Report, driver: &Rim, vbios: &Rim) -> Comparison {
    compare(
        &report.measurements,
        report.text(3).as_deref(),
        report.vbios_version().as_deref(),
        Some(driver),
        Some(vbios),
    )
    .unwrap()
}

fn active(rim: &Rim) -> Vec<u8> {
    rim.active().map(|g| g.index).collect()
}

fn indexes(c: &Comparison, keep: impl Fn(&Outcome) -> bool) -> Vec<u8> {
    c.results.iter().filter(|r| keep(&r.outcome)).map(|r| r.index).collect()
}

#[test]
fn both_sample_rims_verify_under_nvidias_rim_root() {
    assert_eq!(parse_rim_root(None).unwrap(), root(), "the shipped root is nvtrust's verifier_RIM_root.pem");
    let driver = check(&data(DRIVER), &root(), AT).unwrap();
    assert_eq!(driver.product, "GH100");
    assert_eq!(driver.version, "545.00");
    assert_eq!(
        driver.tag_id,
        "f0d3a263ab9ef4b93c8fc9727493b61a979814cbf31c07614842a9486b84db8c6cb2c94fb3d5d55992fc482ab495df0d"
    );
    assert_eq!(driver.signer, "CN=HCC RIM L4 Signer,O=NVIDIA Corporation,L=Santa Clara,ST=CA,C=US");
    let mut want: Vec<u8> = vec![7];
    want.extend(21..=40);
    assert_eq!(active(&driver), want);

    let vbios = check(&data(VBIOS), &root(), AT).unwrap();
    assert_eq!(vbios.product, "GH100");
    assert_eq!(vbios.version, "96.00.5E.00.01");
    assert_eq!(active(&vbios), [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]);

    for rim in [&driver, &vbios] {
        assert_eq!(rim.golden.iter().map(|g| g.index).collect::<Vec<_>>(), (0..64).collect::<Vec<u8>>());
        assert!(rim.golden.iter().flat_map(|g| &g.alternatives).all(|a| a.len() == 48));
    }
    // Alternatives: the VBIOS's index 12 has four, the driver's 23 and 35 two.
    assert_eq!(vbios.golden[12].alternatives.len(), 4);
    assert_eq!(driver.golden[23].alternatives.len(), 2);
    assert_eq!(driver.golden[35].alternatives.len(), 2);
}

/// The sample report is driver 550.90.07 / VBIOS 96.00.9f.00.01; the sample RIMs are for 545.00 /
/// 96.00.5E.00.01. SPDM block `i` is RIM index `i - 1`: with that pairing 13 of the 33 golden
/// indexes match (firmware unchanged between the versions), 20 differ; the report's other 31
/// blocks are covered by neither RIM.
#[test]
fn the_sample_report_against_the_sample_rims_names_each_difference_and_both_versions() {
    let report = report();
    let driver = check(&data(DRIVER), &root(), AT).unwrap();
    let vbios = check(&data(VBIOS), &root(), AT).unwrap();
    let c = against(&report, &driver, &vbios);
    assert_eq!(indexes(&c, |o| *o == Outcome::Matches), [0, 4, 5, 6, 8, 10, 12, 23, 24, 28, 33, 35, 38]);
    assert_eq!(
        indexes(&c, |o| matches!(o, Outcome::Differs { .. })),
        [1, 2, 3, 7, 9, 11, 21, 22, 25, 26, 27, 29, 30, 31, 32, 34, 36, 37, 39, 40]
    );
    assert_eq!(indexes(&c, |o| *o == Outcome::MissingFromReport), Vec::<u8>::new());
    let mut uncovered: Vec<u8> = (13..=20).collect();
    uncovered.extend(41..=63);
    assert_eq!(indexes(&c, |o| *o == Outcome::NotCovered), uncovered);
    assert_eq!(c.results.len(), 64);
    assert!(c.results.iter().all(|r| r.rim.is_none() == (r.outcome == Outcome::NotCovered)));
    assert_eq!(c.results[7].rim, Some("driver"));
    assert_eq!(c.results[1].rim, Some("vbios"));
    // A difference names both sides: the report's block 8 against the driver RIM's index 7.
    let Outcome::Differs { reported, expected } = &c.results[7].outcome else { panic!("{:?}", c.results[7]) };
    assert_eq!(reported, &report.measurements[7].value);
    assert_eq!(expected, &driver.golden[7].alternatives);
    // The matches include one of several alternatives (the driver's index 35 matches its second).
    assert_eq!(report.measurements[35].value, driver.golden[35].alternatives[1]);
    assert_eq!(
        c.version_findings,
        [
            "the driver RIM is for driver 545.00, the report's driver is 550.90.07",
            "the VBIOS RIM is for VBIOS 96.00.5E.00.01, the report's VBIOS is 96.00.9f.00.01",
        ]
    );
    assert!(!c.all_match());
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["results"][7]["outcome"]["kind"], "differs");
    assert_eq!(json["results"][0]["outcome"]["kind"], "matches");
}

#[test]
fn a_changed_golden_value_signature_chain_root_or_time_is_refused_with_the_reason() {
    let driver = text(DRIVER);
    // A flipped nibble in a golden value: the content no longer has the signed digest.
    let golden = "0e0ee161b59bf124ce6b6dca6efa7616d28077862c0e57dca7d5efd63d00eeed4851922941e846a38c464cbedbc168d9";
    refused(
        driver.replacen(golden, &golden.replacen("0e0e", "0e0f", 1), 1).as_bytes(),
        "digest does not match its content",
    );
    // Whitespace between attributes is not content (the canonical form is signed, not the bytes).
    let respaced = driver.replacen("<ns0:Entity name=", "<ns0:Entity\n   name=", 1);
    assert_eq!(check(respaced.as_bytes(), &root(), AT).unwrap(), check(driver.as_bytes(), &root(), AT).unwrap());
    // Another SignatureValue (first character changed).
    let value = "<ds:SignatureValue>/BgnH";
    refused(
        driver.replacen(value, "<ds:SignatureValue>ABgnH", 1).as_bytes(),
        "signature does not verify with its signing certificate",
    );
    // The chain without its intermediate "L3" certificate.
    let certs: Vec<&str> = driver
        .split("<ds:X509Certificate>")
        .skip(1)
        .map(|c| c.split("</ds:X509Certificate>").next().unwrap())
        .collect();
    assert_eq!(certs.len(), 4);
    let without_l3 = driver.replacen(&format!("<ds:X509Certificate>{}</ds:X509Certificate>", certs[1]), "", 1);
    refused(without_l3.as_bytes(), "the RIM's signing chain: certificate 1 (\"CN=HCC RIM L4 Signer");
    refused(without_l3.as_bytes(), "is not issued by the next one");
    // Without the root itself: the pinned root completes it.
    let without_root = driver.replacen(&format!("<ds:X509Certificate>{}</ds:X509Certificate>", certs[3]), "", 1);
    assert_eq!(check(without_root.as_bytes(), &root(), AT).unwrap().version, "545.00");
    // Without the leaf: the signature is checked with the intermediate's key, and fails.
    let without_leaf = driver.replacen(&format!("<ds:X509Certificate>{}</ds:X509Certificate>", certs[0]), "", 1);
    refused(without_leaf.as_bytes(), "signature does not verify");
    // Pinned to NVIDIA's device root: the chain does not end there.
    let device_root = Certificate::from_pem(data("verifier_device_root.pem")).unwrap();
    let e = check(driver.as_bytes(), &device_root, AT).unwrap_err();
    assert!(e.contains("the RIM's chain ends in \"CN=NVIDIA CoRIM signing Root CA,O=NVIDIA,C=US\", not the pinned RIM root \"O=NVIDIA,CN=NVIDIA Device Identity CA"), "{e}");
    // After the signer's validity (June 2025), before it (2022).
    for at in [1_760_000_000, 1_650_000_000] {
        let e = check(driver.as_bytes(), &root(), at).unwrap_err();
        assert!(e.contains("certificate 1 (\"CN=HCC RIM L4 Signer") && e.contains("not valid"), "{e}");
    }
}

#[test]
fn anything_outside_nvidias_xml_dsig_profile_is_refused() {
    let driver = text(DRIVER);
    let reference_start = driver.find("<ds:Reference ").unwrap();
    let reference_end = driver.find("</ds:Reference>").unwrap() + "</ds:Reference>".len();
    let reference = &driver[reference_start..reference_end];
    let two_references = driver.replacen(reference, &format!("{reference}{reference}"), 1);
    refused(
        two_references.as_bytes(),
        "SignedInfo holds [CanonicalizationMethod, SignatureMethod, Reference, Reference]",
    );
    let exclusive = "http://www.w3.org/2001/10/xml-exc-c14n#";
    let c14n_method = "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/>";
    refused(
        driver.replacen(c14n_method, &format!("<ds:CanonicalizationMethod Algorithm=\"{exclusive}\"/>"), 1).as_bytes(),
        "CanonicalizationMethod algorithm is Some(\"http://www.w3.org/2001/10/xml-exc-c14n#\"); only http://www.w3.org/2006/12/xml-c14n11",
    );
    let c14n_transform = "<ds:Transform Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/>";
    refused(
        driver
            .replacen(c14n_transform, &format!("<ds:Transform Algorithm=\"{exclusive}#WithComments\"/>"), 1)
            .as_bytes(),
        "second Transform algorithm",
    );
    refused(
        driver.replacen("xmldsig-more#ecdsa-sha384", "xmldsig-more#ecdsa-sha256", 1).as_bytes(),
        "SignatureMethod algorithm",
    );
    refused(driver.replacen("xmldsig-more#sha384", "xmlenc#sha256", 1).as_bytes(), "DigestMethod algorithm");
    refused(
        driver.replacen("<ds:Reference URI=\"\">", "<ds:Reference URI=\"#payload\">", 1).as_bytes(),
        "Reference URI",
    );
    let enveloped = "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>";
    refused(driver.replacen(enveloped, "", 1).as_bytes(), "Transforms holds [Transform]");
    // A second Signature (a copy inside the Payload), an Object in the Signature.
    let signature = &driver[driver.find("<ds:Signature ").unwrap()..driver.find("</SoftwareIdentity>").unwrap()];
    refused(
        driver.replacen("</ns0:Payload>", &format!("{signature}</ns0:Payload>"), 1).as_bytes(),
        "2 Signature elements, not one",
    );
    refused(
        driver.replacen("</ds:KeyInfo>", "</ds:KeyInfo><ds:Object><x/></ds:Object>", 1).as_bytes(),
        "Signature holds [SignedInfo, SignatureValue, KeyInfo, Object]",
    );
    // The Signature moved into a Link element: no longer a child of the tag.
    let moved = driver.replacen(signature, "", 1).replacen(
        "</ns0:Payload>",
        &format!("</ns0:Payload><ns0:Link>{signature}</ns0:Link>"),
        1,
    );
    refused(moved.as_bytes(), "not a child of its SoftwareIdentity");
    // A DOCTYPE (entities), however harmless.
    refused(format!("<!DOCTYPE SoftwareIdentity>\n{driver}").as_bytes(), "DOCTYPE");
    // Over the size bound, before any parsing.
    let mut big = driver.clone().into_bytes();
    big.resize(MAX_RIM_BYTES + 1, b' ');
    refused(&big, "over 262144");
}

/// Signed, but not what a RIM says: each golden entry must be readable, once.
#[test]
fn a_signed_rim_with_a_malformed_golden_entry_is_refused() {
    let signer = rim_signer::TestSigner::new();
    let tag = rim_signer::swid_tag("550.90.07", &[(7, vec![vec![0x11; 48]])]);
    // One measurement entry: index, active, alternatives, hash attribute and its value.
    let e = |index: &str, active: &str, alternatives: &str, hash: &str, value: String| {
        format!("index=\"{index}\" active=\"{active}\" alternatives=\"{alternatives}\" ns2:{hash}=\"{value}\"")
    };
    let (h47, h48) = ("11".repeat(47), "11".repeat(48));
    let entry = e("7", "True", "1", "Hash0", h48.clone());
    assert!(tag.contains(&entry));
    let bent = |to: &str| signer.sign(&tag.replacen(&entry, to, 1), false);
    let cases = [
        (e("7", "True", "1", "Hash0", h47.clone()), "measurement 7: Hash0 is 47 bytes, not 48"),
        (e("7", "True", "1", "Hash0", format!("{h47}x1")), "measurement 7: Hash0 is not hex"),
        (e("7", "yes", "1", "Hash0", h48.clone()), "measurement 7: active is Some(\"yes\")"),
        (e("7", "True", "2", "Hash0", h48.clone()), "measurement 7: alternatives is \"2\" with 1 hash values"),
        (e("7", "True", "1", "Hash1", h48.clone()), "measurement 7: a hash value named \"Hash1\""),
        (e("8", "True", "1", "Hash0", h48.clone()), "measurement 8: the RIM lists it twice"),
        (e("256", "True", "1", "Hash0", h48), "index \"256\" is not a number from 0 to 255"),
    ];
    for (to, why) in cases {
        let err = check(&bent(&to), &signer.root, AT).unwrap_err();
        assert!(err.contains(why), "expected {why:?} in: {err}");
    }
    let without_meta = signer.sign(&tag.replacen("<ns0:Meta ", "<ns0:Other ", 1), false);
    assert!(check(&without_meta, &signer.root, AT).unwrap_err().contains("the RIM has 0 Meta elements, not one"));
    // The unbent tag verifies (so each refusal above is the entry's).
    assert_eq!(check(&signer.sign(&tag, false), &signer.root, AT).unwrap().active().count(), 1);
}

#[test]
fn truncated_random_and_non_utf8_input_is_an_error_never_a_panic() {
    let driver = data(DRIVER);
    let root = root();
    // Every length near both ends, every 13th in between. Only the final newline may go.
    let lengths = (0..300).chain((300..driver.len() - 300).step_by(13)).chain(driver.len() - 300..driver.len() - 1);
    for n in lengths {
        assert!(check(&driver[..n], &root, AT).is_err(), "accepted the first {n} bytes");
    }
    assert!(check(&driver[..driver.len() - 1], &root, AT).is_ok(), "the final newline is outside the tag");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for len in [0usize, 1, 16, 200, 4096, 30_000] {
        for _ in 0..20 {
            let junk = crate::support::junk(&mut x, len);
            assert!(check(&junk, &root, AT).is_err());
        }
    }
    let mut latin1 = driver.clone();
    latin1[300] = 0xE9;
    assert!(check(&latin1, &root, AT).unwrap_err().contains("not UTF-8"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// One changed byte anywhere: refused, or (whitespace the canonical form drops, an equivalent
    /// base64 line break…) the RIM says exactly what it said.
    #[test]
    fn a_changed_byte_is_refused_or_changes_nothing_the_rim_says(at in 0usize..20_519, byte in any::<u8>()) {
        let driver = data(DRIVER);
        let original = check(&driver, &root(), AT).unwrap();
        let mut bent = driver.clone();
        bent[at % driver.len()] = byte;
        if let Ok(rim) = check(&bent, &root(), AT) {
            prop_assert_eq!(rim, original);
        }
    }

    #[test]
    fn random_text_is_an_error_never_a_panic(junk in "[<>/=\" a-zA-Z:]{0,400}") {
        prop_assert!(check(junk.as_bytes(), &root(), AT).is_err());
    }
}

#[test]
fn a_chain_cache_remembers_the_rim_chain_and_its_window() {
    let cache = ChainCache::default();
    let driver = data(DRIVER);
    let first = verify_rim_cached(&driver, &root(), AT, Some(&cache)).unwrap();
    assert_eq!(verify_rim_cached(&data(VBIOS), &root(), AT, Some(&cache)).unwrap().version, "96.00.5E.00.01");
    assert_eq!(verify_rim_cached(&driver, &root(), AT + 1, Some(&cache)).unwrap(), first);
    let e = verify_rim_cached(&driver, &root(), 1_760_000_000, Some(&cache)).unwrap_err().to_string();
    assert!(e.contains("not valid"), "{e}");
    // The digest and the signature are checked whatever the cache holds.
    let bent = text(DRIVER).replacen("<ds:SignatureValue>/BgnH", "<ds:SignatureValue>ABgnH", 1);
    assert!(verify_rim_cached(bent.as_bytes(), &root(), AT, Some(&cache)).is_err());
}

#[test]
fn an_index_active_in_both_rims_a_repeated_block_and_a_block_0_are_errors() {
    let report = report();
    let driver = check(&data(DRIVER), &root(), AT).unwrap();
    let vbios = check(&data(VBIOS), &root(), AT).unwrap();
    let mut overlapping = driver.clone();
    overlapping.golden[12].active = true;
    let e = compare(&report.measurements, None, None, Some(&overlapping), Some(&vbios)).unwrap_err().to_string();
    assert!(e.contains("measurement 12: active in both the driver RIM and the VBIOS RIM"), "{e}");
    let mut twice = report.measurements.clone();
    twice.push(twice[3].clone());
    let e = compare(&twice, None, None, Some(&driver), None).unwrap_err().to_string();
    assert!(e.contains("measurement 3: the report carries it twice (block 4)"), "{e}");
    let zero = [Measurement { index: 0, value_type: 1, value: vec![0; 48] }];
    assert!(compare(&zero, None, None, None, None).unwrap_err().to_string().contains("block 0"));
    // A report without block 8 misses the driver RIM's index 7; no version to compare is a finding.
    let without: Vec<Measurement> = report.measurements.iter().filter(|m| m.index != 8).cloned().collect();
    let c = compare(&without, None, Some("96.00.5e.00.01"), Some(&driver), Some(&vbios)).unwrap();
    assert_eq!(c.results[7].outcome, Outcome::MissingFromReport);
    assert_eq!(c.version_findings, ["the report names no driver version; the driver RIM is for driver 545.00"]);
}

/// A RIM signed here exactly as NVIDIA signs (a test CA in place of NVIDIA's) whose golden values
/// are the sample report's: every index matches; one changed value, re-signed, names its index.
#[test]
fn a_rim_whose_golden_values_are_the_reports_matches_and_one_changed_value_names_its_index() {
    let report = report();
    let signer = rim_signer::TestSigner::new();
    let golden = |range: std::ops::RangeInclusive<u8>| -> Vec<(u8, Vec<Vec<u8>>)> {
        // RIM index i is SPDM block i + 1; a second, unrelated alternative beside the real one.
        range.map(|i| (i, vec![vec![0xAB; 48], report.measurements[usize::from(i)].value.clone()])).collect()
    };
    let driver_xml = signer.sign(&rim_signer::swid_tag("550.90.07", &golden(32..=63)), false);
    let vbios_xml = signer.sign(&rim_signer::swid_tag("96.00.9F.00.01", &golden(0..=31)), true);
    let driver = check(&driver_xml, &signer.root, AT).unwrap();
    let vbios = check(&vbios_xml, &signer.root, AT).unwrap();
    assert_eq!(driver.signer, "CN=Test RIM Signer");
    let c = against(&report, &driver, &vbios);
    assert!(c.version_findings.is_empty(), "{:?}", c.version_findings);
    assert!(c.all_match(), "{c:?}");
    assert_eq!(indexes(&c, |o| *o == Outcome::Matches), (0..64).collect::<Vec<u8>>());
    // NVIDIA's root does not vouch for the test signer.
    assert!(check(&driver_xml, &root(), AT).unwrap_err().contains("not the pinned RIM root"));

    let mut bent = golden(32..=63);
    bent[9].1[1][0] ^= 1; // index 41
    let bent_driver = check(&signer.sign(&rim_signer::swid_tag("550.90.07", &bent), false), &signer.root, AT).unwrap();
    let c = against(&report, &bent_driver, &vbios);
    assert!(!c.all_match());
    let differing: Vec<_> = c.results.iter().filter(|r| r.outcome != Outcome::Matches).collect();
    assert_eq!(differing.len(), 1);
    assert_eq!((differing[0].index, differing[0].rim), (41, Some("driver")));
    assert_eq!(
        differing[0].outcome,
        Outcome::Differs { reported: report.measurements[41].value.clone(), expected: bent[9].1.clone() }
    );
}
