//! NVIDIA attestation evidence verification per report, on the real Hopper sample:
//! - uncached: parse, the report's signature, all five certificates of the chain, FWID;
//! - chain cached: the same through a `ChainCache` that has seen this chain (the report's
//!   signature and FWID are still checked; the chain's signatures are not again);
//! - rim: verify NVIDIA's sample driver RIM (20 KiB of XML: parse, Canonical XML 1.1 twice,
//!   SHA-384, the ECDSA signature, then its four-certificate chain — uncached, or cached).
//!
//! Run: `cargo bench -p chipledger-domain --bench evidence`.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use chipledger_domain::evidence::{decode_report, parse_chain, parse_root, verify, verify_cached, ChainCache, Report};
use chipledger_domain::rim::{parse_rim_root, verify_rim, verify_rim_cached};
use criterion::{criterion_group, criterion_main, Criterion};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/nvidia-attestation/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn bench(c: &mut Criterion) {
    let bytes = decode_report(&data("hopperAttestationReport.txt")).unwrap();
    let chain = parse_chain(&data("hopperCertChain.txt")).unwrap();
    let root = parse_root(None).unwrap();
    let nonce: [u8; 32] =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb").unwrap().try_into().unwrap();
    c.bench_function("evidence: verify a report, chain uncached", |b| {
        b.iter(|| {
            let r = Report::parse(&bytes).unwrap();
            verify(&r, &chain, &root, &nonce, 1_800_000_000).unwrap()
        })
    });
    let cache = ChainCache::default();
    c.bench_function("evidence: verify a report, chain cached", |b| {
        b.iter(|| {
            let r = Report::parse(&bytes).unwrap();
            verify_cached(&r, &chain, &root, &nonce, 1_800_000_000, Some(&cache)).unwrap()
        })
    });
    // Inside the RIM signer's validity (2023-06 to 2025-06).
    let rim = data("Driver_RIM_test_no_gpu.swidtag");
    let rim_root = parse_rim_root(None).unwrap();
    c.bench_function("rim: verify a RIM, chain uncached", |b| {
        b.iter(|| verify_rim(&rim, &rim_root, 1_720_000_000).unwrap())
    });
    let rim_cache = ChainCache::default();
    c.bench_function("rim: verify a RIM, chain cached", |b| {
        b.iter(|| verify_rim_cached(&rim, &rim_root, 1_720_000_000, Some(&rim_cache)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
