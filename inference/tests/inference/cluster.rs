//! What the scheduler hooks decide and what they read: Slurm's real output (captured from
//! slurm-wlm 22.05.8, tests/data/slurm), GRES index lists and host lists, a job's GPUs judged
//! under a policy, node features and NFD labels, and DRA DeviceTaintRules checked against the
//! Kubernetes API's own types (k8s-openapi).

use std::collections::BTreeMap;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::fleet::{AttestationEntry, Candidate, Fleet};
use chipledger_domain::identify::Anomaly;
use chipledger_domain::merkle::Hash;
use chipledger_domain::note::Checkpoint;
use chipledger_domain::records::ProbeSource;
use chipledger_domain::rules::VerdictKind;
use chipledger_inference::cluster::{self, slurm, MAX_REASON};
use chipledger_inference::policy::Policy;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-12-07 12:00 UTC);
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{DATA}/{path}")).unwrap()
}

fn uuid(host: u8, i: u32) -> GpuUuid {
    GpuUuid::parse(&format!("GPU-00000000-0000-0000-{host:04x}-{i:012x}")).unwrap()
}

/// An H800 of `host` (named `hgx-0<host>`), fresh, lawful, at bus 0x18 + 0x10·i.
fn gpu(host: u8, i: u32) -> Candidate {
    Candidate {
        uuid: uuid(host, i),
        host: format!("hgx-0{host}"),
        serial: Some(format!("165132{host:02}{i:05}")),
        sku: Some("H800-SXM5-80GB".into()),
        memory_total_bytes: Some(80 << 30),
        source: ProbeSource::Nvml,
        observed_at: NOW - time::Duration::minutes(10),
        anomalies: vec![],
        verdict: VerdictKind::Lawful,
        classification: Some("3A090.a.1".into()),
        busy: false,
        attestation_index: 100 + u64::from(host) * 10,
        fingerprint_digest: Hash([i as u8; 32]),
        evidence: chipledger_domain::standing::Evidence::SelfReported,
        fact_anomalies: vec![],
        ueid: None,
        licensed_to: None,
        location: None,
        pci_bus_id: Some(format!("00000000:{:02X}:00.0", 0x18 + 0x10 * i)),
    }
}

fn fleet(candidates: Vec<Candidate>) -> Fleet {
    let attestations: BTreeMap<GpuUuid, AttestationEntry> = candidates
        .iter()
        .map(|c| (c.uuid.clone(), AttestationEntry { index: c.attestation_index, leaf_hash: Hash([7; 32]) }))
        .collect();
    Fleet {
        checkpoint_text: String::new(),
        checkpoint: Checkpoint { origin: "test/log".into(), size: 1000, root: Hash([0; 32]), extensions: vec![] },
        candidates,
        attestations,
        verdicts: BTreeMap::new(),
    }
}

#[test]
fn slurm_output_captured_from_a_real_cluster_parses() {
    let job = slurm::parse_job(&read("slurm/show-job-d-running.txt")).unwrap();
    assert_eq!(job.gpus_on("hgx-h100-01").unwrap(), vec![0]);
    assert_eq!(job.gpus_on("hgx-h800-01").unwrap(), Vec::<u32>::new());
    assert!(!job.shares_gpus);
    assert_eq!(job.user.as_deref(), Some("root"));
    assert_eq!(job.partition.as_deref(), Some("main"));
    assert_eq!(job.state.as_deref(), Some("RUNNING"));
    assert_eq!(job.exit_code.as_deref(), Some("0:0"));

    let node = slurm::parse_node(&read("slurm/show-node-drained.txt")).unwrap();
    assert!(node.drained());
    let reason = node.reason.unwrap();
    assert!(reason.starts_with("chipledger: device 0 GPU-34bf77d1"), "{reason}");
    assert!(reason.ends_with("is not allowed by the policy"), "Slurm's [user@time] suffix is cut: {reason}");
    assert_eq!(node.available_features, vec!["rack2", "chipledger_attested", "chipledger_class_3a090a1"]);

    let nodes = slurm::parse_nodes_oneline(&read("slurm/show-nodes-oneliner.txt")).unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["hgx-h100-01", "hgx-h800-01"]);
    assert!(nodes[0].available_features.contains(&"chipledger_lawful".to_string()));
    assert_eq!(nodes[0].available_features, nodes[0].active_features);
}

#[test]
fn gres_indices_and_host_lists_expand() {
    for (text, want) in [("0,1,4-6", vec![0, 1, 4, 5, 6]), ("3,1,3", vec![1, 3]), ("", vec![]), ("N/A", vec![])] {
        assert_eq!(slurm::parse_indices(text).unwrap(), want, "{text:?}");
    }
    for (text, want) in [
        ("gpu:2(IDX:0-1)", vec![0, 1]),
        ("gpu:h100:1(IDX:3),mps:100(0)", vec![3]),
        ("gpu(IDX:0,2)", vec![0, 2]),
        ("gpu:a100:1(IDX:0),gpu:h100:1(IDX:5)", vec![0, 5]),
        ("", vec![]),
    ] {
        assert_eq!(slurm::gpu_indices(text).unwrap(), want, "{text:?}");
    }
    assert_eq!(
        slurm::expand_hostlist("gpu[01-03,7],login1,a[8-9]b").unwrap(),
        ["gpu01", "gpu02", "gpu03", "gpu7", "login1", "a8b", "a9b"]
    );
    let job = "JobId=7\n   Nodes=gpu[01-02] CPU_IDs=0-3 Mem=0 GRES=gpu:2(IDX:0-1)\n   Nodes=gpu03 CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:6)\n";
    let parsed = slurm::parse_job(job).unwrap();
    assert_eq!(parsed.gpus_on("gpu02").unwrap(), vec![0, 1]);
    assert_eq!(parsed.gpus_on("gpu03").unwrap(), vec![6]);
}

#[test]
fn what_slurm_says_wrongly_is_refused_with_a_reason() {
    for bad in ["x", "3-1", "0-99999999", "1,,2", "-1"] {
        let e = slurm::parse_indices(bad).unwrap_err().to_string();
        assert!(e.contains("GPU indices"), "{bad:?}: {e}");
    }
    for bad in ["gpu[1-", "gpu[1-2]x[3]", "gpu[a-b]", "gpu[0-9999999]", "gpu[[1]]"] {
        assert!(slurm::expand_hostlist(bad).is_err(), "{bad:?}");
    }
    assert!(slurm::gpu_indices("gpu:1(IDX:0").is_err());
    // Overflow and size: a range to u64::MAX, long zero padding, huge GRES lists.
    assert!(slurm::expand_hostlist("a,b[0-18446744073709551615]").is_err());
    assert!(slurm::expand_hostlist(&format!("n[{}-1]", "0".repeat(40))).is_err());
    assert!(slurm::expand_hostlist(&format!("{}[0-9999]", "x".repeat(2000))).is_err());
    let many = (0..2000).map(|i| format!("gpu:1(IDX:{i})")).collect::<Vec<_>>().join(",");
    assert!(slurm::gpu_indices(&many).is_err());
    assert!(slurm::parse_node("nothing here").unwrap_err().to_string().contains("no State="));
    let huge = "x".repeat(slurm::MAX_OUTPUT + 1);
    assert!(slurm::parse_job(&huge).is_err());
}

#[test]
fn a_job_field_that_mimics_scontrols_lines_is_refused_not_believed() {
    // Slurm 22.05 prints a job name with a line break raw (seen on the test cluster): a name
    // that adds an allocation line for the node must not choose which GPU is judged.
    let real = read("slurm/show-job-d-running.txt");
    let forged = real.replacen(
        "JobName=wrap",
        "JobName=x\n     Nodes=hgx-h100-01 CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:7)\n   JobState=COMPLETED",
        1,
    );
    let e = slurm::parse_job(&forged).unwrap_err().to_string();
    assert!(e.contains("JobState="), "{e}");
    let only_nodes =
        real.replacen("JobName=wrap", "JobName=x\n     Nodes=hgx-h100-01 CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:7)", 1);
    let job = slurm::parse_job(&only_nodes).unwrap();
    assert!(job.gpus_on("hgx-h100-01").unwrap_err().to_string().contains("two allocation lines"));
    // A job sharing GPUs through MPS names no index: the hooks must not let it pass unjudged.
    let mps = real.replace("JOB_GRES=gpu:1", "JOB_GRES=mps:50").replace("GRES=gpu:1(IDX:0)", "GRES=mps:50(0)");
    let job = slurm::parse_job(&mps).unwrap();
    assert!(job.shares_gpus && job.gpus_on("hgx-h100-01").unwrap().is_empty());
    // The node's declared GPUs.
    assert_eq!(slurm::parse_node(&read("slurm/show-node-drained.txt")).unwrap().gres_gpus, Some(1));
}

#[test]
fn devices_are_numbered_in_pci_bus_order() {
    let mut a = gpu(1, 0);
    a.pci_bus_id = Some("00000000:C1:00.0".into());
    let mut b = gpu(1, 1);
    b.pci_bus_id = Some("0000:18:00.0".into());
    let mut c = gpu(1, 2);
    c.pci_bus_id = Some("00000000:3a:00.0".into());
    let f = fleet(vec![a, b, c, gpu(2, 0)]);
    let order: Vec<u32> =
        cluster::devices(&f, "hgx-01").unwrap().iter().map(|c| c.uuid.as_str().as_bytes()[39] as u32 - 48).collect();
    assert_eq!(order, [1, 2, 0], "bus 0x18, 0x3a, 0xc1");
    // Several GPUs, one without a bus id: they cannot be numbered.
    let mut d = gpu(1, 3);
    d.pci_bus_id = None;
    let f = fleet(vec![gpu(1, 0), d]);
    let why = cluster::devices(&f, "hgx-01").unwrap_err().0;
    assert!(why.contains("without a PCI bus id"), "{why}");
    assert!(cluster::judge_job(&Policy::builtin(), &f, "hgx-01", &[0], NOW).is_err());
    // A GPU last seen in an earlier attestation of the host (since replaced) is no device.
    let mut gone = gpu(1, 1);
    gone.attestation_index -= 5;
    gone.pci_bus_id = Some("00000000:08:00.0".into());
    let f = fleet(vec![gpu(1, 0), gone]);
    let devs = cluster::devices(&f, "hgx-01").unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].uuid, uuid(1, 0));
}

#[test]
fn a_job_is_judged_on_its_own_gpus() {
    let policy = Policy::builtin();
    let mut stale = gpu(1, 1);
    stale.observed_at = NOW - time::Duration::hours(3);
    let f = fleet(vec![gpu(1, 0), stale, gpu(2, 0)]);

    let ok = cluster::judge_job(&policy, &f, "hgx-01", &[0], NOW).unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!((ok[0].device_index, &ok[0].uuid), (0, &uuid(1, 0)));
    assert_eq!((ok[0].attestation_index, ok[0].attestation_leaf), (110, Hash([7; 32])));
    assert_eq!(ok[0].acquisition_verdict, "lawful");
    assert_eq!(ok[0].classification.as_deref(), Some("3A090.a.1"));

    let refused = cluster::judge_job(&policy, &f, "hgx-01", &[0, 1], NOW).unwrap_err().0;
    assert_eq!(refused, format!("chipledger: device 1 {}: attested 3.0 h ago; the policy allows 2.0 h", uuid(1, 1)));
    let missing = cluster::judge_job(&policy, &f, "hgx-01", &[5], NOW).unwrap_err().0;
    assert_eq!(missing, "chipledger: device 5 is not among the 2 GPUs attested on hgx-01");
    let unknown = cluster::judge_job(&policy, &f, "hgx-09", &[0], NOW).unwrap_err().0;
    assert_eq!(unknown, "chipledger: no attestation of host hgx-09 in the log");
    assert!(cluster::judge_node(&policy, &f, "hgx-01", Some(2), NOW).is_err());
    assert_eq!(cluster::judge_node(&policy, &f, "hgx-02", Some(1), NOW), Ok(1));
    assert_eq!(cluster::judge_node(&policy, &f, "hgx-02", None, NOW), Ok(1));
    let fewer = cluster::judge_node(&policy, &f, "hgx-02", Some(8), NOW).unwrap_err().0;
    assert_eq!(fewer, "chipledger: the scheduler gives hgx-02 8 GPU(s) but its latest attestation names 1");
}

#[test]
fn a_refusal_fits_slurms_reason_line() {
    let policy = Policy::builtin();
    let many: Vec<Candidate> = (0..50)
        .map(|i| {
            let mut c = gpu(1, i);
            c.anomalies =
                vec![Anomaly::NvlinkExcess { sku: "H800-SXM5-80GB".into(), expected_links: 8, active_links: 18 }];
            c.verdict = VerdictKind::NeedsReview;
            c
        })
        .collect();
    let f = fleet(many);
    let all: Vec<u32> = (0..50).collect();
    let r = cluster::judge_job(&policy, &f, "hgx-01", &all, NOW).unwrap_err().0;
    assert!(r.len() <= MAX_REASON, "{} bytes: {r}", r.len());
    assert!(r.starts_with("chipledger: device 0 "), "{r}");
    assert!(r.contains("more)"), "says how many were left out: {r}");
    assert!(!r.contains('\n'));
}

#[test]
fn features_and_labels_follow_the_hosts_standing() {
    let policy = Policy::builtin();
    let mut licensed = gpu(2, 1);
    licensed.verdict = VerdictKind::LicenceRequiredNoneRecorded;
    licensed.classification = Some("not 3A090".into());
    let f = fleet(vec![gpu(1, 0), gpu(1, 1), gpu(2, 0), licensed]);

    let good = cluster::standing(&policy, &f, "hgx-01", NOW);
    assert_eq!(
        cluster::slurm_features(&good),
        ["chipledger_attested", "chipledger_qualified", "chipledger_lawful", "chipledger_class_3a090a1"]
    );
    let mixed = cluster::standing(&policy, &f, "hgx-02", NOW);
    assert_eq!(
        cluster::slurm_features(&mixed),
        ["chipledger_attested", "chipledger_class_3a090a1", "chipledger_class_not3a090"]
    );
    assert!(cluster::slurm_features(&cluster::standing(&policy, &f, "hgx-09", NOW)).is_empty());

    let current: Vec<String> = ["rack1", "chipledger_lawful", "ib", "chipledger_class_old"].map(String::from).to_vec();
    assert_eq!(
        cluster::merge_features(&current, &cluster::slurm_features(&mixed)),
        ["rack1", "ib", "chipledger_attested", "chipledger_class_3a090a1", "chipledger_class_not3a090"],
        "the node's own features kept, chipledger's replaced"
    );

    assert_eq!(
        cluster::nfd_features(&mixed),
        "# Written by chipledger from the transparency log; do not edit.\n\
         # +expiry-time=2026-12-07T13:50:00Z\n\
         chipledger-attested=true\n\
         chipledger-qualified=false\n\
         chipledger-lawful=false\n\
         chipledger-vendor-signed=false\n\
         chipledger-hardware-signed=false\n\
         chipledger-hardware-verified=false\n\
         chipledger-class-3a090a1=true\n\
         chipledger-class-not3a090=true\n\
         chipledger-gpus=2\n"
    );
}

#[test]
fn taint_rules_have_the_kubernetes_api_shape() {
    let policy = Policy::builtin();
    let mut stale = gpu(6, 0);
    stale.observed_at = NOW - time::Duration::hours(5);
    let mut suspect = gpu(6, 1);
    suspect.anomalies =
        vec![Anomaly::NvlinkExcess { sku: "H800-SXM5-80GB".into(), expected_links: 8, active_links: 18 }];
    let mut off_cluster = gpu(6, 2);
    off_cluster.verdict = VerdictKind::NeedsReview;
    let f = fleet(vec![stale, suspect, off_cluster, gpu(6, 3)]);
    let devices = cluster::dra_devices(read("k8s/resourceslices.json").as_bytes()).unwrap();
    assert_eq!(devices.len(), 2, "only gpu.nvidia.com devices: {devices:?}");

    let out = cluster::device_taint_rules(&policy, &f, &devices, "resource.k8s.io/v1beta2", NOW).unwrap();
    assert_eq!(out.without_device, [uuid(6, 2).as_str()], "a GPU with no DRA device is reported, not guessed");
    let golden_path = format!("{DATA}/k8s/devicetaintrules.json");
    let text = serde_json::to_string_pretty(&out.rules).unwrap() + "\n";
    if std::env::var_os("CHIPLEDGER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &text).unwrap();
    }
    assert_eq!(text, std::fs::read_to_string(&golden_path).unwrap(), "golden {golden_path}");
    assert_eq!(out.rules[0]["spec"]["taint"]["effect"], "NoSchedule", "stale only: no eviction");
    assert_eq!(out.rules[1]["spec"]["taint"]["effect"], "NoExecute", "an anomaly evicts");
    assert_eq!(out.rules[1]["spec"]["deviceSelector"]["device"], "gpu-1");

    // Kubernetes' own types (k8s-openapi, generated from the API's OpenAPI): every rule reads
    // as a DeviceTaintRule and writes back identically, so no field is misnamed or misplaced.
    for rule in &out.rules {
        let typed: k8s_openapi::api::resource::v1beta2::DeviceTaintRule = serde_json::from_value(rule.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), rule);
    }
    let alpha = cluster::device_taint_rules(&policy, &f, &devices, "resource.k8s.io/v1alpha3", NOW).unwrap();
    for rule in &alpha.rules {
        let typed: k8s_openapi::api::resource::v1alpha3::DeviceTaintRule =
            serde_json::from_value(rule.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), rule);
    }
    // The slice fixture is a real ResourceSlice list as Kubernetes' types read it.
    let list: serde_json::Value = serde_json::from_str(&read("k8s/resourceslices.json")).unwrap();
    for item in list["items"].as_array().unwrap() {
        let typed: k8s_openapi::api::resource::v1::ResourceSlice = serde_json::from_value(item.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), item);
    }
    assert!(cluster::device_taint_rules(&policy, &f, &devices, "v1", NOW).is_err());
    assert!(cluster::dra_devices(b"{}").is_err());
    // Two devices claiming one GPU (a node publishing another's UUID): refused, not chosen.
    let doubled = read("k8s/resourceslices.json").replace("0006-000000000001", "0006-000000000000");
    assert!(cluster::dra_devices(doubled.as_bytes()).unwrap_err().to_string().contains("two DRA devices"));
    // UUIDs are compared in their normal form.
    let upper = read("k8s/resourceslices.json")
        .replace("GPU-00000000-0000-0000-0006-000000000001", "GPU-00000000-0000-0000-0006-00000000000A");
    assert!(cluster::dra_devices(upper.as_bytes()).unwrap().contains_key("GPU-00000000-0000-0000-0006-00000000000a"));
    assert!(cluster::dra_devices(b"not json").is_err());
}
