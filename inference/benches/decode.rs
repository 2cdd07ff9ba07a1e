//! Decode speed of the runner against a bare candle loop on the same model in the same run,
//! with the machine's memory-bandwidth bound alongside. Model: Qwen2-0.5B's shape (hidden 896,
//! 24 layers, 14/2 heads, MLP 4864, vocabulary 151,936, untied output) with random weights, as
//! F16 safetensors (computed in F32 on the CPU, as the runner does) and as a Q8_0 GGUF. Both
//! loops decode greedily from the same prompt; the models are generated once under
//! `target/bench-models/`. `CHIPLEDGER_BENCH_TOKENS` sets the tokens per run (default 64).
//! Run: `cargo bench -p chipledger-inference --bench decode`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{quantized_qwen2, qwen2};
use chipledger_inference::runner::{Backend, ChatTemplate, Model, SamplingConfig};
use chipledger_inference::tiny::{self, Arch, TinyShape};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test` runs bench targets without --bench: nothing to do then
    }
    let tokens: usize = std::env::var("CHIPLEDGER_BENCH_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-models");
    let f16_dir = dir.join("qwen2-0.5b-shape-f16");
    let q8_path = dir.join("qwen2-0.5b-shape-q8_0.gguf");
    let shape = TinyShape { f16: true, ..TinyShape::qwen2_0_5b() };
    if !f16_dir.join("model.safetensors").exists() {
        eprintln!("writing the F16 model to {} …", f16_dir.display());
        tiny::write(&f16_dir, Arch::Qwen2, shape, 1).unwrap();
    }
    if !q8_path.exists() {
        eprintln!("writing the Q8_0 model to {} …", q8_path.display());
        tiny::write_gguf(&q8_path, Arch::Qwen2, TinyShape::qwen2_0_5b(), 1, "q8_0").unwrap();
    }
    let bandwidth = support::read_bandwidth_gbs();
    println!("memory read bandwidth (2 threads, 1 GiB): {bandwidth:.1} GB/s");
    println!("{tokens} greedy tokens per run, candle threads: {}", candle_core::utils::get_num_threads());
    println!(
        "{:<28} {:>12} {:>12} {:>9} {:>14} {:>10}",
        "model", "bare tok/s", "run tok/s", "overhead", "bytes/token", "% of bound"
    );

    // F16 safetensors, computed in F32.
    let bytes_f32 = param_count(&f16_dir) * 4;
    let bare = bare_safetensors(&f16_dir, tokens);
    let ours = runner(&f16_dir, tokens);
    report("F16 file (F32 compute)", bare, ours, bytes_f32, bandwidth);

    let q8_bytes = std::fs::metadata(&q8_path).unwrap().len();
    let bare = bare_gguf(&q8_path, tokens);
    let ours = runner(&q8_path, tokens);
    report("Q8_0 GGUF", bare, ours, q8_bytes, bandwidth);
}

fn report(name: &str, bare: f64, ours: f64, bytes_per_token: u64, bandwidth: f64) {
    let bound = bandwidth * 1e9 / bytes_per_token as f64;
    println!(
        "{:<28} {:>12.2} {:>12.2} {:>8.1}% {:>14} {:>9.0}%",
        name,
        bare,
        ours,
        (1.0 - ours / bare) * 100.0,
        bytes_per_token,
        ours / bound * 100.0
    );
}

fn param_count(dir: &Path) -> u64 {
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors.values().map(|t| t.elem_count() as u64).sum()
}

const PROMPT: &str = "Which GPUs ran this workload, and were they lawfully acquired?";

fn prompt_ids() -> Vec<u32> {
    let t = tiny::tokenizer(Some(151_936)).unwrap();
    t.encode(ChatTemplate::DeepSeekR1.apply(PROMPT), false).unwrap().get_ids().to_vec()
}

/// `chipledger run`'s path: the runner with greedy sampling and streaming decode.
fn runner(path: &Path, tokens: usize) -> f64 {
    let mut m = Model::load(path, Backend::Cpu, &mut |_, _| {}).unwrap();
    let sampling = SamplingConfig { temperature: 0.0, top_p: 1.0, seed: 1, max_tokens: tokens };
    let g = m.generate(&ChatTemplate::DeepSeekR1.apply(PROMPT), sampling, &mut |_, _| {}).unwrap();
    assert!(g.tokens.len() >= tokens / 2, "stopped early: {:?}", g.stop);
    g.decode_tokens_per_second()
}

fn argmax(logits: &Tensor) -> u32 {
    logits.squeeze(0).unwrap().flatten_all().unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap()
}

/// A bare candle loop: forward, argmax, repeat; decode tokens/s.
fn greedy_loop(tokens: usize, mut forward: impl FnMut(&Tensor, usize) -> Tensor) -> f64 {
    let prompt = prompt_ids();
    let input = Tensor::new(prompt.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut next = argmax(&forward(&input, 0));
    let start = Instant::now();
    for i in 0..tokens - 1 {
        let input = Tensor::new(&[next], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        next = argmax(&forward(&input, prompt.len() + i));
    }
    (tokens - 1) as f64 / start.elapsed().as_secs_f64()
}

fn bare_safetensors(dir: &Path, tokens: usize) -> f64 {
    let cfg: qwen2::Config = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let mut model = qwen2::ModelForCausalLM::new(&cfg, vb).unwrap();
    greedy_loop(tokens, |x, pos| model.forward(x, pos).unwrap())
}

fn bare_gguf(path: &Path, tokens: usize) -> f64 {
    let mut file = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut model = quantized_qwen2::ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    greedy_loop(tokens, |x, pos| model.forward(x, pos).unwrap())
}
