//! Block-quantized weights, repacked once at load for integer dot products, and activations
//! quantized once per matrix product.
//!
//! GGML's `Q8_0`, `Q4_0` and `Q4_1` blocks (32 values, one f16 scale, `Q4_1` also an f16 minimum)
//! are repacked in groups of four rows, block by block, so that one 512-bit register holds the
//! same half-block of four rows and one AVX-512 VNNI instruction multiplies it by a token's
//! half-block (broadcast four times): two instructions give four rows' dot products for a block,
//! four lanes each, and one conversion, one multiply and one fused add scale them.
//!
//! - `Q8_0`: per group and block, 128 bytes: values 0–15 of rows 0–3, then values 16–31, each
//!   stored as `q + 128` (unsigned; the product then carries `128 · Σx`, removed by starting
//!   the sum at `−`[`Acts::corr`]).
//! - `Q4_0`, `Q4_1`: per group and block, the four rows' 16 GGML bytes as they are (low nibbles
//!   are values 0–15, high nibbles 16–31), 0–15 unsigned. `Q4_0` means `q − 8` (`8 · Σx` removed
//!   the same way); `Q4_1` means `d·q + m` (the `m · d_x · Σx` term added from [`Acts::s4`]).
//! - Scales (and `Q4_1` minimums) widened to f32, four per group and block. Rows past the end
//!   of the matrix (the last group's padding) have scale 0.
//!
//! Activations are quantized exactly as GGML's (and candle's) `Q8_0`/`Q8_1` are: per block
//! `d = max|x| / 127`, `q = round(x / d)`, the scale kept as f16 — so the integer sums are the
//! reference's, and only the order of the float additions differs.

use half::f16;

/// Values per block.
pub const BLOCK: usize = 32;
/// Rows per group.
pub const GROUP: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Q8_0,
    Q4_0,
    Q4_1,
}

impl Kind {
    /// Bytes of one GGML block.
    pub fn ggml_block_bytes(self) -> usize {
        match self {
            Kind::Q8_0 => 34,
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
        }
    }

    /// Bytes of one repacked group-block (four rows' values of one block).
    pub fn group_bytes(self) -> usize {
        match self {
            Kind::Q8_0 => GROUP * BLOCK,
            Kind::Q4_0 | Kind::Q4_1 => GROUP * BLOCK / 2,
        }
    }

    /// What one unsigned weight value stands for above its signed value: the integer product of
    /// a block carries `offset · Σx`.
    pub fn offset(self) -> i32 {
        match self {
            Kind::Q8_0 => 128,
            Kind::Q4_0 => 8,
            Kind::Q4_1 => 0,
        }
    }
}

/// A repacked weight matrix: `rows` output features × `cols` inputs.
#[derive(Clone)]
pub struct QMatrix {
    pub kind: Kind,
    pub rows: usize,
    pub cols: usize,
    /// Blocks per row.
    pub blocks: usize,
    /// Groups of four rows (the last padded).
    pub groups: usize,
    /// `groups × blocks × kind.group_bytes()`.
    pub data: Vec<u8>,
    /// Scales, `groups × blocks × 4`.
    pub d: Vec<f32>,
    /// `Q4_1` minimums, `groups × blocks × 4`; empty otherwise.
    pub m: Vec<f32>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QMatrix")
            .field("kind", &self.kind)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

impl QMatrix {
    /// Repacks GGML blocks (`rows × cols/32` of them, row-major) of `kind`.
    pub fn repack(kind: Kind, rows: usize, cols: usize, ggml: &[u8]) -> Result<QMatrix, String> {
        if cols == 0 || rows == 0 || !cols.is_multiple_of(BLOCK) {
            return Err(format!("a {rows}×{cols} matrix: inputs must be a positive multiple of {BLOCK}"));
        }
        let blocks = cols / BLOCK;
        let expected = rows
            .checked_mul(blocks)
            .and_then(|n| n.checked_mul(kind.ggml_block_bytes()))
            .ok_or_else(|| format!("a {rows}×{cols} matrix is too large"))?;
        if ggml.len() != expected {
            return Err(format!("{kind:?} {rows}×{cols}: {} bytes, expected {expected}", ggml.len()));
        }
        let groups = rows.div_ceil(GROUP);
        let gb = kind.group_bytes();
        // Padding rows: Q8_0 values 0 (stored 128), Q4 values 0, scales 0.
        let mut data = vec![if kind == Kind::Q8_0 { 128u8 } else { 0 }; groups * blocks * gb];
        let mut d = vec![0f32; groups * blocks * GROUP];
        let mut m = if kind == Kind::Q4_1 { vec![0f32; groups * blocks * GROUP] } else { Vec::new() };
        let bb = kind.ggml_block_bytes();
        for r in 0..rows {
            let (g, i) = (r / GROUP, r % GROUP);
            for b in 0..blocks {
                let src = &ggml[(r * blocks + b) * bb..(r * blocks + b + 1) * bb];
                let gbi = g * blocks + b;
                d[gbi * GROUP + i] = f16_at(src, 0);
                let dst = &mut data[gbi * gb..(gbi + 1) * gb];
                match kind {
                    Kind::Q8_0 => {
                        for (j, &q) in src[2..34].iter().enumerate() {
                            dst[(j / 16) * 64 + i * 16 + j % 16] = q ^ 0x80;
                        }
                    }
                    Kind::Q4_0 => dst[i * 16..(i + 1) * 16].copy_from_slice(&src[2..18]),
                    Kind::Q4_1 => {
                        m[gbi * GROUP + i] = f16_at(src, 2);
                        dst[i * 16..(i + 1) * 16].copy_from_slice(&src[4..20]);
                    }
                }
            }
        }
        Ok(QMatrix { kind, rows, cols, blocks, groups, data, d, m })
    }

    /// The unsigned stored value `j` (0–31) of row `r`'s block `b`.
    #[inline(always)]
    fn stored(&self, r: usize, b: usize, j: usize) -> u8 {
        let (g, i) = (r / GROUP, r % GROUP);
        let at = (g * self.blocks + b) * self.kind.group_bytes();
        match self.kind {
            Kind::Q8_0 => self.data[at + (j / 16) * 64 + i * 16 + j % 16],
            Kind::Q4_0 | Kind::Q4_1 => {
                let byte = self.data[at + i * 16 + j % 16];
                if j < 16 {
                    byte & 0x0F
                } else {
                    byte >> 4
                }
            }
        }
    }

    /// Row `r` as floats (the reference dequantization: `d·(q − offset)`, or `d·q + m`).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (g, i) = (r / GROUP, r % GROUP);
        for (b, chunk) in out.chunks_mut(BLOCK).enumerate().take(self.blocks) {
            let d = self.d[(g * self.blocks + b) * GROUP + i];
            for (j, o) in chunk.iter_mut().enumerate() {
                let q = i32::from(self.stored(r, b, j));
                *o = match self.kind {
                    Kind::Q8_0 => d * (q - 128) as f32,
                    Kind::Q4_0 => d * (q - 8) as f32,
                    Kind::Q4_1 => d * q as f32 + self.m[(g * self.blocks + b) * GROUP + i],
                };
            }
        }
    }
}

/// Activations quantized per block for one weight kind: `tokens` rows of `blocks` blocks.
#[derive(Debug, Default)]
pub struct Acts {
    /// The weights' kind these were quantized for (its offset is in `nc`).
    pub kind: Option<Kind>,
    pub tokens: usize,
    pub blocks: usize,
    /// `tokens × blocks·32`.
    pub q: Vec<i8>,
    /// Scales (f16-rounded), `tokens × blocks`.
    pub d: Vec<f32>,
    /// Per block, `−offset · Σq / 4`: four lanes of it start a row's integer sum, removing what
    /// the unsigned weights added.
    pub nc: Vec<i32>,
    /// `Q4_1` only: per block `d·Σq` (as f16, as GGML's `Q8_1` keeps it) / 4.
    pub s4: Vec<f32>,
}

impl Acts {
    /// Quantizes `tokens` rows of `cols` floats (`x`, row-major) for products with `kind`
    /// weights, with `rows` doing the work for a run of whole rows (a SIMD build of
    /// [`quantize_rows_portable`]), split over the thread pool for many tokens.
    pub fn quantize(&mut self, x: &[f32], tokens: usize, cols: usize, kind: Kind, rows: RowQuantizer) {
        let blocks = cols / BLOCK;
        self.kind = Some(kind);
        self.tokens = tokens;
        self.blocks = blocks;
        // Every element is written below: only growth needs filling.
        fit(&mut self.q, tokens * cols, 0);
        fit(&mut self.d, tokens * blocks, 0.0);
        fit(&mut self.nc, tokens * blocks, 0);
        let q41 = kind == Kind::Q4_1;
        fit(&mut self.s4, if q41 { tokens * blocks } else { 0 }, 0.0);
        let offset = kind.offset();
        let x = &x[..tokens * cols];
        if tokens < 16 {
            rows(x, &mut self.q, &mut self.d, &mut self.nc, &mut self.s4, offset, q41);
            return;
        }
        use rayon::prelude::*;
        let per = tokens.div_ceil(rayon::current_num_threads().max(1) * 2);
        let s4: Vec<&mut [f32]> = if q41 {
            self.s4.chunks_mut(per * blocks).collect()
        } else {
            (0..tokens.div_ceil(per)).map(|_| &mut [][..]).collect()
        };
        x.par_chunks(per * cols)
            .zip(self.q.par_chunks_mut(per * cols))
            .zip(self.d.par_chunks_mut(per * blocks))
            .zip(self.nc.par_chunks_mut(per * blocks))
            .zip(s4)
            .for_each(|((((x, q), d), nc), s4)| rows(x, q, d, nc, s4, offset, q41));
    }
}

/// A function quantizing whole rows: `(x, q, d, nc, s4, offset, q4_1)`.
pub type RowQuantizer = fn(&[f32], &mut [i8], &mut [f32], &mut [i32], &mut [f32], i32, bool);

fn fit<T: Copy>(v: &mut Vec<T>, n: usize, zero: T) {
    v.truncate(n);
    v.resize(n, zero);
}

/// A block's scale as GGML's `Q8_0`/`Q8_1` keep it, from its largest magnitude: `(d, 1/d)`,
/// `d` rounded to f16 (the inverse is not: GGML quantizes with the unrounded one).
pub fn block_scale(amax: f32) -> (half::f16, f32) {
    let d = amax / 127.0;
    (f16::from_f32(d), if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// What a quantized block leaves beside its values, from its f16 scale and the sum of its
/// values: the scale, the correction `−offset·Σq/4`, and (`Q4_1`) `d·Σq` as `Q8_1`'s f16 / 4.
pub fn block_sums(dh: half::f16, sum: i32, offset: i32, q41: bool) -> (f32, i32, f32) {
    let s4 = if q41 { (f16::from_f32(sum as f32) * dh).to_f32() / 4.0 } else { 0.0 };
    (dh.to_f32(), -(offset * sum / 4), s4)
}

/// Quantizes blocks of `x` into `q` (the same length), their scales into `d`, their
/// corrections into `nc` and (`Q4_1`) their scaled sums into `s4`, one per block: the portable
/// build (`x86` has the AVX-512 one).
pub fn quantize_rows_portable(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    nc: &mut [i32],
    s4: &mut [f32],
    offset: i32,
    q41: bool,
) {
    for (i, (xs, q)) in x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)).enumerate() {
        // The largest magnitude, NaNs ignored (as `f32::max` does), in 16 lanes so it vectorizes.
        let mut lanes = [0f32; 16];
        for c in xs.chunks_exact(16) {
            for (m, v) in lanes.iter_mut().zip(c) {
                let a = v.abs();
                *m = if a > *m { a } else { *m };
            }
        }
        let (dh, id) = block_scale(lanes.iter().fold(0f32, |m, &v| if v > m { v } else { m }));
        for (qv, &v) in q.iter_mut().zip(xs) {
            *qv = round_half_away(v * id);
        }
        let sum = q.iter().map(|&v| i32::from(v)).sum::<i32>();
        let (scale, corr, s) = block_sums(dh, sum, offset, q41);
        (d[i], nc[i]) = (scale, corr);
        if q41 {
            s4[i] = s;
        }
    }
}

/// `v.round() as i8` (half away from zero, saturating) without a call into libm: exact for
/// every f32, as `as` conversions truncate exactly.
#[inline(always)]
fn round_half_away(v: f32) -> i8 {
    let v = v.clamp(-128.0, 127.0);
    let t = v as i32;
    let frac = v - t as f32;
    let r = t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5);
    r.clamp(-128, 127) as i8
}

/// The portable kernel: `out[(t − t0)·ld + (r − r0)] = W[r] · x[t]` for the given rows and tokens.
pub fn matmul_portable(
    w: &QMatrix,
    rows: std::ops::Range<usize>,
    x: &Acts,
    toks: std::ops::Range<usize>,
    out: &mut [f32],
    ld: usize,
) {
    assert_eq!(x.kind, Some(w.kind), "activations quantized for another kind of weights");
    let mut wv = [0u8; BLOCK];
    for r in rows.clone() {
        let (g, i) = (r / GROUP, r % GROUP);
        for t in toks.clone() {
            let mut acc = 0f32;
            for b in 0..w.blocks {
                for (j, v) in wv.iter_mut().enumerate() {
                    *v = w.stored(r, b, j);
                }
                let xq = &x.q[(t * x.blocks + b) * BLOCK..(t * x.blocks + b + 1) * BLOCK];
                let at = t * x.blocks + b;
                let mut sum = 4 * x.nc[at];
                for (wq, xq) in wv.iter().zip(xq) {
                    sum += i32::from(*wq) * i32::from(*xq);
                }
                let gbi = (g * w.blocks + b) * GROUP + i;
                acc += w.d[gbi] * x.d[at] * sum as f32;
                if w.kind == Kind::Q4_1 {
                    acc += w.m[gbi] * x.s4[at] * 4.0;
                }
            }
            out[(t - toks.start) * ld + (r - rows.start)] = acc;
        }
    }
}
