//! Inference-node benchmarks: placement over a 100,000-GPU inventory, and the provenance
//! overhead of one run (fleet read at a checkpoint + placement + report with inclusion proofs +
//! sign + append + receipt checks) against a local ledger. Decode speed is `benches/decode.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

use std::sync::Arc;

use chipledger_domain::fingerprint::{GpuFacts, GpuUuid};
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::{Clock, FixedClock};
use chipledger_domain::records::{
    sign_record, AttestedGpu, DriverFacts, GpuAttestation, HostFacts, KeyEnrollment, ProbeSource, Role, RunTimings,
    Sampling, FORMAT_VERSION,
};
use chipledger_domain::rules::VerdictKind;
use chipledger_inference::node::{self, Execution, NodeKey};
use chipledger_inference::placement::{place, Candidate};
use chipledger_inference::policy::Policy;
use chipledger_inference::requirements::{preset, Requirements};
use chipledger_ledger::Ledger;
use criterion::{criterion_group, criterion_main, Criterion};
use time::macros::datetime;

const NOW: time::OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

fn inventory(n: u32) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            uuid: GpuUuid::parse(&format!("GPU-00000000-0000-0000-0000-{i:012x}")).unwrap(),
            host: format!("hgx-{:05}", i / 8),
            serial: Some(format!("{i:013}")),
            sku: Some(if i % 3 == 0 { "H200-SXM5-141GB" } else { "H800-SXM5-80GB" }.into()),
            memory_total_bytes: Some(if i % 3 == 0 { 143_771 } else { 81_559 } * 1024 * 1024),
            source: if i % 5 == 0 { ProbeSource::NvidiaSmiXml } else { ProbeSource::Nvml },
            observed_at: NOW - time::Duration::minutes(i64::from(i % 240)),
            anomalies: vec![],
            verdict: if i % 7 == 0 { VerdictKind::NoAcquisitionRecord } else { VerdictKind::Lawful },
            classification: Some("3A090.a.1".into()),
            busy: i % 11 == 0,
            attestation_index: u64::from(i),
            fingerprint_digest: chipledger_domain::merkle::Hash([0; 32]),
            evidence: chipledger_domain::standing::Evidence::of(if i % 5 == 0 {
                ProbeSource::NvidiaSmiXml
            } else {
                ProbeSource::Nvml
            }),
            fact_anomalies: vec![],
            ueid: None,
            licensed_to: None,
            location: None,
            pci_bus_id: None,
        })
        .collect()
}

fn placement(c: &mut Criterion) {
    let policy = Policy::builtin();
    let inv = inventory(100_000);
    let r1 = Requirements::new(preset("deepseek-r1").unwrap(), Some(8192));
    let small = Requirements::new(preset("r1-distill-qwen-7b").unwrap(), Some(4096));
    let mut g = c.benchmark_group("placement");
    g.sample_size(20);
    g.bench_function("100k GPUs, DeepSeek-R1 (multi-GPU)", |b| b.iter(|| place(&policy, &inv, &r1, NOW)));
    g.bench_function("100k GPUs, R1-Distill-Qwen-7B (one GPU)", |b| b.iter(|| place(&policy, &inv, &small, NOW)));
    g.finish();
}

fn provenance(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(NOW));
    let (ledger, info) =
        Ledger::init(&dir.path().join("ledger"), "bench.example/log", clock, &mut rand_core::OsRng).unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let agent = SigningKey::from_seed(&[1; 32]);
    let node_key = SigningKey::from_seed(&[2; 32]);
    for (i, (k, role, host)) in
        [(&agent, Role::Agent, "hgx-01"), (&node_key, Role::Node, "node-01")].into_iter().enumerate()
    {
        let e = KeyEnrollment {
            format_version: FORMAT_VERSION,
            counter: 2 + i as u64,
            issued_at: NOW,
            key_id: k.key_id(),
            verifier_key: VerifierKey::new(host, k.public_key()).unwrap().to_string(),
            role,
            host: Some(host.into()),
            valid_from: NOW - time::Duration::days(1),
            valid_until: None,
            site: None,
        };
        ledger.append(&[sign_record(&e, &admin).unwrap().to_json()]).unwrap();
    }
    // 8 GPUs on one host, attested live 10 minutes ago; acquisitions are not recorded.
    let catalog = chipledger_domain::catalog::Catalog::embedded().unwrap();
    let gpus = (0..8u32)
        .map(|i| {
            let uuid = GpuUuid::parse(&format!("GPU-34bf77d1-c686-6821-79a8-{i:012x}")).unwrap();
            let facts = GpuFacts {
                uuid: Some(uuid.clone()),
                serial: Some(format!("16513230182{i:02}")),
                name: Some("NVIDIA H800".into()),
                pci_device_id: Some(0x2324),
                pci_subsystem_id: Some(0x17a6_10de),
                memory_total_bytes: Some(81559 * 1024 * 1024),
                ..GpuFacts::default()
            };
            let id = chipledger_domain::identify::identify(catalog, &facts);
            AttestedGpu::new(uuid, facts, id)
        })
        .collect();
    let att = GpuAttestation {
        format_version: FORMAT_VERSION,
        counter: 1,
        observed_at: NOW - time::Duration::minutes(10),
        source: ProbeSource::Nvml,
        host: HostFacts { hostname: "hgx-01".into(), ..HostFacts::default() },
        driver: DriverFacts { nvml_version: Some("12.535.104.05".into()), ..DriverFacts::default() },
        gpus,
        vendor_evidence: vec![],
    };
    ledger.append(&[sign_record(&att, &agent).unwrap().to_json()]).unwrap();
    let log_key = ledger.verifier_key().clone();
    let node = NodeKey { key: node_key, host: "node-01".into(), state: dir.path().join("node-state.json") };
    let policy = Policy::parse("allowed_verdicts = [\"no-acquisition-record\"]\n", "bench.toml").unwrap();
    let req = Requirements::new(preset("r1-distill-qwen-14b").unwrap(), Some(4096));
    let mut g = c.benchmark_group("provenance");
    g.sample_size(30);
    g.bench_function("plan + report + sign + append + checks (8-GPU fleet)", |b| {
        b.iter(|| {
            let plan = node::plan(&ledger, &log_key, &policy, req.clone(), NOW).unwrap();
            let exec = Execution {
                run_id: node::new_run_id(),
                started_at: NOW,
                finished_at: NOW,
                model_name: "bench".into(),
                model_files: vec![],
                prompt: "p".into(),
                output: "o".into(),
                sampling: Sampling { temperature: 0.6, top_p: 0.95, seed: 1, max_tokens: 1 },
                prompt_tokens: 1,
                generated_tokens: 1,
                timings: RunTimings { load_ms: 0, prefill_ms: 0, decode_ms: 0 },
                backend: "cpu".into(),
            };
            let record = node::provenance(&ledger, &node, &plan, &exec).unwrap();
            node::submit(&ledger, &log_key, &node, &record, "p", "o").unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, placement, provenance);
criterion_main!(benches);
