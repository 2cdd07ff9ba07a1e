//! Hardware-rooted evidence in a record, judged by the reader: evidence signed by a test device
//! (`support::spdm`, its own root) over a nonce derived from the log's checkpoint stands as
//! `hardware-signed`, with the `ueid` its certificate names; every way the derivation or its
//! checkpoint can be wrong is `evidence-invalid`; the board the GPU signed is held to its PCI
//! ids; one `ueid` under two UUIDs is flagged.

use chipledger_domain::catalog::Catalog;
use chipledger_domain::encoding::b64_encode;
use chipledger_domain::evidence::derived_nonce;
use chipledger_domain::fleet::{candidate, judge_serials};
use chipledger_domain::identify::{identify, Anomaly};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::merkle::Hash;
use chipledger_domain::note::Checkpoint;
use chipledger_domain::records::{
    AttestedGpu, DriverFacts, GpuAttestation, HostFacts, ProbeSource, VendorEvidence, FORMAT_VERSION,
};
use chipledger_domain::standing::{of_facts_with, Evidence, EvidenceRoots, FactStanding, InLog};
use time::macros::datetime;

use crate::fingerprint::h800_facts;
use crate::support::spdm::{ReportFields, TestDevice};

const ORIGIN: &str = "chipledger.test/log";
const HOST: &str = "hgx-1";
const COUNTER: u64 = 1_764_406_800_000_000;

struct Scene {
    device: TestDevice,
    log: SigningKey,
    log_key: VerifierKey,
    note: String,
}

impl Scene {
    fn new() -> Scene {
        let log = SigningKey::from_seed(&[7; 32]);
        let log_key = VerifierKey::new(ORIGIN, log.public_key()).unwrap();
        Scene { device: TestDevice::new(&[0x53, 0xC2, 0x2B, 0xA1]), note: checkpoint(&log, 10), log, log_key }
    }

    fn roots(&self) -> EvidenceRoots {
        EvidenceRoots { device: Some(self.device.root.clone()), rim: None }
    }

    /// The record of `gpu_facts` (driver and VBIOS as the report's) carrying a report over
    /// `nonce`, with `nonce_checkpoint` recorded beside it.
    fn record(&self, nonce: [u8; 32], nonce_checkpoint: Option<&str>, fields: &ReportFields) -> GpuAttestation {
        let mut facts = h800_facts();
        facts.vbios_version = Some(fields.vbios_version.to_uppercase());
        facts.ueid = Some(self.device.ueid.clone());
        let uuid = facts.uuid.clone().unwrap();
        let id = identify(Catalog::embedded().unwrap(), &facts);
        let report = self.device.report(nonce, fields);
        let blob = |kind: &str, bytes: &[u8], nonce: Option<[u8; 32]>, cp: Option<&str>| VendorEvidence {
            gpu: uuid.clone(),
            kind: kind.into(),
            blob: b64_encode(bytes),
            digest: Hash::sha256(bytes),
            nonce: nonce.map(hex::encode),
            nonce_checkpoint: cp.map(str::to_string),
        };
        GpuAttestation {
            format_version: FORMAT_VERSION,
            counter: COUNTER,
            observed_at: datetime!(2026-11-29 09:00 UTC),
            source: ProbeSource::Nvml,
            host: HostFacts { hostname: HOST.into(), ..HostFacts::default() },
            driver: DriverFacts {
                nvml_version: Some("12.550.90.07".into()),
                driver_version: Some(fields.driver_version.clone()),
                ..DriverFacts::default()
            },
            gpus: vec![AttestedGpu::new(uuid.clone(), facts, id)],
            vendor_evidence: vec![
                blob("nvml-cc-attestation-report", &report, Some(nonce), nonce_checkpoint),
                blob("nvml-cc-attestation-certificate-chain", &self.device.chain_pem, None, None),
            ],
        }
    }

    fn derived(&self, att_counter: u64) -> [u8; 32] {
        let uuid = h800_facts().uuid.unwrap();
        derived_nonce(&self.note, HOST, att_counter, uuid.as_str())
    }

    fn judge(&self, att: &GpuAttestation, index: Option<u64>) -> FactStanding {
        self.judge_after(att, index, None)
    }

    /// [`Scene::judge`], by a reader that knows the host's previous record of the GPU.
    fn judge_after(&self, att: &GpuAttestation, index: Option<u64>, previous: Option<u64>) -> FactStanding {
        let in_log = index.map(|index| InLog { log_key: &self.log_key, index, previous });
        of_facts_with(Catalog::embedded().unwrap(), att, &att.gpus[0], in_log, &self.roots())
    }
}

fn checkpoint(key: &SigningKey, size: u64) -> String {
    let cp = Checkpoint { origin: ORIGIN.into(), size, root: Hash([size as u8; 32]), extensions: vec![] };
    String::from_utf8(cp.sign(ORIGIN, key).unwrap().to_bytes()).unwrap()
}

/// The sample's fields, with the board the H800 facts' PCI ids give (G520-0205).
fn h800_fields() -> ReportFields {
    ReportFields { project: "G520".into(), project_sku: "0205".into(), ..ReportFields::like_the_sample() }
}

fn invalid(s: &FactStanding) -> String {
    assert_eq!(s.evidence, Evidence::EvidenceInvalid, "{:?}", s.anomalies);
    match s.anomalies.iter().find(|a| matches!(a, Anomaly::EvidenceInvalid { .. })) {
        Some(Anomaly::EvidenceInvalid { reason }) => reason.clone(),
        _ => panic!("no evidence-invalid anomaly: {:?}", s.anomalies),
    }
}

#[test]
fn a_report_over_the_derived_nonce_is_hardware_signed_when_the_checkpoint_is_the_logs() {
    let scene = Scene::new();
    let att = scene.record(scene.derived(COUNTER), Some(&scene.note), &h800_fields());
    let s = scene.judge(&att, Some(11));
    assert_eq!(s.evidence, Evidence::HardwareSigned, "{:?}", s.anomalies);
    assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
    assert_eq!(s.ueid.as_deref(), Some(scene.device.ueid.as_str()));
    // The checkpoint is the record's own size: still before it.
    assert_eq!(scene.judge(&att, Some(10)).evidence, Evidence::HardwareSigned);
    // A reader without the log key cannot tell when: vendor-signed.
    assert_eq!(scene.judge(&att, None).evidence, Evidence::VendorSigned);
    // A random nonce (no checkpoint recorded): vendor-signed at best.
    let random = scene.record([9; 32], None, &h800_fields());
    assert_eq!(scene.judge(&random, Some(11)).evidence, Evidence::VendorSigned);
    // Under NVIDIA's shipped root this test device is nobody.
    let shipped = chipledger_domain::standing::of_facts_in(
        Catalog::embedded().unwrap(),
        &att,
        &att.gpus[0],
        Some(InLog { log_key: &scene.log_key, index: 11, previous: None }),
    );
    assert!(invalid(&shipped).contains("not the pinned root"), "{:?}", shipped.anomalies);
}

#[test]
fn a_report_over_a_checkpoint_older_than_the_hosts_previous_record_of_the_gpu_is_not_proven_fresh() {
    let scene = Scene::new();
    // The nonce's checkpoint has 10 entries.
    let att = scene.record(scene.derived(COUNTER), Some(&scene.note), &h800_fields());
    // The previous record at index 9 is inside the checkpoint: fresh.
    assert_eq!(scene.judge_after(&att, Some(20), Some(9)).evidence, Evidence::HardwareSigned);
    // At index 10 it is not: the report could have been collected before it, for a counter
    // ahead, and published after the GPU was gone.
    let s = scene.judge_after(&att, Some(20), Some(10));
    assert_eq!(s.evidence, Evidence::VendorSigned, "{:?}", s.anomalies);
    assert!(s.anomalies.is_empty(), "not a forgery, only not fresh: {:?}", s.anomalies);
}

#[test]
fn a_nonce_not_derived_from_the_record_or_a_checkpoint_not_the_logs_is_refused() {
    let scene = Scene::new();
    // Derived for another counter (a report made for another record, replayed).
    let replayed = scene.record(scene.derived(COUNTER - 1), Some(&scene.note), &h800_fields());
    assert!(invalid(&scene.judge(&replayed, Some(11))).contains("not the one derived"));
    // The checkpoint named is not the one derived from.
    let other_note = checkpoint(&scene.log, 9);
    let swapped = scene.record(scene.derived(COUNTER), Some(&other_note), &h800_fields());
    assert!(invalid(&scene.judge(&swapped, Some(11))).contains("not the one derived"));
    // A checkpoint signed by another key, with the nonce derived from it.
    let forger = SigningKey::from_seed(&[8; 32]);
    let forged = checkpoint(&forger, 10);
    let uuid = h800_facts().uuid.unwrap();
    let att = scene.record(derived_nonce(&forged, HOST, COUNTER, uuid.as_str()), Some(&forged), &h800_fields());
    assert!(invalid(&scene.judge(&att, Some(11))).contains("not this log's"));
    // A checkpoint later than the record.
    let later = checkpoint(&scene.log, 50);
    let att = scene.record(derived_nonce(&later, HOST, COUNTER, uuid.as_str()), Some(&later), &h800_fields());
    assert!(invalid(&scene.judge(&att, Some(11))).contains("later than the record"));
    // The same report under another host name: the derivation no longer holds.
    let mut moved = scene.record(scene.derived(COUNTER), Some(&scene.note), &h800_fields());
    moved.host.hostname = "hgx-2".into();
    assert!(invalid(&scene.judge(&moved, Some(11))).contains("not the one derived"));
}

#[test]
fn the_ueid_a_record_names_must_be_its_certificates() {
    let scene = Scene::new();
    let mut att = scene.record(scene.derived(COUNTER), Some(&scene.note), &h800_fields());
    let named = |att: &mut GpuAttestation, ueid: Option<&str>| {
        let old = att.gpus.remove(0);
        let mut facts = old.facts.clone();
        facts.ueid = ueid.map(str::to_string);
        att.gpus.push(AttestedGpu::new(old.uuid.clone(), facts, old.identification));
    };
    named(&mut att, Some(&scene.device.ueid));
    assert_eq!(scene.judge(&att, Some(11)).evidence, Evidence::HardwareSigned);
    named(&mut att, Some("0BADC0DE"));
    assert!(invalid(&scene.judge(&att, Some(11))).contains("names ueid 0BADC0DE"));
    // Left out: the trail could not see a chip swapped under this UUID.
    named(&mut att, None);
    assert!(invalid(&scene.judge(&att, Some(11))).contains("does not name the ueid"));
    named(&mut att, Some(&scene.device.ueid));
    // A ueid with no report to prove it.
    att.vendor_evidence.clear();
    assert!(invalid(&scene.judge(&att, Some(11))).contains("no attestation report"));
}

#[test]
fn a_board_the_gpu_signed_that_its_pci_ids_contradict_is_a_danger_anomaly() {
    let scene = Scene::new();
    // The H800's PCI ids, and a report signing an H100 SXM5 board (G520-0200).
    let fields = ReportFields { project: "G520".into(), project_sku: "0200".into(), ..ReportFields::like_the_sample() };
    let s = scene.judge(&scene.record(scene.derived(COUNTER), Some(&scene.note), &fields), Some(11));
    assert_eq!(s.evidence, Evidence::HardwareSigned, "the evidence itself is sound");
    assert_eq!(
        s.anomalies,
        [Anomaly::EvidenceSkuDisagrees {
            sku: "H800-SXM5-80GB".into(),
            board: "G520-0200".into(),
            evidence_sku: "H100-SXM5-80GB".into()
        }]
    );
    assert_eq!(s.anomalies[0].severity(), chipledger_domain::identify::Severity::Danger);
    // A board the catalog does not know (the real sample's 1010-0200) says nothing.
    let s = scene
        .judge(&scene.record(scene.derived(COUNTER), Some(&scene.note), &ReportFields::like_the_sample()), Some(11));
    assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
}

#[test]
fn one_ueid_under_two_uuids_flags_both() {
    let scene = Scene::new();
    let catalog = Catalog::embedded().unwrap();
    let att = scene.record(scene.derived(COUNTER), Some(&scene.note), &h800_fields());
    // `candidate` judges under NVIDIA's shipped root, which this test device is not under: the
    // ueid is the one the test root's reading gives.
    let mut a = candidate(catalog, &att, &att.gpus[0], 11, None, Some(&scene.log_key));
    assert_eq!(a.evidence, Evidence::EvidenceInvalid);
    a.ueid = scene.judge(&att, Some(11)).ueid;
    a.fact_anomalies.clear();
    let mut b = a.clone();
    b.uuid = chipledger_domain::fingerprint::GpuUuid::parse("GPU-00000000-0000-0000-0000-0000000000bb").unwrap();
    b.serial = Some("1650000000002".into());
    let mut c = a.clone();
    c.uuid = chipledger_domain::fingerprint::GpuUuid::parse("GPU-00000000-0000-0000-0000-0000000000cc").unwrap();
    c.serial = Some("1650000000003".into());
    c.ueid = Some("0DDBA11".into());
    assert_eq!(a.ueid.as_deref(), Some(scene.device.ueid.as_str()));
    let mut all = vec![&mut a, &mut b, &mut c];
    judge_serials(catalog, &mut all, &mut |_| Ok(None), &mut |_, _| Ok(None)).unwrap();
    let flagged = |x: &chipledger_domain::fleet::Candidate| {
        x.anomalies.iter().any(|an| matches!(an, Anomaly::UeidUnderTwoUuids { .. }))
    };
    assert!(flagged(&a) && flagged(&b) && !flagged(&c), "{:?} {:?} {:?}", a.anomalies, b.anomalies, c.anomalies);
    let text = a.anomalies.iter().find(|an| matches!(an, Anomaly::UeidUnderTwoUuids { .. })).unwrap().explain();
    assert!(text.contains(&scene.device.ueid) && text.contains("2 UUIDs"), "{text}");
}

/// The report's measurements as RIM golden values: SPDM block `i` is RIM index `i − 1`.
fn golden_of(fields: &ReportFields, blocks: std::ops::RangeInclusive<u8>) -> Vec<(u8, Vec<Vec<u8>>)> {
    fields.measurements.iter().filter(|(i, _)| blocks.contains(i)).map(|(i, v)| (i - 1, vec![v.clone()])).collect()
}

#[test]
fn matching_signed_rims_make_it_hardware_verified_and_a_differing_one_invalid() {
    let scene = Scene::new();
    let signer = crate::support::rim::TestSigner::new();
    let fields = h800_fields();
    let uuid = h800_facts().uuid.unwrap();
    let rim_blob = |kind: &str, xml: &[u8]| VendorEvidence {
        gpu: uuid.clone(),
        kind: kind.into(),
        blob: b64_encode(&chipledger_domain::rim::pack(xml)),
        digest: Hash::sha256(xml),
        nonce: None,
        nonce_checkpoint: None,
    };
    let driver =
        signer.sign(&crate::support::rim::swid_tag(&fields.driver_version, &golden_of(&fields, 33..=64)), true);
    let vbios = signer.sign(&crate::support::rim::swid_tag(&fields.vbios_version, &golden_of(&fields, 1..=32)), true);
    let roots = EvidenceRoots { device: Some(scene.device.root.clone()), rim: Some(signer.root.clone()) };
    let judge = |rims: &[VendorEvidence], index: Option<u64>| {
        let mut att = scene.record(scene.derived(COUNTER), Some(&scene.note), &fields);
        att.vendor_evidence.extend(rims.iter().cloned());
        let in_log = index.map(|index| InLog { log_key: &scene.log_key, index, previous: None });
        of_facts_with(Catalog::embedded().unwrap(), &att, &att.gpus[0], in_log, &roots)
    };
    let (d, v) = (rim_blob("nvidia-driver-rim", &driver), rim_blob("nvidia-vbios-rim", &vbios));
    let s = judge(&[d.clone(), v.clone()], Some(11));
    assert_eq!(s.evidence, Evidence::HardwareVerified, "{:?}", s.anomalies);
    // One RIM: checked, but not enough for verified.
    assert_eq!(judge(std::slice::from_ref(&d), Some(11)).evidence, Evidence::HardwareSigned);
    // Matching RIMs do not make up for a nonce the reader cannot tie to the log.
    assert_eq!(judge(&[d.clone(), v.clone()], None).evidence, Evidence::VendorSigned);
    // A VBIOS RIM whose golden value for index 9 is not the report's block 10.
    let mut bent = golden_of(&fields, 1..=32);
    bent.iter_mut().find(|(i, _)| *i == 9).unwrap().1 = vec![vec![0xAB; 48]];
    let bent =
        rim_blob("nvidia-vbios-rim", &signer.sign(&crate::support::rim::swid_tag(&fields.vbios_version, &bent), true));
    let reason = invalid(&judge(&[d.clone(), bent], Some(11)));
    assert!(reason.contains("measurement 9 differs from the vbios RIM"), "{reason}");
    // A RIM for another driver.
    let old = rim_blob(
        "nvidia-driver-rim",
        &signer.sign(&crate::support::rim::swid_tag("545.00", &golden_of(&fields, 33..=64)), true),
    );
    let reason = invalid(&judge(&[old, v.clone()], Some(11)));
    assert!(reason.contains("545.00"), "{reason}");
    // A RIM whose bytes are not its digest's, and one signed by NVIDIA's root's stranger.
    let mut swapped = d.clone();
    swapped.digest = Hash::sha256(b"other");
    assert!(invalid(&judge(&[swapped, v.clone()], Some(11))).contains("digest"));
    let stranger = crate::support::rim::TestSigner::new();
    let foreign = rim_blob(
        "nvidia-driver-rim",
        &stranger.sign(&crate::support::rim::swid_tag(&fields.driver_version, &golden_of(&fields, 33..=64)), true),
    );
    assert!(invalid(&judge(&[foreign, v], Some(11))).contains("driver RIM"));
}
