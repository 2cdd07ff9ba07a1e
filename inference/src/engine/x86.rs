//! AVX-512 VNNI kernels: the one place in the crate with `unsafe` — the intrinsics that read
//! memory through pointers, and the calls into `#[target_feature]` functions, each made only after
//! [`Features::detect`] saw the CPU has the features (checked once, at load). Every pointer read
//! is of a slice whose length was checked just before; `engine::tests` compares every kernel with
//! the portable one on random shapes, tails and all.
#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::quant::{self, Acts, Kind, QMatrix, BLOCK, GROUP};

/// The SIMD level this CPU offers the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    avx512_vnni: bool,
}

impl Features {
    pub fn detect() -> Features {
        Features {
            avx512_vnni: is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("fma"),
        }
    }

    pub fn none() -> Features {
        Features { avx512_vnni: false }
    }

    pub fn any(self) -> bool {
        self.avx512_vnni
    }

    pub fn name(self) -> &'static str {
        if self.avx512_vnni {
            "avx512-vnni"
        } else {
            "portable"
        }
    }
}

/// `out[(t − t0)·ld + (r − r0)] = W[r] · x[t]`, or `false` when this CPU lacks the features.
pub fn matmul(
    f: Features,
    w: &QMatrix,
    rows: Range<usize>,
    x: &Acts,
    toks: Range<usize>,
    out: &mut [f32],
    ld: usize,
) -> bool {
    if !f.avx512_vnni {
        return false;
    }
    check(w, &rows, x, &toks, out, ld);
    // SAFETY: `Features::detect` saw avx512f, avx512bw, avx512vnni and fma on this CPU, and
    // `check` bounded every index the kernel reads or writes.
    unsafe { matmul_vnni(w, rows, x, toks, out, ld) };
    true
}

/// The activation quantizer: the AVX-512 one where the CPU has it, else the portable one.
pub fn row_quantizer(f: Features) -> quant::RowQuantizer {
    if f.avx512_vnni {
        quantize_rows_avx512
    } else {
        quant::quantize_rows_portable
    }
}

fn quantize_rows_avx512(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    nc: &mut [i32],
    s4: &mut [f32],
    offset: i32,
    q41: bool,
) {
    // SAFETY: handed out by `row_quantizer` only when `Features::detect` saw avx512f and
    // avx512bw; the function indexes with checks.
    unsafe { quantize_rows_avx512_inner(x, q, d, nc, s4, offset, q41) }
}

/// [`quant::quantize_rows_portable`] with AVX-512 intrinsics: the same scale, the same rounding (half away
/// from zero, NaN to 0, saturating), the same sums — `engine::tests::quantizers_agree_exactly`.
#[target_feature(enable = "avx512f,avx512bw")]
fn quantize_rows_avx512_inner(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    nc: &mut [i32],
    s4: &mut [f32],
    offset: i32,
    q41: bool,
) {
    let zero = _mm512_setzero_ps();
    let (lo, hi, half) = (_mm512_set1_ps(-128.0), _mm512_set1_ps(127.0), _mm512_set1_ps(0.5));
    let one = _mm512_set1_epi32(1);
    for (i, (xs, qb)) in x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)).enumerate() {
        // SAFETY: `xs` holds 32 floats.
        let (a, b) = unsafe { (_mm512_loadu_ps(xs.as_ptr()), _mm512_loadu_ps(xs.as_ptr().add(16))) };
        // `max` returns its second operand when either is NaN: NaNs are ignored, as in the
        // portable code.
        let m = _mm512_max_ps(_mm512_abs_ps(b), _mm512_max_ps(_mm512_abs_ps(a), zero));
        let (dh, id) = quant::block_scale(_mm512_reduce_max_ps(m));
        let id = _mm512_set1_ps(id);
        let mut sum = _mm512_setzero_si512();
        for (h, v) in [a, b].into_iter().enumerate() {
            let v = _mm512_mul_ps(v, id);
            // NaN → 0 (`as` does so); clamp; truncate; then one step away from zero at a half.
            let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v);
            let c = _mm512_maskz_mov_ps(ordered, _mm512_min_ps(_mm512_max_ps(v, lo), hi));
            let t = _mm512_cvttps_epi32(c);
            let frac = _mm512_sub_ps(c, _mm512_cvtepi32_ps(t));
            let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, half);
            let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(frac, _mm512_sub_ps(zero, half));
            let t = _mm512_mask_add_epi32(t, up, t, one);
            let r = _mm512_mask_sub_epi32(t, down, t, one);
            sum = _mm512_add_epi32(sum, r);
            // SAFETY: `qb` holds 32 bytes; this half writes 16 of them.
            unsafe { _mm_storeu_si128(qb.as_mut_ptr().add(16 * h).cast(), _mm512_cvtsepi32_epi8(r)) };
        }
        let (scale, corr, s) = quant::block_sums(dh, _mm512_reduce_add_epi32(sum), offset, q41);
        (d[i], nc[i]) = (scale, corr);
        if q41 {
            s4[i] = s;
        }
    }
}

/// [`super::attend_generic`] compiled for AVX-512, or `false` when this CPU lacks it.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    f: Features,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    len: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) -> bool {
    if !f.avx512_vnni {
        return false;
    }
    // SAFETY: `Features::detect` saw avx512f and fma; the function indexes with checks.
    unsafe { attend_avx512(q, k, v, len, scale, scores, out) };
    true
}

#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
fn attend_avx512(q: &[f32], k: &[f32], v: &[f32], len: usize, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    super::attend_generic(q, k, v, len, scale, scores, out);
}

/// Every index the kernels touch, checked once (they index without checks), every product
/// checked for overflow.
fn check(w: &QMatrix, rows: &Range<usize>, x: &Acts, toks: &Range<usize>, out: &mut [f32], ld: usize) {
    // An overflowing size is usize::MAX, which no buffer holds: the assertions below fail.
    let mul = |a: usize, b: usize| a.saturating_mul(b);
    assert!(rows.start <= rows.end && rows.end <= w.rows, "rows out of range");
    assert!(rows.start.is_multiple_of(GROUP), "rows must start at a group of {GROUP}");
    assert!(toks.start <= toks.end && toks.end <= x.tokens, "tokens out of range");
    assert_eq!(x.blocks, w.blocks, "activations and weights differ in width");
    assert_eq!(x.kind, Some(w.kind), "activations quantized for another kind of weights");
    let gbs = mul(w.groups, w.blocks);
    assert!(mul(w.groups, GROUP) >= w.rows && w.data.len() >= mul(gbs, w.kind.group_bytes()));
    assert!(w.d.len() >= mul(gbs, GROUP) && (w.kind != Kind::Q4_1 || w.m.len() >= mul(gbs, GROUP)));
    let tbs = mul(x.tokens, x.blocks);
    assert!(x.q.len() >= mul(tbs, BLOCK) && x.d.len() >= tbs);
    assert!(x.nc.len() >= tbs && (w.kind != Kind::Q4_1 || x.s4.len() >= tbs));
    if !rows.is_empty() && !toks.is_empty() {
        assert!(ld >= rows.len(), "output stride too small");
        assert!(out.len() >= mul(toks.len() - 1, ld).saturating_add(rows.len()), "output too small");
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
unsafe fn matmul_vnni(w: &QMatrix, rows: Range<usize>, x: &Acts, toks: Range<usize>, out: &mut [f32], ld: usize) {
    // SAFETY (all three): the caller's `check` bounded rows, tokens and the output.
    unsafe {
        match w.kind {
            Kind::Q8_0 => tiles::<0, Q8_TG, Q8_TT, Q8_DG>(w, rows, x, toks, out, ld),
            Kind::Q4_0 => tiles::<1, Q4_TG, Q4_TT, Q4_DG>(w, rows, x, toks, out, ld),
            Kind::Q4_1 => tiles::<2, Q4_TG, Q4_TT, Q4_DG>(w, rows, x, toks, out, ld),
        }
    }
}

/// Activation bytes one token chunk may span: the chunk stays in L2 while every group of rows
/// passes over it.
const CHUNK_BYTES: usize = 1 << 20;
/// Prefill tiles: groups (of four rows) × tokens.
const Q8_TG: usize = 3;
const Q8_TT: usize = 4;
const Q4_TG: usize = 3;
const Q4_TT: usize = 4;
/// Decode tiles: groups for one token. A 4-bit group-block is one cache line: one group at a
/// time keeps each thread on one sequential stream (about 10% faster decoding here); 8-bit
/// ones gain from four.
const Q8_DG: usize = 4;
const Q4_DG: usize = 1;

/// Where a tile writes: the output, its stride, and the range's first row and token.
struct Out<'a> {
    out: &'a mut [f32],
    ld: usize,
    rows: Range<usize>,
    t0: usize,
}

/// The range in tiles, token chunk by token chunk.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
unsafe fn tiles<const K: u8, const TG: usize, const TT: usize, const DG: usize>(
    w: &QMatrix,
    rows: Range<usize>,
    x: &Acts,
    toks: Range<usize>,
    out: &mut [f32],
    ld: usize,
) {
    let (g_start, g_end) = (rows.start / GROUP, rows.end.div_ceil(GROUP));
    let mut o = Out { out, ld, rows, t0: toks.start };
    let chunk = (CHUNK_BYTES / (w.blocks * (BLOCK + 8))).max(TT).next_multiple_of(TT);
    let mut c = toks.start;
    // SAFETY (every tile): groups and tokens inside the range `check` bounded.
    unsafe {
        if toks.len() == 1 {
            let mut g = g_start;
            while g + DG <= g_end {
                tile::<K, DG, 1>(w, g, x, c, &mut o);
                g += DG;
            }
            while g < g_end {
                tile::<K, 1, 1>(w, g, x, c, &mut o);
                g += 1;
            }
            return;
        }
        while c < toks.end {
            let end = (c + chunk).min(toks.end);
            let mut g = g_start;
            while g + TG <= g_end {
                let mut t = c;
                while t + TT <= end {
                    tile::<K, TG, TT>(w, g, x, t, &mut o);
                    t += TT;
                }
                while t < end {
                    tile::<K, TG, 1>(w, g, x, t, &mut o);
                    t += 1;
                }
                g += TG;
            }
            while g < g_end {
                let mut t = c;
                while t + TT <= end {
                    tile::<K, 1, TT>(w, g, x, t, &mut o);
                    t += TT;
                }
                while t < end {
                    tile::<K, 1, 1>(w, g, x, t, &mut o);
                    t += 1;
                }
                g += 1;
            }
            c = end;
        }
    }
}

/// Lanes `4i..4i+4` = `v[i]`: one value per row of a group, four lanes each.
#[inline(always)]
unsafe fn per_row(p: *const f32) -> __m512 {
    let idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    // SAFETY: the caller's `p` points at four readable f32s.
    let four = unsafe { _mm_loadu_ps(p) };
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(four))
}

/// The four rows' sums of a tile accumulator (four lanes per row).
#[target_feature(enable = "avx512f")]
#[inline]
fn row_sums(a: __m512) -> [f32; 4] {
    let a = _mm512_add_ps(a, _mm512_permute_ps::<0b10_11_00_01>(a));
    let a = _mm512_add_ps(a, _mm512_permute_ps::<0b01_00_11_10>(a));
    [
        _mm_cvtss_f32(_mm512_extractf32x4_ps::<0>(a)),
        _mm_cvtss_f32(_mm512_extractf32x4_ps::<1>(a)),
        _mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(a)),
        _mm_cvtss_f32(_mm512_extractf32x4_ps::<3>(a)),
    ]
}

/// `G` groups of rows from `g0` × `T` tokens from `t0`.
#[allow(clippy::needless_range_loop)] // indices name the tile's (group, token) registers
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
unsafe fn tile<const K: u8, const G: usize, const T: usize>(w: &QMatrix, g0: usize, x: &Acts, t0: usize, o: &mut Out) {
    let blocks = w.blocks;
    let gb = w.kind.group_bytes();
    let mut acc = [[_mm512_setzero_ps(); T]; G];
    let low = _mm512_set1_epi8(0x0F);
    for b in 0..blocks {
        let mut wa = [_mm512_setzero_si512(); G];
        let mut wb = [_mm512_setzero_si512(); G];
        let mut ws = [_mm512_setzero_ps(); G];
        let mut wm = [_mm512_setzero_ps(); G];
        for k in 0..G {
            let gbi = (g0 + k) * blocks + b;
            // SAFETY: `check` bounded the groups; data holds `group_bytes` per group-block,
            // d and m four values.
            unsafe {
                let p = w.data.as_ptr().add(gbi * gb);
                if K == 0 {
                    wa[k] = _mm512_loadu_si512(p.cast());
                    wb[k] = _mm512_loadu_si512(p.add(64).cast());
                } else {
                    let v = _mm512_loadu_si512(p.cast());
                    wa[k] = _mm512_and_si512(v, low);
                    wb[k] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                }
                ws[k] = per_row(w.d.as_ptr().add(gbi * GROUP));
                if K == 2 {
                    wm[k] = per_row(w.m.as_ptr().add(gbi * GROUP));
                }
            }
        }
        for j in 0..T {
            let at = (t0 + j) * blocks + b;
            // SAFETY: `check` bounded the tokens: q holds 32 values, d and nc (and s4) one per
            // (token, block).
            let (xa, xb, nc, xs, s4) = unsafe {
                let p = x.q.as_ptr().add(at * BLOCK);
                (
                    _mm512_broadcast_i32x4(_mm_loadu_si128(p.cast())),
                    _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(16).cast())),
                    _mm512_set1_epi32(*x.nc.get_unchecked(at)),
                    _mm512_set1_ps(*x.d.get_unchecked(at)),
                    if K == 2 { _mm512_set1_ps(*x.s4.get_unchecked(at)) } else { _mm512_setzero_ps() },
                )
            };
            for k in 0..G {
                let sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(nc, wa[k], xa), wb[k], xb);
                acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ws[k], xs), acc[k][j]);
                if K == 2 {
                    acc[k][j] = _mm512_fmadd_ps(wm[k], s4, acc[k][j]);
                }
            }
        }
    }
    for (k, groups) in acc.iter().enumerate() {
        for (j, a) in groups.iter().enumerate() {
            let t = t0 + j - o.t0;
            for (i, v) in row_sums(*a).into_iter().enumerate() {
                let r = (g0 + k) * GROUP + i;
                if o.rows.contains(&r) {
                    o.out[t * o.ld + r - o.rows.start] = v;
                }
            }
        }
    }
}
