//! Agent benchmarks: parsing an 8-GPU dump (text and XML) and one attest cycle of 8 GPUs
//! against a local ledger (identify with history, sign, spool, submit, verify the receipt and
//! the consistency with the previous checkpoint). Daemon memory and idle CPU are measured by
//! `scripts/bench-agent-daemon` on the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

#[path = "../tests/agent/synth.rs"]
mod synth;

use std::sync::Arc;

use chipledger_agent::attest::{Attestor, AttestorConfig};
use chipledger_agent::smi::parse_dumps;
use chipledger_domain::identify::HistoryRules;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::Clock;
use chipledger_domain::records::{sign_record, HostFacts, KeyEnrollment, Role, FORMAT_VERSION};
use chipledger_ledger::{Ledger, SystemClock};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/nvidia-smi/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn parse(c: &mut Criterion) {
    let text = synth::hgx_text(&data("h800-sxm5-80gb-liguodongiot-llm-action.txt"), 8);
    let xml = synth::hgx_xml(&data("a100-sxm4-80gb-influxdata-telegraf.xml"), 8);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("nvidia-smi -q, 8 GPUs", |b| b.iter(|| parse_dumps(&[("hgx.txt", &text)]).unwrap()));
    g.throughput(Throughput::Bytes(xml.len() as u64));
    g.bench_function("nvidia-smi -q -x, 8 GPUs", |b| b.iter(|| parse_dumps(&[("hgx.xml", &xml)]).unwrap()));
    g.finish();
}

fn attest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (ledger, info) =
        Ledger::init(&dir.path().join("ledger"), "bench.example/log", clock.clone(), &mut rand_core::OsRng).unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let key = SigningKey::from_seed(&[1; 32]);
    let now = clock.now();
    let enrollment = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter: 2,
        issued_at: now,
        key_id: key.key_id(),
        verifier_key: VerifierKey::new("hgx-01", key.public_key()).unwrap().to_string(),
        role: Role::Agent,
        host: Some("hgx-01".into()),
        valid_from: now - time::Duration::days(1),
        valid_until: None,
        site: None,
    };
    ledger.append(&[sign_record(&enrollment, &admin).unwrap().to_json()]).unwrap();
    let log_key = ledger.verifier_key().clone();
    let mut attestor = Attestor::new(AttestorConfig {
        key,
        log: Box::new(ledger),
        log_key,
        state_dir: dir.path().join("agent"),
        clock,
        history_rules: HistoryRules::default(),
    })
    .unwrap();
    let report =
        parse_dumps(&[("hgx.txt", &synth::hgx_text(&data("h800-sxm5-80gb-liguodongiot-llm-action.txt"), 8))]).unwrap();
    let host = HostFacts { hostname: "hgx-01".into(), ..HostFacts::default() };
    let mut g = c.benchmark_group("attest");
    g.sample_size(30);
    g.bench_function("8 GPUs, local ledger, full cycle", |b| {
        b.iter(|| {
            let att = attestor.build(&report, host.clone()).unwrap();
            attestor.sign_and_spool(&att).unwrap();
            let f = attestor.flush().unwrap();
            assert_eq!(f.accepted.len(), 1);
        })
    });
    g.finish();
}

criterion_group!(benches, parse, attest);
criterion_main!(benches);
