//! Scenes 5–6: the fleet as the scheduler and an auditor see it, DeepSeek-R1 671B planned on it,
//! and a run of the tiny model on a qualifying GPU with its provenance signed and appended.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use chipledger_domain::keys::SigningKey;
use chipledger_domain::records::RunProvenance;
use chipledger_inference::node::{self, Execution, NodeKey, Plan, RunContext};
use chipledger_inference::policy::Policy;
use chipledger_inference::report::ReportFile;
use chipledger_inference::requirements::{self, Requirements};
use chipledger_inference::runner::{Backend, Model, SamplingConfig, Segment};
use chipledger_inference::tiny::{self, Arch, TinyShape};

use super::hosts::DEMO_POLICY;
use super::Story;
use crate::output;

/// What scene 4 sets up for the run: the policy, the tiny model and its plan.
pub(super) struct Fleet {
    pub policy: Policy,
    pub tiny_dir: PathBuf,
    pub plan: Plan,
}

/// What scene 5 produced.
pub(super) struct Run {
    pub record: RunProvenance,
    pub file: ReportFile,
    pub report_path: PathBuf,
}

/// Scene 4: the fleet at the latest checkpoint, judged under the demo policy.
pub(super) fn fleet(story: &Story) -> Result<Fleet> {
    let policy = Policy::parse(DEMO_POLICY, "inference/policies/demo.toml")?;
    let tiny_dir = story.dir.join("models").join("tiny-r1-distill-qwen2");
    tiny::write(&tiny_dir, Arch::Qwen2, TinyShape::default(), 7)?;
    let tiny_req = Requirements::new(requirements::from_model_dir(&tiny_dir)?, Some(1024));
    let plan = node::plan(&story.ledger, &story.info.log_verifier_key, &policy, tiny_req, story.clock.now())?;
    println!();
    println!("5. the fleet at checkpoint size {}", plan.fleet.checkpoint.size);
    let mut t =
        output::table(&["host", "SKU", "serial", "source", "class (Oct 2023)", "acquisition", "location", "anomalies"]);
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
            format!("{} (imported)", c.source.as_str()),
            c.classification.clone().unwrap_or_default(),
            c.verdict.label().to_string(),
            c.location.as_ref().map(chipledger_domain::fleet::location_label).unwrap_or_default(),
            anomalies,
        ]);
    }
    println!("{t}");
    Ok(Fleet { policy, tiny_dir, plan })
}

/// Scene 5a: how much DeepSeek-R1 671B needs, and which hosts could hold it.
pub(super) fn plan_r1(story: &Story, fleet: &Fleet) -> Result<()> {
    println!();
    println!("6. planning DeepSeek-R1 (671B) on this fleet, policy {:?}", fleet.policy.name);
    let Some(shape) = requirements::preset("deepseek-r1") else { bail!("the deepseek-r1 preset is missing") };
    let r1 = Requirements::new(shape, Some(8192));
    let r1_plan =
        chipledger_inference::placement::place(&fleet.policy, &fleet.plan.fleet.candidates, &r1, story.clock.now());
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
        // Nor can it be split: each host here has one GPU, and not every GPU qualifies.
        match chipledger_inference::placement::place_across_hosts(
            &fleet.policy,
            &fleet.plan.fleet.candidates,
            &r1,
            story.clock.now(),
            &chipledger_inference::placement::Fabric::one(),
        ) {
            Ok(m) => println!(
                "   → split across {} hosts: tensor parallel over {} GPUs in each, pipeline parallel across them",
                m.pipeline_parallel, m.tensor_parallel
            ),
            Err(why) => println!("   → nor split across hosts: {why}"),
        }
        println!(
            "     (two qualifying 8×H800 or 8×H100 hosts would: `chipledger plan --model deepseek-r1 --engine vllm`)"
        );
    }
    Ok(())
}

/// Scene 5b: the tiny model on the placed GPU's node (the CPU executes: said in the report), its
/// provenance signed by the node key and appended.
pub(super) fn run_tiny(story: &Story, fleet: &Fleet, node_key: SigningKey) -> Result<Run> {
    let plan = &fleet.plan;
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
    let mut model = Model::load(&fleet.tiny_dir, Backend::Cpu, &mut |_, _| {})?;
    let load_ms = load.elapsed().as_millis() as u64;
    let prompt = "Which GPUs ran this, and were they lawfully acquired?";
    let sampling = SamplingConfig { max_tokens: 32, seed: 7, ..SamplingConfig::default() };
    let started_at = story.clock.now();
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
    let context = RunContext { prompt, sampling, load_ms, started_at, finished_at: story.clock.now() };
    let exec = Execution::new(&model, &g, context);
    let node = NodeKey { key: node_key, host: "node-01".into(), state: story.dir.join("node-state.json") };
    let record = node::provenance(&story.ledger, &node, plan, &exec)?;
    let file = node::submit(&story.ledger, &story.info.log_verifier_key, &node, &record, prompt, &g.text)?;
    let report_path = story.dir.join("runs").join(format!("{}.json", record.run_id));
    std::fs::create_dir_all(story.dir.join("runs"))?;
    std::fs::write(&report_path, serde_json::to_vec_pretty(&file)?)?;
    Ok(Run { record, file, report_path })
}
