//! The runner: DeepSeek-R1-family models on candle — the only code in chipledger that runs
//! them (candle is also used by `tiny`, which writes test models, and `requirements`, which reads
//! GGUF headers; nothing outside this crate knows candle). Hugging Face–style directories (`config.json`, `*.safetensors`, `tokenizer.json`) of
//! the `qwen2` and `llama` architectures, and GGUF files of both (quantized), with the tokenizer
//! taken from the GGUF. Greedy or temperature/top-p sampling from a seed, a KV cache, streaming,
//! and R1's `<think>` section kept apart from the answer.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::{llama, quantized_llama, quantized_qwen2, qwen2};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::ModelFile;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::engine;
use crate::Error;

/// candle 0.11's `quantized_llama` precomputes rotary tables for this many positions only.
pub const QUANTIZED_LLAMA_MAX_CONTEXT: usize = quantized_llama::MAX_SEQ_LEN;

enum Weights {
    Qwen2(qwen2::ModelForCausalLM),
    Llama {
        model: llama::Llama,
        config: llama::Config,
        cache: llama::Cache,
    },
    QuantizedQwen2(quantized_qwen2::ModelWeights),
    QuantizedLlama(quantized_llama::ModelWeights),
    /// chipledger's own CPU engine ([`crate::engine`]).
    Native(Box<engine::Engine>),
}

/// Which implementation runs a quantized GGUF model on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Engine {
    /// [`crate::engine`] where it computes every tensor of the file (`Q8_0`, `Q4_0`, `Q4_1`
    /// matrices) and the CPU has its SIMD kernels (AVX-512 VNNI), candle's models otherwise.
    #[default]
    Native,
    /// candle's `quantized_qwen2`/`quantized_llama`: the reference the native engine is tested
    /// against.
    Reference,
}

/// Where a model executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    /// A CUDA device (the `cuda` build only; `CUDA_VISIBLE_DEVICES` may map a GPU UUID to 0).
    Cuda {
        ordinal: usize,
    },
}

impl Backend {
    fn device(self) -> Result<Device, Error> {
        match self {
            Backend::Cpu => Ok(Device::Cpu),
            Backend::Cuda { ordinal } => Device::new_cuda(ordinal).map_err(|e| Error::Model {
                path: PathBuf::from(format!("cuda:{ordinal}")),
                message: format!("no CUDA device (this build may lack the cuda feature): {e}"),
            }),
        }
    }
}

/// A loaded model with its tokenizer.
pub struct Model {
    pub name: String,
    /// `qwen2` or `llama`, and `safetensors` or `gguf`.
    pub architecture: String,
    pub format: String,
    pub files: Vec<ModelFile>,
    pub max_context: usize,
    weights: Weights,
    tokenizer: Tokenizer,
    eos: Vec<u32>,
    device: Device,
    template: ChatTemplate,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("architecture", &self.architecture)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// How a prompt is wrapped for the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<｜begin▁of▁sentence｜><｜User｜>…<｜Assistant｜><think>\n` (DeepSeek-R1 and distills).
    DeepSeekR1,
    /// `<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n` (ChatML models such as SmolLM2).
    ChatMl,
    /// The prompt as given.
    Raw,
}

pub const BOS: &str = "<｜begin▁of▁sentence｜>";
pub const EOS: &str = "<｜end▁of▁sentence｜>";
pub const USER: &str = "<｜User｜>";
pub const ASSISTANT: &str = "<｜Assistant｜>";

impl ChatTemplate {
    pub fn apply(self, prompt: &str) -> String {
        match self {
            ChatTemplate::DeepSeekR1 => format!("{BOS}{USER}{prompt}{ASSISTANT}<think>\n"),
            ChatTemplate::ChatMl => format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"),
            ChatTemplate::Raw => prompt.to_string(),
        }
    }

    /// A conversation (role, content) in the model's template, ending where the assistant's
    /// next turn starts. System messages lead; R1 takes them before its first user turn.
    pub fn apply_chat(self, messages: &[(&str, &str)]) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::DeepSeekR1 => {
                out.push_str(BOS);
                for (_, content) in messages.iter().filter(|(r, _)| *r == "system") {
                    out.push_str(content);
                }
                for (role, content) in messages.iter().filter(|(r, _)| *r != "system") {
                    if *role == "assistant" {
                        // R1's template drops earlier turns' reasoning.
                        let (_, answer) = split_think(content, false);
                        out.push_str(&format!("{ASSISTANT}{answer}{EOS}"));
                    } else {
                        out.push_str(&format!("{USER}{content}"));
                    }
                }
                out.push_str(&format!("{ASSISTANT}<think>\n"));
            }
            ChatTemplate::ChatMl => {
                for (role, content) in messages {
                    out.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
                }
                out.push_str("<|im_start|>assistant\n");
            }
            ChatTemplate::Raw => {
                for (_, content) in messages {
                    out.push_str(content);
                }
            }
        }
        out
    }

    /// Whether generation starts inside R1's `<think>` section.
    pub fn opens_think(self) -> bool {
        self == ChatTemplate::DeepSeekR1
    }
}

/// Sampling settings. R1's recommendation is temperature 0.6, top-p 0.95.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub max_tokens: usize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig { temperature: 0.6, top_p: 0.95, seed: 299_792_458, max_tokens: 256 }
    }
}

/// A piece of streamed output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Thinking,
    Answer,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    EndOfSequence,
    MaxTokens,
    ContextFull,
    /// The caller stopped it (a client that went away).
    Cancelled,
}

/// What one generation produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    /// The decoded output (special tokens dropped).
    pub text: String,
    pub thinking: String,
    pub answer: String,
    pub stop: Stop,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

impl Generation {
    pub fn decode_tokens_per_second(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        if self.decode_ms > 0.0 {
            n as f64 * 1000.0 / self.decode_ms
        } else {
            0.0
        }
    }
}

fn candle(path: &Path) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::Model { path: path.to_path_buf(), message: e.to_string() }
}

/// SHA-256 of a file, streamed.
pub fn file_digest(path: &Path) -> Result<Hash, Error> {
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Hash(hasher.finalize().into()))
}

impl Model {
    /// Loads a model directory or a `.gguf` file onto `device`. `progress(done, total)` is called
    /// as weight files are read.
    pub fn load(path: &Path, backend: Backend, progress: &mut dyn FnMut(u64, u64)) -> Result<Model, Error> {
        Model::load_with(path, backend, Engine::Native, progress)
    }

    /// [`Model::load`] with the choice of engine for quantized GGUF files on the CPU.
    pub fn load_with(
        path: &Path,
        backend: Backend,
        engine: Engine,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Model, Error> {
        let device = backend.device()?;
        if path.is_dir() {
            Model::load_dir(path, &device, progress)
        } else {
            Model::load_gguf(path, &device, engine, progress)
        }
    }

    fn load_dir(dir: &Path, device: &Device, progress: &mut dyn FnMut(u64, u64)) -> Result<Model, Error> {
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path).map_err(Error::io(&config_path))?;
        let bad = |m: String| Error::Model { path: config_path.clone(), message: m };
        let value: serde_json::Value = serde_json::from_str(&config_text).map_err(|e| bad(e.to_string()))?;
        let arch = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("llama").to_string();
        let mut weight_files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(Error::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        weight_files.sort();
        if weight_files.is_empty() {
            return Err(Error::Model { path: dir.to_path_buf(), message: "no *.safetensors weights".into() });
        }
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::Model { path: tokenizer_path.clone(), message: format!("tokenizer.json: {e}") })?;
        let mut files = Vec::new();
        let total = weight_files.len() as u64 + 2;
        for (i, p) in [config_path.clone(), tokenizer_path.clone()].iter().chain(weight_files.iter()).enumerate() {
            files.push(ModelFile { path: display_name(dir, p), sha256: file_digest(p)? });
            progress(i as u64 + 1, total);
        }
        // Weights run in F32 on the CPU; qwen2 runs in F32 everywhere, because candle 0.11
        // builds its rotary tables in the model dtype, which is wrong past 256 positions in BF16.
        let dtype = if device.is_cpu() || arch == "qwen2" { DType::F32 } else { DType::BF16 };
        // Read into memory (no mmap: the workspace has no unsafe code outside agent::nvml::raw).
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for p in &weight_files {
            tensors.extend(candle_core::safetensors::load(p, device).map_err(candle(p))?);
        }
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let (weights, max_context, eos_from_config) = match arch.as_str() {
            "qwen2" => {
                let cfg: qwen2::Config =
                    serde_json::from_value(value.clone()).map_err(|e| bad(format!("qwen2 config: {e}")))?;
                let max = cfg.max_position_embeddings;
                (Weights::Qwen2(qwen2::ModelForCausalLM::new(&cfg, vb).map_err(candle(dir))?), max, eos_ids(&value))
            }
            "llama" => {
                let cfg: llama::LlamaConfig =
                    serde_json::from_value(value.clone()).map_err(|e| bad(format!("llama config: {e}")))?;
                let config = cfg.into_config(false);
                let max = config.max_position_embeddings;
                let model = llama::Llama::load(vb, &config).map_err(candle(dir))?;
                let cache = llama::Cache::new(true, dtype, &config, device).map_err(candle(dir))?;
                (Weights::Llama { model, config, cache }, max, eos_ids(&value))
            }
            other => return Err(bad(format!("architecture {other:?} is not supported (qwen2 or llama)"))),
        };
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        Ok(Model::finish(name, arch, "safetensors", files, max_context, weights, tokenizer, eos_from_config, device))
    }

    fn load_gguf(
        path: &Path,
        device: &Device,
        engine: Engine,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Model, Error> {
        let sha256 = file_digest(path)?;
        progress(1, 2);
        let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
        let content = read_gguf(&mut file, path)?;
        let md = &content.metadata;
        let arch = md.get("general.architecture").and_then(|v| v.to_string().ok().cloned()).ok_or_else(|| {
            Error::Model { path: path.to_path_buf(), message: "GGUF without general.architecture".into() }
        })?;
        let name = md
            .get("general.name")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        let tokenizer = gguf_tokenizer(&content).map_err(|m| Error::Model { path: path.to_path_buf(), message: m })?;
        let eos: Vec<u32> = md.get("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok()).into_iter().collect();
        let ctx = md.get(&format!("{arch}.context_length")).and_then(|v| v.to_u32().ok()).unwrap_or(4096) as usize;
        // Where the CPU has no SIMD kernel of the native engine, candle's AVX2 kernels are faster.
        let features = engine::Features::detect();
        let native = if engine == Engine::Native && device.is_cpu() && features.any() {
            match engine::Engine::load(&content, &mut file, &arch, features) {
                Ok(e) => Some(e),
                Err(engine::LoadError::Unsupported(why)) => {
                    tracing::info!(model = %path.display(), %why, "running on candle's reference models");
                    None
                }
                Err(engine::LoadError::Invalid(message)) => {
                    return Err(Error::Model { path: path.to_path_buf(), message })
                }
            }
        } else {
            None
        };
        let (weights, max_context) = if let Some(e) = native {
            let max = e.max_context();
            (Weights::Native(Box::new(e)), max)
        } else {
            match arch.as_str() {
                "llama" => (
                    Weights::QuantizedLlama(
                        quantized_llama::ModelWeights::from_gguf(content, &mut file, device).map_err(candle(path))?,
                    ),
                    ctx.min(QUANTIZED_LLAMA_MAX_CONTEXT),
                ),
                "qwen2" => (
                    Weights::QuantizedQwen2(
                        quantized_qwen2::ModelWeights::from_gguf(content, &mut file, device).map_err(candle(path))?,
                    ),
                    ctx,
                ),
                other => {
                    return Err(Error::Model {
                        path: path.to_path_buf(),
                        message: format!("GGUF architecture {other:?} is not supported (qwen2 or llama)"),
                    })
                }
            }
        };
        progress(2, 2);
        let files = vec![ModelFile { path: display_name(path.parent().unwrap_or(Path::new(".")), path), sha256 }];
        Ok(Model::finish(name, arch, "gguf", files, max_context, weights, tokenizer, eos, device))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        name: String,
        architecture: String,
        format: &str,
        files: Vec<ModelFile>,
        max_context: usize,
        weights: Weights,
        tokenizer: Tokenizer,
        mut eos: Vec<u32>,
        device: &Device,
    ) -> Model {
        for t in [EOS, "<|im_end|>", "<|endoftext|>", "</s>"] {
            if let Some(id) = tokenizer.token_to_id(t) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        let template = if tokenizer.token_to_id(USER).is_some() && tokenizer.token_to_id(ASSISTANT).is_some() {
            ChatTemplate::DeepSeekR1
        } else if tokenizer.token_to_id("<|im_start|>").is_some() {
            ChatTemplate::ChatMl
        } else {
            ChatTemplate::Raw
        };
        Model {
            name,
            architecture,
            format: format.to_string(),
            files,
            max_context,
            weights,
            tokenizer,
            eos,
            device: device.clone(),
            template,
        }
    }

    /// What computes this model: `native (avx512-vnni)`, `native (portable)` or `candle`.
    pub fn engine(&self) -> String {
        match &self.weights {
            Weights::Native(e) => format!("native ({})", e.kernels()),
            _ => "candle".into(),
        }
    }

    pub fn template(&self) -> ChatTemplate {
        self.template
    }

    /// The backend that executes this model (`cpu`, `cuda:0`…).
    pub fn backend(&self) -> String {
        match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        }
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Model { path: PathBuf::from(&self.name), message: format!("tokenizer: {e}") })?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, tokens: &[u32]) -> Result<String, Error> {
        self.tokenizer
            .decode(tokens, true)
            .map_err(|e| Error::Model { path: PathBuf::from(&self.name), message: format!("tokenizer: {e}") })
    }

    /// Forgets the KV cache.
    pub fn reset(&mut self) -> Result<(), Error> {
        let dtype = if self.device.is_cpu() { DType::F32 } else { DType::BF16 };
        let name = self.name.clone();
        match &mut self.weights {
            Weights::Qwen2(m) => m.clear_kv_cache(),
            Weights::Llama { config, cache, .. } => {
                *cache = llama::Cache::new(true, dtype, config, &self.device)
                    .map_err(|e| Error::Model { path: PathBuf::from(name), message: e.to_string() })?;
            }
            // The quantized models reset their cache when a sequence starts at position 0.
            Weights::QuantizedQwen2(_) | Weights::QuantizedLlama(_) => {}
            Weights::Native(e) => e.reset(),
        }
        Ok(())
    }

    fn err(&self, e: candle_core::Error) -> Error {
        Error::Model { path: PathBuf::from(&self.name), message: e.to_string() }
    }

    /// Logits of the last position after feeding `tokens` at position `pos` (KV cache on).
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, Error> {
        if let Weights::Native(e) = &mut self.weights {
            return e.forward(tokens, pos).map_err(|message| Error::Model { path: PathBuf::from(&self.name), message });
        }
        let input = Tensor::new(tokens, &self.device).and_then(|t| t.unsqueeze(0)).map_err(|e| self.err(e))?;
        let logits = match &mut self.weights {
            Weights::Qwen2(m) => m.forward(&input, pos),
            Weights::Llama { model, cache, .. } => model.forward(&input, pos, cache),
            Weights::QuantizedQwen2(m) => m.forward(&input, pos),
            Weights::QuantizedLlama(m) => m.forward(&input, pos),
            Weights::Native(_) => {
                return Err(self.err(candle_core::Error::Msg("native weights on candle's path".into())))
            }
        }
        .map_err(|e| Error::Model { path: PathBuf::from(&self.name), message: e.to_string() })?;
        let logits = logits
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| self.err(e))?;
        Ok(logits)
    }

    /// Generates from an already templated prompt, streaming decoded text to `on_text`.
    pub fn generate(
        &mut self,
        templated_prompt: &str,
        sampling: SamplingConfig,
        on_text: &mut dyn FnMut(Segment, &str),
    ) -> Result<Generation, Error> {
        self.generate_until(templated_prompt, sampling, &mut || true, on_text)
    }

    /// [`Model::generate`], asking `go_on` before each token whether the caller still wants it.
    pub fn generate_until(
        &mut self,
        templated_prompt: &str,
        sampling: SamplingConfig,
        go_on: &mut dyn FnMut() -> bool,
        on_text: &mut dyn FnMut(Segment, &str),
    ) -> Result<Generation, Error> {
        let prompt = self.encode(templated_prompt)?;
        if prompt.is_empty() {
            return Err(Error::Model {
                path: PathBuf::from(&self.name),
                message: "the prompt encodes to no tokens".into(),
            });
        }
        if prompt.len() >= self.max_context {
            return Err(Error::Model {
                path: PathBuf::from(&self.name),
                message: format!(
                    "the prompt is {} tokens; this model's context holds {}",
                    prompt.len(),
                    self.max_context
                ),
            });
        }
        self.reset()?;
        let temperature = (sampling.temperature > 0.0).then_some(sampling.temperature);
        let top_p = (sampling.top_p > 0.0 && sampling.top_p < 1.0).then_some(sampling.top_p);
        let mut sampler = LogitsProcessor::new(sampling.seed, temperature, top_p);
        let mut stream = Stream::new(self.template.opens_think());
        let mut detok = Detok::default();
        let start = Instant::now();
        let logits = self.forward(&prompt, 0)?;
        let mut next = self.sample(&mut sampler, logits)?;
        let prefill_ms = start.elapsed().as_secs_f64() * 1000.0;
        let decode_start = Instant::now();
        let mut tokens = Vec::new();
        let stop = loop {
            if self.eos.contains(&next) {
                break Stop::EndOfSequence;
            }
            tokens.push(next);
            if let Some(chunk) = detok.step(self, &tokens)? {
                stream.push(&chunk, on_text);
            }
            if tokens.len() >= sampling.max_tokens {
                break Stop::MaxTokens;
            }
            if !go_on() {
                break Stop::Cancelled;
            }
            let pos = prompt.len() + tokens.len() - 1;
            if pos + 1 >= self.max_context {
                break Stop::ContextFull;
            }
            let logits = self.forward(&[next], pos)?;
            next = self.sample(&mut sampler, logits)?;
        };
        let decode_ms = decode_start.elapsed().as_secs_f64() * 1000.0;
        if let Some(rest) = detok.rest(self, &tokens)? {
            stream.push(&rest, on_text);
        }
        stream.finish(on_text);
        let text = self.decode(&tokens)?;
        let (thinking, answer) = split_think(&text, self.template.opens_think());
        Ok(Generation { prompt_tokens: prompt.len(), tokens, text, thinking, answer, stop, prefill_ms, decode_ms })
    }

    fn sample(&self, sampler: &mut LogitsProcessor, logits: Vec<f32>) -> Result<u32, Error> {
        let n = logits.len();
        let t = Tensor::from_vec(logits, n, &Device::Cpu).map_err(|e| self.err(e))?;
        sampler.sample(&t).map_err(|e| self.err(e))
    }
}

fn display_name(base: &Path, p: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

fn eos_ids(config: &serde_json::Value) -> Vec<u32> {
    match config.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64().map(|v| v as u32)).collect(),
        _ => Vec::new(),
    }
}

/// Splits output at `</think>`: (thinking, answer). When the template opened `<think>`, what
/// comes before `</think>` is thinking even though `<think>` is not in the output.
pub fn split_think(text: &str, opened: bool) -> (String, String) {
    let body = text.strip_prefix("<think>").unwrap_or(text);
    match body.split_once("</think>") {
        Some((t, a)) => (t.trim().to_string(), a.trim().to_string()),
        None if opened || text.starts_with("<think>") => (body.trim().to_string(), String::new()),
        None => (String::new(), text.trim().to_string()),
    }
}

/// Incremental detokenization: decodes a short window of recent tokens, not the whole output,
/// and emits text only once it is complete UTF-8.
#[derive(Default)]
struct Detok {
    prev: usize,
    cur: usize,
}

impl Detok {
    fn step(&mut self, m: &Model, tokens: &[u32]) -> Result<Option<String>, Error> {
        let prev_text = if self.prev < self.cur { m.decode(&tokens[self.prev..self.cur])? } else { String::new() };
        let text = m.decode(&tokens[self.prev..])?;
        if text.len() > prev_text.len() && !text.ends_with('\u{fffd}') && text.is_char_boundary(prev_text.len()) {
            self.prev = self.cur;
            self.cur = tokens.len();
            return Ok(Some(text[prev_text.len()..].to_string()));
        }
        Ok(None)
    }

    /// Whatever is still held back at the end.
    fn rest(&mut self, m: &Model, tokens: &[u32]) -> Result<Option<String>, Error> {
        let prev_text = if self.prev < self.cur { m.decode(&tokens[self.prev..self.cur])? } else { String::new() };
        let text = m.decode(&tokens[self.prev..])?;
        Ok(text.get(prev_text.len()..).filter(|r| !r.is_empty()).map(str::to_string))
    }
}

/// Turns streamed text into thinking and answer segments, holding back a possible partial tag.
struct Stream {
    in_think: bool,
    held: String,
}

impl Stream {
    fn new(opened: bool) -> Stream {
        Stream { in_think: opened, held: String::new() }
    }

    fn segment(&self) -> Segment {
        if self.in_think {
            Segment::Thinking
        } else {
            Segment::Answer
        }
    }

    fn push(&mut self, chunk: &str, out: &mut dyn FnMut(Segment, &str)) {
        self.held.push_str(chunk);
        loop {
            let tag = if self.in_think { "</think>" } else { "<think>" };
            match self.held.find(tag) {
                Some(i) => {
                    if i > 0 {
                        out(self.segment(), &self.held[..i]);
                    }
                    self.held.drain(..i + tag.len());
                    self.in_think = !self.in_think;
                }
                None => break,
            }
        }
        // Keep the longest suffix that could start a tag; emit the rest.
        let held = &self.held;
        let keep = ["</think>", "<think>"]
            .iter()
            .filter_map(|t| (1..t.len()).rev().find(|k| held.ends_with(&t[..*k])))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        if cut > 0 && self.held.is_char_boundary(cut) {
            out(self.segment(), &self.held[..cut]);
            self.held.drain(..cut);
        }
    }

    fn finish(&mut self, out: &mut dyn FnMut(Segment, &str)) {
        if !self.held.is_empty() {
            out(self.segment(), &self.held);
            self.held.clear();
        }
    }
}

/// A GGUF file's header (metadata and tensor index), read by candle (which bounds every count
/// and length by what the file has left, and nesting depth).
pub(crate) fn read_gguf<R: std::io::Read + std::io::Seek>(
    reader: &mut R,
    path: &Path,
) -> Result<gguf_file::Content, Error> {
    let bad = |e: String| Error::Model { path: path.to_path_buf(), message: format!("not a readable GGUF file: {e}") };
    // candle divides by `general.alignment` unchecked (0 panics): checked here first.
    if let Some(alignment) = gguf_alignment(reader).map_err(bad)? {
        if !alignment.is_power_of_two() {
            return Err(bad(format!("general.alignment is {alignment}, not a power of two")));
        }
    }
    reader.seek(std::io::SeekFrom::Start(0)).map_err(|e| bad(e.to_string()))?;
    // And should candle still panic on some header, the file is refused, not the process ended.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gguf_file::Content::read(reader))) {
        Ok(read) => read.map_err(|e| bad(e.to_string())),
        Err(_) => Err(bad("candle's GGUF reader failed on this header".into())),
    }
}

/// The non-negative integer value of `general.alignment` in a GGUF header, if it has one (what
/// candle would use): a walk over the metadata that reads only that value, every count and
/// length checked against what is left of the file.
fn gguf_alignment<R: std::io::Read + std::io::Seek>(reader: &mut R) -> Result<Option<u64>, String> {
    let size = reader.seek(std::io::SeekFrom::End(0)).map_err(|e| e.to_string())?;
    reader.seek(std::io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut w = GgufWalk { r: reader, size, wide: 8 };
    // Both byte orders of the magic, as candle takes them (everything after is little-endian).
    let magic = w.int(4)?;
    if magic != u64::from(u32::from_le_bytes(*b"GGUF")) && magic != u64::from(u32::from_be_bytes(*b"GGUF")) {
        return Ok(None); // not GGUF: candle says so
    }
    if w.int(4)? == 1 {
        w.wide = 4; // version 1 counts and lengths are 32-bit
    }
    let _tensors = w.int(w.wide)?;
    let kvs = w.int(w.wide)?;
    // As candle reads them: trailing NULs dropped from keys, and a later key replacing an
    // earlier one of the same name.
    let mut alignment = None;
    for _ in 0..kvs {
        let len = w.length()?;
        if len > 65_536 {
            return Err("a metadata key is longer than 64 KiB".into());
        }
        let mut key = vec![0u8; len as usize];
        w.r.read_exact(&mut key).map_err(|_| "the header ends early".to_string())?;
        while key.last() == Some(&0) {
            key.pop();
        }
        let ty = w.int(4)?;
        if key != b"general.alignment" {
            w.skip(ty, 0)?;
            continue;
        }
        let (bytes, signed) = match ty {
            0 => (1, false),
            1 => (1, true),
            2 => (2, false),
            3 => (2, true),
            4 => (4, false),
            5 => (4, true),
            10 => (8, false),
            11 => (8, true),
            _ => {
                // Not an integer: candle uses its default.
                alignment = None;
                w.skip(ty, 0)?;
                continue;
            }
        };
        let v = w.int(bytes)?;
        let negative = signed && (v >> (8 * bytes - 1)) & 1 == 1;
        alignment = (!negative).then_some(v);
    }
    Ok(alignment)
}

/// A bounded walk over a GGUF header.
struct GgufWalk<'r, R> {
    r: &'r mut R,
    size: u64,
    /// Bytes in a count or length (4 in version 1, else 8).
    wide: usize,
}

impl<R: std::io::Read + std::io::Seek> GgufWalk<'_, R> {
    fn int(&mut self, n: usize) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.r.read_exact(&mut b[..n]).map_err(|_| "the header ends early".to_string())?;
        Ok(u64::from_le_bytes(b))
    }

    fn left(&mut self) -> Result<u64, String> {
        Ok(self.size.saturating_sub(self.r.stream_position().map_err(|e| e.to_string())?))
    }

    /// A length or count, no larger than what is left of the file.
    fn length(&mut self) -> Result<u64, String> {
        let n = self.int(self.wide)?;
        if n > self.left()? {
            return Err("a length runs past the end of the file".into());
        }
        Ok(n)
    }

    fn advance(&mut self, n: u64) -> Result<(), String> {
        if n > self.left()? {
            return Err("the header ends early".into());
        }
        self.r.seek(std::io::SeekFrom::Current(n as i64)).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Skips one value of type `ty`; arrays nest at most 4 deep.
    fn skip(&mut self, ty: u64, depth: u32) -> Result<(), String> {
        match ty {
            0 | 1 | 7 => self.advance(1),
            2 | 3 => self.advance(2),
            4..=6 => self.advance(4),
            10..=12 => self.advance(8),
            8 => {
                let len = self.length()?;
                self.advance(len)
            }
            9 if depth < 4 => {
                let elem = self.int(4)?;
                let count = self.length()?;
                let fixed = match elem {
                    0 | 1 | 7 => Some(1u64),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    _ => None,
                };
                match fixed {
                    // Fixed-size elements: skipped at once.
                    Some(n) => self.advance(count.saturating_mul(n)),
                    // Each other element takes at least a byte: the loop is bounded by the file.
                    None => (0..count).try_for_each(|_| self.skip(elem, depth + 1)),
                }
            }
            9 => Err("arrays nest too deep".into()),
            _ => Err(format!("unknown metadata value type {ty}")),
        }
    }
}

/// Builds a tokenizer from a GGUF's `tokenizer.ggml.*` metadata (GPT-2 style byte-level BPE).
pub(crate) fn gguf_tokenizer(content: &gguf_file::Content) -> Result<Tokenizer, String> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::AddedToken;
    let md = &content.metadata;
    let model = md.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok().cloned()).unwrap_or_default();
    if model != "gpt2" {
        return Err(format!("GGUF tokenizer model {model:?} is not supported (byte-level BPE, \"gpt2\", is)"));
    }
    let tokens: Vec<String> = md
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .ok_or("GGUF has no tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let merges: Vec<(String, String)> = md
        .get("tokenizer.ggml.merges")
        .and_then(|v| v.to_vec().ok())
        .map(|m| {
            m.iter()
                .filter_map(|v| v.to_string().ok())
                .filter_map(|s| s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let types: Vec<i64> = md
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|t| t.iter().map(|v| v.to_i32().map(i64::from).unwrap_or(1)).collect())
        .unwrap_or_default();
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));
    // Control tokens (3) are special: matched whole, dropped when decoding. User-defined ones
    // (4, e.g. R1's <think>) are matched whole and kept in the decoded text.
    let typed = |want: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(types.iter().chain(std::iter::repeat(&1)))
            .filter(|(_, t)| **t == want)
            .map(|(s, _)| AddedToken::from(s.clone(), special))
            .collect()
    };
    tokenizer.add_special_tokens(typed(3, true)).map_err(|e| e.to_string())?;
    tokenizer.add_tokens(typed(4, false)).map_err(|e| e.to_string())?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(opened: bool, chunks: &[&str]) -> Vec<(Segment, String)> {
        let mut out: Vec<(Segment, String)> = Vec::new();
        let mut s = Stream::new(opened);
        let mut sink = |seg: Segment, t: &str| match out.last_mut() {
            Some((last, text)) if *last == seg => text.push_str(t),
            _ => out.push((seg, t.to_string())),
        };
        for c in chunks {
            s.push(c, &mut sink);
        }
        s.finish(&mut sink);
        out
    }

    #[test]
    fn tags_split_across_chunks_still_separate_thinking_from_the_answer() {
        assert_eq!(
            run(true, &["reason", "ing</th", "ink>\n\nPar", "is"]),
            [(Segment::Thinking, "reasoning".to_string()), (Segment::Answer, "\n\nParis".to_string())]
        );
        assert_eq!(
            run(false, &["<thi", "nk>r</think>a<"]),
            [(Segment::Thinking, "r".to_string()), (Segment::Answer, "a<".to_string())]
        );
        assert_eq!(run(false, &["plain ", "answer"]), [(Segment::Answer, "plain answer".to_string())]);
    }
}
