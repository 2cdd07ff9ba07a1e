use chipledger_domain::catalog::{Catalog, Datacenter, Sku};
use chipledger_domain::country::Country;
use chipledger_domain::rules::{
    classify, classify_all, verdict, Bucket, DatacenterJudgement, JudgementSource, RuleVersion, Shipment, VerdictKind,
};
use time::macros::date;
use time::Date;

fn sku(name: &str) -> &'static Sku {
    Catalog::embedded().unwrap().sku(name).unwrap()
}

/// Every catalog SKU under every rule version, with the catalog's default datacenter judgement:
/// Aug 2022 letter | Oct 2022 | Oct 2023 | Apr 2025 H20 letter | Jan 2026 China policy.
/// Written from the `status:` notes of `gpu-catalog.csv` and `docs/export-rules.md` §3.1.
const TABLE: &[(&str, [&str; 5])] = &[
    ("A100-PCIE-40GB", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("A100-PCIE-80GB", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("A100-SXM4-40GB", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("A100-SXM4-80GB", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    // A800/H800: NVLink cut to 400 GB/s kept them out of the 2022 rule; 2023 removed the I/O test.
    ("A800-SXM4-80GB", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("A800-SXM4-40GB", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "needs-review"]),
    ("A800-PCIE-80GB", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("A800-40GB-ACTIVE", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "needs-review"]),
    ("H100-SXM5-80GB", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("H100-SXM5-OTHER", ["notice-applies", "needs-review", "needs-review", "notice-does-not-apply", "needs-review"]),
    ("H100-PCIE-80GB", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("H100-NVL-94GB", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("H800-SXM5-80GB", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("H800-PCIE-80GB", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("H800-NVL", ["needs-review", "needs-review", "needs-review", "notice-does-not-apply", "needs-review"]),
    // H20: below every 3A090 threshold, but named in the Apr 2025 letter.
    ("H20", ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-applies", "not-applicable"]),
    ("H20-3E", ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-applies", "not-applicable"]),
    ("H20-NVL16", ["needs-review", "needs-review", "needs-review", "notice-applies", "needs-review"]),
    ("H200-SXM-141GB", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("H200-NVL", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("L40S", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    ("L40", ["notice-does-not-apply", "not-controlled", "3A090.b.1", "not-applicable", "case-by-case"]),
    ("L20", ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-does-not-apply", "not-applicable"]),
    ("L4", ["notice-does-not-apply", "not-controlled", "3A090.a.2", "not-applicable", "case-by-case"]),
    ("A30", ["notice-does-not-apply", "not-controlled", "3A090.b.1", "not-applicable", "case-by-case"]),
    ("A10", ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-does-not-apply", "not-applicable"]),
    (
        "V100-SXM2-16GB",
        ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-does-not-apply", "not-applicable"],
    ),
    (
        "V100-SXM2-32GB",
        ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-does-not-apply", "not-applicable"],
    ),
    (
        "V100-PCIE-16GB",
        ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-does-not-apply", "not-applicable"],
    ),
    (
        "V100-PCIE-32GB",
        ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-does-not-apply", "not-applicable"],
    ),
    (
        "V100S-PCIE-32GB",
        ["notice-does-not-apply", "not-controlled", "not-3a090", "notice-does-not-apply", "not-applicable"],
    ),
    // RTX 4090: consumer, TPP ≥ 4800 → 3A090.a.1 but NAC/ACA-eligible; 4090 D: Note 2 carve-out.
    ("RTX-4090", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    (
        "RTX-4090D",
        ["notice-does-not-apply", "not-controlled", "note2-exempt", "notice-does-not-apply", "not-applicable"],
    ),
    ("B200", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "presumption-of-denial"]),
    ("GB200", ["notice-applies", "controlled", "3A090.a.1", "not-applicable", "presumption-of-denial"]),
    ("RTX-5090", ["notice-does-not-apply", "not-controlled", "3A090.a.1", "not-applicable", "case-by-case"]),
    (
        "RTX-5090D",
        ["notice-does-not-apply", "not-controlled", "note2-exempt", "notice-does-not-apply", "not-applicable"],
    ),
    (
        "RTX-5090D-V2",
        ["notice-does-not-apply", "not-controlled", "note2-exempt", "notice-does-not-apply", "not-applicable"],
    ),
];

fn bucket_id(b: &Bucket) -> String {
    serde_json::to_value(b).unwrap().as_str().unwrap().to_string()
}

#[test]
fn every_catalog_sku_under_every_rule_version_matches_the_table() {
    let catalog = Catalog::embedded().unwrap();
    assert_eq!(TABLE.len(), catalog.skus.len(), "the table covers every SKU");
    for (name, expected) in TABLE {
        let s = sku(name);
        let got: Vec<String> =
            classify_all(s, DatacenterJudgement::catalog_default(s)).iter().map(|c| bucket_id(&c.bucket)).collect();
        assert_eq!(got, expected, "{name}");
    }
}

/// The catalog's own `status:` notes say `Oct2022=...` and `Oct2023=...` for most SKUs; the
/// classifier must agree with every one of them.
#[test]
fn the_classifier_agrees_with_every_status_note_in_the_catalog() {
    let mut checked = 0;
    for s in &Catalog::embedded().unwrap().skus {
        let dc = DatacenterJudgement::catalog_default(s);
        let note = s.status_note().unwrap_or("");
        for (marker, rule) in [
            ("Oct2022=", RuleVersion::Oct2022),
            ("Oct2023=", RuleVersion::Oct2023),
            ("Oct2023 COMPUTED=", RuleVersion::Oct2023),
        ] {
            let Some(rest) = note.split(marker).nth(1) else { continue };
            let c = classify(s, rule, dc);
            let said = rest.split(|ch: char| ch == ';' || ch == ' ' && !rest.starts_with("NOT")).next().unwrap_or("");
            if rest.starts_with("NOT 3A090") {
                assert!(
                    matches!(c.bucket, Bucket::NotControlled | Bucket::Not3a090 | Bucket::Note2Exempt),
                    "{} {marker}: {:?}",
                    s.sku,
                    c.bucket
                );
            } else if rule == RuleVersion::Oct2022 {
                assert_eq!(c.bucket, Bucket::Controlled, "{} {marker}{said}", s.sku);
            } else {
                let label = rest.split([' ', ';', '(']).next().unwrap();
                assert_eq!(c.bucket.label(), label, "{} {marker}", s.sku);
            }
            checked += 1;
        }
        if note.contains("NOT 3A090 under any version") {
            for rule in [RuleVersion::Oct2022, RuleVersion::Oct2023] {
                let b = classify(s, rule, dc).bucket;
                assert!(matches!(b, Bucket::NotControlled | Bucket::Not3a090), "{} {rule}: {b:?}", s.sku);
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} status notes checked");
}

#[test]
fn classifications_cite_the_federal_register_and_name_the_human_input() {
    let s = sku("RTX-4090");
    let c = classify(s, RuleVersion::Oct2023, DatacenterJudgement::catalog_default(s));
    assert_eq!(c.bucket, Bucket::A1);
    assert!(c.citation.contains("88 FR 73458"));
    assert!(c.human_inputs[0].contains("datacenters: no (catalog default"));
    assert!(c.exception.as_deref().unwrap().contains("NAC"));
    let h800 = sku("H800-SXM5-80GB");
    let c22 = classify(h800, RuleVersion::Oct2022, DatacenterJudgement::catalog_default(h800));
    assert!(c22.basis.contains("aggregate I/O 528 GB/s (NVLink 400 + PCIe 128) < 600"), "{}", c22.basis);
    assert!(c22.citation.contains("87 FR 62186"));
}

#[test]
fn an_operator_datacenter_judgement_changes_note_2_results() {
    let s = sku("RTX-4090D");
    let yes = DatacenterJudgement { value: Datacenter::Yes, source: JudgementSource::Operator };
    let c = classify(s, RuleVersion::Oct2023, yes);
    assert_eq!(c.bucket, Bucket::A2, "a datacenter 4090 D with TPP 4707, PD 7.74 is 3A090.a.2");
    assert!(c.human_inputs[0].contains("given by the operator"));
}

fn ship(on: Date, to: &str, licence: Option<&str>) -> Shipment {
    Shipment { shipped_on: on, ship_to: Country::parse(to).unwrap(), licence: licence.map(str::to_string) }
}

#[track_caller]
fn check_verdict(name: &str, on: Date, to: &str, licence: Option<&str>, expected: VerdictKind, reason_part: &str) {
    let v = verdict(Some(sku(name)), None, Some(&ship(on, to, licence)));
    assert_eq!(v.verdict, expected, "{name} → {to} on {on}: {}", v.reason);
    assert!(v.reason.contains(reason_part), "{name} → {to} on {on}: {:?} lacks {reason_part:?}", v.reason);
}

#[test]
fn verdicts_use_the_rule_in_force_on_the_ship_date() {
    use VerdictKind::*;
    // Before any control.
    check_verdict(
        "A100-SXM4-80GB",
        date!(2022 - 06 - 01),
        "CN",
        None,
        Lawful,
        "before the first advanced-computing control",
    );
    // Aug 2022 letter: A100 to China and Hong Kong, not yet Macau.
    check_verdict("A100-SXM4-80GB", date!(2022 - 09 - 01), "HK", None, LicenceRequiredNoneRecorded, "Aug 2022 letter");
    check_verdict(
        "A100-SXM4-80GB",
        date!(2022 - 09 - 01),
        "MO",
        None,
        Lawful,
        "no advanced-computing licence requirement",
    );
    // The H800 was designed for the 2022 rule: lawful to China until 17 Nov 2023.
    check_verdict(
        "H800-SXM5-80GB",
        date!(2023 - 03 - 15),
        "CN",
        None,
        Lawful,
        "no advanced-computing licence requirement",
    );
    check_verdict("H800-SXM5-80GB", date!(2023 - 12 - 01), "CN", None, LicenceRequiredNoneRecorded, "3A090.a.1");
    check_verdict("H800-SXM5-80GB", date!(2023 - 12 - 01), "CN", Some("D1234567"), LawfulUnderLicence, "\"D1234567\"");
    // 23 Oct – 17 Nov 2023: NVIDIA's 8-K and the FR disagree.
    check_verdict("H800-SXM5-80GB", date!(2023 - 11 - 01), "CN", None, NeedsReview, "8-K");
    // Macau joined the 2022 rule on 18 Jan 2023.
    check_verdict("A100-SXM4-80GB", date!(2023 - 01 - 10), "MO", None, Lawful, "MO");
    check_verdict("A100-SXM4-80GB", date!(2023 - 02 - 10), "MO", None, LicenceRequiredNoneRecorded, "Oct 2022 rule");
}

#[test]
fn verdicts_follow_the_destination_country_group() {
    use VerdictKind::*;
    let d = date!(2024 - 06 - 01);
    check_verdict("H100-SXM5-80GB", d, "US", None, Lawful, "A:5");
    check_verdict("H100-SXM5-80GB", d, "BR", None, Lawful, "no restricted country group");
    check_verdict("H100-SXM5-80GB", d, "DE", None, Lawful, "A:5");
    check_verdict("H100-SXM5-80GB", d, "SA", None, LicenceRequiredNoneRecorded, "needs a licence");
    check_verdict("H100-SXM5-80GB", d, "VN", None, LicenceRequiredNoneRecorded, "needs a licence");
    check_verdict("H100-SXM5-80GB", d, "RU", None, LicenceRequiredNoneRecorded, "needs a licence");
    check_verdict("H100-SXM5-80GB", d, "HK", None, LicenceRequiredNoneRecorded, "treated as CN");
    // Israel (D:4 + A:6) and Cyprus (D:5 + A:6) are excluded.
    check_verdict("H100-SXM5-80GB", d, "IL", None, Lawful, "A:6");
    check_verdict("H100-SXM5-80GB", d, "CY", None, Lawful, "A:6");
    // The UAE moved into A:5 on 10 Jul 2026.
    check_verdict("H100-SXM5-80GB", date!(2026 - 03 - 01), "AE", None, LicenceRequiredNoneRecorded, "needs a licence");
    check_verdict("H100-SXM5-80GB", date!(2026 - 08 - 01), "AE", None, Lawful, "A:5");
}

#[test]
fn nac_eligible_parts_need_a_notification_only_for_d5_and_macau() {
    use VerdictKind::*;
    let d = date!(2024 - 06 - 01);
    check_verdict("RTX-4090", d, "CN", None, LicenceRequiredNoneRecorded, "NAC notification");
    check_verdict("RTX-4090", d, "CN", Some("A123456"), LawfulUnderLicence, "A123456");
    check_verdict("RTX-4090", d, "SA", None, Lawful, "no advanced-computing licence requirement");
    check_verdict("L40", d, "MO", None, LicenceRequiredNoneRecorded, "NAC");
    check_verdict("RTX-4090D", d, "CN", None, Lawful, "no advanced-computing");
    check_verdict("RTX-4090", date!(2024 - 01 - 15), "SA", None, NeedsReview, "ACA split");
}

#[test]
fn h20_needs_a_licence_to_china_only_after_the_april_2025_letter() {
    use VerdictKind::*;
    check_verdict("H20", date!(2024 - 06 - 01), "CN", None, Lawful, "no advanced-computing");
    check_verdict("H20", date!(2025 - 05 - 01), "CN", None, LicenceRequiredNoneRecorded, "Apr 2025 letter");
    check_verdict("H20", date!(2025 - 05 - 01), "HK", None, LicenceRequiredNoneRecorded, "Apr 2025 letter");
    check_verdict("H20", date!(2025 - 05 - 01), "VE", None, LicenceRequiredNoneRecorded, "Apr 2025 letter");
    check_verdict("H20", date!(2025 - 05 - 01), "SG", None, Lawful, "no advanced-computing");
}

#[test]
fn h200_to_china_after_january_2026_still_needs_a_licence_reviewed_case_by_case() {
    use VerdictKind::*;
    check_verdict("H200-SXM-141GB", date!(2026 - 03 - 01), "CN", None, LicenceRequiredNoneRecorded, "case by case");
    check_verdict(
        "H200-SXM-141GB",
        date!(2026 - 03 - 01),
        "CN",
        Some("L-2026-0001"),
        LawfulUnderLicence,
        "case by case",
    );
    check_verdict("B200", date!(2026 - 03 - 01), "CN", None, LicenceRequiredNoneRecorded, "presumption of denial");
}

#[test]
fn missing_facts_give_no_record_or_needs_review_never_lawful() {
    let none = verdict(Some(sku("H100-SXM5-80GB")), None, None);
    assert_eq!(none.verdict, VerdictKind::NoAcquisitionRecord);
    let unknown = verdict(None, None, Some(&ship(date!(2024 - 06 - 01), "US", None)));
    assert_eq!(unknown.verdict, VerdictKind::NeedsReview);
    check_verdict("H800-NVL", date!(2024 - 06 - 01), "CN", None, VerdictKind::NeedsReview, "TPP unknown");
    check_verdict(
        "A800-40GB-ACTIVE",
        date!(2024 - 06 - 01),
        "SA",
        None,
        VerdictKind::NeedsReview,
        "datacenter judgement",
    );
}

#[test]
fn country_codes_must_exist() {
    for bad in ["", "C", "CHN", "ZZ", "12", "c n"] {
        assert!(Country::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(Country::parse("mo").unwrap().name(), "Macao");
    assert_eq!(Country::parse("KR").unwrap().name(), "South Korea");
}
