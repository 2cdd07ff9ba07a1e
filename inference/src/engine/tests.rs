//! The native engine against its portable kernels, candle's quantization and plain float
//! arithmetic: repacking, both quantizers, every SIMD kernel, threaded splits, attention, and the
//! whole engine on portable against SIMD kernels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::quant::{matmul_portable, Acts, Kind, QMatrix};
use super::*;
use crate::tiny::SplitMix64;

fn kinds() -> [(Kind, GgmlDType); 3] {
    [(Kind::Q8_0, GgmlDType::Q8_0), (Kind::Q4_0, GgmlDType::Q4_0), (Kind::Q4_1, GgmlDType::Q4_1)]
}

fn random(rng: &mut SplitMix64, n: usize, std: f64) -> Vec<f32> {
    (0..n).map(|_| rng.normal(std)).collect()
}

/// candle's quantization of a random `rows × cols` matrix: (GGML bytes, candle's dequantization).
fn quantized(rng: &mut SplitMix64, rows: usize, cols: usize, dtype: GgmlDType) -> (Vec<u8>, Vec<f32>) {
    let w = Tensor::from_vec(random(rng, rows * cols, 0.5), (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&w, dtype).unwrap();
    let back = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (q.data().unwrap().into_owned(), back)
}

#[test]
fn repacked_rows_dequantize_to_candles_values() {
    let mut rng = SplitMix64::new(7);
    for (kind, dtype) in kinds() {
        // 96 inputs: three blocks, so the row ends in a padded pair.
        let (rows, cols) = (5, 96);
        let (bytes, reference) = quantized(&mut rng, rows, cols, dtype);
        let m = QMatrix::repack(kind, rows, cols, &bytes).unwrap();
        assert_eq!((m.blocks, m.groups), (3, 2));
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            assert_eq!(row, reference[r * cols..(r + 1) * cols], "{kind:?} row {r}");
        }
    }
}

#[test]
fn repack_refuses_inconsistent_sizes() {
    for (kind, _) in kinds() {
        assert!(QMatrix::repack(kind, 2, 48, &vec![0; 2 * kind.ggml_block_bytes()]).is_err(), "not whole blocks");
        assert!(QMatrix::repack(kind, 2, 64, &vec![0; 3 * kind.ggml_block_bytes()]).is_err(), "short data");
        assert!(QMatrix::repack(kind, 0, 64, &[]).is_err(), "no rows");
    }
}

/// The portable kernel against plain float arithmetic on the dequantized values.
#[test]
fn portable_kernel_is_the_float_product_of_the_quantized_values() {
    let mut rng = SplitMix64::new(11);
    for (kind, dtype) in kinds() {
        let (rows, cols, tokens) = (7, 160, 3);
        let (bytes, wf) = quantized(&mut rng, rows, cols, dtype);
        let m = QMatrix::repack(kind, rows, cols, &bytes).unwrap();
        let x = random(&mut rng, tokens * cols, 1.0);
        let mut acts = Acts::default();
        acts.quantize(&x, tokens, cols, kind, row_quantizer(Features::detect()));
        let mut out = vec![0f32; tokens * rows];
        matmul_portable(&m, 0..rows, &acts, 0..tokens, &mut out, rows);
        for t in 0..tokens {
            for r in 0..rows {
                // The activations as quantized: d·q per block (for Q4_1, the sum term as Q8_1 keeps it).
                let mut want = 0f64;
                for c in 0..cols {
                    let b = t * m.blocks + c / 32;
                    let xq = f64::from(acts.q[t * cols + c]) * f64::from(acts.d[b]);
                    want += f64::from(wf[r * cols + c]) * xq;
                }
                let got = f64::from(out[t * rows + r]);
                // Q4_1's minimum term uses the f16-rounded block sum: a little looser.
                let tol = if kind == Kind::Q4_1 { 2e-2 } else { 1e-3 };
                assert!((got - want).abs() <= tol * (1.0 + want.abs()), "{kind:?} t{t} r{r}: {got} vs {want}");
            }
        }
    }
}

/// Every SIMD kernel computes what the portable one does, over shapes with leftover rows,
/// tokens and blocks.
#[test]
fn simd_kernels_match_the_portable_kernel() {
    let f = Features::detect();
    if !f.any() {
        eprintln!("this CPU has no SIMD kernel to compare");
        return;
    }
    let mut rng = SplitMix64::new(13);
    for (kind, dtype) in kinds() {
        for &(rows, cols, tokens) in
            &[(1, 32, 1), (4, 64, 4), (9, 96, 7), (13, 224, 1), (6, 896, 13), (21, 64, 20), (17, 96, 1)]
        {
            let (bytes, _) = quantized(&mut rng, rows, cols, dtype);
            let m = QMatrix::repack(kind, rows, cols, &bytes).unwrap();
            let x = random(&mut rng, tokens * cols, 1.0);
            let mut acts = Acts::default();
            acts.quantize(&x, tokens, cols, kind, row_quantizer(Features::detect()));
            let mut want = vec![0f32; tokens * rows];
            matmul_portable(&m, 0..rows, &acts, 0..tokens, &mut want, rows);
            let mut got = vec![f32::NAN; tokens * rows];
            assert!(kernel(f, &m, 0..rows, &acts, 0..tokens, &mut got, rows));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{kind:?} {rows}×{cols}×{tokens} at {i}: {g} vs {w}");
            }
            // A sub-range (from a group of rows) into a strided output.
            if rows > 4 && tokens > 1 {
                let ld = rows + 3;
                let mut part = vec![0f32; (tokens - 1) * ld];
                assert!(kernel(f, &m, 4..rows, &acts, 1..tokens, &mut part, ld));
                for t in 1..tokens {
                    for r in 4..rows {
                        let (g, w) = (part[(t - 1) * ld + r - 4], want[t * rows + r]);
                        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{kind:?} sub-range t{t} r{r}");
                    }
                }
            }
        }
    }
}

/// The threaded product equals the kernel's, for prefill-sized, decode and small batches.
#[test]
fn threaded_products_split_without_changing_results() {
    let mut rng = SplitMix64::new(17);
    let (rows, cols) = (37, 128);
    let (bytes, _) = quantized(&mut rng, rows, cols, GgmlDType::Q8_0);
    let m = QMatrix::repack(Kind::Q8_0, rows, cols, &bytes).unwrap();
    for tokens in [1, 3, 33] {
        let x = random(&mut rng, tokens * cols, 1.0);
        let mut acts = Acts::default();
        acts.quantize(&x, tokens, cols, Kind::Q8_0, row_quantizer(Features::detect()));
        let mut want = vec![0f32; tokens * rows];
        matmul_portable(&m, 0..rows, &acts, 0..tokens, &mut want, rows);
        for f in [Features::none(), Features::detect()] {
            let mut got = vec![f32::NAN; tokens * rows];
            matmul(f, &m, &acts, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{tokens} tokens, {}: {g} vs {w}", f.name());
            }
        }
    }
}

#[test]
fn attention_kernels_agree() {
    let mut rng = SplitMix64::new(19);
    let hd = 64;
    let len = 37;
    let q = random(&mut rng, hd, 1.0);
    let keys = random(&mut rng, len * hd, 1.0);
    let v = random(&mut rng, len * hd, 1.0);
    // The cache's layout: blocks of KEYS positions, dimension-major.
    let mut k = vec![0f32; len.div_ceil(KEYS) * KEYS * hd];
    for p in 0..len {
        for d in 0..hd {
            k[(p / KEYS) * KEYS * hd + d * KEYS + p % KEYS] = keys[p * hd + d];
        }
    }
    let mut scores = Vec::new();
    let mut want = vec![0f32; hd];
    attend(Features::none(), &q, &k, &v, len, 0.125, &mut scores, &mut want);
    // Plain softmax attention, in f64.
    let s: Vec<f64> =
        (0..len).map(|p| (0..hd).map(|d| f64::from(q[d]) * f64::from(keys[p * hd + d])).sum::<f64>() * 0.125).collect();
    let max = s.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
    let z: f64 = e.iter().sum();
    for d in 0..hd {
        let o: f64 = (0..len).map(|p| e[p] / z * f64::from(v[p * hd + d])).sum();
        assert!((o - f64::from(want[d])).abs() < 1e-5, "dim {d}: {o} vs {}", want[d]);
    }
    let mut got = vec![0f32; hd];
    attend(Features::detect(), &q, &k, &v, len, 0.125, &mut scores, &mut got);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()));
    }
}

/// The SIMD build of the activation quantizer gives the portable one's bytes, scales and sums,
/// serially and split over threads, ties and saturation included.
#[test]
fn quantizers_agree_exactly() {
    let mut rng = SplitMix64::new(29);
    let cols = 96;
    for tokens in [1, 5, 40] {
        let mut x = random(&mut rng, tokens * cols, 2.0);
        // Exact halves after scaling, zeros, a block of zeros, and extremes.
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = -63.5;
        x[32..64].fill(0.0);
        x[70] = f32::MAX;
        x[5] = 2.5;
        x[6] = -2.5;
        if tokens > 1 {
            x[cols + 3] = f32::NAN;
            x[2 * cols + 40] = f32::INFINITY;
        }
        for kind in [Kind::Q8_0, Kind::Q4_0, Kind::Q4_1] {
            let mut a = Acts::default();
            let mut b = Acts::default();
            a.quantize(&x, tokens, cols, kind, quant::quantize_rows_portable);
            b.quantize(&x, tokens, cols, kind, row_quantizer(Features::detect()));
            assert_eq!((&a.q, &a.nc), (&b.q, &b.nc), "{kind:?} {tokens}");
            assert!(a.d.iter().zip(&b.d).all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(a.s4.iter().zip(&b.s4).all(|(x, y)| x.to_bits() == y.to_bits()));
            assert_eq!(a.q[0], 127);
        }
    }
}

/// The whole engine on portable kernels against the SIMD ones, on generated models of both
/// architectures and every quantization: prefill, then decode from the same tokens.
#[test]
fn the_portable_engine_computes_what_the_simd_engine_does() {
    use crate::tiny::{self, Arch, TinyShape};
    let dir = tempfile::tempdir().unwrap();
    let shape = TinyShape { hidden: 128, heads: 4, kv_heads: 2, intermediate: 384, layers: 2, ..TinyShape::default() };
    for arch in [Arch::Qwen2, Arch::Llama] {
        for quant in ["q8_0", "q4_0", "q4_1"] {
            let path = dir.path().join(format!("{arch:?}-{quant}.gguf"));
            tiny::write_gguf(&path, arch, shape, 9, quant).unwrap();
            let load = |f: Features| {
                let mut file = std::fs::File::open(&path).unwrap();
                let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
                let name = if arch == Arch::Qwen2 { "qwen2" } else { "llama" };
                Engine::load(&content, &mut file, name, f).unwrap()
            };
            let (mut a, mut b) = (load(Features::none()), load(Features::detect()));
            let prompt: Vec<u32> = (0..37).map(|i| (i * 29 + 3) % 256).collect();
            let mut steps = vec![(a.forward(&prompt, 0).unwrap(), b.forward(&prompt, 0).unwrap())];
            for (i, t) in [7u32, 99, 200].into_iter().enumerate() {
                steps.push((a.forward(&[t], prompt.len() + i).unwrap(), b.forward(&[t], prompt.len() + i).unwrap()));
            }
            for (x, y) in steps {
                let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = x.iter().zip(&y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(worst <= 3e-2 * scale, "{arch:?} {quant}: {worst} of {scale}");
            }
        }
    }
}

/// Bad input is refused with the reason, and changes nothing: a position past the cache, a
/// token outside the vocabulary, nothing to feed.
#[test]
fn the_engine_refuses_bad_positions_and_tokens() {
    use crate::tiny::{self, Arch, TinyShape};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    tiny::write_gguf(&path, Arch::Qwen2, TinyShape::default(), 1, "q8_0").unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut e = Engine::load(&content, &mut file, "qwen2", Features::detect()).unwrap();
    let first = e.forward(&[1, 2, 3], 0).unwrap();
    assert!(e.forward(&[4], 5).unwrap_err().contains("past the 3 cached"));
    assert!(e.forward(&[100_000], 3).unwrap_err().contains("outside the vocabulary"));
    assert!(e.forward(&[], 3).unwrap_err().contains("no tokens"));
    // Rewinding recomputes exactly.
    assert_eq!(e.forward(&[1, 2, 3], 0).unwrap(), first);
    let err = Engine::load(&content, &mut file, "gpt2", Features::detect()).unwrap_err();
    assert!(matches!(err, LoadError::Unsupported(_)), "{err:?}");
}

/// Several products of the same activations (q/k/v, gate/up) in one trip to the pool equal
/// one product after another, for one token and for several.
#[test]
fn fused_products_equal_separate_ones() {
    let mut rng = SplitMix64::new(31);
    let cols = 96;
    let shapes = [37, 8, 21];
    let ms: Vec<QMatrix> = shapes
        .iter()
        .map(|&rows| {
            QMatrix::repack(Kind::Q4_0, rows, cols, &quantized(&mut rng, rows, cols, GgmlDType::Q4_0).0).unwrap()
        })
        .collect();
    for tokens in [1, 3] {
        let x = random(&mut rng, tokens * cols, 1.0);
        let mut acts = Acts::default();
        acts.quantize(&x, tokens, cols, Kind::Q4_0, row_quantizer(Features::detect()));
        for f in [Features::none(), Features::detect()] {
            let mut fused: Vec<Vec<f32>> = shapes.iter().map(|r| vec![f32::NAN; tokens * r]).collect();
            let [a, b, c] = &mut fused[..] else { unreachable!() };
            matmuls(f, &[&ms[0], &ms[1], &ms[2]], &acts, [&mut a[..], &mut b[..], &mut c[..]]);
            for (m, got) in ms.iter().zip(&fused) {
                let mut want = vec![0f32; tokens * m.rows];
                matmul(f, m, &acts, &mut want);
                assert_eq!(got, &want, "{tokens} tokens, {}", f.name());
            }
        }
    }
}

/// Activations quantized for one kind of weights are refused by another's kernels.
#[test]
#[should_panic(expected = "another kind")]
fn activations_for_another_kind_are_refused() {
    let mut rng = SplitMix64::new(37);
    let m = QMatrix::repack(Kind::Q4_0, 4, 64, &quantized(&mut rng, 4, 64, GgmlDType::Q4_0).0).unwrap();
    let mut acts = Acts::default();
    acts.quantize(&random(&mut rng, 64, 1.0), 1, 64, Kind::Q8_0, quant::quantize_rows_portable);
    let mut out = vec![0f32; 4];
    matmul(Features::detect(), &m, &acts, &mut out);
}
