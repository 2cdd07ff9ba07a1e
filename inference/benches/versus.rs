//! Our runner against llama.cpp on the same GGUF files, in the same run (#20): prefill of a
//! 256-token prompt as one batch, then 128 greedy tokens one at a time, each engine on 2 threads,
//! the median of 3 runs each, with the ratios and the machine's memory-bandwidth bound.
//!
//! llama.cpp runs through llama-cpp-python (`target/llama-server-venv`, built from source by
//! `scripts/openai-test`) and `scripts/llama-bench.py`, fed the exact token ids our tokenizer
//! gave, so both engines see the same prompt. Models: SmolLM2-135M-Instruct Q4_1 (real weights,
//! `CHIPLEDGER_SMOLLM2_GGUF`), and random-weight files from `model tiny`: Qwen2-0.5B's shape in
//! Q8_0 and Q4_0, and R1-Distill-Qwen-1.5B's shape in Q4_0 (written once under
//! `target/bench-models/`).
//! Ours is the runner's default (the native engine, `runner::Engine::Native`, wherever it computes
//! the file); with `CHIPLEDGER_BENCH_REFERENCE=1` candle's models (`Engine::Reference`, what the
//! runner used before the native engine) are measured too, in the same run.
//! Run: `cargo bench -p chipledger-inference --bench versus`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chipledger_inference::runner::{Backend, Engine, Model};
use chipledger_inference::tiny::{self, Arch, TinyShape};

const PROMPT_TOKENS: usize = 256;
const DECODE_TOKENS: usize = 128;
const RUNS: usize = 3;
const THREADS: usize = 2;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/llama-server-venv/bin/python");
    if !python.exists() {
        println!("versus: needs target/llama-server-venv (scripts/openai-test builds llama-cpp-python there)");
        return;
    }
    let dir = root.join("target/bench-models");
    let mut models: Vec<(String, PathBuf)> = Vec::new();
    if let Some(smol) = std::env::var_os("CHIPLEDGER_SMOLLM2_GGUF") {
        models.push(("SmolLM2-135M Q4_1".into(), PathBuf::from(smol)));
    }
    let r1_1_5b = TinyShape {
        hidden: 1536,
        layers: 28,
        heads: 12,
        kv_heads: 2,
        intermediate: 8960,
        max_context: 4096,
        vocab: Some(151_936),
        f16: false,
    };
    for (name, shape, quant) in [
        ("Qwen2-0.5B shape Q8_0", TinyShape::qwen2_0_5b(), "q8_0"),
        ("Qwen2-0.5B shape Q4_0", TinyShape::qwen2_0_5b(), "q4_0"),
        ("R1-Distill-1.5B shape Q4_0", r1_1_5b, "q4_0"),
    ] {
        let path = dir.join(format!("{}.gguf", name.to_lowercase().replace(' ', "-")));
        if !path.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            eprintln!("writing {} …", path.display());
            tiny::write_gguf(&path, Arch::Qwen2, shape, 1, quant).unwrap();
        }
        models.push((name.into(), path));
    }
    println!(
        "prefill {PROMPT_TOKENS} tokens as one batch, decode {DECODE_TOKENS} greedy tokens; {THREADS} threads each; median of {RUNS}"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9}",
        "model", "ours pre", "llama pre", "ratio", "ours dec", "llama dec", "ratio", "dec bound"
    );
    let bandwidth = support::read_bandwidth_gbs();
    let only = std::env::var("CHIPLEDGER_BENCH_ONLY").unwrap_or_default();
    let reference = std::env::var_os("CHIPLEDGER_BENCH_REFERENCE").is_some();
    let mut engines = Vec::new();
    for (name, path) in models.iter().filter(|(n, _)| n.contains(only.as_str())) {
        let (ids, ours_pre, ours_dec, ours_first, engine) = ours(path, Engine::Native);
        engines.push(format!("{name}: {engine}"));
        if reference {
            let (_, pre, dec, first, engine) = ours(path, Engine::Reference);
            println!(
                "{name:<28} {pre:>10.1} {:>10} {:>7} {dec:>10.1} {:>10} {:>7} {:>9} ({engine}, first token {first})",
                "", "", "", "", ""
            );
        }
        // Kept beside the models: the exact prompt both engines saw.
        let ids_file = dir.join(format!("{}.prompt-ids.json", name.to_lowercase().replace(' ', "-")));
        std::fs::write(&ids_file, serde_json::to_vec(&ids).unwrap()).unwrap();
        let out = Command::new(&python)
            .arg(root.join("scripts/llama-bench.py"))
            .args([path.to_str().unwrap(), ids_file.to_str().unwrap()])
            .args([DECODE_TOKENS.to_string(), RUNS.to_string(), THREADS.to_string()])
            // llama.cpp's default (spinning) OpenMP waits: the engines run one after the other, and
            // passive waits cost its decode two thirds of its speed.
            .output()
            .unwrap();
        if !out.status.success() {
            println!(
                "{name:<28} llama.cpp failed: {}",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
            continue;
        }
        let runs: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let llama_pre = median(runs.iter().map(|r| r["prefill_tok_s"].as_f64().unwrap()).collect());
        let llama_dec = median(runs.iter().map(|r| r["decode_tok_s"].as_f64().unwrap()).collect());
        // Both engines read the same weights: their greedy first token after the prompt agrees.
        let llama_first = runs.first().and_then(|r| r["first"].as_u64()).unwrap_or(u64::MAX);
        let agree = runs.iter().all(|r| r["first"].as_u64() == Some(u64::from(ours_first)));
        let bound = bandwidth * 1e9 / std::fs::metadata(path).unwrap().len() as f64;
        println!(
            "{name:<28} {ours_pre:>10.1} {llama_pre:>10.1} {:>6.2}x {ours_dec:>10.1} {llama_dec:>10.1} {:>6.2}x {bound:>9.1} {}",
            ours_pre / llama_pre,
            ours_dec / llama_dec,
            if agree { "same first token".to_string() } else { format!("first token {ours_first} vs {llama_first}") }
        );
    }
    println!("tok/s; dec bound = memory read bandwidth ({bandwidth:.1} GB/s) / file size");
    println!("ours: {}", engines.join("; "));
}

/// Our runner on `engine`: the prompt's token ids, median prefill and decode tok/s over `RUNS`,
/// the greedy first token after the prompt, and what computed it.
fn ours(path: &Path, engine: Engine) -> (Vec<u32>, f64, f64, u32, String) {
    let mut m = Model::load_with(path, Backend::Cpu, engine, &mut |_, _| {}).unwrap();
    let text = "Which GPUs ran this workload, where were they bought, under which licence, and by whom? ".repeat(64);
    let mut ids = m.encode(&text).unwrap();
    ids.truncate(PROMPT_TOKENS);
    assert_eq!(ids.len(), PROMPT_TOKENS, "the prompt is shorter than {PROMPT_TOKENS} tokens");
    let (mut pre, mut dec, mut first) = (Vec::new(), Vec::new(), 0);
    for _ in 0..RUNS {
        m.reset().unwrap();
        let t = Instant::now();
        let logits = m.forward(&ids, 0).unwrap();
        pre.push(ids.len() as f64 / t.elapsed().as_secs_f64());
        let mut next = argmax(&logits);
        first = next;
        let t = Instant::now();
        for i in 0..DECODE_TOKENS {
            next = argmax(&m.forward(&[next], ids.len() + i).unwrap());
        }
        dec.push(DECODE_TOKENS as f64 / t.elapsed().as_secs_f64());
    }
    (ids, median(pre), median(dec), first, m.engine())
}

fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
