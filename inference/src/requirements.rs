//! How much GPU memory a model needs: weights (by dtype or quantization) + KV cache for the
//! asked context + overhead. From a model directory's `config.json`, a GGUF file's metadata, or
//! a built-in preset for the DeepSeek-R1 family, so the node can plan models it cannot run here.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A model's shape, as far as memory is concerned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub name: String,
    /// `qwen2`, `llama`, `deepseek_v3`.
    pub architecture: String,
    pub parameters: u64,
    /// Bytes per weight as stored (2 for BF16/F16, 1 for FP8, ~0.56 for Q4_1…).
    pub weight_bytes: u64,
    /// KV-cache bytes per token of context.
    pub kv_bytes_per_token: u64,
    pub max_context: u64,
    /// Where the figures come from: `config.json`, `gguf`, `preset`.
    pub source: String,
}

/// Memory needed to run a model at one context length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requirements {
    pub model: ModelShape,
    pub context: u64,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    /// Activations, workspace and the runtime's own allocations.
    pub overhead_bytes: u64,
    pub total_bytes: u64,
}

impl Requirements {
    pub fn new(model: ModelShape, context: Option<u64>) -> Requirements {
        let context = context.unwrap_or(model.max_context.min(4096)).max(1);
        let weights_bytes = model.weight_bytes;
        let kv_cache_bytes = model.kv_bytes_per_token.saturating_mul(context);
        // 5 % of the weights or 512 MiB, whichever is more.
        let overhead_bytes = (weights_bytes / 20).max(512 * 1024 * 1024);
        let total_bytes = weights_bytes.saturating_add(kv_cache_bytes).saturating_add(overhead_bytes);
        Requirements { model, context, weights_bytes, kv_cache_bytes, overhead_bytes, total_bytes }
    }

    pub fn total_gib(&self) -> f64 {
        self.total_bytes as f64 / GIB
    }
}

/// A dense decoder (Llama / Qwen2 family) from its hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct Dense {
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub intermediate: u64,
    pub vocab: u64,
    pub tied_embeddings: bool,
    /// Qwen2 has biases on q, k and v.
    pub qkv_bias: bool,
    pub max_context: u64,
}

impl Dense {
    pub fn parameters(&self) -> u64 {
        // A config file's numbers: saturate rather than overflow on absurd ones.
        let mul = |v: &[u64]| v.iter().copied().fold(1u64, u64::saturating_mul);
        let head_dim = self.hidden / self.heads.max(1);
        let kv = mul(&[self.kv_heads, head_dim]);
        let bias = if self.qkv_bias { self.hidden.saturating_add(mul(&[2, kv])) } else { 0 };
        let attn = mul(&[self.hidden, self.hidden, 2]).saturating_add(mul(&[self.hidden, kv, 2])).saturating_add(bias);
        let mlp = mul(&[3, self.hidden, self.intermediate]);
        let norms = mul(&[2, self.hidden]);
        let embed = mul(&[self.vocab, self.hidden, if self.tied_embeddings { 1 } else { 2 }]);
        mul(&[self.layers, attn.saturating_add(mlp).saturating_add(norms)])
            .saturating_add(embed)
            .saturating_add(self.hidden)
    }

    /// K and V for every layer, per token, at `bytes` per element.
    pub fn kv_bytes_per_token(&self, bytes: u64) -> u64 {
        [2, self.layers, self.kv_heads, self.hidden / self.heads.max(1), bytes]
            .into_iter()
            .fold(1u64, u64::saturating_mul)
    }

    fn shape(&self, name: &str, architecture: &str, bytes_per_weight: u64, source: &str) -> ModelShape {
        let parameters = self.parameters();
        ModelShape {
            name: name.to_string(),
            architecture: architecture.to_string(),
            parameters,
            weight_bytes: parameters.saturating_mul(bytes_per_weight),
            kv_bytes_per_token: self.kv_bytes_per_token(2),
            max_context: self.max_context,
            source: source.to_string(),
        }
    }
}

/// The presets: DeepSeek-R1 and its distillations, figures from their published configs.
pub const PRESETS: &[&str] = &[
    "deepseek-r1",
    "r1-distill-qwen-1.5b",
    "r1-distill-qwen-7b",
    "r1-distill-qwen-14b",
    "r1-distill-qwen-32b",
    "r1-distill-llama-8b",
    "r1-distill-llama-70b",
];

/// A preset by name (case-insensitive; `DeepSeek-R1-Distill-Qwen-7B` works too).
pub fn preset(name: &str) -> Option<ModelShape> {
    let key = name.to_ascii_lowercase().replace("deepseek-r1-distill-", "r1-distill-");
    let qwen = |hidden, layers, heads, kv_heads, intermediate, vocab, tied| Dense {
        hidden,
        layers,
        heads,
        kv_heads,
        intermediate,
        vocab,
        tied_embeddings: tied,
        qkv_bias: true,
        max_context: 131_072,
    };
    let llama = |hidden, layers, heads, kv_heads, intermediate| Dense {
        hidden,
        layers,
        heads,
        kv_heads,
        intermediate,
        vocab: 128_256,
        tied_embeddings: false,
        qkv_bias: false,
        max_context: 131_072,
    };
    let shape = match key.as_str() {
        // DeepSeek-V3 architecture: 671 B parameters (37 B active), FP8 weights, 61 layers, MLA
        // caching a 512-wide latent plus a 64-wide rotary key per layer and token, in BF16.
        "deepseek-r1" | "deepseek-r1-671b" => ModelShape {
            name: "DeepSeek-R1".into(),
            architecture: "deepseek_v3".into(),
            parameters: 671_000_000_000,
            weight_bytes: 671_000_000_000,
            kv_bytes_per_token: 61 * (512 + 64) * 2,
            max_context: 163_840,
            source: "preset".into(),
        },
        "r1-distill-qwen-1.5b" => {
            qwen(1536, 28, 12, 2, 8960, 151_936, false).shape("DeepSeek-R1-Distill-Qwen-1.5B", "qwen2", 2, "preset")
        }
        "r1-distill-qwen-7b" => {
            qwen(3584, 28, 28, 4, 18944, 152_064, false).shape("DeepSeek-R1-Distill-Qwen-7B", "qwen2", 2, "preset")
        }
        "r1-distill-qwen-14b" => {
            qwen(5120, 48, 40, 8, 13824, 152_064, false).shape("DeepSeek-R1-Distill-Qwen-14B", "qwen2", 2, "preset")
        }
        "r1-distill-qwen-32b" => {
            qwen(5120, 64, 40, 8, 27648, 152_064, false).shape("DeepSeek-R1-Distill-Qwen-32B", "qwen2", 2, "preset")
        }
        "r1-distill-llama-8b" => {
            llama(4096, 32, 32, 8, 14336).shape("DeepSeek-R1-Distill-Llama-8B", "llama", 2, "preset")
        }
        "r1-distill-llama-70b" => {
            llama(8192, 80, 64, 8, 28672).shape("DeepSeek-R1-Distill-Llama-70B", "llama", 2, "preset")
        }
        _ => return None,
    };
    Some(shape)
}

/// The `config.json` keys the estimate needs (Hugging Face naming).
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: u64,
    num_hidden_layers: u64,
    num_attention_heads: u64,
    #[serde(default)]
    num_key_value_heads: Option<u64>,
    intermediate_size: u64,
    vocab_size: u64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    torch_dtype: Option<String>,
    #[serde(default)]
    max_position_embeddings: Option<u64>,
}

/// From a Hugging Face–style directory: `config.json` for the shape; the safetensors files'
/// sizes, when present, for the weights.
pub fn from_model_dir(dir: &Path) -> Result<ModelShape, Error> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let mut shape = from_config_json(&text, &name, &path)?;
    let on_disk: u64 = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum();
    if on_disk > 0 {
        shape.weight_bytes = on_disk;
    }
    Ok(shape)
}

/// The shape a `config.json` (`text`, read from `path`) describes, for a model called `name`.
pub fn from_config_json(text: &str, name: &str, path: &Path) -> Result<ModelShape, Error> {
    let cfg: HfConfig = serde_json::from_str(text)
        .map_err(|e| Error::Model { path: path.to_path_buf(), message: format!("config.json: {e}") })?;
    let architecture = cfg.model_type.clone().unwrap_or_else(|| "llama".into());
    let dense = Dense {
        hidden: cfg.hidden_size,
        layers: cfg.num_hidden_layers,
        heads: cfg.num_attention_heads.max(1),
        kv_heads: cfg.num_key_value_heads.unwrap_or(cfg.num_attention_heads),
        intermediate: cfg.intermediate_size,
        vocab: cfg.vocab_size,
        tied_embeddings: cfg.tie_word_embeddings,
        qkv_bias: architecture == "qwen2",
        max_context: cfg.max_position_embeddings.unwrap_or(4096),
    };
    let bytes = match cfg.torch_dtype.as_deref() {
        Some("float32") => 4,
        _ => 2,
    };
    Ok(dense.shape(name, &architecture, bytes, "config.json"))
}

/// From a GGUF file: the header's metadata for the shape, the file's size for the weights.
pub fn from_gguf(path: &Path) -> Result<ModelShape, Error> {
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let size = file.metadata().map_err(Error::io(path))?.len();
    from_gguf_reader(&mut file, size, path)
}

/// [`from_gguf`] over any reader of a GGUF file of `size` bytes (read from `path`).
pub fn from_gguf_reader<R: std::io::Read + std::io::Seek>(
    reader: &mut R,
    size: u64,
    path: &Path,
) -> Result<ModelShape, Error> {
    let content = crate::runner::read_gguf(reader, path)?;
    let md = &content.metadata;
    let arch = md.get("general.architecture").and_then(|v| v.to_string().ok().cloned()).ok_or_else(|| {
        Error::Model { path: path.to_path_buf(), message: "GGUF without general.architecture".into() }
    })?;
    let num = |key: &str| {
        md.get(&format!("{arch}.{key}")).and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
    };
    let need = |key: &str| {
        num(key).ok_or_else(|| Error::Model {
            path: path.to_path_buf(),
            message: format!("GGUF metadata lacks {arch}.{key}"),
        })
    };
    let hidden = need("embedding_length")?;
    let layers = need("block_count")?;
    let heads = need("attention.head_count")?.max(1);
    let kv_heads = num("attention.head_count_kv").unwrap_or(heads);
    // The header's dimensions are the file's say: multiplied and summed without overflow.
    let parameters: u64 = content
        .tensor_infos
        .values()
        .map(|t| t.shape.dims().iter().try_fold(1u64, |n, d| n.checked_mul(*d as u64)).unwrap_or(u64::MAX))
        .fold(0u64, u64::saturating_add);
    let name = md
        .get("general.name")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    Ok(ModelShape {
        name,
        architecture: arch.clone(),
        parameters,
        weight_bytes: size,
        // Header values are the file's say: multiplied without overflow.
        kv_bytes_per_token: [2, layers, kv_heads, hidden / heads, 2].into_iter().fold(1u64, u64::saturating_mul),
        max_context: num("context_length").unwrap_or(4096),
        source: "gguf".into(),
    })
}

/// `--model`: a preset name, a directory or a `.gguf` file.
pub fn resolve(model: &str) -> Result<ModelShape, Error> {
    let path = Path::new(model);
    if path.is_dir() {
        return from_model_dir(path);
    }
    if path.is_file() {
        return from_gguf(path);
    }
    preset(model).ok_or_else(|| Error::UnknownModel { model: model.to_string(), presets: PRESETS.join(", ") })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn preset_parameter_counts_match_the_published_sizes() {
        // Published sizes: 1.78 B, 7.62 B, 14.8 B, 32.8 B, 8.03 B, 70.6 B.
        for (name, billions) in [
            ("r1-distill-qwen-1.5b", 1.78),
            ("r1-distill-qwen-7b", 7.62),
            ("r1-distill-qwen-14b", 14.8),
            ("r1-distill-qwen-32b", 32.8),
            ("r1-distill-llama-8b", 8.03),
            ("r1-distill-llama-70b", 70.6),
        ] {
            let p = preset(name).unwrap().parameters as f64 / 1e9;
            assert!((p - billions).abs() / billions < 0.02, "{name}: {p} B vs {billions} B");
        }
        let r1 = Requirements::new(preset("DeepSeek-R1").unwrap(), Some(32_768));
        assert!(r1.total_gib() > 600.0 && r1.total_gib() < 700.0, "{}", r1.total_gib());
    }
}
