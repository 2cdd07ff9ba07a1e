//! What the inference benches share.

use std::time::Instant;

/// Sustained read bandwidth: two threads summing halves of a 1 GiB buffer, best of 5.
pub fn read_bandwidth_gbs() -> f64 {
    let n = (1usize << 30) / 8;
    let buf: Vec<u64> = (0..n as u64).collect();
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let (a, b) = buf.split_at(n / 2);
        let total = std::thread::scope(|s| {
            let h = s.spawn(|| a.iter().fold(0u64, |x, y| x.wrapping_add(*y)));
            let t2 = b.iter().fold(0u64, |x, y| x.wrapping_add(*y));
            h.join().unwrap().wrapping_add(t2)
        });
        std::hint::black_box(total);
        best = best.max((n * 8) as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}
