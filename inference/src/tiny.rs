//! `chipledger model tiny`: a deterministic random-weight model (config.json, model.safetensors,
//! tokenizer.json) of the `qwen2` or `llama` architecture, from a seeded generator of our own.
//! Real loading code and a real byte-level BPE tokenizer with DeepSeek-R1's special tokens, noise
//! output. Tests and the demo use it; no weights are ever downloaded.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::runner::{ASSISTANT, BOS, EOS, USER};
use crate::Error;

/// Which architecture to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Qwen2,
    Llama,
}

/// The model's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TinyShape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub max_context: usize,
}

impl Default for TinyShape {
    fn default() -> Self {
        TinyShape { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, max_context: 2048 }
    }
}

/// The special tokens, in id order after the 256 byte tokens.
pub const SPECIAL: [&str; 6] = [BOS, EOS, USER, ASSISTANT, "<think>", "</think>"];

/// SplitMix64: a tiny, portable, seeded generator (the model is the same on every machine).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Normal(0, std) by Box–Muller.
    pub fn normal(&mut self, std: f64) -> f32 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
    }
}

/// The tokenizer: 256 byte-level tokens, then [`SPECIAL`].
pub fn tokenizer() -> Result<Tokenizer, Error> {
    let tok_err = |e: tokenizers::Error| Error::Model { path: "tokenizer.json".into(), message: e.to_string() };
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let vocab: tokenizers::models::bpe::Vocab =
        alphabet.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, Vec::new()).build().map_err(tok_err)?;
    let mut t = Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    t.with_decoder(Some(ByteLevel::new(false, true, true)));
    t.add_special_tokens(SPECIAL.iter().map(|s| AddedToken::from(*s, true))).map_err(tok_err)?;
    Ok(t)
}

/// Writes the model to `dir` (created if missing). Returns the vocabulary size.
pub fn write(dir: &Path, arch: Arch, shape: TinyShape, seed: u64) -> Result<usize, Error> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let tokenizer = tokenizer()?;
    let vocab = tokenizer.get_vocab_size(true);
    let tpath = dir.join("tokenizer.json");
    tokenizer.save(&tpath, false).map_err(|e| Error::Model { path: tpath.clone(), message: e.to_string() })?;
    let eos = tokenizer.token_to_id(EOS).unwrap_or(0);
    let bos = tokenizer.token_to_id(BOS).unwrap_or(0);
    let config = match arch {
        Arch::Qwen2 => serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "vocab_size": vocab, "hidden_size": shape.hidden, "intermediate_size": shape.intermediate,
            "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads,
            "num_key_value_heads": shape.kv_heads, "max_position_embeddings": shape.max_context,
            "sliding_window": shape.max_context, "max_window_layers": shape.layers,
            "tie_word_embeddings": false, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
            "use_sliding_window": false, "hidden_act": "silu", "torch_dtype": "float32",
            "bos_token_id": bos, "eos_token_id": eos,
            "chipledger_tiny": {"seed": seed, "note": "random weights: the output is noise"}
        }),
        Arch::Llama => serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": vocab, "hidden_size": shape.hidden, "intermediate_size": shape.intermediate,
            "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads,
            "num_key_value_heads": shape.kv_heads, "max_position_embeddings": shape.max_context,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
            "torch_dtype": "float32", "bos_token_id": bos, "eos_token_id": eos,
            "chipledger_tiny": {"seed": seed, "note": "random weights: the output is noise"}
        }),
    };
    let cpath = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Model { path: cpath.clone(), message: e.to_string() })?;
    std::fs::write(&cpath, text + "\n").map_err(Error::io(&cpath))?;

    let mut rng = SplitMix64::new(seed);
    let head_dim = shape.hidden / shape.heads;
    let kv = shape.kv_heads * head_dim;
    let h = shape.hidden;
    let mut names: Vec<(String, Vec<usize>, bool)> = vec![("model.embed_tokens.weight".into(), vec![vocab, h], false)];
    for l in 0..shape.layers {
        let p = format!("model.layers.{l}");
        names.push((format!("{p}.input_layernorm.weight"), vec![h], true));
        names.push((format!("{p}.post_attention_layernorm.weight"), vec![h], true));
        names.push((format!("{p}.self_attn.q_proj.weight"), vec![h, h], false));
        names.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h], false));
        names.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h], false));
        names.push((format!("{p}.self_attn.o_proj.weight"), vec![h, h], false));
        if arch == Arch::Qwen2 {
            names.push((format!("{p}.self_attn.q_proj.bias"), vec![h], false));
            names.push((format!("{p}.self_attn.k_proj.bias"), vec![kv], false));
            names.push((format!("{p}.self_attn.v_proj.bias"), vec![kv], false));
        }
        names.push((format!("{p}.mlp.gate_proj.weight"), vec![shape.intermediate, h], false));
        names.push((format!("{p}.mlp.up_proj.weight"), vec![shape.intermediate, h], false));
        names.push((format!("{p}.mlp.down_proj.weight"), vec![h, shape.intermediate], false));
    }
    names.push(("model.norm.weight".into(), vec![h], true));
    names.push(("lm_head.weight".into(), vec![vocab, h], false));
    let mut tensors = HashMap::new();
    for (name, dims, ones) in names {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = if ones { vec![1.0; n] } else { (0..n).map(|_| rng.normal(0.02)).collect() };
        let t = Tensor::from_vec(data, dims, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| Error::Model { path: dir.to_path_buf(), message: e.to_string() })?;
        tensors.insert(name, t);
    }
    let wpath = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &wpath)
        .map_err(|e| Error::Model { path: wpath.clone(), message: e.to_string() })?;
    Ok(vocab)
}
