//! `chipledger model tiny`: a deterministic random-weight model (config.json, model.safetensors,
//! tokenizer.json) of the `qwen2` or `llama` architecture, from a seeded generator of our own.
//! Real loading code and a real byte-level BPE tokenizer with DeepSeek-R1's special tokens, noise
//! output. Tests and the demo use it; no weights are ever downloaded.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
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
    /// Pad the vocabulary to this size with tokens the tokenizer never produces (to give a
    /// benchmark model a real model's embedding and output sizes); `None` = 262.
    pub vocab: Option<usize>,
    /// Store the safetensors weights in F16 instead of F32.
    pub f16: bool,
}

impl Default for TinyShape {
    fn default() -> Self {
        TinyShape {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 128,
            max_context: 2048,
            vocab: None,
            f16: false,
        }
    }
}

impl TinyShape {
    /// The shape of Qwen2-0.5B (hidden 896, 24 layers, 14 heads / 2 KV heads, MLP 4864,
    /// vocabulary 151,936), for benchmarks.
    pub fn qwen2_0_5b() -> TinyShape {
        TinyShape {
            hidden: 896,
            layers: 24,
            heads: 14,
            kv_heads: 2,
            intermediate: 4864,
            max_context: 4096,
            vocab: Some(151_936),
            f16: false,
        }
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

/// The tokenizer: 256 byte-level tokens, filler up to `vocab` when asked, then [`SPECIAL`].
pub fn tokenizer(vocab: Option<usize>) -> Result<Tokenizer, Error> {
    let tok_err = |e: tokenizers::Error| Error::Model { path: "tokenizer.json".into(), message: e.to_string() };
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let mut entries: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    let filler = vocab.unwrap_or(0).saturating_sub(entries.len() + SPECIAL.len());
    entries.extend((0..filler).map(|i| format!("<|filler_{i}|>")));
    let vocab: tokenizers::models::bpe::Vocab = entries.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, Vec::new()).build().map_err(tok_err)?;
    let mut t = Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    t.with_decoder(Some(ByteLevel::new(false, true, true)));
    // The sentence and role markers are special (dropped when decoding); R1's <think> tags are
    // added tokens that stay in the decoded text, as in R1's own tokenizer.
    t.add_special_tokens(SPECIAL.iter().filter(|s| !s.contains("think")).map(|s| AddedToken::from(*s, true)))
        .map_err(tok_err)?;
    t.add_tokens(SPECIAL.iter().filter(|s| s.contains("think")).map(|s| AddedToken::from(*s, false)))
        .map_err(tok_err)?;
    Ok(t)
}

/// Writes the model to `dir` (created if missing). Returns the vocabulary size.
pub fn write(dir: &Path, arch: Arch, shape: TinyShape, seed: u64) -> Result<usize, Error> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let tokenizer = tokenizer(shape.vocab)?;
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
            "use_sliding_window": false, "hidden_act": "silu", "torch_dtype": if shape.f16 { "float16" } else { "float32" },
            "bos_token_id": bos, "eos_token_id": eos,
            "chipledger_tiny": {"seed": seed, "note": "random weights: the output is noise"}
        }),
        Arch::Llama => serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": vocab, "hidden_size": shape.hidden, "intermediate_size": shape.intermediate,
            "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads,
            "num_key_value_heads": shape.kv_heads, "max_position_embeddings": shape.max_context,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
            "torch_dtype": if shape.f16 { "float16" } else { "float32" }, "bos_token_id": bos, "eos_token_id": eos,
            "chipledger_tiny": {"seed": seed, "note": "random weights: the output is noise"}
        }),
    };
    let cpath = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Model { path: cpath.clone(), message: e.to_string() })?;
    std::fs::write(&cpath, text + "\n").map_err(Error::io(&cpath))?;

    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in weights(arch, shape, vocab, seed)? {
        let t = if shape.f16 { t.to_dtype(candle_core::DType::F16) } else { Ok(t) }
            .map_err(|e| Error::Model { path: name.clone().into(), message: e.to_string() })?;
        tensors.insert(name, t);
    }
    let wpath = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &wpath)
        .map_err(|e| Error::Model { path: wpath.clone(), message: e.to_string() })?;
    Ok(vocab)
}

/// The random weights, in Hugging Face names and a fixed order.
fn weights(arch: Arch, shape: TinyShape, vocab: usize, seed: u64) -> Result<Vec<(String, Tensor)>, Error> {
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
    let mut out = Vec::with_capacity(names.len());
    for (name, dims, ones) in names {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = if ones { vec![1.0; n] } else { (0..n).map(|_| rng.normal(0.02)).collect() };
        let t = Tensor::from_vec(data, dims, &Device::Cpu)
            .map_err(|e| Error::Model { path: name.clone().into(), message: e.to_string() })?;
        out.push((name, t));
    }
    Ok(out)
}

/// The GGUF name of a Hugging Face tensor name (llama.cpp's convention).
fn gguf_name(hf: &str) -> String {
    if hf == "model.embed_tokens.weight" {
        return "token_embd.weight".into();
    }
    if hf == "model.norm.weight" {
        return "output_norm.weight".into();
    }
    if hf == "lm_head.weight" {
        return "output.weight".into();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap_or(hf);
    let (layer, rest) = rest.split_once('.').unwrap_or(("0", rest));
    let mapped = rest
        .replace("input_layernorm", "attn_norm")
        .replace("post_attention_layernorm", "ffn_norm")
        .replace("self_attn.q_proj", "attn_q")
        .replace("self_attn.k_proj", "attn_k")
        .replace("self_attn.v_proj", "attn_v")
        .replace("self_attn.o_proj", "attn_output")
        .replace("mlp.gate_proj", "ffn_gate")
        .replace("mlp.up_proj", "ffn_up")
        .replace("mlp.down_proj", "ffn_down");
    format!("blk.{layer}.{mapped}")
}

/// Writes the model as one GGUF file with its 2-D weights quantized to `quant` (`q8_0`,
/// `q4_0`, `q4_1`, `f16`) and the tokenizer in its metadata. Returns the file size.
pub fn write_gguf(path: &Path, arch: Arch, shape: TinyShape, seed: u64, quant: &str) -> Result<u64, Error> {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let bad = |m: String| Error::Model { path: path.to_path_buf(), message: m };
    let dtype = match quant {
        "q8_0" => GgmlDType::Q8_0,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "f16" => GgmlDType::F16,
        other => return Err(bad(format!("unknown quantization {other:?} (q8_0, q4_0, q4_1, f16)"))),
    };
    let tokenizer = tokenizer(shape.vocab)?;
    let vocab = tokenizer.get_vocab_size(true);
    let mut tokens = vec![String::new(); vocab];
    for (t, id) in tokenizer.get_vocab(true) {
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = t;
        }
    }
    let types: Vec<gguf_file::Value> =
        tokens.iter().map(|t| gguf_file::Value::I32(if SPECIAL.contains(&t.as_str()) { 3 } else { 1 })).collect();
    let a = match arch {
        Arch::Qwen2 => "qwen2",
        Arch::Llama => "llama",
    };
    let u32v = |v: usize| gguf_file::Value::U32(v as u32);
    let metadata: Vec<(String, gguf_file::Value)> = vec![
        ("general.architecture".into(), gguf_file::Value::String(a.into())),
        ("general.name".into(), gguf_file::Value::String(format!("chipledger-tiny-{a}-{quant}"))),
        (format!("{a}.context_length"), u32v(shape.max_context)),
        (format!("{a}.embedding_length"), u32v(shape.hidden)),
        (format!("{a}.block_count"), u32v(shape.layers)),
        (format!("{a}.feed_forward_length"), u32v(shape.intermediate)),
        (format!("{a}.attention.head_count"), u32v(shape.heads)),
        (format!("{a}.attention.head_count_kv"), u32v(shape.kv_heads)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), gguf_file::Value::F32(1e-6)),
        (format!("{a}.rope.freq_base"), gguf_file::Value::F32(10_000.0)),
        (format!("{a}.rope.dimension_count"), u32v(shape.hidden / shape.heads)),
        ("tokenizer.ggml.model".into(), gguf_file::Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            gguf_file::Value::Array(tokens.into_iter().map(gguf_file::Value::String).collect()),
        ),
        ("tokenizer.ggml.merges".into(), gguf_file::Value::Array(Vec::new())),
        ("tokenizer.ggml.token_type".into(), gguf_file::Value::Array(types)),
        ("tokenizer.ggml.bos_token_id".into(), gguf_file::Value::U32(tokenizer.token_to_id(BOS).unwrap_or(0))),
        ("tokenizer.ggml.eos_token_id".into(), gguf_file::Value::U32(tokenizer.token_to_id(EOS).unwrap_or(0))),
    ];
    let mut qtensors = Vec::new();
    for (name, t) in weights(arch, shape, vocab, seed)? {
        let q = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
        let qt = QTensor::quantize(&t, q).map_err(|e| bad(format!("{name}: {e}")))?;
        qtensors.push((gguf_name(&name), qt));
    }
    let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let mut file = std::fs::File::create(path).map_err(Error::io(path))?;
    gguf_file::write(&mut file, &md, &ts).map_err(|e| bad(e.to_string()))?;
    drop(file);
    type_empty_merges_as_strings(path)?;
    std::fs::metadata(path).map(|m| m.len()).map_err(Error::io(path))
}

/// candle writes an empty array's element type as u32, but llama.cpp (and every reader that
/// checks) requires `tokenizer.ggml.merges` to be an array of strings, empty or not: the element
/// type of the empty merges array written above is set to string (8) in place.
fn type_empty_merges_as_strings(path: &Path) -> Result<(), Error> {
    use std::io::{Read, Seek, SeekFrom, Write};
    const GGUF_ARRAY: u32 = 9;
    const GGUF_U32: u32 = 4;
    const GGUF_STRING: u32 = 8;
    // The metadata sits before the tensors; the tiny vocabulary keeps it well under this.
    const HEADER_BYTES: u64 = 16 << 20;
    let bad = |m: String| Error::Model { path: path.to_path_buf(), message: m };
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(Error::io(path))?;
    let mut head = Vec::new();
    (&mut file).take(HEADER_BYTES).read_to_end(&mut head).map_err(Error::io(path))?;
    let key = b"tokenizer.ggml.merges";
    let mut pattern = (key.len() as u64).to_le_bytes().to_vec();
    pattern.extend_from_slice(key);
    pattern.extend_from_slice(&GGUF_ARRAY.to_le_bytes());
    let found: Vec<usize> =
        head.windows(pattern.len()).enumerate().filter(|(_, w)| *w == pattern).map(|(i, _)| i).collect();
    let [at] = found[..] else {
        return Err(bad(format!("the written GGUF holds {} tokenizer.ggml.merges arrays, not one", found.len())));
    };
    let elem = at + pattern.len();
    let (Some(ty), Some(count)) = (head.get(elem..elem + 4), head.get(elem + 4..elem + 12)) else {
        return Err(bad("the written GGUF ends inside its merges array".into()));
    };
    let ty = u32::from_le_bytes([ty[0], ty[1], ty[2], ty[3]]);
    let count = u64::from_le_bytes(count.try_into().unwrap_or([0xff; 8]));
    match (ty, count) {
        (GGUF_STRING, _) => Ok(()),
        (GGUF_U32, 0) => {
            file.seek(SeekFrom::Start(elem as u64)).map_err(Error::io(path))?;
            file.write_all(&GGUF_STRING.to_le_bytes()).map_err(Error::io(path))?;
            file.sync_all().map_err(Error::io(path))
        }
        (t, n) => Err(bad(format!("the written merges array has element type {t} and {n} elements"))),
    }
}
