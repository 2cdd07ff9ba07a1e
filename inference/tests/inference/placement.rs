//! Placement as a table: each row one situation, with the GPU's fate.

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Anomaly;
use chipledger_domain::records::ProbeSource;
use chipledger_domain::rules::VerdictKind;
use chipledger_inference::placement::{anomaly_kind, place, Candidate, Placement, Reason};
use chipledger_inference::policy::Policy;
use chipledger_inference::requirements::{preset, ModelShape, Requirements};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);
const GB80: u64 = 81559 * 1024 * 1024;

fn gpu(host: &str, i: u32) -> Candidate {
    Candidate {
        uuid: GpuUuid::parse(&format!("GPU-00000000-0000-0000-{:04x}-{i:012x}", host.len())).unwrap(),
        host: host.to_string(),
        serial: Some(format!("16513230{i:05}")),
        sku: Some("H800-SXM5-80GB".into()),
        memory_total_bytes: Some(GB80),
        source: ProbeSource::Nvml,
        observed_at: NOW - time::Duration::minutes(10),
        anomalies: vec![],
        verdict: VerdictKind::Lawful,
        classification: Some("3A090.a.1".into()),
        busy: false,
        attestation_index: 10 + u64::from(i),
        fingerprint_digest: chipledger_domain::merkle::Hash([i as u8; 32]),
        evidence: chipledger_domain::standing::Evidence::SelfReported,
        fact_anomalies: vec![],
        ueid: None,
        licensed_to: None,
        location: None,
        pci_bus_id: None,
    }
}

fn model(gib: f64) -> Requirements {
    let bytes = (gib * 1024.0 * 1024.0 * 1024.0) as u64;
    let shape = ModelShape {
        name: format!("{gib} GiB model"),
        architecture: "qwen2".into(),
        parameters: bytes / 2,
        weight_bytes: bytes,
        kv_bytes_per_token: 0,
        max_context: 4096,
        source: "test".into(),
    };
    let mut r = Requirements::new(shape, Some(1));
    r.overhead_bytes = 0;
    r.total_bytes = bytes;
    r
}

fn nvlink_excess() -> Anomaly {
    Anomaly::NvlinkExcess { sku: "H800-SXM5-80GB".into(), expected_links: 8, active_links: 18 }
}

fn nvlink_fewer() -> Anomaly {
    Anomaly::NvlinkFewer { sku: "H800-SXM5-80GB".into(), expected_links: 8, active_links: 0 }
}

/// The reason kinds a GPU got (`stale`, `imported-only`, …), or `chosen`.
fn fate(p: &Placement, uuid: &GpuUuid) -> Vec<String> {
    if p.chosen.contains(uuid) {
        return vec!["chosen".into()];
    }
    let n = p
        .not_chosen
        .iter()
        .find(|n| &n.uuid == uuid)
        .unwrap_or_else(|| panic!("{uuid} is neither chosen nor rejected"));
    n.reasons.iter().map(|r| serde_json::to_value(r).unwrap()["reason"].as_str().unwrap().to_string()).collect()
}

#[test]
fn each_situation_gives_the_expected_fate() {
    let default = Policy::builtin();
    let demo = Policy::parse(include_str!("../../policies/demo.toml"), "demo.toml").unwrap();
    type Edit = fn(&mut Candidate);
    let rows: &[(&str, &Policy, Edit, &[&str])] = &[
        ("fresh, live, lawful, clean", &default, |_| {}, &["chosen"]),
        ("attested 3 h ago (policy: 2 h)", &default, |c| c.observed_at = NOW - time::Duration::hours(3), &["stale"]),
        ("imported from an XML dump", &default, |c| c.source = ProbeSource::NvidiaSmiXml, &["imported-only"]),
        ("imported, under the demo policy", &demo, |c| c.source = ProbeSource::NvidiaSmiText, &["chosen"]),
        ("lawful under licence", &default, |c| c.verdict = VerdictKind::LawfulUnderLicence, &["chosen"]),
        (
            "licence required, none recorded",
            &default,
            |c| c.verdict = VerdictKind::LicenceRequiredNoneRecorded,
            &["verdict"],
        ),
        ("no acquisition record", &default, |c| c.verdict = VerdictKind::NoAcquisitionRecord, &["verdict"]),
        ("needs review", &default, |c| c.verdict = VerdictKind::NeedsReview, &["verdict"]),
        ("an H800 with 18 NVLinks", &default, |c| c.anomalies = vec![nvlink_excess()], &["anomaly"]),
        ("fewer NVLinks, default policy", &default, |c| c.anomalies = vec![nvlink_fewer()], &["anomaly"]),
        ("fewer NVLinks, tolerated by the demo policy", &demo, |c| c.anomalies = vec![nvlink_fewer()], &["chosen"]),
        ("memory unknown", &default, |c| c.memory_total_bytes = None, &["unknown-memory"]),
        ("busy", &default, |c| c.busy = true, &["busy"]),
        (
            "stale, imported, unlicensed and anomalous at once",
            &default,
            |c| {
                c.observed_at = NOW - time::Duration::days(2);
                c.source = ProbeSource::NvidiaSmiText;
                c.verdict = VerdictKind::LicenceRequiredNoneRecorded;
                c.anomalies = vec![nvlink_excess()];
            },
            &["stale", "imported-only", "anomaly", "verdict"],
        ),
    ];
    for (name, policy, edit, expected) in rows {
        let mut c = gpu("hgx-01", 1);
        edit(&mut c);
        let p = place(policy, std::slice::from_ref(&c), &model(10.0), NOW);
        assert_eq!(fate(&p, &c.uuid), *expected, "{name}");
        if expected != &["chosen"] {
            assert!(!p.is_placed(), "{name}");
            assert!(!p.reasons_text().is_empty());
        }
    }
}

#[test]
fn policy_lists_restrict_hosts_skus_and_classes() {
    let mut policy = Policy::builtin();
    policy.allowed_hosts = vec!["hgx-02".into()];
    policy.allowed_skus = vec!["H100-SXM5-80GB".into()];
    policy.allowed_classes = vec!["not 3A090".into()];
    let c = gpu("hgx-01", 1);
    let p = place(&policy, std::slice::from_ref(&c), &model(10.0), NOW);
    assert_eq!(fate(&p, &c.uuid), ["class", "sku", "host"]);
}

/// A policy names the lowest evidence level it takes: `require_vendor_evidence = true` (the
/// older key) is `vendor-signed`; `require_evidence = "hardware-signed"` refuses vendor-signed
/// GPUs too. One whose evidence did not verify also carries its Danger `evidence-invalid`
/// anomaly, which no policy tolerates. Unknown levels, and both keys at once, are refused.
#[test]
fn a_policy_can_require_an_evidence_level() {
    use chipledger_domain::standing::Evidence;
    let policy = Policy::parse("require_vendor_evidence = true\n", "hw.toml").unwrap();
    assert_eq!(policy.require_evidence, Some(Evidence::VendorSigned));
    let mut signed = gpu("hgx-01", 1);
    signed.evidence = Evidence::VendorSigned;
    let plain = gpu("hgx-01", 2);
    let mut invalid = gpu("hgx-01", 3);
    invalid.evidence = Evidence::EvidenceInvalid;
    invalid.anomalies = vec![Anomaly::EvidenceInvalid { reason: "the report's signature does not verify".into() }];
    let mut hardware = gpu("hgx-01", 4);
    hardware.evidence = Evidence::HardwareSigned;
    let mut verified = gpu("hgx-01", 5);
    verified.evidence = Evidence::HardwareVerified;
    let all = [signed.clone(), plain.clone(), invalid.clone(), hardware.clone(), verified.clone()];
    let p = place(&policy, &all, &model(10.0), NOW);
    assert_eq!(p.chosen, vec![signed.uuid.clone()], "the first that qualifies");
    assert!(fate(&p, &plain.uuid).contains(&"evidence-below".to_string()), "{:?}", fate(&p, &plain.uuid));
    assert_eq!(fate(&p, &invalid.uuid), ["evidence-below", "anomaly"]);
    assert_eq!(fate(&p, &hardware.uuid), ["not-needed"]);
    let strict = Policy::parse("require_evidence = \"hardware-signed\"\n", "hw.toml").unwrap();
    let p = place(&strict, &all, &model(10.0), NOW);
    assert_eq!(p.chosen, vec![hardware.uuid.clone()]);
    assert_eq!(fate(&p, &signed.uuid), ["evidence-below"]);
    let reason = &p.not_chosen.iter().find(|n| n.uuid == signed.uuid).unwrap().reasons[0];
    assert_eq!(reason.explain(), "its evidence is vendor-signed; the policy requires hardware-signed or better");
    let strictest = Policy::parse("require_evidence = \"hardware-verified\"\n", "hw.toml").unwrap();
    assert_eq!(place(&strictest, &all, &model(10.0), NOW).chosen, vec![verified.uuid.clone()]);
    assert!(Policy::parse("require_evidence = \"hardware\"\n", "t.toml")
        .unwrap_err()
        .to_string()
        .contains("hardware-signed"));
    assert!(Policy::parse("require_evidence = \"evidence-invalid\"\n", "t.toml").is_err());
    assert!(Policy::parse("require_evidence = \"none\"\nrequire_vendor_evidence = true\n", "t.toml").is_err());
    assert_eq!(Policy::parse("require_evidence = \"none\"\n", "t.toml").unwrap().require_evidence, None);
    let p = place(&policy, &[signed.clone(), plain.clone(), invalid.clone()], &model(10.0), NOW);
    let reasons = &p.not_chosen.iter().find(|n| n.uuid == invalid.uuid).unwrap().reasons;
    assert!(reasons.iter().any(|r| r.explain().contains("evidence-invalid")), "{reasons:?}");
    assert!(Policy::parse("tolerated_anomalies = [\"evidence-invalid\"]\n", "t.toml").is_err());
}

#[test]
fn a_model_larger_than_one_gpu_takes_several_on_one_host_and_never_spans_hosts() {
    let policy = Policy::builtin();
    // hgx-a: 4 qualifying GPUs; hgx-b: 2; hgx-c: 8, but two of them stale.
    let mut fleet: Vec<Candidate> = Vec::new();
    fleet.extend((0..4).map(|i| gpu("hgx-a", i)));
    fleet.extend((0..2).map(|i| gpu("hgx-b", 10 + i)));
    fleet.extend((0..8).map(|i| {
        let mut c = gpu("hgx-c", 20 + i);
        if i < 2 {
            c.observed_at = NOW - time::Duration::hours(5);
        }
        c
    }));
    // 200 GiB needs 3 × 79.6 GiB: hgx-b (2 GPUs) cannot; hgx-a and hgx-c can with 3; hgx-a wins
    // on the name (the same idle memory).
    let p = place(&policy, &fleet, &model(200.0), NOW);
    assert_eq!(p.host.as_deref(), Some("hgx-a"));
    assert_eq!(p.chosen.len(), 3);
    assert!(p.chosen.iter().all(|u| fleet.iter().any(|c| &c.uuid == u && c.host == "hgx-a")));
    assert_eq!(fate(&p, &fleet[3].uuid), ["not-needed"]);
    assert_eq!(fate(&p, &fleet[4].uuid), ["not-needed"]);
    assert_eq!(fate(&p, &fleet[6].uuid), ["stale"]);
    assert_eq!(p.chosen.len() + p.not_chosen.len(), fleet.len(), "every GPU accounted for");
    // 400 GiB needs 6: only hgx-c has 6 qualifying GPUs.
    let p = place(&policy, &fleet, &model(400.0), NOW);
    assert_eq!((p.host.as_deref(), p.chosen.len()), (Some("hgx-c"), 6));
    // 500 GiB: nobody; each qualifying GPU says its host is too small.
    let p = place(&policy, &fleet, &model(500.0), NOW);
    assert!(!p.is_placed());
    assert_eq!(fate(&p, &fleet[0].uuid), ["host-too-small"]);
    assert!(p.reasons_text()[0].contains("needs 500.0 GiB"), "{:?}", p.reasons_text());
    assert_eq!(p.hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["hgx-a", "hgx-b", "hgx-c"]);
}

#[test]
fn placement_is_deterministic_whatever_the_input_order() {
    let policy = Policy::builtin();
    let mut fleet: Vec<Candidate> = (0..16).map(|i| gpu(if i % 2 == 0 { "x" } else { "y" }, i)).collect();
    let a = place(&policy, &fleet, &model(150.0), NOW);
    fleet.reverse();
    let b = place(&policy, &fleet, &model(150.0), NOW);
    assert_eq!(a, b);
}

#[test]
fn deepseek_r1_fits_an_h200_host_but_no_h800_host() {
    let policy = Policy::builtin();
    let r1 = Requirements::new(preset("deepseek-r1").unwrap(), Some(8192));
    let mut fleet: Vec<Candidate> = (0..8).map(|i| gpu("hgx-h800", i)).collect();
    let p = place(&policy, &fleet, &r1, NOW);
    assert!(!p.is_placed(), "8 × 80 GB cannot hold 671 B FP8 weights");
    assert!(
        p.reasons_text()[0].contains("on hgx-h800: qualifies, but its host's qualifying GPUs hold 637.2 GiB"),
        "{:?}",
        p.reasons_text()
    );
    fleet.extend((0..8).map(|i| {
        let mut c = gpu("hgx-h200", 100 + i);
        c.sku = Some("H200-SXM5-141GB".into());
        c.memory_total_bytes = Some(143_771 * 1024 * 1024);
        c
    }));
    let p = place(&policy, &fleet, &r1, NOW);
    assert_eq!(p.host.as_deref(), Some("hgx-h200"));
    assert_eq!(p.chosen.len(), 5);
}

#[test]
fn anomaly_kinds_are_the_names_policies_use() {
    assert_eq!(anomaly_kind(&nvlink_excess()), "nvlink-excess");
    for k in chipledger_inference::policy::ANOMALY_KINDS {
        let text = format!("tolerated_anomalies = [\"{k}\"]\n");
        Policy::parse(&text, "t.toml").unwrap();
    }
    let _ = Reason::Busy.explain();
}

#[test]
fn malformed_policies_name_the_key() {
    for (text, key) in [
        ("max_attestation_age = \"soon\"\n", "max_attestation_age"),
        ("allowed_verdicts = [\"fine\"]\n", "allowed_verdicts"),
        ("tolerated_anomalies = [\"gremlins\"]\n", "tolerated_anomalies"),
        ("require_live_probe = \"yes\"\n", "require_live_probe"),
        ("colour = \"blue\"\n", "colour"),
        ("name = \"\"\n", "name"),
    ] {
        let err = Policy::parse(text, "p.toml").unwrap_err();
        assert!(matches!(&err, chipledger_inference::Error::Policy { key: k, .. } if k == key), "{text}: {err}");
    }
}

/// A GGUF header's numbers are the file's say: absurd ones (a 2^40-wide model of 2^40 layers,
/// a tensor of 2^40 × 2^40) give saturated sizes that no GPU holds, never an overflow panic.
#[test]
fn absurd_gguf_header_numbers_saturate_instead_of_overflowing() {
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absurd.gguf");
    let (huge, one, arch) = (Value::U64(1 << 40), Value::U64(1), Value::String("llama".into()));
    let metadata: Vec<(&str, &Value)> = vec![
        ("general.architecture", &arch),
        ("llama.embedding_length", &huge),
        ("llama.block_count", &huge),
        ("llama.attention.head_count", &one),
        ("llama.attention.head_count_kv", &huge),
    ];
    let tensor = QTensor::quantize(
        &candle_core::Tensor::zeros((2, 32), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut f, &metadata, &[("t", &tensor)]).unwrap();
    drop(f);
    let shape = chipledger_inference::requirements::from_gguf(&path).unwrap();
    assert_eq!(shape.kv_bytes_per_token, u64::MAX);
    let req = Requirements::new(shape, Some(4096));
    assert_eq!(req.total_bytes, u64::MAX, "no GPU holds it: placement refuses, nothing panics");
}

/// `n` H800s on `host`, named so that UUIDs differ across hosts.
fn hgx(host: &str, n: u32, tag: u16) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let mut c = gpu(host, i);
            c.uuid = GpuUuid::parse(&format!("GPU-00000000-0000-0000-{tag:04x}-{i:012x}")).unwrap();
            c
        })
        .collect()
}

#[test]
fn deepseek_r1_671b_is_split_across_two_eight_gpu_hosts_and_every_other_host_says_why() {
    use chipledger_inference::placement::{place_across_hosts, Fabric, Stage};
    let policy = Policy::builtin();
    let r1 = Requirements::new(preset("deepseek-r1").unwrap(), Some(4096));
    let mut fleet = hgx("hgx-a", 8, 1);
    fleet.extend(hgx("hgx-b", 8, 2));
    let mut c = hgx("hgx-c", 8, 3);
    c[5].anomalies = vec![nvlink_excess()];
    fleet.extend(c);
    fleet.extend(hgx("hgx-d", 4, 4));
    // No single host holds it.
    assert!(!place(&policy, &fleet, &r1, NOW).is_placed());
    let m = place_across_hosts(&policy, &fleet, &r1, NOW, &Fabric::one()).unwrap();
    assert_eq!((m.pipeline_parallel, m.tensor_parallel), (2, 8));
    assert_eq!(m.fabric, None, "no fabric file: every host taken as one fabric");
    assert_eq!(m.stages.iter().map(|s| s.host.as_str()).collect::<Vec<_>>(), ["hgx-a", "hgx-b"]);
    assert!(m.stages.iter().all(|s: &Stage| s.gpus.len() == 8));
    assert!(m.per_gpu_bytes * 16 >= r1.total_bytes && m.per_gpu_bytes <= GB80);
    let why: std::collections::BTreeMap<_, _> = m.hosts_not_chosen.iter().cloned().collect();
    assert_eq!(why["hgx-c"], "7 qualifying GPU(s); each stage uses 8", "the anomalous GPU does not count");
    assert_eq!(why["hgx-d"], "4 qualifying GPU(s); each stage uses 8");

    // With the fabric known: hgx-a and hgx-b are in different pods, so the split takes the pod
    // that has two whole hosts; a host missing from the file is never a stage.
    let mut e = hgx("hgx-e", 8, 5);
    e.extend(hgx("hgx-f", 8, 6));
    fleet.extend(e);
    let fabric = Fabric::parse(
        "[groups]\npod-1 = [\"hgx-a\", \"hgx-c\", \"hgx-d\"]\npod-2 = [\"hgx-b\", \"hgx-e\"]\n",
        "fabric.toml",
    )
    .unwrap();
    let m = place_across_hosts(&policy, &fleet, &r1, NOW, &fabric).unwrap();
    assert_eq!(m.stages.iter().map(|s| s.host.as_str()).collect::<Vec<_>>(), ["hgx-b", "hgx-e"]);
    assert_eq!(m.fabric.as_deref(), Some("pod-2"));
    let why: std::collections::BTreeMap<_, _> = m.hosts_not_chosen.iter().cloned().collect();
    assert_eq!(why["hgx-a"], "on fabric group \"pod-1\"; the stages are on \"pod-2\"");
    assert!(why["hgx-f"].starts_with("not in the fabric file"), "{}", why["hgx-f"]);
    // One whole host per pod: no split stays inside a pod.
    let split = Fabric::parse("[groups]\np1 = [\"hgx-a\"]\np2 = [\"hgx-b\"]\n", "f").unwrap();
    let refused = place_across_hosts(&policy, &fleet, &r1, NOW, &split).unwrap_err();
    assert!(refused.contains("of one fabric group"), "{refused}");
    assert!(Fabric::parse("[groups]\np1 = [\"h\"]\np2 = [\"h\"]\n", "f").unwrap_err().contains("in groups"));

    // Two hosts, one GPU of them anomalous: no arrangement of qualifying GPUs holds it.
    let mut two = hgx("hgx-a", 8, 1);
    let mut b = hgx("hgx-b", 8, 2);
    b[0].anomalies = vec![nvlink_excess()];
    two.extend(b);
    let refused = place_across_hosts(&policy, &two, &r1, NOW, &Fabric::one()).unwrap_err();
    assert!(refused.contains("no split over 2 to 8 hosts"), "{refused}");
    // And the single-host placement names the anomalous GPU's reason.
    let single = place(&policy, &two, &r1, NOW);
    assert!(single.reasons_text().iter().any(|l| l.contains("anomaly nvlink-excess")), "{:?}", single.reasons_text());
}

#[test]
fn launch_lines_pin_each_engine_to_the_placed_gpus_by_uuid() {
    use chipledger_inference::placement::{launch_lines, Engine, Stage};
    let stage = |host: &str, tag: u16| Stage {
        host: host.into(),
        gpus: (0..2).map(|i| GpuUuid::parse(&format!("GPU-00000000-0000-0000-{tag:04x}-{i:012x}")).unwrap()).collect(),
    };
    let two = [stage("hgx-a", 1), stage("hgx-b", 2)];
    let vllm = launch_lines(Engine::Vllm, "deepseek-ai/DeepSeek-R1", &two, "hgx-a");
    let text: Vec<String> = vllm.iter().map(|(h, l)| format!("{h}: {l}")).collect();
    assert_eq!(
        text,
        [
            "hgx-a: CUDA_VISIBLE_DEVICES=GPU-00000000-0000-0000-0001-000000000000,GPU-00000000-0000-0000-0001-000000000001 ray start --head --port 6379",
            "hgx-b: CUDA_VISIBLE_DEVICES=GPU-00000000-0000-0000-0002-000000000000,GPU-00000000-0000-0000-0002-000000000001 ray start --address hgx-a:6379",
            "hgx-a: vllm serve deepseek-ai/DeepSeek-R1 --tensor-parallel-size 2 --pipeline-parallel-size 2 --distributed-executor-backend ray",
        ]
    );
    let sglang = launch_lines(Engine::Sglang, "/models/r1", &two, "hgx-a");
    assert_eq!(
        sglang[1].1,
        "CUDA_VISIBLE_DEVICES=GPU-00000000-0000-0000-0002-000000000000,GPU-00000000-0000-0000-0002-000000000001 \
         python3 -m sglang.launch_server --model-path /models/r1 --tp 4 --nnodes 2 --node-rank 1 --dist-init-addr hgx-a:5000"
    );
    let one = launch_lines(Engine::Vllm, "m", &two[..1], "hgx-a");
    assert_eq!(one.len(), 1);
    assert!(one[0].1.ends_with("vllm serve m --tensor-parallel-size 2"));
}

/// A policy's `[location]` table: off by default; with `require`, a GPU needs a consistent
/// verdict from fresh proofs; `site` + `within_km` and `countries` narrow the region further.
/// Bad tables say which key is wrong.
#[test]
fn a_location_rule_refuses_gpus_the_proofs_do_not_place_where_it_asks() {
    use chipledger_domain::location::{Disk, Judgement, LocationVerdict, Method};
    let judged = |verdict: LocationVerdict, center: &str, radius_km: f64| Judgement {
        verdict,
        method: Some(Method::HostKey),
        disks: vec![Disk {
            landmark: "sin-1".into(),
            center: chipledger_domain::location::Coord::parse(center).unwrap(),
            radius_km,
        }],
        countries: Default::default(),
        disagreements: vec![],
        reason: "the round trip to landmark sin-1 bounds the key holder within 30 km".into(),
    };
    let mut c = gpu("hgx-01", 1);
    let default = Policy::builtin();
    assert!(!default.location.required());
    let p = place(&default, std::slice::from_ref(&c), &model(10.0), NOW);
    assert_eq!(fate(&p, &c.uuid), ["chosen"], "no location rule, no location reason");

    let policy = Policy::parse("[location]\nrequire = true\n", "t.toml").unwrap();
    assert_eq!(policy.location.max_age.as_secs(), 86_400);
    let p = place(&policy, std::slice::from_ref(&c), &model(10.0), NOW);
    assert_eq!(fate(&p, &c.uuid), ["location"], "a fleet whose locations were not read");

    c.location = Some(judged(LocationVerdict::Unproven, "1.2966,103.7764", 30.0));
    let p = place(&policy, std::slice::from_ref(&c), &model(10.0), NOW);
    assert_eq!(fate(&p, &c.uuid), ["location"]);
    c.location = Some(judged(LocationVerdict::Consistent, "1.2966,103.7764", 30.0));
    let p = place(&policy, std::slice::from_ref(&c), &model(10.0), NOW);
    assert_eq!(fate(&p, &c.uuid), ["chosen"]);

    // Within 100 km of the site: a 30 km disk 20 km away is; a 300 km one is not.
    let near = Policy::parse("[location]\nsite = \"1.3521,103.8198\"\nwithin_km = 100\n", "t.toml").unwrap();
    assert!(near.location.required());
    let p = place(&near, std::slice::from_ref(&c), &model(10.0), NOW);
    assert_eq!(fate(&p, &c.uuid), ["chosen"]);
    c.location = Some(judged(LocationVerdict::Consistent, "1.2966,103.7764", 300.0));
    let p = place(&near, std::slice::from_ref(&c), &model(10.0), NOW);
    assert_eq!(fate(&p, &c.uuid), ["location"]);
    let why = p.not_chosen.iter().flat_map(|n| n.reasons.iter()).map(Reason::explain).collect::<Vec<_>>().join(" ");
    assert!(why.contains("within 100 km"), "{why}");

    // Inside China: a disk around Singapore is not.
    let cn = Policy::parse("[location]\ncountries = [\"CN\"]\n", "t.toml").unwrap();
    let p = place(&cn, std::slice::from_ref(&c), &model(10.0), NOW);
    assert_eq!(fate(&p, &c.uuid), ["location"]);

    for (text, key) in [
        ("[location]\nsite = \"1,2\"\n", "location.within_km"),
        ("[location]\nwithin_km = 5.0\n", "location.site"),
        ("[location]\nsite = \"91,0\"\nwithin_km = 5.0\n", "location.site"),
        ("[location]\nsite = \"1,2\"\nwithin_km = -1.0\n", "location.within_km"),
        ("[location]\ncountries = [\"XX1\"]\n", "location.countries"),
        ("[location]\nmax_age = \"0s\"\n", "location.max_age"),
        ("[location]\nnear = true\n", "unknown field `near`"),
    ] {
        let e = Policy::parse(text, "t.toml").unwrap_err().to_string();
        assert!(e.contains(key), "{text:?}: {e}");
    }
}
