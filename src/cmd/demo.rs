//! `chipledger demo`: the whole story on this machine, in a fresh data directory, on the
//! embedded SQLite ledger, without a GPU. What is simulated is said so as it happens.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chipledger_agent::attest::{Attestor, AttestorConfig};
use chipledger_agent::smi::parse_dumps;
use chipledger_domain::country::Country;
use chipledger_domain::identify::HistoryRules;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::Clock;
use chipledger_domain::records::{sign_record, Acquisition, HostFacts, KeyEnrollment, Role, FORMAT_VERSION};
use chipledger_inference::node::{self, Execution, NodeKey, RunContext};
use chipledger_inference::policy::Policy;
use chipledger_inference::report;
use chipledger_inference::requirements::{self, Requirements};
use chipledger_inference::runner::{Backend, Model, SamplingConfig, Segment};
use chipledger_inference::tiny::{self, Arch, TinyShape};
use chipledger_ledger::{Ledger, LedgerConfig, SystemClock, ADMIN_KEY_FILE};
use time::Date;

use crate::output;

/// The real nvidia-smi dumps shipped with the project (sources: agent/tests/data/nvidia-smi/SOURCES.md).
const A100_XML: &str = include_str!("../../agent/tests/data/nvidia-smi/a100-sxm4-80gb-influxdata-telegraf.xml");
const H100_TXT: &str =
    include_str!("../../agent/tests/data/nvidia-smi/h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.txt");
const H100_NVLINK: &str =
    include_str!("../../agent/tests/data/nvidia-smi/h100-sxm5-80gb-nvlink-s-utkuozdemir-nvidia_gpu_exporter.txt");
const H800_TXT: &str = include_str!("../../agent/tests/data/nvidia-smi/h800-sxm5-80gb-liguodongiot-llm-action.txt");
const DEMO_POLICY: &str = include_str!("../../inference/policies/demo.toml");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Then serve the dashboard on loopback and print an auditor's login token (Ctrl-C stops).
    #[arg(long)]
    serve: bool,
    /// Where `--serve` listens.
    #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
    listen: String,
}

/// A simulated host: its name and the dumps its agent imports.
struct Host {
    name: &'static str,
    what: &'static str,
    files: Vec<(&'static str, String)>,
}

fn hosts() -> Vec<Host> {
    // The H100 capture masked UUID and serial to zeros; this simulated host gets its own.
    let h100 = H100_TXT
        .replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-9d2f31c4-5b1e-4c7a-8e60-2b7f0c1d4a11")
        .replace("0000000000000", "1654423001593");
    let h100_links =
        H100_NVLINK.replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-9d2f31c4-5b1e-4c7a-8e60-2b7f0c1d4a11");
    // The planted anomaly: the same H100 dump with its device id edited to the H800's 0x2324.
    let relabelled = H100_TXT
        .replace("0x233010DE", "0x232410DE")
        .replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-6e1a0b77-20c4-4f3e-9a51-7c2d8e9f0b35")
        .replace("0000000000000", "1651323099999");
    let relabelled_links =
        H100_NVLINK.replace("GPU-00000000-0000-0000-0000-000000000000", "GPU-6e1a0b77-20c4-4f3e-9a51-7c2d8e9f0b35");
    vec![
        Host {
            name: "dgx-a100-01",
            what: "A100 host (real nvidia-smi -q -x dump)",
            files: vec![("a100.xml", A100_XML.to_string())],
        },
        Host {
            name: "hgx-h100-01",
            what: "H100 host (real nvidia-smi -q + nvlink -s dumps)",
            files: vec![("h100.txt", h100), ("h100-nvlink.txt", h100_links)],
        },
        Host {
            name: "hgx-h800-01",
            what: "H800 host (real nvidia-smi -q dump)",
            files: vec![("h800.txt", H800_TXT.to_string())],
        },
        Host {
            name: "hgx-h800-02",
            what: "an \"H800\" with H100 NVLink (PLANTED anomaly: the H100 dump with its device id edited)",
            files: vec![("h800-suspect.txt", relabelled), ("h800-suspect-nvlink.txt", relabelled_links)],
        },
    ]
}

pub fn run(data_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let started = Instant::now();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = match data_dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(&d).map(|mut r| r.next().is_some()).unwrap_or(true) {
                bail!("{} is not empty; the demo needs a fresh data directory", d.display());
            }
            d
        }
        None => std::env::temp_dir().join(format!(
            "chipledger-demo-{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp()
        )),
    };
    println!("chipledger demo — every step on this machine, no GPU needed");
    println!("SIMULATED: four GPU hosts whose agents import real nvidia-smi dumps (evidence, not live probes), and a tiny random-weight model.");
    println!();

    // 1. The log, an admin key, three hosts' agents plus the planted one, one inference node.
    println!("1. ledger: {}", dir.display());
    let (ledger, info) = Ledger::init(&dir, "demo.chipledger.local/log", clock.clone(), &mut rand_core::OsRng)
        .with_context(|| format!("creating the demo ledger in {}", dir.display()))?;
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(dir.join(ADMIN_KEY_FILE))?)?;
    println!("   log key {}", info.log_verifier_key);
    let mut counter = 1;
    let mut enroll = |key: &SigningKey, role: Role, name: &str| -> Result<()> {
        counter += 1;
        let now = clock.now();
        let e = KeyEnrollment {
            format_version: FORMAT_VERSION,
            counter,
            issued_at: now,
            key_id: key.key_id(),
            verifier_key: VerifierKey::new(name, key.public_key())?.to_string(),
            role,
            host: Some(name.to_string()),
            valid_from: now,
            valid_until: None,
        };
        ledger.append(&[sign_record(&e, &admin)?.to_json()])?;
        Ok(())
    };
    let hosts = hosts();
    let mut agent_keys = Vec::new();
    for h in &hosts {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        enroll(&key, Role::Agent, h.name)?;
        agent_keys.push(key);
    }
    let node_key = SigningKey::generate(&mut rand_core::OsRng);
    enroll(&node_key, Role::Node, "node-01")?;
    println!("   enrolled {} agent keys and 1 inference-node key (admin-signed)", hosts.len());

    // 2. Attestations: each agent imports its dumps, identifies, signs, submits, checks.
    println!();
    println!("2. attestations (imported evidence)");
    for (h, key) in hosts.iter().zip(agent_keys) {
        let files: Vec<(&str, &str)> = h.files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let report = parse_dumps(&files)?;
        let log = Ledger::open(&dir, LedgerConfig::default(), clock.clone())?;
        let mut attestor = Attestor::new(AttestorConfig {
            key,
            log: Box::new(log),
            log_key: info.log_verifier_key.clone(),
            state_dir: dir.join("agents").join(h.name),
            clock: clock.clone(),
            history_rules: HistoryRules::default(),
        })?;
        let host = HostFacts { hostname: h.name.to_string(), os: Some("simulated".into()), ..HostFacts::default() };
        let att = attestor.build(&report, host)?;
        attestor.sign_and_spool(&att)?;
        let flush = attestor.flush()?;
        let Some(accepted) = flush.accepted.first() else {
            bail!("the demo ledger did not accept {}'s attestation", h.name)
        };
        println!("   {:<12} {} → log index {}, receipt verified", h.name, h.what, accepted.receipt.index);
    }

    // 3. Acquisitions, signed by the admin.
    println!();
    println!("3. acquisition records");
    let acquisitions = [
        (
            "1650522003820",
            "A100-SXM4-80GB",
            "2022-06-01",
            "US",
            "CN",
            None,
            "shipped before the first control (26 Aug 2022)",
        ),
        (
            "1654423001593",
            "H100-SXM5-80GB",
            "2024-03-01",
            "US",
            "AE",
            Some("BIS licence D-123456 (simulated)"),
            "shipped under a licence",
        ),
        (
            "1651323018291",
            "H800-SXM5-80GB",
            "2024-02-01",
            "SG",
            "CN",
            None,
            "shipped after the Oct 2023 rule, no licence",
        ),
    ];
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    for (i, (serial, sku, date, from, to, licence, what)) in acquisitions.iter().enumerate() {
        let a = Acquisition {
            format_version: FORMAT_VERSION,
            counter: counter + 1 + i as u64,
            recorded_at: clock.now(),
            serials: vec![serial.to_string()],
            sku: Some(sku.to_string()),
            supplier: "Example Distributor Ltd (simulated)".into(),
            invoice_reference: format!("INV-DEMO-{}", i + 1),
            invoice_digest: None,
            shipped_on: Date::parse(date, &fmt)?,
            ship_from: Country::parse(from)?,
            ship_to: Country::parse(to)?,
            end_user: "Example AI Lab (simulated)".into(),
            licence: licence.map(str::to_string),
            note: String::new(),
        };
        let r = ledger.append(&[sign_record(&a, &admin)?.to_json()])?;
        println!("   {sku} serial {serial}: {from} → {to} on {date}, {what} (index {})", r[0].index);
    }

    // 4. The fleet, as the scheduler and an auditor see it.
    let policy = Policy::parse(DEMO_POLICY, "inference/policies/demo.toml")?;
    let tiny_dir = dir.join("models").join("tiny-r1-distill-qwen2");
    tiny::write(&tiny_dir, Arch::Qwen2, TinyShape::default(), 7)?;
    let tiny_req = Requirements::new(requirements::from_model_dir(&tiny_dir)?, Some(1024));
    let plan = node::plan(&ledger, &info.log_verifier_key, &policy, tiny_req, clock.now())?;
    println!();
    println!("4. the fleet at checkpoint size {}", plan.fleet.checkpoint.size);
    let mut t = output::table(&["host", "SKU", "serial", "source", "class (Oct 2023)", "acquisition", "anomalies"]);
    for c in &plan.fleet.candidates {
        let anomalies = if c.anomalies.is_empty() {
            "none".to_string()
        } else {
            c.anomalies.iter().map(|a| format!("[{:?}] {}", a.severity(), a.explain())).collect::<Vec<_>>().join("\n")
        };
        t.add_row(vec![
            c.host.clone(),
            c.sku.clone().unwrap_or_else(|| "needs review".into()),
            c.serial.clone().unwrap_or_default(),
            format!(
                "{} (imported)",
                serde_json::to_value(c.source).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ),
            c.classification.clone().unwrap_or_default(),
            c.verdict.label().to_string(),
            anomalies,
        ]);
    }
    println!("{t}");

    // 5. DeepSeek-R1 671B on this fleet, then a run of the tiny model.
    println!();
    println!("5. planning DeepSeek-R1 (671B) on this fleet, policy {:?}", policy.name);
    let r1 = Requirements::new(requirements::preset("deepseek-r1").unwrap_or_else(|| unreachable!()), Some(8192));
    let r1_plan = chipledger_inference::placement::place(&policy, &plan.fleet.candidates, &r1, clock.now());
    println!("   needs {:.1} GiB (FP8 weights + KV cache at 8k context + overhead)", r1.total_gib());
    for h in &r1_plan.hosts {
        println!(
            "   {}: {} qualifying GPU(s), {:.1} GiB — {}",
            h.host,
            h.qualifying_gpus,
            h.qualifying_bytes as f64 / (1u64 << 30) as f64,
            if h.gpus_needed.is_some() { "could hold it" } else { "too small" }
        );
    }
    if !r1_plan.is_placed() {
        println!("   → no host can hold DeepSeek-R1 671B: it needs an 8×H200-class host (8×80 GB is not enough)");
    }
    println!();
    println!("   running an R1-Distill-style request on the tiny model (random weights: the output is noise)");
    if !plan.placement.is_placed() {
        bail!("{}", plan.refusal());
    }
    println!("   placed on {} GPU {}", plan.placement.host.as_deref().unwrap_or("?"), plan.placement.chosen[0]);
    for line in plan.placement.reasons_text() {
        println!("   not used: {line}");
    }
    let load = Instant::now();
    let mut model = Model::load(&tiny_dir, Backend::Cpu, &mut |_, _| {})?;
    let load_ms = load.elapsed().as_millis() as u64;
    let prompt = "Which GPUs ran this, and were they lawfully acquired?";
    let sampling = SamplingConfig { max_tokens: 32, seed: 7, ..SamplingConfig::default() };
    let started_at = clock.now();
    let mut streamed = 0usize;
    let g = model.generate(&model.template().apply(prompt), sampling, &mut |seg, s| {
        if seg == Segment::Thinking || seg == Segment::Answer {
            streamed += s.len();
        }
    })?;
    println!(
        "   generated {} tokens at {:.0} tokens/s on the CPU ({} bytes of noise streamed)",
        g.tokens.len(),
        g.decode_tokens_per_second(),
        streamed
    );
    let exec =
        Execution::new(&model, &g, RunContext { prompt, sampling, load_ms, started_at, finished_at: clock.now() });
    let node = NodeKey { key: node_key, host: "node-01".into(), state: dir.join("node-state.json") };
    let record = node::provenance(&ledger, &node, &plan, &exec)?;
    let file = node::submit(&ledger, &info.log_verifier_key, &node, &record, prompt, &g.text)?;
    let report_path = dir.join("runs").join(format!("{}.json", record.run_id));
    std::fs::create_dir_all(dir.join("runs"))?;
    std::fs::write(&report_path, serde_json::to_vec_pretty(&file)?)?;

    // 6. The provenance report, verified offline, and the whole ledger audited.
    println!();
    println!("6. provenance report {} (log index {})", record.run_id, file.receipt.index);
    println!("   executed on: {} — placed on:", record.backend);
    for gpu in &record.gpus {
        println!("   {} (inclusion proof against checkpoint {})", output::run_gpu(gpu), plan.fleet.checkpoint.size);
    }
    println!(
        "   {} GPU(s) rejected with reasons; policy {:?} digest {}",
        record.rejected.len(),
        record.policy_name,
        output::short(&record.policy_digest.to_hex())
    );
    let verified = report::verify(&file, Some(&info.log_verifier_key), Some(&tiny_dir))?;
    println!(
        "   report verified offline: signature, checkpoints, {} attestation proof(s), prompt/output digests, {} model files",
        verified.gpus_checked, verified.model_files_checked
    );
    let audit = ledger.audit(&mut |_, _| {})?;
    if let Some(p) = &audit.problem {
        bail!("the demo ledger does not verify: {p:?}");
    }
    println!(
        "   ledger verified: {} entries, {} signatures, {} checkpoints; root {}",
        audit.entries,
        audit.signatures_checked,
        audit.checkpoints,
        audit.root.to_hex()
    );
    println!();
    println!(
        "done in {:.1} s. Look around: chipledger --data-dir {} ledger log",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    println!("  chipledger report verify {} --log-key {}", report_path.display(), info.log_verifier_key);
    if !args.serve {
        println!("  chipledger demo --serve   (the same story, then the auditor dashboard in your browser)");
        return Ok(());
    }

    // 7. The dashboard, for an auditor.
    let (_, token) = ledger.create_token("demo auditor", Role::Auditor, &mut rand_core::OsRng)?;
    let token = token.reveal();
    let data_dir = dir.display().to_string();
    println!();
    chipledger_web::serve(Arc::new(ledger), &args.listen, chipledger_web::ServerConfig::default(), move |addr| {
        // A reader that stops reading (a closed pipe) must not stop the server.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "7. dashboard: http://{addr}/  (Ctrl-C stops it)");
        let _ = writeln!(out, "   log in as an auditor with this token (read and export only):");
        let _ = writeln!(out, "   {token}");
        let _ = writeln!(
            out,
            "   an admin token (acquisition form): chipledger --data-dir {data_dir} tokens create --role admin --name you"
        );
        let _ = out.flush();
    })
    .with_context(|| format!("serving the dashboard on {}", args.listen))?;
    Ok(())
}
