use chipledger_domain::catalog::Catalog;
use chipledger_domain::country::Country;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::{identify, Anomaly};
use chipledger_domain::records::{
    Acquisition, AttestedGpu, DriverFacts, GpuAttestation, HostFacts, ProbeSource, FORMAT_VERSION,
};
use chipledger_domain::rules::{RuleVersion, VerdictKind};
use chipledger_domain::standing::{standing, Evidence, Surroundings};
use time::macros::{date, datetime};

use crate::fingerprint::h800_facts;

fn attestation(
    source: ProbeSource,
    change_claim: impl Fn(&mut chipledger_domain::identify::Identification),
) -> GpuAttestation {
    let facts = h800_facts();
    let mut id = identify(Catalog::embedded().unwrap(), &facts);
    change_claim(&mut id);
    GpuAttestation {
        format_version: FORMAT_VERSION,
        counter: 1,
        observed_at: datetime!(2026-11-29 09:00 UTC),
        source,
        host: HostFacts { hostname: "hgx-1".into(), ..HostFacts::default() },
        driver: DriverFacts { nvml_version: Some("12.535.104.05".into()), ..DriverFacts::default() },
        gpus: vec![AttestedGpu::new(facts.uuid.clone().unwrap(), facts, id)],
        vendor_evidence: vec![],
    }
}

fn acquisition(sku: &str) -> Acquisition {
    Acquisition {
        format_version: FORMAT_VERSION,
        counter: 2,
        recorded_at: datetime!(2026-11-29 09:00 UTC),
        serials: vec![h800_facts().serial.unwrap()],
        sku: Some(sku.into()),
        supplier: "s".into(),
        invoice_reference: "i".into(),
        invoice_digest: None,
        shipped_on: date!(2023 - 03 - 15),
        ship_from: Country::parse("TW").unwrap(),
        ship_to: Country::parse("CN").unwrap(),
        end_user: "e".into(),
        licence: None,
        note: String::new(),
    }
}

fn kinds(anomalies: &[Anomaly]) -> Vec<String> {
    anomalies.iter().map(Anomaly::kind_name).collect()
}

#[test]
fn an_honest_record_stands_as_its_facts_say_with_its_acquisition_verdict() {
    let att = attestation(ProbeSource::Nvml, |_| {});
    let gpu = &att.gpus[0];
    let acq = acquisition("H800-SXM5-80GB");
    let uuids = [gpu.uuid.clone()];
    let s = standing(
        Catalog::embedded().unwrap(),
        &att,
        gpu,
        Surroundings { uuids_with_serial: &uuids, acquisition: Some(&acq), owner: None },
    );
    assert_eq!(s.sku.as_deref(), Some("H800-SXM5-80GB"));
    assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
    assert_eq!(s.evidence, Evidence::SelfReported);
    assert_eq!(s.verdict.verdict, VerdictKind::Lawful);
    assert_eq!(s.classifications.len(), RuleVersion::ALL.len());
    assert_eq!(s.class(RuleVersion::Oct2023), Some("3A090.a.1"));
}

#[test]
fn a_claimed_sku_or_a_hidden_anomaly_is_a_disagreement_and_the_facts_win() {
    let claimed_l40s = attestation(ProbeSource::Nvml, |id| id.sku = Some("L40S-48GB".into()));
    let s = standing(Catalog::embedded().unwrap(), &claimed_l40s, &claimed_l40s.gpus[0], Surroundings::default());
    assert_eq!(s.sku.as_deref(), Some("H800-SXM5-80GB"));
    assert_eq!(kinds(&s.anomalies), ["claim-disagrees"]);
    assert!(s.anomalies[0].explain().contains("claims sku L40S-48GB"));
    let invented = attestation(ProbeSource::NvidiaSmiText, |id| {
        id.anomalies.push(Anomaly::UnknownPciId { pci_device_id: "0x9999".into() })
    });
    let s = standing(Catalog::embedded().unwrap(), &invented, &invented.gpus[0], Surroundings::default());
    assert_eq!(kinds(&s.anomalies), ["claim-disagrees"], "an anomaly the facts do not give is not shown as found");
    assert_eq!(s.evidence, Evidence::Imported);
}

#[test]
fn a_shared_serial_or_an_acquisition_of_another_sku_gives_no_verdict() {
    let att = attestation(ProbeSource::Nvml, |_| {});
    let gpu = &att.gpus[0];
    let lawful = acquisition("H800-SXM5-80GB");
    let twin = GpuUuid::parse("GPU-00000000-1111-2222-3333-444444444444").unwrap();
    let uuids = [gpu.uuid.clone(), twin];
    let s = standing(
        Catalog::embedded().unwrap(),
        &att,
        gpu,
        Surroundings { uuids_with_serial: &uuids, acquisition: Some(&lawful), owner: None },
    );
    assert_eq!(s.verdict.verdict, VerdictKind::NeedsReview);
    assert!(s.verdict.reason.contains("2 UUIDs"), "{}", s.verdict.reason);
    assert_eq!(kinds(&s.anomalies), ["serial-under-two-uuids"]);
    let other_sku = acquisition("H100-SXM5-80GB");
    let own = [gpu.uuid.clone()];
    let s = standing(
        Catalog::embedded().unwrap(),
        &att,
        gpu,
        Surroundings { uuids_with_serial: &own, acquisition: Some(&other_sku), owner: None },
    );
    assert_eq!(s.verdict.verdict, VerdictKind::NeedsReview);
    assert_eq!(kinds(&s.anomalies), ["acquisition-sku-differs"]);
    // No acquisition at all: no verdict to inherit, whatever the serial.
    let s = standing(
        Catalog::embedded().unwrap(),
        &att,
        gpu,
        Surroundings { uuids_with_serial: &uuids, acquisition: None, owner: None },
    );
    assert_eq!(s.verdict.verdict, VerdictKind::NoAcquisitionRecord);
}

#[test]
fn facts_without_what_every_nvml_probe_reads_are_an_import_whatever_the_record_claims() {
    let mut att = attestation(ProbeSource::Nvml, |_| {});
    att.driver.nvml_version = None;
    let s = standing(Catalog::embedded().unwrap(), &att, &att.gpus[0], Surroundings::default());
    assert_eq!(kinds(&s.anomalies), ["claim-disagrees"]);
    assert!(s.anomalies[0].explain().contains("claims source nvml"), "{}", s.anomalies[0].explain());
    assert_eq!(s.evidence, Evidence::Imported);
}

#[test]
fn an_admins_resolution_gives_the_serial_to_one_gpu_and_marks_the_others() {
    let att = attestation(ProbeSource::Nvml, |_| {});
    let gpu = &att.gpus[0];
    let lawful = acquisition("H800-SXM5-80GB");
    let twin = GpuUuid::parse("GPU-00000000-1111-2222-3333-444444444444").unwrap();
    let uuids = [gpu.uuid.clone(), twin.clone()];
    let catalog = Catalog::embedded().unwrap();
    let mine = Surroundings { uuids_with_serial: &uuids, acquisition: Some(&lawful), owner: Some(&gpu.uuid) };
    let s = standing(catalog, &att, gpu, mine);
    assert_eq!(s.verdict.verdict, VerdictKind::Lawful);
    assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
    let theirs = Surroundings { uuids_with_serial: &uuids, acquisition: Some(&lawful), owner: Some(&twin) };
    let s = standing(catalog, &att, gpu, theirs);
    assert_eq!(s.verdict.verdict, VerdictKind::NeedsReview);
    assert!(s.verdict.reason.contains("an admin resolved serial"), "{}", s.verdict.reason);
    assert_eq!(kinds(&s.anomalies), ["serial-under-two-uuids"]);
}

#[test]
fn a_probe_source_is_named_as_records_spell_it() {
    for s in [ProbeSource::Nvml, ProbeSource::NvidiaSmiXml, ProbeSource::NvidiaSmiText] {
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
}

/// A live record carrying the GPU's NVIDIA attestation evidence (here NVIDIA's real Hopper sample,
/// with the nonce recorded beside it) whose driver and VBIOS are the record's stands as
/// `vendor-signed`; the same evidence with one byte flipped, without its nonce, or with another
/// driver than the record's is a Danger `evidence-invalid` anomaly instead; an imported record
/// with valid evidence stays `imported`.
#[test]
fn nvidia_attestation_evidence_in_a_record_makes_it_vendor_signed_or_invalid() {
    use chipledger_domain::merkle::Hash;
    use chipledger_domain::records::VendorEvidence;
    let dir = format!("{}/tests/data/nvidia-attestation", env!("CARGO_MANIFEST_DIR"));
    let report = std::fs::read(format!("{dir}/hopperAttestationReport.txt")).unwrap();
    let chain = std::fs::read(format!("{dir}/hopperCertChain.txt")).unwrap();
    let nonce = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
    let with_source = |source: ProbeSource, report: &[u8], nonce: Option<&str>, driver: &str| {
        let mut att = attestation(source, |_| {});
        // The facts the sample's report states: driver 550.90.07, VBIOS 96.00.9f.00.01.
        att.driver.driver_version = Some(driver.into());
        let old = att.gpus.remove(0);
        let mut facts = old.facts.clone();
        facts.vbios_version = Some("96.00.9F.00.01".into());
        facts.ueid = Some("53C22BA15E5D68088282DA074ED9FB37AA585771".into());
        att.gpus.push(chipledger_domain::records::AttestedGpu::new(old.uuid.clone(), facts, old.identification));
        let uuid = att.gpus[0].uuid.clone();
        let blob = |kind: &str, bytes: &[u8], nonce: Option<&str>| VendorEvidence {
            gpu: uuid.clone(),
            kind: kind.into(),
            blob: chipledger_domain::encoding::b64_encode(bytes),
            digest: Hash::sha256(bytes),
            nonce: nonce.map(str::to_string),
            nonce_checkpoint: None,
        };
        att.vendor_evidence = vec![
            blob("nvml-cc-attestation-report", report, nonce),
            blob("nvml-cc-attestation-certificate-chain", &chain, None),
        ];
        att
    };
    let with = |report: &[u8], nonce: Option<&str>| with_source(ProbeSource::Nvml, report, nonce, "550.90.07");
    let stand = |att: &GpuAttestation| {
        let gpu = &att.gpus[0];
        let uuids = [gpu.uuid.clone()];
        standing(
            Catalog::embedded().unwrap(),
            att,
            gpu,
            Surroundings { uuids_with_serial: &uuids, acquisition: None, owner: None },
        )
    };
    let good = stand(&with(&report, Some(nonce)));
    assert_eq!(good.evidence, Evidence::VendorSigned);
    assert!(good.anomalies.is_empty(), "{:?}", good.anomalies);
    // An import with valid evidence: still an import.
    let imported = stand(&with_source(ProbeSource::NvidiaSmiText, &report, Some(nonce), "550.90.07"));
    assert_eq!(imported.evidence, Evidence::Imported);
    // Another driver than the report's: not this GPU's report.
    let other = stand(&with_source(ProbeSource::Nvml, &report, Some(nonce), "535.104.05"));
    assert_eq!(kinds(&other.anomalies), ["evidence-invalid"], "{:?}", other.anomalies);
    assert!(other.anomalies[0].explain().contains("not this GPU's"));
    // One hex digit of the signed part changed (a byte of the response's opaque data).
    let mut bent = report.clone();
    let at = bent.len() / 2;
    bent[at] = if bent[at] == b'0' { b'1' } else { b'0' };
    for att in [with(&bent, Some(nonce)), with(&report, None)] {
        let s = stand(&att);
        assert_eq!(s.evidence, Evidence::EvidenceInvalid);
        assert_eq!(kinds(&s.anomalies), ["evidence-invalid"], "{:?}", s.anomalies);
        assert_eq!(s.anomalies[0].severity(), chipledger_domain::identify::Severity::Danger);
    }
}
