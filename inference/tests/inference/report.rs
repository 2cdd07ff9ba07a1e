//! Provenance reports through a real ledger: plan, run the tiny model, sign, append, verify
//! offline; any edit fails.

use std::sync::Arc;

use chipledger_domain::fingerprint::{GpuFacts, GpuUuid};
use chipledger_domain::identify::Identification;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::FixedClock;
use chipledger_domain::records::{
    sign_record, AttestedGpu, DriverFacts, GpuAttestation, HostFacts, KeyEnrollment, ProbeSource, Role, RunTimings,
    Sampling, FORMAT_VERSION,
};
use chipledger_inference::node::{self, Execution, NodeKey};
use chipledger_inference::policy::Policy;
use chipledger_inference::report::{self, ReportFile};
use chipledger_inference::requirements::{self, Requirements};
use chipledger_inference::runner::{Backend, ChatTemplate, Model, SamplingConfig};
use chipledger_inference::tiny::Arch;
use chipledger_ledger::Ledger;
use time::macros::datetime;

use super::*;

const NOW: time::OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

struct World {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    node: NodeKey,
    log_key: VerifierKey,
}

fn enroll(ledger: &Ledger, admin: &SigningKey, counter: u64, key: &SigningKey, role: Role, host: &str) {
    let e = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter,
        issued_at: NOW,
        key_id: key.key_id(),
        verifier_key: VerifierKey::new(host, key.public_key()).unwrap().to_string(),
        role,
        host: Some(host.into()),
        valid_from: NOW - time::Duration::days(1),
        valid_until: None,
        site: None,
    };
    ledger.append(&[sign_record(&e, admin).unwrap().to_json()]).unwrap();
}

/// A ledger with two live-attested H800s on hgx-01 (one with an NVLink anomaly) and a node key.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, info) =
        Ledger::init(&dir.path().join("ledger"), "test.example/log", Arc::new(FixedClock(NOW)), &mut rand_core::OsRng)
            .unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let agent = SigningKey::from_seed(&[1; 32]);
    let node_key = SigningKey::from_seed(&[2; 32]);
    enroll(&ledger, &admin, 2, &agent, Role::Agent, "hgx-01");
    enroll(&ledger, &admin, 3, &node_key, Role::Node, "node-01");
    let catalog = chipledger_domain::catalog::Catalog::embedded().unwrap();
    let mut gpus = Vec::new();
    for i in 0..2u32 {
        let uuid = GpuUuid::parse(&format!("GPU-34bf77d1-c686-6821-79a8-{i:012x}")).unwrap();
        let facts = GpuFacts {
            uuid: Some(uuid.clone()),
            serial: Some(format!("16513230182{i:02}")),
            name: Some("NVIDIA H800".into()),
            pci_device_id: Some(0x2324),
            pci_subsystem_id: Some(0x17a6_10de),
            memory_total_bytes: Some(81559 * 1024 * 1024),
            nvlinks: Some(
                (0..if i == 0 { 8 } else { 18 })
                    .map(|index| chipledger_domain::fingerprint::NvLink {
                        index,
                        active: true,
                        version: Some(6),
                        speed_gbs: None,
                        remote_bus_id: None,
                    })
                    .collect(),
            ),
            ..GpuFacts::default()
        };
        let id: Identification = chipledger_domain::identify::identify(catalog, &facts);
        gpus.push(AttestedGpu::new(uuid, facts, id));
    }
    let att = GpuAttestation {
        format_version: FORMAT_VERSION,
        counter: 1,
        observed_at: NOW - time::Duration::minutes(5),
        source: ProbeSource::Nvml,
        host: HostFacts { hostname: "hgx-01".into(), ..HostFacts::default() },
        driver: DriverFacts { nvml_version: Some("12.535.104.05".into()), ..DriverFacts::default() },
        gpus,
        vendor_evidence: vec![],
    };
    ledger.append(&[sign_record(&att, &agent).unwrap().to_json()]).unwrap();
    let log_key = ledger.verifier_key().clone();
    let node = NodeKey { key: node_key, host: "node-01".into(), state: dir.path().join("node-state.json") };
    World { _dir: dir, ledger, node, log_key }
}

/// Plans and runs the tiny model under a policy that accepts unrecorded acquisitions.
fn run(w: &World) -> ReportFile {
    let policy = Policy::parse("allowed_verdicts = [\"no-acquisition-record\"]\n", "test.toml").unwrap();
    let model_dir = tiny_model(Arch::Qwen2);
    let req = Requirements::new(requirements::from_model_dir(&model_dir).unwrap(), Some(512));
    let plan = node::plan(&w.ledger, &w.log_key, &policy, req, NOW).unwrap();
    assert_eq!(plan.placement.chosen.len(), 1, "{:?}", plan.placement);
    let mut model = Model::load(&model_dir, Backend::Cpu, &mut |_, _| {}).unwrap();
    let prompt = "Which GPU ran this?";
    let sampling = SamplingConfig { max_tokens: 8, ..SamplingConfig::default() };
    let g = model.generate(&ChatTemplate::DeepSeekR1.apply(prompt), sampling, &mut |_, _| {}).unwrap();
    let exec = Execution {
        run_id: node::new_run_id(),
        started_at: NOW,
        finished_at: NOW + time::Duration::seconds(1),
        model_name: model.name.clone(),
        model_files: model.files.clone(),
        prompt: prompt.into(),
        output: g.text.clone(),
        sampling: Sampling {
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            seed: sampling.seed,
            max_tokens: 8,
        },
        prompt_tokens: g.prompt_tokens as u32,
        generated_tokens: g.tokens.len() as u32,
        timings: RunTimings { load_ms: 1, prefill_ms: g.prefill_ms as u64, decode_ms: g.decode_ms as u64 },
        backend: model.backend(),
    };
    let record = node::provenance(&w.ledger, &w.node, &plan, &exec).unwrap();
    assert_eq!(record.backend, "cpu", "the CPU build never claims a GPU");
    assert_eq!(record.rejected.len(), 1);
    assert!(record.rejected[0].reason.contains("nvlink-excess"), "{:?}", record.rejected);
    node::submit(&w.ledger, &w.log_key, &w.node, &record, prompt, &g.text).unwrap()
}

#[test]
fn a_report_verifies_offline_with_the_model_files() {
    let w = world();
    let file = run(&w);
    let v = report::verify(&file, Some(&w.log_key), Some(&tiny_model(Arch::Qwen2))).unwrap();
    assert_eq!((v.gpus_checked, v.model_files_checked), (1, 3));
    assert!(!v.log_key_from_file);
    // Round trip through the file on disk.
    let path = w._dir.path().join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    let back = node::read_report(&path).unwrap();
    report::verify(&back, Some(&w.log_key), None).unwrap();
    w.ledger.audit(&mut |_, _| {}).unwrap();
}

#[test]
fn any_edit_to_a_report_fails_verification() {
    let w = world();
    let file = run(&w);
    let text = serde_json::to_string_pretty(&file).unwrap();
    type Edit = Box<dyn Fn(&mut ReportFile)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("prompt", Box::new(|f| f.prompt.push('!'))),
        ("output", Box::new(|f| f.output = format!("{} ", f.output))),
        ("envelope", Box::new(|f| f.envelope = f.envelope.replacen("\"payload\":\"", "\"payload\":\"A", 1))),
        ("receipt index", Box::new(|f| f.receipt.index += 1)),
        (
            "inclusion proof",
            Box::new(|f| match f.receipt.inclusion_proof.first_mut() {
                Some(h) => h.0[0] ^= 1,
                None => f.receipt.inclusion_proof.push(chipledger_domain::merkle::Hash([0; 32])),
            }),
        ),
        ("leaf hash", Box::new(|f| f.receipt.leaf_hash.0[0] ^= 1)),
        ("checkpoint", Box::new(|f| f.receipt.checkpoint = f.receipt.checkpoint.replacen('\n', "\n1", 1))),
        (
            "node key",
            Box::new(|f| {
                f.node_key =
                    VerifierKey::new("node-01", SigningKey::from_seed(&[9; 32]).public_key()).unwrap().to_string()
            }),
        ),
        (
            "log key",
            Box::new(|f| {
                f.log_key = VerifierKey::new("test.example/log", SigningKey::from_seed(&[8; 32]).public_key())
                    .unwrap()
                    .to_string()
            }),
        ),
        ("format", Box::new(|f| f.format = "v0".into())),
    ];
    for (what, edit) in edits {
        let mut f: ReportFile = serde_json::from_str(&text).unwrap();
        edit(&mut f);
        assert!(report::verify(&f, None, None).is_err(), "editing the {what} must fail");
    }
    // A model file that differs from the one that ran.
    let other = tempfile::tempdir().unwrap();
    chipledger_inference::tiny::write(other.path(), Arch::Qwen2, chipledger_inference::tiny::TinyShape::default(), 99)
        .unwrap();
    let err = report::verify(&file, Some(&w.log_key), Some(other.path())).unwrap_err();
    assert!(err.to_string().contains("model file"), "{err}");
}

#[test]
fn nothing_qualifying_is_a_refusal_that_lists_every_gpu() {
    let w = world();
    let req = Requirements::new(requirements::preset("deepseek-r1").unwrap(), None);
    let plan = node::plan(&w.ledger, &w.log_key, &Policy::builtin(), req, NOW).unwrap();
    assert!(!plan.placement.is_placed());
    let msg = plan.refusal();
    assert_eq!(msg.lines().count(), 3, "{msg}");
    assert!(msg.contains("verdict no-acquisition-record") && msg.contains("nvlink-excess"), "{msg}");
}

#[test]
fn the_fleet_is_read_correctly_however_many_records_follow_an_attestation() {
    let w = world();
    let policy = Policy::parse("allowed_verdicts = [\"no-acquisition-record\"]\n", "test.toml").unwrap();
    let req = Requirements::new(requirements::preset("r1-distill-qwen-1.5b").unwrap(), Some(1024));
    for _ in 0..40 {
        let plan = node::plan(&w.ledger, &w.log_key, &policy, req.clone(), NOW).unwrap();
        assert_eq!(plan.placement.chosen.len(), 1);
        let exec = Execution {
            run_id: node::new_run_id(),
            started_at: NOW,
            finished_at: NOW,
            model_name: "m".into(),
            model_files: vec![],
            prompt: "p".into(),
            output: "o".into(),
            sampling: Sampling { temperature: 0.0, top_p: 1.0, seed: 1, max_tokens: 1 },
            prompt_tokens: 1,
            generated_tokens: 1,
            timings: RunTimings { load_ms: 0, prefill_ms: 0, decode_ms: 0 },
            backend: "cpu".into(),
        };
        let record = node::provenance(&w.ledger, &w.node, &plan, &exec).unwrap();
        node::submit(&w.ledger, &w.log_key, &w.node, &record, "p", "o").unwrap();
    }
}

/// The facts of every GPU in the attestation the plan read for `uuid` (what a live probe of an
/// unchanged host gives).
fn attested_facts(w: &World, plan: &node::Plan, uuid: &GpuUuid) -> Vec<GpuFacts> {
    let entry = plan.fleet.attestations[uuid].index;
    let env = chipledger_domain::dsse::Envelope::from_json(w.ledger.envelope(entry).unwrap().as_slice()).unwrap();
    let chipledger_domain::records::Record::GpuAttestation(att) =
        chipledger_domain::records::Record::from_payload(&env.payload_bytes().unwrap()).unwrap()
    else {
        panic!("entry {entry} is not an attestation")
    };
    att.gpus.iter().map(|g| g.facts.clone()).collect()
}

#[test]
fn live_facts_must_match_the_attested_fingerprint_before_a_gpu_run() {
    let w = world();
    let policy = Policy::parse("allowed_verdicts = [\"no-acquisition-record\"]\n", "test.toml").unwrap();
    let req = Requirements::new(requirements::preset("r1-distill-qwen-1.5b").unwrap(), Some(1024));
    let plan = node::plan(&w.ledger, &w.log_key, &policy, req, NOW).unwrap();
    let uuid = plan.placement.chosen[0].clone();
    let mut live = attested_facts(&w, &plan, &uuid);
    node::check_live(&plan, &live).unwrap();
    for f in &mut live {
        f.vbios_version = Some("96.00.99.00.01".into());
    }
    let err = node::check_live(&plan, &live).unwrap_err();
    assert!(err.to_string().contains("re-attest"), "{err}");
    let err = node::check_live(&plan, &[]).unwrap_err();
    assert!(err.to_string().contains("does not see it"), "{err}");
}

#[test]
fn the_node_decides_where_a_plan_executes_and_refuses_what_the_policy_or_the_host_forbids() {
    use chipledger_inference::node::{execution_target, Executor, LiveNode};
    use chipledger_inference::runner::Backend;
    let w = world();
    let req = || Requirements::new(requirements::preset("r1-distill-qwen-1.5b").unwrap(), Some(1024));
    let policy = Policy::parse("allowed_verdicts = [\"no-acquisition-record\"]\n", "test.toml").unwrap();
    let plan = node::plan(&w.ledger, &w.log_key, &policy, req(), NOW).unwrap();
    let uuid = plan.placement.chosen[0].clone();
    let host = plan.placement.host.clone().unwrap();
    let gpus = attested_facts(&w, &plan, &uuid);
    let never = || -> Result<LiveNode, chipledger_inference::Error> { panic!("the CPU needs no probe") };

    // The CPU, when the policy allows it: no probe, no device.
    let cpu = execution_target(&plan, Executor::Cpu, never).unwrap();
    assert_eq!((cpu.backend, cpu.visible_device), (Backend::Cpu, None));
    // The placed GPU, on its own host with unchanged facts: CUDA device 0 is that GPU.
    let here = || Ok(LiveNode { hostname: host.clone(), gpus: gpus.clone() });
    let gpu = execution_target(&plan, Executor::PlacedGpu, here).unwrap();
    assert_eq!((gpu.backend, gpu.visible_device), (Backend::Cuda { ordinal: 0 }, Some(uuid.clone())));
    // Another host, or changed facts: refused.
    let elsewhere = || Ok(LiveNode { hostname: "somewhere-else".into(), gpus: gpus.clone() });
    let err = execution_target(&plan, Executor::PlacedGpu, elsewhere).unwrap_err();
    assert!(err.to_string().contains("this node is somewhere-else"), "{err}");
    let changed = || Ok(LiveNode { hostname: host.clone(), gpus: vec![] });
    assert!(execution_target(&plan, Executor::PlacedGpu, changed).is_err());
    // A policy that requires GPU execution refuses the CPU.
    let strict =
        Policy::parse("allowed_verdicts = [\"no-acquisition-record\"]\nrequire_gpu_execution = true\n", "strict.toml")
            .unwrap();
    let plan = node::plan(&w.ledger, &w.log_key, &strict, req(), NOW).unwrap();
    let err = execution_target(&plan, Executor::Cpu, never).unwrap_err();
    assert!(err.to_string().contains("requires the placed GPU"), "{err}");
}

/// A lying node: `honest`'s record with its first GPU's citation changed by `lie`, signed by the
/// node key with counter `honest + bump` and appended; the report file for it.
fn lying_report(
    w: &World,
    honest: &ReportFile,
    bump: u64,
    lie: impl Fn(&mut chipledger_domain::records::RunGpu, &World, &chipledger_domain::note::Checkpoint),
) -> ReportFile {
    let env = chipledger_domain::dsse::Envelope::from_json(honest.envelope.as_bytes()).unwrap();
    let chipledger_domain::records::Record::RunProvenance(mut record) =
        chipledger_domain::records::Record::from_payload(&env.payload_bytes().unwrap()).unwrap()
    else {
        panic!()
    };
    let cp =
        chipledger_domain::note::open_checkpoint(record.checkpoint.as_bytes(), std::slice::from_ref(&w.log_key), None)
            .unwrap()
            .checkpoint;
    lie(&mut record.gpus[0], w, &cp);
    record.run_id = node::new_run_id();
    record.counter += bump;
    node::submit(&w.ledger, &w.log_key, &w.node, &record, &honest.prompt, &honest.output).unwrap()
}

#[test]
fn a_report_citing_anything_but_an_attestation_of_its_gpu_with_its_sku_fails_verification() {
    use chipledger_domain::log::LogClient;
    let w = world();
    let honest = run(&w);
    report::verify(&honest, Some(&w.log_key), None).unwrap();
    // A file that drops the cited entry cannot be judged.
    let mut stripped = honest.clone();
    stripped.attestations.clear();
    let err = report::verify(&stripped, Some(&w.log_key), None).unwrap_err().to_string();
    assert!(err.contains("does not carry entry 3"), "{err}");
    // Entry 2 is the node key's enrollment: in the log, included under the checkpoint, not an
    // attestation.
    let not_an_attestation = lying_report(&w, &honest, 1, |g, w, cp| {
        let e = LogClient::entry(&w.ledger, 2).unwrap();
        g.attestation.log_index = 2;
        g.attestation.leaf_hash = e.leaf_hash;
        g.attestation.inclusion_proof = LogClient::inclusion_proof(&w.ledger, 2, cp.size).unwrap();
    });
    let err = report::verify(&not_an_attestation, Some(&w.log_key), None).unwrap_err().to_string();
    assert!(err.contains("entry 2, cited as the attestation of") && err.contains("key-enrollment"), "{err}");
    // The attestation entry, cited for a GPU it does not attest.
    let other_gpu = lying_report(&w, &honest, 2, |g, _, _| {
        g.uuid = GpuUuid::parse("GPU-ffffffff-c686-6821-79a8-000000000009").unwrap()
    });
    let err = report::verify(&other_gpu, Some(&w.log_key), None).unwrap_err().to_string();
    assert!(err.contains("is an attestation of other GPUs"), "{err}");
    // The right entry, another SKU or class than its facts give.
    let other_sku = lying_report(&w, &honest, 3, |g, _, _| g.sku = Some("H100-SXM5-80GB".into()));
    let err = report::verify(&other_sku, Some(&w.log_key), None).unwrap_err().to_string();
    assert!(err.contains("is a H100-SXM5-80GB, but its attestation at entry 3 gives H800-SXM5-80GB"), "{err}");
    let other_class = lying_report(&w, &honest, 4, |g, _, _| g.classification = "not 3A090".into());
    let err = report::verify(&other_class, Some(&w.log_key), None).unwrap_err().to_string();
    assert!(err.contains("under the Oct 2023 rule"), "{err}");
}
