//! chipledger's own CPU engine for quantized GGUF models (`qwen2`, `llama`) whose matrices are
//! `Q8_0`, `Q4_0` or `Q4_1` — the runner's fast path on the CPU; everything else (safetensors,
//! K-quants, CUDA, CPUs without AVX-512 VNNI) runs on candle's models, which remain the reference this engine is tested
//! against (`runner::Engine::Reference`).
//!
//! The same arithmetic as candle's `quantized_qwen2`/`quantized_llama` (and llama.cpp's): RMS
//! norm, rotary embeddings (NeoX halves for qwen2, interleaved pairs for llama), grouped-query
//! attention over an f32 KV cache, SwiGLU, activations quantized to 8 bits per 32-value block
//! before every product with quantized weights. What differs is how the work is laid out:
//!
//! - weights are repacked once at load ([`quant`]) in groups of four rows per block: f32
//!   scales, unsigned values, so that one AVX-512 VNNI instruction multiplies four rows'
//!   half-block by a token's half-block ([`x86`]);
//! - a product is tiled over groups of rows × tokens, each activation block quantized once per
//!   matrix (not once per row), and split over one process-wide pool by tokens (prefill) or rows
//!   (decode), the calling thread working too; q/k/v and gate/up share one quantization;
//! - keys are cached dimension-major in blocks of 16 positions; norms and rotary run over reused
//!   buffers; the last layer computes attention and feed-forward for the last token only, whose
//!   logits are the only ones returned.
//!
//! The runner uses it only where the CPU has AVX-512 VNNI; elsewhere the portable kernels
//! (plain Rust, tested against the SIMD ones) compute the same integers, more slowly than
//! candle's AVX2 kernels.

pub mod quant;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file;
use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use quant::{Acts, Kind, QMatrix};

#[cfg(target_arch = "x86_64")]
pub use x86::Features;

/// Without x86-64 only the portable kernels exist.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features;

#[cfg(not(target_arch = "x86_64"))]
impl Features {
    pub fn detect() -> Features {
        Features
    }
    pub fn none() -> Features {
        Features
    }
    pub fn any(self) -> bool {
        false
    }
    pub fn name(self) -> &'static str {
        "portable"
    }
}

/// The largest vocabulary, width, depth and context accepted from a header: beyond any
/// R1-family model, small enough that no product of them overflows.
const MAX_DIM: usize = 1 << 20;
const MAX_LAYERS: usize = 1024;

#[derive(Clone, Debug)]
struct Config {
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    /// NeoX rotary halves (qwen2) rather than interleaved pairs (llama).
    neox: bool,
    rope_base: f32,
    max_context: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    wo: QMatrix,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

enum Embedding {
    Quantized(QMatrix),
    Float {
        cols: usize,
        values: Vec<f32>,
    },
    /// Tied to the output matrix (the same tensor).
    Output,
}

/// Positions per block of the key cache.
pub(crate) const KEYS: usize = 16;

/// One layer's cache, per KV head: keys (rotated) in blocks of [`KEYS`] positions stored
/// dimension-major (`[block][dim][position]`, so a query meets 16 keys in one vector), values
/// `positions × head_dim`.
#[derive(Default)]
struct Cache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Cache {
    fn push(&mut self, g: usize, p: usize, k: &[f32], v: &[f32]) {
        let hd = k.len();
        let (block, lane) = (p / KEYS, p % KEYS);
        let keys = &mut self.k[g];
        if keys.len() < (block + 1) * KEYS * hd {
            keys.resize((block + 1) * KEYS * hd, 0.0);
        }
        for (d, &x) in k.iter().enumerate() {
            keys[block * KEYS * hd + d * KEYS + lane] = x;
        }
        self.v[g].truncate(p * hd);
        self.v[g].extend_from_slice(v);
    }

    /// Keeps positions `..pos` (later lanes of the last key block are overwritten before use).
    fn truncate(&mut self, pos: usize, hd: usize) {
        self.k.iter_mut().for_each(|k| k.truncate(pos.div_ceil(KEYS) * KEYS * hd));
        self.v.iter_mut().for_each(|v| v.truncate(pos * hd));
    }
}

/// Buffers reused across calls.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    acts: Acts,
    acts2: Acts,
}

/// A loaded model.
pub struct Engine {
    cfg: Config,
    features: Features,
    embedding: Embedding,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output: QMatrix,
    /// `cos`, `sin` per position × `head_dim/2`, grown on demand.
    rope: (Vec<f32>, Vec<f32>),
    cache: Vec<Cache>,
    /// Positions in the cache.
    len: usize,
    scratch: Scratch,
}

/// The engines' workers, one pool for the process (however many models it holds), the calling
/// thread among them while it runs a forward pass — so that it computes its share and hands
/// the rest over without sleeping in between. As many threads as the global pool
/// (`RAYON_NUM_THREADS` or every core); if it cannot start, the global pool runs the work.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("chipledger-engine-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("layers", &self.layers.len())
            .field("features", &self.features)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Why a file is not for this engine (it runs on candle instead), or why it cannot load.
#[derive(Debug)]
pub enum LoadError {
    /// A tensor type or layout this engine does not compute (K-quants, experts…).
    Unsupported(String),
    /// The file is inconsistent.
    Invalid(String),
}

fn invalid(m: impl Into<String>) -> LoadError {
    LoadError::Invalid(m.into())
}

struct Reader<'a, R> {
    content: &'a gguf_file::Content,
    r: &'a mut R,
    size: u64,
    /// Bytes of tensor data read so far.
    read: u64,
}

impl<R: Read + Seek> Reader<'_, R> {
    fn info(&self, name: &str) -> Result<&gguf_file::TensorInfo, LoadError> {
        self.content.tensor_infos.get(name).ok_or_else(|| invalid(format!("no tensor {name}")))
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The raw bytes of a tensor of `elems` values, checked against the file's end.
    fn bytes(&mut self, name: &str) -> Result<(GgmlDType, Vec<usize>, Vec<u8>), LoadError> {
        let info = self.info(name)?;
        let dims = info.shape.dims().to_vec();
        let dtype = info.ggml_dtype;
        let elems = dims
            .iter()
            .try_fold(1usize, |a, &d| if d <= MAX_DIM { a.checked_mul(d) } else { None })
            .ok_or_else(|| invalid(format!("{name}: dimensions {dims:?} out of range")))?;
        let (block, bytes_per) = match dtype {
            GgmlDType::F32 => (1, 4),
            GgmlDType::F16 => (1, 2),
            GgmlDType::Q8_0 => (32, 34),
            GgmlDType::Q4_0 => (32, 18),
            GgmlDType::Q4_1 => (32, 20),
            other => return Err(LoadError::Unsupported(format!("{name} is {other:?}"))),
        };
        if !elems.is_multiple_of(block) {
            return Err(invalid(format!("{name}: {elems} values, not whole {block}-value blocks")));
        }
        let len = ((elems / block) as u64).checked_mul(bytes_per);
        let start = self.content.tensor_data_offset.checked_add(info.offset);
        let end = start.zip(len).and_then(|(s, l)| s.checked_add(l));
        let (Some(start), Some(len), Some(end)) = (start, len, end) else {
            return Err(invalid(format!("{name}: offset or size out of range")));
        };
        if end > self.size {
            return Err(invalid(format!("{name} ends at byte {end}, past the file's {}", self.size)));
        }
        // Tensors sharing bytes would let a small file ask for any amount of memory: all of
        // them together may not read more than the file holds.
        self.read = self.read.saturating_add(len);
        if self.read > self.size {
            return Err(invalid(format!(
                "{name}: the tensors overlap (more bytes read than the file's {})",
                self.size
            )));
        }
        self.r.seek(SeekFrom::Start(start)).map_err(|e| invalid(e.to_string()))?;
        let mut buf = vec![0u8; len as usize];
        self.r.read_exact(&mut buf).map_err(|e| invalid(format!("{name}: {e}")))?;
        Ok((dtype, dims, buf))
    }

    fn floats(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let (dtype, dims, buf) = self.bytes(name)?;
        if dims.iter().product::<usize>() != len {
            return Err(invalid(format!("{name}: {dims:?}, expected {len} values")));
        }
        match dtype {
            GgmlDType::F32 => Ok(buf.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
            GgmlDType::F16 => {
                Ok(buf.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect())
            }
            other => Err(LoadError::Unsupported(format!("{name} is {other:?}, expected F32 or F16"))),
        }
    }

    /// A quantized matrix of `rows × cols` (GGUF `[cols, rows]`).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, LoadError> {
        let (dtype, dims, buf) = self.bytes(name)?;
        if dims != [rows, cols] {
            return Err(invalid(format!("{name}: shape {dims:?}, expected [{rows}, {cols}]")));
        }
        let kind = match dtype {
            GgmlDType::Q8_0 => Kind::Q8_0,
            GgmlDType::Q4_0 => Kind::Q4_0,
            GgmlDType::Q4_1 => Kind::Q4_1,
            other => return Err(LoadError::Unsupported(format!("{name} is {other:?}"))),
        };
        QMatrix::repack(kind, rows, cols, &buf).map_err(|e| invalid(format!("{name}: {e}")))
    }
}

fn meta_usize(content: &gguf_file::Content, key: &str) -> Result<usize, LoadError> {
    let v = content.metadata.get(key).ok_or_else(|| invalid(format!("no {key} in the header")))?;
    let n = v.to_u32().map_err(|e| invalid(format!("{key}: {e}")))? as usize;
    if n == 0 || n > MAX_DIM {
        return Err(invalid(format!("{key} = {n} is out of range")));
    }
    Ok(n)
}

fn meta_f32(content: &gguf_file::Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

impl Engine {
    /// Loads `qwen2` or `llama` weights from a parsed GGUF header and its file.
    pub fn load<R: Read + Seek>(
        content: &gguf_file::Content,
        r: &mut R,
        arch: &str,
        features: Features,
    ) -> Result<Engine, LoadError> {
        let neox = match arch {
            "qwen2" => true,
            "llama" => false,
            other => return Err(LoadError::Unsupported(format!("architecture {other}"))),
        };
        let key = |k: &str| format!("{arch}.{k}");
        if content.metadata.get(&key("expert_count")).and_then(|v| v.to_u32().ok()).unwrap_or(0) > 1 {
            return Err(LoadError::Unsupported("mixture of experts".into()));
        }
        let hidden = meta_usize(content, &key("embedding_length"))?;
        let heads = meta_usize(content, &key("attention.head_count"))?;
        let kv_heads = meta_usize(content, &key("attention.head_count_kv")).unwrap_or(heads);
        let layers_n = meta_usize(content, &key("block_count"))?;
        if layers_n > MAX_LAYERS {
            return Err(invalid(format!("{layers_n} layers")));
        }
        let ffn = meta_usize(content, &key("feed_forward_length")).ok();
        if !hidden.is_multiple_of(heads) || !heads.is_multiple_of(kv_heads) {
            return Err(invalid(format!("{hidden} wide with {heads} heads and {kv_heads} KV heads")));
        }
        let head_dim = hidden / heads;
        if !head_dim.is_multiple_of(2) {
            return Err(invalid(format!("head width {head_dim} is odd")));
        }
        if let Ok(rope_dim) = meta_usize(content, &key("rope.dimension_count")) {
            if rope_dim != head_dim {
                return Err(LoadError::Unsupported(format!("rotary over {rope_dim} of {head_dim} dimensions")));
            }
        }
        let eps = meta_f32(content, &key("attention.layer_norm_rms_epsilon"))
            .ok_or_else(|| invalid("no attention.layer_norm_rms_epsilon"))?;
        let rope_base = meta_f32(content, &key("rope.freq_base")).unwrap_or(10000.0);
        let max_context = match content.metadata.get(&key("context_length")) {
            Some(_) => meta_usize(content, &key("context_length"))?,
            None => 4096,
        };
        let cfg = Config { hidden, heads, kv_heads, head_dim, eps, neox, rope_base, max_context };
        let size = r.seek(SeekFrom::End(0)).map_err(|e| invalid(e.to_string()))?;
        let mut rd = Reader { content, r, size, read: 0 };

        let emb_dims = rd.info("token_embd.weight")?.shape.dims().to_vec();
        let [vocab, emb_cols] = emb_dims[..] else {
            return Err(invalid(format!("token_embd.weight has shape {emb_dims:?}")));
        };
        if emb_cols != hidden {
            return Err(invalid(format!("token_embd.weight is {emb_cols} wide, the model {hidden}")));
        }
        let tied = !rd.has("output.weight");
        let output = rd.matrix(if tied { "token_embd.weight" } else { "output.weight" }, vocab, hidden)?;
        let embedding = if tied {
            Embedding::Output
        } else {
            match rd.info("token_embd.weight")?.ggml_dtype {
                GgmlDType::F32 | GgmlDType::F16 => {
                    Embedding::Float { cols: hidden, values: rd.floats("token_embd.weight", vocab * hidden)? }
                }
                _ => Embedding::Quantized(rd.matrix("token_embd.weight", vocab, hidden)?),
            }
        };
        let norm = rd.floats("output_norm.weight", hidden)?;
        let kv = kv_heads * head_dim;
        let mut layers = Vec::with_capacity(layers_n);
        for i in 0..layers_n {
            let n = |s: &str| format!("blk.{i}.{s}");
            let gate_dims = rd.info(&n("ffn_gate.weight"))?.shape.dims().to_vec();
            let inter = match (gate_dims.first(), ffn) {
                (Some(&g), Some(f)) if g != f => {
                    return Err(invalid(format!("{}: {g} rows, feed_forward_length {f}", n("ffn_gate.weight"))))
                }
                (Some(&g), _) => g,
                (None, _) => return Err(invalid(format!("{} has no shape", n("ffn_gate.weight")))),
            };
            let bias = |rd: &mut Reader<R>, s: &str, len: usize| -> Result<Option<Vec<f32>>, LoadError> {
                if rd.has(&n(s)) {
                    rd.floats(&n(s), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: rd.floats(&n("attn_norm.weight"), hidden)?,
                ffn_norm: rd.floats(&n("ffn_norm.weight"), hidden)?,
                wq: rd.matrix(&n("attn_q.weight"), hidden, hidden)?,
                wk: rd.matrix(&n("attn_k.weight"), kv, hidden)?,
                wv: rd.matrix(&n("attn_v.weight"), kv, hidden)?,
                bq: bias(&mut rd, "attn_q.bias", hidden)?,
                bk: bias(&mut rd, "attn_k.bias", kv)?,
                bv: bias(&mut rd, "attn_v.bias", kv)?,
                wo: rd.matrix(&n("attn_output.weight"), hidden, hidden)?,
                gate: rd.matrix(&n("ffn_gate.weight"), inter, hidden)?,
                up: rd.matrix(&n("ffn_up.weight"), inter, hidden)?,
                down: rd.matrix(&n("ffn_down.weight"), hidden, inter)?,
            });
        }
        let cache =
            (0..layers_n).map(|_| Cache { k: vec![Vec::new(); kv_heads], v: vec![Vec::new(); kv_heads] }).collect();
        Ok(Engine {
            cfg,
            features,
            embedding,
            layers,
            norm,
            output,
            rope: (Vec::new(), Vec::new()),
            cache,
            len: 0,
            scratch: Scratch::default(),
        })
    }

    /// The context length the header declares.
    pub fn max_context(&self) -> usize {
        self.cfg.max_context
    }

    /// `avx512-vnni` or `portable`.
    pub fn kernels(&self) -> &'static str {
        self.features.name()
    }

    pub fn vocab(&self) -> usize {
        self.output.rows
    }

    /// Forgets the KV cache.
    pub fn reset(&mut self) {
        self.len = 0;
        for c in &mut self.cache {
            c.k.iter_mut().chain(c.v.iter_mut()).for_each(Vec::clear);
        }
    }

    /// Logits of the last of `tokens`, fed at positions `pos…`: `pos` may rewind the cache
    /// (0 starts over) but not skip ahead of it.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, String> {
        match pool() {
            Some(pool) => pool.install(|| self.forward_here(tokens, pos)),
            None => self.forward_here(tokens, pos),
        }
    }

    fn forward_here(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, String> {
        if tokens.is_empty() {
            return Err("no tokens to feed".into());
        }
        if pos > self.len {
            return Err(format!("position {pos} is past the {} cached", self.len));
        }
        let end = pos + tokens.len();
        if end > self.cfg.max_context {
            return Err(format!("{end} positions exceed the model's context of {}", self.cfg.max_context));
        }
        let vocab = self.vocab();
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(format!("token {t} is outside the vocabulary of {vocab}"));
        }
        self.truncate(pos);
        self.grow_rope(end);
        let (d, n) = (self.cfg.hidden, tokens.len());
        let mut x = std::mem::take(&mut self.scratch.x);
        x.clear();
        x.resize(n * d, 0.0);
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            match &self.embedding {
                Embedding::Quantized(m) => m.dequantize_row(t as usize, row),
                Embedding::Output => self.output.dequantize_row(t as usize, row),
                Embedding::Float { cols, values, .. } => {
                    row.copy_from_slice(&values[t as usize * cols..(t as usize + 1) * cols])
                }
            }
        }
        let last = self.layers.len() - 1;
        for l in 0..self.layers.len() {
            self.layer(l, &mut x, pos, n, l == last);
        }
        // Only the last position's logits: the last layer left it alone in `x`.
        let mut h = vec![0f32; d];
        rms_norm(&x[..d], &self.norm, self.cfg.eps, &mut h);
        self.scratch.x = x;
        let mut acts = std::mem::take(&mut self.scratch.acts);
        acts.quantize(&h, 1, d, self.output.kind, row_quantizer(self.features));
        let mut logits = vec![0f32; vocab];
        matmul(self.features, &self.output, &acts, &mut logits);
        self.scratch.acts = acts;
        self.len = end;
        Ok(logits)
    }

    fn truncate(&mut self, pos: usize) {
        let w = self.cfg.head_dim;
        for c in &mut self.cache {
            c.truncate(pos, w);
        }
        self.len = pos;
    }

    fn grow_rope(&mut self, end: usize) {
        let half = self.cfg.head_dim / 2;
        let have = self.rope.0.len() / half;
        for p in have..end {
            for i in 0..half {
                // candle's and llama.cpp's table: θ_i = base^(−2i/d), in f32.
                let theta = 1f32 / self.cfg.rope_base.powf((2 * i) as f32 / self.cfg.head_dim as f32);
                let a = p as f32 * theta;
                self.rope.0.push(a.cos());
                self.rope.1.push(a.sin());
            }
        }
    }

    /// One layer over `n` tokens at `pos…` (`x` is `n × hidden`). The last layer leaves only the
    /// last token's row in `x`.
    fn layer(&mut self, l: usize, x: &mut Vec<f32>, pos: usize, n: usize, last: bool) {
        let cfg = self.cfg.clone();
        let (d, hd) = (cfg.hidden, cfg.head_dim);
        let kvw = cfg.kv_heads * hd;
        let f = self.features;
        let s = &mut self.scratch;
        let layer = &self.layers[l];
        resize(&mut s.h, n * d);
        for (xr, hr) in x.chunks_exact(d).zip(s.h.chunks_exact_mut(d)) {
            rms_norm(xr, &layer.attn_norm, cfg.eps, hr);
        }
        resize(&mut s.q, n * d);
        resize(&mut s.k, n * kvw);
        resize(&mut s.v, n * kvw);
        if layer.wq.kind == layer.wk.kind && layer.wq.kind == layer.wv.kind {
            // One quantization, and one trip to the pool when decoding.
            s.acts.quantize(&s.h, n, d, layer.wq.kind, row_quantizer(f));
            matmuls(f, &[&layer.wq, &layer.wk, &layer.wv], &s.acts, [&mut s.q[..], &mut s.k[..], &mut s.v[..]]);
        } else {
            project(f, &layer.wq, &s.h, n, &mut s.acts, &mut s.q);
            project(f, &layer.wk, &s.h, n, &mut s.acts, &mut s.k);
            project(f, &layer.wv, &s.h, n, &mut s.acts, &mut s.v);
        }
        for (out, b) in [(&mut s.q, &layer.bq), (&mut s.k, &layer.bk), (&mut s.v, &layer.bv)] {
            if let Some(b) = b {
                for row in out.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
                }
            }
        }
        let half = hd / 2;
        for t in 0..n {
            let at = (pos + t) * half..(pos + t + 1) * half;
            let (cos, sin) = (&self.rope.0[at.clone()], &self.rope.1[at]);
            for head in s.q[t * d..(t + 1) * d].chunks_exact_mut(hd) {
                rotate(head, cos, sin, cfg.neox);
            }
            for head in s.k[t * kvw..(t + 1) * kvw].chunks_exact_mut(hd) {
                rotate(head, cos, sin, cfg.neox);
            }
        }
        let cache = &mut self.cache[l];
        for t in 0..n {
            for g in 0..cfg.kv_heads {
                let at = t * kvw + g * hd..t * kvw + (g + 1) * hd;
                cache.push(g, pos + t, &s.k[at.clone()], &s.v[at]);
            }
        }
        // The last layer needs only the last token from here on.
        let (t0, m) = if last { (n - 1, 1) } else { (0, n) };
        resize(&mut s.att, m * d);
        attention(f, &cfg, &s.q, cache, pos, t0, n, &mut s.att);
        if last {
            x.drain(..(n - 1) * d);
        }
        resize(&mut s.o, m * d);
        project(f, &layer.wo, &s.att, m, &mut s.acts, &mut s.o);
        x.iter_mut().zip(&s.o).for_each(|(x, o)| *x += o);
        resize(&mut s.h, m * d);
        for (xr, hr) in x.chunks_exact(d).zip(s.h.chunks_exact_mut(d)) {
            rms_norm(xr, &layer.ffn_norm, cfg.eps, hr);
        }
        let inter = layer.gate.rows;
        resize(&mut s.g, m * inter);
        resize(&mut s.u, m * inter);
        if layer.up.kind == layer.gate.kind {
            // The same quantized activations serve both.
            s.acts.quantize(&s.h, m, d, layer.gate.kind, row_quantizer(f));
            matmuls(f, &[&layer.gate, &layer.up], &s.acts, [&mut s.g[..], &mut s.u[..]]);
        } else {
            project(f, &layer.gate, &s.h, m, &mut s.acts, &mut s.g);
            project(f, &layer.up, &s.h, m, &mut s.acts2, &mut s.u);
        }
        s.g.iter_mut().zip(&s.u).for_each(|(g, u)| *g = silu(*g) * u);
        resize(&mut s.o, m * d);
        project(f, &layer.down, &s.g, m, &mut s.acts, &mut s.o);
        x.iter_mut().zip(&s.o).for_each(|(x, o)| *x += o);
    }
}

/// `v` at length `n`, its old contents kept (every caller overwrites every element).
fn resize(v: &mut Vec<f32>, n: usize) {
    v.truncate(n);
    v.resize(n, 0.0);
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * w;
    }
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32], neox: bool) {
    let half = x.len() / 2;
    for i in 0..half {
        let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos[i] - x1 * sin[i];
        x[b] = x0 * sin[i] + x1 * cos[i];
    }
}

/// `out = x · Wᵀ` for `n` rows of `x`, quantizing `x` for `w`'s kind into `acts`.
fn project(f: Features, w: &QMatrix, x: &[f32], n: usize, acts: &mut Acts, out: &mut [f32]) {
    acts.quantize(x, n, w.cols, w.kind, row_quantizer(f));
    matmul(f, w, acts, out);
}

/// Rows per parallel task when splitting rows (decode): enough tasks to balance the pool.
fn row_chunk(rows: usize, threads: usize) -> usize {
    rows.div_ceil(threads * 4).next_multiple_of(4).max(16)
}

/// `out (tokens × rows) = acts · Wᵀ` on the thread pool.
fn matmul(f: Features, w: &QMatrix, x: &Acts, out: &mut [f32]) {
    let (n, t) = (w.rows, x.tokens);
    let threads = rayon::current_num_threads().max(1);
    let kernel = |rows, toks, out: &mut [f32], ld| product(f, w, rows, x, toks, out, ld);
    if t >= 4 * threads {
        // Prefill: each task a run of tokens, every row (weights streamed once per task).
        let per = t.div_ceil(threads).next_multiple_of(4);
        out[..t * n].par_chunks_mut(per * n).enumerate().for_each(|(i, chunk)| {
            let t0 = i * per;
            kernel(0..n, t0..t0 + chunk.len() / n, chunk, n);
        });
    } else if t == 1 {
        let per = row_chunk(n, threads);
        out[..n].par_chunks_mut(per).enumerate().for_each(|(i, chunk)| {
            kernel(i * per..i * per + chunk.len(), 0..1, chunk, chunk.len());
        });
    } else {
        let per = row_chunk(n, threads);
        let parts: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(per))
            .into_par_iter()
            .map(|i| {
                let rows = i * per..((i + 1) * per).min(n);
                let mut buf = vec![0f32; t * rows.len()];
                let ld = rows.len();
                kernel(rows, 0..t, &mut buf, ld);
                (i, buf)
            })
            .collect();
        for (i, buf) in parts {
            let r0 = i * per;
            let len = buf.len() / t;
            for tok in 0..t {
                out[tok * n + r0..tok * n + r0 + len].copy_from_slice(&buf[tok * len..(tok + 1) * len]);
            }
        }
    }
}

/// Products of the same activations with several matrices: for one token, every matrix's row
/// chunks in one trip to the pool; otherwise one product after another.
fn matmuls<const N: usize>(f: Features, ws: &[&QMatrix; N], x: &Acts, outs: [&mut [f32]; N]) {
    if x.tokens != 1 {
        for (w, out) in ws.iter().zip(outs) {
            matmul(f, w, x, out);
        }
        return;
    }
    let rows: usize = ws.iter().map(|w| w.rows).sum();
    let per = row_chunk(rows, rayon::current_num_threads().max(1));
    let mut tasks: Vec<(&QMatrix, usize, &mut [f32])> = Vec::new();
    for (w, out) in ws.iter().zip(outs) {
        for (i, chunk) in out[..w.rows].chunks_mut(per).enumerate() {
            tasks.push((w, i * per, chunk));
        }
    }
    tasks.into_par_iter().for_each(|(w, r0, chunk)| {
        let ld = chunk.len();
        product(f, w, r0..r0 + ld, x, 0..1, chunk, ld);
    });
}

/// One range of a product: the SIMD kernel where the CPU has it, the portable one otherwise.
fn product(
    f: Features,
    w: &QMatrix,
    rows: std::ops::Range<usize>,
    x: &Acts,
    toks: std::ops::Range<usize>,
    out: &mut [f32],
    ld: usize,
) {
    if !kernel(f, w, rows.clone(), x, toks.clone(), out, ld) {
        quant::matmul_portable(w, rows, x, toks, out, ld);
    }
}

#[cfg(target_arch = "x86_64")]
fn row_quantizer(f: Features) -> quant::RowQuantizer {
    x86::row_quantizer(f)
}

#[cfg(not(target_arch = "x86_64"))]
fn row_quantizer(_: Features) -> quant::RowQuantizer {
    quant::quantize_rows_portable
}

#[cfg(target_arch = "x86_64")]
fn kernel(
    f: Features,
    w: &QMatrix,
    rows: std::ops::Range<usize>,
    x: &Acts,
    toks: std::ops::Range<usize>,
    out: &mut [f32],
    ld: usize,
) -> bool {
    x86::matmul(f, w, rows, x, toks, out, ld)
}

#[cfg(not(target_arch = "x86_64"))]
fn kernel(
    _: Features,
    _: &QMatrix,
    _: std::ops::Range<usize>,
    _: &Acts,
    _: std::ops::Range<usize>,
    _: &mut [f32],
    _: usize,
) -> bool {
    false
}

/// Causal attention of tokens `t0..n` (of `q`, at positions `pos…`) over the cache, into `out`
/// (`(n − t0) × hidden`), one task per head.
#[allow(clippy::too_many_arguments)]
fn attention(f: Features, cfg: &Config, q: &[f32], cache: &Cache, pos: usize, t0: usize, n: usize, out: &mut [f32]) {
    let (d, hd) = (cfg.hidden, cfg.head_dim);
    let group = cfg.heads / cfg.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let m = n - t0;
    let heads: Vec<Vec<f32>> = (0..cfg.heads)
        .into_par_iter()
        .map(|h| {
            let g = h / group;
            let mut o = vec![0f32; m * hd];
            let mut scores = Vec::with_capacity(pos + n);
            for (j, t) in (t0..n).enumerate() {
                let qh = &q[t * d + h * hd..t * d + (h + 1) * hd];
                attend(f, qh, &cache.k[g], &cache.v[g], pos + t + 1, scale, &mut scores, &mut o[j * hd..(j + 1) * hd]);
            }
            o
        })
        .collect();
    for (h, o) in heads.iter().enumerate() {
        for j in 0..m {
            out[j * d + h * hd..j * d + (h + 1) * hd].copy_from_slice(&o[j * hd..(j + 1) * hd]);
        }
    }
}

/// One query over the first `len` cached positions.
#[allow(clippy::too_many_arguments)]
fn attend(
    f: Features,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    len: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if x86::attend(f, q, k, v, len, scale, scores, out) {
        return;
    }
    let _ = f;
    attend_generic(q, k, v, len, scale, scores, out);
}

/// The arithmetic of [`attend`], inlined into each kernel's target features: scores against
/// 16 keys at a time (dimension-major blocks: every step is one vector operation), softmax,
/// then the values weighted row by row.
#[inline(always)]
pub(crate) fn attend_generic(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    len: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let hd = q.len();
    scores.clear();
    for block in k.chunks_exact(KEYS * hd).take(len.div_ceil(KEYS)) {
        let mut acc = [0f32; KEYS];
        for (&qd, keys) in q.iter().zip(block.chunks_exact(KEYS)) {
            for (a, &kd) in acc.iter_mut().zip(keys) {
                *a += qd * kd;
            }
        }
        scores.extend(acc.iter().map(|a| a * scale));
    }
    scores.truncate(len);
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (p, vr) in scores.iter().zip(v[..len * hd].chunks_exact(hd)) {
        let p = p / sum;
        out.iter_mut().zip(vr).for_each(|(o, v)| *o += p * v);
    }
}

#[cfg(test)]
mod tests;
